"""keras_percept.LPIPS against the PyPI `lpips` 0.1.4 reference (PyTorch CPU).

Same seeded random torchvision trunk in both, the real shipped linear weights
(`lpips/weights/v*/{net}.pth`) converted through `lin_weights="official"`.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from photo_utils import photo_pairs
from keras_percept.convert import convert_lpips, official_lin_path, split_lpips_state_dict
from torch_reference import reference_lpips, run_reference, state_dict_numpy

pytestmark = pytest.mark.reference
TOL = 1e-5
NETS = ("alex", "vgg", "squeeze")


@pytest.fixture(scope="module")
def references():
    return {net: reference_lpips(net, seed=7) for net in NETS}


def _convert(ref, net, **kwargs):
    trunk, _ = split_lpips_state_dict(state_dict_numpy(ref))
    return convert_lpips(net, trunk_weights=trunk, lin_weights="official", **kwargs)


def _noise_pair(size, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (4, size, size, 3)).astype(np.float32)
    x1 = np.clip(x0 + rng.normal(0, 0.4, x0.shape), -1, 1).astype(np.float32)
    return x0, x1


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("spatial", [False, True])
def test_distance_matches_reference(references, photos, net, size, spatial):
    ref = references[net]
    ref.spatial = spatial
    model = _convert(ref, net, spatial=spatial)
    for x0, x1 in (_noise_pair(size), photo_pairs(photos, size)):
        expected = run_reference(ref, x0, x1)
        got = keras.ops.convert_to_numpy(model((x0, x1)))
        assert got.shape == ((4,) if not spatial else (4, size, size, 1))
        np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=0, atol=TOL)
        assert np.ptp(got) > 0  # the pairs differ, so a constant output would be a bug
    ref.spatial = False


@pytest.mark.parametrize("net", NETS)
def test_odd_sizes_and_non_square(references, net):
    ref = references[net]
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1, 1, (4, 67, 93, 3)).astype(np.float32)
    x1 = rng.uniform(-1, 1, (4, 67, 93, 3)).astype(np.float32)
    model = _convert(ref, net)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model((x0, x1))), run_reference(ref, x0, x1).ravel(), atol=TOL, rtol=0
    )


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_per_layer_and_zero_one_range(references, photos, net):
    ref = references[net]
    model = _convert(ref, net, input_range="[0,1]", return_per_layer=True)
    x0, x1 = photo_pairs(photos, 64, seed=5)
    x0, x1 = (x0 + 1) / 2, (x1 + 1) / 2
    total_ref, layers_ref = run_reference(ref, x0, x1, normalize=True, per_layer=True)
    total, layers = model((x0, x1))
    assert len(layers) == len(layers_ref) == len(model.tap_channels)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(total), total_ref.ravel(), atol=TOL, rtol=0)
    for got, expected in zip(layers, layers_ref):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected.ravel(), atol=TOL, rtol=0)


@pytest.mark.parametrize("net", NETS)
def test_version_0_0(net):
    ref = reference_lpips(net, seed=11, version="0.0")
    trunk, _ = split_lpips_state_dict(state_dict_numpy(ref))
    model = convert_lpips(net, version="0.0", trunk_weights=trunk, lin_weights="official")
    x0, x1 = _noise_pair(64, seed=2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model((x0, x1))), run_reference(ref, x0, x1).ravel(), atol=TOL, rtol=0
    )
    assert official_lin_path(net, "0.0").endswith(f"v0.0/{net}.pth")


@pytest.mark.parametrize("spatial", [False, True])
def test_uncalibrated_baseline(spatial):
    ref = reference_lpips("alex", seed=4, lpips=False, spatial=spatial)
    trunk, lins = split_lpips_state_dict(state_dict_numpy(ref))
    assert lins == {}
    model = convert_lpips("alex", trunk_weights=trunk, lpips=False, spatial=spatial)
    assert model.lins == []
    x0, x1 = _noise_pair(64, seed=9)
    got = keras.ops.convert_to_numpy(model((x0, x1)))
    np.testing.assert_allclose(got, run_reference(ref, x0, x1).reshape(got.shape), atol=1e-4, rtol=1e-6)


def test_full_reference_state_dict_converts(references):
    """A whole `lpips.LPIPS` state dict (trunk + lin + lins aliases) loads in one go."""
    ref = references["squeeze"]
    model = convert_lpips("squeeze", trunk_weights=state_dict_numpy(ref), lin_weights=None)
    x0, x1 = _noise_pair(64, seed=1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model((x0, x1))), run_reference(ref, x0, x1).ravel(), atol=TOL, rtol=0
    )


@pytest.mark.parametrize("net", NETS)
def test_minimum_size_is_the_reference_limit(references, net):
    """MIN_SIZE runs in the reference; one pixel less fails there too."""
    import torch

    from keras_percept.backbones import BACKBONES

    size = BACKBONES[net].MIN_SIZE
    ref = references[net]
    with torch.no_grad():
        ref(torch.zeros(1, 3, size, size), torch.ones(1, 3, size, size) * 0.5)
        with pytest.raises(RuntimeError, match="Output size is too small"):
            ref(torch.zeros(1, 3, size - 1, size - 1), torch.ones(1, 3, size - 1, size - 1) * 0.5)
