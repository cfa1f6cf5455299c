"""ST-LPIPS (shift-tolerant alex / vgg trunks) against the PyPI `stlpips-pytorch` reference.

The reference loads its own shipped weights, so these compare the published metric itself,
converted from the same file by `published_metric_path`.
"""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

from keras_percept.backbones import TRUNKS
from keras_percept.convert import convert_lpips, published_metric_path, trunk_layer_weights
from keras_percept.layers import BlurPool2D
from photo_utils import photo_pairs
from torch_reference import reference_stlpips, run_reference

pytestmark = pytest.mark.reference
TOL = 1e-5
NETS = ("alex-st", "vgg-st")


@pytest.fixture(scope="module")
def references():
    return {net: reference_stlpips(net.split("-")[0]) for net in NETS}


@pytest.fixture(scope="module")
def metrics():
    return {net: convert_lpips(net, trunk_weights=published_metric_path(net)) for net in NETS}


def _noise_pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, shape).astype(np.float32)
    return x0, np.clip(x0 + rng.normal(0, 0.3, shape), -1, 1).astype(np.float32)


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("shape", [(3, 64, 64, 3), (2, 67, 93, 3), (2, 129, 70, 3)])
def test_published_metric_equals_the_reference(references, metrics, photos, net, shape):
    """Odd and non-square sizes too: each blur's reflect padding and the stride-1 pools shift rows there."""
    for x0, x1 in (_noise_pair(shape), photo_pairs(photos, shape[1])):
        x0, x1 = x0[: shape[0], :, : shape[2]], x1[: shape[0], :, : shape[2]]
        got = keras.ops.convert_to_numpy(metrics[net]((x0, x1)))
        np.testing.assert_allclose(got, run_reference(references[net], x0, x1).ravel(), rtol=0, atol=TOL)
        assert np.ptp(got) > 0


@pytest.mark.parametrize("net", NETS)
def test_smallest_size_equals_the_reference_and_one_less_is_refused(references, metrics, net):
    size = TRUNKS[net].backbone.MIN_SIZE
    x0, x1 = _noise_pair((2, size, size, 3), seed=2)
    got = keras.ops.convert_to_numpy(metrics[net]((x0, x1)))
    np.testing.assert_allclose(got, run_reference(references[net], x0, x1).ravel(), rtol=0, atol=TOL)
    with pytest.raises(ValueError, match=f"at least {size}"):
        metrics[net].distance(x0[:, 1:, 1:], x1[:, 1:, 1:])


def test_spatial_map_equals_the_reference(metrics):
    reference = reference_stlpips("alex", spatial=True)
    x0, x1 = _noise_pair((2, 48, 56, 3), seed=4)
    got = keras.ops.convert_to_numpy(metrics["alex-st"].with_options(spatial=True)((x0, x1)))
    np.testing.assert_allclose(got, run_reference(reference, x0, x1), rtol=0, atol=TOL)


@pytest.mark.parametrize("filter_size", [1, 3, 4, 5])
@pytest.mark.parametrize("pad_more", [True, False])
def test_blur_pool_equals_the_reference_layer(filter_size, pad_more):
    import torch
    from stlpips_pytorch.models_lpf.downsample import Downsample

    x = np.random.default_rng(filter_size).normal(size=(2, 11, 14, 5)).astype(np.float32)
    layer = Downsample(filt_size=filter_size, stride=2, channels=5, pad_more=pad_more)
    with torch.no_grad():
        expected = layer(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    got = keras.ops.convert_to_numpy(BlurPool2D(filter_size, pad_more=pad_more)(x))
    assert got.shape == expected.shape == BlurPool2D(filter_size, pad_more=pad_more).compute_output_shape(x.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_blur_pool_channels_first_is_the_transpose():
    x = np.random.default_rng(0).normal(size=(2, 9, 10, 4)).astype(np.float32)
    last = keras.ops.convert_to_numpy(BlurPool2D()(x))
    first = keras.ops.convert_to_numpy(BlurPool2D(data_format="channels_first")(x.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(first.transpose(0, 2, 3, 1), last, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [({"filter_size": 8}, "filter_size"), ({"strides": 0}, "strides"),
                                           ({"data_format": "NCHW"}, "data_format")])
def test_blur_pool_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlurPool2D(**kwargs)


def test_a_changed_blur_filter_in_the_file_is_refused():
    from keras_percept.convert import load_pth

    state = load_pth(published_metric_path("alex-st"))
    trunk = {k: v for k, v in state.items() if k.startswith("net.")}
    trunk_layer_weights(trunk, "alex-st")  # the shipped file converts
    trunk["net.slice1.1.filt"] = trunk["net.slice1.1.filt"] * 1.01
    with pytest.raises(ValueError, match="binomial blur filter of `blur_1`"):
        trunk_layer_weights(trunk, "alex-st")


def test_keras_file_round_trip(metrics, tmp_path):
    path = str(tmp_path / "st.keras")
    metrics["vgg-st"].save(path)
    loaded = keras.saving.load_model(path)
    x0, x1 = _noise_pair((2, 40, 40, 3), seed=6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded((x0, x1))),
                                  keras.ops.convert_to_numpy(metrics["vgg-st"]((x0, x1))))


def test_without_the_package_the_error_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "stlpips_pytorch" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install stlpips-pytorch"):
        published_metric_path("alex-st")
    with pytest.raises(ValueError, match="alex-st"):
        published_metric_path("alex")
