"""`build_training_optimizer` on one device: `tune`'s trunk and head each step at their own rate.

The reference for "lr x gradient" is a copy of the model stepped by a plain
`SGD(learning_rate=1)`, whose update is minus the gradient; the MultiOptimizer
must move every trunk variable by `trunk rate x` that and every head variable
(linear layers, comparison head) by `head rate x` that. The same check under
MirroredStrategy is in test_distribution.py.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from keras_percept.losses import get_loss
from keras_percept.models.comparison import Dist2Logit
from keras_percept.models.lpips import LPIPS
from keras_percept.models.twoafc import TwoAFCModel
from keras_percept.training import load_config
from keras_percept.training.optimizers import build_training_optimizer

HEAD_LR = 10.0  # large so that every update stands well above float32 rounding of the weights
FACTOR = 0.1
N_TRUNK, N_HEAD = 10, 11  # alex: 5 convolutions x (kernel, bias); 5 linear kernels + 3 dense (kernel, bias)


def tune_config(*overrides: str):
    # `momentum=0` is what YAML reads as an int; Keras's SGD accepts only a float.
    return load_config(paradigm="tune", overrides=[
        "optim.optimizer=sgd", "optim.momentum=0", "optim.schedule=constant", f"optim.learning_rate={HEAD_LR}",
        f"optim.trunk_lr_factor={FACTOR}", *overrides,
    ])


def small_model() -> TwoAFCModel:
    """alex trunk (random, trainable) + linear layers + Dist2Logit, the same weights on every call."""
    keras.utils.set_random_seed(0)
    model = TwoAFCModel(LPIPS(net="alex", dropout=0.0, trunk_trainable=True), Dist2Logit())
    for lin in model.metric.lins:
        lin.kernel.constraint = None  # the NonNeg projection would clip some updates: not what is tested here
    return model


def batch():
    rng = np.random.default_rng(1)
    images = tuple(rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32") for _ in range(3))
    return images, rng.uniform(0, 1, (4,)).astype("float32")


def step(model, optimizer) -> list[np.ndarray]:
    """One training step on `batch()`; returns the update of every trainable variable."""
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.compile(optimizer=optimizer, loss=get_loss("bce"))
    model.train_on_batch(*batch())
    return [keras.ops.convert_to_numpy(v) - b for v, b in zip(model.trainable_variables, before)]


def owned(optimizer) -> dict[str, list[str]]:
    """The variable paths each inner optimizer was built on, by optimizer name."""
    return {inner.name: [v.path for v in inner._trainable_variables] for inner in optimizer.optimizers}


def test_trunk_variable_paths_do_not_carry_the_trunk_name():
    """Why the split is keyed by the trunk's variables: a `<trunk name>/.*` regex matches none of them."""
    model = small_model()
    trunk = model.metric.backbone
    assert [v for v in model.trainable_variables if re.fullmatch(f"{trunk.name}/.*", v.path)] == []
    assert trunk.trainable_variables[0].path == "features_0/kernel"


def test_tune_needs_the_trunk_layer_not_its_name():
    with pytest.raises(ValueError, match=r"`trunk` must be the trunk layer .* Received: trunk=None"):
        build_training_optimizer(tune_config(), 10)


@pytest.mark.parametrize("paradigm, overrides", [("lin", []), ("scratch", []), ("tune", ["optim.trunk_lr_factor=1.0"])])
def test_one_optimizer_without_a_split(paradigm, overrides):
    config = load_config(paradigm=paradigm, overrides=overrides)
    optimizer = build_training_optimizer(config, 10)
    assert not isinstance(optimizer, keras.optimizers.MultiOptimizer)


def test_tune_gives_the_trunk_and_the_head_their_own_optimizer():
    model = small_model()
    optimizer = build_training_optimizer(tune_config(), 10, trunk=model.metric.backbone)
    optimizer.build(model.trainable_variables)
    groups = owned(optimizer)
    assert {name: len(paths) for name, paths in groups.items()} == {"trunk": N_TRUNK, "head": N_HEAD}
    assert groups["trunk"] == [v.path for v in model.metric.backbone.trainable_variables]
    rates = {o.name: float(keras.ops.convert_to_numpy(o.learning_rate)) for o in optimizer.optimizers}
    np.testing.assert_allclose([rates["trunk"], rates["head"]], [HEAD_LR * FACTOR, HEAD_LR], rtol=1e-6)
    for inner in optimizer.optimizers:  # Nesterov with momentum 0: plain SGD, w -= lr * g
        assert isinstance(inner, keras.optimizers.SGD) and inner.nesterov and inner.momentum == 0.0


