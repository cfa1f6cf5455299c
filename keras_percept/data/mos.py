"""Mean-opinion-score (MOS) datasets for image-quality regression: CSV reader, split, patch pipelines.

A MOS dataset is a folder of images plus a CSV of scores, read into a
`MOSTable`. Two CSV layouts are understood:

- KonIQ-10k (`koniq10k_scores_and_distributions.csv`): columns
  `image_name, c1..c5, c_total, MOS, SD, MOS_zscore`; the label defaults to
  `MOS_zscore` (0..100, what papers report on); `mos_column="MOS"` (1..5)
  also reads `SD` as the standard deviation.
- generic: `filename, mos[, std][, ref]` with a header; `ref` (a reference
  image per row) makes the table full-reference. Other columns are ignored.

Lines starting with `#` before the header are comments.

File names are relative to `image_dir` (default: the CSV's folder).
`split_by_image` splits by image (by reference image for full-reference
data, so no content is in both splits); `mos_patch_dataset` serves random
training crops or fixed test crops whose predictions `average_over_patches`
turns back into one score per image. `embedded_mos` labels the embedded
real-photo distorted images with a SIMULATED observer (not human ratings).

Example:

>>> table = read_mos_csv("koniq/koniq10k_scores_and_distributions.csv",
...                      "koniq/1024x768")  # doctest: +SKIP
>>> train, test = split_by_image(table, test_fraction=0.2, seed=0)  # doctest: +SKIP
>>> ds = mos_patch_dataset(train, patch_size=224, patches_per_image=25, training=True)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_percept.data.augment import TripletAugmentation, crop_and_flip
from keras_percept.data.bad_data import BadDataError, ErrorPolicy, warn_skipped
from keras_percept.data.epochs import epoch_order, item_seeds, over_epochs
from keras_percept.data.layout import _image_shapes
from keras_percept.data.reader import VALUE_RANGES, _check_positive_int, decode_file

LAYOUTS = ("auto", "koniq", "generic")
KONIQ_FILENAME, KONIQ_DEFAULT_MOS = "image_name", "MOS_zscore"
GENERIC_FILENAME, GENERIC_DEFAULT_MOS = "filename", "mos"
# Default sizes of `embedded_mos`: enough images for a stable SRCC, few enough for a quick CI training run.
EMBEDDED_DEFAULT_IMAGES = {"train": 1600, "val": 600}


@dataclasses.dataclass(frozen=True, eq=False)
class MOSTable:
    """Images and their mean opinion scores, as read by `read_mos_csv`.

    Args:
        paths: absolute image paths.
        mos: float32 `(N,)` scores (higher = better for the shipped readers).
        std: float32 `(N,)` standard deviations of the ratings, or `None`.
        ref_paths: absolute reference-image paths (full-reference data), or `None`.
        skipped: `(CSV line number, reason)` of rows left out under `on_error="skip"`.
            A `subset` keeps its parent's record. Defaults to `()`.

    Example:

    >>> table = MOSTable(("/d/a.png", "/d/b.png", "/d/c.png"), np.array([3.1, 4.0, 1.5]), None, None)
    >>> len(table), table.subset([2, 0]).paths
    (3, ('/d/c.png', '/d/a.png'))
    """

    paths: tuple[str, ...]
    mos: np.ndarray
    std: np.ndarray | None = None
    ref_paths: tuple[str, ...] | None = None
    skipped: tuple[tuple[int, str], ...] = ()

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("paths", tuple(os.fspath(p) for p in self.paths))
        set_("mos", np.asarray(self.mos, dtype=np.float32).reshape(-1))
        n = len(self.paths)
        if self.mos.shape != (n,):
            raise ValueError(f"`mos` must have one value per path ({n}). Received shape: {self.mos.shape}")
        if self.std is not None:
            set_("std", np.asarray(self.std, dtype=np.float32).reshape(-1))
            if self.std.shape != (n,):
                raise ValueError(f"`std` must have one value per path ({n}). Received shape: {self.std.shape}")
        if self.ref_paths is not None:
            set_("ref_paths", tuple(os.fspath(p) for p in self.ref_paths))
            if len(self.ref_paths) != n:
                raise ValueError(f"`ref_paths` must have one path per image ({n}). Received: {len(self.ref_paths)}")
        set_("skipped", tuple((int(line), str(reason)) for line, reason in self.skipped))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def full_reference(self) -> bool:
        """Whether every image has a reference image."""
        return self.ref_paths is not None

    def subset(self, indices: Sequence[int] | np.ndarray) -> MOSTable:
        """The rows at `indices` (integers, in the given order).

        Example:

        >>> MOSTable(("a", "b"), [1.0, 2.0]).subset([1]).mos
        array([2.], dtype=float32)
        """
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"Argument `indices` must be a 1-D sequence of ints. Received: {indices!r}")
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"Argument `indices` must lie in [0, {len(self)}). Received values up to {idx.max()}")
        return MOSTable(
            tuple(self.paths[i] for i in idx),
            self.mos[idx],
            None if self.std is None else self.std[idx],
            None if self.ref_paths is None else tuple(self.ref_paths[i] for i in idx),
            self.skipped,
        )


def read_mos_csv(
    csv_path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    layout: str = "auto",
    mos_column: str | None = None,
    on_error: str = "raise",
) -> MOSTable:
    """Reads a MOS CSV (KonIQ-10k or generic layout, see the module docstring) into a `MOSTable`.

    Every row is checked: field count, a non-empty file name, a finite
    numeric score (and standard deviation, if read, >= 0), an existing and
    readable image (and reference), no repeated file name. Header problems
    (an unknown layout, a missing column) always raise.

    Args:
        csv_path: the CSV file.
        image_dir: folder the file names are relative to; `None` for the
            CSV's folder. Defaults to `None`.
        layout: `"koniq"`, `"generic"`, or `"auto"` (KonIQ if the header has
            `image_name`, generic if it has `filename`). Defaults to `"auto"`.
        mos_column: the score column; `None` for `MOS_zscore` (KonIQ) or
            `mos` (generic). A standard deviation is read only for the
            default generic column (`std`) and for KonIQ's `MOS` (`SD`).
            Defaults to `None`.
        on_error: `"raise"`: the first bad row raises `BadDataError` naming
            the CSV line, the column and the bad value or missing file;
            `"skip"`: bad rows are left out, recorded in `MOSTable.skipped`
            and summarised in one warning. Defaults to `"raise"`.

    Returns:
        A `MOSTable`, rows in CSV order.

    Example:

    >>> table = read_mos_csv("scores.csv", on_error="skip")  # doctest: +SKIP
    >>> table.mos[:3], table.skipped  # doctest: +SKIP
    (array([3.2, 4.1, 1.9], dtype=float32), ((7, "column 'mos' has non-numeric value 'n/a'"),))
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Argument `layout` must be one of {LAYOUTS}. Received: layout={layout!r}")
    policy = ErrorPolicy(on_error)
    csv_path = os.path.abspath(os.fspath(csv_path))
    image_dir = os.path.dirname(csv_path) if image_dir is None else os.path.abspath(os.fspath(image_dir))
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next((row for row in reader if row and not row[0].startswith("#")), None)
        if header is None:
            raise BadDataError(csv_path, "the CSV is empty (no header)")
        columns = _columns(csv_path, [name.strip() for name in header], layout, mos_column)
        rows = [(reader.line_num, row) for row in reader if row]

    parsed = []
    for line, row in rows:
        try:
            parsed.append((line, _parse_row(row, len(header), columns, image_dir)))
        except _BadRow as bad:
            parsed.append((line, bad))
    unreadable = _unreadable([p for _, r in parsed if isinstance(r, tuple) for p in (r[0], r[3]) if p is not None])

    records, lines_skipped = [], []
    seen: dict[str, int] = {}
    for line, item in parsed:  # in line order, so `on_error="raise"` names the first bad line
        problem = item if isinstance(item, _BadRow) else _row_problem(item, seen, unreadable)
        if problem is not None:
            policy.bad(f"{csv_path}:{line}", problem.kind, problem.reason)
            lines_skipped.append(line)
            continue
        seen[item[0]] = line
        records.append(item)
    warn_skipped(policy.skipped, len(rows), csv_path)
    if not records:
        raise BadDataError(csv_path, f"no usable rows ({len(rows)} data row(s), {len(policy.skipped)} skipped)")
    paths, mos, std, refs = zip(*records)
    return MOSTable(
        paths,
        np.array(mos, dtype=np.float32),
        None if columns["std"] is None else np.array(std, dtype=np.float32),
        None if columns["ref"] is None else refs,
        tuple(zip(lines_skipped, (s.reason for s in policy.skipped))),
    )


