"""Backend-specific helpers for tests: gradients of a scalar function of one input."""

from __future__ import annotations

import keras
import numpy as np


def value_and_grad(fn, x: np.ndarray, *, jit: bool = False) -> tuple[float, np.ndarray]:
    """`fn(x) -> scalar tensor`; returns (value, d value / d x) as NumPy on the active backend.

    `jit` (JAX only): trace and compile the whole gradient once. Eager, each operation of the backward
    pass compiles on its own (a bfloat16 squeeze loss: 18 s against 5 s); but fused, identical inputs on
    the constant and the traced side may no longer give exactly equal features, so exact-zero checks
    keep it off."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = fn(xt)
        return float(value), tape.gradient(value, xt).numpy()
    if backend == "jax":
        import jax

        function = jax.value_and_grad(lambda a: fn(a))
        value, grad = (jax.jit(function) if jit else function)(x)
        return float(value), np.asarray(grad)
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        value = fn(xt)
        value.backward()
        return float(value.detach()), xt.grad.numpy()
    raise NotImplementedError(f"no gradient helper for backend {backend!r}")
