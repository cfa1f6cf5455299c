"""Image-quality-assessment losses against mean opinion scores (MOS).

Layout: `y_true` = MOS, `y_pred` = predicted quality, each `(N,)` or `(N, 1)`
(higher = better, or consistently the other way round: only the sign
convention of both must agree). `fidelity_loss` also accepts `(N, 2)` =
`[mean, std]` for either (MOS standard deviation / predicted uncertainty).

(The config's `l1` and `l2` are Keras's `MeanAbsoluteError` and `MeanSquaredError`, as `L1Loss` / `L2Loss`.)
`pairwise_rank_loss` and `fidelity_loss` return one value
per sample, `(N,)` (for the pairwise losses: sample i's mean over its pairs,
so the batch mean is the mean over all ordered pairs i != j); `plcc_loss` and
`srcc_loss` are batch statistics and return a scalar. Batch statistics are
only meaningful with several samples per batch. Under a `tf.distribute`
strategy with N replicas all of them see one replica's batch / N samples
(the pairwise losses: pairs within a replica) and the step is the mean of
the replicas' gradients (`BatchStatisticLoss` scales the scalar ones).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_percept.losses._base import BatchStatisticLoss, FunctionLoss
from keras_percept.losses._layout import check_range, flat_column, mean_and_spread, off_diagonal_row_mean


def _pair(y_true, y_pred):
    y_pred = flat_column(y_pred, "y_pred")
    return flat_column(y_true, "y_true", dtype=y_pred.dtype), y_pred


def _pearson(x, y, eps: float):
    """Pearson correlation with `eps` added to both sums of squares (finite value and gradient at zero spread)."""
    xc = x - ops.mean(x)
    yc = y - ops.mean(y)
    return ops.sum(xc * yc) / ops.sqrt((ops.sum(xc * xc) + eps) * (ops.sum(yc * yc) + eps))


def plcc_loss(y_true, y_pred, eps: float = 1e-8):
    """One minus the Pearson linear correlation over the batch.

    Formula:

    ```python
    xc, yc = y_pred - mean(y_pred), y_true - mean(y_true)
    loss = 1 - sum(xc * yc) / sqrt((sum(xc**2) + eps) * (sum(yc**2) + eps))
    ```

    `eps` keeps value and gradient finite for a constant batch (correlation 0,
    loss 1). Invariant to affine rescaling of the predictions (for spreads
    well above sqrt(eps)).

    Args:
        y_true: MOS, `(N,)` or `(N, 1)`.
        y_pred: predicted quality, `(N,)` or `(N, 1)`.
        eps: > 0, added to both sums of squares. Defaults to `1e-8`.

    Returns:
        Scalar, in [0, 2].

    Example:

    >>> plcc_loss(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]))  # ~0

    Reference: Li, Jiang, Jiang, "Norm-in-Norm Loss with Faster Convergence
    and Better Performance for Image Quality Assessment", ACM MM 2020.
    """
    eps = check_range("eps", eps, 0.0, low_open=True)
    y_true, y_pred = _pair(y_true, y_pred)
    return 1.0 - _pearson(y_pred, y_true, eps)


def soft_rank(x, temperature: float):
    """Differentiable ranks: `rank_i = sum_j sigmoid((x_i - x_j) / temperature)`.

    As `temperature -> 0` this tends to the hard rank with ties averaged,
    minus 1/2 (`#{x_j < x_i} + #{x_j == x_i} / 2`, the `j = i` term included).
    `temperature` is in the units of `x`: pairs further apart than a few
    temperatures count as fully ordered and pass no gradient. O(N^2) memory.

    Example:

    >>> soft_rank(np.array([0.0, 10.0, 5.0]), temperature=0.01)  # ~[0.5, 2.5, 1.5]
    """
    temperature = check_range("temperature", temperature, 0.0, low_open=True)
    x = ops.reshape(x, (-1,))
    return ops.sum(ops.sigmoid((x[:, None] - x[None, :]) / temperature), axis=1)


def _hard_rank(x):
    """`#{x_j < x_i} + #{x_j == x_i} / 2`: ranks with ties averaged, minus 1/2 (no gradient needed)."""
    less = ops.cast(x[None, :] < x[:, None], x.dtype)
    equal = ops.cast(x[None, :] == x[:, None], x.dtype)
    return ops.sum(less + 0.5 * equal, axis=1)


def srcc_loss(y_true, y_pred, temperature: float = 0.1, eps: float = 1e-8):
    """One minus a differentiable Spearman rank correlation over the batch.

    Formula:

    ```python
    r_pred_i = sum_j sigmoid((y_pred_i - y_pred_j) / temperature)  # soft ranks
    r_true_i = #{y_true_j < y_true_i} + #{y_true_j == y_true_i} / 2  # hard ranks, ties averaged
    loss = 1 - pearson(r_pred, r_true)   # with eps as in `plcc_loss`
    ```

    Soft ranks: the pairwise-sigmoid relaxation (a sum of sigmoids of all
    pairwise differences), which equals the hard rank (ties averaged, as in
    `scipy.stats.spearmanr`) as temperature -> 0. The labels need no gradient,
    so they are ranked exactly. `temperature` is in y_pred units: small
    values track Spearman closely but only pairs within a few temperatures of
    each other get gradient; large values approach Pearson correlation.

    Args:
        y_true: MOS, `(N,)` or `(N, 1)`.
        y_pred: predicted quality, `(N,)` or `(N, 1)`.
        temperature: > 0, the sigmoid's width in y_pred units. Defaults to `0.1`.
        eps: > 0, added to both rank sums of squares. Defaults to `1e-8`.

    Returns:
        Scalar, in [0, 2].

    Example:

    >>> srcc_loss(np.array([1.0, 2.0, 3.0]), np.array([0.0, 5.0, 9.0]))  # ~0

    Reference: Blondel et al., "Fast Differentiable Sorting and Ranking",
    ICML 2020 (on relaxed ranks); Qin et al., "A General Approximation
    Framework for Direct Optimization of Information Retrieval Measures",
    Information Retrieval 2010 (the pairwise-sigmoid rank).
    """
    temperature = check_range("temperature", temperature, 0.0, low_open=True)
    eps = check_range("eps", eps, 0.0, low_open=True)
    y_true, y_pred = _pair(y_true, y_pred)
    return 1.0 - _pearson(soft_rank(y_pred, temperature), _hard_rank(y_true), eps)


def pairwise_rank_loss(y_true, y_pred):
    """Hinge on every pair's predicted order, with the label gap as slack.

    Formula:

    ```python
    # over ordered pairs i != j; Q = y_true (MOS), Q_hat = y_pred
    e_ij = 1 if Q_hat_i >= Q_hat_j else -1
    loss_ij = max(0, |Q_hat_i - Q_hat_j| - e_ij * (Q_i - Q_j))
    loss_i = mean_{j != i} loss_ij          # returned; its mean = mean over pairs
    ```

    A pair costs nothing when the labels order it as the predictions do, by
    at least the predicted gap; a wrongly ordered pair costs
    `|dQ_hat| + |dQ|`. So the loss also discourages predicted gaps larger than
    the label gaps (predictions on a narrower scale than the MOS are free).

    Args:
        y_true: MOS, `(N,)` or `(N, 1)`.
        y_pred: predicted quality, `(N,)` or `(N, 1)`.

    Returns:
        `(N,)`; 0 for a batch of one sample.

    Example:

    >>> pairwise_rank_loss(np.array([1.0, 3.0]), np.array([2.0, 1.0]))  # [3.0, 3.0]

    Reference: compare the monotonicity term of Li, Jiang, Jiang,
    "Norm-in-Norm Loss ...", ACM MM 2020, which charges only wrongly
    ordered pairs (`relu(-(Q_hat_i - Q_hat_j) * sign(Q_i - Q_j))`).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    pred_gap = y_pred[:, None] - y_pred[None, :]
    true_gap = y_true[:, None] - y_true[None, :]
    sign = ops.where(pred_gap >= 0, 1.0, -1.0)
    return off_diagonal_row_mean(ops.relu(ops.abs(pred_gap) - ops.cast(sign, pred_gap.dtype) * true_gap))


