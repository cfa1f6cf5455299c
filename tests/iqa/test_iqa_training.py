"""IQA training, the compare-losses experiment through the CLI, and `tuning/search.py --task iqa`, on the embedded set.

The MLflow store (SQLite) and the Optuna store are read back with their own clients.
"""

from __future__ import annotations

import math
import os
import sys

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.one_pass  # train_iqa/compare/search wiring; the IQA models run on every backend

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMPARE = os.path.join(REPO, "configs", "iqa", "compare.yaml")
TINY = ["data.n_train=64", "data.n_test=32", "data.batch_size=16", "optim.epochs=2", "strategy=none"]


def test_train_iqa_logs_validation_correlations_each_epoch_and_scores_the_test_split(tmp_path):
    import scipy.stats

    from keras_percept.data.mos import embedded_mos
    from keras_percept.iqa import load_iqa_config, train_iqa

    config = load_iqa_config(COMPARE, overrides=TINY + ["model.trunk_weights=null", "loss_type=srcc",
                                                       f"output_dir={tmp_path}"])
    result = train_iqa(config, verbose=0)
    for key in ("val_srcc", "val_plcc", "val_plcc_raw", "val_krcc", "val_rmse"):
        assert len(result.history[key]) == 2 and all(math.isfinite(v) for v in result.history[key])
    # The reported SRCC is SciPy's on the saved model's per-image predictions.
    model = keras.saving.load_model(result.model_path)
    from keras_percept.data.mos import mos_patch_dataset

    test = embedded_mos(split="val", n_images=32, seed=0)
    ds = mos_patch_dataset(test, patch_size=64, training=False, batch_size=16)
    predictions = np.concatenate([keras.ops.convert_to_numpy(model(x)).reshape(-1) for x, _ in ds.as_numpy_iterator()])
    expected = scipy.stats.spearmanr(predictions, test.mos).statistic
    assert result.scores["srcc"] == pytest.approx(expected, abs=1e-4)
    assert os.path.isfile(os.path.join(os.path.dirname(result.model_path), "config.yaml"))


ORCHESTRATION_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent orchestration (CLI, MLflow, Optuna); runs once, in the TensorFlow pass of the suite; "
           "per-backend training is covered by the tiny train_iqa tests",
)


@pytest.mark.slow
def test_selection_never_sees_the_test_split(tmp_path, monkeypatch):
    """Adversarial test labels (the opposite ranking) change nothing but the test scores' sign.

    If early stopping, the `val_*` history or `val_scores` read the test split,
    they would flip with its labels.
    """
    import dataclasses

    from keras_percept.iqa import load_iqa_config, trainer

    config = load_iqa_config(COMPARE, overrides=TINY + ["model.trunk_weights=null", "optim.epochs=3",
                                                       "early_stopping_patience=1", f"output_dir={tmp_path}"])
    real = trainer.load_tables
    results = []
    for flip in (False, True):
        def tables(cfg, flip=flip):
            train, val, test = real(cfg)
            return train, val, dataclasses.replace(test, mos=-test.mos) if flip else test

        monkeypatch.setattr(trainer, "load_tables", tables)
        results.append(trainer.train_iqa(config, verbose=0))
        keras.backend.clear_session()
    plain, adversarial = results
    assert sorted(plain.history) == sorted(adversarial.history)
    for key, values in plain.history.items():
        np.testing.assert_allclose(adversarial.history[key], values, atol=1e-5, err_msg=key)
    for key, value in plain.val_scores.items():
        assert adversarial.val_scores[key] == pytest.approx(value, abs=1e-5)
    assert abs(plain.scores["srcc"]) > 0.01  # so that the sign flip below shows
    assert adversarial.scores["srcc"] == pytest.approx(-plain.scores["srcc"], abs=1e-5)


def test_the_validation_split_holds_out_whole_photographs():
    from keras_percept.iqa import load_iqa_config
    from keras_percept.iqa.trainer import embedded_photos, load_tables

    config = load_iqa_config(COMPARE, overrides=["data.n_train=200", "data.n_test=40"])
    train, val, test = load_tables(config)
    assert len(train) + len(val) == 200 and len(test) == 40
    train_photos, val_photos = set(embedded_photos(train)), set(embedded_photos(val))
    assert len(val_photos) == 1 and len(train_photos) == 6  # round(0.2 * 7) of the 7 training photographs
    assert not train_photos & val_photos
    assert not set(val.paths) & set(test.paths) and not set(val.ref_paths) & set(test.ref_paths)
    assert load_tables(load_iqa_config(COMPARE, overrides=["data.n_train=200", "data.n_test=40",
                                                           "data.val_fraction=0", "early_stopping_patience=null"]))[1] is None


