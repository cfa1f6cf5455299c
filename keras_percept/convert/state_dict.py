"""Strict reading of PyTorch state dicts and layout conversion to Keras.

Everything here is pure NumPy except `load_pth`, which imports torch lazily.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

import numpy as np

#: Buffers PyTorch saves that carry no model weights.
IGNORED_SUFFIXES = ("num_batches_tracked",)


def load_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch `.pth` state dict into float32/int NumPy arrays.

    Needs PyTorch (the `convert` extra). Non-tensor entries are an error.

    Example:

    >>> sd = load_pth("alex.pth")  # doctest: +SKIP
    >>> sd["lin0.model.1.weight"].shape
    (1, 64, 1, 1)
    """
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading PyTorch .pth files needs PyTorch. Install it with "
            "`pip install keras-percept[convert]` (CPU-only: `pip install torch`)."
        ) from err
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No state dict file at {path!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Could not read {path!r} as a PyTorch state dict: {err}") from err
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state dict.")
    out = {}
    for key, value in state.items():
        if not hasattr(value, "detach"):
            raise ValueError(f"Entry {key!r} of {path!r} is not a tensor ({type(value).__name__}).")
        out[key] = value.detach().cpu().numpy()
    return out


class StrictStateDict:
    """Hands out state-dict entries by name and shape, and checks nothing is left.

    `take` raises a `ValueError` naming the key when it is missing or has an
    unexpected shape; `finish` raises when keys were never taken (an *extra*
    tensor means the file is not for this architecture). This is the opposite
    of PyTorch's `strict=False`, which silently keeps random weights.

    Args:
        state_dict: name → array.
        source: description used in error messages (e.g. a file name).
        ignore_suffixes: keys ending so are never required nor reported.

    Example:

    >>> sd = StrictStateDict({"w": np.zeros((2, 3))}, source="demo")
    >>> sd.take("w", (2, 3)).shape
    (2, 3)
    >>> sd.finish()
    """

    def __init__(
        self,
        state_dict: Mapping[str, np.ndarray],
        source: str = "state dict",
        ignore_suffixes: Iterable[str] = IGNORED_SUFFIXES,
    ):
        self._state = {k: np.asarray(v) for k, v in state_dict.items()}
        self._source = source
        self._ignore = tuple(ignore_suffixes)
        self._taken: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._state

    def take(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self._state:
            raise ValueError(
                f"Missing tensor {key!r} in {self._source}: expected shape {tuple(shape)}."
            )
        value = self._state[key]
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"Tensor {key!r} in {self._source} has shape {tuple(value.shape)}; "
                f"expected {tuple(shape)}."
            )
        self._taken.add(key)
        return value.astype(np.float32)

    def finish(self) -> None:
        extra = sorted(
            k for k in self._state if k not in self._taken and not k.endswith(self._ignore)
        )
        if extra:
            shown = ", ".join(f"{k!r} {tuple(self._state[k].shape)}" for k in extra[:8])
            more = f" and {len(extra) - 8} more" if len(extra) > 8 else ""
            raise ValueError(
                f"Unexpected tensor(s) in {self._source} that this model has no place for: "
                f"{shown}{more}. Is the file for a different architecture?"
            )


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv weight `(O, I, kh, kw)` → Keras `Conv2D` kernel `(kh, kw, I, O)`."""
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch depthwise weight `(C, 1, kh, kw)` → Keras `DepthwiseConv2D` kernel `(kh, kw, C, 1)`."""
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 0, 1)))


def dense_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch linear weight `(out, in)` → Keras `Dense` kernel `(in, out)`."""
    return np.ascontiguousarray(weight.T)


def assign_layer_weights(model, weights: Mapping[str, list[np.ndarray]]) -> None:
    """Sets `model.get_layer(name)` weights for every entry, checking shapes.

    Raises `ValueError` naming the layer when it does not exist or when the
    number or shapes of arrays differ from the layer's variables.
    """
    for name, arrays in weights.items():
        try:
            layer = model.get_layer(name)
        except ValueError as err:
            raise ValueError(f"Model {model.name!r} has no layer {name!r}.") from err
        expected = [tuple(v.shape) for v in layer.weights]
        received = [tuple(np.shape(a)) for a in arrays]
        if expected != received:
            raise ValueError(
                f"Layer {name!r} expects weights of shapes {expected}; received {received}."
            )
        layer.set_weights(list(arrays))
