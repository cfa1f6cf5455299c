"""JND mAP is reported per category (traditional, cnn) and as their mean, as the reference does."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "data"))

from bapps_fixture import make_bapps  # noqa: E402

from keras_percept.data import load_jnd, load_jnd_by_category  # noqa: E402
from keras_percept.training.evaluation import evaluate_jnd, jnd_metrics  # noqa: E402

pytestmark = pytest.mark.one_pass


def voc_map_loop(d: np.ndarray, same: np.ndarray) -> float:
    """VOC average precision written as loops (the reference's `voc_ap` on cumulative soft counts)."""
    order = sorted(range(len(d)), key=lambda i: (d[i], i))
    tp = fp = 0.0
    recall, precision = [], []
    for i in order:
        tp += same[i]
        fp += 1.0 - same[i]
        recall.append(tp / same.sum())
        precision.append(tp / (tp + fp) if tp + fp > 0 else 0.0)
    area, prev = 0.0, 0.0
    for k, r in enumerate(recall):
        area += (r - prev) * max(precision[k:])
        prev = r
    return area


def l2(a, b):
    return np.mean((np.asarray(a) - np.asarray(b)) ** 2, axis=(1, 2, 3))


@pytest.fixture(scope="module")
def jnd_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("jnd") / "dataset")
    make_bapps(root, seed=4)
    return root


def test_per_category_maps_equal_numpy_and_differ_from_pooled(jnd_root):
    by_category = load_jnd_by_category(jnd_root, batch_size=2, value_range="[0,1]")
    assert list(by_category) == ["cnn", "traditional"]
    table = evaluate_jnd({"l2": l2}, by_category)["l2"]
    expected = {}
    for category, ds in by_category.items():
        pairs = list(ds.unbatch().as_numpy_iterator())
        d = np.array([l2(p0[None], p1[None])[0] for (p0, p1), _ in pairs])
        same = np.array([s for _, s in pairs], dtype=np.float64)
        expected[category] = voc_map_loop(d, same)
        assert table[category] == pytest.approx(expected[category], abs=1e-12)
    assert table["mean"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
    # The negative control: the old pooled value (one ranking over both categories) is another number.
    pooled = list(load_jnd(jnd_root, batch_size=5, value_range="[0,1]").unbatch().as_numpy_iterator())
    d = np.array([l2(p0[None], p1[None])[0] for (p0, p1), _ in pooled])
    pooled_map = voc_map_loop(d, np.array([s for _, s in pooled], dtype=np.float64))
    assert abs(pooled_map - table["mean"]) > 0.01
    assert all(abs(pooled_map - table[c]) > 0.01 for c in expected)
    print(f"JND mAP: pooled {100 * pooled_map:.2f}, per category "
          + ", ".join(f"{c} {100 * v:.2f}" for c, v in table.items()))


def test_mlflow_names():
    assert jnd_metrics({"lpips": {"traditional": 0.5, "cnn": 0.6, "mean": 0.55}, "ssim": {"cnn": 0.6, "mean": 0.6}}) == {
        "jnd_map_traditional": 0.5, "jnd_map_cnn": 0.6, "jnd_map_mean": 0.55, "jnd_map_ssim_cnn": 0.6,
        "jnd_map_ssim_mean": 0.6}
