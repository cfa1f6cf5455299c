"""AlexNet trunk laid out like `torchvision.models.alexnet().features`."""

from __future__ import annotations

import keras
from keras import layers

from keras_percept.backbones.base import Backbone, internal_data_format, to_internal, to_nhwc

# (torchvision features index, filters, kernel, stride, padding); a max-pool
# (3, stride 2) precedes the convolutions at indices 3 and 6.
_CONVS = ((0, 64, 11, 4, 2), (3, 192, 5, 1, 2), (6, 384, 3, 1, 1), (8, 256, 3, 1, 1), (10, 256, 3, 1, 1))
_POOL_BEFORE = {3: "features_2", 6: "features_5"}


@keras.saving.register_keras_serializable(package="keras_percept")
class AlexNetBackbone(Backbone):
    """AlexNet features with the five LPIPS taps (relu1 … relu5).

    Layer `features_N` holds the weights of torchvision's `features.N`, so a
    torchvision state dict converts by name (`keras_percept.convert`).
    Taps: 64, 192, 384, 256, 256 channels.

    Example:

    >>> trunk = AlexNetBackbone()
    >>> feats = trunk(np.zeros((2, 64, 64, 3), "float32"))
    >>> feats[0].shape
    (2, 15, 15, 64)
    """

    TAP_CHANNELS = (64, 192, 384, 256, 256)
    TAP_REDUCTIONS = (4, 8, 16, 16, 16)
    MIN_SIZE = 31

    def __init__(self, **kwargs):
        fmt = internal_data_format()
        inputs = keras.Input((None, None, 3))
        x = to_internal(inputs, fmt, "to_channels_first")
        taps = []
        for index, filters, kernel, stride, pad in _CONVS:
            if index in _POOL_BEFORE:
                x = layers.MaxPooling2D(3, strides=2, data_format=fmt, name=_POOL_BEFORE[index])(x)
            if stride == 1 and kernel == 2 * pad + 1:  # "same" is this symmetric padding: inside the convolution
                x = layers.Conv2D(filters, kernel, padding="same", data_format=fmt, name=f"features_{index}")(x)
            else:  # conv1 (11x11, stride 4, padding 2) has no "same" equivalent
                x = layers.ZeroPadding2D(pad, data_format=fmt, name=f"features_{index}_pad")(x)
                x = layers.Conv2D(filters, kernel, strides=stride, data_format=fmt, name=f"features_{index}")(x)
            x = layers.ReLU(name=f"features_{index + 1}")(x)
            taps.append(to_nhwc(x, fmt, f"tap_{len(taps)}"))
        super().__init__(inputs=inputs, outputs=taps, **kwargs)
