"""VGG16 trunk laid out like `torchvision.models.vgg16().features`."""

from __future__ import annotations

import keras
from keras import layers

from keras_percept.backbones.base import Backbone, internal_data_format, to_internal, to_nhwc
from keras_percept.layers.pooling import BlurPool2D, L2Pooling2D

# Stages of 3x3 convolutions (filters per conv); a stride-2 pool separates stages.
_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
#: "max": torchvision's; "l2": DISTS's L2 pooling; "blur": ST-LPIPS's stride-1 max pool + `BlurPool2D`
#: (torchvision's layer indices shift by one per blur, as in the stlpips-pytorch package).
POOLINGS = ("max", "l2", "blur")


@keras.saving.register_keras_serializable(package="keras_percept")
class VGG16Backbone(Backbone):
    """VGG16 features tapped at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.

    Conv layers are named `features_N` after torchvision's `features.N`
    (indices 0, 2, 5, 7, 10, …, 28). Keras's own `keras.applications.VGG16`
    weights come from Caffe and are *not* torchvision's: LPIPS needs these.

    Example:

    >>> trunk = VGG16Backbone()
    >>> [f.shape[1] for f in trunk(np.zeros((1, 64, 64, 3), "float32"))]
    [64, 32, 16, 8, 4]
    """

    TAP_CHANNELS = (64, 128, 256, 512, 512)
    TAP_REDUCTIONS = (1, 2, 4, 8, 16)
    MIN_SIZE = 16

    def __init__(self, pooling: str = "max", **kwargs):
        if pooling not in POOLINGS:
            raise ValueError(f"Argument `pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
        fmt = internal_data_format() if pooling == "max" else "channels_last"  # L2Pooling2D is channels-last
        inputs = keras.Input((None, None, 3))
        x = to_internal(inputs, fmt, "to_channels_first")
        taps = []
        index = 0
        for stage, widths in enumerate(_STAGES):
            if stage:
                if pooling == "max":
                    x = layers.MaxPooling2D(2, strides=2, data_format=fmt, name=f"features_{index}")(x)
                elif pooling == "blur":  # ST-LPIPS: the pool at stride 1, the stride moved into a blur
                    x = layers.MaxPooling2D(2, strides=1, data_format=fmt, name=f"features_{index}")(x)
                    index += 1
                    x = BlurPool2D(3, strides=2, pad_more=True, data_format=fmt, name=f"blur_{index}")(x)
                else:
                    x = L2Pooling2D(name=f"features_{index}")(x)
                index += 1
            for filters in widths:
                x = layers.Conv2D(filters, 3, padding="same", data_format=fmt, name=f"features_{index}")(x)
                x = layers.ReLU(name=f"features_{index + 1}")(x)
                index += 2
            taps.append(to_nhwc(x, fmt, f"tap_{len(taps)}"))
        super().__init__(inputs=inputs, outputs=taps, **kwargs)
        self.pooling = pooling
        if pooling == "l2":  # L2 pooling keeps ceil(H/2) rows (at least one): any size passes
            self.MIN_SIZE = 1
        elif pooling == "blur":  # each blur's reflect padding needs 3 rows: 18 px at the input
            self.MIN_SIZE = 18

    def get_config(self) -> dict:
        return {**super().get_config(), "pooling": self.pooling}
