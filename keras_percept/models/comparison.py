"""2AFC comparison heads: map two distances `(d0, d1)` to the logit of P(judge prefers p1).

A head's output `G` feeds `sigmoid(G)` = P(p1 judged closer to the reference
than p0); every head here increases (or, for the learned `Dist2Logit`, can
learn to increase) with `d0 - d1`. Heads return logits, not probabilities:
the 2AFC losses apply the sigmoid themselves, stably.
"""

from __future__ import annotations

from typing import Mapping

import keras
import numpy as np
from keras import layers, ops

from keras_percept.convert.state_dict import StrictStateDict

#: Number of features `Dist2Logit` builds from (d0, d1).
DIST2LOGIT_FEATURES = 5


def _flat_pair(d0, d1):
    """Both distances as `(N,)` tensors (accepts `(N,)`, `(N, 1)` or `(N, 1, 1, 1)`)."""
    return ops.reshape(d0, (-1,)), ops.reshape(d1, (-1,))


class _ScaledComparison(layers.Layer):
    """A head `scale * f(d0, d1)` with one non-negative scalar `scale` (`NonNeg`), learned or fixed."""

    def __init__(self, scale: float, trainable_scale: bool, **kwargs):
        if not float(scale) > 0:
            raise ValueError(f"Argument `scale` must be > 0. Received: scale={scale!r}")
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.trainable_scale = bool(trainable_scale)
        self.scale_weight = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.scale),
            trainable=self.trainable_scale,
            constraint=keras.constraints.NonNeg(),
            name="scale",
        )
        self.built = True

    def compute_output_shape(self, d0_shape, d1_shape=None):
        return (d0_shape[0],)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "trainable_scale": self.trainable_scale}


@keras.saving.register_keras_serializable(package="keras_percept")
class DifferenceComparison(_ScaledComparison):
    """Scaled distance difference as a 2AFC logit.

    Formula:

    ```python
    G = scale * (d0 - d1)
    ```

    Args:
        scale: initial value of the (non-negative) scale, the logit's
            sharpness. Must be > 0. Defaults to `10.0`.
        trainable_scale: learn `scale` with the rest of the model (kept
            non-negative by projection). Defaults to `True`.

    Example:

    >>> head = DifferenceComparison(scale=2.0)
    >>> head(np.array([0.3, 0.1]), np.array([0.1, 0.3]))  # [0.4, -0.4]
    """

    def __init__(self, scale: float = 10.0, trainable_scale: bool = True, **kwargs):
        super().__init__(scale, trainable_scale, **kwargs)

    def call(self, d0, d1):
        d0, d1 = _flat_pair(d0, d1)
        return ops.cast(self.scale_weight, d0.dtype) * (d0 - d1)


@keras.saving.register_keras_serializable(package="keras_percept")
class LogRatioComparison(_ScaledComparison):
    """Log distance ratio as a 2AFC logit: invariant to rescaling both distances.

    Formula:

    ```python
    G = scale * log((d0 + eps) / (d1 + eps))
    ```

    Args:
        eps: added to both distances so that zero distances stay finite;
            must be > 0. Defaults to `0.1` (the reference Dist2Logit's ratio
            epsilon).
        scale: initial value of the (non-negative) scale. Must be > 0.
            Defaults to `1.0`.
        trainable_scale: learn `scale` with the rest of the model. Defaults to
            `False`.

    Example:

    >>> head = LogRatioComparison(eps=0.1)
    >>> head(np.array([0.3]), np.array([0.1]))  # log(0.4 / 0.2) = 0.693
    """

    def __init__(self, eps: float = 0.1, scale: float = 1.0, trainable_scale: bool = False, **kwargs):
        if not float(eps) > 0:
            raise ValueError(f"Argument `eps` must be > 0. Received: eps={eps!r}")
        super().__init__(scale, trainable_scale, **kwargs)
        self.eps = float(eps)

    def call(self, d0, d1):
        d0, d1 = _flat_pair(d0, d1)
        scale = ops.cast(self.scale_weight, d0.dtype)
        return scale * (ops.log(d0 + self.eps) - ops.log(d1 + self.eps))

    def get_config(self) -> dict:
        return {**super().get_config(), "eps": self.eps}


