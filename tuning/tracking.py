"""The study's MLflow parent run: found or opened once per study, and its final report.

The parent run's id is kept in the study (`study.user_attrs["mlflow_parent_run_id"]`)
so that every worker process, resumed session or machine nests its trials
under the same run. Under `mlflow run`, `MLFLOW_RUN_ID` names the project's
run: it becomes the parent, and the variable is removed from the environment
first, so that no later `start_run()` (a trial's) resumes it by accident.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from typing import Any, Mapping

from tuning.liveness import process_gone, worker_record
from tuning.objective import ROLE_TAG, end_run_as

PARENT_ATTR = "mlflow_parent_run_id"
WORKER_TAG = "optuna.worker"


def resolve_parent_run(study, *, experiment: str, tags: Mapping[str, str], project_run_id: str | None = None):
    """The parent run of `study` (an `mlflow.entities.Run`): the project's run, the study's, or a new one."""
    from keras_percept.experiment.tracking import import_mlflow

    mlflow = import_mlflow()
    client = mlflow.MlflowClient()
    if project_run_id:
        study.set_user_attr(PARENT_ATTR, project_run_id)
        for key, value in tags.items():
            client.set_tag(project_run_id, key, value)
        return client.get_run(project_run_id)
    existing = study.user_attrs.get(PARENT_ATTR)
    if existing:
        run = _get_run(client, existing)
        if run is not None and run.info.lifecycle_stage == "active":
            if run.info.status != "RUNNING":
                client.update_run(existing, status="RUNNING")
            return client.get_run(existing)
    experiment_id = _experiment_id(client, experiment)
    run = client.create_run(experiment_id, run_name=f"study {study.study_name}", tags=dict(tags))
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    # Two workers starting a new study at once may both open a parent; the one written last wins.
    time.sleep(0.2)
    winner = _reload(study).user_attrs.get(PARENT_ATTR)
    if winner != run.info.run_id:
        client.delete_run(run.info.run_id)
        return client.get_run(winner)
    return run


def worker_tag() -> dict[str, str]:
    """`{"optuna.worker": <this process as JSON>}`: the tag that lets `end_orphan_runs` end a run whose process died.

    Example:

    >>> mlflow.start_run(nested=True, tags={"optuna.role": "best", **worker_tag()})  # doctest: +SKIP
    """
    return {WORKER_TAG: json.dumps(worker_record())}


def end_orphan_runs(study, parent_run_id: str, experiment_id: str) -> list[str]:
    """Ends the RUNNING child runs of the study's parent run that nobody will end; returns their ids.

    A trial's run is an orphan when its trial is finished in Optuna (its
    worker died after the trial was failed but before its run was ended,
    or before the run's id was stored in the trial); it ends with the
    trial's state (FAIL: FAILED). Another child run (the best trial's
    retraining) is an orphan when its `optuna.worker` process ran on this
    machine and is gone; it ends KILLED.

    Example:

    >>> end_orphan_runs(study, parent.info.run_id, parent.info.experiment_id)  # doctest: +SKIP
    []
    """
    from keras_percept.experiment.tracking import import_mlflow

    client = import_mlflow().MlflowClient()
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' "
                                                             "and attributes.status = 'RUNNING'")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    ended = []
    for run in runs:
        tags = run.data.tags
        if tags.get(ROLE_TAG) == "trial":
            trial = trials.get(int(tags.get("optuna.trial_number", -1)))
            if trial is None or not trial.state.is_finished():
                continue
            end_run_as(client, run.info.run_id, state=trial.state.name,
                       reason=f"the trial is {trial.state.name} in Optuna and its worker stopped before ending this run")
        elif WORKER_TAG in tags and process_gone(json.loads(tags[WORKER_TAG])):
            end_run_as(client, run.info.run_id, state=None, status="KILLED",
                       reason=f"its process ({json.loads(tags[WORKER_TAG])['pid']}) stopped before ending it")
        else:
            continue
        ended.append(run.info.run_id)
    return ended


def _experiment_id(client, name: str) -> str:
    """The id of experiment `name`, created if missing.

    Two workers starting at once can both find no experiment; the second `create_experiment` then
    fails on MLflow's unique name, and that worker uses the one the first created.
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _get_run(client, run_id: str):
    try:
        return client.get_run(run_id)
    except Exception as err:  # a study moved to another tracking store: open a new parent, and say so
        warnings.warn(f"The study's MLflow parent run {run_id} is not in this tracking store ({err}); "
                      "opening a new one.")
        return None


def _reload(study):
    import optuna

    return optuna.load_study(study_name=study.study_name, storage=study._storage)


def log_study_setup(run_id: str, params: Mapping[str, Any], space_path: str | None) -> None:
    """Study settings as parameters (only those not logged yet: a resumed study keeps its first values)."""
    from keras_percept.experiment.tracking import import_mlflow

    client = import_mlflow().MlflowClient()
    logged = client.get_run(run_id).data.params
    for key, value in params.items():
        if key not in logged:
            client.log_param(run_id, key, value)
    if space_path and os.path.isfile(space_path):
        client.log_artifact(run_id, space_path, "search_space")


def log_plots(study, run_id: str) -> list[str]:
    """Optuna's optimisation history, parameter importances, parallel coordinates and intermediate values, as PNGs.

    Uses `optuna.visualization.matplotlib` (no plotly needed). A plot that
    cannot be drawn (e.g. importances from fewer than two complete trials) is
    logged as `plots/<name>.txt` with the reason instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    from keras_percept.experiment.tracking import import_mlflow

    client = import_mlflow().MlflowClient()
    names = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        for name, draw in (("optimization_history", ovm.plot_optimization_history),
                           ("param_importances", ovm.plot_param_importances),
                           ("parallel_coordinate", ovm.plot_parallel_coordinate),
                           ("intermediate_values", ovm.plot_intermediate_values)):
            try:
                axes = draw(study)
                figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
                path = os.path.join(tmp, f"{name}.png")
                figure.set_size_inches(10, 6)
                figure.tight_layout()
                figure.savefig(path, dpi=90)
                plt.close(figure)
            except Exception as err:
                path = os.path.join(tmp, f"{name}.txt")
                with open(path, "w") as f:
                    f.write(f"{name} could not be drawn: {type(err).__name__}: {err}\n")
            client.log_artifact(run_id, path, "plots")
            names.append(os.path.basename(path))
    return names
