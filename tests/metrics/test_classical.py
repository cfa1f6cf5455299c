"""Classical distances against NumPy and scikit-image computed independently."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from keras_percept.metrics.classical import CLASSICAL_DISTANCES, l2_distance, psnr_distance, ssim_distance
from keras_percept.metrics.twoafc import two_afc_score

pytestmark = pytest.mark.one_pass  # NumPy metrics


@pytest.fixture
def batches():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, 1, (3, 20, 20, 3))
    x1 = np.clip(x0 + rng.normal(0, [[[[0.02]]], [[[0.1]]], [[[0.3]]]], x0.shape), 0, 1)
    return x0, x1


def test_l2_hand_computed():
    x0 = np.zeros((2, 2, 2, 3))
    x1 = x0.copy()
    x1[1, 0, 0, 0] = 1.0  # one of 12 values differs by 1 (in [0,1] units)
    np.testing.assert_allclose(l2_distance(x0, x1, value_range="[0,1]"), [0.0, 1 / 12])
    np.testing.assert_allclose(l2_distance(2 * x0 - 1, 2 * x1 - 1), [0.0, 1 / 12])  # [-1,1] maps back to [0,1]


def test_l2_lab_and_psnr_and_ssim_match_skimage(batches):
    x0, x1 = batches
    lab = np.mean((rgb2lab(x0, channel_axis=-1) - rgb2lab(x1, channel_axis=-1)) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(l2_distance(x0, x1, value_range="[0,1]", colorspace="lab"), lab)
    psnr = [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(x0, x1)]
    np.testing.assert_allclose(psnr_distance(x0, x1, value_range="[0,1]"), -np.array(psnr))
    ssim = [structural_similarity(a, b, channel_axis=-1, data_range=1.0) for a, b in zip(x0, x1)]
    np.testing.assert_allclose(ssim_distance(2 * x0 - 1, 2 * x1 - 1), 1 - np.array(ssim))


def test_all_distances_grow_with_noise(batches):
    x0, x1 = batches
    for name, fn in CLASSICAL_DISTANCES.items():
        d = fn(x0, x1, value_range="[0,1]")
        assert d.shape == (3,) and np.all(np.diff(d) > 0), name


def test_psnr_and_l2_rank_alike(batches):
    x0, x1 = batches
    p0, p1 = x1, np.clip(x0 + 0.05, 0, 1)
    judge = np.array([0.2, 0.9, 0.5])
    unit = {"value_range": "[0,1]"}
    l2 = two_afc_score(l2_distance(x0, p0, **unit), l2_distance(x0, p1, **unit), judge)
    assert two_afc_score(psnr_distance(x0, p0, **unit), psnr_distance(x0, p1, **unit), judge) == l2


@pytest.mark.parametrize(
    "kwargs, match", [({"value_range": "0-255"}, "value_range"), ({"colorspace": "hsv"}, "colorspace")]
)
def test_invalid_arguments(batches, kwargs, match):
    with pytest.raises(ValueError, match=match):
        l2_distance(*batches, **kwargs)


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        ssim_distance(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 1)))
