"""Triplet augmentation: one random crop/flip shared by every image of an item, mixup, label smoothing.

All functions are TensorFlow ops meant for `tf.data.Dataset.map`, seeded
statelessly so a pipeline is reproducible for a given seed.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class TripletAugmentation:
    """What to do to each training item. The default does nothing (the reference trains without augmentation).

    Args:
        crop_size: side of a random square crop taken at the same place from
            every image of an item; `None` keeps the full patch. Defaults to `None`.
        flip_left_right: mirror all images of an item together with
            probability 0.5. Defaults to `False`.
        flip_up_down: flip all images of an item upside down together with
            probability 0.5. Defaults to `False`.
        mixup_alpha: if > 0, each batch item is blended with another item of
            the batch, images and labels with the same weight
            `lam ~ Beta(alpha, alpha)`. Defaults to `0.0`.
        label_smoothing: labels `h` become `h * (1 - eps) + 0.5 * eps`.
            Defaults to `0.0`.

    Example:

    >>> aug = TripletAugmentation(crop_size=56, flip_left_right=True, label_smoothing=0.1)
    >>> ds = keras_percept.data.load_2afc(root, "train", augment=aug)  # doctest: +SKIP
    """

    crop_size: int | None = None
    flip_left_right: bool = False
    flip_up_down: bool = False
    mixup_alpha: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self):
        if self.crop_size is not None and (not isinstance(self.crop_size, int) or self.crop_size < 1):
            raise ValueError(
                f"Argument `crop_size` must be a positive int or None. Received: crop_size={self.crop_size!r}"
            )
        if not self.mixup_alpha >= 0:
            raise ValueError(f"Argument `mixup_alpha` must be >= 0. Received: mixup_alpha={self.mixup_alpha!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(
                f"Argument `label_smoothing` must be in [0, 1). Received: label_smoothing={self.label_smoothing!r}"
            )

    @property
    def per_item(self) -> bool:
        return self.crop_size is not None or self.flip_left_right or self.flip_up_down


def crop_and_flip(images: tuple[tf.Tensor, ...], seed: tf.Tensor, augmentation: TripletAugmentation):
    """Applies the same random crop and flips to every `(H, W, 3)` image of `images`.

    The images are stacked along channels so one random draw moves them all.

    Example:

    >>> ref = tf.random.uniform((64, 64, 3))
    >>> ref, p0, p1 = crop_and_flip((ref, 1 - ref, ref / 2), tf.constant([1, 2]), TripletAugmentation(crop_size=48))
    >>> ref.shape, bool(tf.reduce_all(p0 == 1 - ref))
    (TensorShape([48, 48, 3]), True)
    """
    stacked = tf.concat(images, axis=-1)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    if augmentation.crop_size is not None:
        size = [augmentation.crop_size, augmentation.crop_size, stacked.shape[-1]]
        stacked = tf.image.stateless_random_crop(stacked, size, seed=seeds[0])
    if augmentation.flip_left_right:
        stacked = tf.image.stateless_random_flip_left_right(stacked, seed=seeds[1])
    if augmentation.flip_up_down:
        stacked = tf.image.stateless_random_flip_up_down(stacked, seed=seeds[2])
    return tuple(tf.split(stacked, len(images), axis=-1))


def mixup(images: tuple[tf.Tensor, ...], labels: tf.Tensor, seed: tf.Tensor, alpha: float):
    """Blends each batch item with a random partner: images and labels with one weight per item.

    Example:

    >>> batch = tuple(tf.random.uniform((8, 64, 64, 3)) for _ in range(3))
    >>> (ref, p0, p1), judge = mixup(batch, tf.random.uniform((8,)), tf.constant([0, 1]), alpha=0.4)
    >>> judge.shape
    TensorShape([8])
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    n = tf.shape(labels)[0]
    # Beta(a, a) as g1 / (g1 + g2) with g ~ Gamma(a).
    g1 = tf.random.stateless_gamma([n], seed=seeds[0], alpha=alpha)
    g2 = tf.random.stateless_gamma([n], seed=seeds[1], alpha=alpha)
    lam = g1 / tf.maximum(g1 + g2, 1e-12)
    partner = tf.argsort(tf.random.stateless_uniform([n], seed=seeds[2]))
    lam_img = tf.reshape(lam, [-1, 1, 1, 1])
    mixed = tuple(lam_img * x + (1.0 - lam_img) * tf.gather(x, partner) for x in images)
    return mixed, lam * labels + (1.0 - lam) * tf.gather(labels, partner)


def smooth_labels(labels: tf.Tensor, epsilon: float) -> tf.Tensor:
    """Pulls labels towards 0.5: `h * (1 - epsilon) + 0.5 * epsilon`.

    Example:

    >>> smooth_labels(tf.constant([0.0, 1.0]), 0.1).numpy()
    array([0.05, 0.95], dtype=float32)
    """
    return labels * (1.0 - epsilon) + 0.5 * epsilon
