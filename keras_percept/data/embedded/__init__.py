"""The embedded 2AFC/JND dataset: real photographs shipped with scikit-image and scikit-learn,
24 distortion families, and labels from a simulated observer (NOT human judgments).

Example:

>>> from keras_percept.data import embedded, load_2afc
>>> root = embedded.build()  # doctest: +SKIP
>>> train = load_2afc(root, "train", shuffle=True)  # doctest: +SKIP
"""

from keras_percept.data.embedded.distortions import DEFAULT_VAL_FAMILIES, FAMILIES, GROUPS, distort
from keras_percept.data.embedded.generate import GENERATOR_VERSION, build, read_manifest, read_metadata
from keras_percept.data.embedded.observer import Observer
from keras_percept.data.embedded.photos import DEFAULT_VAL_PHOTOS, PHOTOS, load_photo

__all__ = [
    "DEFAULT_VAL_FAMILIES", "DEFAULT_VAL_PHOTOS", "FAMILIES", "GENERATOR_VERSION", "GROUPS", "Observer",
    "PHOTOS", "build", "distort", "load_photo", "read_manifest", "read_metadata",
]
