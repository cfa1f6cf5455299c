"""IQA metrics (SRCC, KRCC, PLCC, RMSE) against SciPy, a pair count, and a known logistic."""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from keras_percept.metrics.iqa import fit_logistic_4p, iqa_scores, krcc, logistic_4p, plcc, rmse, srcc

pytestmark = pytest.mark.one_pass  # NumPy/SciPy metrics


def _data(n: int = 300, seed: int = 0, ties: bool = False):
    rng = np.random.default_rng(seed)
    mos = rng.uniform(1, 5, n)
    pred = np.log(mos) + rng.normal(0, 0.15, n)
    if ties:  # MOS of a few raters and coarse predictions tie often
        mos, pred = np.round(mos * 2) / 2, np.round(pred, 1)
    return mos, pred


@pytest.mark.parametrize("ties", [False, True])
def test_rank_and_linear_correlations_match_scipy(ties):
    mos, pred = _data(ties=ties)
    assert srcc(mos, pred) == pytest.approx(stats.spearmanr(mos, pred).statistic, abs=1e-12)
    assert krcc(mos, pred) == pytest.approx(stats.kendalltau(mos, pred).statistic, abs=1e-12)
    assert plcc(mos, pred, logistic=False) == pytest.approx(stats.pearsonr(mos, pred).statistic, abs=1e-12)
    assert rmse(mos, pred, logistic=False) == pytest.approx(np.sqrt(np.mean((mos - pred) ** 2)), abs=1e-12)


def test_krcc_is_tau_b_by_pair_count():
    mos, pred = _data(n=60, seed=1, ties=True)
    concordant = discordant = tie_x = tie_y = 0
    for i, j in combinations(range(mos.size), 2):
        dx, dy = np.sign(pred[i] - pred[j]), np.sign(mos[i] - mos[j])
        concordant += dx * dy > 0
        discordant += dx * dy < 0
        tie_x += dx == 0 and dy != 0
        tie_y += dy == 0 and dx != 0
    tau_b = (concordant - discordant) / np.sqrt((concordant + discordant + tie_x) * (concordant + discordant + tie_y))
    assert krcc(mos, pred) == pytest.approx(tau_b, abs=1e-12)


