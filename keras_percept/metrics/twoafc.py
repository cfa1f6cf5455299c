"""2AFC agreement score and JND mean average precision, in NumPy (the BAPPS evaluation).

Both follow the reference evaluation (richzhang/PerceptualSimilarity,
`lpips/trainer.py`), with the JND path repaired: distances are flattened and
sorted stably, so tied distances keep their input order.
"""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("mean", "none")


def two_afc_score(d0, d1, judge, *, reduction: str = "mean") -> float | np.ndarray:
    """Agreement of a distance with human (or simulated) 2AFC judgments.

    Formula:

        score_i = [d0_i < d1_i] * (1 - h_i) + [d1_i < d0_i] * h_i + 0.5 * [d0_i == d1_i]

    where `h_i` (`judge`) is the fraction of judges who found `p1` closer to
    the reference. A metric that always agrees with the majority scores the
    majority fraction, so 1.0 is reachable only on unanimous labels.

    Args:
        d0: distances between reference and `p0`, shape `(N,)` (any shape that flattens to N).
        d1: distances between reference and `p1`, same size.
        judge: labels `h` in [0, 1], same size.
        reduction: `"mean"` for the mean score (a float), `"none"` for the
            per-triplet scores. Defaults to `"mean"`.

    Example:

    >>> two_afc_score([0.1, 0.5, 0.3], [0.2, 0.4, 0.3], [0.0, 0.8, 1.0], reduction="none")
    array([1. , 0.8, 0.5])
    >>> round(two_afc_score([0.1, 0.5, 0.3], [0.2, 0.4, 0.3], [0.0, 0.8, 1.0]), 4)
    0.7667

    Reference: Zhang et al., "The Unreasonable Effectiveness of Deep Features
    as a Perceptual Metric", CVPR 2018, section 3.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"Argument `reduction` must be one of {REDUCTIONS}. Received: reduction={reduction!r}")
    d0, d1, h = _flat_same_size(d0=d0, d1=d1, judge=judge)
    if np.any((h < 0) | (h > 1)) or not np.all(np.isfinite(h)):
        raise ValueError(f"Argument `judge` must lie in [0, 1]. Received values in [{h.min()}, {h.max()}].")
    scores = (d0 < d1) * (1.0 - h) + (d1 < d0) * h + (d0 == d1) * 0.5
    return float(scores.mean()) if reduction == "mean" else scores


def jnd_map(distances, same) -> float:
    """Mean average precision of detecting "same" pairs by small distance (BAPPS JND score).

    Pairs are sorted by ascending distance (stable); with soft labels
    `same` in [0, 1], TP = cumsum(same), FP = cumsum(1 - same),
    recall = TP / sum(same), precision = TP / (TP + FP); the area under the
    monotone (non-increasing) envelope of precision over recall is the VOC
    average precision (not the 11-point 2007 variant).

    Args:
        distances: distance of each pair, shape `(N,)`.
        same: fraction of judges who saw no difference, shape `(N,)`.

    Example:

    >>> round(jnd_map([0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 1.0, 0.0]), 4)
    0.8333
    """
    d, s = _flat_same_size(distances=distances, same=same)
    if np.any((s < 0) | (s > 1)) or not np.all(np.isfinite(s)):
        raise ValueError(f"Argument `same` must lie in [0, 1]. Received values in [{s.min()}, {s.max()}].")
    if s.sum() <= 0:
        raise ValueError("Argument `same` is all zero: with no 'same' pairs, precision/recall are undefined.")
    order = np.argsort(d, kind="stable")
    tp = np.cumsum(s[order])
    fp = np.cumsum(1.0 - s[order])
    recall = tp / s.sum()
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).tiny)
    return voc_ap(recall, precision)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone envelope of a precision/recall curve (PASCAL VOC 2010+).

    Example:

    >>> voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5]))
    0.75
    """
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _flat_same_size(**arrays) -> list[np.ndarray]:
    flat = {name: np.asarray(a, dtype=np.float64).reshape(-1) for name, a in arrays.items()}
    sizes = {name: a.size for name, a in flat.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"Arguments {list(sizes)} must have the same number of elements. Received sizes {sizes}.")
    if next(iter(sizes.values())) == 0:
        raise ValueError(f"Arguments {list(sizes)} are empty.")
    return list(flat.values())
