"""Optimizers from an `OptimConfig`, with a discriminative trunk rate for `tune`."""

from __future__ import annotations

import re

import keras

from keras_percept.training.schedules import DelayedStart, build_schedule


def build_optimizer(optim, steps_per_epoch: int, *, lr_factor: float = 1.0, name: str | None = None,
                    start_step: int = 0):
    """One Keras optimizer: adam, adamw, sgd (Nesterov momentum) or rmsprop.

    Weight decay goes through the optimizer (`weight_decay`, decoupled as in
    AdamW for every Keras optimizer); `global_clipnorm` clips the global
    gradient norm.

    Example:

    >>> opt = build_optimizer(OptimConfig(optimizer="sgd", learning_rate=0.1), steps_per_epoch=10)  # doctest: +SKIP
    """
    lr = build_schedule(optim, steps_per_epoch, optim.learning_rate * lr_factor)
    if start_step:
        lr = DelayedStart(lr, start_step)
    common = {"learning_rate": lr, "global_clipnorm": optim.global_clipnorm,
              "weight_decay": optim.weight_decay or None, "name": name,
              "gradient_accumulation_steps": optim.gradient_accumulation_steps}
    if optim.optimizer == "adam":
        return keras.optimizers.Adam(beta_1=optim.beta_1, beta_2=optim.beta_2, epsilon=optim.epsilon, **common)
    if optim.optimizer == "adamw":
        common["weight_decay"] = optim.weight_decay
        return keras.optimizers.AdamW(beta_1=optim.beta_1, beta_2=optim.beta_2, epsilon=optim.epsilon, **common)
    # Keras's SGD rejects an int momentum ("must be a float"), which YAML gives for `momentum: 0`.
    if optim.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=float(optim.momentum), nesterov=True, **common)
    if optim.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(momentum=float(optim.momentum), epsilon=optim.epsilon, **common)
    raise ValueError(f"`optim.optimizer` must be one of adam, adamw, sgd, rmsprop. Received: {optim.optimizer!r}")


def build_training_optimizer(config, steps_per_epoch: int, *, trunk=None):
    """The optimizer for a run: for `tune` with `trunk_lr_factor != 1`, a `keras.optimizers.MultiOptimizer`.

    The trunk's trainable variables get the head's rate times
    `optim.trunk_lr_factor` (inner optimizer `trunk`); everything else the
    head's rate (inner optimizer `head`). With `optim.unfreeze_every_epochs`
    the trunk is released gradually from the top stage down, one inner
    optimizer per stage held at rate 0 until its epoch (`DelayedStart`).
    BatchNorm statistics of a held stage still update in training mode; its
    weights do not.

    The split is keyed by the exact paths of `trunk.trainable_variables`, not
    by the trunk's name: a Keras variable's path is `<layer>/<weight>` of the
    layer that created it (`features_0/kernel`), without the name of the
    functional model holding that layer (`alex_trunk`), so a regex on the
    trunk's name such as `alex_trunk/.*` would match no variable and silently
    give the trunk the head's rate.

    Under `tf.distribute` with more than one replica a clip norm is rejected:
    Keras 3 clips each replica's gradient before the all-reduce sums them,
    so the applied gradient is up to (replicas x clipnorm) long. With a
    MultiOptimizer each inner optimizer clips its own group, so
    `global_clipnorm` bounds the trunk's and the head's gradient separately.

    Args:
        config: a validated `TrainConfig`.
        steps_per_epoch: optimizer steps per epoch (for the schedule).
        trunk: the trunk layer (e.g. `model.metric.backbone`); needed when
            the split is. Defaults to `None`.

    Example:

    >>> opt = build_training_optimizer(load_config(paradigm="tune"), 10, trunk=model.metric.backbone)  # doctest: +SKIP
    >>> [o.name for o in opt.optimizers]  # doctest: +SKIP
    ['trunk', 'head']
    """
    optim = config.optim
    _check_clipnorm_replicas(optim)
    if config.paradigm != "tune" or (optim.trunk_lr_factor == 1.0 and not optim.unfreeze_every_epochs):
        return build_optimizer(optim, steps_per_epoch)
    if trunk is None:
        raise ValueError(
            "`trunk` must be the trunk layer (e.g. trunk=model.metric.backbone) when `optim.trunk_lr_factor` "
            f"!= 1 ({optim.trunk_lr_factor}). Received: trunk=None"
        )
    paths = [v.path for v in trunk.trainable_variables]
    if not paths:
        raise ValueError(
            f"`trunk` must have trainable variables for `optim.trunk_lr_factor`. Received: {trunk.name!r} with none"
        )
    head = build_optimizer(optim, steps_per_epoch, name="head")
    optimizer_map = keras.optimizers.OptimizerMap(default_optimizer=head)
    for name, group, start_epoch in _trunk_groups(trunk, paths, optim.unfreeze_every_epochs):
        optimizer_map["|".join(re.escape(p) for p in group)] = build_optimizer(
            optim, steps_per_epoch, lr_factor=optim.trunk_lr_factor, name=name,
            start_step=start_epoch * steps_per_epoch)
    return keras.optimizers.MultiOptimizer(optimizer_map)


def _trunk_groups(trunk, paths: list[str], unfreeze_every_epochs: int | None):
    """`(optimizer name, variable paths, first epoch)`: one group, or one per stage for gradual unfreezing.

    With `unfreeze_every_epochs = e` and S stages, stage k (0 = nearest the
    input) starts training at epoch (S - 1 - k) * e: the top stage at once,
    the next one e epochs later, and so on (ULMFiT-style).
    """
    if not unfreeze_every_epochs:
        return [("trunk", paths, 0)]
    stages = trunk.stage_of_variables()
    n = max(stages.values()) + 1
    groups = []
    for k in range(n):
        group = [p for p in paths if stages.get(p) == k]
        if group:
            groups.append((f"trunk_stage_{k}", group, (n - 1 - k) * unfreeze_every_epochs))
    return groups


def _check_clipnorm_replicas(optim) -> None:
    """Raises if a clip norm is set inside a TensorFlow strategy scope with more than one replica."""
    if optim.global_clipnorm is None or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        raise ValueError(
            f"`optim.global_clipnorm` must be null under a tf.distribute strategy with more than one replica. "
            f"Received: optim.global_clipnorm={optim.global_clipnorm} with {replicas} replicas. Keras clips each "
            "replica's gradient before the all-reduce sums them, so the step would use a gradient up to "
            f"{replicas}x the clip norm."
        )
