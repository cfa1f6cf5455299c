"""Key mapping from PyTorch LPIPS / torchvision state dicts to `keras_percept.LPIPS`.

Pure NumPy functions map names and layouts; `load_*` helpers read files.
Accepted trunk layouts:

- torchvision: `features.N.weight` (what `torchvision.models.alexnet().state_dict()`
  holds; classifier keys are ignored only when `ignore_classifier=True`);
- the reference `lpips.LPIPS` module: `net.sliceK.N.weight` plus `linK.model.*`;
- ST-LPIPS (`stlpips-pytorch`): the same, with the blur filters `net.sliceK.N.filt` (checked).
"""

from __future__ import annotations

import functools
import re
from typing import Mapping

import numpy as np

from keras_percept.convert.state_dict import StrictStateDict, conv_kernel

_SLICE_KEY = re.compile(r"^net\.slice\d+\.(\d+)\.(.+)$")
_LINS_ALIAS = re.compile(r"^lins\.(\d+)\.(.+)$")


@functools.lru_cache(maxsize=None)
def _trunk_layers(net: str) -> tuple[tuple[str, str, tuple[int, ...], np.ndarray | None], ...]:
    """(torch prefix, keras layer, torch shape, fixed value) for every conv and blur of the trunk, from a built backbone.

    Layer `features_4_expand1x1` holds torchvision's `features.4.expand1x1`; a Keras kernel is
    `(k, k, in, out)`. A `BlurPool2D` named `blur_N` stands for the constant filter buffer
    `features.N.filt` of the ST-LPIPS trunks (its value is checked, not loaded). Only trunks with
    published PyTorch weights (torchvision or `stlpips-pytorch`) qualify.
    """
    import keras

    from keras_percept.backbones import TRUNKS, get_backbone
    from keras_percept.layers.pooling import BlurPool2D

    convertible = tuple(n for n, trunk in TRUNKS.items() if trunk.imagenet_url or trunk.published)
    if net not in convertible:
        raise ValueError(f"Argument `net` must be one of {convertible}. Received: net={net!r}")
    found = []
    for layer in get_backbone(net).layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, in_ch, out_ch = layer.kernel.shape
            found.append((layer.name.replace("_", "."), layer.name, (out_ch, in_ch, height, width), None))
        elif isinstance(layer, BlurPool2D):
            channels = layer.input.shape[1 if layer.data_format == "channels_first" else -1]
            buffer = np.tile(layer.filter[None, None], (channels, 1, 1, 1))
            found.append((f"features.{layer.name.split('_')[1]}", layer.name, buffer.shape, buffer))
    return tuple(found)


def normalize_trunk_keys(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Renames reference-LPIPS trunk keys `net.sliceK.N.x` to torchvision's `features.N.x`.

    Other keys pass through unchanged (the reference keeps torchvision's
    `features` indices inside its slices).

    Example:

    >>> list(normalize_trunk_keys({"net.slice2.3.weight": 0}))
    ['features.3.weight']
    """
    out = {}
    for key, value in state_dict.items():
        match = _SLICE_KEY.match(key)
        out[f"features.{match.group(1)}.{match.group(2)}" if match else key] = value
    return out


def trunk_layer_weights(
    state_dict: Mapping[str, np.ndarray],
    net: str,
    *,
    ignore_classifier: bool = True,
    source: str = "trunk state dict",
) -> dict[str, list[np.ndarray]]:
    """Maps a torchvision (or reference-LPIPS) trunk state dict to Keras layer weights.

    Strict: a missing, mis-shaped or unexpected tensor raises `ValueError`
    naming it. With `ignore_classifier=True`, torchvision's `classifier.*`
    tensors (not part of the LPIPS trunk) are dropped, as are
    `features.*` layers past the last LPIPS tap (alex has none with weights).

    Returns:
        `{keras_layer_name: [kernel, bias]}` for `keras_percept` backbones.

    Example:

    >>> import torchvision  # doctest: +SKIP
    >>> sd = {k: v.numpy() for k, v in torchvision.models.alexnet().state_dict().items()}
    >>> sorted(trunk_layer_weights(sd, "alex"))[:2]
    ['features_0', 'features_10']
    """
    state = normalize_trunk_keys(state_dict)
    if ignore_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    reader = StrictStateDict(state, source=source)
    weights = {}
    for prefix, layer, shape, fixed in _trunk_layers(net):
        if fixed is None:
            weights[layer] = [conv_kernel(reader.take(f"{prefix}.weight", shape)), reader.take(f"{prefix}.bias", shape[:1])]
        elif f"{prefix}.filt" in reader and not np.allclose(reader.take(f"{prefix}.filt", shape), fixed, atol=1e-7):
            raise ValueError(f"{prefix}.filt in {source} is not the binomial blur filter of `{layer}`.")
    reader.finish()
    return weights


def lin_layer_weights(
    state_dict: Mapping[str, np.ndarray],
    tap_channels: tuple[int, ...],
    *,
    source: str = "linear-layer state dict",
) -> dict[str, list[np.ndarray]]:
    """Maps official LPIPS linear weights (`linK.model.1.weight`) to `lin_K` kernels.

    `linK.model.0.weight` (a model saved with dropout off) is accepted too,
    but exactly one of the two must be present per layer. Strict: missing,
    extra or mis-shaped tensors raise `ValueError` naming them — unlike the
    reference's `strict=False`, which silently keeps random weights.

    Example:

    >>> sd = {f"lin{k}.model.1.weight": np.ones((1, c, 1, 1)) for k, c in enumerate((64, 192, 384, 256, 256))}
    >>> lin_layer_weights(sd, (64, 192, 384, 256, 256))["lin_0"][0].shape
    (1, 1, 64, 1)
    """
    reader = StrictStateDict(state_dict, source=source)
    weights = {}
    for k, channels in enumerate(tap_channels):
        names = [f"lin{k}.model.1.weight", f"lin{k}.model.0.weight"]
        present = [n for n in names if n in reader]
        if len(present) > 1:
            raise ValueError(f"Both {names[0]!r} and {names[1]!r} are in {source}; expected one.")
        w = reader.take(present[0] if present else names[0], (1, channels, 1, 1))
        weights[f"lin_{k}"] = [conv_kernel(w)]
    reader.finish()
    return weights


def split_lpips_state_dict(
    state_dict: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Splits a full reference `lpips.LPIPS` state dict into (trunk, linear) parts.

    The scaling-layer buffers (`scaling_layer.shift/scale`) are checked
    against keras_percept's constants rather than loaded. The reference
    registers each linear layer twice (`linK` and the `lins` ModuleList), so
    `lins.K.*` must equal `linK.*` and is then dropped.
    """
    from keras_percept.layers.scaling import LPIPS_SCALE, LPIPS_SHIFT

    trunk, lins = {}, {}
    for key, value in state_dict.items():
        alias = _LINS_ALIAS.match(key)
        if alias:
            twin = f"lin{alias.group(1)}.{alias.group(2)}"
            if twin not in state_dict or not np.array_equal(np.asarray(state_dict[twin]), np.asarray(value)):
                raise ValueError(f"{key!r} differs from {twin!r} (or {twin!r} is missing).")
        elif key.startswith("lin"):
            lins[key] = value
        elif key.startswith("scaling_layer."):
            expected = LPIPS_SHIFT if key.endswith("shift") else LPIPS_SCALE
            if not np.allclose(np.ravel(value), expected, atol=1e-7):
                raise ValueError(f"{key!r} is {np.ravel(value).tolist()}; expected {list(expected)}.")
        else:
            trunk[key] = value
    return trunk, lins
