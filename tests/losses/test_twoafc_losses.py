"""2AFC losses against hand-computed values; gradients, label smoothing, argument checks, serialization.

Reference numbers were computed by hand or with plain NumPy/SciPy formulas
(e.g. BCE as -h log p - (1 - h) log(1 - p) with p = 1 / (1 + exp(-G))),
independently of the code under test.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from backend_utils import value_and_grad
from keras import ops

from keras_percept.losses import (
    TwoAFCBCE,
    TwoAFCFocal,
    TwoAFCHinge,
    TwoAFCMarginRanking,
    TwoAFCSimilarityMSE,
    twoafc_bce,
    twoafc_focal,
    twoafc_hinge,
    twoafc_margin_ranking,
    twoafc_similarity_mse,
)


def triplets(d0, d1, logit) -> np.ndarray:
    return np.stack([d0, d1, logit], axis=-1).astype("float32")


def numpy(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


H = np.array([1.0, 0.0, 0.5, 0.25], "float32")
G = np.array([0.0, 2.0, -1.0, 3.0], "float32")
Y_PRED = triplets([0.2, 0.4, 0.1, 0.3], [0.1, 0.2, 0.3, 0.3], G)


def test_bce_hand_computed():
    # h=1, G=0: log 2; h=0, G=2: log(1 + e^2); h=.5, G=-1: log(1 + e^-1) + .5; h=.25, G=3: log(1 + e^3) - .75
    expected = [0.69314718, 2.12692801, 0.81326169, 2.29858735]
    np.testing.assert_allclose(numpy(twoafc_bce(H, Y_PRED)), expected, rtol=1e-6)
    assert float(TwoAFCBCE()(H, Y_PRED)) == pytest.approx(np.mean(expected), rel=1e-6)


def test_bce_accepts_column_labels_and_sample_weight():
    weights = np.array([1.0, 0.0, 0.0, 3.0], "float32")
    value = TwoAFCBCE()(H[:, None], Y_PRED, sample_weight=weights)
    # "sum_over_batch_size": sum(w * loss) / N
    assert float(value) == pytest.approx((0.69314718 + 3 * 2.29858735) / 4, rel=1e-6)


def test_bce_is_stable_for_extreme_logits():
    y_pred = triplets([0, 0, 0, 0], [0, 0, 0, 0], [-100.0, 100.0, 100.0, -100.0])
    h = np.array([1.0, 0.0, 1.0, 0.0], "float32")
    # -log sigmoid(-100) = 100 (to float precision); -log sigmoid(100) = e^-100 ~ 0
    np.testing.assert_allclose(numpy(twoafc_bce(h, y_pred)), [100.0, 100.0, 0.0, 0.0], atol=1e-5)


def test_bce_gradient_is_sigmoid_minus_label_per_sample():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 16).astype("float32")
    logits[0] = 0.0
    h = rng.uniform(0, 1, 16).astype("float32")
    d = rng.uniform(0, 1, (2, 16)).astype("float32")

    def total(g):  # per-sample losses summed: d total / d G_i = d loss_i / d G_i
        return ops.sum(twoafc_bce(h, ops.stack([ops.convert_to_tensor(d[0]), ops.convert_to_tensor(d[1]), g], -1)))

    _, grad = value_and_grad(total, logits)
    np.testing.assert_allclose(grad, 1 / (1 + np.exp(-logits)) - h, atol=1e-6)


def test_label_smoothing_value_and_gradient():
    y_pred = triplets([0.2, 0.2], [0.1, 0.1], [2.0, -1.0])
    h = np.array([1.0, 0.0], "float32")
    # eps = 0.2: h' = h * 0.8 + 0.1 -> [0.9, 0.1]; BCE(0.9, G=2), BCE(0.1, G=-1)
    np.testing.assert_allclose(numpy(twoafc_bce(h, y_pred, label_smoothing=0.2)), [0.32692801, 0.41326169],
                               rtol=1e-6)
    logits = np.array([2.0, -1.0], "float32")
    _, grad = value_and_grad(
        lambda g: ops.sum(twoafc_bce(h, ops.stack([ops.ones_like(g), ops.ones_like(g), g], -1), 0.2)), logits
    )
    np.testing.assert_allclose(grad, 1 / (1 + np.exp(-logits)) - np.array([0.9, 0.1]), atol=1e-6)
    assert float(TwoAFCBCE(label_smoothing=0.2)(h, y_pred)) == pytest.approx((0.32692801 + 0.41326169) / 2, 1e-6)


def test_focal_hand_computed():
    y_pred = triplets([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.0, 1.0, -2.0])
    h = np.array([1.0, 0.5, 0.0], "float32")
    # h=1, G=0: 0.5^2 log 2; the others from -(h (1-p)^2 log p + (1-h) p^2 log(1-p))
    np.testing.assert_allclose(numpy(twoafc_focal(h, y_pred, gamma=2.0)), [0.17328680, 0.36226318, 0.00180356],
                               rtol=1e-5)


def test_focal_with_gamma_zero_is_bce():
    np.testing.assert_allclose(numpy(twoafc_focal(H, Y_PRED, gamma=0.0)),
                               [0.69314718, 2.12692801, 0.81326169, 2.29858735], rtol=1e-6)


def test_hinge_hand_computed():
    y_pred = triplets([0, 0, 0, 0], [0, 0, 0, 0], [0.5, 2.0, 2.0, 0.0])
    h = np.array([0.75, 1.0, 0.0, 0.5], "float32")
    # .75 * relu(1 - .5) + .25 * relu(1 + .5) = .75; h=1, G=2: 0; h=0, G=2: 3; h=.5, G=0: 1
    np.testing.assert_allclose(numpy(twoafc_hinge(h, y_pred, margin=1.0)), [0.75, 0.0, 3.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(numpy(twoafc_hinge(h, y_pred, margin=0.0)), [0.125, 0.0, 2.0, 0.0], atol=1e-7)


def test_margin_ranking_hand_computed_and_ignores_logit():
    y_pred = triplets([0.3, 0.3, 0.2], [0.25, 0.25, 0.2], [5.0, -5.0, 9.0])
    h = np.array([1.0, 0.0, 0.5], "float32")
    # relu(.1 - .05) = .05; relu(.1 + .05) = .15; tie with h=.5: .5 * .1 + .5 * .1 = .1
    np.testing.assert_allclose(numpy(twoafc_margin_ranking(h, y_pred, margin=0.1)), [0.05, 0.15, 0.1], rtol=1e-5)


def test_similarity_mse_hand_computed():
    y_pred = triplets([0.3, 0.0, 0.1], [0.1, 0.0, 0.3], [0.0, 0.0, 0.0])
    h = np.array([1.0, 0.0, 0.25], "float32")
    # share = d0 / (d0 + d1): .75 -> (.75 - 1)^2; tie at zero -> 1/2 -> .25; .25 -> 0
    np.testing.assert_allclose(numpy(twoafc_similarity_mse(h, y_pred)), [0.0625, 0.25, 0.0], atol=1e-5)


@pytest.mark.parametrize("fn", [twoafc_bce, twoafc_focal, twoafc_hinge, twoafc_margin_ranking, twoafc_similarity_mse])
def test_finite_gradients_at_ties_and_zero_distances(fn):
    y_pred = triplets([0.0, 0.2, 0.5], [0.0, 0.2, 0.1], [0.0, 0.0, 0.0])
    h = np.array([0.5, 1.0, 0.0], "float32")
    value, grad = value_and_grad(lambda p: ops.sum(fn(h, p)), y_pred)
    assert np.isfinite(value) and np.isfinite(grad).all()


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (twoafc_bce, {"label_smoothing": -0.1}),
        (twoafc_bce, {"label_smoothing": 1.0}),
        (twoafc_focal, {"gamma": -1.0}),
        (twoafc_hinge, {"margin": -0.5}),
        (twoafc_margin_ranking, {"margin": float("nan")}),
        (twoafc_similarity_mse, {"eps": 0.0}),
    ],
)
def test_functions_reject_invalid_options(fn, kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=f"`{name}`"):
        fn(H, Y_PRED, **kwargs)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (TwoAFCBCE, {"label_smoothing": 1.5}),
        (TwoAFCFocal, {"gamma": -2.0}),
        (TwoAFCHinge, {"margin": -1.0}),
        (TwoAFCMarginRanking, {"margin": "wide"}),
        (TwoAFCSimilarityMSE, {"eps": -1e-6}),
    ],
)
def test_classes_reject_invalid_options(cls, kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=f"`{name}`.*Received"):
        cls(**kwargs)


@pytest.mark.parametrize("bad", [np.zeros((4,), "float32"), np.zeros((4, 2), "float32"), np.zeros((4, 3, 1), "float32")])
def test_y_pred_must_be_n_by_3(bad):
    with pytest.raises(ValueError, match=r"`y_pred` must have shape \(N, 3\)"):
        twoafc_bce(H, bad)


def test_y_true_must_be_a_column():
    with pytest.raises(ValueError, match="`y_true`"):
        twoafc_bce(np.zeros((4, 2), "float32"), Y_PRED)


@pytest.mark.parametrize(
    "loss",
    [
        TwoAFCBCE(label_smoothing=0.1),
        TwoAFCFocal(gamma=1.5),
        TwoAFCHinge(margin=0.5),
        TwoAFCMarginRanking(margin=0.2, reduction="sum"),
        TwoAFCSimilarityMSE(eps=1e-4, name="sim"),
    ],
)
def test_serialization_round_trip(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert float(restored(H, Y_PRED)) == pytest.approx(float(loss(H, Y_PRED)), rel=1e-6)


class DistancePairModel(keras.Model):
    """Treats its (N, 2) input as (d0, d1) and appends a trainable DifferenceComparison logit."""

    def __init__(self):
        super().__init__()
        from keras_percept.models.comparison import DifferenceComparison

        self.head = DifferenceComparison(scale=1.0)

    def call(self, x):
        d0, d1 = x[:, 0], x[:, 1]
        return ops.stack([d0, d1, self.head(d0, d1)], axis=-1)


@pytest.mark.parametrize("loss", [TwoAFCBCE(), TwoAFCFocal(), TwoAFCHinge()])
def test_fit_learns_the_comparison_scale(loss):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (32, 2)).astype("float32")
    h = (x[:, 0] > x[:, 1]).astype("float32")  # judges always pick the closer patch
    model = DistancePairModel()
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
    history = model.fit(x, h, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert float(ops.convert_to_numpy(model.head.scale_weight)) > 1.0  # sharper logits fit hard labels better