def _normal_cdf(z):
    return 0.5 * (1.0 + ops.erf(z / np.sqrt(2.0)))


def _preference_z(mean, std, eps: float):
    """`(mean_i - mean_j) / sqrt(std_i^2 + std_j^2 + eps)`, `(N, N)`: P(i > j) = Phi(z) (Thurstone model)."""
    spread = ops.sqrt(ops.square(std)[:, None] + ops.square(std)[None, :] + eps)
    return (mean[:, None] - mean[None, :]) / spread


def fidelity_loss(y_true, y_pred, sigma: float = 1.0, eps: float = 1e-12):
    """Fidelity between label and predicted pairwise preference probabilities (Thurstone Case V).

    Formula:

    ```python
    # over ordered pairs i != j
    p_ij     = Phi((mos_i - mos_j) / sqrt(std_i**2 + std_j**2))     # from y_true
    p_hat_ij = Phi((mu_i - mu_j) / sqrt(sigma_i**2 + sigma_j**2))   # from y_pred
    loss_ij = 1 - sqrt(p_ij * p_hat_ij + eps) - sqrt((1 - p_ij) * (1 - p_hat_ij) + eps)
    loss_i = mean_{j != i} loss_ij          # returned; its mean = mean over pairs
    ```

    `eps` is also added under the variance square root; `1 - p` is computed
    as `Phi(-z)`. Fidelity is symmetric under swapping i and j, so this is
    also the mean over unordered pairs. `eps` inside the probability roots
    keeps the gradient finite when `p_hat` saturates at 0 or 1 in floating
    point; it biases the loss by at most `2 * sqrt(eps)` (2e-6).

    Args:
        y_true: `(N,)`/`(N, 1)` MOS (std = `sigma`), or `(N, 2)` = `[mos, std]`.
        y_pred: `(N,)`/`(N, 1)` predicted quality (sigma = `sigma`), or
            `(N, 2)` = `[mu, sigma]` from a model that predicts its uncertainty.
        sigma: > 0, the standard deviation used for any input without a std
            column, in score units. Defaults to `1.0`.
        eps: > 0, numerical floor (see above). Defaults to `1e-12`.

    Returns:
        `(N,)`; 0 for a batch of one sample.

    Example:

    >>> fidelity_loss(np.array([[3.0, 0.5], [1.0, 0.5]]), np.array([2.0, 2.0]))  # ~[0.26, 0.26]

    Reference: Zhang, Ma, Zhai, Yang, "Uncertainty-Aware Blind Image Quality
    Assessment in the Laboratory and Wild" (UNIQUE), IEEE TIP 2021; Tsai et
    al., "FRank: A Ranking Method with Fidelity Loss", SIGIR 2007.
    """
    sigma = check_range("sigma", sigma, 0.0, low_open=True)
    eps = check_range("eps", eps, 0.0, low_open=True)
    mu, mu_std = mean_and_spread(y_pred, "y_pred", sigma)
    mos, mos_std = mean_and_spread(y_true, "y_true", sigma, dtype=mu.dtype)
    z = _preference_z(mos, mos_std, eps)
    z_hat = _preference_z(mu, mu_std, eps)
    # 1 - Phi(z) evaluated as Phi(-z): no cancellation when p is close to 1
    agree = ops.sqrt(_normal_cdf(z) * _normal_cdf(z_hat) + eps)
    disagree = ops.sqrt(_normal_cdf(-z) * _normal_cdf(-z_hat) + eps)
    fidelity = 1.0 - agree - disagree
    return off_diagonal_row_mean(fidelity)


