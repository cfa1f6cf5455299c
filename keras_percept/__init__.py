"""keras_percept: learned perceptual image similarity (LPIPS family) for Keras 3.

Importing the package registers every serializable keras_percept object with
Keras (layers, models, losses, metrics, regularizers, constraints and
learning-rate schedules), so `keras.saving.load_model(path)` restores saved
metrics, and models compiled by `keras-percept train` or with
`keras_percept.losses`, on any backend.

On the TensorFlow backend, importing keras_percept before TensorFlow (or
`keras`) turns on TensorFlow's oneDNN CPU kernels where TensorFlow would
leave them off; `TF_ENABLE_ONEDNN_OPTS=0` keeps them off.

Example:

>>> import keras_percept
>>> model = keras_percept.LPIPS(net="alex")
"""

import os as _os
import sys as _sys

# TensorFlow switches its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16 or AMX; on
# others (e.g. AVX2-only AMD EPYCs) its convolutions run on Eigen: forward alex 1.09x, forward vgg 1.28x
# and lin training 1.37x slower there (benchmarks/speed.py, `tensorflow` vs `tensorflow-eigen`). TensorFlow reads the variable once, when it
# is first imported, so this default only applies when keras_percept is imported before TensorFlow (and
# before `keras` on the TensorFlow backend). Opt out with TF_ENABLE_ONEDNN_OPTS=0.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from keras_percept import backbones, layers, losses, models, regularizers  # noqa: E402
from keras_percept.metrics import keras_metrics  # noqa: E402
from keras_percept.models.lpips import LPIPS  # noqa: E402
from keras_percept.training import schedules  # noqa: E402

__version__ = "0.1.0"

__all__ = ["LPIPS", "backbones", "keras_metrics", "layers", "losses", "models", "regularizers", "schedules",
           "__version__"]
