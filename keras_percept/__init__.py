"""keras_percept: learned perceptual image similarity (LPIPS family) for Keras 3.

Importing the package registers every layer and model with Keras, so
`keras.saving.load_model(path)` restores saved metrics on any backend.

Example:

>>> import keras_percept
>>> model = keras_percept.LPIPS(net="alex")
"""

from keras_percept import backbones, layers, models
from keras_percept.models.lpips import LPIPS

__version__ = "0.1.0"

__all__ = ["LPIPS", "backbones", "layers", "models", "__version__"]
