"""BAPPS-layout folders → `tf.data` pipelines, usable by `model.fit` on every Keras backend.

2AFC batches are `((ref, p0, p1), judge)` and JND batches `((p0, p1), same)`:
images float32 `(N, patch_size, patch_size, 3)` channels last, in
`value_range` (`"[-1,1]"` by default, what `LPIPS` expects); labels float32
`(N,)` in [0, 1]. Stored images of another size are resized (bilinear,
antialiased), as the reference resizes BAPPS's 256-pixel patches to 64.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_percept.data.augment import TripletAugmentation, crop_and_flip, mixup, smooth_labels
from keras_percept.data.bad_data import warn_skipped
from keras_percept.data.epochs import epoch_order, item_seeds, over_epochs
from keras_percept.data.layout import ItemIndex, index_2afc, index_jnd
from keras_percept.images import load_image

VALUE_RANGES = ("[-1,1]", "[0,1]")


def load_2afc(
    root: str | os.PathLike,
    split: str = "train",
    categories: Sequence[str] | None = None,
    *,
    patch_size: int = 64,
    batch_size: int = 50,
    value_range: str = "[-1,1]",
    shuffle: bool = False,
    seed: int = 0,
    augment: TripletAugmentation | None = None,
    drop_remainder: bool = False,
    prefetch: bool = True,
    on_error: str = "raise",
    verify: str = "full",
    image_size: int | None = None,
    epochs: int | None = None,
    first_epoch: int = 0,
    steps_per_epoch: int | None = None,
) -> tf.data.Dataset:
    """2AFC triplets of a BAPPS-layout folder as batches `((ref, p0, p1), judge)`.

    `judge` is the fraction of judges who found `p1` closer to `ref`.
    Items come in category order, then file-name order, unless `shuffle`.

    Args:
        root: folder holding `2afc/` (BAPPS's `dataset/`, or the embedded set's root).
        split: `"train"` or `"val"`. Defaults to `"train"`.
        categories: category folders to read, e.g. `["traditional", "cnn"]`;
            `None` reads all present. Defaults to `None`.
        patch_size: side length of the returned images. Defaults to `64`.
        batch_size: items per batch. Defaults to `50` (the reference's).
        value_range: `"[-1,1]"` or `"[0,1]"`. Defaults to `"[-1,1]"`.
        shuffle: shuffle the items, in an order drawn from `(seed, epoch)`. Defaults to `False`.
        seed: seed for shuffling and augmentation. Defaults to `0`.
        augment: a `TripletAugmentation`, or `None` for none. Defaults to `None`.
        drop_remainder: drop a last, smaller batch. Defaults to `False`.
        prefetch: prefetch batches in the background. Defaults to `True`.
        on_error: `"raise"` or `"skip"` for bad items; see `index_2afc`.
            Defaults to `"raise"`.
        verify: `"full"` or `"header"`; see `index_2afc`. Defaults to `"full"`.
        image_size: required stored image size; see `index_2afc`. Defaults to `None`.
        epochs: `None` for one pass (epoch 0's order and draws, the same at
            every iteration); an int for the batches of epochs
            `first_epoch ... epochs - 1` in one dataset, each epoch's order
            and augmentation a pure function of `(seed, epoch)` (see
            `keras_percept.data.epochs`), for
            `fit(ds, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=...)`:
            a resumed run sees what the uninterrupted one saw. Defaults to `None`.
        first_epoch: the first epoch of the dataset (with `epochs`). Defaults to `0`.
        steps_per_epoch: batches per epoch (passes chain when longer than the
            data); `None` for one pass per epoch. Defaults to `None`.

    Example:

    >>> ds = load_2afc("dataset", "val", ["traditional"], batch_size=8)  # doctest: +SKIP
    >>> (ref, p0, p1), judge = next(iter(ds))  # doctest: +SKIP
    >>> ref.shape, judge.shape  # doctest: +SKIP
    (TensorShape([8, 64, 64, 3]), TensorShape([8]))
    """
    index = index_2afc(root, split, categories, on_error=on_error, verify=verify, image_size=image_size)
    warn_skipped(index.skipped, len(index) + len(index.skipped), os.path.join(os.fspath(root), "2afc", split))
    return dataset_from_index(
        index, patch_size=patch_size, batch_size=batch_size, value_range=value_range, shuffle=shuffle,
        seed=seed, augment=augment, drop_remainder=drop_remainder, prefetch=prefetch, epochs=epochs,
        first_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
    )


def load_2afc_by_category(
    root: str | os.PathLike,
    split: str = "val",
    categories: Sequence[str] | None = None,
    *,
    patch_size: int = 64,
    batch_size: int = 50,
    value_range: str = "[-1,1]",
    on_error: str = "raise",
    verify: str = "full",
    image_size: int | None = None,
) -> dict[str, tf.data.Dataset]:
    """One unshuffled, unaugmented 2AFC pipeline per category, for evaluation; arguments as in `load_2afc`.

    Example:

    >>> for category, ds in load_2afc_by_category("dataset", "val").items():  # doctest: +SKIP
    ...     print(category, ds.cardinality().numpy())
    """
    index = index_2afc(root, split, categories, on_error=on_error, verify=verify, image_size=image_size)
    return _per_category(index, os.path.join(os.fspath(root), "2afc", split),
                         patch_size=patch_size, batch_size=batch_size, value_range=value_range)


def load_jnd(
    root: str | os.PathLike,
    categories: Sequence[str] | None = None,
    *,
    patch_size: int = 64,
    batch_size: int = 50,
    value_range: str = "[-1,1]",
    on_error: str = "raise",
    verify: str = "full",
    image_size: int | None = None,
) -> tf.data.Dataset:
    """JND pairs of `<root>/jnd/val` as batches `((p0, p1), same)`, in order; arguments as in `load_2afc`.

    `same` is the fraction of judges who saw no difference between `p0` and `p1`.

    Example:

    >>> (p0, p1), same = next(iter(load_jnd("dataset", ["traditional"])))  # doctest: +SKIP
    """
    index = index_jnd(root, categories, on_error=on_error, verify=verify, image_size=image_size)
    warn_skipped(index.skipped, len(index) + len(index.skipped), os.path.join(os.fspath(root), "jnd", "val"))
    return dataset_from_index(index, patch_size=patch_size, batch_size=batch_size, value_range=value_range)


def load_jnd_by_category(
    root: str | os.PathLike,
    categories: Sequence[str] | None = None,
    *,
    patch_size: int = 64,
    batch_size: int = 50,
    value_range: str = "[-1,1]",
    on_error: str = "raise",
    verify: str = "full",
    image_size: int | None = None,
) -> dict[str, tf.data.Dataset]:
    """One JND pipeline per category (JND mAP is reported per category); arguments as in `load_jnd`.

    Example:

    >>> sorted(load_jnd_by_category("dataset"))  # doctest: +SKIP
    ['cnn', 'traditional']
    """
    index = index_jnd(root, categories, on_error=on_error, verify=verify, image_size=image_size)
    return _per_category(index, os.path.join(os.fspath(root), "jnd", "val"),
                         patch_size=patch_size, batch_size=batch_size, value_range=value_range)


def _per_category(index: ItemIndex, folder: str, **pipeline) -> dict[str, tf.data.Dataset]:
    """Warns about `index`'s skipped items, then `datasets_by_category`."""
    warn_skipped(index.skipped, len(index) + len(index.skipped), folder)
    return datasets_by_category(index, **pipeline)


def datasets_by_category(index: ItemIndex, **pipeline) -> dict[str, tf.data.Dataset]:
    """One unshuffled pipeline per category of `index` (e.g. one part of a split); `pipeline` as in
    `dataset_from_index`.

    Example:

    >>> sorted(datasets_by_category(index_2afc("dataset", "val"), batch_size=16))  # doctest: +SKIP
    ['cnn', 'traditional']
    """
    return {category: dataset_from_index(index.select(category), **pipeline) for category in index.category_names}


def dataset_from_index(
    index: ItemIndex,
    *,
    patch_size: int = 64,
    batch_size: int = 50,
    value_range: str = "[-1,1]",
    shuffle: bool = False,
    seed: int = 0,
    augment: TripletAugmentation | None = None,
    drop_remainder: bool = False,
    prefetch: bool = True,
    epochs: int | None = None,
    first_epoch: int = 0,
    steps_per_epoch: int | None = None,
) -> tf.data.Dataset:
    """The `tf.data` pipeline over a checked `ItemIndex`; arguments as in `load_2afc`.

    Example:

    >>> ds = dataset_from_index(index_2afc("dataset", "val"), batch_size=16)  # doctest: +SKIP
    """
    _check_positive_int("patch_size", patch_size)
    _check_positive_int("batch_size", batch_size)
    if value_range not in VALUE_RANGES:
        raise ValueError(f"Argument `value_range` must be one of {VALUE_RANGES}. Received: value_range={value_range!r}")
    augment = augment or TripletAugmentation()
    if augment.crop_size is not None and augment.crop_size > patch_size:
        raise ValueError(
            f"Augmentation `crop_size` must be <= patch_size={patch_size}. Received: crop_size={augment.crop_size}"
        )
    if len(index) == 0:
        raise ValueError(f"No usable items in {index.root!r} (split {index.split!r}); nothing to load.")

    if steps_per_epoch is not None:
        _check_positive_int("steps_per_epoch", steps_per_epoch)
    n = len(index)
    items = steps_per_epoch * batch_size if steps_per_epoch else n
    batches = steps_per_epoch or (n // batch_size if drop_remainder else -(-n // batch_size))
    paths = tuple(tf.constant(index.paths[d]) for d in index.image_dirs)
    labels = tf.constant(index.labels)

    def load(i, item_seed):
        images = tuple(_decode(tf.gather(p, i), patch_size) for p in paths)
        if augment.per_item:
            images = crop_and_flip(images, item_seed, augment)
        return images, tf.gather(labels, i)

    def one_epoch(epoch):
        order = epoch_order(n, seed=seed, epoch=epoch, items=items, shuffle=shuffle)
        ds = tf.data.Dataset.from_tensor_slices((order, item_seeds(seed, epoch, items)))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if augment.mixup_alpha > 0:
            batch_seeds = tf.data.Dataset.from_tensor_slices(item_seeds(seed + 1, epoch, batches))
            ds = tf.data.Dataset.zip((ds, batch_seeds)).map(
                lambda batch, s: mixup(batch[0], batch[1], s, augment.mixup_alpha))
        if augment.label_smoothing > 0:
            ds = ds.map(lambda images, label: (images, smooth_labels(label, augment.label_smoothing)))
        if value_range == "[-1,1]":
            ds = ds.map(lambda images, label: (tuple(2.0 * x - 1.0 for x in images), label))
        return ds

    if epochs is None:
        ds = one_epoch(tf.constant(0, tf.int64))
    else:
        ds = over_epochs(one_epoch, first_epoch=first_epoch, epochs=epochs, batches_per_epoch=batches)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def decode_file(path: tf.Tensor) -> tf.Tensor:
    """One image file as float32 RGB in [0, 1], `(H, W, 3)`, inside a `tf.data` pipeline.

    The pixels are those of `keras_percept.images.load_image` (the CLI's reader), run through
    `tf.numpy_function`: `tf.io.decode_image` ignores EXIF orientation and ICC profiles,
    reduces 16-bit colour to 8 bits and cannot read TIFF, so the pipelines and the CLI would
    otherwise see different images in the same file.

    Example:

    >>> image = decode_file(tf.constant("photo.jpg"))  # doctest: +SKIP
    >>> image.dtype, image.shape[-1]  # doctest: +SKIP
    (tf.float32, 3)
    """
    image = tf.numpy_function(_load_image_bytes_path, [path], tf.float32, stateful=False)
    image.set_shape((None, None, 3))
    return image


def _load_image_bytes_path(path: np.ndarray) -> np.ndarray:
    return load_image(os.fsdecode(np.asarray(path).item()))


def _decode(path: tf.Tensor, patch_size: int) -> tf.Tensor:
    """Reads one image as float32 RGB in [0, 1], resized to `patch_size` if its size differs."""
    image = decode_file(path)
    same_size = tf.reduce_all(tf.shape(image)[:2] == patch_size)
    image = tf.cond(
        same_size,
        lambda: image,
        lambda: tf.clip_by_value(
            tf.image.resize(image, (patch_size, patch_size), method="bilinear", antialias=True), 0.0, 1.0
        ),
    )
    image.set_shape((patch_size, patch_size, 3))
    return image


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Argument `{name}` must be a positive int. Received: {name}={value!r}")
