"""2AFC, ranking and IQA losses: pure `keras.ops` functions plus serializable `keras.losses.Loss` classes.

2AFC losses take `y_true` = h `(N,)`/`(N, 1)` (fraction of judges preferring
p1) and `y_pred` = `(N, 3)` = `[d0, d1, logit]`; IQA losses take MOS and
predicted quality. `get_loss(name)` builds one by its config name; `l1` and `l2`
are Keras's own `MeanAbsoluteError` and `MeanSquaredError` (`L1Loss` / `L2Loss`:
the same absolute and squared error against MOS, per sample for `(N, 1)` predictions).
`PerceptualLoss` is LPIPS as a loss between images, for image-generation
models (not in the registry: its inputs are images, not 2AFC/IQA scores).
"""

from keras_percept.losses.iqa import (
    FidelityLoss,
    L1Loss,
    L2Loss,
    PairwiseRankLoss,
    PLCCLoss,
    SRCCLoss,
    fidelity_loss,
    pairwise_rank_loss,
    plcc_loss,
    soft_rank,
    srcc_loss,
)
from keras_percept.losses.perceptual import PerceptualLoss
from keras_percept.losses.registry import LOSSES, get_loss
from keras_percept.losses.twoafc import (
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

__all__ = [
    "LOSSES",
    "FidelityLoss",
    "L1Loss",
    "L2Loss",
    "PLCCLoss",
    "PairwiseRankLoss",
    "PerceptualLoss",
    "SRCCLoss",
    "TwoAFCBCE",
    "TwoAFCFocal",
    "TwoAFCHinge",
    "TwoAFCMarginRanking",
    "TwoAFCSimilarityMSE",
    "fidelity_loss",
    "get_loss",
    "pairwise_rank_loss",
    "plcc_loss",
    "soft_rank",
    "srcc_loss",
    "twoafc_bce",
    "twoafc_focal",
    "twoafc_hinge",
    "twoafc_margin_ranking",
    "twoafc_similarity_mse",
]
