"""Shift-tolerant AlexNet and VGG16 trunks of ST-LPIPS (Ghildyal & Liu, ECCV 2022).

Each strided operation of the LPIPS trunk becomes its stride-1 version followed by
`BlurPool2D` (binomial 3x3, reflect padding of 2, stride 2): the paper's
"antialiased, reflection pad 2, conv1 stride 1, blur after" variant, laid out as the
`stlpips-pytorch` package's `features` so its published weights convert by name
(`features_N` holds `features.N`; `blur_N` is the filter buffer `features.N.filt`). Reflect
padding needs more rows than it pads, hence the minimum sizes (alex 21 px, vgg 18 px).
"""

from __future__ import annotations

import keras
from keras import layers

from keras_percept.backbones.base import Backbone, internal_data_format, to_internal, to_nhwc
from keras_percept.backbones.vgg16 import VGG16Backbone
from keras_percept.layers.pooling import BlurPool2D

# Alex: (features index of the conv, filters, kernel); a stride-1 3x3 max pool and a blur precede
# the convolutions at 5 and 9, and conv1 (11x11, stride 1, padding 2) is followed by the blur at 1.
_ALEX_CONVS = ((0, 64, 11), (5, 192, 5), (9, 384, 3), (11, 256, 3), (13, 256, 3))
_ALEX_POOL_BEFORE = {5: 3, 9: 7}


def _blur(x, index: int, fmt: str):
    return BlurPool2D(filter_size=3, strides=2, pad_more=True, data_format=fmt, name=f"blur_{index}")(x)


@keras.saving.register_keras_serializable(package="keras_percept")
class AlexNetShiftTolerantBackbone(Backbone):
    """ST-LPIPS's shift-tolerant AlexNet: taps relu1 … relu5 (64, 192, 384, 256, 256 channels).

    Example:

    >>> trunk = AlexNetShiftTolerantBackbone()
    >>> [f.shape[1] for f in trunk(np.zeros((1, 64, 64, 3), "float32"))]
    [30, 15, 8, 8, 8]
    """

    TAP_CHANNELS = (64, 192, 384, 256, 256)
    TAP_REDUCTIONS = (2, 4, 8, 8, 8)
    MIN_SIZE = 21

    def __init__(self, **kwargs):
        fmt = internal_data_format()
        inputs = keras.Input((None, None, 3))
        x = to_internal(inputs, fmt, "to_channels_first")
        taps = []
        for index, filters, kernel in _ALEX_CONVS:
            if index in _ALEX_POOL_BEFORE:
                pool = _ALEX_POOL_BEFORE[index]
                x = layers.MaxPooling2D(3, strides=1, data_format=fmt, name=f"features_{pool}")(x)
                x = _blur(x, pool + 1, fmt)
            if index == 0:
                x = layers.ZeroPadding2D(2, data_format=fmt, name="features_0_pad")(x)
                x = layers.Conv2D(filters, kernel, data_format=fmt, name="features_0")(x)
                x = _blur(x, 1, fmt)
            else:
                x = layers.Conv2D(filters, kernel, padding="same", data_format=fmt, name=f"features_{index}")(x)
            x = layers.ReLU(name=f"relu_{len(taps)}")(x)
            taps.append(to_nhwc(x, fmt, f"tap_{len(taps)}"))
        super().__init__(inputs=inputs, outputs=taps, **kwargs)


@keras.saving.register_keras_serializable(package="keras_percept")
class VGG16ShiftTolerantBackbone(VGG16Backbone):
    """ST-LPIPS's shift-tolerant VGG16 (`VGG16Backbone(pooling="blur")`): taps relu1_2 … relu5_3.

    Example:

    >>> trunk = VGG16ShiftTolerantBackbone()
    >>> [f.shape[1] for f in trunk(np.zeros((1, 64, 64, 3), "float32"))]
    [64, 33, 17, 9, 5]
    """

    MIN_SIZE = 18

    def __init__(self, **kwargs):
        kwargs.pop("pooling", None)  # always "blur"
        super().__init__(pooling="blur", **kwargs)

    def get_config(self) -> dict:
        return Backbone.get_config(self)