def test_one_sgd_step_moves_each_group_at_its_rate():
    """update = -rate x gradient, with the trunk's rate for the 10 trunk variables and the head's for the 11 others."""
    multi_model, plain_model = small_model(), small_model()
    optimizer = build_training_optimizer(tune_config(), 10, trunk=multi_model.metric.backbone)
    updates = step(multi_model, optimizer)
    minus_gradients = step(plain_model, keras.optimizers.SGD(learning_rate=1.0))
    trunk_paths = set(owned(optimizer)["trunk"])
    ratios = {"trunk": [], "head": []}
    for v, update, minus_g in zip(multi_model.trainable_variables, updates, minus_gradients):
        group, rate = ("trunk", HEAD_LR * FACTOR) if v.path in trunk_paths else ("head", HEAD_LR)
        ratios[group].append(np.linalg.norm(update) / np.linalg.norm(minus_g))
        # Each update is exact up to float32 rounding of the weight it was added to (and of -g, read the same way).
        ulp = np.spacing(np.float32(np.abs(keras.ops.convert_to_numpy(v)).max()))
        np.testing.assert_allclose(update, rate * minus_g, rtol=1e-4, atol=4 * (1 + rate) * ulp, err_msg=v.path)
    print({g: (len(r), f"{min(r):.6f}-{max(r):.6f}") for g, r in ratios.items()})
    assert (len(ratios["trunk"]), len(ratios["head"])) == (N_TRUNK, N_HEAD)
    np.testing.assert_allclose(ratios["trunk"], HEAD_LR * FACTOR, rtol=1e-4)
    np.testing.assert_allclose(ratios["head"], HEAD_LR, rtol=1e-4)
    assert [int(keras.ops.convert_to_numpy(o.iterations)) for o in optimizer.optimizers] == [1, 1]


def test_global_clipnorm_clips_each_group_separately():
    """With a MultiOptimizer each inner optimizer clips its own gradient: trunk and head each get norm `clip`."""
    clip, rate = 1e-6, 1e5  # updates of norm 0.01 (trunk) and 0.1 (head): far above rounding of the weights
    model = small_model()
    config = tune_config(f"optim.global_clipnorm={clip}", f"optim.learning_rate={rate}")
    optimizer = build_training_optimizer(config, 10, trunk=model.metric.backbone)
    updates = step(model, optimizer)
    trunk_paths = set(owned(optimizer)["trunk"])
    norms = {group: np.sqrt(sum(np.sum(u.astype("float64") ** 2) for v, u in zip(model.trainable_variables, updates)
                                if (v.path in trunk_paths) == (group == "trunk")))
             for group in ("trunk", "head")}
    # update = -rate x clipped gradient, so |update| / rate is the norm each group's gradient was clipped to.
    np.testing.assert_allclose([norms["trunk"] / (rate * FACTOR), norms["head"] / rate], clip, rtol=1e-3)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute strategies are TensorFlow's")
def test_global_clipnorm_is_allowed_with_one_replica():
    import tensorflow as tf

    config = load_config(paradigm="lin", overrides=["optim.global_clipnorm=1.0"])
    assert build_training_optimizer(config, 10).global_clipnorm == 1.0
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert build_training_optimizer(config, 10).global_clipnorm == 1.0


def test_gradual_unfreezing_releases_the_trunk_from_the_top_down():
    """unfreeze_every_epochs=1, 2 steps per epoch: epoch 0 trains stage 4 only, epoch 1 stages 3-4, ..."""
    model = small_model()
    config = tune_config("optim.unfreeze_every_epochs=1", "optim.learning_rate=0.1")
    optimizer = build_training_optimizer(config, 2, trunk=model.metric.backbone)
    assert sorted(o.name for o in optimizer.optimizers) == ["head"] + [f"trunk_stage_{k}" for k in range(5)]
    stages = model.metric.backbone.stage_of_variables()
    assert sorted(set(stages.values())) == [0, 1, 2, 3, 4] and len(stages) == N_TRUNK
    model.compile(optimizer=optimizer, loss=get_loss("bce"))
    trunk_vars = model.metric.backbone.trainable_variables
    for epoch in range(3):
        before = [keras.ops.convert_to_numpy(v) for v in trunk_vars]
        for _ in range(2):
            model.train_on_batch(*batch())
        moved = {stages[v.path] for v, b in zip(trunk_vars, before)
                 if not np.array_equal(keras.ops.convert_to_numpy(v), b)}
        assert moved == set(range(4 - epoch, 5)), f"epoch {epoch}: stages {sorted(moved)} moved"


def test_gradual_unfreezing_is_only_for_tune():
    with pytest.raises(ValueError, match=r"`optim.unfreeze_every_epochs` \(gradual unfreezing\) applies to paradigm "
                                         r"'tune'. Received: paradigm='lin'"):
        load_config(paradigm="lin", overrides=["optim.unfreeze_every_epochs=2"])
