"""Losses by name, as training configs refer to them (`loss: bce`)."""

from __future__ import annotations

import keras

from keras_percept.losses.iqa import FidelityLoss, PairwiseRankLoss, PLCCLoss, SRCCLoss
from keras_percept.losses.twoafc import (
    TwoAFCBCE,
    TwoAFCFocal,
    TwoAFCHinge,
    TwoAFCMarginRanking,
    TwoAFCSimilarityMSE,
)

#: name -> Loss class. 2AFC losses take y_pred (N, 3) = [d0, d1, logit]; IQA losses take MOS.
LOSSES: dict[str, type[keras.losses.Loss]] = {
    "bce": TwoAFCBCE,
    "focal": TwoAFCFocal,
    "hinge": TwoAFCHinge,
    "margin_ranking": TwoAFCMarginRanking,
    "similarity_mse": TwoAFCSimilarityMSE,
    "l1": keras.losses.MeanAbsoluteError,  # Keras's own: |y_pred - y_true| per sample, as IQA needs
    "l2": keras.losses.MeanSquaredError,
    "plcc": PLCCLoss,
    "srcc": SRCCLoss,
    "pairwise_rank": PairwiseRankLoss,
    "fidelity": FidelityLoss,
}


def get_loss(name: str, **kwargs) -> keras.losses.Loss:
    """A new loss instance by registry name; `kwargs` go to its constructor.

    Args:
        name: one of `LOSSES` (`"bce"`, `"focal"`, `"hinge"`, `"margin_ranking"`,
            `"similarity_mse"`, `"l1"`, `"l2"`, `"plcc"`, `"srcc"`,
            `"pairwise_rank"`, `"fidelity"`).
        **kwargs: constructor arguments of that loss (e.g. `label_smoothing`).

    Example:

    >>> get_loss("bce", label_smoothing=0.1).label_smoothing
    0.1
    """
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"Argument `name` must be one of {sorted(LOSSES)}. Received: name={name!r}")
    return LOSSES[name](**kwargs)
