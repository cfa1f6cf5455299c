"""Layer numerics against NumPy / the reference formulas, and finite gradients."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from backend_utils import value_and_grad
from keras_percept.layers import CeilMaxPooling2D, ChannelUnitNormalization, InputScaling, unit_normalize


def test_input_scaling_matches_reference_constants():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 5, 3)).astype(np.float32)
    got = keras.ops.convert_to_numpy(InputScaling()(x))
    shift = np.array([-0.030, -0.088, -0.188], np.float32)
    scale = np.array([0.458, 0.448, 0.450], np.float32)
    np.testing.assert_allclose(got, (x - shift) / scale, rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"shift": (0, 0), "scale": (1, 1, 1)}, "same length"),
    ({"scale": (1, 0, 1)}, "must be positive"),
])
def test_input_scaling_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InputScaling(**kwargs)


def test_unit_normalize_forward_equals_reference_formula():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(2, 4, 4, 7)).astype(np.float32)
    f[0, 0, 0] = 0.0  # an all-zero feature vector
    expected = f / (np.sqrt((f ** 2).sum(-1, keepdims=True)) + 1e-10)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(unit_normalize(f)), expected, rtol=1e-6, atol=0)


def test_unit_normalize_gradient_is_finite_at_zero_features():
    """The reference divides by sqrt(sum f^2) + 1e-10, whose gradient is NaN at f = 0."""
    f = np.zeros((1, 2, 2, 4), np.float32)
    f[0, 1, 1] = [1.0, 2.0, 0.0, 2.0]
    weights = np.arange(16, dtype=np.float32).reshape(f.shape)
    _, grad = value_and_grad(lambda t: keras.ops.sum(unit_normalize(t) * keras.ops.convert_to_tensor(weights)), f)
    assert np.isfinite(grad).all()
    # Where the features are non-zero, the gradient is the analytic one:
    # d/df (w . f/|f|) = (w - (w . u) u) / |f| with u = f/|f| (eps negligible).
    v = f[0, 1, 1]
    u = v / np.linalg.norm(v)
    w = weights[0, 1, 1]
    np.testing.assert_allclose(grad[0, 1, 1], (w - (w @ u) * u) / np.linalg.norm(v), rtol=1e-5, atol=1e-5)


def test_reference_normalization_really_gives_nan_gradient():
    """Documents the bug being avoided (needs torch, always installed in the dev extra)."""
    torch = pytest.importorskip("torch")
    f = torch.zeros((1, 4, 2, 2), requires_grad=True)
    out = f / (torch.sqrt((f ** 2).sum(1, keepdim=True)) + 1e-10)
    out.sum().backward()
    assert torch.isnan(f.grad).any()


def test_channel_unit_normalization_config_round_trip():
    layer = ChannelUnitNormalization(epsilon=1e-6)
    clone = ChannelUnitNormalization.from_config(layer.get_config())
    assert clone.epsilon == 1e-6
    with pytest.raises(ValueError, match="epsilon"):
        ChannelUnitNormalization(epsilon=-1.0)


@pytest.mark.parametrize("size", [4, 5, 6, 7, 16, 17])
def test_ceil_max_pooling_matches_torch_ceil_mode(size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype(np.float32)
    expected = torch.nn.functional.max_pool2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, stride=2, ceil_mode=True
    ).numpy().transpose(0, 2, 3, 1)
    got = keras.ops.convert_to_numpy(CeilMaxPooling2D()(x))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