def split_by_image(table: MOSTable, *, test_fraction: float = 0.2, seed: int = 0,
                   groups: Sequence[str] | None = None) -> tuple[MOSTable, MOSTable]:
    """A random train/test split by image (by reference image for full-reference tables).

    Each distinct image (or reference, with all of its distorted versions)
    lands in exactly one split, so no content is shared. The test split
    gets `round(test_fraction * groups)` groups (at least one, at most all
    but one). Rows keep their table order within each split.

    Args:
        table: the `MOSTable` to split.
        test_fraction: share of images (references) held out, in (0, 1). Defaults to `0.2`.
        seed: seed of the random assignment. Defaults to `0`.
        groups: one label per row (e.g. the source photograph) to split by
            instead: each group lands whole in one split. Defaults to `None`
            (by image, or by reference image).

    Example:

    >>> table = MOSTable(tuple(f"/d/{i}.png" for i in range(10)), np.arange(10.0))
    >>> train, test = split_by_image(table, test_fraction=0.3)
    >>> len(train), len(test)
    (7, 3)
    """
    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"Argument `test_fraction` must be in (0, 1). Received: test_fraction={test_fraction!r}")
    keys = table.ref_paths if table.full_reference else table.paths
    if groups is not None:
        keys = tuple(groups)
        if len(keys) != len(table):
            raise ValueError(f"Argument `groups` must have one label per row ({len(table)}). Received: {len(keys)}")
    groups = list(dict.fromkeys(keys))
    if len(groups) < 2:
        raise ValueError(f"Splitting by image needs at least 2 distinct images (references). Received: {len(groups)}")
    n_test = min(max(round(test_fraction * len(groups)), 1), len(groups) - 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    test_groups = {groups[i] for i in order[:n_test]}
    in_test = np.array([key in test_groups for key in keys])
    return table.subset(np.flatnonzero(~in_test)), table.subset(np.flatnonzero(in_test))


def mos_patch_dataset(
    table: MOSTable,
    *,
    patch_size: int = 224,
    patches_per_image: int = 1,
    training: bool,
    batch_size: int = 32,
    seed: int = 0,
    input_range: str = "[-1,1]",
    prefetch: bool = True,
    drop_remainder: bool = False,
    epochs: int | None = None,
    first_epoch: int = 0,
    steps_per_epoch: int | None = None,
) -> tf.data.Dataset:
    """Square patches of the table's images with their image's MOS, as a batched `tf.data.Dataset`.

    Elements are `(patch, mos)`, or `((patch, ref_patch), mos)` for a
    full-reference table (both cut at the same window, flipped together):
    patches float32 `(B, patch_size, patch_size, 3)` in `input_range`, MOS
    float32 `(B,)`.

    - `training=True`: every epoch, `patches_per_image` random crops per
      image, each flipped left-right with probability 0.5, all patches of
      all images shuffled together (the image list is repeated
      `patches_per_image` times, as HyperIQA does). Epoch `e`'s order and
      crops are a pure function of `(seed, e)` (`keras_percept.data.epochs`),
      so a resumed run sees what the uninterrupted one saw.
    - `training=False`: `patches_per_image` crops per image at fixed
      positions drawn from `seed` and the image's index (the same every
      epoch and run), no flip, not shuffled: image i's patches are elements
      `i * patches_per_image ... (i + 1) * patches_per_image - 1`, so
      `average_over_patches(model.predict(ds), patches_per_image)` gives
      one score per image in table order.

    Images are cropped, never resized: every image must be at least
    `patch_size` pixels on each side, else a `ValueError` names it.

    Args:
        table: a `MOSTable`.
        patch_size: side of the square patches. Defaults to `224`.
        patches_per_image: patches per image per pass (`train_patch_num` /
            `test_patch_num`). Defaults to `1`.
        training: random shuffled crops (`True`) or fixed ordered crops (`False`).
        batch_size: patches per batch. Defaults to `32`.
        seed: seed of the crops, flips and shuffling. Defaults to `0`.
        input_range: `"[-1,1]"` or `"[0,1]"`. Defaults to `"[-1,1]"`.
        prefetch: prefetch batches in the background. Defaults to `True`.
        drop_remainder: drop a last, smaller batch of each epoch. Defaults to `False`.
        epochs: with `training=True`: `None` for one pass (epoch 0's order
            and crops); an int for the batches of epochs
            `first_epoch ... epochs - 1` in one dataset, for
            `fit(ds, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=...)`.
            Defaults to `None`.
        first_epoch: the first epoch of the dataset (with `epochs`). Defaults to `0`.
        steps_per_epoch: batches per epoch (with `training=True`); `None` for
            one pass per epoch. Defaults to `None`.

    Example:

    >>> test = mos_patch_dataset(table, patch_size=224, patches_per_image=25, training=False)  # doctest: +SKIP
    >>> scores = average_over_patches(model.predict(test), 25)  # doctest: +SKIP
    """
    for name, value in (("patch_size", patch_size), ("patches_per_image", patches_per_image),
                        ("batch_size", batch_size)):
        _check_positive_int(name, value)
    if input_range not in VALUE_RANGES:
        raise ValueError(f"Argument `input_range` must be one of {VALUE_RANGES}. Received: input_range={input_range!r}")
    if not isinstance(training, bool):
        raise ValueError(f"Argument `training` must be a bool. Received: training={training!r}")
    if len(table) == 0:
        raise ValueError("Argument `table` is empty: no images to cut patches from.")
    _check_sizes(table, patch_size)

    if epochs is not None and not training:
        raise ValueError(f"Argument `epochs` needs `training=True` (fixed patches are the same every epoch). "
                         f"Received: epochs={epochs!r}")
    if steps_per_epoch is not None:
        _check_positive_int("steps_per_epoch", steps_per_epoch)
    n, per_image = len(table), patches_per_image
    total = n * per_image
    items = steps_per_epoch * batch_size if training and steps_per_epoch else total
    batches = steps_per_epoch or (items // batch_size if drop_remainder else -(-items // batch_size))

    paths = tf.constant(table.paths)
    refs = tf.constant(table.ref_paths) if table.full_reference else None
    mos = tf.constant(table.mos)
    augmentation = TripletAugmentation(crop_size=patch_size, flip_left_right=training)
    low = -1.0 if input_range == "[-1,1]" else 0.0

    def load(i, crop_seed):
        pictures = (_decode(paths[i]),) if refs is None else (_decode(paths[i]), _decode(refs[i]))
        patches = tuple(low + (1.0 - low) * p for p in crop_and_flip(pictures, crop_seed, augmentation))
        return (patches[0] if refs is None else patches), mos[i]

    def one_epoch(epoch):
        # Patch j is image j // per_image; fixed patches keep the order and their seeds, [seed, j].
        order = epoch_order(total, seed=seed, epoch=epoch, items=items, shuffle=training)
        ds = tf.data.Dataset.from_tensor_slices((order // per_image, item_seeds(seed, epoch, items)))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(batch_size, drop_remainder=drop_remainder)

    if epochs is None:
        ds = one_epoch(tf.constant(0, tf.int64))
    else:
        ds = over_epochs(one_epoch, first_epoch=first_epoch, epochs=epochs, batches_per_epoch=batches)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def average_over_patches(predictions, patches_per_image: int) -> np.ndarray:
    """Per-image means of consecutive patch predictions: `(N * P,)` or `(N * P, 1)` → `(N,)`.

    Example:

    >>> average_over_patches(np.array([[1.0], [3.0], [2.0], [2.0]]), 2)
    array([2., 2.])
    """
    _check_positive_int("patches_per_image", patches_per_image)
    values = np.asarray(predictions, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.size % patches_per_image:
        raise ValueError(
            f"Argument `predictions` must have shape (N * {patches_per_image},) or (N * {patches_per_image}, 1). "
            f"Received shape: {np.shape(predictions)}"
        )
    return values.reshape(-1, patches_per_image).mean(axis=1)


def embedded_mos(
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    n_images: int | None = None,
    raters: int = 20,
    seed: int = 0,
    judge: str = "observer",
) -> MOSTable:
    """SIMULATED MOS for the distorted images of the embedded real-photo dataset (NOT human ratings).

    Every distorted patch (`p0` and `p1` of each 2AFC triplet) gets `raters`
    simulated 5-point ratings from the dataset's observer model
    (`keras_percept.data.embedded.ratings`); their mean and standard
    deviation are written, with the reference patch, to the generic CSV
    `<root>/mos_<split>_raters<raters>_seed<seed>.csv` (once; the result is
    deterministic), which is read back with `read_mos_csv`. The table is
    full-reference (`ref_paths`); ignore them for no-reference training.

    `split="train"` and `split="val"` are the embedded dataset's splits,
    which share no source photograph and no distortion family, so `"val"`
    tests generalisation to new content and new distortions. (Do not use
    `split_by_image` on one embedded split for testing: its reference
    patches are overlapping crops of a few photographs.)

    Args:
        root: a built embedded dataset (`keras_percept.data.embedded.build`);
            `None` builds or reuses the default one in the cache
            (64-pixel patches, 8,000 train / 2,400 val distorted images).
            Defaults to `None`.
        split: `"train"` or `"val"`. Defaults to `"train"`.
        n_images: a seeded random subset of this many images; `None` for
            1,600 (train) / 600 (val), or all if fewer. Defaults to `None`.
        raters: simulated raters per image. Defaults to `20`.
        seed: seed of the ratings and of the subset. Defaults to `0`.
        judge: the judge of the default dataset built for `root=None`:
            `"observer"` (5-point ratings from the simulated observer) or
            `"cvvdp"` (ratings around each patch's ColorVideoVDP JOD, see
            `keras_percept.data.embedded.cvvdp_judge`). A given `root` is
            rated by the judge it was built with. Defaults to `"observer"`.

    Example:

    >>> train = embedded_mos(split="train")  # doctest: +SKIP
    >>> test = embedded_mos(split="val")  # doctest: +SKIP
    >>> ds = mos_patch_dataset(train, patch_size=64, training=True)  # doctest: +SKIP
    """
    from keras_percept.data import embedded
    from keras_percept.data.embedded.ratings import write_mos_csv

    if split not in EMBEDDED_DEFAULT_IMAGES:
        raise ValueError(f"Argument `split` must be one of {tuple(EMBEDDED_DEFAULT_IMAGES)}. Received: split={split!r}")
    if n_images is not None:
        _check_positive_int("n_images", n_images)
    root = embedded.build(judge=judge) if root is None else os.fspath(root)
    table = read_mos_csv(write_mos_csv(root, split, raters=raters, seed=seed), root, layout="generic")
    if n_images is None:
        n_images = min(EMBEDDED_DEFAULT_IMAGES[split], len(table))
    elif n_images > len(table):
        raise ValueError(
            f"Argument `n_images` must be at most the {len(table)} images of split {split!r}. "
            f"Received: n_images={n_images}"
        )
    if n_images == len(table):
        return table
    chosen = np.random.default_rng([seed, 1]).choice(len(table), size=n_images, replace=False)
    return table.subset(np.sort(chosen))


def _columns(csv_path: str, header: list[str], layout: str, mos_column: str | None) -> dict:
    """Column indices of filename, mos, std, ref for the layout; raises on a header that does not fit."""
    lower = {name.lower(): k for k, name in reversed(list(enumerate(header)))}
    find = lambda name: header.index(name) if name in header else lower.get(name.lower())  # noqa: E731
    if layout == "auto":
        if find(KONIQ_FILENAME) is not None:
            layout = "koniq"
        elif find(GENERIC_FILENAME) is not None:
            layout = "generic"
        else:
            raise BadDataError(
                csv_path,
                f"unrecognised header {header}: expected KonIQ-10k's ({KONIQ_FILENAME!r}, ..., {KONIQ_DEFAULT_MOS!r}) "
                f"or the generic ({GENERIC_FILENAME!r}, {GENERIC_DEFAULT_MOS!r}[, 'std'][, 'ref'])",
            )
    filename, default_mos = {"koniq": (KONIQ_FILENAME, KONIQ_DEFAULT_MOS),
                             "generic": (GENERIC_FILENAME, GENERIC_DEFAULT_MOS)}[layout]
    label = default_mos if mos_column is None else mos_column
    columns = {"filename": find(filename), "mos": find(label), "mos_name": label}
    for role, name in (("filename", filename), ("mos", label)):
        if columns[role] is None:
            raise BadDataError(csv_path, f"the {layout} layout needs a column {name!r}; the header has {header}")
    if layout == "koniq":
        columns["std"] = find("SD") if label.lower() == "mos" else None
        columns["ref"] = None
    else:
        columns["std"] = find("std") if label == default_mos else None
        columns["ref"] = find("ref")
    columns["std_name"] = None if columns["std"] is None else header[columns["std"]]
    return columns


class _BadRow(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def _parse_row(row: list[str], n_fields: int, columns: dict, image_dir: str):
    """`(path, mos, std, ref)` of one CSV row; raises `_BadRow`."""
    if len(row) != n_fields:
        raise _BadRow("fields", f"the row has {len(row)} field(s), the header {n_fields}")
    name = row[columns["filename"]].strip()
    if not name:
        raise _BadRow("filename", "the file name is empty")
    score = _number(row[columns["mos"]], columns["mos_name"])
    spread = None
    if columns["std"] is not None:
        spread = _number(row[columns["std"]], columns["std_name"])
        if spread < 0:
            raise _BadRow(columns["std_name"], f"column {columns['std_name']!r} has negative value {spread!r}")
    path = os.path.join(image_dir, name)
    if not os.path.isfile(path):
        raise _BadRow("missing file", f"image file {path!r} (column 'filename' = {name!r}) does not exist")
    ref = None
    if columns["ref"] is not None:
        ref_name = row[columns["ref"]].strip()
        ref = os.path.join(image_dir, ref_name)
        if not ref_name or not os.path.isfile(ref):
            raise _BadRow("missing file", f"reference file {ref!r} (column 'ref' = {ref_name!r}) does not exist")
    return path, score, spread, ref


def _row_problem(item: tuple, seen: dict[str, int], unreadable: dict[str, str]) -> _BadRow | None:
    path, _, _, ref = item
    if path in seen:
        return _BadRow("duplicate", f"image {path!r} is also on line {seen[path]}")
    for kind, p in (("image", path), ("reference", ref)):
        if p in unreadable:
            return _BadRow(f"unreadable {kind}", f"{kind} {p!r} is unreadable: {unreadable[p]}")
    return None


def _number(text: str, column: str) -> float:
    value = text.strip()
    if not value:
        raise _BadRow(column, f"column {column!r} is empty")
    try:
        number = float(value)
    except ValueError:
        raise _BadRow(column, f"column {column!r} has non-numeric value {value!r}") from None
    if not math.isfinite(number):
        raise _BadRow(column, f"column {column!r} has non-finite value {value!r}")
    return number


def _unreadable(paths: list[str]) -> dict[str, str]:
    """The paths whose image header cannot be read, with the reason."""
    shapes = _image_shapes(list(dict.fromkeys(paths)), "header")
    return {p: shape for p, shape in shapes.items() if isinstance(shape, str)}


def _check_sizes(table: MOSTable, patch_size: int) -> None:
    unique = list(dict.fromkeys(table.paths + (table.ref_paths or ())))
    shapes = _image_shapes(unique, "header")
    for path in unique:
        if isinstance(shapes[path], str):
            raise ValueError(f"Image {path!r} is unreadable: {shapes[path]}")
    small = [p for p in unique if min(shapes[p][:2]) < patch_size]
    if small:
        height, width = shapes[small[0]][:2]
        raise ValueError(
            f"Argument `patch_size` must be at most every image's smaller side (images are cropped, not resized). "
            f"Received: patch_size={patch_size}, but {len(small)} image(s) are smaller, e.g. {small[0]!r} "
            f"({height}x{width} pixels)"
        )
    if table.full_reference:
        for path, ref in zip(table.paths, table.ref_paths):
            if shapes[path][:2] != shapes[ref][:2]:
                raise ValueError(
                    f"A full-reference image and its reference must have the same size. Received: {path!r} "
                    f"{shapes[path][:2]} and {ref!r} {shapes[ref][:2]}"
                )


def _decode(path: tf.Tensor) -> tf.Tensor:
    """One image file as float32 RGB in [0, 1], `(H, W, 3)`, as the CLI reads it (see `decode_file`)."""
    return decode_file(path)