def test_hand_computed_small_case():
    # Ranks of pred: 1, 3, 2, 4 -> d^2 sum 2 -> 1 - 6 * 2 / (4 * 15) = 0.8; pairs: 5 concordant, 1 discordant.
    assert srcc([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert krcc([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(4 / 6)
    assert srcc([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_logistic_fit_recovers_known_parameters():
    x = np.linspace(-20, 60, 200)  # predictions in arbitrary units
    truth = (4.6, 1.2, 18.0, 9.0)
    y = logistic_4p(x, *truth)
    np.testing.assert_allclose(fit_logistic_4p(x, y), truth, rtol=1e-4)
    assert plcc(y, x) == pytest.approx(1.0, abs=1e-8)
    assert rmse(y, x) == pytest.approx(0.0, abs=1e-5)
    assert plcc(y, x, logistic=False) < 0.99  # raw Pearson is hurt by the non-linearity


def test_logistic_fit_of_a_decreasing_relation():
    x = np.linspace(0, 1, 100)  # a distance: larger = worse
    y = logistic_4p(x, 1.0, 5.0, 0.4, 0.1)
    assert plcc(y, x) == pytest.approx(1.0, abs=1e-8)
    assert plcc(y, x, logistic=False) < 0  # raw keeps the sign
    b1, b2, b3, b4 = fit_logistic_4p(x, y)
    np.testing.assert_allclose([b1, b2, b3, b4], [1.0, 5.0, 0.4, 0.1], rtol=1e-4)


def test_logistic_by_hand():
    # f(b3) is the midpoint of the asymptotes; f(b3 + b4 * ln 3) = b2 + (b1 - b2) * 3 / 4.
    assert logistic_4p(np.array([2.0]), 5.0, 1.0, 2.0, 0.5)[0] == pytest.approx(3.0)
    assert logistic_4p(np.array([2.0 + 0.5 * np.log(3)]), 5.0, 1.0, 2.0, -0.5)[0] == pytest.approx(4.0)
    assert np.all(np.isfinite(logistic_4p(np.array([-1e6, 1e6]), 5.0, 1.0, 0.0, 1e-3)))


def test_iqa_scores_agree_with_the_single_metrics():
    mos, pred = _data(seed=2)
    scores = iqa_scores(mos, pred)
    assert set(scores) == {"srcc", "krcc", "plcc", "plcc_raw", "rmse"}
    assert scores["srcc"] == pytest.approx(stats.spearmanr(mos, pred).statistic, abs=1e-12)
    assert scores["krcc"] == pytest.approx(stats.kendalltau(mos, pred).statistic, abs=1e-12)
    assert scores["plcc_raw"] == pytest.approx(stats.pearsonr(mos, pred).statistic, abs=1e-12)
    mapped = logistic_4p(pred, *fit_logistic_4p(pred, mos))
    assert scores["plcc"] == pytest.approx(stats.pearsonr(mapped, mos).statistic, abs=1e-12)
    assert scores["rmse"] == pytest.approx(np.sqrt(np.mean((mapped - mos) ** 2)), abs=1e-12)
    assert scores["plcc"] >= scores["plcc_raw"]  # log predictions: the mapping straightens them
    assert all(isinstance(v, float) for v in scores.values())


def test_column_vectors_and_backend_tensors():
    mos, pred = _data(n=20)
    assert srcc(mos[:, None], pred[:, None]) == pytest.approx(srcc(mos, pred))
    import keras

    assert srcc(keras.ops.convert_to_tensor(mos), keras.ops.convert_to_tensor(pred)) == pytest.approx(srcc(mos, pred))


def test_constant_predictions_give_zero_with_a_warning():
    mos = np.array([1.0, 2.0, 4.0, 5.0])
    for metric in (srcc, krcc, plcc):
        with pytest.warns(RuntimeWarning, match="constant"):
            assert metric(mos, np.full(4, 0.3)) == 0.0
    with pytest.warns(RuntimeWarning, match="constant"):
        scores = iqa_scores(mos, np.full(4, 0.3))
    assert scores["srcc"] == scores["plcc"] == scores["plcc_raw"] == 0.0
    assert scores["rmse"] == pytest.approx(mos.std())  # the best constant is the mean MOS
    with pytest.raises(ValueError, match="constant"):
        fit_logistic_4p(np.full(4, 0.3), mos)


def test_failed_fit_falls_back_to_raw_with_a_warning(monkeypatch):
    from scipy import optimize

    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev reached")

    monkeypatch.setattr(optimize, "curve_fit", fail)
    mos, pred = _data(n=50)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        assert plcc(mos, pred) == pytest.approx(stats.pearsonr(mos, pred).statistic, abs=1e-12)
    with pytest.raises(RuntimeError, match="did not converge"):
        fit_logistic_4p(pred, mos)


def test_no_warning_on_good_data():
    mos, pred = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iqa_scores(mos, pred)


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same number of samples. Received: 3 and 2"),
        ([1.0, 2.0], [1.0, 2.0], "at least 3 samples. Received: 2"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "`y_true` must be finite.*index 1"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, np.inf], "`y_pred` must be finite.*index 2"),
        ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], "`y_true` is constant"),
        (np.ones((3, 2)), [1.0, 2.0, 3.0], r"shape \(N,\) or \(N, 1\). Received shape: \(3, 2\)"),
    ],
)
def test_invalid_inputs(y_true, y_pred, match):
    for metric in (srcc, krcc, plcc, rmse, iqa_scores):
        with pytest.raises(ValueError, match=match):
            metric(y_true, y_pred)
