"""Regularizers for the per-channel linear ("lin") weights and the trunk.

Keras applies a regularizer to one variable at a time and sums the results,
so "per tap" below means per LPIPS linear layer (one kernel variable per
tapped trunk layer), and the totals over taps come from that sum.

Non-negativity of the linear weights has three interchangeable forms
(`nonneg_method`): projection after each step (`keras.constraints.NonNeg`,
the reference's clamp), a soft quadratic penalty (`NonNegPenalty`), and an
interior-point barrier (`LogBarrier`).
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from keras_percept.losses._layout import check_range

NONNEG_METHODS = ("projection", "penalty", "barrier")


@keras.saving.register_keras_serializable(package="keras_percept")
class L1(keras.regularizers.Regularizer):
    """Lasso on the weights: sparse channel selection.

    Formula:

    ```python
    loss = strength * sum(abs(w))
    ```

    Args:
        strength: >= 0. Defaults to `0.01`.

    Example:

    >>> L1(0.5)(np.array([1.0, -2.0]))  # 1.5
    """

    def __init__(self, strength: float = 0.01):
        self.strength = check_range("strength", strength, 0.0)

    def __call__(self, x):
        return self.strength * ops.sum(ops.abs(x))

    def get_config(self) -> dict:
        return {"strength": self.strength}


@keras.saving.register_keras_serializable(package="keras_percept")
class ElasticNet(keras.regularizers.Regularizer):
    """L1 plus squared L2 on the weights.

    Formula:

    ```python
    loss = l1 * sum(abs(w)) + l2 * sum(w ** 2)
    ```

    Args:
        l1: >= 0. Defaults to `0.01`.
        l2: >= 0. Defaults to `0.01`.

    Example:

    >>> ElasticNet(l1=0.5, l2=0.25)(np.array([1.0, -2.0]))  # 1.5 + 1.25 = 2.75

    Reference: Zou & Hastie, "Regularization and Variable Selection via the
    Elastic Net", JRSS-B 2005.
    """

    def __init__(self, l1: float = 0.01, l2: float = 0.01):
        self.l1 = check_range("l1", l1, 0.0)
        self.l2 = check_range("l2", l2, 0.0)

    def __call__(self, x):
        return self.l1 * ops.sum(ops.abs(x)) + self.l2 * ops.sum(ops.square(x))

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


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

