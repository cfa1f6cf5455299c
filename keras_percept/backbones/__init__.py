"""Feature-extraction trunks and their registry.

`BACKBONES` maps the LPIPS net name to its class; `get_backbone(name)` builds one.
"""

from __future__ import annotations

import contextlib

import keras

from keras_percept.backbones.alexnet import AlexNetBackbone
from keras_percept.backbones.base import Backbone
from keras_percept.backbones.efficientnet_lite import (
    EfficientNetLite0Backbone,
    EfficientNetLite0Classifier,
    efficientnet_lite_preprocess,
)
from keras_percept.backbones.squeezenet import SqueezeNetBackbone
from keras_percept.backbones.vgg16 import VGG16Backbone

BACKBONES: dict[str, type[Backbone]] = {
    "alex": AlexNetBackbone,
    "vgg": VGG16Backbone,
    "squeeze": SqueezeNetBackbone,
    "effnet-lite0": EfficientNetLite0Backbone,
}


def get_backbone(net: str, **kwargs) -> Backbone:
    """Builds the (randomly initialised) trunk registered under `net`.

    Example:

    >>> get_backbone("squeeze").TAP_CHANNELS
    (64, 128, 256, 384, 384, 512, 512)
    """
    if net not in BACKBONES:
        raise ValueError(f"Argument `net` must be one of {sorted(BACKBONES)}. Received: net={net!r}")
    return BACKBONES[net](**kwargs)


@contextlib.contextmanager
def dtype_policy_scope(policy: str):
    """Keras's global dtype policy set to `policy` while layers are built inside the block, restored after.

    Keras has the global setter but no scope; layers take the policy in force when they are created.

    Example:

    >>> with dtype_policy_scope("mixed_bfloat16"):
    ...     trunk = get_backbone("squeeze")
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


__all__ = [
    "AlexNetBackbone",
    "Backbone",
    "BACKBONES",
    "EfficientNetLite0Backbone",
    "EfficientNetLite0Classifier",
    "SqueezeNetBackbone",
    "VGG16Backbone",
    "dtype_policy_scope",
    "efficientnet_lite_preprocess",
    "get_backbone",
]
