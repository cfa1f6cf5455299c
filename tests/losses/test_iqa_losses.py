"""IQA losses against hand-computed values and scipy.stats; finite gradients at ties and constant batches."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from backend_utils import value_and_grad
from keras import ops
from scipy import stats

from keras_percept.losses import (
    FidelityLoss,
    PairwiseRankLoss,
    PLCCLoss,
    SRCCLoss,
    fidelity_loss,
    get_loss,
    pairwise_rank_loss,
    plcc_loss,
    soft_rank,
    srcc_loss,
)


def numpy(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


def f32(*values) -> np.ndarray:
    return np.array(values, "float32")


MOS = f32(1.0, 2.0, 3.0, 4.0)
PRED = f32(1.0, 3.0, 2.0, 4.0)


def test_l1_and_l2_hand_computed():
    # `l1` / `l2` are Keras's MAE / MSE: per sample against MOS, with (N,) and (N, 1) mixed.
    assert float(get_loss("l1")(f32(3.0, 1.0), f32(2.5, 2.0)[:, None])) == pytest.approx(0.75)
    assert float(get_loss("l2")(f32(3.0, 1.0)[:, None], f32(2.5, 2.0))) == pytest.approx(0.625)
    per_sample = keras.losses.MeanAbsoluteError(reduction=None)(f32(3.0, 1.0), f32(2.5, 2.0)[:, None])
    np.testing.assert_allclose(numpy(per_sample), [0.5, 1.0])


def test_plcc_hand_computed():
    # centred: pred [-1.5, .5, -.5, 1.5], mos [-1.5, -.5, .5, 1.5]; sum of products 4, sums of squares 5, 5
    assert float(plcc_loss(MOS, PRED)) == pytest.approx(1 - 4 / 5, abs=1e-6)
    assert float(plcc_loss(MOS, 3 * MOS + 7)) == pytest.approx(0.0, abs=1e-6)
    assert float(plcc_loss(MOS, -MOS)) == pytest.approx(2.0, abs=1e-6)


def test_plcc_matches_scipy():
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 32).astype("float32")
    pred = (mos + rng.normal(0, 1, 32)).astype("float32")
    assert float(PLCCLoss()(mos, pred)) == pytest.approx(1 - stats.pearsonr(mos, pred)[0], abs=1e-5)


def test_soft_rank_tends_to_average_ranks():
    # average ranks (1-based, ties averaged) minus 1/2: [1, 3, 2] - .5 and [1, 2.5, 2.5, 4] - .5
    np.testing.assert_allclose(numpy(soft_rank(f32(0.0, 10.0, 5.0), 0.01)), [0.5, 2.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(numpy(soft_rank(f32(1.0, 2.0, 2.0, 3.0), 1e-3)), [0.5, 2.0, 2.0, 3.5], atol=1e-6)


def test_srcc_hand_computed_with_nearly_hard_ranks():
    # ranks of PRED [0, 2, 1, 3] vs MOS [0, 1, 2, 3]: the Pearson of those is 4 / 5
    assert float(srcc_loss(MOS, PRED, temperature=1e-3)) == pytest.approx(0.2, abs=1e-5)
    # monotone but nonlinear predictions: Spearman 1, Pearson < 1
    assert float(srcc_loss(MOS, np.exp(3 * MOS), temperature=1e-3)) == pytest.approx(0.0, abs=1e-6)


def test_srcc_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    mos = np.round(rng.uniform(1, 5, 40)).astype("float32")  # many tied labels
    pred = np.round(mos + rng.normal(0, 1.5, 40), 1).astype("float32")  # tied predictions too, gaps >= 0.1
    expected = 1 - stats.spearmanr(mos, pred)[0]
    assert float(SRCCLoss(temperature=1e-3)(mos, pred)) == pytest.approx(expected, abs=1e-4)


def test_srcc_approaches_pearson_at_high_temperature():
    rng = np.random.default_rng(2)
    pred = rng.normal(0, 0.01, 16).astype("float32")  # spread << temperature: sigmoid is linear
    mos = rng.permutation(16).astype("float32")  # distinct labels: ranks = labels
    expected = 1 - stats.pearsonr(mos, pred)[0]
    assert float(srcc_loss(mos, pred, temperature=10.0)) == pytest.approx(expected, abs=1e-3)


def test_pairwise_rank_hand_computed():
    # Q = [1, 2, 3], Q_hat = [1, 3, 2]; loss_ij = relu(|dQ_hat| - e(dQ_hat) * dQ):
    # (0,1): relu(2 - 1) = 1, (0,2): relu(1 - 2) = 0, (1,0): relu(2 - 1) = 1,
    # (1,2): relu(1 + 1) = 2, (2,0): relu(1 - 2) = 0, (2,1): relu(1 + 1) = 2
    np.testing.assert_allclose(numpy(pairwise_rank_loss(f32(1, 2, 3), f32(1, 3, 2))), [0.5, 1.5, 1.0])
    assert float(PairwiseRankLoss()(f32(1, 2, 3), f32(1, 3, 2))) == pytest.approx(1.0)
    # wrongly ordered pair: |dQ_hat| + |dQ| = 1 + 2
    np.testing.assert_allclose(numpy(pairwise_rank_loss(f32(1, 3), f32(2, 1))), [3.0, 3.0])
    # tied predictions: e = 1 both ways; (0,1): relu(0 + 1) = 1, (1,0): relu(0 - 1) = 0
    np.testing.assert_allclose(numpy(pairwise_rank_loss(f32(1, 2), f32(5, 5))), [1.0, 0.0])
    # predictions on the label scale or narrower cost nothing
    assert float(PairwiseRankLoss()(MOS, 0.5 * MOS)) == 0.0


def test_fidelity_hand_computed():
    # equal scores: p = p_hat = 1/2 -> 1 - 2 sqrt(1/4) = 0
    np.testing.assert_allclose(numpy(fidelity_loss(f32(2, 2), f32(0, 0))), [0.0, 0.0], atol=1e-6)
    # p = Phi(2 / sqrt(.5)) = 0.997661, p_hat = 1/2: 1 - sqrt(p / 2) - sqrt((1 - p) / 2)
    y_true = np.array([[3.0, 0.5], [1.0, 0.5]], "float32")
    np.testing.assert_allclose(numpy(fidelity_loss(y_true, f32(2, 2))), [0.25952363, 0.25952363], rtol=1e-5)
    # std columns on both sides vs fixed sigma give the same p_hat when the columns equal sigma
    y_true = np.array([[3.0, 0.5], [1.0, 0.5], [2.0, 1.0]], "float32")
    expected = [0.01494550, 0.01494550, 0.00220068]  # NumPy/SciPy (ndtr) evaluation of the formula
    np.testing.assert_allclose(numpy(fidelity_loss(y_true, f32(2.5, 1.5, 2.0), sigma=0.5)), expected, rtol=1e-4)
    with_sigma = np.array([[2.5, 0.5], [1.5, 0.5], [2.0, 0.5]], "float32")
    np.testing.assert_allclose(numpy(fidelity_loss(y_true, with_sigma)), expected, rtol=1e-4)


def test_fidelity_is_zero_for_matching_predictions():
    y = np.array([[3.0, 0.5], [1.0, 0.3], [2.0, 1.0]], "float32")
    np.testing.assert_allclose(numpy(fidelity_loss(y, y)), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "fn, kwargs", [(plcc_loss, {}), (srcc_loss, {}), (srcc_loss, {"temperature": 1e-3}), (pairwise_rank_loss, {}),
                   (fidelity_loss, {}), (keras.losses.mean_absolute_error, {}),
                   (keras.losses.mean_squared_error, {})]
)
@pytest.mark.parametrize(
    "mos, pred",
    [
        (f32(1, 2, 3, 4), f32(0.5, 0.5, 0.5, 0.5)),  # constant predictions
        (f32(3, 3, 3, 3), f32(0.1, 0.7, 0.2, 0.9)),  # constant labels
        (f32(2, 2, 2, 2), f32(0.5, 0.5, 0.5, 0.5)),  # both constant
        (f32(1, 2, 2, 4), f32(0.3, 0.3, 0.8, 0.8)),  # ties in both
        (f32(1, 2, 3, 4), f32(0.0, 0.0, 0.0, 1e3)),  # saturating preference probabilities
    ],
)
def test_finite_value_and_gradient_at_ties_and_constant_batches(fn, kwargs, mos, pred):
    value, grad = value_and_grad(lambda p: ops.sum(fn(mos, p, **kwargs)), pred)
    assert np.isfinite(value) and np.isfinite(grad).all(), (value, grad)


def test_constant_predictions_give_zero_correlation():
    assert float(plcc_loss(MOS, np.full(4, 0.5, "float32"))) == pytest.approx(1.0)
    assert float(srcc_loss(MOS, np.full(4, 0.5, "float32"))) == pytest.approx(1.0)


def test_single_sample_pairwise_losses_are_zero():
    np.testing.assert_allclose(numpy(pairwise_rank_loss(f32(3), f32(1))), [0.0])
    np.testing.assert_allclose(numpy(fidelity_loss(f32(3), f32(1))), [0.0])


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (plcc_loss, {"eps": 0.0}),
        (srcc_loss, {"temperature": 0.0}),
        (srcc_loss, {"temperature": -1.0}),
        (srcc_loss, {"eps": -1.0}),
        (fidelity_loss, {"sigma": 0.0}),
        (fidelity_loss, {"eps": 0.0}),
    ],
)
def test_functions_reject_invalid_options(fn, kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=f"`{name}`.*Received"):
        fn(MOS, PRED, **kwargs)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (PLCCLoss, {"eps": -1.0}),
        (SRCCLoss, {"temperature": 0.0}),
        (SRCCLoss, {"eps": None}),
        (FidelityLoss, {"sigma": -0.5}),
        (FidelityLoss, {"eps": 0.0}),
    ],
)
def test_classes_reject_invalid_options(cls, kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=f"`{name}`.*Received"):
        cls(**kwargs)


@pytest.mark.parametrize("fn", [plcc_loss, srcc_loss, pairwise_rank_loss])
def test_reject_multi_column_inputs(fn):
    with pytest.raises(ValueError, match="`y_pred` must have shape"):
        fn(MOS, np.zeros((4, 2), "float32"))
    with pytest.raises(ValueError, match="`y_true` must have shape"):
        fn(np.zeros((4, 3), "float32"), PRED)


def test_fidelity_rejects_three_columns():
    with pytest.raises(ValueError, match=r"`y_pred` must have shape \(N,\), \(N, 1\) or \(N, 2\)"):
        fidelity_loss(MOS, np.zeros((4, 3), "float32"))


@pytest.mark.parametrize(
    "loss",
    [
        get_loss("l1"),
        get_loss("l2", reduction="sum"),
        PLCCLoss(eps=1e-6),
        SRCCLoss(temperature=0.05, eps=1e-7),
        PairwiseRankLoss(name="rank"),
        FidelityLoss(sigma=0.5, eps=1e-9),
    ],
)
def test_serialization_round_trip(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert float(restored(MOS, PRED)) == pytest.approx(float(loss(MOS, PRED)), rel=1e-6)


@pytest.mark.parametrize(
    "loss", [get_loss("l1"), get_loss("l2"), PLCCLoss(), SRCCLoss(), PairwiseRankLoss(), FidelityLoss()]
)
def test_fit_improves_a_linear_quality_model(loss):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (64, 3)).astype("float32")
    mos = (x @ np.array([1.0, -0.5, 0.25], "float32")).astype("float32")
    start = keras.initializers.Constant([[-0.5], [0.5], [0.5]])  # anti-correlated with the MOS
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer=start)])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=loss)
    before = stats.spearmanr(mos, model.predict(x, verbose=0)[:, 0])[0]
    history = model.fit(x, mos, batch_size=16, epochs=10, shuffle=False, verbose=0)
    after = stats.spearmanr(mos, model.predict(x, verbose=0)[:, 0])[0]
    assert np.isfinite(history.history["loss"]).all()
    assert after > max(before, 0.9)
