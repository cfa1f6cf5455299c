"""`.keras` round trips in-process and in fresh processes on every backend."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_percept import LPIPS
from keras_percept.convert import save_model_atomic

BACKENDS = ("tensorflow", "jax", "torch")
HERE = os.path.dirname(__file__)


def _randomize_lins(model, seed):
    rng = np.random.default_rng(seed)
    for lin in model.lins:
        lin.kernel.assign(rng.uniform(0, 0.2, lin.kernel.shape).astype("float32"))


def _inputs(size=64, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (3, size, size, 3)).astype(np.float32)
    return x0, np.clip(x0 + rng.normal(0, 0.3, x0.shape), -1, 1).astype(np.float32)


@pytest.mark.parametrize("kwargs", [
    {"net": "alex"},
    {"net": "vgg", "version": "0.0"},
    {"net": "squeeze", "spatial": True, "input_range": "[0,1]"},
    {"net": "effnet-lite0", "lpips": False},
    {"net": "alex", "return_per_layer": True, "dropout": 0.5},
])
def test_in_process_round_trip(tmp_path, kwargs):
    model = LPIPS(**kwargs)
    _randomize_lins(model, 1)
    x0, x1 = _inputs()
    if kwargs.get("input_range") == "[0,1]":
        x0, x1 = (x0 + 1) / 2, (x1 + 1) / 2
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, LPIPS)
    assert loaded.get_config() == model.get_config()
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    expected, got = model.predict_on_batch((x0, x1)), loaded.predict_on_batch((x0, x1))
    for e, g in zip(keras.tree.flatten(expected), keras.tree.flatten(got)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_fresh_process_load_on_every_backend(tmp_path):
    """Saved under the current backend, loaded by `keras.saving.load_model` in new processes on all three."""
    models = [LPIPS(net="alex"), LPIPS(net="squeeze", spatial=True)]
    for k, model in enumerate(models):
        _randomize_lins(model, k)
    x0, x1 = _inputs(seed=4)
    np.savez(tmp_path / "inputs.npz", x0=x0, x1=x1)
    paths = []
    for k, model in enumerate(models):
        paths.append(str(tmp_path / f"model_{k}.keras"))
        save_model_atomic(model, paths[-1])
    expected = [np.asarray(m.predict_on_batch((x0, x1))) for m in models]
    for backend in BACKENDS:
        out = tmp_path / f"out_{backend}.npz"
        env = {**os.environ, "KERAS_BACKEND": backend}
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "fresh_process_load.py"), str(tmp_path / "inputs.npz"), str(out), *paths],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = np.load(out)
        assert str(results["backend"]) == backend
        for k, exp in enumerate(expected):
            got = results[f"model_{k}"]
            assert got.shape == exp.shape
            diff = np.abs(got - exp).max()
            print(f"saved on {keras.backend.backend()}, loaded on {backend}: model {k} max|d|={diff:.2e}")
            assert diff <= 1e-6


def test_save_requires_keras_extension(tmp_path):
    with pytest.raises(ValueError, match=r"must end in '\.keras'. Received: '.*model\.h5'"):
        save_model_atomic(LPIPS(net="alex"), str(tmp_path / "model.h5"))
    assert not os.listdir(tmp_path)
