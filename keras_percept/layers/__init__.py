"""Layers shared by keras_percept models."""

from keras_percept.layers.drop_path import DropPath
from keras_percept.layers.image_parameter import ClipToRange, ImageParameter
from keras_percept.layers.normalization import ChannelUnitNormalization, unit_normalize
from keras_percept.layers.pooling import BlurPool2D, CeilMaxPooling2D, L2Pooling2D
from keras_percept.layers.scale_attention import ScaleAttention
from keras_percept.layers.scaling import LPIPS_SCALE, LPIPS_SHIFT, InputScaling

__all__ = [
    "BlurPool2D",
    "CeilMaxPooling2D",
    "ChannelUnitNormalization",
    "ClipToRange",
    "DropPath",
    "ImageParameter",
    "InputScaling",
    "L2Pooling2D",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "ScaleAttention",
    "unit_normalize",
]
