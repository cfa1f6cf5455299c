"""IQAModel: output shapes for nr/fr with and without attention, pooling against NumPy, `.keras` round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_percept.models import IQAModel, PooledIQAHead


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _images(n=3, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.mark.parametrize("mode", ["nr", "fr"])
@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_output_is_one_score_per_image(mode, fusion):
    model = IQAModel(net="effnet-lite0", mode=mode, fusion=fusion, taps=(1, 3), pooling="avg_std", fusion_dim=8,
                     hidden=8)
    x = _images()
    y = model((x, x[::-1]) if mode == "fr" else x)
    assert tuple(y.shape) == (3, 1)
    assert np.all(np.isfinite(_np(y)))


def test_pooled_features_are_spatial_means_and_fr_adds_the_absolute_difference():
    model = IQAModel(net="alex", mode="fr", taps=(0, 2))
    x, ref = _images(2, 64, 1), _images(2, 64, 2)
    feats = [_np(f) for f in model.backbone(model.scaling(np.concatenate([x, ref])))]
    expected = np.concatenate(
        [np.concatenate([feats[t][:2].mean((1, 2)), np.abs(feats[t][:2] - feats[t][2:]).mean((1, 2))], -1)
         for t in (0, 2)], -1)
    np.testing.assert_allclose(_np(model.pooled_features((x, ref))), expected, rtol=1e-4, atol=1e-5)
    assert model.pooled_width == 2 * (64 + 384)


def test_head_on_pooled_features_equals_the_full_model():
    model = IQAModel(net="alex", fusion="attention", fusion_dim=8, hidden=8)
    x = _images(2, 64)
    head = PooledIQAHead(model)
    np.testing.assert_allclose(_np(head(model.pooled_features(x))), _np(model(x)), atol=1e-6)


def test_dropout_and_drop_path_act_only_in_training():
    model = IQAModel(net="alex", dropout=0.5, drop_path=0.5, hidden=16, seed=0)
    x = _images(8, 64)
    np.testing.assert_array_equal(_np(model(x)), _np(model(x)))
    assert not np.allclose(_np(model(x, training=True)), _np(model(x)))


def test_keras_file_round_trip(tmp_path):
    model = IQAModel(net="effnet-lite0", mode="fr", fusion="attention", taps=(2, 4), pooling="avg_std",
                     dropout=0.1, drop_path=0.2, fusion_dim=8, hidden=8, seed=3)
    x = _images()
    path = str(tmp_path / "iqa.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(_np(loaded((x, x[::-1]))), _np(model((x, x[::-1]))), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"net": "resnet"}, "Argument `net` must be one of"),
    ({"mode": "rr"}, "Argument `mode` must be one of"),
    ({"fusion": "sum"}, "Argument `fusion` must be one of"),
    ({"dropout": 1.0}, r"Argument `dropout` must be in \[0, 1\)"),
    ({"taps": (0, 9)}, r"Argument `taps` must be distinct indices in \[0, 5\)"),
    ({"hidden": 0}, "Argument `hidden` must be a positive integer"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IQAModel(**{"net": "alex", **kwargs})


def test_fr_model_needs_two_inputs():
    with pytest.raises(ValueError, match=r"mode='fr' takes \(image, reference\)"):
        IQAModel(net="alex", mode="fr")(_images(1, 64))