@pytest.mark.slow
@ORCHESTRATION_ONLY
def test_compare_losses_quick_lands_in_mlflow(tmp_path, monkeypatch, capsys):
    import mlflow

    from keras_percept.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    argv = ["iqa", "compare-losses", "--config", COMPARE, "--quick", "--seeds", "2", "--losses", "l1,srcc",
            "--set", "data.n_train=64 data.n_test=32 data.batch_size=16 optim.epochs=2 strategy=none "
                     "experiment=iqa-test", "--set", f"output_dir={tmp_path / 'runs'}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| loss | test SRCC | test PLCC | Δ test SRCC vs L1 | val SRCC (selection) |" in out and "[4/4]" in out

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("iqa-test")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("iqa.role") == "compare"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted((r.data.tags["iqa.loss"], r.data.tags["iqa.seed"]) for r in children) == sorted(
        (loss, seed) for loss in ("l1", "srcc") for seed in ("0", "1"))
    for child in children:
        assert child.info.status == "FINISHED"
        assert math.isfinite(child.data.metrics["test_srcc"]) and "test_plcc" in child.data.metrics
        assert math.isfinite(child.data.metrics["selected_val_srcc"])
        assert len(client.get_metric_history(child.info.run_id, "selection_srcc")) == 2  # per epoch
    assert parent.info.status == "FINISHED"
    for loss in ("l1", "srcc"):
        assert math.isfinite(parent.data.metrics[f"srcc_mean_{loss}"])
        assert math.isfinite(parent.data.metrics[f"val_srcc_mean_{loss}"])
    assert parent.data.metrics["delta_srcc_vs_l1_l1"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert artifacts == {"comparison/table.md", "comparison/table.csv", "comparison/srcc_plcc.png"}
    table = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/comparison/table.md")
    assert all(f"\n| {loss} | " in table for loss in ("l1", "srcc"))
    assert "seed spread" in table and "untouched test split" in table


def test_a_failing_run_is_recorded_and_the_comparison_goes_on(tmp_path, monkeypatch):
    import mlflow

    from keras_percept.iqa import compare

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    def fake_train(config, **kwargs):
        from keras_percept.iqa.trainer import IQAResult

        if config.loss_type == "l2":
            return IQAResult(config, "", {"loss": [float("nan")]}, {"srcc": 0.1, "plcc": 0.1}, 0.1)
        return IQAResult(config, "", {"loss": [0.5]}, {"srcc": 0.5 + 0.01 * config.seed, "plcc": 0.4}, 0.1)

    monkeypatch.setattr("keras_percept.iqa.trainer.train_iqa", fake_train)
    result = compare.compare_losses(COMPARE, losses=["l1", "l2", "srcc"], seeds=2,
                                    overrides=["experiment=iqa-fail"])
    rows = {r["loss"]: r for r in result.rows()}
    assert rows["l2"]["status"] == "FAILED 2/2" and math.isnan(rows["l2"]["srcc_mean"])
    assert rows["srcc"]["status"] == "ok" and rows["srcc"]["within_spread"] is True  # Δ 0 <= std 0.007
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("iqa-fail").experiment_id])
    failed = [r for r in runs if r.data.tags.get("iqa.loss") == "l2"]
    assert len(failed) == 2 and all(r.info.status == "FAILED" for r in failed)


@pytest.mark.slow
@ORCHESTRATION_ONLY
def test_search_task_iqa_runs_two_tracked_trials(tmp_path, monkeypatch):
    import mlflow
    import optuna

    sys.path.insert(0, REPO)
    from tuning.search import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    code = main(["--task", "iqa", "--trials", "2", "--study-name", "iqa2", "--storage", storage,
                 "--experiment", "iqa-search-test", "--output-dir", str(tmp_path / "runs"), "--no-progress",
                 "--set", " ".join(TINY + ["model.trunk_weights=null"])])
    assert code == 0
    study = optuna.load_study(study_name="iqa2", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(-1 <= t.value <= 1 for t in study.trials)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("iqa-search-test").experiment_id])
    trials = [r for r in runs if r.data.tags.get("optuna.role") == "trial"]
    assert len(trials) == 2 and not any(k.startswith("test_") for r in trials for k in r.data.metrics)  # never read
    # The objective is the final validation SRCC (selection), not the test SRCC (reported).
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in trials}
    for t in study.trials:
        run = by_number[t.number]
        assert t.value == pytest.approx(client.get_metric_history(run.info.run_id, "selection_srcc")[-1].value, abs=1e-6)
        assert run.data.metrics["objective"] == pytest.approx(t.value)
    assert all(len(client.get_metric_history(r.info.run_id, "selection_srcc")) == 2 for r in trials)


@pytest.mark.slow
def test_iqa_train_command_runs_restarts_through_the_experiment_core(tmp_path, monkeypatch, capsys):
    """`keras-percept iqa train --set restarts=2`: one parent run, a nested run per seed, the best on selection SRCC."""
    import mlflow

    from keras_percept.cli import main

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["iqa", "train", "--config", COMPARE, "--set", " ".join(TINY + [
        "model.trunk_weights=null", "restarts=2", f"tracking_uri={uri}", f"output_dir={tmp_path / 'runs'}"])])
    out = capsys.readouterr().out
    assert code == 0, out
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("keras_percept-iqa").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    seeds = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(seeds) == ["seed 0", "seed 1"]
    selected = {name: r.data.metrics["selected_val_srcc"] for name, r in seeds.items()}
    best = max(selected, key=selected.get)
    assert parent.data.metrics["best_seed"] == float(best.split()[1])
    assert parent.data.metrics["test_srcc"] == pytest.approx(seeds[best].data.metrics["test_srcc"])
    assert parent.data.metrics["restarts_test_srcc"] == pytest.approx(
        np.mean([r.data.metrics["test_srcc"] for r in seeds.values()]))
    assert f"seed {best.split()[1]}" in out and "test: srcc" in out
