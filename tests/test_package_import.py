"""What `import keras_percept` does to the process: TensorFlow's oneDNN default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent subprocess checks of the TensorFlow environment; run in the TensorFlow pass",
)

PROBE = """
import json, os, sys
first = sys.argv[1]
if first == "tensorflow":
    import tensorflow
import keras_percept
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
print(json.dumps({"env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "onednn": bool(_pywrap_util_port.IsMklEnabled())}))
"""


def _probe(first: str, **env) -> dict:
    base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run([sys.executable, "-c", PROBE, first], capture_output=True, text=True, timeout=300,
                          env={**base, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_keras_percept_first_turns_on_onednn_kernels():
    assert _probe("keras_percept") == {"env": "1", "onednn": True}


def test_an_explicit_setting_wins():
    assert _probe("keras_percept", TF_ENABLE_ONEDNN_OPTS="0") == {"env": "0", "onednn": False}


def test_nothing_is_changed_once_tensorflow_is_imported():
    """TensorFlow reads the variable at its own import: setting it later would only mislead."""
    assert _probe("tensorflow")["env"] is None
