"""Stateful Keras metrics for 2AFC training (backend-neutral)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCScore(keras.metrics.Metric):
    """Agreement of a distance with soft human 2AFC judgments (ties count 0.5).

    Formula (per triplet, averaged over all triplets seen):

    ```
    score = (d0 < d1) * (1 - h) + (d1 < d0) * h + 0.5 * (d0 == d1)
    ```

    `y_true` is h (fraction of judges preferring p1), shape `(N,)` or `(N, 1)`;
    `y_pred` is `(N, 3) = [d0, d1, G]` as produced by `TwoAFCModel` (only d0, d1 are used).

    Example:

    >>> m = TwoAFCScore()
    >>> m.update_state([1.0, 0.0], [[0.3, 0.1, 0.0], [0.2, 0.2, 0.0]])
    >>> float(m.result())
    0.75
    """

    def __init__(self, name: str = "twoafc", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        h = ops.reshape(ops.cast(y_true, self.dtype), (-1,))
        y_pred = ops.cast(y_pred, self.dtype)
        d0, d1 = y_pred[:, 0], y_pred[:, 1]
        scores = (
            ops.cast(d0 < d1, self.dtype) * (1.0 - h)
            + ops.cast(d1 < d0, self.dtype) * h
            + 0.5 * ops.cast(ops.equal(d0, d1), self.dtype)
        )
        if sample_weight is not None:
            w = ops.reshape(ops.cast(sample_weight, self.dtype), (-1,))
            self.total.assign_add(ops.sum(scores * w))
            self.count.assign_add(ops.sum(w))
        else:
            self.total.assign_add(ops.sum(scores))
            self.count.assign_add(ops.cast(ops.shape(scores)[0], self.dtype))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)
