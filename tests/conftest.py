"""Shared fixtures. The Keras backend is chosen by KERAS_BACKEND before pytest starts."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Keep downloads/caches of the code under test inside the test session.
os.environ.setdefault("KERAS_PERCEPT_HOME", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "kp_home"))


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photographs shipped by scikit-image, as float32 RGB in [0, 1]."""
    from skimage import data

    return {
        name: getattr(data, name)().astype(np.float32) / 255.0
        for name in ("astronaut", "chelsea", "coffee", "rocket")
    }


@contextlib.contextmanager
def _mlflow_environment_restored():
    """Undoes the `MLFLOW_*` variables exported into `os.environ` inside the block."""
    before = {key: value for key, value in os.environ.items() if key.startswith("MLFLOW_")}
    yield
    for key in [key for key in os.environ if key.startswith("MLFLOW_") and key not in before]:
        del os.environ[key]
    os.environ.update(before)


@pytest.fixture(autouse=True)
def _isolate_mlflow_environment():
    """Undo `MLFLOW_*` variables a test's code exported into `os.environ`.

    `mlflow.set_experiment` exports `MLFLOW_EXPERIMENT_ID` so that subprocesses
    inherit the experiment; without this, a later test's `mlflow run
    --experiment-name ...` subprocess would get both and refuse to start.
    """
    with _mlflow_environment_restored():
        yield


@pytest.fixture(autouse=True, scope="module")
def _isolate_mlflow_environment_of_module_fixtures():
    """The same for module-scoped fixtures (e.g. one that registers a model with `mlflow.set_experiment`),
    which run before a test's own isolation takes its snapshot."""
    with _mlflow_environment_restored():
        yield
