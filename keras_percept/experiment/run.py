"""One tracked run of any task: restarts over seeds, MLflow parent and nested runs, the best restart kept and logged."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from keras_percept.experiment.task import Task, get_task


@dataclasses.dataclass
class RunSummary:
    """The outcome of `run_experiment`: the restart chosen on the selection split, and every restart's scores.

    `scores` are the restarts' selection scores (what the choice saw),
    `test_scores` their test scores (reported, never compared).
    """

    best: Any
    scores: list[float]
    run_id: str | None
    test_scores: list[float] = dataclasses.field(default_factory=list)

    @property
    def spread(self) -> tuple[float, float]:
        """Mean and sample standard deviation of the restarts' test scores (seed luck on the reported split)."""
        return mean_and_spread(self.test_scores)


def mean_and_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def run_experiment(task: Task | str, config, *, track: bool = True, progress: bool = True,
                   verbose: int | str = "auto", callbacks=(), register_as: str | None = None) -> RunSummary:
    """Trains `config.restarts` seeds (`seed`, `seed + 1`, ...) of `task`, keeps the best on the selection split.

    The choice reads only `task.selection_score`; the test scores are
    reported (mean and spread over the restarts). With `track`, one MLflow
    run holds the resolved config, the per-epoch metrics (`MLflowEpochLogger`:
    Keras's `val_*` as `selection_*`), for several restarts one nested run
    per seed with `task.seed_metrics`, the restarts' `restarts_<selection
    metric>`, `restarts_<test metric>` and `task.spread_metric`, `best_seed`, and
    whatever `task.log_result` logs of the chosen restart (registered as
    `register_as` where the task registers models). Under `mlflow run` the
    project's own run is resumed rather than a new one opened. A run that
    raises ends FAILED with the traceback logged. Under multi-worker training
    only the chief logs. `callbacks` are added to each restart's `fit`.

    A killed run started again with the same config resumes: training from
    the task's backup in its run directory, and tracking in the same MLflow
    run (parent and nested), whose id the run directory holds until the run
    has finished; an epoch's metrics are logged once.

    Example:

    >>> from keras_percept.training import load_config
    >>> summary = run_experiment("2afc", load_config(paradigm="lin", overrides=["restarts=3"]))  # doctest: +SKIP
    >>> summary.spread  # doctest: +SKIP
    (0.81, 0.004)
    """
    from keras_percept.training.strategy import is_chief  # TF_CONFIG parsing only: no training code

    task = get_task(task)
    extra = list(callbacks)
    restarts = getattr(config, "restarts", 1)

    def one(seeded, logger=()):
        return task.train(seeded, callbacks=[*logger, *extra], progress=progress, verbose=verbose, test=True)

    if not track or not is_chief():  # under multi-worker training only the chief logs
        return _summarize(task, [one(_seeded(config, k)) for k in range(restarts)], None)

    from keras_percept.experiment.tracking import MLflowEpochLogger, import_mlflow, mlflow_run

    mlflow = import_mlflow()
    with mlflow_run(config, run_name=task.run_name(config),
                    resume_record=os.path.join(task.run_directory(config), "mlflow_run.json")) as parent:
        results = []
        for k in range(restarts):
            seeded = _seeded(config, k)
            if restarts == 1:
                results.append(one(seeded, [MLflowEpochLogger()]))
                continue
            with mlflow_run(seeded, run_name=f"seed {seeded.seed}", nested=True,
                            resume_record=os.path.join(task.run_directory(seeded), "mlflow_seed_run.json")):
                result = one(seeded, [MLflowEpochLogger()])
                mlflow.log_metrics(_finite(task.seed_metrics(result)))
            results.append(result)
        summary = _summarize(task, results, parent.info.run_id)
        mean, std = summary.spread
        mlflow.log_metrics(_finite({f"restarts_{task.test_metric}": mean, task.spread_metric: std,
                                    f"restarts_{task.selection_metric}": mean_and_spread(summary.scores)[0],
                                    "best_seed": float(summary.best.config.seed)}))
        task.log_result(summary.best, register_as=register_as)
    return summary


def _seeded(config, k: int):
    return dataclasses.replace(config, seed=config.seed + k)


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    """MLflow refuses no NaN, but a NaN test score (a split not scored) is no number worth a metric."""
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}


def _summarize(task: Task, results: list, run_id: str | None) -> RunSummary:
    """The restart with the best selection score (`task.direction`; the first of equals); the test split plays no part."""
    scores = [float(task.selection_score(r)) for r in results]
    if len(results) > 1 and not all(math.isfinite(s) for s in scores):
        raise ValueError(f"Choosing among restarts needs a finite {task.value_name} for each. Received: {scores}")
    sign = -1.0 if task.direction == "minimize" else 1.0
    best = results[max(range(len(results)), key=lambda i: sign * scores[i])]
    return RunSummary(best, scores, run_id, [float(task.test_score(r)) for r in results])
