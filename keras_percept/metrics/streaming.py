"""LPIPS as a streaming Keras metric, for `model.compile(metrics=[...])` and `model.evaluate`."""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import ops

from keras_percept.distance import DEFAULT_NET
from keras_percept.losses.perceptual import PerceptualLoss
from keras_percept.models.lpips import LPIPS


@keras.saving.register_keras_serializable(package="keras_percept")
class LPIPSMetric(keras.metrics.Metric):
    """Mean LPIPS distance between `y_true` and `y_pred` over all samples seen since the last reset.

    Formula:

    ```python
    result = sum_i w_i * lpips(y_true_i, y_pred_i) / sum_i w_i   # w_i = 1 without sample_weight
    ```

    Each batch adds its distances and their count to two variables, so the result is the mean
    over samples, not the mean of batch means (a smaller last batch weighs less). Keras calls
    `reset_state` at the start of every `evaluate` and epoch. Under `tf.distribute` strategies
    each replica adds its share and the variables are summed across replicas when read.

    The metric (`metric`, `net`, `version`, `pretrained`, `input_range`, `precision`) is resolved as
    `keras_percept.losses.PerceptualLoss` resolves it: frozen, in inference mode, one distance
    per pair. Any keras_percept LPIPS-family metric works: an instance (e.g. from
    `LPIPS.from_preset`), a `.keras` file (a trained `metric.keras`), or a pretrained net.

    Args:
        metric: `None` (built from `net`, `version`, `pretrained`), an `LPIPS` instance, or the
            path of a `.keras` file holding one. Defaults to `None`.
        net: trunk when `metric` is `None`. Defaults to `"effnet-lite0"` (works offline).
        version: LPIPS version when `metric` is `None`. Defaults to `"0.1"`.
        pretrained: the paper's weights when `metric` is `None`. Defaults to `True`.
        input_range: range of the images, `"[-1,1]"` or `"[0,1]"`; `None` keeps the
            metric's own. Defaults to `None`.
        precision: the trunk's arithmetic, `"float32"` or `"bfloat16"` (see `LPIPS`);
            `None` keeps the metric's own. Defaults to `None`.
        keep_per_sample: also keep the first `keep_per_sample` per-sample distances
            (read them with `per_sample()`); `0` keeps none. Not supported under a
            `tf.distribute` strategy with several replicas (their buffers cannot be put in
            order). Defaults to `0`.
        name: Defaults to `"lpips"`.
        dtype: dtype of the accumulators. Defaults to `None` (floatx).

    Example:

    >>> autoencoder.compile(optimizer="adam", loss="mse", metrics=[LPIPSMetric(net="alex")])  # doctest: +SKIP
    >>> autoencoder.evaluate(x, x, return_dict=True)["lpips"]  # doctest: +SKIP
    0.183
    >>> m = LPIPSMetric(LPIPS(net="alex"), keep_per_sample=100)
    >>> m.update_state(x0, x1)  # doctest: +SKIP
    >>> float(m.result()), m.per_sample().shape  # doctest: +SKIP
    (0.21, (4,))
    """

    def __init__(
        self,
        metric: LPIPS | str | os.PathLike | dict | None = None,
        *,
        net: str = DEFAULT_NET,
        version: str = "0.1",
        pretrained: bool = True,
        input_range: str | None = None,
        precision: str | None = None,
        keep_per_sample: int = 0,
        name: str = "lpips",
        dtype=None,
    ):
        if int(keep_per_sample) < 0:
            raise ValueError(f"Argument `keep_per_sample` must be >= 0. Received: keep_per_sample={keep_per_sample!r}")
        super().__init__(name=name, dtype=dtype)
        # The loss resolves and freezes the metric and stores how to rebuild it.
        self.source = PerceptualLoss(metric, net=net, version=version, pretrained=pretrained,
                                     input_range=input_range, precision=precision, reduction="none")
        self.keep_per_sample = int(keep_per_sample)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")
        if self.keep_per_sample:
            self.values = self.add_variable(shape=(self.keep_per_sample,), initializer="zeros", name="values")
            self.seen = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="seen")

    @property
    def lpips(self) -> LPIPS:
        """The frozen metric that computes the distances."""
        return self.source.metric

    def update_state(self, y_true, y_pred, sample_weight=None):
        distances = ops.reshape(ops.cast(self.lpips((y_true, y_pred), training=False), self.dtype), (-1,))
        if sample_weight is None:
            self.total.assign_add(ops.sum(distances))
            self.count.assign_add(ops.cast(ops.shape(distances)[0], self.dtype))
        else:
            weights = ops.broadcast_to(ops.reshape(ops.cast(sample_weight, self.dtype), (-1,)), ops.shape(distances))
            self.total.assign_add(ops.sum(distances * weights))
            self.count.assign_add(ops.sum(weights))
        if self.keep_per_sample:
            self._keep(distances)

    def _keep(self, distances) -> None:
        """Writes `distances` into `values[seen:seen + n]` (what does not fit is dropped; `seen` counts it)."""
        _check_single_replica()
        n = ops.shape(distances)[0]
        offset = ops.subtract(ops.arange(self.keep_per_sample, dtype="int32"), ops.convert_to_tensor(self.seen))
        inside = ops.logical_and(offset >= 0, offset < n)
        placed = ops.take(distances, ops.clip(offset, 0, ops.maximum(n - 1, 0)), axis=0)
        self.values.assign(ops.where(inside, placed, ops.convert_to_tensor(self.values)))
        self.seen.assign_add(ops.cast(n, "int32"))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def per_sample(self) -> np.ndarray:
        """The kept per-sample distances since the last reset, in order, as NumPy.

        Raises `ValueError` when none are kept or more samples were seen than kept.
        """
        if not self.keep_per_sample:
            raise ValueError("This LPIPSMetric keeps no per-sample values; create it with keep_per_sample=N.")
        seen = int(ops.convert_to_numpy(self.seen))
        if seen > self.keep_per_sample:
            raise ValueError(
                f"{seen} samples were seen but only the first {self.keep_per_sample} were kept; "
                f"create the metric with keep_per_sample >= {seen}."
            )
        return np.asarray(ops.convert_to_numpy(self.values))[:seen]

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self) -> dict:
        source = self.source.get_config()
        return {
            "name": self.name,
            "dtype": self.dtype,
            **{key: source[key] for key in ("metric", "net", "version", "pretrained", "input_range", "precision")},
            "keep_per_sample": self.keep_per_sample,
        }


def _check_single_replica() -> None:
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        raise ValueError(
            f"LPIPSMetric(keep_per_sample=...) cannot keep per-sample values under a strategy with {replicas} "
            "replicas (each replica sees its own share of every batch). Use keep_per_sample=0 there; the mean "
            "is exact across replicas."
        )
