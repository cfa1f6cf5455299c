"""A third task (`toy_task.py`, one file, no change to the core) runs through restarts, MLflow and a 2-trial study."""

from __future__ import annotations

import math

import mlflow
import optuna
import pytest
import yaml
from toy_task import TEST_READS, TOY

from keras_percept.experiment.run import run_experiment
from keras_percept.experiment.task import Task, get_task, task_names

pytestmark = pytest.mark.one_pass  # the core is backend-independent plumbing; the task's fit is plain Keras


def test_the_package_tasks_and_the_toy_task_are_in_the_registry():
    assert {"2afc", "iqa", "toy"} <= set(task_names())
    assert get_task("2afc").selection_metric == "selection_2afc_all"
    assert get_task("iqa").monitor == "val_srcc"
    assert get_task("toy") is TOY and get_task(TOY) is TOY
    assert get_task("toy_task:toy") is TOY  # "module:name" imports the module (worker processes)
    with pytest.raises(ValueError, match=r"`task` must be one of \[.*'2afc'.*\]. Received: 'nope'"):
        get_task("nope")
    with pytest.raises(NotImplementedError):
        Task().train(None)


def test_restarts_and_mlflow_tracking_run_the_toy_task_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = TOY.load_config(overrides=[f"output_dir={tmp_path / 'runs'}", f"tracking_uri={uri}", "restarts=3",
                                        "optim.learning_rate=0.02"])
    TEST_READS.clear()
    summary = run_experiment(TOY, config, progress=False, verbose=0)

    assert [r for r in TEST_READS] == [0, 1, 2]  # each restart scored the test split once
    assert summary.best.selection_r2 == max(summary.scores) and len(set(summary.scores)) == 3
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    metrics = parent.data.metrics
    assert metrics["best_seed"] == summary.best.config.seed
    assert metrics["restarts_test_r2"] == pytest.approx(summary.spread[0])
    assert metrics["restarts_test_r2_std"] == pytest.approx(summary.spread[1])
    assert metrics["test_r2"] == pytest.approx(summary.best.test_r2)
    assert parent.data.params["config.optim.learning_rate"] == "0.02"
    seeds = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert sorted(r.info.run_name for r in seeds) == ["seed 0", "seed 1", "seed 2"]
    for run in seeds:  # per-epoch selection score (Keras's val_r2 as selection_r2) and the seed's two scores
        assert len(client.get_metric_history(run.info.run_id, "selection_r2")) == 3
        assert set(run.data.metrics) >= {"selected_r2", "test_r2", "loss", "learning_rate"}
    assert any(a.path == "model_file" for a in client.list_artifacts(summary.run_id))


def test_a_two_trial_study_runs_the_toy_task_through_tuning_search(tmp_path, monkeypatch, capsys):
    from tuning import search

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = tmp_path / "toy_space.yaml"
    space.write_text(yaml.safe_dump({"task": "toy", "params": {
        "optim.learning_rate": {"type": "float", "low": 0.005, "high": 0.1, "log": True}},
        "fixed": {"optim.epochs": 2}, "study": {"pruner": {"name": "none"}}}))  # monitor: the task's val_r2
    TEST_READS.clear()
    code = search.main(["--task", "toy", "--space", str(space), "--trials", "2", "--storage",
                        f"sqlite:///{tmp_path / 'study.db'}", "--set", f"tracking_uri={uri}", "--no-progress",
                        "--study-name", "toy-study"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert len(TEST_READS) == 1  # the trials never read the test split; the retrained best once

    study = optuna.load_study(study_name="toy-study", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(len(t.intermediate_values) == 2 for t in study.trials)  # the pruner was fed the task's monitor
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    trials = [r for r in runs if r.data.tags.get("optuna.role") == "trial"]
    assert len(trials) == 2 and all("test_r2" not in r.data.metrics for r in trials)
    assert all(len(client.get_metric_history(r.info.run_id, "selection_r2")) == 2 for r in trials)  # pruner's feed
    assert {r.data.metrics["objective"] for r in trials} == {t.value for t in study.trials}
    (parent,) = [r for r in runs if r.data.tags.get("optuna.role") == "study"]
    assert parent.data.metrics["best_value"] == study.best_value
    assert math.isfinite(parent.data.metrics["best_test_r2"])
    assert "best: trial" in out and "selection R2" in out
