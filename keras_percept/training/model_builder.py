"""Builds the 2AFC training model for a paradigm from a `TrainConfig`."""

from __future__ import annotations

from keras_percept.models.dists import DISTS
from keras_percept.models.lpips import LPIPS
from keras_percept.models.twoafc import TwoAFCModel


def load_pretrained_trunk(metric: LPIPS, source: str = "imagenet") -> None:
    """Loads `source` weights into `metric.backbone`: "imagenet" or "published" (an ST-LPIPS trunk).

    ImageNet: offline for effnet-lite0 (the shipped package), downloaded for the others.
    """
    from keras_percept.convert import (
        assign_layer_weights,
        load_efficientnet_lite0_weights,
        load_pth,
        published_metric_path,
        split_lpips_state_dict,
        torchvision_trunk_path,
        trunk_layer_weights,
    )

    net = trunk_net(metric)
    if net == "effnet-lite0":
        load_efficientnet_lite0_weights(metric.backbone)
        return
    path = (published_metric_path if source == "published" else torchvision_trunk_path)(net)
    state = split_lpips_state_dict(load_pth(path))[0] if source == "published" else load_pth(path)
    assign_layer_weights(metric.backbone, trunk_layer_weights(state, net, source=path))


def trunk_net(metric) -> str:
    """The `TRUNKS` row of a metric's trunk (DISTS's published VGG16 has torchvision's vgg convolutions)."""
    trunk = getattr(metric, "trunk", metric.net)
    return "vgg" if trunk == "vgg16" else trunk


def build_comparison(model_config):
    """The comparison head named by `model.comparison`."""
    from keras_percept.models.comparison import DifferenceComparison, Dist2Logit, LogRatioComparison

    if model_config.comparison == "dist2logit":
        return Dist2Logit(hidden=model_config.comparison_hidden, name="comparison")
    if model_config.comparison == "difference":
        return DifferenceComparison(name="comparison")
    return LogRatioComparison(name="comparison")


def build_twoafc_model(config) -> TwoAFCModel:
    """`lin`: pretrained frozen trunk; `tune`: pretrained trainable trunk; `scratch`: random trainable trunk.

    Example:

    >>> model = build_twoafc_model(load_config(paradigm="lin"))  # doctest: +SKIP
    """
    m = config.model
    if m.metric == "dists":
        metric = DISTS(trunk="vgg16" if m.net == "vgg" else m.net, input_range="[-1,1]",
                       trunk_trainable=config.paradigm != "lin", name="metric")
    else:
        metric = LPIPS(net=m.net, version=m.version, lpips=True, dropout=m.dropout,
                       trunk_trainable=config.paradigm != "lin", name="metric")
    if m.trunk_weights is not None:
        load_pretrained_trunk(metric, m.trunk_weights)
    randomize_linear_weights(metric, config.seed)
    apply_regularization(metric, config)
    return TwoAFCModel(metric, build_comparison(m), adversarial=config.adversarial.pgd_arguments(), name="twoafc")


def randomize_linear_weights(metric: LPIPS, seed: int) -> None:
    """Seeded random start for the linear weights: U(0, 2 / C) per tap (mean 1 / C, the untrained default).

    The reference also starts its linear layers at random; a seeded random
    start is what makes `restarts` measure initialisation luck. DISTS: alpha
    and beta ~ N(0.1, 0.01), the reference's initialisation, seeded.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if isinstance(metric, DISTS):
        for weight in metric.head_weights:
            weight.assign(np.maximum(rng.normal(0.1, 0.01, size=weight.shape), 0.0).astype("float32"))
        return
    for lin, channels in zip(metric.lins, metric.tap_channels):
        lin.kernel.assign(rng.uniform(0.0, 2.0 / channels, size=(1, 1, channels, 1)).astype("float32"))


def apply_regularization(metric: LPIPS, config) -> None:
    """Non-negativity method, L1 and `lin_penalty` on the linear weights, and L2-SP on the trunk, as `config` says.

    The metric's linear kernels carry `NonNeg` (projection) by construction;
    `nonneg: penalty | barrier` swaps it for a soft penalty or a log-barrier
    (`strength` / `mu` = `nonneg_strength`, null for the regularizer's own
    default), so the constraint methods can be
    compared on the same run. `lin_l1` is Keras's `L1` and `lin_penalty` one of
    `regularizers.LIN_PENALTIES` at `lin_penalty_strength`, each per tap. `l2sp > 0` pulls every trainable trunk variable
    towards its starting (pretrained) value. All act through Keras: the
    optimizer applies `variable.constraint` after each step, `fit` adds
    `variable.regularizer` terms to the loss.
    """
    import keras

    from keras_percept.regularizers import add_l2sp, lin_penalty, nonneg_method

    if config.l2sp and metric.trunk_trainable and config.model.trunk_weights is not None:
        add_l2sp(metric.backbone, strength=config.l2sp)
    if isinstance(metric, DISTS):  # alpha/beta carry NonNeg; the lin options are refused by the config
        return
    options = {}
    if config.nonneg_strength is not None:
        options = {"strength" if config.nonneg == "penalty" else "mu": config.nonneg_strength}
    constraint, regularizer = nonneg_method(config.nonneg, **options)
    for lin in metric.lins:
        lin.kernel.constraint = constraint
        l1 = keras.regularizers.L1(config.lin_l1) if config.lin_l1 else None
        terms = [r for r in (regularizer, l1, lin_penalty(config.lin_penalty, config.lin_penalty_strength))
                 if r is not None]
        lin.kernel.regularizer = terms[0] if len(terms) == 1 else (_Sum(terms) if terms else None)


class _Sum:
    """Sum of several regularizers on one variable (Keras holds one per variable)."""

    def __init__(self, terms):
        self.terms = terms

    def __call__(self, x):
        total = self.terms[0](x)
        for term in self.terms[1:]:
            total = total + term(x)
        return total
