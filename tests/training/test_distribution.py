"""Distributed 2AFC training on real multi-device strategies, checked against one device.

Each strategy needs devices configured before its backend starts, so it runs
in fresh processes (`distributed_worker.py`) with their own KERAS_BACKEND;
those tests run once, in the pass of the suite whose backend they launch.
"One device" is the same model, initial weights and global batches without a
strategy. A loss reduced wrongly across replicas doubles the gradient, which
Adam's normalised step all but hides in the weights, so Adam's moments are
compared too, and a negative control shows the comparison fails on it.
`tune`'s trunk/head MultiOptimizer and `global_clipnorm` are checked under
MirroredStrategy the same way.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_percept.training.strategy import select_strategy

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "distributed_worker.py")
REPO = os.path.dirname(os.path.dirname(HERE))
BACKEND = keras.backend.backend()
TOLERANCE = 1e-5  # on losses and weights
MOMENT_TOLERANCE = 1e-3  # relative, per optimizer variable; a 2x gradient gives >= 0.5
TIMEOUT = 300  # seconds, per worker launch
CLIP = 1e-4  # the worker's `global_clipnorm`
ADAM_BETA_1 = 0.9  # keras.optimizers.Adam's default, which the worker's clipped runs use


def launched_by(backend: str):
    return pytest.mark.skipif(
        BACKEND != backend,
        reason=f"launches its own KERAS_BACKEND={backend} processes; runs once, in the {backend} pass of the suite",
    )


def worker_env(backend: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def load_runs(path) -> dict[str, dict[str, np.ndarray]]:
    runs: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            run, name = key.split("/")
            runs.setdefault(run, {})[name] = data[key]
    return runs


def run_worker(mode: str, out, env: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
    proc = subprocess.run(
        [sys.executable, WORKER, mode, str(out)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_runs(out)


def weights(run: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [run[f"weight_{i}"] for i in range(sum(k.startswith("weight_") for k in run))]


def optimizer_state(run: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [run[f"optimizer_{i}"] for i in range(len(run["optimizer_names"]))]


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def max_relative_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Per variable ||b - a|| / ||a||, the largest (variables that are still all zero are skipped)."""
    return max(float(np.linalg.norm(y - x) / np.linalg.norm(x)) for x, y in zip(a, b) if np.linalg.norm(x) > 0)


def compare(single: dict, other: dict, label: str) -> dict[str, float]:
    diffs = {
        "loss": float(np.abs(other["loss"] - single["loss"]).max()),
        "weights": max_abs_diff(weights(single), weights(other)),
        "adam_moments": max_relative_diff(optimizer_state(single), optimizer_state(other)),
    }
    print(f"{label} vs one device: " + ", ".join(f"max|d {k}|={v:.2e}" for k, v in diffs.items()))
    return diffs


def assert_same_training(single: dict, other: dict, label: str) -> None:
    diffs = compare(single, other, label)
    assert len(single["loss"]) == len(other["loss"]) > 0
    assert diffs["loss"] <= TOLERANCE, diffs
    assert diffs["weights"] <= TOLERANCE, diffs
    assert diffs["adam_moments"] <= MOMENT_TOLERANCE, diffs
    # `GradientNorm` under the strategy: the global gradient norm of the same weights on the same batch
    np.testing.assert_allclose(other["grad_norm"], single["grad_norm"], rtol=1e-4, err_msg=f"{label}: grad_norm")
    assert np.all(single["grad_norm"] > 0)
    if "grad_norm_in_scope" in other:  # inside `strategy.scope()` Keras divides the loss by the replica count
        np.testing.assert_allclose(other["grad_norm_in_scope"], single["grad_norm"][-1], rtol=1e-4,
                                   err_msg=f"{label}: grad_norm inside the strategy's scope")


def moment_ratios(single: dict, other: dict, kind: str) -> np.ndarray:
    """||other|| / ||single|| for Adam's `kind` ("momentum" or "velocity") of every variable with a gradient."""
    names = [str(n) for n in single["optimizer_names"]]
    pairs = zip(names, optimizer_state(single), optimizer_state(other))
    return np.array([np.linalg.norm(b) / np.linalg.norm(a) for n, a, b in pairs if kind in n and np.linalg.norm(a) > 0])


