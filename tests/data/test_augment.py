"""Triplet augmentation: one crop/flip for all three images, mixup with mixed labels, label smoothing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from bapps_fixture import write_label, write_png

from keras_percept.data import TripletAugmentation, load_2afc
from keras_percept.data.augment import crop_and_flip, mixup, smooth_labels

pytestmark = pytest.mark.one_pass  # tf.data augmentation

SIZE, CROP = 16, 10


@pytest.fixture
def related_triplets(tmp_path):
    """Triplets whose p0 = 255 - ref and p1 = ref // 2, so a shared transform keeps those relations."""
    root = str(tmp_path)
    rng = np.random.default_rng(0)
    refs = []
    for i in range(6):
        ref = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        folder = os.path.join(root, "2afc", "train", "traditional")
        for name, pixels in (("ref", ref), ("p0", 255 - ref), ("p1", ref // 2)):
            write_png(os.path.join(folder, name, f"{i:06d}.png"), pixels)
        write_label(os.path.join(folder, "judge", f"{i:06d}.npy"), np.array([i / 5]))
        refs.append(ref.astype(np.float32) / 255)
    return root, refs


def _placements(image, original):
    """All (top, left, flip_lr, flip_ud) at which `image` is a crop of `original`."""
    found = []
    for flip_lr in (False, True):
        for flip_ud in (False, True):
            source = original[::-1 if flip_ud else 1, ::-1 if flip_lr else 1]
            for top in range(SIZE - CROP + 1):
                for left in range(SIZE - CROP + 1):
                    if np.allclose(source[top:top + CROP, left:left + CROP], image, atol=1e-6):
                        found.append((top, left, flip_lr, flip_ud))
    return found


def test_same_crop_and_flip_lands_on_all_three_images(related_triplets):
    root, refs = related_triplets
    aug = TripletAugmentation(crop_size=CROP, flip_left_right=True, flip_up_down=True)
    ds = load_2afc(root, "train", patch_size=SIZE, batch_size=6, value_range="[0,1]", augment=aug, seed=1)
    placements = set()
    for _ in range(2):  # two epochs: new random draws
        (ref, p0, p1), judge = next(iter(ds))
        ref, p0, p1 = np.asarray(ref), np.asarray(p0), np.asarray(p1)
        assert ref.shape == (6, CROP, CROP, 3)
        for i in range(6):
            found = _placements(ref[i], refs[i])
            assert found, "the augmented ref is not a crop/flip of the stored ref"
            placements.update(found)
            np.testing.assert_allclose(p0[i], 1.0 - ref[i], atol=1e-6)
            np.testing.assert_allclose(p1[i], np.floor(ref[i] * 255 / 2) / 255, atol=1e-6)
        np.testing.assert_allclose(np.asarray(judge), np.arange(6) / 5, atol=1e-6)  # labels untouched
    assert len({p[:2] for p in placements}) > 1 and {p[2] for p in placements} == {False, True}


def test_augmentation_is_reproducible_for_a_seed(related_triplets):
    root, _ = related_triplets
    aug = TripletAugmentation(crop_size=CROP, flip_left_right=True)
    first, again, other = (
        np.asarray(next(iter(load_2afc(root, "train", patch_size=SIZE, augment=aug, seed=s)))[0][0]) for s in (4, 4, 5)
    )
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_crop_and_flip_direct():
    base = tf.reshape(tf.range(SIZE * SIZE * 3, dtype=tf.float32), (SIZE, SIZE, 3))
    aug = TripletAugmentation(crop_size=CROP, flip_left_right=True)
    a, b, c = crop_and_flip((base, base + 1000.0, -base), tf.constant([3, 9]), aug)
    np.testing.assert_array_equal(b.numpy(), a.numpy() + 1000.0)
    np.testing.assert_array_equal(c.numpy(), -a.numpy())


def test_mixup_mixes_images_and_labels_with_one_weight():
    values = tf.constant([0.0, 0.2, 0.7, 1.0])
    constant = tf.ones((4, 3, 3, 3)) * tf.reshape(values, (4, 1, 1, 1))
    (ref, p0, p1), labels = mixup((constant, 2.0 * constant, 1.0 - constant), values, tf.constant([1, 2]), alpha=0.4)
    labels = labels.numpy()
    assert np.all((labels >= 0) & (labels <= 1))
    assert not np.allclose(labels, values.numpy())  # something was mixed
    for i in range(4):  # each image is the same blend as its label
        np.testing.assert_allclose(ref.numpy()[i], labels[i], atol=1e-6)
        np.testing.assert_allclose(p0.numpy()[i], 2 * labels[i], atol=1e-6)
        np.testing.assert_allclose(p1.numpy()[i], 1 - labels[i], atol=1e-6)


def test_mixup_and_smoothing_in_the_pipeline(related_triplets):
    root, _ = related_triplets
    aug = TripletAugmentation(mixup_alpha=0.4, label_smoothing=0.2)
    (ref, p0, p1), judge = next(iter(load_2afc(root, "train", patch_size=SIZE, augment=aug, value_range="[0,1]")))
    judge = judge.numpy()
    assert np.all((judge >= 0.1 - 1e-6) & (judge <= 0.9 + 1e-6))  # smoothed: [0, 1] -> [0.1, 0.9]
    np.testing.assert_allclose(p0.numpy(), 1.0 - ref.numpy(), atol=1e-5)  # relation survives a shared blend


def test_label_smoothing_values():
    np.testing.assert_allclose(smooth_labels(tf.constant([0.0, 0.4, 1.0]), 0.1).numpy(), [0.05, 0.41, 0.95], atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"crop_size": 0}, "crop_size"), ({"mixup_alpha": -1.0}, "mixup_alpha"), ({"label_smoothing": 1.0}, "label_smoothing")],
)
def test_invalid_augmentation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TripletAugmentation(**kwargs)


def test_crop_larger_than_patch_is_rejected(related_triplets):
    with pytest.raises(ValueError, match="crop_size"):
        load_2afc(related_triplets[0], "train", patch_size=SIZE, augment=TripletAugmentation(crop_size=SIZE + 1))
