"""The Optuna objective: one trial = one `task.train()` of a suggested config, tracked as a nested MLflow run.

Each trial's MLflow run is a child of the study's parent run (tag
`mlflow.parentRunId`, set explicitly so that worker processes, which do not
hold the parent run open, nest under it too). It holds the suggested
parameters (under the config keys Optuna uses), the resolved config,
per-epoch metrics (`MLflowEpochLogger`), the objective, and the tags
`optuna.trial_number` and `optuna.trial.state` (COMPLETE / PRUNED / FAIL).
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import socket
import traceback
from typing import Any, Iterator, Sequence

STATE_TAG = "optuna.trial.state"
ROLE_TAG = "optuna.role"
REASON_TAG = "optuna.fail_reason"


def pruning_callback(trial, monitor: str):
    """optuna-integration's `KerasPruningCallback`: it subclasses `keras.callbacks.Callback` and reports
    `logs[monitor]` each epoch, so it works unchanged with Keras 3 on every backend."""
    try:
        from optuna_integration import KerasPruningCallback
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Pruning needs optuna-integration: pip install keras-percept[tune]") from err
    return KerasPruningCallback(trial, monitor)


@contextlib.contextmanager
def trial_run(trial, *, parent_run_id: str, experiment_id: str, study_name: str) -> Iterator[Any]:
    """An MLflow run for `trial`, nested under `parent_run_id`, ended with the trial's state.

    A pruned trial's run ends FINISHED with state PRUNED; any other exception
    ends it FAILED with state FAIL and the traceback as `error.txt`, and
    propagates (Optuna records the trial as FAIL).
    """
    import optuna

    from keras_percept.experiment.tracking import import_mlflow

    mlflow = import_mlflow()
    tags = {"mlflow.parentRunId": parent_run_id, ROLE_TAG: "trial", "optuna.study_name": study_name,
            "optuna.trial_number": str(trial.number), STATE_TAG: "RUNNING"}
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"trial {trial.number}", tags=tags)
    trial.set_user_attr("mlflow_run_id", run.info.run_id)
    try:
        yield run
    except optuna.TrialPruned:
        mlflow.set_tag(STATE_TAG, "PRUNED")
        mlflow.end_run(status="FINISHED")
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow.set_tag(STATE_TAG, "FAIL")
            mlflow.log_text(traceback.format_exc(), "error.txt")
        mlflow.end_run(status="FAILED")
        raise
    mlflow.set_tag(STATE_TAG, "COMPLETE")
    mlflow.end_run(status="FINISHED")


def mark_mlflow_run_failed(study, trial, reason: str = "its worker stopped during the trial") -> None:
    """Ends the MLflow run of a trial failed because its worker died: FAILED, state FAIL, `optuna.fail_reason`.

    The storages' callback for such trials (`tuning.storage.make_storage(on_failed_trial=...)`).

    Example:

    >>> mark_mlflow_run_failed(study, study.trials[3], "worker process 4242 on node-3 is gone")  # doctest: +SKIP
    """
    from keras_percept.experiment.tracking import import_mlflow

    run_id = trial.user_attrs.get("mlflow_run_id")
    if not run_id:
        return  # killed before its run was opened, or before the run id was stored: `end_orphan_runs` finds it
    end_run_as(import_mlflow().MlflowClient(), run_id, state="FAIL", reason=reason)


def end_run_as(client, run_id: str, *, state: str | None, reason: str, status: str | None = None) -> None:
    """Ends MLflow run `run_id` on behalf of a dead worker: tags `optuna.fail_reason` and (a trial's) `optuna.trial.state`.

    `status` defaults to FAILED for state FAIL or `None` and FINISHED otherwise.

    Example:

    >>> end_run_as(mlflow.MlflowClient(), run_id, state="FAIL", reason="no heartbeat for 31 s")  # doctest: +SKIP
    """
    if state is not None:
        client.set_tag(run_id, STATE_TAG, state)
    client.set_tag(run_id, REASON_TAG, reason)
    client.set_terminated(run_id, status=status or ("FAILED" if state in ("FAIL", None) else "FINISHED"))


class Objective:
    """Trains the config a trial suggests and returns its selection score (`task.selection_score`).

    One objective for every task (`keras_percept.experiment.task`): the
    trial's config is `task.load_config(config_path, overrides=...)`, its
    run `task.train(config, test=False)`, its value the selection score (for
    2AFC the selection 2AFC, for IQA the validation SRCC, both carved from
    the training data). A trial never reads the test split: only the best
    trial, retrained at the end of the study, is scored on it.

    Args:
        space: a `tuning.space.SearchSpace`.
        parent_run_id: the study's MLflow run; every trial is a child run of it.
        experiment_id: the parent run's experiment.
        study_name: for the trial runs' tags.
        output_dir: trials train in `<output_dir>/trial_<number>` (their own `BackupAndRestore`
            folder, so a pruned trial's backup is never resumed by another trial); the folder is
            removed when the trial ends. Defaults to `"runs/tuning"`.
        config_path: the base YAML config (the task's defaults when `None`). Defaults to `None`.
        overrides: extra `key=value` overrides applied before the suggested values. Defaults to `()`.
        task: the task, or its name. Defaults to `None` (the search space's `task`).
        verbose: Keras `fit` verbosity. Defaults to `0`.

    Example:

    >>> objective = Objective(space, parent_run_id=run.info.run_id, experiment_id="0", study_name="s")  # doctest: +SKIP
    >>> study.optimize(objective, n_trials=10, catch=(Exception,))  # doctest: +SKIP
    """

    def __init__(self, space, *, parent_run_id: str, experiment_id: str, study_name: str,
                 output_dir: str = os.path.join("runs", "tuning"), config_path: str | None = None,
                 overrides: Sequence[str] = (), task=None, verbose: int | str = 0):
        from keras_percept.experiment.task import get_task

        self.space = space
        self.parent_run_id = parent_run_id
        self.experiment_id = experiment_id
        self.study_name = study_name
        self.output_dir = output_dir
        self.config_path = config_path
        self.overrides = list(overrides)
        self.task = get_task(space.task if task is None else task)
        self.verbose = verbose

    def config_overrides(self, values: dict[str, Any], trial_dir: str) -> list[str]:
        return self.space.fixed_overrides() + self.overrides + self.space.overrides(values) + [f"output_dir={trial_dir}"]

    def load_config(self, values: dict[str, Any], run_dir: str):
        """The config of a trial (or of the best trial's retraining) with `values` for the searched keys."""
        return self.task.load_config(self.config_path, paradigm=self.space.paradigm,
                                     overrides=self.config_overrides(values, run_dir))

    def __call__(self, trial) -> float:
        import keras

        from keras_percept.experiment.tracking import MLflowEpochLogger, flatten, import_mlflow

        mlflow = import_mlflow()
        values = self.space.suggest(trial)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial_dir = os.path.join(self.output_dir, f"trial_{trial.number:04d}")
        with trial_run(trial, parent_run_id=self.parent_run_id, experiment_id=self.experiment_id,
                       study_name=self.study_name):
            mlflow.log_params(values)
            config = self.load_config(values, trial_dir)
            mlflow.log_params(flatten(config.to_dict(), "config."))
            try:
                result = self.task.train(config, callbacks=[MLflowEpochLogger(),
                                                            pruning_callback(trial, self.space.monitor or self.task.monitor)],
                                         progress=False, verbose=self.verbose, test=False)
            finally:
                keras.backend.clear_session()
                gc.collect()
                shutil.rmtree(trial_dir, ignore_errors=True)
            self.task.check_finite(result)
            value = float(self.task.selection_score(result))
            mlflow.log_metrics({"objective": value, "seconds": float(result.seconds),
                                **self.task.trial_metrics(result)})
        return value
