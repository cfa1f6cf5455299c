"""Losses for 2AFC human judgments: each a pure `keras.ops` function plus a `keras.losses.Loss`.

Layout (all 2AFC losses):

- `y_true`: `(N,)` or `(N, 1)`, h in [0, 1] = fraction of judges who judged
  p1 closer to the reference than p0.
- `y_pred`: `(N, 3)` = `[d0, d1, G]` as a `TwoAFCModel` returns it:
  `d0 = D(ref, p0)`, `d1 = D(ref, p1)`, and `G` the comparison head's logit of
  P(judge prefers p1) (G grows with d0 - d1).

The functions return one loss per triplet, `(N,)`; the classes reduce them
(mean by default) and accept `sample_weight`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_percept.losses._base import FunctionLoss
from keras_percept.losses._layout import check_range, split_twoafc


def twoafc_bce(y_true, y_pred, label_smoothing: float = 0.0):
    """Binary cross-entropy between sigmoid(G) and the judges' fraction h, from logits.

    Formula:

    ```python
    h = h * (1 - label_smoothing) + label_smoothing / 2
    loss = softplus(G) - h * G   # = -h log sigmoid(G) - (1 - h) log(1 - sigmoid(G))
    ```

    Stable for any G; d loss / d G = sigmoid(G) - h. With soft labels the
    minimum is the entropy of h, not 0. This is the reference LPIPS training
    loss (`BCERankingLoss`) when G comes from `Dist2Logit`.

    Args:
        y_true: h, shape `(N,)` or `(N, 1)`.
        y_pred: `(N, 3)` = `[d0, d1, G]`.
        label_smoothing: eps in [0, 1) pulling h towards 1/2. Defaults to `0.0`.

    Returns:
        Per-triplet losses, shape `(N,)`.

    Example:

    >>> twoafc_bce(np.array([1.0]), np.array([[0.2, 0.1, 0.0]]))  # log 2 = 0.693

    Reference: Zhang et al., CVPR 2018, Sec. 3.3 (`lpips.BCERankingLoss`).
    """
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
    h, _, _, logit = split_twoafc(y_true, y_pred)
    if label_smoothing:
        h = h * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return ops.softplus(logit) - h * logit


def twoafc_focal(y_true, y_pred, gamma: float = 2.0):
    """Focal binary cross-entropy with soft labels: down-weights triplets already predicted well.

    Formula:

    ```python
    p = sigmoid(G)
    loss = -(h * (1 - p) ** gamma * log(p) + (1 - h) * p ** gamma * log(1 - p))
    ```

    Computed in log space (`log_sigmoid`), stable for any G. `gamma = 0` is
    `twoafc_bce`.

    Args:
        y_true: h, shape `(N,)` or `(N, 1)`.
        y_pred: `(N, 3)` = `[d0, d1, G]`.
        gamma: focusing exponent, >= 0. Defaults to `2.0`.

    Returns:
        Per-triplet losses, shape `(N,)`.

    Example:

    >>> twoafc_focal(np.array([1.0]), np.array([[0.2, 0.1, 0.0]]), gamma=2.0)  # 0.25 log 2

    Reference: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    gamma = check_range("gamma", gamma, 0.0)
    h, _, _, logit = split_twoafc(y_true, y_pred)
    log_p = ops.log_sigmoid(logit)
    log_not_p = ops.log_sigmoid(-logit)
    return -(h * ops.exp(gamma * log_not_p) * log_p + (1.0 - h) * ops.exp(gamma * log_p) * log_not_p)


def twoafc_hinge(y_true, y_pred, margin: float = 1.0):
    """Hinge loss on the logit G, expected over the judges (soft labels).

    Formula:

    ```python
    loss = h * relu(margin - G) + (1 - h) * relu(margin + G)
    ```

    A judge preferring p1 (fraction h) asks for G >= margin; one preferring p0
    asks for G <= -margin. For 0 < h < 1 the minimum lies in
    [-margin, margin], at +margin if h > 1/2.

    Args:
        y_true: h, shape `(N,)` or `(N, 1)`.
        y_pred: `(N, 3)` = `[d0, d1, G]`.
        margin: required logit margin, >= 0. Defaults to `1.0`.

    Returns:
        Per-triplet losses, shape `(N,)`.

    Example:

    >>> twoafc_hinge(np.array([0.75]), np.array([[0.2, 0.1, 0.5]]))  # 0.75*0.5 + 0.25*1.5 = 0.75

    Reference: Cortes & Vapnik, "Support-Vector Networks", Machine Learning 1995.
    """
    margin = check_range("margin", margin, 0.0)
    h, _, _, logit = split_twoafc(y_true, y_pred)
    return h * ops.relu(margin - logit) + (1.0 - h) * ops.relu(margin + logit)


