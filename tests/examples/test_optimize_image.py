"""The worked example: optimising an image towards a target with `PerceptualLoss`, on every backend."""

from __future__ import annotations

import contextlib
import time

import keras
import numpy as np
import pytest

from keras_percept.convert import pretrained_lpips, save_model_atomic
from keras_percept.examples.optimize_image import default_target, distorted_start, main, optimize_image
from keras_percept.layers import ClipToRange, ImageParameter
from keras_percept.models.lpips import LPIPS
from torch_reference import torch_threads


def _one_torch_thread():
    # PyTorch's default thread pool oversubscribes this small shared machine (see torch_threads).
    return torch_threads(1) if keras.backend.backend() == "torch" else contextlib.nullcontext()


@pytest.mark.slow
def test_distance_to_target_halves_within_a_few_hundred_steps():
    """Pretrained EfficientNet-Lite0 metric (offline), a 32 px crop of a real photo, 100 Adam steps."""
    target = default_target(32)
    start = distorted_start(target, seed=0)
    metric = pretrained_lpips("effnet-lite0", input_range="[0,1]")
    began = time.time()
    with _one_torch_thread():
        result, distances = optimize_image(target, start, steps=100, metric=metric, learning_rate=0.01)
    print(f"{keras.backend.backend()}: distance {distances[0]:.4f} -> {distances[-1]:.4f} "
          f"in {time.time() - began:.1f} s")
    assert distances.shape == (101,)
    assert distances[-1] <= 0.5 * distances[0]
    # Independent of the metric: the result is also closer to the target pixel-wise.
    assert np.mean((result - target) ** 2) < np.mean((start - target) ** 2)
    assert result.min() >= 0.0 and result.max() <= 1.0  # ClipToRange after every step


def test_command_line_writes_result_and_strip(tmp_path, capsys):
    model_path = str(tmp_path / "alex.keras")
    save_model_atomic(LPIPS(net="alex", input_range="[0,1]"), model_path)
    out, strip = tmp_path / "result.png", tmp_path / "strip.png"
    with _one_torch_thread():
        code = main(["--model", model_path, "--size", "32", "--steps", "3", "--print-every", "1",
                     "--out", str(out), "--strip", str(strip)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "step     0  distance" in printed and "(final)" in printed and f"wrote {out}" in printed
    from keras_percept.images import load_image

    assert load_image(out).shape == (32, 32, 3)
    assert load_image(strip).shape == (32, 96, 3)


def test_command_line_error_leaves_nothing(tmp_path, capsys):
    code = main(["--target", str(tmp_path / "missing.png"), "--out", str(tmp_path / "r.png")])
    assert code == 2
    assert "optimize_image: error: Image file not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_image_parameter_and_constraint():
    layer = ImageParameter((8, 8, 3), value_range=(0.0, 1.0))
    assert [w.name for w in layer.trainable_weights] == ["image"]
    layer.image.assign(np.full((8, 8, 3), 0.25, "float32"))
    out = keras.ops.convert_to_numpy(layer(np.zeros((2, 1), "float32")))
    assert out.shape == (2, 8, 8, 3) and np.all(out == 0.25)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ClipToRange(0.0, 1.0)(np.array([-0.5, 0.3, 2.0], "float32"))),
                                  np.array([0.0, 0.3, 1.0], "float32"))
    restored = ImageParameter.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
    assert ClipToRange.from_config(ClipToRange(-1, 1).get_config()).get_config() == {"low": -1.0, "high": 1.0}


def test_invalid_arguments():
    target = np.zeros((32, 32, 3), "float32")
    with pytest.raises(ValueError, match=r"same shape. Received: target \(32, 32, 3\), start \(16, 16, 3\)"):
        optimize_image(target, np.zeros((16, 16, 3), "float32"), metric=LPIPS(net="alex"))
    with pytest.raises(ValueError, match=r"`steps` must be >= 1. Received: steps=0"):
        optimize_image(target, target, steps=0, metric=LPIPS(net="alex"))
    with pytest.raises(ValueError, match=r"`low` < `high` required. Received: low=1.0, high=0.0"):
        ClipToRange(1.0, 0.0)
    with pytest.raises(ValueError, match=r"`image_shape` must be \(H, W, 3\). Received: image_shape=\(8, 8\)"):
        ImageParameter((8, 8))
    with pytest.raises(ValueError, match=r"`size` must be at most 300"):
        default_target(512)