def run_tf_worker_timed(mode: str, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    start = time.time()
    runs = run_worker(mode, tmp_path_factory.mktemp(mode) / "runs.npz", worker_env("tensorflow"))
    print(f"{mode} worker: {time.time() - start:.1f}s")
    return runs


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    return run_tf_worker_timed("mirrored", tmp_path_factory)


@pytest.mark.slow
@launched_by("tensorflow")
def test_mirrored_matches_one_device(mirrored_runs):
    """MirroredStrategy on 2 logical CPUs: same losses, weights and Adam state as one device after 4 steps."""
    single, mirrored = mirrored_runs["single"], mirrored_runs["mirrored"]
    assert int(mirrored["replicas"]) == 2
    np.testing.assert_array_equal(mirrored["batch_per_replica"], 4.0)  # the global batch of 8 was split
    np.testing.assert_array_equal(single["batch_per_replica"], 8.0)
    assert float(mirrored["replica_spread"]) == 0.0  # both replicas hold the same weights
    assert int(mirrored["n_trainable"]) == int(single["n_trainable"]) > 20  # trunk, linear layers and head
    assert int(mirrored["optimizer_0"]) == len(mirrored["loss"]) == 4  # optimizer steps taken
    assert_same_training(single, mirrored, "mirrored")


@pytest.mark.slow
@launched_by("tensorflow")
def test_comparison_catches_a_loss_not_scaled_per_replica(mirrored_runs):
    """Negative control: a loss that is already a per-replica mean gets a 2x all-reduced gradient, and we see it."""
    single, control = mirrored_runs["single"], mirrored_runs["self_reducing"]
    # The trajectories part after the first step, so the ratios drift a little from 2 and 4 (measured: 1.88-2.00).
    np.testing.assert_allclose(moment_ratios(single, control, "momentum"), 2.0, rtol=0.25)
    np.testing.assert_allclose(moment_ratios(single, control, "velocity"), 4.0, rtol=0.25)
    # Same weights at the first step, so the same loss, but logged after "unscaling" by the replica count.
    np.testing.assert_allclose(control["loss"][0], 2.0 * single["loss"][0], rtol=1e-6)
    with pytest.raises(AssertionError):
        assert_same_training(single, control, "self-reducing loss, mirrored")


def applied_gradient(run: dict) -> list[np.ndarray]:
    """The gradient Adam applied at its first step: first moment / (1 - beta_1), for every variable."""
    pairs = zip(run["optimizer_names"], optimizer_state(run))
    return [m / (1.0 - ADAM_BETA_1) for name, m in pairs if "momentum" in str(name)]


def global_norm(arrays: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(a.astype("float64") ** 2) for a in arrays)))


@pytest.mark.slow
@launched_by("tensorflow")
def test_global_clipnorm_clips_per_replica_before_the_all_reduce(mirrored_runs):
    """Keras 3 clips each replica's gradient, then sums: the step is the sum of the two halves' clipped gradients.

    On one device the gradient of the global batch is clipped to norm 1e-4. Under 2 replicas each half
    batch's gradient is clipped to 1e-4 and the two are added: measured, the mirrored step's gradient has
    norm 1.98e-4 and equals half 0's plus half 1's, each clipped alone on one device, to 3e-8 (relative).
    So Adam's first moment is off by up to 2x.
    """
    single, mirrored = (applied_gradient(mirrored_runs[k]) for k in ("clip_single", "clip_mirrored"))
    halves = [applied_gradient(mirrored_runs[f"clip_half_{k}"]) for k in range(2)]
    summed = [a + b for a, b in zip(*halves)]
    norms = {"single": global_norm(single), "half_0": global_norm(halves[0]), "half_1": global_norm(halves[1]),
             "mirrored": global_norm(mirrored)}
    off_sum = global_norm([m - s for m, s in zip(mirrored, summed)]) / global_norm(summed)
    print(", ".join(f"|g {k}|={v:.4e}" for k, v in norms.items()), f"; |mirrored - halves' sum| / |sum|={off_sum:.1e}")
    np.testing.assert_allclose([norms["single"], norms["half_0"], norms["half_1"]], CLIP, rtol=1e-5)
    assert off_sum < 1e-5
    assert 1.5 * CLIP < norms["mirrored"] <= 2 * CLIP * (1 + 1e-5)


