"""The shared wrapper that turns a pure loss function into a serializable `keras.losses.Loss`."""

from __future__ import annotations

import keras


class FunctionLoss(keras.losses.Loss):
    """Calls `fn(y_true, y_pred, **options)`; subclasses set `fn` and `options` (constructor argument names).

    `get_config` returns the base config plus every option, so `from_config`
    (the base class's `cls(**config)`) rebuilds the loss.
    """

    fn = None
    options: tuple[str, ...] = ()

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, **{k: getattr(self, k) for k in self.options})

    def get_config(self) -> dict:
        return {**super().get_config(), **{k: getattr(self, k) for k in self.options}}


class BatchStatisticLoss(FunctionLoss):
    """A `FunctionLoss` whose function returns one scalar per batch (a correlation), scaled for `tf.distribute`.

    Under a `tf.distribute` strategy with N replicas, each replica computes
    the loss on its share of the global batch; Keras divides a per-sample
    loss reduced with `"sum_over_batch_size"` by N and sums the replicas'
    gradients, so the step is the mean of the per-replica gradients. Keras
    leaves a scalar (shape `()`) loss undivided (`reduce_values` returns it
    as is), which would make the summed gradient N times that mean. This
    class divides the scalar by N as Keras does for per-sample losses. So
    with N replicas the statistic is computed per replica, over its
    batch / N samples (not over the global batch: a correlation of each half
    differs from the correlation of the whole), and the gradient is the mean
    of the per-replica gradients. JAX's `DataParallel` computes it over the
    global batch. With a `sample_weight` the scalar is broadcast to the
    samples and Keras scales it itself.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        value = super().__call__(y_true, y_pred, sample_weight=sample_weight)
        if sample_weight is None and self.reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
            replicas = _replicas_in_sync()
            if replicas > 1:
                value = value * (1.0 / replicas)
        return value


def _replicas_in_sync() -> int:
    """Replicas of the current `tf.distribute` strategy (1 outside one, and on other backends)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync
