"""Per-epoch weight-evolution statistics, added to the epoch logs (and so to History and MLflow)."""

from __future__ import annotations

import keras
import numpy as np


class WeightMonitor(keras.callbacks.Callback):
    """Logs how far and how fast the weights move, per group of variables.

    Keras logs losses and metrics but nothing about the weights; TensorBoard's
    histograms need a TensorBoard. This callback adds plain numbers to the
    epoch logs, so `History`, `EarlyStopping` and the MLflow logger see them:

    - `<group>_update_norm`: ||w_epoch - w_previous_epoch||, the size of one epoch's step;
    - `<group>_drift`: ||w - w_start|| / ||w_start||, how far training moved from the start
      (for a pretrained trunk, how much it forgot);
    - `lin_zero_fraction`, `lin_sum`: for the LPIPS linear weights, the fraction clamped to 0
      by the non-negativity projection and their total.

    Args:
        groups: `{name: [variables]}`; by default `{"lin": ..., "trunk": ...}` of `model.metric`
            (trainable trunk variables only).

    Example:

    >>> model.fit(train, epochs=3, callbacks=[WeightMonitor()])  # doctest: +SKIP
    >>> history.history["lin_zero_fraction"]  # doctest: +SKIP
    """

    resume_name = "weight_monitor"

    def __init__(self, groups: dict | None = None):
        super().__init__()
        self._groups = groups

    def _resolve_groups(self) -> dict:
        if self._groups is not None:
            return self._groups
        metric = getattr(self.model, "metric", None)
        if metric is None:
            raise ValueError("WeightMonitor needs `groups` unless the model has a `.metric` (TwoAFCModel).")
        groups = {"lin": list(metric.head_weights)}  # LPIPS's linear kernels, DISTS's alpha and beta
        if metric.backbone.trainable_weights:
            groups["trunk"] = list(metric.backbone.trainable_weights)
        return groups

    def on_train_begin(self, logs=None):
        self.groups = self._resolve_groups()
        self.start = {name: self._flat(vs) for name, vs in self.groups.items()}
        self.previous = dict(self.start)

    def get_resume_state(self) -> tuple[dict, list[np.ndarray]]:
        """The start and previous-epoch weights of each group, for `ResumableBackup`."""
        names = sorted(self.groups)
        return {"groups": names}, [self.start[n] for n in names] + [self.previous[n] for n in names]

    def set_resume_state(self, info: dict, arrays: list[np.ndarray]) -> None:
        """Restores what `get_resume_state` returned (the resumed run's drift stays relative to the first start)."""
        names = info["groups"]
        self.start = dict(zip(names, arrays[:len(names)]))
        self.previous = dict(zip(names, arrays[len(names):]))

    @staticmethod
    def _flat(variables) -> np.ndarray:
        return np.concatenate([np.ravel(keras.ops.convert_to_numpy(v)) for v in variables])

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, variables in self.groups.items():
            now = self._flat(variables)
            logs[f"{name}_update_norm"] = float(np.linalg.norm(now - self.previous[name]))
            logs[f"{name}_drift"] = float(np.linalg.norm(now - self.start[name]) / (np.linalg.norm(self.start[name]) + 1e-12))
            if name == "lin":
                logs["lin_zero_fraction"] = float(np.mean(now <= 0.0))
                logs["lin_sum"] = float(now.sum())
            self.previous[name] = now
