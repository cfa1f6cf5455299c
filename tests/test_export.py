"""SavedModel and ONNX export: served in a fresh process (TensorFlow only; onnxruntime only), equal to the Keras
model's distances."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from photo_utils import photo_pairs
from keras_percept.cli import main as cli_main
from keras_percept.convert import save_model_atomic
from keras_percept.export import (
    EXPORT_BACKENDS,
    ONNX_BACKENDS,
    SIGNATURE_KEY,
    UnsupportedBackendError,
    export_onnx,
    export_saved_model,
)
from keras_percept.models.lpips import LPIPS

BACKEND = keras.backend.backend()
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# A fresh process with TensorFlow only (no Keras backend choice, no keras_percept): what a server has.
SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
signature = served.signatures[sys.argv[2]]
assert "keras_percept" not in sys.modules
spec = signature.structured_input_signature[1]
result = {"inputs": {k: [spec[k].shape.as_list(), spec[k].dtype.name] for k in sorted(spec)},
          "outputs": sorted(signature.structured_outputs)}
data = np.load(sys.argv[3])
for k in sorted(set(f[:-3] for f in data.files)):
    out = signature(x0=tf.constant(data[k + "_x0"]), x1=tf.constant(data[k + "_x1"]))
    result[k] = {name: v.numpy().tolist() for name, v in out.items()}
print(json.dumps(result))
"""


def _metric(seed: int = 0, **kwargs) -> LPIPS:
    model = LPIPS(**kwargs)
    rng = np.random.default_rng(seed)
    for lin in model.lins:
        lin.kernel.assign(rng.uniform(0, 0.2, lin.kernel.shape).astype("float32"))
    return model


