"""The global gradient norm of the training loss per epoch, added to the epoch logs (and so to History and MLflow)."""

from __future__ import annotations

import weakref

import keras
import numpy as np


def global_gradient_norm(model: keras.Model, x, y) -> float:
    """‖∇ loss‖₂ over all of `model`'s trainable variables, for one batch `(x, y)`, in inference mode.

    The loss is the compiled one plus the model's regularisation losses
    (`model.compute_loss`), as `fit` minimises it. Keras has no
    backend-independent gradient function, so this has one short branch per
    backend, each as Keras's own `train_step` computes gradients there.

    Example:

    >>> model.compile(optimizer="sgd", loss="mse")  # doctest: +SKIP
    >>> global_gradient_norm(model, x, y)  # doctest: +SKIP
    0.73
    """
    trainable = model.trainable_variables
    backend = keras.backend.backend()
    # Under `mixed_float16`, the loss scale `fit` uses (so that small gradients do not underflow), undone below.
    optimizer = getattr(model, "optimizer", None)
    scale = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale)) \
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else 1.0
    if backend == "tensorflow":
        import tensorflow as tf

        def replica_grads():
            # Under a strategy Keras divides the loss by the replica count (each replica's share of the
            # all-reduced sum); here each replica takes the whole probe batch, so that division is undone.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False), training=False)
                loss = loss * (replicas * scale)
            return tape.gradient(loss, trainable)

        if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
            # Inside `strategy.scope()` (a user's `fit` there): mirrored variables have no handle outside a
            # replica context, so the gradient is taken in one, and the first replica's is read.
            strategy = tf.distribute.get_strategy()
            grads = strategy.experimental_local_results(strategy.run(replica_grads))[0]
        else:
            grads = replica_grads()
    elif backend == "jax":
        grads = _jax_gradient(model)([v.value for v in trainable], [v.value for v in model.non_trainable_variables],
                                     [v.value for v in model.metrics_variables], x, y, scale)
    elif backend == "torch":
        import torch

        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False), training=False) * scale
        grads = torch.autograd.grad(loss, [v.value for v in trainable], allow_unused=True)
    else:
        raise ValueError(f"No gradient for Keras backend {backend!r}; expected tensorflow, jax or torch.")
    squares = [np.sum(np.square(keras.ops.convert_to_numpy(g).astype(np.float64))) for g in grads if g is not None]
    return float(np.sqrt(np.sum(squares))) / scale


_JAX_GRADIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jax_gradient(model):
    """`model`'s jitted gradient function `(trainable, non_trainable, metrics, x, y, scale) -> grads`, made once.

    Jitted: eager, every operation of the backward pass compiles on its own the first time in a process
    (measured: 5-12 s for an alex trunk on 20 triplets of 32 px, in every process of a resumed run). The
    values are arguments, not constants baked into the graph, so one compilation serves every epoch.
    """
    if model not in _JAX_GRADIENTS:
        import jax

        def loss_of(values, non_trainable, metrics, x, y, scale):
            loss, _ = model.compute_loss_and_updates(values, non_trainable, metrics, x, y, None, training=False)
            return loss * scale

        _JAX_GRADIENTS[model] = jax.jit(jax.grad(loss_of))
    return _JAX_GRADIENTS[model]


class GradientNorm(keras.callbacks.Callback):
    """Logs `grad_norm`: the global gradient norm of the training loss at the end of each epoch.

    A convergence diagnostic Keras lacks: it logs losses, and its optimizers
    compute the global norm only to clip (`global_clipnorm`) without showing
    it. The norm is taken over every trainable variable on one fixed batch
    of training data (the probe), in inference mode: no dropout, batch
    normalisation frozen. So it draws no random numbers and changes no
    state, and a resumed run logs the uninterrupted run's values. A norm
    that stays high while the loss is flat suggests too large a learning
    rate; one falling towards 0, convergence (or, for a trunk, vanishing
    gradients).

    Args:
        probe: a batch `(x, y)` of training data, or a dataset (e.g.
            `tf.data`) whose first batch is taken when training begins.

    Example:

    >>> history = model.fit(train, epochs=3, callbacks=[GradientNorm(train)])  # doctest: +SKIP
    >>> history.history["grad_norm"]  # doctest: +SKIP
    [0.91, 0.42, 0.37]
    """

    def __init__(self, probe):
        super().__init__()
        self._probe = probe
        self._batch = None

    def on_train_begin(self, logs=None):
        if self._batch is None:
            batch = self._probe
            if not isinstance(batch, (tuple, list)):
                batch = next(iter(batch))
            if len(batch) != 2:
                raise ValueError(f"`probe` must give `(x, y)` batches. Received a batch of {len(batch)} parts.")
            self._batch = keras.tree.map_structure(keras.ops.convert_to_numpy, tuple(batch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["grad_norm"] = global_gradient_norm(self.model, *self._batch)