@pytest.mark.slow
@launched_by("tensorflow")
def test_global_clipnorm_under_two_replicas_is_a_clear_error(mirrored_runs):
    message = str(mirrored_runs["clip_guard"]["error"])
    assert "`optim.global_clipnorm` must be null under a tf.distribute strategy with more than one replica" in message
    assert "Received: optim.global_clipnorm=0.0001 with 2 replicas" in message
    assert "clips each replica's gradient before the all-reduce" in message


@pytest.fixture(scope="module")
def multi_optimizer_runs(tmp_path_factory):
    return run_tf_worker_timed("multi_optimizer", tmp_path_factory)


@pytest.mark.slow
@launched_by("tensorflow")
def test_mirrored_multi_optimizer_matches_one_device(multi_optimizer_runs):
    """`tune`'s MultiOptimizer built in MirroredStrategy's scope: each group at its rate, as on one device.

    Adam's first step moves every weight by its rate times g / (|g| + eps / sqrt(1 - beta_2)), so the largest
    first-step move of a variable is its group's rate, 1e-4 (trunk) or 1e-3 (head): measured 0.4% short at
    most, as this trunk's gradients are small (~1e-4) next to eps / sqrt(1 - beta_2) = 3e-7.
    """
    single, mirrored = multi_optimizer_runs["single"], multi_optimizer_runs["mirrored"]
    initial = weights(multi_optimizer_runs["initial"])
    assert int(mirrored["replicas"]) == 2 and float(mirrored["replica_spread"]) == 0.0
    for run in (single, mirrored):
        assert run["inner_names"].tolist() == ["trunk", "head"]
        assert run["inner_sizes"].tolist() == [10, 11]  # alex's 5 convolutions; linear layers + comparison head
        np.testing.assert_allclose(run["inner_learning_rates"], [1e-4, 1e-3], rtol=1e-6)
    rates = {"trunk": 1e-4, "head": 1e-3}
    first_moves = [np.abs(mirrored[f"first_step_weight_{i}"] - w0).max() for i, w0 in enumerate(initial)]
    np.testing.assert_allclose(first_moves, [rates[str(o)] for o in mirrored["owners"]], rtol=1e-2)
    assert int(mirrored["optimizer_0"]) == len(mirrored["loss"]) == 4
    assert_same_training(single, mirrored, "multi_optimizer, mirrored")


@pytest.mark.slow
@launched_by("tensorflow")
def test_multiworker_too_late_is_a_clear_error(mirrored_runs):
    """Selecting `multiworker` once TensorFlow runs says so, instead of TF's "configured at program startup"."""
    message = str(mirrored_runs["late"]["multiworker_error"])
    assert "must be selected before TensorFlow runs any op" in message


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def run_workers(commands: list[list[str]], envs: list[dict], logs: list[pathlib.Path], timeout: float) -> None:
    """Starts all, waits for all; on a failure or past `timeout`, stops the others and fails with their logs."""
    procs = []
    try:
        for command, env, log in zip(commands, envs, logs):
            with open(log, "w") as out:
                procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                tails = "\n".join(f"--- worker {i} ---\n{log.read_text()[-2000:]}" for i, log in enumerate(logs))
                pytest.fail(f"workers {failed or 'timed out'} (timeout {timeout}s)\n{tails}")
            time.sleep(0.2)
        for i, (p, log) in enumerate(zip(procs, logs)):
            assert p.returncode == 0, f"worker {i}:\n{log.read_text()[-3000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow
