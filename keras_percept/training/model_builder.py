"""Builds the 2AFC training model for a paradigm from a `TrainConfig`."""

from __future__ import annotations

from keras_percept.models.lpips import LPIPS
from keras_percept.models.twoafc import TwoAFCModel


def load_pretrained_trunk(metric: LPIPS) -> None:
    """Loads ImageNet weights into `metric.backbone` (offline for effnet-lite0; downloads for the others)."""
    from keras_percept.convert import (
        assign_layer_weights,
        load_efficientnet_lite0_weights,
        load_pth,
        torchvision_trunk_path,
        trunk_layer_weights,
    )

    if metric.net == "effnet-lite0":
        load_efficientnet_lite0_weights(metric.backbone)
    else:
        path = torchvision_trunk_path(metric.net)
        assign_layer_weights(metric.backbone, trunk_layer_weights(load_pth(path), metric.net, source=path))


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
    metric = LPIPS(
        net=m.net,
        version=m.version,
        lpips=True,
        dropout=m.dropout,
        trunk_trainable=config.paradigm != "lin",
        name="metric",
    )
    if m.trunk_weights == "imagenet":
        load_pretrained_trunk(metric)
    return TwoAFCModel(metric, build_comparison(m), name="twoafc")