@keras.saving.register_keras_serializable(package="keras_percept")
class PLCCLoss(BatchStatisticLoss):
    """Loss class for `plcc_loss`: 1 - Pearson correlation over the batch.

    A batch statistic: `sample_weight` only rescales it by the weights' mean.

    Args:
        eps: > 0, added to both sums of squares. Defaults to `1e-8`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"plcc_loss"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=PLCCLoss())  # doctest: +SKIP
    """

    fn = staticmethod(plcc_loss)
    options = ("eps",)

    def __init__(self, eps: float = 1e-8, reduction="sum_over_batch_size", name="plcc_loss", dtype=None):
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class SRCCLoss(BatchStatisticLoss):
    """Loss class for `srcc_loss`: 1 - Pearson of soft prediction ranks and label ranks.

    A batch statistic: `sample_weight` only rescales it by the weights' mean.

    Args:
        temperature: > 0, soft-rank sigmoid width in y_pred units. Defaults to `0.1`.
        eps: > 0, added to both rank sums of squares. Defaults to `1e-8`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"srcc_loss"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=SRCCLoss(temperature=0.05))  # doctest: +SKIP
    """

    fn = staticmethod(srcc_loss)
    options = ("temperature", "eps")

    def __init__(self, temperature: float = 0.1, eps: float = 1e-8, reduction="sum_over_batch_size",
                 name="srcc_loss", dtype=None):
        self.temperature = check_range("temperature", temperature, 0.0, low_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class PairwiseRankLoss(FunctionLoss):
    """Loss class for `pairwise_rank_loss`: pairwise order hinge, mean over pairs.

    `sample_weight` weights each sample's row of pairs.

    Args:
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"pairwise_rank_loss"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=PairwiseRankLoss())  # doctest: +SKIP
    """

    fn = staticmethod(pairwise_rank_loss)

    def __init__(self, reduction="sum_over_batch_size", name="pairwise_rank_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class FidelityLoss(FunctionLoss):
    """Loss class for `fidelity_loss`: pairwise preference fidelity, mean over pairs.

    `sample_weight` weights each sample's row of pairs.

    Args:
        sigma: > 0, std for inputs without a std column. Defaults to `1.0`.
        eps: > 0, numerical floor. Defaults to `1e-12`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"fidelity_loss"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=FidelityLoss(sigma=0.5))  # doctest: +SKIP
    """

    fn = staticmethod(fidelity_loss)
    options = ("sigma", "eps")

    def __init__(self, sigma: float = 1.0, eps: float = 1e-12, reduction="sum_over_batch_size",
                 name="fidelity_loss", dtype=None):
        self.sigma = check_range("sigma", sigma, 0.0, low_open=True)
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class L1Loss(keras.losses.MeanAbsoluteError):
    """Keras's `MeanAbsoluteError` under the name `.keras` files of earlier versions refer to (`loss_type: l1`).

    Per sample for `(N, 1)` predictions (the IQA model's output) against `(N,)` or `(N, 1)` MOS.

    Example:

    >>> float(L1Loss()(np.array([3.0, 1.0]), np.array([[2.5], [2.0]])))  # (0.5 + 1.0) / 2
    0.75
    """

    def __init__(self, reduction="sum_over_batch_size", name="l1_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class L2Loss(keras.losses.MeanSquaredError):
    """Keras's `MeanSquaredError` under the name `.keras` files of earlier versions refer to (`loss_type: l2`).

    Example:

    >>> float(L2Loss()(np.array([3.0, 1.0]), np.array([[2.5], [2.0]])))  # (0.25 + 1.0) / 2
    0.625
    """

    def __init__(self, reduction="sum_over_batch_size", name="l2_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
