"""A tracked 2AFC training run (the experiment core's `run_experiment` of the 2AFC task) and its report."""

from __future__ import annotations

import os
from typing import Any

from keras_percept.experiment.run import RunSummary, run_experiment
from keras_percept.training.config import TrainConfig
from keras_percept.training.task import TWOAFC


def run_training(config: TrainConfig, *, track: bool = True, progress: bool = True,
                 verbose: int | str = "auto", callbacks=()) -> RunSummary:
    """`run_experiment` of the 2AFC task: `config.restarts` seeds, the best on the selection split, logged.

    The choice reads only the selection split (`data.selection_fraction` of
    the training triplets, the same for every seed); the test split is
    reported. With `track`, one MLflow run holds the resolved config, the
    per-epoch metrics (`selection_twoafc` etc.; for several restarts, one
    nested run per seed with its `selection_2afc_all` and `test_2afc_mean`),
    the chosen metric's selection 2AFC and its test 2AFC table next to
    L2 / SSIM / PSNR (`selection_2afc_*`, `test_2afc_*`), the restarts'
    test mean and spread (`restarts_test_2afc_mean`, `restarts_test_2afc_mean_std`),
    plots, and the best metric as a `.keras` artifact and an MLflow
    model (registered as `config.register_model` when set). A killed run
    started again with the same config resumes, in the same MLflow run.

    Example:

    >>> summary = run_training(load_config(paradigm="lin", overrides=["restarts=3"]))  # doctest: +SKIP
    >>> summary.spread  # doctest: +SKIP
    (0.81, 0.004)
    """
    return run_experiment(TWOAFC, config, track=track, progress=progress, verbose=verbose, callbacks=callbacks,
                          register_as=config.register_model)


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
