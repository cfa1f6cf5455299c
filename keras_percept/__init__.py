"""keras_percept: learned perceptual image similarity (LPIPS family) for Keras 3.

Importing the package registers every serializable keras_percept object with
Keras (layers, models, losses, metrics, regularizers, constraints and
learning-rate schedules), so `keras.saving.load_model(path)` restores saved
metrics, and models compiled by `keras-percept train` or with
`keras_percept.losses`, on any backend.

Example:

>>> import keras_percept
>>> model = keras_percept.LPIPS(net="alex")
"""

from keras_percept import backbones, layers, losses, models, regularizers
from keras_percept.metrics import LPIPSMetric, keras_metrics
from keras_percept.models.lpips import LPIPS
from keras_percept.training import schedules

__version__ = "0.1.0"

__all__ = ["LPIPS", "LPIPSMetric", "backbones", "keras_metrics", "layers", "losses", "models", "regularizers", "schedules",
           "__version__"]