def _export(model, out, tmp_path, image_shape=None) -> None:
    """Exports on this backend, or, on torch, through the documented route: the CLI under TensorFlow."""
    if BACKEND in EXPORT_BACKENDS:
        export_saved_model(model, out, image_shape=image_shape)
        return
    path = str(tmp_path / "for_export.keras")
    save_model_atomic(model, path)
    size = ["--image-size", *map(str, image_shape)] if image_shape else []
    proc = subprocess.run([sys.executable, "-m", "keras_percept.cli", "export", path, str(out), *size],
                          env={**ENV, "KERAS_BACKEND": "tensorflow"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _serve(out, batches: dict, tmp_path) -> dict:
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **{f"{k}_{i}": x for k, (x0, x1) in batches.items() for i, x in (("x0", x0), ("x1", x1))})
    proc = subprocess.run([sys.executable, "-c", SERVE, str(out), SIGNATURE_KEY, str(inputs)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("net", ["alex", pytest.param("effnet-lite0", marks=pytest.mark.one_pass)])
def test_served_distances_match_keras_for_any_image_size(tmp_path, photos, net):
    model = _metric(net=net)
    out = tmp_path / "savedmodel"
    _export(model, out, tmp_path)
    rng = np.random.default_rng(1)
    single = photo_pairs(photos, 48, seed=4)[0][:1]
    batches = {
        "photos64": photo_pairs(photos, 64, seed=3),
        "noise_67x93": tuple(rng.uniform(-1, 1, (3, 67, 93, 3)).astype(np.float32) for _ in range(2)),
        "single48": (single, np.clip(single + 0.2, -1, 1).astype(np.float32)),
    }
    served = _serve(out, batches, tmp_path)
    assert served["inputs"] == {"x0": [[None, None, None, 3], "float32"], "x1": [[None, None, None, 3], "float32"]}
    assert served["outputs"] == ["distance"]
    for name, (x0, x1) in batches.items():
        expected = np.asarray(model.predict_on_batch((x0, x1)))
        got = np.asarray(served[name]["distance"], dtype=np.float32)
        assert got.shape == (len(x0),)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        assert np.all(expected > 0)


def _assert_per_layer_outputs_match(served: dict, model, x0, x1):
    """A served `distance` and `layer_k` equal the Keras metric's within 1e-5; returns the Keras total."""
    total, terms = model.predict_on_batch((x0, x1))
    np.testing.assert_allclose(np.asarray(served["distance"]), np.asarray(total), rtol=0, atol=1e-5)
    for k, term in enumerate(terms):
        np.testing.assert_allclose(np.asarray(served[f"layer_{k}"]), np.asarray(term), rtol=0, atol=1e-5)
    return total


@pytest.mark.slow
def test_fixed_size_spatial_and_per_layer_outputs(tmp_path, photos):
    model = _metric(seed=2, net="alex", spatial=True, return_per_layer=True, input_range="[0,1]")
    out = tmp_path / "savedmodel"
    _export(model, out, tmp_path, image_shape=(64, 64))
    x0, x1 = ((x + 1) / 2 for x in photo_pairs(photos, 64, seed=5))
    served = _serve(out, {"pairs": (x0, x1)}, tmp_path)
    assert served["inputs"]["x0"] == [[None, 64, 64, 3], "float32"]
    assert served["outputs"] == ["distance", *(f"layer_{k}" for k in range(5))]
    total = _assert_per_layer_outputs_match(served["pairs"], model, x0, x1)
    assert np.asarray(total).shape == (4, 64, 64, 1)


def test_unsupported_backend_error_says_what_to_do(tmp_path, monkeypatch):
    if BACKEND in EXPORT_BACKENDS:
        monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(UnsupportedBackendError, match=r"Received: KERAS_BACKEND='torch'.*KERAS_BACKEND=tensorflow "
                                                      r"keras-percept export MODEL.keras OUT_DIR"):
        export_saved_model(LPIPS(net="alex"), tmp_path / "out")
    assert not os.listdir(tmp_path)


@pytest.mark.skipif(BACKEND not in EXPORT_BACKENDS, reason="export needs the TensorFlow or JAX backend")
def test_invalid_arguments_and_existing_output(tmp_path):
    with pytest.raises(ValueError, match=r"`image_shape` must be \(H, W\) with integers >= 31 for net='alex'.*"
                                         r"Received: image_shape=\(16, 64\)"):
        export_saved_model(LPIPS(net="alex"), tmp_path / "a", image_shape=(16, 64))
    with pytest.raises(ValueError, match=r"must be an LPIPS model .* Received: Sequential"):
        export_saved_model(keras.Sequential([keras.layers.Dense(1)]), tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="Model file not found"):
        export_saved_model(str(tmp_path / "missing.keras"), tmp_path / "c")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="exists and is not empty; pass overwrite=True"):
        export_saved_model(LPIPS(net="alex"), existing)
    assert (existing / "keep.txt").read_text() == "user data"
    assert sorted(os.listdir(tmp_path)) == ["existing"]


@pytest.mark.skipif(BACKEND not in EXPORT_BACKENDS, reason="export needs the TensorFlow or JAX backend")
def test_cli_export(tmp_path, capsys):
    path = str(tmp_path / "alex.keras")
    save_model_atomic(_metric(net="alex"), path)
    out = tmp_path / "served"
    assert cli_main(["export", path, str(out), "--image-size", "64", "64"]) == 0
    assert f"exported {out}" in capsys.readouterr().out
    assert os.path.isfile(out / "saved_model.pb")
    assert cli_main(["export", path, str(out)]) == 2  # refuses to overwrite
    assert "exists and is not empty" in capsys.readouterr().err
    assert cli_main(["export", path, str(out), "--overwrite"]) == 0
    assert cli_main(["export", str(tmp_path / "missing.keras"), str(tmp_path / "x")]) == 2
    assert "Model file not found" in capsys.readouterr().err


# A fresh process with onnxruntime and NumPy only: no TensorFlow, Keras or keras_percept.
ONNX_SERVE = """
import json, sys
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
assert not {"tensorflow", "keras", "keras_percept"} & set(sys.modules)
result = {"inputs": {i.name: [[d if isinstance(d, int) else None for d in i.shape], i.type] for i in session.get_inputs()},
          "outputs": [o.name for o in session.get_outputs()]}
data = np.load(sys.argv[2])
for k in sorted(set(f[:-3] for f in data.files)):
    out = session.run(None, {"x0": data[k + "_x0"], "x1": data[k + "_x1"]})
    result[k] = {o.name: v.tolist() for o, v in zip(session.get_outputs(), out)}
print(json.dumps(result))
"""
needs_onnx_backend = pytest.mark.skipif(BACKEND not in ONNX_BACKENDS, reason="ONNX export needs the TensorFlow backend")


def _serve_onnx(path, batches: dict, tmp_path) -> dict:
    inputs = tmp_path / "onnx_inputs.npz"
    np.savez(inputs, **{f"{k}_{i}": x for k, (x0, x1) in batches.items() for i, x in (("x0", x0), ("x1", x1))})
    proc = subprocess.run([sys.executable, "-c", ONNX_SERVE, str(path), str(inputs)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.one_pass  # the converter runs on TensorFlow only
@needs_onnx_backend
@pytest.mark.parametrize("net", ["alex", "squeeze", "effnet-lite0"])
def test_onnx_distances_match_keras_for_any_batch_and_size(tmp_path, photos, net):
    """Batch and size are dynamic: odd sizes and the trunk's minimum catch padding or pooling fixed at export."""
    model = _metric(seed=3, net=net)
    path = tmp_path / f"{net}.onnx"
    assert export_onnx(model, path) == str(path)
    rng = np.random.default_rng(7)
    low = model.backbone.MIN_SIZE
    single = photo_pairs(photos, 48, seed=4)[0][:1]
    batches = {
        "photos64": photo_pairs(photos, 64, seed=3),
        "noise_67x93": tuple(rng.uniform(-1, 1, (3, 67, 93, 3)).astype(np.float32) for _ in range(2)),
        "minimum": tuple(rng.uniform(-1, 1, (2, low, low + 1, 3)).astype(np.float32) for _ in range(2)),
        "single48": (single, np.clip(single + 0.2, -1, 1).astype(np.float32)),
    }
    served = _serve_onnx(path, batches, tmp_path)
    assert served["inputs"] == {name: [[None, None, None, 3], "tensor(float)"] for name in ("x0", "x1")}
    assert served["outputs"] == ["distance"]
    for name, (x0, x1) in batches.items():
        expected = np.asarray(model.predict_on_batch((x0, x1)))
        got = np.asarray(served[name]["distance"], dtype=np.float32)
        assert got.shape == (len(x0),), name
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=name)
        assert np.all(expected > 0)


@pytest.mark.slow
@pytest.mark.one_pass
@needs_onnx_backend
def test_onnx_fixed_size_spatial_and_per_layer_outputs_and_cli(tmp_path, photos, capsys):
    model = _metric(seed=2, net="alex", spatial=True, return_per_layer=True, input_range="[0,1]")
    keras_path = str(tmp_path / "spatial.keras")
    save_model_atomic(model, keras_path)
    path = tmp_path / "spatial.onnx"
    assert cli_main(["export", keras_path, str(path), "--format", "onnx", "--image-size", "64", "64"]) == 0
    assert f"exported {path} (ONNX" in capsys.readouterr().out
    x0, x1 = ((x + 1) / 2 for x in photo_pairs(photos, 64, seed=5))
    served = _serve_onnx(path, {"pairs": (x0, x1)}, tmp_path)
    assert served["inputs"]["x0"] == [[None, 64, 64, 3], "tensor(float)"]
    assert served["outputs"] == ["distance", *(f"layer_{k}" for k in range(5))]
    _assert_per_layer_outputs_match(served["pairs"], model, x0, x1)
    before = path.read_bytes()
    assert cli_main(["export", keras_path, str(path), "--format", "onnx"]) == 2  # refuses to overwrite
    assert "exists; pass overwrite=True" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["onnx_inputs.npz", "spatial.keras", "spatial.onnx"]


def test_onnx_refusals_name_the_problem(tmp_path, monkeypatch):
    refused = "jax" if BACKEND in ONNX_BACKENDS else BACKEND
    monkeypatch.setattr(keras.backend, "backend", lambda: refused)
    with pytest.raises(UnsupportedBackendError, match=rf"Received: KERAS_BACKEND='{refused}'.*KERAS_BACKEND=tensorflow "
                                                      r"keras-percept export MODEL.keras OUT.onnx --format onnx"):
        export_onnx(LPIPS(net="alex"), tmp_path / "a.onnx")
    monkeypatch.undo()
    if BACKEND in ONNX_BACKENDS:
        with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
            export_onnx(LPIPS(net="alex"), tmp_path)
        with pytest.raises(ValueError, match=r"Received: image_shape=\(16, 64\)"):
            export_onnx(LPIPS(net="alex"), tmp_path / "b.onnx", image_shape=(16, 64))
        monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if the onnx extra were not installed
        with pytest.raises(ImportError, match=r"pip install 'keras-percept\[onnx\]'"):
            export_onnx(LPIPS(net="alex"), tmp_path / "c.onnx")
    assert not os.listdir(tmp_path)
