"""DropPath and ScaleAttention: behaviour in training vs inference, NumPy reference, serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_percept.layers import DropPath, ScaleAttention


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_drop_path_drops_whole_samples_in_training_and_rescales_the_rest():
    x = np.random.default_rng(0).uniform(1, 2, (2000, 5)).astype("float32")
    y = _np(DropPath(0.25, seed=3)(x, training=True))
    dropped = np.all(y == 0, axis=1)
    kept = ~dropped
    assert np.all(np.any(y != 0, axis=1) == kept)  # a row is all zero or not at all
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    assert abs(dropped.mean() - 0.25) < 0.04  # binomial std at n=2000 is 0.0097


def test_drop_path_is_the_identity_at_inference_and_at_rate_zero():
    x = np.random.default_rng(1).normal(size=(8, 3, 3, 2)).astype("float32")
    np.testing.assert_array_equal(_np(DropPath(0.5)(x, training=False)), x)
    np.testing.assert_array_equal(_np(DropPath(0.0)(x, training=True)), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, True, "0.5"])
def test_drop_path_rejects_bad_rates(rate):
    with pytest.raises(ValueError, match=r"Argument `rate` must be a number in \[0, 1\)"):
        DropPath(rate)


def test_scale_attention_matches_a_numpy_reference():
    layer = ScaleAttention((3, 5), dim=4, seed=0)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(6, 3)).astype("float32"), rng.normal(size=(6, 5)).astype("float32")]
    y, a = layer(xs, return_weights=True)
    h = [x @ _np(p.kernel) + _np(p.bias) for p, x in zip(layer.projections, xs)]
    s = np.stack([(np.tanh(hk) @ _np(layer.score.kernel))[:, 0] for hk in h], axis=1)
    w = np.exp(s - s.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    np.testing.assert_allclose(_np(a), w, atol=1e-6)
    np.testing.assert_allclose(_np(y), w[:, 0:1] * h[0] + w[:, 1:2] * h[1], atol=1e-5)


def test_scale_attention_round_trips_its_config_and_checks_arguments():
    layer = ScaleAttention((3, 5), dim=4, drop_path=0.1, seed=7)
    clone = ScaleAttention.from_config(layer.get_config())
    assert (clone.input_dims, clone.dim, clone.drop_path, clone.seed) == ([3, 5], 4, 0.1, 7)
    with pytest.raises(ValueError, match="Argument `dim` must be a positive integer"):
        ScaleAttention((3,), dim=0)
    with pytest.raises(ValueError, match="ScaleAttention expects 2 inputs"):
        layer([np.zeros((1, 3), "float32")])
