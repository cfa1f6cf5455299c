"""The real photographs the embedded dataset is cut from: colour images shipped inside
scikit-image (`skimage.data`) and scikit-learn (`load_sample_images`), so no download is needed."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


# name → loader of a uint8 RGB photograph.
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "retina": _skimage("retina"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}
DEFAULT_VAL_PHOTOS = ("chelsea", "flower", "motorcycle")


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A photograph as float32 RGB in [0, 1], `(H, W, 3)`.

    Example:

    >>> load_photo("chelsea").shape
    (300, 451, 3)
    """
    if name not in PHOTOS:
        raise ValueError(f"Unknown photo {name!r}; available: {sorted(PHOTOS)}")
    image = np.asarray(PHOTOS[name](), dtype=np.float32)[..., :3] / 255.0
    image.setflags(write=False)
    return image
