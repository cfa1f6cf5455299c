"""`mlflow models serve` of a registered metric: a real scoring server on 127.0.0.1, real HTTP requests.

The metric is a small seeded LPIPS, logged and registered (alias `latest-trained`) by
`log_metric_model`, the function `keras-percept train` logs with, in a SQLite store in a
temporary folder. Expected distances come from `LPIPS.distance` on the same arrays.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

from keras_percept import LPIPS

pytestmark = [pytest.mark.slow, pytest.mark.one_pass]  # MLflow plumbing; the distances are the API's

NAME = "served-lpips"
START_TIMEOUT = 240  # seconds for the scoring server to answer /ping


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """(tracking URI, the metric, its ModelInfo) for a seeded alex metric registered as NAME@latest-trained."""
    import mlflow

    from keras_percept.serving import log_metric_model
    from keras_percept.experiment.tracking import model_requirements

    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    keras.utils.set_random_seed(0)
    metric = LPIPS(net="alex")
    path = str(root / "metric.keras")
    metric.save(path)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("serving")
    with mlflow.start_run():
        info = log_metric_model(path, registered_model_name=NAME, alias="latest-trained",
                                pip_requirements=model_requirements())
    yield uri, metric, info
    mlflow.set_tracking_uri(previous)


def _post(port: int, body) -> tuple[int, str, float]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=data,
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode(), time.perf_counter() - start
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), time.perf_counter() - start


@pytest.fixture(scope="module")
def server(registered, tmp_path_factory):
    """The scoring server of NAME@latest-trained on a free port of 127.0.0.1: yields the port."""
    uri, _, _ = registered
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@latest-trained",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"the scoring server did not start (exit {proc.poll()}):\n{log.read()[-4000:]}")
            time.sleep(1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _images(seed: int, n: int = 2, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def test_logged_model_has_a_signature_an_example_and_a_loadable_keras_file(registered, tmp_path):
    import mlflow

    uri, metric, info = registered
    signature = info.signature
    assert [s.name for s in signature.inputs.inputs] == ["x0", "x1"]
    assert all(s.shape == (-1, -1, -1, 3) and s.type == np.dtype("float32") for s in signature.inputs.inputs)
    assert [(s.name, s.shape) for s in signature.outputs.inputs] == [("distance", (-1,))]
    assert info.saved_input_example_info is not None

    local = mlflow.artifacts.download_artifacts(f"models:/{NAME}@latest-trained", dst_path=str(tmp_path))
    (keras_file,) = glob.glob(os.path.join(local, "artifacts", "*.keras"))
    loaded = keras.saving.load_model(keras_file)
    x0, x1 = _images(1), _images(2)
    np.testing.assert_array_equal(loaded.distance(x0, x1), metric.distance(x0, x1))
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@latest-trained")
    np.testing.assert_allclose(served.predict({"x0": x0, "x1": x1})["distance"], metric.distance(x0, x1), atol=1e-7)


def test_a_dists_metric_is_logged_and_served(registered, tmp_path):
    """A DISTS metric (what a tracked `model.metric: dists` run logs) gets the same signature and serves its
    distances (DISTS has no `spatial`: the signature code once asked every metric for it)."""
    import mlflow

    from keras_percept.experiment.tracking import model_requirements
    from keras_percept.models import DISTS
    from keras_percept.serving import log_metric_model

    keras.utils.set_random_seed(1)
    metric = DISTS(trunk="effnet-lite0", input_range="[-1,1]")
    path = str(tmp_path / "dists.keras")
    metric.save(path)
    with mlflow.start_run():
        info = log_metric_model(path, pip_requirements=model_requirements())
    assert [(s.name, s.shape) for s in info.signature.outputs.inputs] == [("distance", (-1,))]
    x0, x1 = _images(3, size=40), _images(4, size=40)
    served = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_allclose(served.predict({"x0": x0, "x1": x1})["distance"], metric.distance(x0, x1), atol=1e-6)


def _assert_clean_error(status: int, body: str, needle: str) -> str:
    assert 400 <= status < 500, (status, body[:500])
    error = json.loads(body)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "stack_trace" not in error and "Traceback" not in body
    assert needle in error["message"], error["message"][:1000]
    assert len(error["message"].splitlines()) == 1, error["message"][:1000]
    return error["message"]


def test_the_scoring_server_answers_distances_and_clean_4xx_errors(registered, server):
    _, metric, _ = registered
    x0, x1 = _images(3), _images(4)
    times = []
    for _ in range(5):
        status, body, seconds = _post(server, {"inputs": {"x0": x0.tolist(), "x1": x1.tolist()}})
        assert status == 200, body[:2000]
        times.append(seconds)
    distances = json.loads(body)["predictions"]["distance"]
    np.testing.assert_allclose(distances, metric.distance(x0, x1), rtol=1e-6, atol=1e-7)
    print(f"round trip, 2 pairs of 48x48: median {1000 * statistics.median(times):.1f} ms "
          f"(first {1000 * times[0]:.1f} ms)")

    # Our checks: one-line messages.
    status, body, _ = _post(server, {"inputs": {"x0": x0.tolist(), "x1": _images(5, size=40).tolist()}})
    _assert_clean_error(status, body, "x0 and x1 must have the same shape. Received: x0 (2, 48, 48, 3), "
                                      "x1 (2, 40, 40, 3).")
    status, body, _ = _post(server, {"inputs": {"x0": (255 * (x0 + 1) / 2).tolist(), "x1": x1.tolist()}})
    _assert_clean_error(status, body, "outside input_range='[-1,1]'")
    status, body, _ = _post(server, {"inputs": {"x0": _images(6, size=16).tolist(), "x1": _images(7, size=16).tolist()}})
    _assert_clean_error(status, body, "the alex trunk needs at least 31x31")
    # MLflow's own signature check (names, rank, channels) runs before the model: one line too.
    status, body, _ = _post(server, {"inputs": {"x0": x0.tolist()}})
    _assert_clean_error(status, body, "Missing input(s) ['x1']; the metric takes x0 and x1")
    status, body, _ = _post(server, {"inputs": {"x0": x0.tolist(), "x1": x1[..., :2].tolist()}})
    _assert_clean_error(status, body, "Input x1 must be RGB images of shape (N, H, W, 3). Received: shape (2, 48, 48, 2)")
    status, body, _ = _post(server, {"inputs": {"x0": x0[0].tolist(), "x1": x1[0].tolist()}})
    _assert_clean_error(status, body, "Input x0 must be RGB images of shape (N, H, W, 3). Received: shape (48, 48, 3)")

    status, body, _ = _post(server, {"inputs": {"x0": x0.tolist(), "x1": x1.tolist()}})
    assert status == 200  # still serving after the bad requests