@launched_by("tensorflow")
def test_multiworker_fit_on_loopback(tmp_path):
    """Two MultiWorkerMirroredStrategy processes on 127.0.0.1 fit 2 epochs (with validation) and end identical.

    They also match the same fit on one device, run afterwards by the chief (Adam's epsilon is 1e-3
    there: see `build_model` in the worker).
    """
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    outs = [tmp_path / f"worker_{i}.npz" for i in range(2)]
    envs = [
        worker_env("tensorflow", TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        for i in range(2)
    ]
    start = time.time()
    run_workers([[sys.executable, WORKER, "multiworker", str(out)] for out in outs], envs,
                [tmp_path / f"worker_{i}.log" for i in range(2)], timeout=TIMEOUT)
    print(f"multiworker workers: {time.time() - start:.1f}s")
    chief, other = (load_runs(out) for out in outs)
    for runs in (chief, other):
        assert int(runs["multiworker"]["replicas"]) == 2
        np.testing.assert_array_equal(runs["multiworker"]["batch_per_replica"], 4.0)
        assert len(runs["multiworker"]["loss"]) == 6  # 2 epochs x 3 steps
    spread = max_abs_diff(weights(chief["multiworker"]), weights(other["multiworker"]))
    print(f"multiworker: max|d weights| between workers={spread:.2e}")
    assert spread == 0.0
    for key in ("loss", "val_loss"):
        np.testing.assert_array_equal(chief["multiworker"][key], other["multiworker"][key])
    assert len(chief["multiworker"]["val_loss"]) == 2
    np.testing.assert_allclose(chief["multiworker"]["val_loss"], chief["single"]["val_loss"], atol=TOLERANCE, rtol=0)
    assert_same_training(chief["single"], chief["multiworker"], "multiworker")


@pytest.mark.slow
@launched_by("jax")
def test_jax_data_parallel_matches_one_device(tmp_path):
    """keras.distribution.DataParallel over 2 JAX CPU devices: same losses, weights and Adam state as one device."""
    env = worker_env("jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    start = time.time()
    runs = run_worker("data_parallel", tmp_path / "runs.npz", env)
    print(f"data_parallel worker: {time.time() - start:.1f}s")
    single, parallel = runs["single"], runs["data_parallel"]
    assert int(parallel["replicas"]) == 2
    assert parallel["mesh_shape"].tolist() == [2]
    assert parallel["batch_layout"][0] == "batch"  # batches are sharded along the device mesh
    np.testing.assert_array_equal(parallel["variable_devices"], 2)  # every variable lives on both devices
    assert int(parallel["optimizer_0"]) == len(parallel["loss"]) == 4
    assert_same_training(single, parallel, "data_parallel")


def test_unknown_strategy():
    with pytest.raises(ValueError, match=r"`strategy` must be one of auto, none, mirrored, .* Received: 'horovod'"):
        select_strategy("horovod")


@pytest.mark.parametrize(
    "name, needs", [("mirrored", "tensorflow"), ("multiworker", "tensorflow"), ("data_parallel", "jax")]
)
def test_strategy_on_the_wrong_backend(name, needs):
    if BACKEND == needs:
        pytest.skip(f"{name!r} applies to the {needs} backend")
    match = rf"strategy '{name}' needs KERAS_BACKEND={needs}. Received backend: '{BACKEND}'"
    with pytest.raises(ValueError, match=match):
        select_strategy(name)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="on other backends the backend check fails first")
def test_multiworker_without_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy 'multiworker' needs the TF_CONFIG environment variable"):
        select_strategy("multiworker")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="on other backends the backend check fails first")
@pytest.mark.parametrize(
    "tf_config, match",
    [
        ("{not json", r"TF_CONFIG must be JSON \(.*\). Received: TF_CONFIG='\{not json'"),
        ("{}", r"TF_CONFIG must hold a non-empty 'cluster' and a 'task' .* Received: TF_CONFIG='\{\}'"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}}', r"a 'task' with 'type' and 'index'"),
    ],
)
def test_multiworker_with_a_bad_tf_config(monkeypatch, tf_config, match):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=match):
        select_strategy("multiworker")
