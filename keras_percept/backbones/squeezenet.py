"""SqueezeNet 1.1 trunk laid out like `torchvision.models.squeezenet1_1().features`."""

from __future__ import annotations

import keras
from keras import layers

from keras_percept.backbones.base import Backbone
from keras_percept.layers.pooling import CeilMaxPooling2D

# torchvision `features` index → (squeeze, expand) widths of each Fire module.
_FIRES = {3: (16, 64), 4: (16, 64), 6: (32, 128), 7: (32, 128),
          9: (48, 192), 10: (48, 192), 11: (64, 256), 12: (64, 256)}
_POOLS = (2, 5, 8)
# Index of the last module in each LPIPS slice: [0:2] [2:5] [5:8] [8:10] [10:11] [11:12] [12:13].
_TAP_AFTER = (1, 4, 7, 9, 10, 11, 12)


def _fire(x, index: int, squeeze: int, expand: int):
    prefix = f"features_{index}"
    s = layers.Conv2D(squeeze, 1, activation="relu", name=f"{prefix}_squeeze")(x)
    e1 = layers.Conv2D(expand, 1, activation="relu", name=f"{prefix}_expand1x1")(s)
    e3 = layers.Conv2D(expand, 3, padding="same", activation="relu", name=f"{prefix}_expand3x3")(s)
    return layers.Concatenate(axis=-1, name=prefix)([e1, e3])


@keras.saving.register_keras_serializable(package="keras_percept")
class SqueezeNetBackbone(Backbone):
    """SqueezeNet 1.1 features with the seven LPIPS taps.

    Fire modules are named `features_N` (their convolutions
    `features_N_squeeze`, `_expand1x1`, `_expand3x3`), the stem conv
    `features_0`, as in torchvision. Max-pools reproduce `ceil_mode=True`
    (see `CeilMaxPooling2D`). Taps: 64, 128, 256, 384, 384, 512, 512 channels.

    Example:

    >>> trunk = SqueezeNetBackbone()
    >>> [f.shape[-1] for f in trunk(np.zeros((1, 64, 64, 3), "float32"))]
    [64, 128, 256, 384, 384, 512, 512]
    """

    TAP_CHANNELS = (64, 128, 256, 384, 384, 512, 512)
    TAP_REDUCTIONS = (2, 4, 8, 16, 16, 16, 16)
    MIN_SIZE = 17

    def __init__(self, **kwargs):
        inputs = keras.Input((None, None, 3))
        x = layers.Conv2D(64, 3, strides=2, name="features_0")(inputs)
        x = layers.ReLU(name="features_1")(x)
        taps = [x]
        for index in range(2, 13):
            if index in _POOLS:
                x = CeilMaxPooling2D(name=f"features_{index}")(x)
            else:
                x = _fire(x, index, *_FIRES[index])
            if index in _TAP_AFTER:
                taps.append(x)
        super().__init__(inputs=inputs, outputs=taps, **kwargs)
