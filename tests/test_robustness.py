"""The shift test and the PGD 2AFC score (`keras_percept.robustness`), and `keras-percept evaluate`'s robustness options."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_percept.adversarial import PGD
from keras_percept.metrics.classical import l2_distance
from keras_percept.metrics.twoafc import two_afc_score
from keras_percept.robustness import l2_distance_ops, pgd_2afc, shift_right, shift_test


def _dataset(ref, p0, p1, h, batch=3):
    return tf.data.Dataset.from_tensor_slices(((ref, p0, p1), h)).batch(batch)


def _l2(a, b):
    return l2_distance(a, b)


def test_shift_right_crops_one_side_and_reflects_the_other():
    row = np.arange(6.0).reshape(1, 1, 6, 1)
    np.testing.assert_array_equal(shift_right(row, 1)[0, 0, :, 0], [1, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(shift_right(row, 2)[0, 0, :, 0], [2, 1, 0, 1, 2, 3])
    assert shift_right(row, 0) is row
    with pytest.raises(ValueError, match=r"Argument `pixels` must be in \[0, width=6\). Received: pixels=6"):
        shift_right(row, 6)


def test_flips_by_construction():
    """p0 is the reference shifted by 1 px, p1 a faint noisy copy: unshifted, L2 prefers p1; with the
    reference shifted by 1 px it equals p0 exactly, so every judgment flips. A constant image flips none."""
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, (6, 16, 16, 3)).astype("float32")
    p0 = shift_right(ref, 1)
    p1 = np.clip(ref + rng.normal(0, 0.01, ref.shape), -1, 1).astype("float32")
    h = np.full(6, 0.8, "float32")
    row = shift_test({"l2": _l2}, _dataset(ref, p0, p1, h), shifts=(1,))["l2"]
    assert row["flip_1px"] == 1.0
    assert row["2afc"] == pytest.approx(0.8) and row["2afc_1px"] == pytest.approx(0.2)
    flat = np.full_like(ref, 0.3)
    row = shift_test({"l2": _l2}, _dataset(flat, flat - 0.1, flat + 0.2, h), shifts=(1, 2))["l2"]
    assert row["flip_1px"] == row["flip_2px"] == 0.0


def test_pgd_turns_l2_against_the_judges_and_leaves_ties_alone():
    rng = np.random.default_rng(1)
    ref = rng.uniform(-0.5, 0.5, (6, 16, 16, 3)).astype("float32")
    p0 = (ref + 0.05).astype("float32")
    p1 = (ref - 0.08).astype("float32")
    h = np.array([0.0, 0.2, 0.4, 0.5, 0.5, 0.1], "float32")  # humans prefer p0 (closer) except the ties
    data = _dataset(ref, p0, p1, h)
    clean = pgd_2afc(l2_distance_ops, data, PGD(1e-6, steps=1))
    assert clean["2afc"] == pytest.approx(two_afc_score(
        np.mean((p0 - ref) ** 2, axis=(1, 2, 3)), np.mean((p1 - ref) ** 2, axis=(1, 2, 3)), h))
    assert clean["2afc_pgd"] == pytest.approx(clean["2afc"])        # a negligible ball changes nothing
    assert clean["attacked"] == pytest.approx(4 / 6)
    strong = pgd_2afc(l2_distance_ops, data, PGD(0.1, steps=5, target="p0"))
    assert strong["2afc_pgd"] < clean["2afc"]
    # the ties (h = 0.5) score 0.5 whatever the order: the attack does not move them
    per = two_afc_score(np.ones(2), np.ones(2) * 2, np.array([0.5, 0.5]), reduction="none")
    np.testing.assert_allclose(per, [0.5, 0.5])


def test_pgd_on_a_package_metric_every_backend():
    from keras_percept import LPIPS
    from keras_percept.robustness import metric_distance

    keras.utils.set_random_seed(0)
    metric = LPIPS(net="alex")
    rng = np.random.default_rng(2)
    ref = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    p0 = np.clip(ref + rng.normal(0, 0.1, ref.shape), -1, 1).astype("float32")
    p1 = np.clip(ref + rng.normal(0, 0.12, ref.shape), -1, 1).astype("float32")
    out = pgd_2afc(metric_distance(metric), _dataset(ref, p0, p1, np.full(4, 0.1, "float32"), 4),
                   PGD(0.1, steps=3), variables=metric.variables)
    assert out["2afc"] == pytest.approx(0.9) and out["2afc_pgd"] < out["2afc"]


@pytest.mark.one_pass  # argument and MLflow plumbing; the figures are tested on every backend above
def test_evaluate_command_prints_and_logs_robustness(tmp_path, capsys, monkeypatch):
    import mlflow

    from keras_percept import LPIPS
    from keras_percept.cli import main
    from keras_percept.convert import save_model_atomic
    from keras_percept.data import embedded

    root = embedded.build(str(tmp_path / "set"), seed=5, n_train=40, n_val=42, n_jnd=20, progress=False)
    path = str(tmp_path / "alex.keras")
    save_model_atomic(LPIPS(net="alex"), path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    args = ["evaluate", "--model", path, "--dataset", root, "--shift", "1,3", "--pgd-epsilon", "0.03",
            "--pgd-steps", "2", "--track"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "shift test (reference shifted right" in out and "flip_3px" in out
    assert "under PGD linf eps=0.03 (3.8/255 of [0,1]), 2 steps of 0.0375 on ref" in out
    run = mlflow.MlflowClient(uri).search_runs(mlflow.get_experiment_by_name("Default").experiment_id)[0]
    for key in ("robust_lpips_flip_1px", "robust_ssim_flip_3px", "robust_lpips_2afc_pgd", "robust_l2_2afc_pgd"):
        assert 0.0 <= run.data.metrics[key] <= 1.0, key
    assert run.data.params["pgd_epsilon"] == "0.03"
    assert main(args[:5] + ["--shift", "1,x"]) == 2
    assert "--shift must be pixel counts such as 1,2,3 or 'none'. Received: '1,x'" in capsys.readouterr().err
