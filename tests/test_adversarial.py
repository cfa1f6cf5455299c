"""PGD (`keras_percept.adversarial`) against hand-computed steps, and adversarial training in `TwoAFCModel`."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_percept import LPIPS
from keras_percept.adversarial import PGD, input_gradient
from keras_percept.losses import TwoAFCBCE
from keras_percept.models.comparison import Dist2Logit
from keras_percept.models.ensemble import ELPIPS
from keras_percept.models.twoafc import TwoAFCModel


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("kwargs, match", [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": 0.1, "steps": 0}, "steps"), ({"epsilon": 0.1, "norm": "l1"}, "norm"),
    ({"epsilon": 0.1, "step_size": -1.0}, "step_size"), ({"epsilon": 0.1, "target": "p2"}, "target")])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=f"Argument `{match}`"):
        PGD(**kwargs)


def test_input_gradient_is_the_analytic_gradient():
    x = np.array([[0.5, -2.0, 3.0]], "float32")
    np.testing.assert_allclose(_np(input_gradient(lambda a: keras.ops.sum(a ** 2), x)), 2 * x, rtol=1e-6)


def test_linf_steps_by_hand():
    """f = sum(w * ref): each step adds alpha * sign(w), clipped to the ball and to [-1, 1]."""
    w = np.array([[[[1.0], [-2.0], [0.0], [3.0]]]], "float32")       # (1, 1, 4, 1)
    ref = np.array([[[[0.0], [0.0], [0.5], [0.98]]]], "float32")
    others = np.full_like(ref, 0.25)
    attack = PGD(epsilon=0.05, steps=3, step_size=0.02)
    moved = attack.perturb((ref, others, others), lambda r, a, b: keras.ops.sum(keras.ops.multiply(w, r)))
    # by hand: +0.02 per step along sign(w) (0 where w = 0), capped at 0.05, and at 1.0 for the last pixel
    np.testing.assert_allclose(_np(moved[0])[0, 0, :, 0], [0.05, -0.05, 0.5, 1.0], atol=1e-6)
    for index in (1, 2):
        np.testing.assert_array_equal(_np(moved[index]), others)  # only the target moves


def test_l2_steps_by_hand():
    """Normalised-gradient steps of 0.3 along w / |w| (|w| = 5), then rescaled onto the 0.5 ball."""
    w = np.array([[[[3.0], [4.0]]]], "float32")
    p0 = np.zeros((1, 1, 2, 1), "float32")
    attack = PGD(epsilon=0.5, steps=2, norm="l2", step_size=0.3, target="p0")
    moved = attack.perturb((p0, p0, p0), lambda r, a, b: keras.ops.sum(keras.ops.multiply(w, a)))
    np.testing.assert_allclose(_np(moved[1])[0, 0, :, 0], [0.3, 0.4], atol=1e-6)  # 0.6 along w/5, cut to 0.5
    assert attack.alpha == 0.3 and PGD(0.5, steps=2).alpha == pytest.approx(0.625)


def test_elpips_draws_new_transforms_at_every_step():
    """Expectation over transformation: the attack must not see one fixed draw (JAX: state threaded out)."""
    metric = ELPIPS(LPIPS(net="alex", lpips=False), samples=2, seed=3)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 40, 40, 3)).astype("float32")
    before = [_np(v).copy() for v in metric.non_trainable_variables]
    input_gradient(lambda a: keras.ops.sum(metric((a, x), training=False)), x * 0.5, variables=metric.variables)
    after = [_np(v) for v in metric.non_trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def _twoafc(seed=0, trunk_trainable=False):
    keras.utils.set_random_seed(seed)
    model = TwoAFCModel(LPIPS(net="alex", dropout=0.0, trunk_trainable=trunk_trainable), Dist2Logit(),
                        adversarial={"epsilon": 3.0, "steps": 2, "norm": "l2"})
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=TwoAFCBCE())
    return model


def _batches():
    rng = np.random.default_rng(1)
    out = []
    for _ in range(2):
        ref = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
        out.append(((ref, np.clip(ref + 0.2, -1, 1), np.clip(-ref, -1, 1)), rng.uniform(0, 1, (4,)).astype("float32")))
    return out


def _manual(batches, stale_attack=False, trunk_trainable=False):
    """Each batch attacked eagerly with the current (or, for the negative control, the initial) weights."""
    model = _twoafc(trunk_trainable=trunk_trainable)
    initial = _twoafc(trunk_trainable=trunk_trainable)
    attack, model.attack = model.attack, None  # the steps themselves train on what they are given
    for x, h in batches:
        attacker = initial if stale_attack else model
        attacker.attack = attack
        x_adv = attacker._attacked((tuple(keras.ops.convert_to_tensor(a) for a in x), h))[0]
        model.attack = None
        model.train_on_batch(tuple(_np(a) for a in x_adv), h)
    return model


@pytest.mark.parametrize("trunk_trainable", [False, True], ids=["lin", "tune"])
def test_adversarial_fit_trains_on_the_attack_of_the_current_weights(trunk_trainable):
    """fit() with `adversarial` equals: attack each batch with the current weights, then a clean step.

    The JAX step reads the weights from its state, not from the variables (stale inside the
    compiled step); the negative control shows that attacking with stale weights gives other weights.
    """
    batches = _batches()
    model = _twoafc(trunk_trainable=trunk_trainable)
    for x, h in batches:
        model.fit(x, h, batch_size=4, epochs=1, shuffle=False, verbose=0)
    expected = _manual(batches, trunk_trainable=trunk_trainable)
    for got, want in zip(model.weights, expected.weights):
        np.testing.assert_allclose(_np(got), _np(want), rtol=0, atol=1e-6)
    stale = _manual(batches, stale_attack=True, trunk_trainable=trunk_trainable)
    assert max(float(np.max(np.abs(_np(a.kernel) - _np(b.kernel))))
               for a, b in zip(model.metric.lins, stale.metric.lins)) > 1e-5
    clean = _twoafc(trunk_trainable=trunk_trainable)
    clean.attack = None
    for x, h in batches:
        clean.train_on_batch(x, h)
    assert max(float(np.max(np.abs(_np(a.kernel) - _np(b.kernel))))
               for a, b in zip(model.metric.lins, clean.metric.lins)) > 1e-5


def test_the_attack_raises_the_training_loss():
    model = _twoafc()
    (x, h), _ = _batches()
    loss = TwoAFCBCE()
    attacked = model._attacked((tuple(keras.ops.convert_to_tensor(a) for a in x), h))[0]
    assert float(loss(h, model(attacked))) > float(loss(h, model(x)))
    np.testing.assert_array_equal(_np(attacked[1]), x[1])


def test_config_round_trip_keeps_the_attack(tmp_path):
    model = _twoafc()
    restored = TwoAFCModel.from_config(model.get_config())
    assert restored.attack == PGD(epsilon=3.0, steps=2, norm="l2")
