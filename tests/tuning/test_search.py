"""`tuning/search.py` end to end, in this process: every trial in Optuna's store and in MLflow's, resume.

The stores are read back with their own APIs (`optuna.load_study`, `MlflowClient`).
"""

from __future__ import annotations

import optuna
import pytest
import yaml

pytestmark = pytest.mark.one_pass  # Optuna/MLflow orchestration

# Tiny data; 4 epochs; pruning from the third trial on, from epoch 0.
TEST_SPACE = {
    "paradigm": "lin",
    "params": {
        "optim.optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
        "optim.learning_rate": {"type": "float", "low": 1.0e-4, "high": 3.0, "log": True},
        "data.batch_size": {"type": "categorical", "choices": [20, 500]},
    },
    "fixed": {"optim.epochs": 4, "strategy": "none"},
    "study": {"pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
              "sampler": {"name": "tpe", "n_startup_trials": 3}},
}
# Known outcomes on the tiny set, enqueued ahead of the sampled trials (the pruner sees the selection split's
# 2AFC, 35 triplets carved from the training data, measured on TF). Trials 1 and 2 barely move the initial
# weights (0.743 at every epoch); trial 3 is 0.629 at epoch 0, four triplets below their median.
ENQUEUED = [
    {"optim.optimizer": "sgd", "optim.learning_rate": 3.0, "data.batch_size": 20},       # loss -> NaN: FAIL
    {"optim.optimizer": "sgd", "optim.learning_rate": 1e-4, "data.batch_size": 20},      # COMPLETE
    {"optim.optimizer": "sgd", "optim.learning_rate": 1e-3, "data.batch_size": 20},      # COMPLETE
    {"optim.optimizer": "adam", "optim.learning_rate": 0.3, "data.batch_size": 20},      # worse at epoch 0: PRUNED
    {"optim.optimizer": "adam", "optim.learning_rate": 0.01, "data.batch_size": 500},    # > 140 triplets: FAIL
    # The 4th COMPLETE or PRUNED trial (the FAILs do not count). Not left to TPE: on this study it samples
    # batch size 500 again and again (it does not learn from FAIL trials).
    {"optim.optimizer": "sgd", "optim.learning_rate": 3e-4, "data.batch_size": 20},      # COMPLETE
]


@pytest.fixture
def search_env(tmp_path, tiny_root, monkeypatch):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TEST_SPACE))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    common = ["--space", str(space), "--set", f"data.dataset={tiny_root}", "--experiment", "tuning-test",
              "--output-dir", str(tmp_path / "runs"), "--no-progress", "--seed", "3"]
    return tmp_path, uri, common


def _trial_runs(client, study_name):
    experiment = client.get_experiment_by_name("tuning-test")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`optuna.study_name` = '{study_name}'")
    parents = [r for r in runs if r.data.tags.get("optuna.role") == "study"]
    trials = {int(r.data.tags["optuna.trial_number"]): r for r in runs if r.data.tags.get("optuna.role") == "trial"}
    return parents, trials


@pytest.mark.slow
def test_study_end_to_end_every_trial_in_optuna_and_mlflow(search_env, capsys):
    import mlflow

    from tuning.search import main

    tmp_path, uri, common = search_env
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="e2e", storage=storage, direction="maximize")
    for params in ENQUEUED:
        study.enqueue_trial(params)

    assert main(["--trials", "4", "--study-name", "e2e", "--storage", storage, *common]) == 0
    out = capsys.readouterr().out
    assert "trial" in out and "2AFC" in out and "best: trial" in out  # the final table and the best trial

    study = optuna.load_study(study_name="e2e", storage=storage)
    trials = {t.number: t for t in study.trials}
    states = {n: t.state.name for n, t in trials.items()}
    assert states[0] == "FAIL" and states[4] == "FAIL"
    assert states[1] == "COMPLETE" and states[2] == "COMPLETE"
    assert states[3] == "PRUNED"
    # --trials counts COMPLETE + PRUNED; the FAIL trials were replaced by sampled ones.
    finished = sum(s in ("COMPLETE", "PRUNED") for s in states.values())
    assert finished == 4 and len(trials) == finished + sum(s == "FAIL" for s in states.values())

    client = mlflow.MlflowClient(uri)
    (parent,), runs = _trial_runs(client, "e2e")
    assert set(runs) == set(trials)
    status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
    for number, trial in trials.items():
        run = runs[number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.trial.state"] == trial.state.name
        assert run.info.status == status[trial.state.name]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        for key, value in trial.params.items():
            assert type(value)(run.data.params[key]) == value
        if trial.state.name == "COMPLETE":
            assert run.data.metrics["objective"] == pytest.approx(trial.value)
        if trial.state.name != "FAIL" or number == 0:
            history = client.get_metric_history(run.info.run_id, "selection_twoafc")
            assert [m.step for m in history] == sorted(trial.intermediate_values)[:len(history)]
    pruned = client.get_metric_history(runs[3].info.run_id, "selection_twoafc")
    assert len(pruned) < TEST_SPACE["fixed"]["optim.epochs"], "a pruned trial stops early"

    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    counts = {state: sum(s == state for s in states.values()) for state in ("PRUNED", "FAIL")}
    assert counts["PRUNED"] >= 1 and counts["FAIL"] >= 2
    assert parent.data.metrics["n_pruned"] == counts["PRUNED"] and parent.data.metrics["n_fail"] == counts["FAIL"]
    assert abs(parent.data.metrics["best_value_retrained"] - study.best_value) < 0.02
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert {f"plots/{name}.png" for name in ("optimization_history", "param_importances", "parallel_coordinate",
                                             "intermediate_values")} <= artifacts
    assert [f.path for f in client.list_artifacts(parent.info.run_id, "best_model")] == ["best_model/metric.keras"]
    versions = client.search_model_versions("name = 'keras_percept-e2e'")
    assert len(versions) == 1
    best_run = client.get_run(versions[0].run_id)
    assert best_run.data.tags["optuna.role"] == "best"
    assert best_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert best_run.data.tags["optuna.trial_number"] == str(study.best_trial.number)


@pytest.mark.slow
def test_stopped_study_resumes_to_the_total_with_the_same_name(search_env):
    import mlflow

    from tuning.search import main

    tmp_path, uri, common = search_env
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # Batch size 20 only (CI time: a FAIL costs a trial; that FAILs are replaced and not counted is test_budget's).
    space = tmp_path / "space_b20.yaml"
    space.write_text(yaml.safe_dump({**TEST_SPACE, "params": {
        **TEST_SPACE["params"], "data.batch_size": {"type": "categorical", "choices": [20]}}}))
    common = [space if a == common[common.index("--space") + 1] else a for a in common]
    args = ["--study-name", "resume", "--storage", storage, "--pruner", "none", "--worker", *map(str, common),
            "--set", "optim.epochs=1", "--max-failures", "30"]
    def finished(study):
        return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)

    assert main(["--trials", "2", *args]) == 0
    assert finished(optuna.load_study(study_name="resume", storage=storage)) == 2
    assert main(["--trials", "4", *args]) == 0
    n_trials = len(optuna.load_study(study_name="resume", storage=storage).trials)
    assert main(["--trials", "4", *args]) == 0  # the budget is reached: no further trial
    study = optuna.load_study(study_name="resume", storage=storage)
    assert finished(study) == 4 and [t.number for t in study.trials] == list(range(n_trials))
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials)
    parents, runs = _trial_runs(mlflow.MlflowClient(uri), "resume")
    assert len(parents) == 1 and sorted(runs) == list(range(n_trials))
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parents[0].info.run_id}
