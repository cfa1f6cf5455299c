"""Learning-rate schedules: Keras's own, plus the reference's hold-then-linear-decay."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_percept")
class HoldThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant `learning_rate` for `hold_steps`, then linear decay to 0 over `decay_steps`.

    The LPIPS reference trains `nepoch` epochs at a constant rate, then
    `nepoch_decay` epochs with the rate decreasing linearly to 0. Keras has
    `PolynomialDecay` (decays from step 0) and `CosineDecay` (warm-up, no
    hold), but no hold phase before a linear decay, hence this class.

    Formula:

    ```
    lr(t) = learning_rate * clip(1 - (t - hold_steps) / decay_steps, 0, 1)
    ```

    Args:
        learning_rate: the initial rate.
        hold_steps: steps at the initial rate.
        decay_steps: steps of linear decay to 0 (0: constant forever).

    Example:

    >>> s = HoldThenLinearDecay(1e-4, hold_steps=10, decay_steps=10)
    >>> [float(s(t)) for t in (0, 10, 15, 20)]
    [0.0001, 0.0001, 5e-05, 0.0]
    """

    def __init__(self, learning_rate: float, hold_steps: int, decay_steps: int):
        if learning_rate <= 0 or hold_steps < 0 or decay_steps < 0:
            raise ValueError(
                "HoldThenLinearDecay needs learning_rate > 0, hold_steps >= 0, decay_steps >= 0. "
                f"Received: {learning_rate}, {hold_steps}, {decay_steps}"
            )
        self.learning_rate = float(learning_rate)
        self.hold_steps = int(hold_steps)
        self.decay_steps = int(decay_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if self.decay_steps == 0:
            return ops.ones_like(step) * self.learning_rate
        frac = ops.clip(1.0 - (step - self.hold_steps) / self.decay_steps, 0.0, 1.0)
        return self.learning_rate * frac

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "hold_steps": self.hold_steps, "decay_steps": self.decay_steps}


@keras.saving.register_keras_serializable(package="keras_percept")
class DelayedStart(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate 0 before `start_step`, then `schedule(step)`: keeps a variable group frozen until then.

    Used for gradual unfreezing of the trunk in `tune` (one inner optimizer of
    a `MultiOptimizer` per trunk stage). Keras has no per-group start step,
    and changing `trainable` in the middle of `fit` needs a recompile (a new
    optimizer, which loses its state and breaks `BackupAndRestore`); a zero
    rate freezes the weights exactly (Adam's and SGD's step is lr x ..., and
    Keras scales decoupled weight decay by lr too) with one compiled step.

    Args:
        schedule: a float or a `LearningRateSchedule` (evaluated at the global step).
        start_step: first step with a non-zero rate (>= 0).

    Example:

    >>> s = DelayedStart(1e-3, start_step=10)
    >>> [float(s(t)) for t in (0, 9, 10)]
    [0.0, 0.0, 0.001]
    """

    def __init__(self, schedule, start_step: int):
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"Argument `start_step` must be an integer >= 0. Received: start_step={start_step!r}")
        self.schedule = schedule
        self.start_step = start_step

    def __call__(self, step):
        rate = self.schedule(step) if callable(self.schedule) else self.schedule
        started = ops.cast(ops.greater_equal(ops.cast(step, "float32"), float(self.start_step)), "float32")
        return started * ops.cast(rate, "float32")

    def get_config(self) -> dict:
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "start_step": self.start_step}


def build_schedule(optim, steps_per_epoch: int, learning_rate: float | None = None):
    """The learning rate (a float or a Keras schedule) for an `OptimConfig`.

    Example:

    >>> build_schedule(OptimConfig(schedule="cosine", warmup_epochs=1), steps_per_epoch=100)  # doctest: +SKIP
    <CosineDecay ...>
    """
    lr = optim.learning_rate if learning_rate is None else learning_rate
    total = max(1, optim.epochs * steps_per_epoch)
    schedules = keras.optimizers.schedules
    if optim.schedule == "constant":
        return lr
    if optim.schedule == "reference":
        decay_epochs = optim.epochs // 2 if optim.decay_epochs is None else optim.decay_epochs
        decay = decay_epochs * steps_per_epoch
        return HoldThenLinearDecay(lr, total - decay, decay)
    if optim.schedule == "linear":
        return schedules.PolynomialDecay(lr, total, end_learning_rate=0.0, power=1.0)
    if optim.schedule == "cosine":
        warmup = int(round(optim.warmup_epochs * steps_per_epoch))
        if warmup:
            return schedules.CosineDecay(0.0, max(1, total - warmup), warmup_target=lr, warmup_steps=warmup)
        return schedules.CosineDecay(lr, total)
    if optim.schedule == "step":
        every = optim.step_every_epochs * steps_per_epoch
        boundaries = list(range(every, total, every)) or [total]
        values = [lr * optim.step_factor ** k for k in range(len(boundaries) + 1)]
        return schedules.PiecewiseConstantDecay(boundaries, values)
    if optim.schedule == "exponential":
        return schedules.ExponentialDecay(lr, decay_steps=steps_per_epoch, decay_rate=optim.step_factor ** (
            1.0 / optim.step_every_epochs))
    if optim.schedule == "cosine_restarts":
        return schedules.CosineDecayRestarts(lr, first_decay_steps=max(1, optim.restart_epochs * steps_per_epoch))
    raise ValueError(f"Unknown `optim.schedule`: {optim.schedule!r}")
