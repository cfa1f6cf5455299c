"""Image-quality regression (MOS) as a task of the experiment core.

Its config is `IQAConfig` (`load_iqa_config`), its fit `train_iqa`, its
selection score the kept model's SRCC on the validation split carved from the
training images (`selected_val_srcc`, as `compare-losses` logs it; per epoch `selection_srcc`), its test score the
test split's SRCC (`test_srcc`).
"""

from __future__ import annotations

import math
import os

from keras_percept.experiment.task import Task, register_task


class IQATask(Task):
    """The IQA task. `train_fn` replaces `keras_percept.iqa.train_iqa` (same signature), e.g. in tests.

    Example:

    >>> from keras_percept.experiment.run import run_experiment
    >>> summary = run_experiment("iqa", get_task("iqa").load_config("configs/iqa/compare.yaml"))  # doctest: +SKIP
    >>> summary.best.scores["srcc"]  # doctest: +SKIP
    """

    name = "iqa"
    selection_metric = "selected_val_srcc"  # per epoch: selection_srcc (Keras's val_srcc)
    test_metric = "test_srcc"
    monitor = "val_srcc"
    value_name = "selection SRCC"
    value_scale = 1.0
    test_name = "test SRCC"
    default_config = os.path.join("configs", "iqa", "compare.yaml")  # its `compare:` block is ignored
    default_space = os.path.join("configs", "search", "iqa.yaml")

    def __init__(self, train_fn=None):
        self.train_fn = train_fn

    def load_config(self, path=None, *, overrides=(), paradigm=None):
        from keras_percept.iqa.config import load_iqa_config

        return load_iqa_config(path, overrides=overrides)

    def train(self, config, *, callbacks=(), progress=False, verbose=0, test=True):
        from keras_percept.iqa.trainer import train_iqa

        return (self.train_fn or train_iqa)(config, callbacks=callbacks, verbose=verbose, test=test)

    def selection_score(self, result) -> float:
        return float(result.val_scores.get("srcc", math.nan))

    def test_score(self, result) -> float:
        return float(result.scores.get("srcc", math.nan))

    def run_directory(self, config) -> str:
        from keras_percept.iqa.trainer import run_directory

        return run_directory(config)

    def run_name(self, config) -> str:
        return f"iqa {config.loss_type}"

    def check_finite(self, result) -> None:
        from keras_percept.iqa.trainer import check_finite_run

        if "srcc" not in result.val_scores:
            raise ValueError("Selection needs the validation split: `data.val_fraction` must be > 0. "
                             f"Received: data.val_fraction={result.config.data.val_fraction}")
        check_finite_run(result)

    def seed_metrics(self, result) -> dict[str, float]:
        return {**self.trial_metrics(result), **{f"test_{k}": float(v) for k, v in result.scores.items()}}

    def trial_metrics(self, result) -> dict[str, float]:
        return {f"selected_val_{k}": float(v) for k, v in result.val_scores.items()}



IQA = register_task(IQATask())
