"""A tracked training run: restarts over seeds, MLflow logging, the best metric kept and registered."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from keras_percept.training.config import TrainConfig
from keras_percept.training.trainer import TrainResult, mean_and_spread, run_directory, train


@dataclasses.dataclass
class RunSummary:
    """The outcome of `run_training`: the restart chosen on the selection split, and every restart's scores.

    `scores` are the restarts' selection 2AFC means (what the choice saw),
    `test_scores` their test 2AFC means (reported, never compared).
    """

    best: TrainResult
    scores: list[float]
    run_id: str | None
    test_scores: list[float] = dataclasses.field(default_factory=list)

    @property
    def spread(self) -> tuple[float, float]:
        """Mean and sample standard deviation of the restarts' test 2AFC means (seed luck on the reported split)."""
        return mean_and_spread(self.test_scores)


def run_training(config: TrainConfig, *, track: bool = True, progress: bool = True,
                 verbose: int | str = "auto", callbacks=()) -> RunSummary:
    """Trains `config.restarts` seeds (`seed`, `seed + 1`, ...), keeps the best on the selection split, logs it all.

    The choice reads only the selection split (`data.selection_fraction` of
    the training triplets, the same for every seed); the test split is
    reported. With `track`, one MLflow run holds the resolved config, the
    per-epoch metrics (`selection_twoafc` etc.; for several restarts, one
    nested run per seed with its `selection_2afc_all` and `test_2afc_mean`),
    the chosen metric's selection 2AFC and its test 2AFC table next to
    L2 / SSIM / PSNR (`selection_2afc_*`, `test_2afc_*`), the restarts'
    test mean and spread, plots, and the best metric as a `.keras` artifact and an MLflow
    model (registered as `config.register_model` when set). Under
    `mlflow run` the project's own run is resumed rather than a new one
    opened. A run that raises ends FAILED with the traceback logged. Under
    multi-worker training only the chief (see `strategy.is_chief`) logs.
    `callbacks` are added to each restart's `fit`.

    A killed run started again with the same config resumes: training from
    the last finished epoch (`ResumableBackup` in the run directory), and
    tracking in the same MLflow run (parent and nested), whose id the run
    directory holds until the run has finished (`mlflow_run(resume_record=...)`);
    an epoch's metrics are logged once.

    Example:

    >>> summary = run_training(load_config(paradigm="lin", overrides=["restarts=3"]))  # doctest: +SKIP
    >>> summary.spread  # doctest: +SKIP
    (0.81, 0.004)
    """
    from keras_percept.training.strategy import is_chief

    extra = list(callbacks)
    if not track or not is_chief():  # under multi-worker training only the chief logs
        results = [train(_seeded(config, k), callbacks=extra, progress=progress, verbose=verbose)
                   for k in range(config.restarts)]
        return _summarize(results, None)

    from keras_percept.training.evaluation import twoafc_metrics
    from keras_percept.training.tracking import MLflowEpochLogger, import_mlflow, log_training_outputs, mlflow_run

    mlflow = import_mlflow()
    with mlflow_run(config, run_name=f"{config.paradigm}-{config.model.net}",
                    resume_record=os.path.join(run_directory(config), "mlflow_run.json")) as parent:
        results = []
        for k in range(config.restarts):
            seeded = _seeded(config, k)
            if config.restarts == 1:
                results.append(train(seeded, callbacks=[MLflowEpochLogger(), *extra], progress=progress,
                                     verbose=verbose))
                continue
            with mlflow_run(seeded, run_name=f"seed {seeded.seed}", nested=True,
                            resume_record=os.path.join(run_directory(seeded), "mlflow_seed_run.json")):
                result = train(seeded, callbacks=[MLflowEpochLogger(), *extra], progress=progress, verbose=verbose)
                mlflow.log_metrics({"selection_2afc_all": result.selection_score,
                                    **twoafc_metrics({n: {"mean": r["mean"]} for n, r in result.evaluation.items()},
                                                     "test")})
            results.append(result)
        summary = _summarize(results, parent.info.run_id)
        mean, std = summary.spread
        mlflow.log_metrics({"restarts_test_2afc_mean": mean, "restarts_test_2afc_std": std,
                            "restarts_selection_2afc_all": mean_and_spread(summary.scores)[0],
                            "best_seed": float(summary.best.config.seed)})
        log_training_outputs(summary.best, register_as=config.register_model)
    return summary


def _seeded(config: TrainConfig, k: int) -> TrainConfig:
    return dataclasses.replace(config, seed=config.seed + k)


def _summarize(results: list[TrainResult], run_id: str | None) -> RunSummary:
    """The restart with the best selection 2AFC (the first of equals); the test split plays no part."""
    scores = [r.selection_score for r in results]
    best = results[max(range(len(results)), key=scores.__getitem__)]
    return RunSummary(best, scores, run_id, [r.evaluation["lpips"]["mean"] for r in results])


def format_summary(summary: RunSummary) -> str:
    """The chosen restart's selection 2AFC, its test 2AFC table, the restarts' spread and where the metric is."""
    from keras_percept.training.evaluation import format_table

    best = summary.best
    n = len(summary.scores)
    chosen = f", the best of {n} restarts: seed {best.config.seed}" if n > 1 else ""
    lines = [f"selection 2AFC (carved from the training data; early stopping and the choice of restart saw it): "
             f"{100 * best.selection_score:.2f} %{chosen}",
             "test 2AFC (%) (the val split, scored once, used for no choice):",
             format_table(best.evaluation)]
    if n > 1:
        mean, std = summary.spread
        lines.append(f"restarts on the test split: {100 * mean:.2f} ± {100 * std:.2f} (mean ± std over seeds; "
                     "differences smaller than this are initialisation luck)")
    if best.jnd:
        lines += ["JND mAP per category (%):", format_table(best.jnd)]
    lines.append(f"metric saved: {os.path.abspath(best.metric_path)}")
    if summary.run_id:
        lines.append(f"MLflow run: {summary.run_id}")
    lines.append(f"wall time: {best.seconds:.1f} s (chosen restart)")
    return "\n".join(lines)


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    """Plain data for JSON: selection and test scores, spread, evaluation, metric path."""
    mean, std = summary.spread
    return {"selection_scores": summary.scores, "test_scores": summary.test_scores, "test_mean": mean,
            "test_std": std, "selection": summary.best.selection, "evaluation": summary.best.evaluation,
            "jnd": summary.best.jnd, "metric_path": summary.best.metric_path, "run_id": summary.run_id,
            "seconds": summary.best.seconds}
