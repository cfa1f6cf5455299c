"""Layers shared by keras_percept models."""

from keras_percept.layers.normalization import ChannelUnitNormalization, unit_normalize
from keras_percept.layers.pooling import CeilMaxPooling2D
from keras_percept.layers.scaling import LPIPS_SCALE, LPIPS_SHIFT, InputScaling

__all__ = [
    "CeilMaxPooling2D",
    "ChannelUnitNormalization",
    "InputScaling",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "unit_normalize",
]