def twoafc_margin_ranking(y_true, y_pred, margin: float = 0.1):
    """Margin ranking loss on the raw distances (ignores the logit column).

    Formula:

    ```python
    loss = h * relu(margin - (d0 - d1)) + (1 - h) * relu(margin - (d1 - d0))
    ```

    The soft-label form of PyTorch's `MarginRankingLoss(d0, d1, y)`: judges
    preferring p1 ask for d1 <= d0 - margin. `margin` is in distance units, so
    its scale matters: with `margin = 0` collapsing all distances to 0 is a
    minimum.

    Args:
        y_true: h, shape `(N,)` or `(N, 1)`.
        y_pred: `(N, 3)` = `[d0, d1, G]`; only d0, d1 are used.
        margin: required distance gap, >= 0. Defaults to `0.1`.

    Returns:
        Per-triplet losses, shape `(N,)`.

    Example:

    >>> twoafc_margin_ranking(np.array([1.0]), np.array([[0.3, 0.25, 0.0]]))  # 0.1 - 0.05 = 0.05

    Reference: Burges et al., "Learning to Rank using Gradient Descent", ICML 2005;
    `torch.nn.MarginRankingLoss`.
    """
    margin = check_range("margin", margin, 0.0)
    h, d0, d1, _ = split_twoafc(y_true, y_pred)
    return h * ops.relu(margin - (d0 - d1)) + (1.0 - h) * ops.relu(margin - (d1 - d0))


def twoafc_similarity_mse(y_true, y_pred, eps: float = 1e-6):
    """Squared error between the judges' fraction h and a distance-share "similarity".

    Formula:

    ```python
    s = (d0 + eps) / (d0 + d1 + 2 * eps)   # in (0, 1); 1/2 at a tie, -> 1 as d1 -> 0
    loss = (s - h) ** 2
    ```

    `s` is the share of the total distance taken by p0: the model's
    probability that p1 is the closer one, read from the distances alone
    (no comparison head). Invariant to rescaling both distances.

    Args:
        y_true: h, shape `(N,)` or `(N, 1)`.
        y_pred: `(N, 3)` = `[d0, d1, G]`; only d0, d1 are used.
        eps: keeps `s` finite (= 1/2) when d0 = d1 = 0; must be > 0.
            Defaults to `1e-6`.

    Returns:
        Per-triplet losses, shape `(N,)`.

    Example:

    >>> twoafc_similarity_mse(np.array([1.0]), np.array([[0.3, 0.1, 0.0]]))  # (0.75 - 1)^2 = 0.0625

    Reference: the distance-share probability is the Bradley-Terry model on
    log-distances (Bradley & Terry, Biometrika 1952).
    """
    eps = check_range("eps", eps, 0.0, low_open=True)
    h, d0, d1, _ = split_twoafc(y_true, y_pred)
    share = (d0 + eps) / (d0 + d1 + 2.0 * eps)
    return ops.square(share - h)


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCBCE(FunctionLoss):
    """Loss class for `twoafc_bce`: BCE of sigmoid(G) against h, from logits.

    Args:
        label_smoothing: eps in [0, 1); h <- h (1 - eps) + eps / 2.
            Defaults to `0.0`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"twoafc_bce"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=TwoAFCBCE(label_smoothing=0.1))  # doctest: +SKIP
    """

    fn = staticmethod(twoafc_bce)
    options = ("label_smoothing",)

    def __init__(self, label_smoothing: float = 0.0, reduction="sum_over_batch_size", name="twoafc_bce", dtype=None):
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCFocal(FunctionLoss):
    """Loss class for `twoafc_focal`: focal BCE with soft labels.

    Args:
        gamma: focusing exponent, >= 0. Defaults to `2.0`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"twoafc_focal"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=TwoAFCFocal(gamma=1.0))  # doctest: +SKIP
    """

    fn = staticmethod(twoafc_focal)
    options = ("gamma",)

    def __init__(self, gamma: float = 2.0, reduction="sum_over_batch_size", name="twoafc_focal", dtype=None):
        self.gamma = check_range("gamma", gamma, 0.0)
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCHinge(FunctionLoss):
    """Loss class for `twoafc_hinge`: soft-label hinge on the logit G.

    Args:
        margin: required logit margin, >= 0. Defaults to `1.0`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"twoafc_hinge"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=TwoAFCHinge(margin=1.0))  # doctest: +SKIP
    """

    fn = staticmethod(twoafc_hinge)
    options = ("margin",)

    def __init__(self, margin: float = 1.0, reduction="sum_over_batch_size", name="twoafc_hinge", dtype=None):
        self.margin = check_range("margin", margin, 0.0)
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCMarginRanking(FunctionLoss):
    """Loss class for `twoafc_margin_ranking`: soft-label margin ranking on d0, d1.

    Args:
        margin: required distance gap, >= 0. Defaults to `0.1`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"twoafc_margin_ranking"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=TwoAFCMarginRanking(margin=0.05))  # doctest: +SKIP
    """

    fn = staticmethod(twoafc_margin_ranking)
    options = ("margin",)

    def __init__(self, margin: float = 0.1, reduction="sum_over_batch_size", name="twoafc_margin_ranking",
                 dtype=None):
        self.margin = check_range("margin", margin, 0.0)
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCSimilarityMSE(FunctionLoss):
    """Loss class for `twoafc_similarity_mse`: (d0 share of d0 + d1 - h)^2.

    Args:
        eps: > 0, keeps the share finite at d0 = d1 = 0. Defaults to `1e-6`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"twoafc_similarity_mse"`.
        dtype: computation dtype. Defaults to `None` (floatx).

    Example:

    >>> model.compile(optimizer="adam", loss=TwoAFCSimilarityMSE())  # doctest: +SKIP
    """

    fn = staticmethod(twoafc_similarity_mse)
    options = ("eps",)

    def __init__(self, eps: float = 1e-6, reduction="sum_over_batch_size", name="twoafc_similarity_mse",
                 dtype=None):
        self.eps = check_range("eps", eps, 0.0, low_open=True)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
