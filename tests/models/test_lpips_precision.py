"""`LPIPS(precision="bfloat16")`: the trunk in bfloat16, the rest in float32, on every backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from backend_utils import value_and_grad

from keras_percept import LPIPS
from keras_percept.losses import PerceptualLoss
from keras_percept.models import lpips as lpips_module



@pytest.fixture(autouse=True)
def bfloat16_cpu(monkeypatch):
    """The bfloat16 path is tested on every CPU: where it has no bfloat16 instructions, emulated (slower, same
    numbers). The fallback test below sets the opposite."""
    monkeypatch.setattr(lpips_module, "cpu_has_bfloat16", lambda: True)


def _pairs(n: int = 6, size: int = 48):
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    return x0, np.clip(x0 + rng.normal(0, 0.3, x0.shape), -1, 1).astype(np.float32)


def _twins(net: str = "alex"):
    keras.utils.set_random_seed(0)
    full = LPIPS(net=net)
    half = LPIPS(net=net, precision="bfloat16")
    half.set_weights(full.get_weights())
    return full, half


def test_the_trunk_runs_in_bfloat16_and_the_distance_in_float32():
    full, half = _twins()
    assert half.backbone.dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == "float32" for w in half.weights)  # weights stay float32
    x0, x1 = _pairs()
    taps = half.normalized_features(keras.ops.convert_to_tensor(x0))
    assert {keras.backend.standardize_dtype(t.dtype) for t in taps} == {"float32"}
    raw = half.backbone(half.scaling(keras.ops.convert_to_tensor(x0)))
    assert {keras.backend.standardize_dtype(t.dtype) for t in raw} == {"bfloat16"}  # the trunk's own arithmetic
    d_full, d_half = full.distance(x0, x1), half.distance(x0, x1)
    assert d_half.dtype == np.float32
    relative = np.abs(d_half - d_full) / d_full
    assert 0 < relative.max() < 0.02, relative  # bfloat16 has 8 bits of mantissa: not equal, but close
    np.testing.assert_array_equal(half.distance(x0, x0), 0.0)


def test_without_cpu_support_it_falls_back_to_float32_with_a_warning(monkeypatch):
    monkeypatch.setattr(lpips_module, "cpu_has_bfloat16", lambda: False)
    monkeypatch.setattr(lpips_module, "_has_accelerator", lambda: False)
    with pytest.warns(UserWarning, match="no bfloat16 instructions .* the trunk runs in float32"):
        metric = LPIPS(net="squeeze", precision="bfloat16")
    assert metric.backbone.dtype_policy.name == "float32"
    assert metric.get_config()["precision"] == "bfloat16"  # what was asked for, kept for a machine that has it


def test_precision_round_trips_and_a_bad_value_is_named(tmp_path):
    _, half = _twins("squeeze")
    assert half.backbone.dtype_policy.name == "mixed_bfloat16"
    path = str(tmp_path / "half.keras")
    half.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.precision == "bfloat16"
    assert loaded.backbone.dtype_policy.name == half.backbone.dtype_policy.name
    x0, x1 = _pairs(2, 32)
    np.testing.assert_array_equal(loaded.distance(x0, x1), half.distance(x0, x1))
    assert half.with_options(precision="float32").backbone.dtype_policy.name == "float32"
    with pytest.raises(ValueError, match=r"`precision` must be one of \('float32', 'bfloat16'\). Received: "
                                         r"precision='float16'"):
        LPIPS(net="squeeze", precision="float16")
    with pytest.raises(ValueError, match=r"`precision` must be one of .* or None. Received: precision='half'"):
        PerceptualLoss(LPIPS(net="squeeze"), precision="half")


def test_a_bfloat16_perceptual_loss_gives_finite_image_gradients_close_to_float32():
    full, _ = _twins("squeeze")
    x0, x1 = _pairs(2, 32)
    loss_full = PerceptualLoss(full)
    loss_half = PerceptualLoss(full, precision="bfloat16")
    assert loss_half.metric.backbone.dtype_policy.name == "mixed_bfloat16"
    restored = PerceptualLoss.from_config(loss_half.get_config())  # its precision survives the config
    assert restored.precision == "bfloat16" and restored.metric.backbone.dtype_policy.name == "mixed_bfloat16"
    value_full, value_half = float(loss_full(x0, x1)), float(loss_half(x0, x1))
    assert value_half == pytest.approx(value_full, rel=0.02)
    _, gradient = value_and_grad(lambda x: loss_half(x0, x), x1, jit=True)  # d loss / d x1
    _, gradient_full = value_and_grad(lambda x: loss_full(x0, x), x1, jit=True)
    assert gradient.dtype == np.float32 and np.isfinite(gradient).all() and np.abs(gradient).max() > 0
    cosine = np.sum(gradient * gradient_full) / (np.linalg.norm(gradient) * np.linalg.norm(gradient_full))
    assert cosine > 0.9, cosine  # the same direction of descent
