"""MLflow tracking of every task's runs (SQLite backend by default, any tracking URI): one place for the
tracking URI, run opening and resuming, the per-epoch logger and the logged model's requirements.

MLflow is an optional dependency (`pip install keras-percept[tune]`), imported lazily.
"""

from __future__ import annotations

import contextlib
import json
import os
import traceback
from typing import Any, Iterator, Mapping

import keras
import yaml

from keras_percept.atomic import atomic_write
from keras_percept.experiment.config import config_fingerprint

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def import_mlflow():
    try:
        import mlflow
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("MLflow tracking needs mlflow: pip install keras-percept[tune]") from err
    return mlflow


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"optim": {"lr": 1}}` → `{"optim.lr": 1}` (with `prefix`, `{prefix}optim.lr`) (lists and None as strings, for MLflow params)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


@contextlib.contextmanager
def mlflow_run(config, *, run_name: str | None = None, nested: bool = False,
               tags: Mapping[str, str] | None = None, resume_record: str | os.PathLike | None = None) -> Iterator[Any]:
    """Opens (or, under `mlflow run`, resumes) a run; logs params and the resolved config.

    The tracking URI is `config.tracking_uri`, else `$MLFLOW_TRACKING_URI`,
    else `sqlite:///mlflow.db`. A run whose body raises ends FAILED with the
    traceback logged as `error.txt`; the exception propagates.

    `resume_record`, a JSON file, makes a killed run continue: it holds the
    run's id (with the tracking URI and the config's fingerprint) from the
    start until the run has FINISHED, and a run started while it names an
    unfinished run of the same config and URI reopens that run instead of a
    new one.

    Example:

    >>> with mlflow_run(config, resume_record="runs/lin_alex_seed0/mlflow_run.json") as run:  # doctest: +SKIP
    ...     train(config, callbacks=[MLflowEpochLogger()])
    """
    mlflow = import_mlflow()
    uri = config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    if not os.environ.get("MLFLOW_RUN_ID") and not nested:
        mlflow.set_experiment(config.experiment)
    record = None if resume_record is None or os.environ.get("MLFLOW_RUN_ID") else os.fspath(resume_record)
    identity = {"tracking_uri": uri, "fingerprint": config_fingerprint(config)}
    run_id = _unfinished_run(mlflow, record, identity) if record else None
    if run_id:
        run = mlflow.start_run(run_id=run_id, nested=nested)
    else:
        run = mlflow.start_run(run_name=run_name, nested=nested, tags=dict(tags or {}))
        if record:
            with atomic_write(record) as f:
                json.dump({"run_id": run.info.run_id, **identity}, f)
    try:
        resolved = config.to_dict()
        mlflow.log_params(flatten(resolved, "config."))
        mlflow.log_text(yaml.safe_dump(resolved, sort_keys=False), "config/resolved.yaml")
        yield run
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow.log_text(traceback.format_exc(), "error.txt")
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")
    if record:
        with contextlib.suppress(FileNotFoundError):
            os.remove(record)


def _unfinished_run(mlflow, record: str, identity: dict) -> str | None:
    """The id in `record` if it names a run of `identity` that did not finish (killed or failed), else None."""
    try:
        with open(record) as f:
            stored = json.load(f)
        if {k: stored.get(k) for k in identity} != identity:
            return None
        run = mlflow.MlflowClient().get_run(stored["run_id"])
    except (OSError, ValueError, KeyError, mlflow.exceptions.MlflowException):
        return None
    if run.info.status == "FINISHED" or run.info.lifecycle_stage != "active":
        return None
    return run.info.run_id


def current_learning_rate(optimizer) -> float:
    """The optimizer's current rate (for a MultiOptimizer, the inner optimizer named "head")."""
    inner = getattr(optimizer, "optimizers", None)
    if inner:
        optimizer = next((o for o in inner if o.name == "head"), inner[-1])
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class MLflowEpochLogger(keras.callbacks.Callback):
    """Logs every epoch's Keras logs (losses, 2AFC) and the learning rate to the active MLflow run.

    Keras names what `fit` validates on `val_*`; that is the selection split
    (carved from the training data), so MLflow gets it as `selection_*`
    (`val_twoafc` → `selection_twoafc`), never to be confused with the test
    split, which a BAPPS folder calls `val`.

    optuna-integration's MLflow callback logs only at trial end and
    `mlflow.keras.autolog` cannot add our learning-rate and weight metrics,
    hence this small callback. An epoch the active run already holds (a
    resumed run repeating an epoch it was killed in after logging) is not
    logged again, so each epoch appears once in the metric history.
    """

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def on_train_begin(self, logs=None):
        mlflow = import_mlflow()
        run = mlflow.active_run()
        self.logged = set()
        if run is not None:
            history = mlflow.MlflowClient().get_metric_history(run.info.run_id, f"{self.prefix}learning_rate")
            self.logged = {m.step for m in history}

    def on_epoch_end(self, epoch, logs=None):
        mlflow = import_mlflow()
        if epoch in self.logged:
            return
        metrics = {f"{self.prefix}{_tracked_name(k)}": float(v) for k, v in (logs or {}).items() if _is_number(v)}
        metrics[f"{self.prefix}learning_rate"] = current_learning_rate(self.model.optimizer)
        mlflow.log_metrics(metrics, step=epoch)


def _tracked_name(key: str) -> str:
    return f"selection_{key[4:]}" if key.startswith("val_") else key


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def model_requirements() -> list[str]:
    """Pinned Keras and backend for the logged MLflow model.

    Given explicitly: MLflow's own inference loads the model in a subprocess
    (about a minute here) and then falls back to `keras` alone. Loading the
    model also needs `import keras_percept` first (it registers the layers).
    """
    from importlib import metadata

    out = [f"keras=={keras.__version__}"]
    for package in ("tensorflow-cpu", "tensorflow", "jax", "torch"):
        try:
            out.append(f"{package}=={metadata.version(package)}")
            break
        except metadata.PackageNotFoundError:
            continue
    return out
