"""`PerceptualLoss`: values against the PyPI `lpips` reference, gradients, frozen metric, serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from backend_utils import value_and_grad
from photo_utils import photo_pairs
from keras_percept.convert import convert_lpips, save_model_atomic, split_lpips_state_dict
from keras_percept.losses import PerceptualLoss
from keras_percept.models.lpips import LPIPS
from torch_reference import reference_lpips, run_reference, state_dict_numpy

TOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    """The reference `lpips.LPIPS(net="alex")` (seeded trunk, official lin weights) and its Keras conversion."""
    ref = reference_lpips("alex", seed=3)
    trunk, _ = split_lpips_state_dict(state_dict_numpy(ref))
    return ref, convert_lpips("alex", trunk_weights=trunk, lin_weights="official")


@pytest.fixture(scope="module")
def pairs(photos):
    return photo_pairs(photos, 64, seed=2)  # 4 real-photo crops and distorted copies in [-1, 1]


def test_value_is_mean_reference_distance(reference, pairs):
    ref, metric = reference
    y_true, y_pred = pairs
    expected = run_reference(ref, y_true, y_pred).ravel()
    loss = float(keras.ops.convert_to_numpy(PerceptualLoss(metric)(y_true, y_pred)))
    np.testing.assert_allclose(loss, expected.mean(), rtol=0, atol=TOL)
    per_sample = PerceptualLoss(metric, reduction=None)(y_true, y_pred)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_sample), expected, rtol=0, atol=TOL)
    assert np.ptp(expected) > 1e-3  # distinct per image, so the per-sample order is checked too


def test_input_range_override_matches_reference_normalize(reference, pairs):
    ref, metric = reference
    y_true, y_pred = ((x + 1) / 2 for x in pairs)
    expected = run_reference(ref, y_true, y_pred, normalize=True).ravel()
    loss = PerceptualLoss(metric, input_range="[0,1]", reduction=None)
    assert loss.metric.input_range == "[0,1]" and metric.input_range == "[-1,1]"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(y_true, y_pred)), expected, rtol=0, atol=TOL)


def test_gradients_finite_and_zero_at_identical_images(reference, pairs):
    _, metric = reference
    loss = PerceptualLoss(metric)
    y_true, y_pred = pairs
    value, grad = value_and_grad(lambda x: loss(y_true, x), y_true.copy())
    assert value == 0.0
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad, 0.0)  # the minimum: every squared difference has zero slope there
    value, grad = value_and_grad(lambda x: loss(y_true, x), y_pred)
    assert value > 0 and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_a_step_against_the_gradient_lowers_the_loss(reference, pairs):
    """Gradient direction check: a small step along -grad lowers the loss by about lr * |grad|^2."""
    _, metric = reference
    loss = PerceptualLoss(metric)
    y_true, y_pred = pairs
    value, grad = value_and_grad(lambda x: loss(y_true, x), y_pred)
    lr = 1e-3 / float(np.sum(grad * grad))
    stepped = float(keras.ops.convert_to_numpy(loss(y_true, y_pred - lr * grad)))
    predicted_drop = lr * float(np.sum(grad * grad))
    assert value - stepped == pytest.approx(predicted_drop, rel=0.2)


def test_metric_is_frozen_and_only_the_generator_trains(reference, pairs):
    _, metric = reference
    metric_before = [np.array(w) for w in metric.get_weights()]
    loss = PerceptualLoss(metric)
    assert not loss.metric.trainable and loss.metric.trainable_weights == []
    generator = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    generator_before = [np.array(w) for w in generator.get_weights()]
    generator.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    y_true, y_pred = pairs
    history = generator.fit(y_pred, y_true, batch_size=2, epochs=2, verbose=0)
    assert len(generator.trainable_weights) == 2  # kernel and bias: nothing of the metric
    assert all(np.isfinite(history.history["loss"]))
    for before, after in zip(metric_before, metric.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(np.abs(b - a).max() > 0 for b, a in zip(generator_before, generator.get_weights()))


def test_config_round_trip_from_net_arguments():
    loss = PerceptualLoss(net="squeeze", version="0.0", pretrained=False, input_range="[0,1]", reduction="sum")
    config = loss.get_config()
    assert config["metric"] is None
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, PerceptualLoss) and restored.get_config() == config
    assert (restored.metric.net, restored.metric.version, restored.metric.input_range) == ("squeeze", "0.0", "[0,1]")


def test_config_round_trip_from_path_keeps_weights(tmp_path, reference, pairs):
    _, metric = reference
    path = str(tmp_path / "metric.keras")
    save_model_atomic(metric, path)
    loss = PerceptualLoss(path)
    restored = PerceptualLoss.from_config(loss.get_config())
    assert restored.get_config() == loss.get_config() and restored.get_config()["metric"] == path
    y_true, y_pred = pairs
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(y_true, y_pred)),
                                  keras.ops.convert_to_numpy(PerceptualLoss(metric)(y_true, y_pred)))


def test_config_round_trip_of_an_instance_warns_that_weights_are_new(reference):
    _, metric = reference
    loss = PerceptualLoss(metric)
    config = loss.get_config()
    assert config["metric"]["class_name"] == "LPIPS"
    with pytest.warns(UserWarning, match="weights are newly initialised"):
        restored = PerceptualLoss.from_config(config)
    assert restored.metric.get_config() == metric.get_config()


def test_generator_compiled_with_the_loss_saves_and_loads(tmp_path, reference, pairs):
    _, metric = reference
    metric_path = str(tmp_path / "metric.keras")
    save_model_atomic(metric, metric_path)
    generator = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    generator.compile(optimizer="adam", loss=PerceptualLoss(metric_path))
    path = str(tmp_path / "generator.keras")
    generator.save(path)
    loaded = keras.saving.load_model(path)  # default safe_mode=True
    assert isinstance(loaded.loss, PerceptualLoss) and loaded.loss.metric_source == metric_path
    y_true, y_pred = pairs
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.loss(y_true, y_pred)),
                                  keras.ops.convert_to_numpy(generator.loss(y_true, y_pred)))


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"`input_range` must be one of .* Received: input_range='0-255'"):
        PerceptualLoss(LPIPS(net="alex"), input_range="0-255")
    with pytest.raises(ValueError, match=r"spatial=False.*Received: spatial=True"):
        PerceptualLoss(LPIPS(net="alex", spatial=True))
    with pytest.raises(ValueError, match=r"must be None, an LPIPS, DISTS or ELPIPS model .* Received: Sequential"):
        PerceptualLoss(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(FileNotFoundError, match=r"no such .keras file: '.*missing\.keras'"):
        PerceptualLoss(str(tmp_path / "missing.keras"))