@keras.saving.register_keras_serializable(package="keras_percept")
class Dist2Logit(layers.Layer):
    """The reference LPIPS's learned comparison network (`lpips.Dist2LogitLayer`), without its sigmoid.

    Formula:

    ```python
    x = concat([d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)])  # (N, 5)
    G = dense_3(leaky_relu(dense_2(leaky_relu(dense_1(x), 0.2)), 0.2))
    ```

    The reference uses 1x1 convolutions on `(N, 1, 1, 1)` distances; on flat
    distances they are `Dense` layers (5 -> hidden -> hidden -> 1, all with
    bias). Weights start from Keras's Glorot-uniform (the reference uses
    PyTorch's default conv init); `dist2logit_weights_from_torch` loads a
    trained reference head.

    Args:
        hidden: width of the two hidden layers (reference: 32). Must be a
            positive integer. Defaults to `32`.
        eps: added to the denominators of the two ratio features; must be > 0.
            Defaults to `0.1`.

    Example:

    >>> head = Dist2Logit()
    >>> head(np.array([0.3, 0.1]), np.array([0.1, 0.3])).shape
    (2,)

    Reference: Zhang et al., "The Unreasonable Effectiveness of Deep Features
    as a Perceptual Metric", CVPR 2018 (`lpips/lpips.py`, `BCERankingLoss`).
    """

    def __init__(self, hidden: int = 32, eps: float = 0.1, **kwargs):
        if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
            raise ValueError(f"Argument `hidden` must be a positive integer. Received: hidden={hidden!r}")
        if not float(eps) > 0:
            raise ValueError(f"Argument `eps` must be > 0. Received: eps={eps!r}")
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.eps = float(eps)
        self.dense_1 = layers.Dense(self.hidden, name="dense_1")
        self.dense_2 = layers.Dense(self.hidden, name="dense_2")
        self.dense_3 = layers.Dense(1, name="dense_3")
        self.dense_1.build((None, DIST2LOGIT_FEATURES))
        self.dense_2.build((None, self.hidden))
        self.dense_3.build((None, self.hidden))
        self.built = True

    def call(self, d0, d1):
        d0, d1 = _flat_pair(d0, d1)
        x = ops.stack([d0, d1, d0 - d1, d0 / (d1 + self.eps), d1 / (d0 + self.eps)], axis=-1)
        x = ops.leaky_relu(self.dense_1(x), negative_slope=0.2)
        x = ops.leaky_relu(self.dense_2(x), negative_slope=0.2)
        return ops.reshape(self.dense_3(x), (-1,))

    def compute_output_shape(self, d0_shape, d1_shape=None):
        return (d0_shape[0],)

    def get_config(self) -> dict:
        return {**super().get_config(), "hidden": self.hidden, "eps": self.eps}


def dist2logit_weights_from_torch(
    state_dict: Mapping[str, np.ndarray], *, source: str = "Dist2Logit state dict"
) -> list[np.ndarray]:
    """Maps a reference comparison head's weights to `Dist2Logit.set_weights` order.

    Accepts the state dict of `lpips.BCERankingLoss` (keys
    `net.model.{0,2,4}.{weight,bias}`) or of its `Dist2LogitLayer` as the
    reference trainer saves it (`model.{0,2,4}.{weight,bias}`). Conv weights
    `(out, in, 1, 1)` become Dense kernels `(in, out)`. Strict: a missing,
    extra or mis-shaped tensor raises `ValueError` naming the key. Pure NumPy.

    Args:
        state_dict: name -> array (e.g. `{k: v.numpy() for k, v in sd.items()}`).
        source: description used in error messages. Defaults to
            `"Dist2Logit state dict"`.

    Returns:
        `[kernel_1, bias_1, kernel_2, bias_2, kernel_3, bias_3]`; the hidden
        width is read from `model.0.weight`.

    Example:

    >>> weights = dist2logit_weights_from_torch(load_pth("rank.pth"))  # doctest: +SKIP
    >>> head = Dist2Logit(hidden=weights[1].shape[0])  # doctest: +SKIP
    >>> head.set_weights(weights)  # doctest: +SKIP
    """
    prefix = "net." if any(k.startswith("net.model.") for k in state_dict) else ""
    first = f"{prefix}model.0.weight"
    if first not in state_dict:
        raise ValueError(
            f"Missing tensor {first!r} in {source}: expected the reference Dist2Logit keys "
            "`[net.]model.{0,2,4}.{weight,bias}`."
        )
    first_shape = tuple(np.shape(state_dict[first]))
    if len(first_shape) != 4 or first_shape[1:] != (DIST2LOGIT_FEATURES, 1, 1):
        raise ValueError(
            f"Tensor {first!r} in {source} has shape {first_shape}; expected (hidden, {DIST2LOGIT_FEATURES}, 1, 1)."
        )
    hidden = first_shape[0]
    sd = StrictStateDict(state_dict, source=source)
    weights = []
    for index, (n_in, n_out) in zip((0, 2, 4), ((DIST2LOGIT_FEATURES, hidden), (hidden, hidden), (hidden, 1))):
        kernel = sd.take(f"{prefix}model.{index}.weight", (n_out, n_in, 1, 1))
        bias = sd.take(f"{prefix}model.{index}.bias", (n_out,))
        weights += [np.ascontiguousarray(kernel[:, :, 0, 0].T), bias]
    sd.finish()
    return weights
