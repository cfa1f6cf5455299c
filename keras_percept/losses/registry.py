"""Losses by name, as training configs refer to them (`loss: bce`)."""

from __future__ import annotations

import keras

from keras_percept.losses.iqa import FidelityLoss, L1Loss, L2Loss, PairwiseRankLoss, PLCCLoss, SRCCLoss
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
    "l1": L1Loss,  # Keras's MeanAbsoluteError under its earlier registered name
    "l2": L2Loss,  # Keras's MeanSquaredError
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
