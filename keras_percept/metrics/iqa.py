"""Image-quality-assessment (IQA) metrics against mean opinion scores (MOS), in NumPy/SciPy.

`srcc` (Spearman), `krcc` (Kendall tau-b), `plcc` (Pearson, after the VQEG
4-parameter logistic mapping or raw) and `rmse` (after the mapping or raw),
as reported by IQA papers (KonIQ-10k, HyperIQA, ...). `iqa_scores` returns
all of them at once, fitting the logistic once.

Inputs: `y_true` = MOS, `y_pred` = predictions, each `(N,)` or `(N, 1)`
(NumPy arrays, lists or eager backend tensors), N >= 3, finite.

Constant predictions: correlations are undefined (zero variance). They are
returned as `0.0` with a `RuntimeWarning`: a constant predictor ranks
nothing, i.e. it is at chance level, and a number (unlike NaN) keeps
"best epoch" comparisons and Optuna objectives working. `rmse(...,
logistic=True)` of constant predictions is the RMSE of the best constant,
`std(y_true)`. Constant `y_true` is a data error and raises.

Reference: VQEG, "Final report from the Video Quality Experts Group on the
validation of objective models of video quality assessment, Phase II", 2003
(the logistic mapping); Hosu et al., "KonIQ-10k", IEEE TIP 2020.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats

_CONSTANT_PREDICTIONS = "Predictions are constant: correlations are undefined; returning 0.0 (chance level)."


def logistic_4p(x, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The VQEG 4-parameter logistic mapping of predictions onto the MOS scale.

    Formula:

    ```python
    f(x) = (b1 - b2) / (1 + exp(-(x - b3) / abs(b4))) + b2
    ```

    `b1`/`b2` are the upper/lower asymptotes (`b1 < b2` maps a decreasing
    relation, e.g. a distance), `b3` the midpoint, `abs(b4)` the slope scale.

    Example:

    >>> logistic_4p(np.array([0.0]), 5.0, 1.0, 0.0, 1.0)
    array([3.])
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.clip(-(x - b3) / max(abs(b4), np.finfo(np.float64).tiny), -700.0, 700.0)  # no overflow in exp
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic_4p(y_pred, y_true) -> np.ndarray:
    """Least-squares fit of `logistic_4p` mapping `y_pred` onto `y_true`; returns `[b1, b2, b3, b4]`.

    The fit runs on standardised predictions (so its starting point and step
    sizes do not depend on the predictions' units) with `scipy.optimize.curve_fit`,
    starting from asymptotes at the MOS extremes (swapped for a negative
    correlation), the midpoint at the mean prediction and slope scale one
    standard deviation; the parameters are mapped back to the original units.

    Raises:
        RuntimeError: the fit did not converge or gave non-finite parameters.
        ValueError: invalid inputs (see `iqa_scores`), or constant predictions.

    Example:

    >>> x = np.linspace(-3, 3, 50)
    >>> np.round(fit_logistic_4p(x, logistic_4p(x, 90.0, 10.0, 0.5, 0.8)), 3)
    array([90. , 10. ,  0.5,  0.8])
    """
    y, x = _check_pair(y_true, y_pred)
    if np.ptp(x) == 0:
        raise ValueError("Argument `y_pred` is constant: a logistic mapping of it cannot be fitted.")
    return _fit(x, y)


def srcc(y_true, y_pred) -> float:
    """Spearman rank-order correlation: Pearson correlation of the (average, for ties) ranks.

    Example:

    >>> srcc([1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0])
    0.8
    """
    y, x = _check_pair(y_true, y_pred)
    if np.ptp(x) == 0:
        return _constant()
    return _pearson(stats.rankdata(x), stats.rankdata(y))


def krcc(y_true, y_pred) -> float:
    """Kendall rank correlation, tau-b (ties in either input are accounted for).

    Computed with `scipy.stats.kendalltau` (Knight's O(N log N) algorithm;
    a pair count would be O(N^2) on a 10,000-image test set).

    Example:

    >>> round(krcc([1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0]), 4)
    0.6667
    """
    y, x = _check_pair(y_true, y_pred)
    if np.ptp(x) == 0:
        return _constant()
    return float(stats.kendalltau(x, y, variant="b").statistic)


def plcc(y_true, y_pred, *, logistic: bool = True) -> float:
    """Pearson linear correlation, by default after the 4-parameter logistic mapping of `y_pred`.

    Args:
        y_true: MOS, `(N,)` or `(N, 1)`.
        y_pred: predicted quality, same size.
        logistic: map `y_pred` with `fit_logistic_4p` first (the VQEG
            protocol, so a monotone non-linear relation is not penalised);
            if the fit fails, a `RuntimeWarning` is issued and the raw
            correlation returned. Defaults to `True`.

    Example:

    >>> x = np.linspace(-3, 3, 20)
    >>> round(plcc(logistic_4p(x, 5.0, 1.0, 0.0, 0.5), x), 4)
    1.0
    >>> round(plcc(logistic_4p(x, 5.0, 1.0, 0.0, 0.5), x, logistic=False), 4)
    0.9622
    """
    y, x = _check_pair(y_true, y_pred)
    if np.ptp(x) == 0:
        return _constant()
    return _pearson(_mapped(x, y) if logistic else x, y)


def rmse(y_true, y_pred, *, logistic: bool = True) -> float:
    """Root mean squared error between MOS and (by default logistic-mapped) predictions, in MOS units.

    With `logistic=False` the predictions must already be on the MOS scale.

    Example:

    >>> rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0], logistic=False)
    1.1547005383792515
    """
    y, x = _check_pair(y_true, y_pred)
    if logistic:
        x = np.full_like(y, y.mean()) if np.ptp(x) == 0 else _mapped(x, y)
    return float(np.sqrt(np.mean((x - y) ** 2)))


def iqa_scores(y_true, y_pred) -> dict[str, float]:
    """All IQA metrics at once: `srcc`, `krcc`, `plcc` (logistic), `plcc_raw`, `rmse` (logistic).

    The logistic mapping is fitted once and shared by `plcc` and `rmse`.

    Raises:
        ValueError: sizes differ, fewer than 3 samples, non-finite values, or constant `y_true`.

    Example:

    >>> scores = iqa_scores([1.0, 2.0, 3.0, 4.0], [0.1, 0.3, 0.2, 0.4])
    >>> sorted(scores), scores["srcc"]
    (['krcc', 'plcc', 'plcc_raw', 'rmse', 'srcc'], 0.8)
    """
    y, x = _check_pair(y_true, y_pred)
    if np.ptp(x) == 0:
        _constant()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {"srcc": 0.0, "krcc": 0.0, "plcc": 0.0, "plcc_raw": 0.0, "rmse": rmse(y, x)}
    mapped = _mapped(x, y)
    return {
        "srcc": _pearson(stats.rankdata(x), stats.rankdata(y)),
        "krcc": float(stats.kendalltau(x, y, variant="b").statistic),
        "plcc": _pearson(mapped, y),
        "plcc_raw": _pearson(x, y),
        "rmse": float(np.sqrt(np.mean((mapped - y) ** 2))),
    }


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y, x = _flat("y_true", y_true), _flat("y_pred", y_pred)
    if y.size != x.size:
        raise ValueError(
            f"Arguments `y_true` and `y_pred` must have the same number of samples. Received: {y.size} and {x.size}"
        )
    if y.size < 3:
        raise ValueError(f"IQA metrics need at least 3 samples. Received: {y.size}")
    if np.ptp(y) == 0:
        raise ValueError(f"Argument `y_true` is constant (all {y[0]!r}): correlations with it are undefined.")
    return y, x


def _flat(name: str, value) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"Argument `{name}` must have shape (N,) or (N, 1). Received shape: {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array))
        raise ValueError(
            f"Argument `{name}` must be finite. Received {bad.size} non-finite value(s), first at index {bad[0]}: "
            f"{array[bad[0]]!r}"
        )
    return array


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
    if denominator == 0:
        return _constant()
    return float(np.clip(np.sum(xc * yc) / denominator, -1.0, 1.0))


def _constant() -> float:
    warnings.warn(_CONSTANT_PREDICTIONS, RuntimeWarning, stacklevel=3)
    return 0.0


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    mean, scale = x.mean(), x.std()
    z = (x - mean) / scale
    high, low = (y.max(), y.min()) if _pearson(z, y) >= 0 else (y.min(), y.max())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)  # covariance not estimable: irrelevant here
            params, _ = optimize.curve_fit(logistic_4p, z, y, p0=[high, low, 0.0, 1.0], maxfev=10_000)
    except (RuntimeError, ValueError) as err:
        raise RuntimeError(f"The 4-parameter logistic fit did not converge: {err}") from err
    b1, b2, b3, b4 = params
    params = np.array([b1, b2, mean + scale * b3, scale * abs(b4)])
    if not np.all(np.isfinite(params)):
        raise RuntimeError(f"The 4-parameter logistic fit gave non-finite parameters: {params}")
    return params


def _mapped(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`x` through the fitted logistic, or `x` itself (with a warning) if the fit fails."""
    try:
        return logistic_4p(x, *_fit(x, y))
    except RuntimeError as err:
        warnings.warn(f"{err}; using raw predictions instead.", RuntimeWarning, stacklevel=3)
        return x
