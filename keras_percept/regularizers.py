"""Regularizers for the per-channel linear ("lin") weights and the trunk.

Keras applies a regularizer to one variable at a time and sums the results,
so "per tap" below means per LPIPS linear layer (one kernel variable per
tapped trunk layer), and the totals over taps come from that sum.

Non-negativity of the linear weights has three interchangeable forms
(`nonneg_method`): projection after each step (`keras.constraints.NonNeg`,
the reference's clamp), a soft quadratic penalty (`NonNegPenalty`), and an
interior-point barrier (`LogBarrier`).

L1 and elastic net are Keras's own `keras.regularizers.L1` and `L1L2` (the
same sums); `lin_penalty(name, strength)` builds the config's choice
(`lin_penalty: elastic_net | group_lasso | simplex | entropy`), and
`PerTap` applies a per-tap regularizer to one kernel holding every tap's
channels (the cached `lin` model's).
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from keras_percept.losses._layout import check_range

NONNEG_METHODS = ("projection", "penalty", "barrier")
#: `lin_penalty` choices of the training config (per tap on the linear weights).
LIN_PENALTIES = ("none", "elastic_net", "group_lasso", "simplex", "entropy")


@keras.saving.register_keras_serializable(package="keras_percept")
class GroupLasso(keras.regularizers.Regularizer):
    """L2 norm of a whole tap's weights; summed over taps, it switches entire taps off.

    Formula:

    ```python
    loss = strength * sqrt(sum(w ** 2) + eps)
    ```

    Args:
        strength: >= 0. Defaults to `0.01`.
        eps: > 0, keeps the gradient finite (zero) at w = 0. Defaults to `1e-12`.

    Example:

    >>> GroupLasso(2.0)(np.array([3.0, -4.0]))  # 2 * 5 = 10

    Reference: Yuan & Lin, "Model Selection and Estimation in Regression with
    Grouped Variables", JRSS-B 2006.
    """

    def __init__(self, strength: float = 0.01, eps: float = 1e-12):
        self.strength = check_range("strength", strength, 0.0)
        self.eps = check_range("eps", eps, 0.0, low_open=True)

    def __call__(self, x):
        return self.strength * ops.sqrt(ops.sum(ops.square(x)) + self.eps)

    def get_config(self) -> dict:
        return {"strength": self.strength, "eps": self.eps}


@keras.saving.register_keras_serializable(package="keras_percept")
class SimplexPenalty(keras.regularizers.Regularizer):
    """Pulls each tap's weights to sum to 1 (with non-negativity: onto the simplex).

    Formula:

    ```python
    loss = strength * (sum(w) - 1) ** 2
    ```

    Args:
        strength: >= 0. Defaults to `1.0`.

    Example:

    >>> SimplexPenalty(2.0)(np.array([0.5, 1.0]))  # 2 * 0.25 = 0.5
    """

    def __init__(self, strength: float = 1.0):
        self.strength = check_range("strength", strength, 0.0)

    def __call__(self, x):
        return self.strength * ops.square(ops.sum(x) - 1.0)

    def get_config(self) -> dict:
        return {"strength": self.strength}


@keras.saving.register_keras_serializable(package="keras_percept")
class EntropyPenalty(keras.regularizers.Regularizer):
    """Entropy of a tap's normalised weight magnitudes: low entropy = few dominant channels.

    Formula:

    ```python
    p = abs(w) / (sum(abs(w)) + eps)
    loss = strength * -sum(p * log(p + eps))
    ```

    Minimising it concentrates the weight on few channels (a scale-free
    sparsity prior); it is 0 for a one-hot tap and `strength * log(C)` for
    uniform weights over C channels.

    Args:
        strength: >= 0. Defaults to `0.01`.
        eps: > 0, keeps value and gradient finite at zero weights. Defaults to `1e-8`.

    Example:

    >>> EntropyPenalty(1.0)(np.array([1.0, 1.0]))  # log 2 = 0.693
    """

    def __init__(self, strength: float = 0.01, eps: float = 1e-8):
        self.strength = check_range("strength", strength, 0.0)
        self.eps = check_range("eps", eps, 0.0, low_open=True)

    def __call__(self, x):
        magnitude = ops.abs(x)
        p = magnitude / (ops.sum(magnitude) + self.eps)
        return -self.strength * ops.sum(p * ops.log(p + self.eps))

    def get_config(self) -> dict:
        return {"strength": self.strength, "eps": self.eps}


@keras.saving.register_keras_serializable(package="keras_percept")
class NonNegPenalty(keras.regularizers.Regularizer):
    """Soft non-negativity: a quadratic penalty on negative weights only.

    Formula:

    ```python
    loss = strength * sum(relu(-w) ** 2)
    ```

    Unlike projection, weights may dip slightly below 0 (by about
    `gradient / (2 * strength)` at equilibrium).

    Args:
        strength: >= 0. Defaults to `1.0`.

    Example:

    >>> NonNegPenalty(2.0)(np.array([0.5, -0.5]))  # 2 * 0.25 = 0.5
    """

    def __init__(self, strength: float = 1.0):
        self.strength = check_range("strength", strength, 0.0)

    def __call__(self, x):
        return self.strength * ops.sum(ops.square(ops.relu(-x)))

    def get_config(self) -> dict:
        return {"strength": self.strength}


@keras.saving.register_keras_serializable(package="keras_percept")
class LogBarrier(keras.regularizers.Regularizer):
    """Interior-point barrier keeping weights above `-delta`.

    Formula:

    ```python
    loss = -mu * sum(log(w + delta))
    ```

    Needs a strictly feasible start: every weight must be > -delta at
    initialisation (LPIPS starts its linear layers at 1/C > 0). An infeasible
    weight makes the loss NaN or +inf, which `keras.callbacks.TerminateOnNaN`
    catches; it cannot be raised from inside a compiled step, so call
    `check_feasible` on the initial weights. A gradient step larger than the
    distance to the barrier can still jump across it: keep learning rates
    modest, or prefer projection.

    Args:
        mu: >= 0, barrier weight. Defaults to `1e-4`.
        delta: >= 0, shifts the barrier to w = -delta (0 would forbid w = 0
            exactly). Defaults to `1e-6`.

    Example:

    >>> LogBarrier(mu=1.0, delta=0.0)(np.array([1.0, np.e]))  # -(0 + 1) = -1
    """

    def __init__(self, mu: float = 1e-4, delta: float = 1e-6):
        self.mu = check_range("mu", mu, 0.0)
        self.delta = check_range("delta", delta, 0.0)

    def __call__(self, x):
        return -self.mu * ops.sum(ops.log(x + self.delta))

    def check_feasible(self, weights) -> None:
        """Raises `ValueError` unless every weight is > -delta (call eagerly, e.g. before `fit`)."""
        lowest = float(np.min(ops.convert_to_numpy(weights)))
        if not lowest > -self.delta:
            raise ValueError(
                f"LogBarrier needs every weight > -delta = {-self.delta}: initialise the weights "
                f"positive (e.g. Constant(1 / channels)). Received: min(weights)={lowest!r}"
            )

    def get_config(self) -> dict:
        return {"mu": self.mu, "delta": self.delta}


@keras.saving.register_keras_serializable(package="keras_percept")
class L2SP(keras.regularizers.Regularizer):
    """L2 distance to a starting point (pretrained weights): fine-tune without forgetting.

    Formula:

    ```python
    loss = strength * sum((w - reference) ** 2)
    ```

    One instance per variable, holding that variable's snapshot. Use
    `add_l2sp` to attach one to every trainable trunk variable. The
    config holds the reference as nested lists (it round-trips, but is as
    large as the variable).

    Args:
        reference: the starting-point weights, same shape as the variable.
        strength: >= 0 (Li et al.'s alpha / 2). Defaults to `0.01`.

    Example:

    >>> L2SP(np.array([1.0, 0.0]), strength=0.5)(np.array([2.0, 2.0]))  # 0.5 * 5 = 2.5

    Reference: Li, Grandvalet, Davoine, "Explicit Inductive Bias for Transfer
    Learning with Convolutional Networks", ICML 2018.
    """

    def __init__(self, reference, strength: float = 0.01):
        self.strength = check_range("strength", strength, 0.0)
        self.reference = np.asarray(reference, dtype="float32")

    def __call__(self, x):
        if tuple(x.shape) != self.reference.shape:
            raise ValueError(
                f"L2SP `reference` has shape {self.reference.shape} but the regularized variable has "
                f"shape {tuple(x.shape)}."
            )
        # Converted on every call, never cached: a tensor made while tracing one compiled
        # function cannot be used by another (TensorFlow's "out of scope" error).
        x = ops.convert_to_tensor(x)  # NumPy input too (on torch, ndarray - Tensor is a TypeError)
        reference = ops.convert_to_tensor(self.reference, dtype=x.dtype)
        return self.strength * ops.sum(ops.square(x - reference))

    def get_config(self) -> dict:
        return {"reference": self.reference.tolist(), "strength": self.strength}


def add_l2sp(trunk: keras.layers.Layer, strength: float = 0.01) -> list:
    """Snapshots every trainable variable of `trunk` and regularizes it towards the snapshot.

    Sets `variable.regularizer = L2SP(snapshot, strength)` on each trainable
    variable, so the penalty enters every model containing `trunk` through
    `model.losses`, which `fit` adds to the loss on every backend (on JAX the
    regularizer receives the variable's current value inside the compiled
    step).

    Why per-variable regularizers rather than `model.add_loss` or a custom
    `compute_loss`: Keras 3 keeps `add_loss` terms only when added inside
    `call`, and a custom `compute_loss` would tie L2-SP to one model class.
    Variable regularizers need neither, and they are not part of any layer's
    config, so a metric saved after fine-tuning carries no copy of the
    pretrained weights. The snapshot is a NumPy array in host memory (same
    size as the trunk); on JAX it is a constant of the compiled step.

    Call it after loading the pretrained weights and before `fit`. Frozen
    (non-trainable) variables are left alone: they cannot drift.

    Args:
        trunk: a built layer or model (e.g. `lpips_model.backbone`).
        strength: >= 0 (Li et al.'s alpha / 2). Defaults to `0.01`.

    Returns:
        The variables that received an `L2SP` regularizer.

    Example:

    >>> add_l2sp(model.metric.backbone, strength=1e-3)  # doctest: +SKIP

    Reference: Li, Grandvalet, Davoine, ICML 2018.
    """
    strength = check_range("strength", strength, 0.0)
    if not getattr(trunk, "built", False):
        raise ValueError(f"Argument `trunk` must be a built layer. Received: {trunk!r} (not built)")
    variables = list(trunk.trainable_weights)
    for variable in variables:
        existing = variable.regularizer
        if existing is not None and not isinstance(existing, L2SP):
            raise ValueError(
                f"Variable {variable.path!r} already has a regularizer ({existing!r}); "
                "add_l2sp does not replace other regularizers."
            )
    for variable in variables:
        variable.regularizer = L2SP(ops.convert_to_numpy(variable), strength)
    return variables


class NonNegMethod(NamedTuple):
    """How to keep linear weights non-negative: pass both to the layer (`kernel_constraint`, `kernel_regularizer`)."""

    constraint: keras.constraints.Constraint | None
    regularizer: keras.regularizers.Regularizer | None


def nonneg_method(name: str = "projection", **kwargs) -> NonNegMethod:
    """The `(constraint, regularizer)` pair for a non-negativity method.

    - `"projection"`: `(keras.constraints.NonNeg(), None)`: after every
      optimizer step w <- max(0, w), a projected-gradient step (the reference
      clamps the same way). Takes no options.
    - `"penalty"`: `(None, NonNegPenalty(**kwargs))` (option `strength`).
    - `"barrier"`: `(None, LogBarrier(**kwargs))` (options `mu`, `delta`);
      needs positive initial weights.

    Args:
        name: one of `"projection"`, `"penalty"`, `"barrier"`. Defaults to
            `"projection"`.
        **kwargs: the regularizer's constructor arguments.

    Example:

    >>> constraint, regularizer = nonneg_method("penalty", strength=10.0)
    >>> layers.Conv2D(1, 1, kernel_constraint=constraint, kernel_regularizer=regularizer)  # doctest: +SKIP
    """
    if name not in NONNEG_METHODS:
        raise ValueError(f"Argument `name` must be one of {NONNEG_METHODS}. Received: name={name!r}")
    if name == "projection":
        if kwargs:
            raise ValueError(f"Non-negativity method 'projection' takes no options. Received: {sorted(kwargs)}")
        return NonNegMethod(keras.constraints.NonNeg(), None)
    if name == "penalty":
        return NonNegMethod(None, NonNegPenalty(**kwargs))
    return NonNegMethod(None, LogBarrier(**kwargs))


def lin_penalty(name: str, strength: float):
    """The config's `lin_penalty` on one tap's linear weights, at `strength`; `None` for `"none"`.

    `elastic_net` is `keras.regularizers.L1L2(l1=strength, l2=strength)`;
    `group_lasso`, `simplex` and `entropy` are `GroupLasso`, `SimplexPenalty`
    and `EntropyPenalty` (each per tap: Keras sums them over the taps' kernels).

    Example:

    >>> float(lin_penalty("simplex", 2.0)(np.array([0.5, 1.0])))  # 2 * (1.5 - 1) ** 2
    0.5
    """
    if name not in LIN_PENALTIES:
        raise ValueError(f"`lin_penalty` must be one of {list(LIN_PENALTIES)}. Received: {name!r}")
    if name == "none":
        return None
    if name == "elastic_net":
        return keras.regularizers.L1L2(l1=strength, l2=strength)
    return {"group_lasso": GroupLasso, "simplex": SimplexPenalty, "entropy": EntropyPenalty}[name](strength)


class PerTap:
    """A per-tap regularizer on one `(sum(channels), 1)` kernel: applied to each tap's rows, summed.

    The cached `lin` model trains one Dense kernel over all taps' channels;
    Keras's regularizers see a variable whole, so a group or simplex penalty
    on it would treat all taps as one group. This splits it as the metric's
    per-tap kernels are split (`channels`), which makes the cached model's
    penalty equal to the full model's.

    Example:

    >>> float(PerTap(SimplexPenalty(1.0), [1, 2])(np.array([[1.0], [0.25], [0.25]])))  # 0 + 0.25
    0.25
    """

    def __init__(self, regularizer, channels):
        self.regularizer = regularizer
        self.channels = [int(c) for c in channels]

    def __call__(self, x):
        x = ops.reshape(x, (-1,))
        total, start = 0.0, 0
        for c in self.channels:
            total = total + self.regularizer(x[start:start + c])
            start += c
        return total
