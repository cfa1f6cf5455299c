"""keras_percept: learned perceptual image similarity (LPIPS family) for Keras 3.

Importing the package registers every layer, model and loss with Keras, so
`keras.saving.load_model(path)` restores saved metrics (and models compiled
with `keras_percept.losses`) on any backend.

Example:

>>> import keras_percept
>>> model = keras_percept.LPIPS(net="alex")
"""

from keras_percept import backbones, layers, losses, models
from keras_percept.models.lpips import LPIPS

__version__ = "0.1.0"

__all__ = ["LPIPS", "backbones", "layers", "losses", "models", "__version__"]
