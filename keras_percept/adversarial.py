"""Projected gradient descent (PGD) on 2AFC triplets: the attack of robustness evaluation and adversarial training.

R-LPIPS (Ghazanfari et al., 2023) trains LPIPS on triplets whose reference (or one distorted
image) is moved, within an L-infinity or L2 ball of radius `epsilon`, so as to raise the training
loss; robustness evaluation moves it so as to turn the metric against the human majority. Both
are `steps` steps of size `step_size` from the clean image (no random start, so runs repeat
exactly), each followed by projection onto the ball and onto the image range [-1, 1].

Keras has no gradient with respect to inputs that works on every backend, so `input_gradient`
has one short branch per backend (as Keras's own train steps do).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import keras
from keras import ops

NORMS = ("linf", "l2")
TARGETS = ("ref", "p0", "p1")
TRIPLET = {"ref": 0, "p0": 1, "p1": 2}


@dataclasses.dataclass(frozen=True)
class PGD:
    """An L-infinity or L2 PGD attack on one image of each `(ref, p0, p1)` triplet.

    Distances are in the [-1, 1] image range: `epsilon=8/255 * 2` is the usual 8/255 of a [0, 1]
    image. `step_size` defaults to `2.5 * epsilon / steps` (Madry et al.), so the last steps can
    still reach the ball's surface.

    Args:
        epsilon: radius of the ball (L-infinity: per pixel; L2: per image). Must be > 0.
        steps: gradient steps. Defaults to `5`.
        norm: `"linf"` (signed-gradient steps, clipping) or `"l2"` (normalised-gradient steps,
            rescaling). Defaults to `"linf"`.
        step_size: size of one step, or `None` for `2.5 * epsilon / steps`. Defaults to `None`.
        target: the image moved: `"ref"`, `"p0"` or `"p1"`. Defaults to `"ref"`.

    Example:

    >>> attack = PGD(epsilon=0.03, steps=3)
    >>> attack.alpha
    0.025
    """

    epsilon: float
    steps: int = 5
    norm: str = "linf"
    step_size: float | None = None
    target: str = "ref"

    def __post_init__(self):
        if not float(self.epsilon) > 0:
            raise ValueError(f"Argument `epsilon` must be > 0. Received: epsilon={self.epsilon!r}")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"Argument `steps` must be a positive integer. Received: steps={self.steps!r}")
        if self.norm not in NORMS:
            raise ValueError(f"Argument `norm` must be one of {NORMS}. Received: norm={self.norm!r}")
        if self.step_size is not None and not float(self.step_size) > 0:
            raise ValueError(f"Argument `step_size` must be > 0 or None. Received: step_size={self.step_size!r}")
        if self.target not in TARGETS:
            raise ValueError(f"Argument `target` must be one of {TARGETS}. Received: target={self.target!r}")

    @property
    def alpha(self) -> float:
        """The step size used."""
        return float(self.step_size) if self.step_size is not None else 2.5 * float(self.epsilon) / self.steps

    def describe(self) -> str:
        """One line for tables and logs, e.g. "PGD linf eps=0.0314 (8.0/255 of [0,1]), 5 steps of 0.0157 on ref"."""
        return (f"PGD {self.norm} eps={self.epsilon:.4g} ({self.epsilon * 255 / 2:.1f}/255 of [0,1]), "
                f"{self.steps} steps of {self.alpha:.3g} on {self.target}")

    def step(self, x_clean, x_adv, grad):
        """One ascent step on `x_adv` along `grad`, projected onto the ball around `x_clean` and onto [-1, 1]."""
        if self.norm == "linf":
            delta = ops.clip(x_adv + self.alpha * ops.sign(grad) - x_clean, -self.epsilon, self.epsilon)
        else:
            delta = x_adv + self.alpha * grad / _per_image_norm(grad) - x_clean
            delta = delta * ops.minimum(1.0, self.epsilon / _per_image_norm(delta))
        return ops.clip(x_clean + delta, -1.0, 1.0)

    def perturb(self, triplet: Sequence, loss_of: Callable, **gradient_kwargs):
        """The triplet with `target` moved to raise `loss_of(ref, p0, p1)` (a scalar); the others unchanged.

        `gradient_kwargs` go to `input_gradient`. The result carries no gradient.
        """
        index = TRIPLET[self.target]
        images = list(triplet)
        clean = ops.convert_to_tensor(images[index])

        def loss_at(x):
            return loss_of(*images[:index], x, *images[index + 1:])

        x = clean
        for _ in range(self.steps):
            x = ops.stop_gradient(self.step(clean, x, input_gradient(loss_at, x, **gradient_kwargs)))
        images[index] = x
        return tuple(images)


def _per_image_norm(x):
    return ops.sqrt(ops.sum(ops.square(x), axis=tuple(range(1, len(x.shape))), keepdims=True)) + 1e-12


def input_gradient(fn: Callable, x, *, variables: Sequence = (), state_mapping: Sequence | None = None):
    """d fn(x) / d x for a scalar `fn` of one tensor, on the active backend; works eagerly and in a train step.

    JAX only: `state_mapping` holds `(variable, value)` pairs the function must read its variables
    from, as inside a JAX train step (where the variables themselves hold stale values); what it
    assigns is then dropped. Without it, assignments to any of `variables` (a `SeedGenerator`'s
    state, e.g. E-LPIPS's random transforms) are applied after the call, as an eager call on the
    other backends applies them.

    Example:

    >>> input_gradient(lambda x: keras.ops.sum(x ** 2), np.ones((1, 2), "float32"))  # doctest: +SKIP
    array([[2., 2.]], dtype=float32)
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return tape.gradient(value, x)
    if backend == "torch":
        import torch

        x = ops.convert_to_tensor(x).detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(fn(x), [x])
        return grad
    if backend == "jax":
        import jax

        variables = list(variables) if state_mapping is None else []

        def value(a):
            with keras.StatelessScope(state_mapping=list(state_mapping or ())) as scope:
                out = fn(a)
            return out, [scope.get_current_value(v) for v in variables]

        grad, updates = jax.grad(value, has_aux=True)(x)
        for variable, update in zip(variables, updates):
            if update is not None:
                variable.assign(update)
        return grad
    raise ValueError(f"No input gradient for Keras backend {backend!r}; expected tensorflow, jax or torch.")
