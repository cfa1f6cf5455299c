"""The objective's failure handling, with a stand-in for `train`: NaN losses and raising trials end FAIL in both stores."""

from __future__ import annotations

import math
import os
import types

import optuna
import pytest

from keras_percept.experiment.task import check_finite_history
from keras_percept.training.task import TwoAFCTask
from tuning.objective import Objective
from tuning.space import SearchSpace

pytestmark = pytest.mark.one_pass  # Optuna/MLflow bookkeeping

SPACE = SearchSpace.from_dict({"params": {"optim.learning_rate": {"type": "float", "low": 1e-3, "high": 1.0,
                                                                   "log": True}}})


@pytest.fixture
def mlflow_parent(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # artifacts of a SQLite-tracked run go to ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("objective-test")
    return client, client.create_run(experiment_id, run_name="study").info


def fake_train(history, value=0.8, raises=None):
    def train(config, callbacks=(), progress=True, verbose=0, baselines=True, test=True):
        assert not test, "a trial never reads the test split"
        if raises:
            raise raises
        return types.SimpleNamespace(history=history, selection={"mean": value, "all": value}, selection_score=value,
                                     evaluation={}, seconds=0.1)

    return train


@pytest.mark.parametrize("train, error", [
    (fake_train({"loss": [0.7, math.nan]}), "FloatingPointError: `loss` became nan at epoch 1"),
    (fake_train({"loss": [0.7]}, raises=ValueError("bad config")), "ValueError: bad config"),
])
def test_failing_trial_is_fail_in_optuna_and_mlflow_and_the_study_goes_on(train, error, mlflow_parent, tmp_path):
    client, parent = mlflow_parent
    ok = Objective(SPACE, parent_run_id=parent.run_id, experiment_id=parent.experiment_id, study_name="s",
                   output_dir=str(tmp_path / "runs"), task=TwoAFCTask(fake_train({"loss": [0.7, 0.6]})))
    bad = Objective(SPACE, parent_run_id=parent.run_id, experiment_id=parent.experiment_id, study_name="s",
                    output_dir=str(tmp_path / "runs"), task=TwoAFCTask(train))
    study = optuna.create_study(direction="maximize")
    study.optimize(bad, n_trials=1, catch=(Exception,))
    study.optimize(ok, n_trials=1, catch=(Exception,))
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    runs = {int(r.data.tags["optuna.trial_number"]): r for r in client.search_runs(
        [parent.experiment_id], filter_string="tags.`optuna.role` = 'trial'")}
    assert runs[0].info.status == "FAILED" and runs[0].data.tags["optuna.trial.state"] == "FAIL"
    assert error in open(client.download_artifacts(runs[0].info.run_id, "error.txt", str(tmp_path))).read()
    assert runs[1].info.status == "FINISHED" and runs[1].data.metrics["objective"] == 0.8
    for run in runs.values():
        assert run.data.tags["mlflow.parentRunId"] == parent.run_id


def test_check_finite_accepts_finite_and_ignores_non_loss_keys():
    check_finite_history({"loss": [0.5, 0.4], "val_twoafc": [math.nan]})
    with pytest.raises(FloatingPointError, match="`val_loss` became inf at epoch 0"):
        check_finite_history({"val_loss": [math.inf]})


def test_experiment_created_by_another_worker_between_lookup_and_create_is_used(tmp_path):
    """The interleaving that broke two workers starting one study: both look the experiment up, both create it."""
    import mlflow

    from tuning.tracking import _experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    other = mlflow.MlflowClient(uri)

    class LateLookup(mlflow.MlflowClient):
        """Its first lookup sees no experiment; the other worker creates it right after."""

        first = True

        def get_experiment_by_name(self, name):
            if self.first:
                self.first = False
                other.create_experiment(name)
                return None
            return super().get_experiment_by_name(name)

    created = other.get_experiment_by_name("race")
    assert created is None
    experiment_id = _experiment_id(LateLookup(uri), "race")
    assert experiment_id == other.get_experiment_by_name("race").experiment_id
    assert len([e for e in other.search_experiments() if e.name == "race"]) == 1
