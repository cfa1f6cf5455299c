"""`LPIPSMetric` in `model.compile(metrics=[...])` / `model.evaluate`, one device and MirroredStrategy.

Expected values are NumPy means of `LPIPS.distance` on the same images, taken batch by batch by
hand; the data are chosen so that the mean of batch means differs from the sample mean (the last
batch is smaller), which a metric averaging batch results would get wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_percept import LPIPS, LPIPSMetric

N, SIZE, BATCH = 10, 32, 4
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (N, SIZE, SIZE, 3)).astype("float32")
    strength = np.linspace(0.0, 0.9, N, dtype="float32")[:, None, None, None]  # later batches differ more
    y = np.clip(x * (1 - strength) + strength * rng.uniform(-1, 1, x.shape), -1, 1).astype("float32")
    return x, y


def _generator() -> keras.Model:
    """A fixed image-to-image model: a 1x1 convolution that starts as y_pred = 0.9 x (so sample i's
    distance grows with the noise of `_data`'s target i)."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(3, 1)
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([0.9 * np.eye(3, dtype="float32").reshape(1, 1, 3, 3), np.zeros(3, "float32")])
    return model


def _hand_means(lpips: LPIPS, y: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(sample mean from per-batch sums and counts, mean of batch means, per-sample distances), by hand."""
    sums, counts, per_sample = [], [], []
    for start in range(0, len(y), BATCH):
        d = lpips.distance(y[start:start + BATCH], y_pred[start:start + BATCH])
        sums.append(float(np.sum(d, dtype=np.float64)))
        counts.append(len(d))
        per_sample.append(d)
    means = [s / c for s, c in zip(sums, counts)]
    return sum(sums) / sum(counts), float(np.mean(means)), np.concatenate(per_sample)


@pytest.fixture(scope="module")
def lpips() -> LPIPS:
    keras.utils.set_random_seed(2)
    return LPIPS(net="alex")


def test_evaluate_gives_the_sample_mean_and_resets_between_calls(lpips):
    x, y = _data()
    model = _generator()
    metric = LPIPSMetric(lpips, keep_per_sample=32)
    model.compile(loss="mse", metrics=[metric])
    y_pred = model.predict(x, verbose=0)
    expected, mean_of_means, per_sample = _hand_means(lpips, y, y_pred)
    assert abs(expected - mean_of_means) > 1e-3  # the data tell the two apart
    result = model.evaluate(x, y, batch_size=BATCH, return_dict=True, verbose=0)
    assert result["lpips"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(metric.per_sample(), per_sample, rtol=1e-5, atol=1e-7)
    # A second evaluate starts from zero (reset_state), also for the per-sample values.
    again = model.evaluate(x[:4], y[:4], batch_size=BATCH, return_dict=True, verbose=0)
    assert again["lpips"] == pytest.approx(float(np.mean(per_sample[:4])), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(metric.per_sample(), per_sample[:4], rtol=1e-5, atol=1e-7)


def test_update_state_weights_reset_and_capacity(lpips):
    x, y = _data()
    d = lpips.distance(x, y)
    metric = LPIPSMetric(lpips, keep_per_sample=6)
    metric.update_state(x[:4], y[:4])
    metric.update_state(x[4:6], y[4:6])
    assert float(metric.result()) == pytest.approx(float(np.mean(d[:6])), rel=1e-5)
    np.testing.assert_allclose(metric.per_sample(), d[:6], rtol=1e-5, atol=1e-7)
    metric.update_state(x[6:], y[6:])  # 10 seen, 6 kept
    with pytest.raises(ValueError, match="10 samples were seen but only the first 6 were kept"):
        metric.per_sample()
    metric.reset_state()
    assert float(metric.result()) == 0.0 and metric.per_sample().shape == (0,)

    weights = np.arange(1, N + 1, dtype="float32")
    metric.update_state(x, y, sample_weight=weights)
    assert float(metric.result()) == pytest.approx(float(np.sum(d * weights) / np.sum(weights)), rel=1e-5)
    with pytest.raises(ValueError, match="keeps no per-sample values"):
        LPIPSMetric(lpips).per_sample()
    with pytest.raises(ValueError, match="`keep_per_sample` must be >= 0"):
        LPIPSMetric(lpips, keep_per_sample=-1)


def test_metric_from_a_file_survives_config_round_trip_and_model_save(lpips, tmp_path):
    path = str(tmp_path / "alex.keras")
    lpips.save(path)
    x, y = _data()
    metric = LPIPSMetric(path, input_range="[-1,1]", keep_per_sample=3, name="lpips_alex")
    twin = LPIPSMetric.from_config(metric.get_config())
    assert twin.get_config() == metric.get_config() and twin.name == "lpips_alex"
    for m in (metric, twin):
        m.update_state(x, y)
    assert float(twin.result()) == pytest.approx(float(metric.result()), rel=1e-6)

    model = _generator()
    model.compile(loss="mse", metrics=[LPIPSMetric(path, name="lpips_alex")])
    before = model.evaluate(x, y, batch_size=BATCH, return_dict=True, verbose=0)
    model.save(tmp_path / "generator.keras")
    loaded = keras.saving.load_model(tmp_path / "generator.keras")
    after = loaded.evaluate(x, y, batch_size=BATCH, return_dict=True, verbose=0)
    assert after["lpips_alex"] == pytest.approx(before["lpips_alex"], rel=1e-6)


MIRRORED = """
import json, sys
from keras_percept.training.strategy import split_cpu
split_cpu(2)
import keras, numpy as np, tensorflow as tf
sys.path.insert(0, {tests!r})
from test_streaming_metric import BATCH, _data, _generator, _hand_means
from keras_percept import LPIPS, LPIPSMetric

x, y = _data()
strategy = tf.distribute.MirroredStrategy()
with strategy.scope():
    keras.utils.set_random_seed(2)
    lpips = LPIPS(net="alex")
    model = _generator()
    model.compile(loss="mse", metrics=[LPIPSMetric(lpips)])
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
first = model.evaluate(data, return_dict=True, verbose=0)["lpips"]
second = model.evaluate(data.take(1), return_dict=True, verbose=0)["lpips"]
expected, mean_of_means, per_sample = _hand_means(lpips, y, model.predict(x, verbose=0))
with strategy.scope():
    keeping = _generator()
    keeping.compile(loss="mse", metrics=[LPIPSMetric(lpips, keep_per_sample=16)])
try:
    keeping.evaluate(data, verbose=0)
    refused = ""
except ValueError as err:
    refused = str(err)
print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "first": float(first), "second": float(second),
                  "expected": expected, "mean_of_means": mean_of_means, "first_batch": float(np.mean(per_sample[:BATCH])),
                  "refused": refused}}))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="launches its own KERAS_BACKEND=tensorflow process; runs in the TensorFlow pass")
def test_mirrored_strategy_on_two_devices_gives_the_sample_mean(tmp_path):
    script = MIRRORED.format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert abs(out["expected"] - out["mean_of_means"]) > 1e-3
    # 10 samples in batches of 4 on 2 replicas: the last global batch gives each replica 1 sample.
    assert out["first"] == pytest.approx(out["expected"], rel=1e-5, abs=1e-7)
    assert out["second"] == pytest.approx(out["first_batch"], rel=1e-5, abs=1e-7)  # reset between evaluates
    assert "cannot keep per-sample values under a strategy with 2 replicas" in out["refused"]
