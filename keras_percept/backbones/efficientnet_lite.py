"""EfficientNet-Lite0 trunk and ImageNet classifier, laid out like lukemelas/EfficientNet-PyTorch.

EfficientNet-Lite differs from EfficientNet-B0 in ways that matter for weight
conversion: no squeeze-excite, ReLU6 instead of swish, and a stem (32 ch) and
head (1280 ch) that are never width-scaled. Convolutions use TensorFlow "same"
padding (Keras `padding="same"` reproduces it on every backend; PyTorch ports
emulate it with `Conv2dStaticSamePadding`). Layer names mirror the PyTorch
keys (`_blocks.3._expand_conv` → `blocks_3_expand_conv`), so
`keras_percept.convert.efficientnet` maps a state dict by name.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import layers

from keras_percept.backbones.base import Backbone

#: (repeats, kernel, stride of the first block, expand ratio, output channels)
#: per stage, as EfficientNet-B0 (Lite0 has width and depth multipliers 1.0).
EFFICIENTNET_LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
#: TensorFlow's EfficientNet batch-norm epsilon (PyTorch's default 1e-5 would be wrong).
BN_EPSILON = 1e-3


class BlockSpec(NamedTuple):
    """One MBConv block: `_blocks.{index}` in the PyTorch layout."""

    index: int
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand: int

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expand

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def efficientnet_lite0_blocks() -> tuple[BlockSpec, ...]:
    """The 16 MBConv blocks of EfficientNet-Lite0, expanded from `EFFICIENTNET_LITE0_STAGES`.

    Example:

    >>> blocks = efficientnet_lite0_blocks()
    >>> len(blocks), blocks[3]
    (16, BlockSpec(index=3, in_channels=24, out_channels=40, kernel=5, stride=2, expand=6))
    """
    blocks = []
    in_channels = STEM_CHANNELS
    for repeats, kernel, stride, expand, out_channels in EFFICIENTNET_LITE0_STAGES:
        for repeat in range(repeats):
            blocks.append(BlockSpec(len(blocks), in_channels, out_channels, kernel,
                                    stride if repeat == 0 else 1, expand))
            in_channels = out_channels
    return tuple(blocks)


def _tap_block_indices() -> frozenset[int]:
    """Blocks that close a resolution level: the next block strides 2, or the trunk ends."""
    blocks = efficientnet_lite0_blocks()
    return frozenset(
        b.index for b, following in zip(blocks, blocks[1:] + (None,))
        if following is None or following.stride != 1
    )


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn_name: str, relu6: bool):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name)(x)
    return layers.ReLU(6.0, name=f"{bn_name}_relu6")(x) if relu6 else x


def _mbconv(x, spec: BlockSpec):
    prefix = f"blocks_{spec.index}"
    shortcut = x
    if spec.expand != 1:
        x = _conv_bn(x, spec.mid_channels, 1, 1, f"{prefix}_expand_conv", f"{prefix}_bn0", relu6=True)
    x = layers.DepthwiseConv2D(spec.kernel, strides=spec.stride, padding="same", use_bias=False,
                               name=f"{prefix}_depthwise_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn1")(x)
    x = layers.ReLU(6.0, name=f"{prefix}_bn1_relu6")(x)
    x = _conv_bn(x, spec.out_channels, 1, 1, f"{prefix}_project_conv", f"{prefix}_bn2", relu6=False)
    if spec.has_skip:
        x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    return x


def _build_trunk(inputs: Any) -> tuple[Any, list[Any]]:
    """Stem and MBConv blocks; returns the last block's output and the resolution taps."""
    x = _conv_bn(inputs, STEM_CHANNELS, 3, 2, "stem_conv", "stem_bn", relu6=True)
    tap_blocks = _tap_block_indices()
    taps = []
    for spec in efficientnet_lite0_blocks():
        x = _mbconv(x, spec)
        if spec.index in tap_blocks:
            taps.append(x)
    return x, taps


def efficientnet_lite_preprocess(images_0_255: Any) -> Any:
    """Maps RGB images in [0, 255] to EfficientNet-Lite's input range.

    Formula:

    ```
    y = (x - 127) / 128
    ```

    the `mean_rgb = 127, stddev_rgb = 128` of TensorFlow's EfficientNet-Lite
    (`tensorflow/tpu/.../efficientnet/lite`), so [0, 255] maps to
    [-0.992, 1.0]. ImageNet mean/std normalisation is *not* what these weights
    were trained with (it lowers confidence on real photos).

    Args:
        images_0_255: array or tensor of RGB values in [0, 255], any shape
            ending in 3 channels; integer inputs are cast to float32.

    Returns:
        A float32 backend tensor of the same shape.

    Example:

    >>> x = np.array([[[[0, 127, 255]]]], "uint8")
    >>> np.asarray(efficientnet_lite_preprocess(x)).ravel().tolist()
    [-0.9921875, 0.0, 1.0]
    """
    x = keras.ops.cast(images_0_255, "float32")
    return (x - 127.0) / 128.0


@keras.saving.register_keras_serializable(package="keras_percept")
class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 trunk tapped at the end of each resolution level.

    Taps: 16 ch (1/2), 24 (1/4), 40 (1/8), 112 (1/16), 320 (1/32) — the
    outputs of blocks 0, 2, 4, 10 and 15. "Same" padding makes each tap
    `ceil(H / reduction)` high, so any input of at least 1x1 works. Expects
    inputs as produced by `efficientnet_lite_preprocess`. Layer names:
    `stem_conv`, `stem_bn`, `blocks_N_expand_conv`, `blocks_N_bn0`,
    `blocks_N_depthwise_conv`, `blocks_N_bn1`, `blocks_N_project_conv`,
    `blocks_N_bn2` (block 0 has no expand conv / bn0).

    Args:
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example:

    >>> trunk = EfficientNetLite0Backbone()
    >>> [tuple(f.shape[1:]) for f in trunk(np.zeros((1, 64, 64, 3), "float32"))]
    [(32, 32, 16), (16, 16, 24), (8, 8, 40), (4, 4, 112), (2, 2, 320)]
    """

    TAP_CHANNELS = (16, 24, 40, 112, 320)
    TAP_REDUCTIONS = (2, 4, 8, 16, 32)
    MIN_SIZE = 1

    def __init__(self, **kwargs):
        inputs = keras.Input((None, None, 3))
        _, taps = _build_trunk(inputs)
        super().__init__(inputs=inputs, outputs=taps, **kwargs)


@keras.saving.register_keras_serializable(package="keras_percept")
class EfficientNetLite0Classifier(keras.Model):
    """EfficientNet-Lite0 ImageNet classifier producing 1000 logits (no softmax).

    The trunk is built and named exactly as in `EfficientNetLite0Backbone`,
    followed by `head_conv` (1x1, 1280 ch), `head_bn`, ReLU6, global average
    pooling and the dense layer `fc`. Dropout is omitted: it is the identity
    at inference. Expects inputs from `efficientnet_lite_preprocess`.

    Args:
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example:

    >>> model = EfficientNetLite0Classifier()
    >>> tuple(model(np.zeros((2, 224, 224, 3), "float32")).shape)
    (2, 1000)
    """

    def __init__(self, **kwargs):
        inputs = keras.Input((None, None, 3))
        x, _ = _build_trunk(inputs)
        x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "head_conv", "head_bn", relu6=True)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        logits = layers.Dense(NUM_CLASSES, name="fc")(x)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

    def get_config(self) -> dict:
        # The graph is rebuilt by `__init__`; only constructor arguments are stored.
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict) -> "EfficientNetLite0Classifier":
        return cls(**config)
