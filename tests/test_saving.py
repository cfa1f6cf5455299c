"""`.keras` round trips in-process and in fresh processes on every backend."""

from __future__ import annotations

import json
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


# Loads every file with `keras.saving.load_model(path)` (safe_mode=True, the default) after nothing
# but `import keras_percept`; prints what loaded, what it computes, and what was refused.
SAFE_MODE_LOAD = """
import json, sys
import numpy as np, keras
import keras_percept
data = np.load(sys.argv[1])
result = {"backend": keras.backend.backend()}
for path in sys.argv[2:]:
    try:
        model = keras.saving.load_model(path)
    except ValueError as err:
        result[path] = {"refused": str(err)}
        continue
    entry = {"class": type(model).__name__, "loss": type(getattr(model, "loss", None)).__name__}
    if type(model).__name__ == "TwoAFCModel":
        entry["output"] = np.asarray(model.predict_on_batch((data["x0"], data["x1"], data["x0"]))).tolist()
    result[path] = entry
print(json.dumps(result))
"""


@pytest.mark.slow
@pytest.mark.one_pass  # loads on all 3 backends from the TF pass; every pass: test_fresh_process_load_on_every_backend
def test_fresh_process_safe_mode_loads_trained_models_and_refuses_lambdas(tmp_path):
    """A 2AFC training model, a metric and a generator compiled with PerceptualLoss load with safe_mode on,
    on every backend; a control file with a Lambda layer is refused there, so the check has teeth."""
    from keras_percept.losses import PerceptualLoss
    from keras_percept.models.comparison import Dist2Logit
    from keras_percept.models.twoafc import TwoAFCModel

    metric = LPIPS(net="alex")
    _randomize_lins(metric, 5)
    metric_path = str(tmp_path / "metric.keras")
    save_model_atomic(metric, metric_path)
    twoafc = TwoAFCModel(metric, Dist2Logit())
    generator = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    generator.compile(optimizer="sgd", loss=PerceptualLoss(metric_path))
    control = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: 2.0 * x)])
    paths = {name: str(tmp_path / f"{name}.keras") for name in ("twoafc", "generator", "control")}
    for name, model in (("twoafc", twoafc), ("generator", generator), ("control", control)):
        save_model_atomic(model, paths[name])
    x0, x1 = _inputs(seed=6)
    np.savez(tmp_path / "inputs.npz", x0=x0, x1=x1)
    expected = np.asarray(twoafc.predict_on_batch((x0, x1, x0)))
    for backend in BACKENDS:
        proc = subprocess.run(
            [sys.executable, "-c", SAFE_MODE_LOAD, str(tmp_path / "inputs.npz"), metric_path, *paths.values()],
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["backend"] == backend
        assert result[metric_path]["class"] == "LPIPS"
        assert result[paths["twoafc"]]["class"] == "TwoAFCModel"
        np.testing.assert_allclose(np.array(result[paths["twoafc"]]["output"]), expected, rtol=0, atol=1e-5)
        assert result[paths["generator"]] == {"class": "Sequential", "loss": "PerceptualLoss"}
        assert "safe_mode" in result[paths["control"]]["refused"]


# What a `keras-percept train` run leaves behind, loaded with nothing but `import keras_percept`.
TRAINED_LOAD = """
import json, sys
import numpy as np, keras
import keras_percept
data = np.load(sys.argv[1])
model = keras.saving.load_model(sys.argv[2])
opt = model.optimizer
inner = getattr(opt, "optimizers", [opt])
print(json.dumps({
    "backend": keras.backend.backend(),
    "optimizer": type(opt).__name__,
    "schedules": sorted({type(o._learning_rate).__name__ for o in inner}),
    "iterations": int(keras.ops.convert_to_numpy(opt.iterations)),
    "output": np.asarray(model.predict_on_batch((data["x0"], data["x1"], data["x0"]))).tolist(),
}))
"""


@pytest.mark.slow
@pytest.mark.one_pass  # loads on all 3 backends from the TF pass; every pass: test_fresh_process_load_on_every_backend
def test_fresh_process_loads_a_compiled_training_model_with_keras_percept_schedules(tmp_path, monkeypatch):
    """A `tune` model compiled as `train()` compiles it (MultiOptimizer, HoldThenLinearDecay wrapped in
    DelayedStart per trunk stage), after one step, loads on every backend after only `import keras_percept`.

    Before `import keras_percept` registered `keras_percept.training.schedules`, this load failed with
    "Could not locate class 'HoldThenLinearDecay'" unless the user also imported `keras_percept.training`.
    """
    from keras_percept.training import load_config, model_builder
    from keras_percept.training.trainer import _compile

    config = load_config(paradigm="tune", overrides=[
        "model.net=alex", "model.dropout=0.0", "optim.epochs=2", "optim.unfreeze_every_epochs=1"])
    # The ImageNet alex trunk is a download; the seeded random trunk saves and loads the same way.
    monkeypatch.setattr(model_builder, "load_pretrained_trunk", lambda metric, source="imagenet": None)
    model = model_builder.build_twoafc_model(config)
    _compile(model, config, steps=4, trunk=model.metric.backbone)
    x0, x1 = _inputs(seed=7)
    model.train_on_batch((x0, x1, x0), np.array([0.2, 0.5, 0.9], "float32"))
    path = str(tmp_path / "twoafc.keras")
    save_model_atomic(model, path)
    np.savez(tmp_path / "inputs.npz", x0=x0, x1=x1)
    expected = np.asarray(model.predict_on_batch((x0, x1, x0)))
    for backend in BACKENDS:
        proc = subprocess.run(
            [sys.executable, "-c", TRAINED_LOAD, str(tmp_path / "inputs.npz"), path],
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["backend"] == backend
        assert result["optimizer"] == "MultiOptimizer"
        assert result["schedules"] == ["DelayedStart", "HoldThenLinearDecay"]
        assert result["iterations"] == 1
        np.testing.assert_allclose(np.array(result["output"]), expected, rtol=0, atol=1e-5)


# Names registered by `import keras_percept` alone, then by importing every module of the package.
REGISTRY_PROBE = """
import importlib, json, pkgutil
import keras
import keras_percept
def ours():
    return {k for k in keras.saving.get_custom_objects() if k.startswith("keras_percept>")}
first = ours()
for info in pkgutil.walk_packages(keras_percept.__path__, "keras_percept."):
    importlib.import_module(info.name)
print(json.dumps({"top_level": sorted(first), "all": sorted(ours())}))
"""


def test_import_keras_percept_registers_every_serializable_object():
    """Nothing that a saved file can name needs an import beyond `import keras_percept`."""
    proc = subprocess.run([sys.executable, "-c", REGISTRY_PROBE], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["all"]) > 40
    assert sorted(set(result["all"]) - set(result["top_level"])) == []
