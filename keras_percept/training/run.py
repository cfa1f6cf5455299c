"""A tracked training run: restarts over seeds, MLflow logging, the best metric kept and registered."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from keras_percept.training.config import TrainConfig
from keras_percept.training.trainer import TrainResult, mean_and_spread, run_directory, train


@dataclasses.dataclass
class RunSummary:
    """The outcome of `run_training`: the best restart and every restart's held-out 2AFC mean."""

    best: TrainResult
    scores: list[float]
    run_id: str | None

    @property
    def spread(self) -> tuple[float, float]:
        """Mean and sample standard deviation of the restarts' held-out 2AFC means."""
        return mean_and_spread(self.scores)


def run_training(config: TrainConfig, *, track: bool = True, progress: bool = True,
                 verbose: int | str = "auto", callbacks=()) -> RunSummary:
    """Trains `config.restarts` seeds (`seed`, `seed + 1`, ...), keeps the best on validation, logs it all.

    With `track`, one MLflow run holds the resolved config, the per-epoch
    metrics (for several restarts, one nested run per seed), the held-out
    2AFC table of the metric next to L2 / SSIM / PSNR, the restarts' mean and
    spread, plots, and the best metric as a `.keras` artifact and an MLflow
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
                mlflow.log_metrics({f"val2afc_{name}_mean": row["mean"] for name, row in result.evaluation.items()})
            results.append(result)
        summary = _summarize(results, parent.info.run_id)
        mean, std = summary.spread
        mlflow.log_metrics({"restarts_val2afc_mean": mean, "restarts_val2afc_std": std,
                            "best_seed": float(summary.best.config.seed)})
        log_training_outputs(summary.best, register_as=config.register_model)
    return summary


def _seeded(config: TrainConfig, k: int) -> TrainConfig:
    return dataclasses.replace(config, seed=config.seed + k)


def _summarize(results: list[TrainResult], run_id: str | None) -> RunSummary:
    scores = [r.evaluation["lpips"]["mean"] for r in results]
    best = results[max(range(len(results)), key=scores.__getitem__)]
    return RunSummary(best, scores, run_id)


def format_summary(summary: RunSummary) -> str:
    """The held-out 2AFC table of the best restart, the restarts' spread and where the metric is."""
    from keras_percept.training.evaluation import format_table

    mean, std = summary.spread
    lines = [f"held-out 2AFC (%), best of {len(summary.scores)} restart(s), seed {summary.best.config.seed}:",
             format_table(summary.best.evaluation)]
    if len(summary.scores) > 1:
        lines.append(f"restarts: {100 * mean:.2f} ± {100 * std:.2f} (mean ± std over seeds; "
                     "differences smaller than this are initialisation luck)")
    if summary.best.jnd:
        lines += ["JND mAP per category (%):", format_table(summary.best.jnd)]
    lines.append(f"metric saved: {os.path.abspath(summary.best.metric_path)}")
    if summary.run_id:
        lines.append(f"MLflow run: {summary.run_id}")
    lines.append(f"wall time: {summary.best.seconds:.1f} s (best restart)")
    return "\n".join(lines)


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    """Plain data for JSON: scores, spread, evaluation, metric path."""
    mean, std = summary.spread
    return {"scores": summary.scores, "mean": mean, "std": std, "evaluation": summary.best.evaluation,
            "jnd": summary.best.jnd, "metric_path": summary.best.metric_path, "run_id": summary.run_id,
            "seconds": summary.best.seconds}
