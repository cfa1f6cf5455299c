"""2AFC score and JND mAP against hand-computed values and a plain-loop re-implementation."""

from __future__ import annotations

import numpy as np
import pytest

from keras_percept.metrics.twoafc import jnd_map, two_afc_score, voc_ap

pytestmark = pytest.mark.one_pass  # NumPy metrics


def test_two_afc_hand_computed():
    d0 = [0.1, 0.5, 0.3, 0.9]
    d1 = [0.2, 0.4, 0.3, 0.1]
    h = [0.0, 0.8, 1.0, 0.6]
    # 1) d0 < d1 -> 1 - h = 1;  2) d1 < d0 -> h = 0.8;  3) tie -> 0.5;  4) d1 < d0 -> h = 0.6
    np.testing.assert_allclose(two_afc_score(d0, d1, h, reduction="none"), [1.0, 0.8, 0.5, 0.6])
    assert two_afc_score(d0, d1, h) == pytest.approx(2.9 / 4)


def test_two_afc_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    d0, d1 = rng.integers(0, 4, 500) / 4, rng.integers(0, 4, 500) / 4  # many ties
    h = rng.integers(0, 6, 500) / 5
    expected = []
    for a, b, j in zip(d0, d1, h):
        expected.append(1 - j if a < b else j if b < a else 0.5)
    assert two_afc_score(d0, d1, h) == pytest.approx(np.mean(expected))


def test_two_afc_bounds():
    h = np.array([0.2, 0.6, 1.0])
    oracle = two_afc_score(h, 1 - h, h)  # always sides with the majority
    assert oracle == pytest.approx(np.mean(np.maximum(h, 1 - h)))
    assert two_afc_score([1, 1, 1], [1, 1, 1], h) == 0.5


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.1], [0.2], [1.2]), "judge"),
        (([0.1, 0.2], [0.2], [0.5]), "same number"),
        (([], [], []), "empty"),
    ],
)
def test_two_afc_invalid(args, match):
    with pytest.raises(ValueError, match=match):
        two_afc_score(*args)


def test_two_afc_invalid_reduction():
    with pytest.raises(ValueError, match="reduction"):
        two_afc_score([0.1], [0.2], [0.5], reduction="sum")


def _reference_voc_ap(rec, prec):
    """The reference's voc_ap (use_07_metric=False), written out with loops."""
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def test_jnd_map_hand_computed():
    # Sorted by distance, same = [1, 0, 1, 0]: precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1.
    # Envelope: 1 on (0, 1/2], 2/3 on (1/2, 1] -> AP = 1/2 + 1/3.
    assert jnd_map([0.3, 0.1, 0.4, 0.2], [1.0, 1.0, 0.0, 0.0]) == pytest.approx(0.5 + 1 / 3)  # same, shuffled
    assert jnd_map([0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 1.0, 0.0]) == pytest.approx(0.5 + 1 / 3)


def test_jnd_map_perfect_and_soft_labels():
    assert jnd_map([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    d = rng.uniform(size=300)
    same = rng.integers(0, 4, 300) / 3
    order = np.argsort(d, kind="stable")
    tp, fp = np.cumsum(same[order]), np.cumsum(1 - same[order])
    expected = _reference_voc_ap(tp / same.sum(), tp / (tp + fp))
    assert jnd_map(d, same) == pytest.approx(expected)
    assert jnd_map(d.reshape(30, 10), same.reshape(30, 10)) == pytest.approx(expected)  # any shape flattens


def test_voc_ap_envelope():
    assert voc_ap(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == pytest.approx(1.0)


def test_jnd_map_invalid():
    with pytest.raises(ValueError, match="all zero"):
        jnd_map([0.1, 0.2], [0.0, 0.0])
    with pytest.raises(ValueError, match="same"):
        jnd_map([0.1, 0.2], [0.5, 2.0])
