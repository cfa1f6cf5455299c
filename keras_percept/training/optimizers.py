"""Optimizers from an `OptimConfig`, with a discriminative trunk rate for `tune`."""

from __future__ import annotations

import keras

from keras_percept.training.schedules import build_schedule


def build_optimizer(optim, steps_per_epoch: int, *, lr_factor: float = 1.0):
    """One Keras optimizer: adam, adamw, sgd (Nesterov momentum) or rmsprop.

    Weight decay goes through the optimizer (`weight_decay`, decoupled as in
    AdamW for every Keras optimizer); `global_clipnorm` clips the global
    gradient norm.

    Example:

    >>> opt = build_optimizer(OptimConfig(optimizer="sgd", learning_rate=0.1), steps_per_epoch=10)  # doctest: +SKIP
    """
    lr = build_schedule(optim, steps_per_epoch, optim.learning_rate * lr_factor)
    common = {"learning_rate": lr, "global_clipnorm": optim.global_clipnorm,
              "weight_decay": optim.weight_decay or None}
    if optim.optimizer == "adam":
        return keras.optimizers.Adam(beta_1=optim.beta_1, beta_2=optim.beta_2, epsilon=optim.epsilon, **common)
    if optim.optimizer == "adamw":
        common["weight_decay"] = optim.weight_decay
        return keras.optimizers.AdamW(beta_1=optim.beta_1, beta_2=optim.beta_2, epsilon=optim.epsilon, **common)
    if optim.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=optim.momentum, nesterov=True, **common)
    if optim.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(momentum=optim.momentum, epsilon=optim.epsilon, **common)
    raise ValueError(f"`optim.optimizer` must be one of adam, adamw, sgd, rmsprop. Received: {optim.optimizer!r}")


def build_training_optimizer(config, steps_per_epoch: int, trunk_path: str):
    """The optimizer for a run: for `tune` with `trunk_lr_factor != 1`, a `keras.optimizers.MultiOptimizer`.

    Variables whose path starts with `trunk_path` (the trunk) get the head's
    rate times `optim.trunk_lr_factor`; everything else the head's rate.
    """
    optim = config.optim
    if config.paradigm != "tune" or optim.trunk_lr_factor == 1.0:
        return build_optimizer(optim, steps_per_epoch)
    head = build_optimizer(optim, steps_per_epoch)
    trunk = build_optimizer(optim, steps_per_epoch, lr_factor=optim.trunk_lr_factor)
    optimizer_map = keras.optimizers.OptimizerMap(default_optimizer=head)
    optimizer_map[f"{trunk_path}/.*"] = trunk
    return keras.optimizers.MultiOptimizer(optimizer_map)
