"""Finding and checking the files of a BAPPS-layout dataset.

The layout (the official BAPPS release and the embedded dataset both use it):

    <root>/2afc/{train,val}/<category>/{ref,p0,p1}/<id>.png   judge/<id>.npy
    <root>/jnd/val/<category>/{p0,p1}/<id>.png                same/<id>.npy

`judge` is the fraction of judges who found `p1` closer to `ref`; `same` is
the fraction who found `p0` and `p1` identical. Files are matched by their
name without extension and ordered by category, then by name.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from PIL import UnidentifiedImageError

from keras_percept.data.bad_data import ErrorPolicy, SkippedItem, check_on_error
from keras_percept.images import image_shape, load_image

TWO_AFC_SPLITS = ("train", "val")
BAPPS_2AFC_CATEGORIES = {
    "train": ("traditional", "cnn", "mix"),
    "val": ("traditional", "cnn", "superres", "deblur", "color", "frameinterp"),
}
BAPPS_JND_CATEGORIES = ("traditional", "cnn")
# What `keras_percept.images.load_image` reads (Pillow), in both the CLI and the pipelines.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
VERIFY = ("full", "header")

_TWO_AFC_DIRS = (("ref", "p0", "p1"), "judge")
_JND_DIRS = (("p0", "p1"), "same")


@dataclasses.dataclass
class ItemIndex:
    """Checked file lists of one split: `paths[d][i]` is item `i`'s image in folder `d`.

    `labels` are float32 in [0, 1] (`judge` for 2AFC, `same` for JND);
    `categories[i]` and `ids[i]` name each item; `skipped` lists what
    `on_error="skip"` left out.

    Example:

    >>> index = index_2afc("dataset", "val", ["traditional"])  # doctest: +SKIP
    >>> index.paths["ref"][0], float(index.labels[0])  # doctest: +SKIP
    ('dataset/2afc/val/traditional/ref/000000.png', 0.8)
    """

    root: str
    split: str
    image_dirs: tuple[str, ...]
    paths: dict[str, list[str]]
    labels: np.ndarray
    categories: list[str]
    ids: list[str]
    skipped: list[SkippedItem]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def category_names(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(self.categories))

    def select(self, category: str) -> "ItemIndex":
        """The items of one category (skipped items are not carried over)."""
        return self.subset([i for i, c in enumerate(self.categories) if c == category])

    def subset(self, positions) -> "ItemIndex":
        """The items at `positions`, in that order (skipped items are not carried over).

        Example:

        >>> first_ten = index_2afc("dataset", "train").subset(range(10))  # doctest: +SKIP
        """
        keep = [int(i) for i in positions]
        return dataclasses.replace(
            self,
            paths={d: [p[i] for i in keep] for d, p in self.paths.items()},
            labels=self.labels[keep],
            categories=[self.categories[i] for i in keep],
            ids=[self.ids[i] for i in keep],
            skipped=[],
        )


def index_2afc(
    root: str | os.PathLike,
    split: str = "val",
    categories: Sequence[str] | None = None,
    *,
    on_error: str = "raise",
    verify: str = "full",
    image_size: int | None = None,
) -> ItemIndex:
    """Lists and checks the 2AFC triplets of `<root>/2afc/<split>/<category>`.

    Args:
        root: the dataset folder holding `2afc/` (BAPPS's `dataset/`).
        split: `"train"` or `"val"`. Defaults to `"val"`.
        categories: category folders to read, in this order; `None` reads
            every folder present, sorted. Defaults to `None`.
        on_error: `"raise"` stops at the first bad item with a `BadDataError`
            naming the file; `"skip"` leaves bad items out and lists them in
            `skipped`. Defaults to `"raise"`.
        verify: `"full"` decodes every image once with the pipeline's own
            decoder (`keras_percept.images.load_image`); `"header"` only reads image headers (fast, but a
            truncated image then fails later, inside the pipeline).
            Defaults to `"full"`.
        image_size: required side length of the stored images; `None`
            requires every image of a category to have that category's most
            common size. Defaults to `None`.

    Example:

    >>> index = index_2afc("dataset", "val", ["traditional", "cnn"])  # doctest: +SKIP
    >>> len(index), index.category_names  # doctest: +SKIP
    (9440, ['traditional', 'cnn'])
    """
    if split not in TWO_AFC_SPLITS:
        raise ValueError(f"Argument `split` must be one of {TWO_AFC_SPLITS}. Received: split={split!r}")
    return _index(root, os.path.join("2afc", split), split, categories, _TWO_AFC_DIRS,
                  on_error=on_error, verify=verify, image_size=image_size)


def index_jnd(
    root: str | os.PathLike,
    categories: Sequence[str] | None = None,
    *,
    on_error: str = "raise",
    verify: str = "full",
    image_size: int | None = None,
) -> ItemIndex:
    """Lists and checks the JND pairs of `<root>/jnd/val/<category>`; arguments as in `index_2afc`.

    Example:

    >>> index = index_jnd("dataset", ["traditional"])  # doctest: +SKIP
    >>> sorted(index.paths)  # doctest: +SKIP
    ['p0', 'p1']
    """
    return _index(root, os.path.join("jnd", "val"), "val", categories, _JND_DIRS,
                  on_error=on_error, verify=verify, image_size=image_size)


def _index(root, subdir, split, categories, dirs, *, on_error, verify, image_size) -> ItemIndex:
    check_on_error(on_error)
    if verify not in VERIFY:
        raise ValueError(f"Argument `verify` must be one of {VERIFY}. Received: verify={verify!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"Argument `image_size` must be a positive int or None. Received: image_size={image_size!r}")
    root = os.fspath(root)
    split_dir = os.path.join(root, subdir)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(
            f"No BAPPS-layout folder {split_dir!r}. Pass as `root` the folder that holds '2afc/' and 'jnd/' "
            "(download BAPPS with `keras_percept.data.download_bapps(...)`, or build the embedded dataset "
            "with `keras_percept.data.embedded.build()`)."
        )
    present = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    if categories is None:
        categories = present
    elif isinstance(categories, str):
        categories = [categories]
    missing = [c for c in categories if c not in present]
    if missing:
        raise FileNotFoundError(
            f"Argument `categories` names folder(s) {missing} that do not exist in {split_dir!r}. "
            f"Available: {present}"
        )
    if not categories:
        raise FileNotFoundError(f"{split_dir!r} has no category folders.")

    image_dirs, label_dir = dirs
    policy = ErrorPolicy(on_error)
    paths = {d: [] for d in image_dirs}
    labels, item_categories, ids = [], [], []
    for category in categories:
        for stem, files, label in _index_category(
            os.path.join(split_dir, category), image_dirs, label_dir, policy, verify, image_size
        ):
            for d in image_dirs:
                paths[d].append(files[d])
            labels.append(label)
            item_categories.append(category)
            ids.append(stem)
    return ItemIndex(
        root=root, split=split, image_dirs=image_dirs, paths=paths,
        labels=np.asarray(labels, dtype=np.float32), categories=item_categories, ids=ids,
        skipped=policy.skipped,
    )


def _list_files(folder: str, extensions: Sequence[str], policy: ErrorPolicy) -> tuple[dict[str, str], set[str]]:
    """`{id: path}` of the files with `extensions`, and the ids that two files share (reported)."""
    found: dict[str, str] = {}
    ambiguous: set[str] = set()
    if not os.path.isdir(folder):
        return found, ambiguous
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in extensions or name.startswith("."):
            continue
        path = os.path.join(folder, name)
        if stem in found:
            policy.bad(path, "count", f"two files share the id {stem!r} (also {found[stem]})")
            ambiguous.add(stem)
            continue
        found[stem] = path
    return found, ambiguous


def _index_category(category_dir, image_dirs, label_dir, policy, verify, image_size):
    """Yields `(id, {dir: path}, label)` for the good items of one category folder, in id order."""
    files, ambiguous = {}, set()
    for d in image_dirs:
        files[d], shared = _list_files(os.path.join(category_dir, d), IMAGE_EXTENSIONS, policy)
        ambiguous |= shared
    label_files, shared = _list_files(os.path.join(category_dir, label_dir), (".npy",), policy)
    ambiguous |= shared
    counts = ", ".join(f"{d}/ has {len(files[d])}" for d in image_dirs)
    candidates = []
    for stem in sorted(set().union(*files.values(), label_files) - ambiguous):
        absent = [d for d in image_dirs if stem not in files[d]]
        if absent:
            where = os.path.join(category_dir, absent[0], f"{stem}.png")
            policy.bad(where, "count", f"missing image: item {stem!r} is not in {absent} ({counts} images)")
            continue
        if stem not in label_files:
            policy.bad(os.path.join(category_dir, label_dir, f"{stem}.npy"), "label", "missing label file")
            continue
        label = _read_label(label_files[stem], policy)
        if label is not None:
            candidates.append((stem, {d: files[d][stem] for d in image_dirs}, label))

    shapes = _image_shapes([p for _, item, _ in candidates for p in item.values()], verify)
    sizes = [s[:2] for s in shapes.values() if not isinstance(s, str)]
    expected = (image_size, image_size) if image_size else _most_common(sizes)
    for stem, item, label in candidates:
        problem = None
        for path in item.values():
            shape = shapes[path]
            if isinstance(shape, str):
                problem = (path, "image", f"unreadable image: {shape}")
            elif shape[:2] != expected:
                problem = (path, "size", f"image is {shape[1]}x{shape[0]} pixels; expected "
                           f"{expected[1]}x{expected[0]} like the other images of {category_dir}")
            if problem:
                break
        if problem:
            policy.bad(*problem)
        else:
            yield stem, item, label


def _read_label(path: str, policy: ErrorPolicy) -> float | None:
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        policy.bad(path, "label", f"unreadable label file: {err}")
        return None
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        policy.bad(path, "label", f"label must be one number; found dtype {value.dtype}, shape {value.shape}")
        return None
    label = float(value.reshape(()))
    if not 0.0 <= label <= 1.0:  # also rejects NaN
        policy.bad(path, "label", f"label {label!r} is outside [0, 1]")
        return None
    return label


def _image_shapes(paths: list[str], verify: str) -> dict[str, tuple[int, ...] | str]:
    """Decoded `(H, W, C)` per path, or the error message for unreadable files."""
    check = _decoded_shape if verify == "full" else _header_shape
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(paths, pool.map(check, paths)))


def _decoded_shape(path: str) -> tuple[int, ...] | str:
    try:
        return load_image(path).shape
    except (OSError, ValueError) as err:
        return str(err).splitlines()[0]


def _header_shape(path: str) -> tuple[int, ...] | str:
    try:
        return image_shape(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return str(err)


def _most_common(sizes: list[tuple[int, int]]) -> tuple[int, int] | None:
    if not sizes:
        return None
    values, counts = np.unique(np.asarray(sizes), axis=0, return_counts=True)
    return tuple(int(v) for v in values[np.argmax(counts)])
