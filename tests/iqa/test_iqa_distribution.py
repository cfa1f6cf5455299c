"""`train_iqa` under MirroredStrategy (2 logical CPUs) and JAX DataParallel (2 CPU devices), against one device.

Devices must be configured before the backend starts, so the runs happen
in fresh processes (`iqa_distributed_worker.py`); each test runs once, in
the pass of the suite whose backend it launches.

Batch-level losses under N tf.distribute replicas: each replica computes
the loss on its batch / N samples (an SRCC of each half, which is not the
SRCC of the whole batch), `BatchStatisticLoss` divides it by N, and the
all-reduced gradient is the mean of the per-replica gradients. So the
mirrored SRCC run must equal a one-device run whose loss is the mean of the
SRCC loss over the two halves of each batch, and differ from the SRCC over
the whole batch. The negative control (the same scalar loss unscaled) takes
a first step of 2x the right gradient, and the comparison catches it.
JAX's DataParallel computes every loss over the global batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "iqa_distributed_worker.py")
REPO = os.path.dirname(os.path.dirname(HERE))
BACKEND = keras.backend.backend()
TOLERANCE = 1e-5  # on per-epoch losses and on weights
TIMEOUT = 600


def launched_by(backend: str):
    return pytest.mark.skipif(
        BACKEND != backend,
        reason=f"launches its own KERAS_BACKEND={backend} process; runs once, in the {backend} pass of the suite",
    )


def run_worker(mode: str, out, backend: str, **env_extra: str) -> dict[str, dict[str, np.ndarray]]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    env.pop("TF_CONFIG", None)
    start = time.time()
    proc = subprocess.run([sys.executable, WORKER, mode, str(out)], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"{mode} worker: {time.time() - start:.1f}s")
    runs: dict[str, dict[str, np.ndarray]] = {}
    with np.load(out) as data:
        for key in data.files:
            run, name = key.split("/")
            runs.setdefault(run, {})[name] = data[key]
    return runs


def arrays(run: dict, prefix: str) -> list[np.ndarray]:
    return [run[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in run))]


def first_step(run: dict) -> list[np.ndarray]:
    """SGD's first update of every trainable weight: -learning_rate * gradient."""
    return [b - a for a, b in zip(arrays(run, "initial_"), arrays(run, "step1_"))]


def norm(values: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(np.square(v.astype("float64"))) for v in values)))


def differences(reference: dict, other: dict, label: str) -> dict[str, float]:
    step_ref, step_other = first_step(reference), first_step(other)
    diffs = {
        "loss": float(np.abs(reference["loss"] - other["loss"]).max()),
        "weights": max(float(np.abs(a - b).max()) for a, b in zip(arrays(reference, "weight_"),
                                                                  arrays(other, "weight_"))),
        "first_step_ratio": norm(step_other) / norm(step_ref),
        "first_step_rel": norm([b - a for a, b in zip(step_ref, step_other)]) / norm(step_ref),
    }
    print(f"{label}: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    return diffs


def assert_same_training(reference: dict, other: dict, label: str) -> None:
    np.testing.assert_array_equal(arrays(reference, "initial_")[0], arrays(other, "initial_")[0])
    assert len(reference["loss"]) == len(other["loss"]) == 2
    diffs = differences(reference, other, label)
    assert diffs["loss"] <= TOLERANCE and diffs["weights"] <= TOLERANCE, diffs
    assert diffs["first_step_rel"] <= 1e-4, diffs


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    return run_worker("mirrored", tmp_path_factory.mktemp("iqa_mirrored") / "runs.npz", "tensorflow")


@pytest.mark.slow
@launched_by("tensorflow")
def test_mirrored_l1_matches_one_device(mirrored_runs):
    assert int(mirrored_runs["l1_mirrored"]["replicas"]) == 2 and int(mirrored_runs["l1_single"]["replicas"]) == 1
    assert_same_training(mirrored_runs["l1_single"], mirrored_runs["l1_mirrored"], "l1 mirrored vs one device")


@pytest.mark.slow
@launched_by("tensorflow")
def test_mirrored_srcc_is_the_mean_of_per_replica_losses(mirrored_runs):
    """The mirrored SRCC run equals one device with the mean of the two half-batch SRCC losses, not the whole batch's."""
    mirrored = mirrored_runs["srcc_mirrored"]
    assert int(mirrored["replicas"]) == 2
    assert_same_training(mirrored_runs["srcc_halves_single"], mirrored, "srcc mirrored vs halves on one device")
    whole = differences(mirrored_runs["srcc_single"], mirrored, "srcc mirrored vs whole batch on one device")
    assert whole["first_step_rel"] > 0.05 and whole["loss"] > 1e-3  # per-replica correlations are not global ones


@pytest.mark.slow
@launched_by("tensorflow")
def test_an_unscaled_batch_loss_takes_a_doubled_step_and_is_caught(mirrored_runs):
    """Negative control: a scalar loss Keras does not divide by the replica count gives 2x the gradient."""
    reference, control = mirrored_runs["srcc_halves_single"], mirrored_runs["srcc_unscaled_mirrored"]
    got, want = first_step(control), [2.0 * step for step in first_step(reference)]
    # Relative to the step: float32 weights round each update (w1 - w0) by ~1e-7 absolute.
    assert norm([g - w for g, w in zip(got, want)]) / norm(want) < 1e-4
    with pytest.raises(AssertionError):
        assert_same_training(reference, control, "unscaled srcc mirrored vs halves on one device")


@pytest.mark.slow
@launched_by("jax")
def test_jax_data_parallel_matches_one_device(tmp_path):
    """DataParallel over 2 JAX CPU devices: the same training as one device, batch-level loss over the global batch."""
    runs = run_worker("data_parallel", tmp_path / "runs.npz", "jax",
                      XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert int(runs["srcc_data_parallel"]["replicas"]) == 2
    assert_same_training(runs["srcc_single"], runs["srcc_data_parallel"], "srcc data_parallel")
