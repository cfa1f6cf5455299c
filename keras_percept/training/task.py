"""2AFC metric learning (the LPIPS paradigms lin / tune / scratch) as a task of the experiment core.

Its config is `TrainConfig` (`load_config`), its fit `train`, its selection
score the 2AFC over every triplet of the selection split (`selection_2afc_all`),
its test score the mean 2AFC over the test split's categories (`test_2afc_mean`).
"""

from __future__ import annotations

import math
import os
import tempfile

from keras_percept.experiment.task import Task, register_task


class TwoAFCTask(Task):
    """The 2AFC task. `train_fn` replaces `keras_percept.training.train` (same signature), e.g. in tests.

    Example:

    >>> from keras_percept.experiment.run import run_experiment
    >>> task = get_task("2afc")  # doctest: +SKIP
    >>> run_experiment(task, task.load_config(paradigm="lin")).best.selection_score  # doctest: +SKIP
    0.7683
    """

    name = "2afc"
    selection_metric = "selection_2afc_all"
    test_metric = "test_2afc_mean"
    monitor = "val_twoafc"
    value_name = "selection 2AFC"
    value_scale = 100.0
    test_name = "test 2AFC"
    model_word = "metric"
    spread_metric = "restarts_test_2afc_std"
    default_config = None
    default_space = os.path.join("configs", "search", "{paradigm}.yaml")
    registers_models = True
    paradigms = ("lin", "tune", "scratch")

    def __init__(self, train_fn=None):
        self.train_fn = train_fn

    def load_config(self, path=None, *, overrides=(), paradigm=None):
        from keras_percept.training.config import load_config

        return load_config(path, paradigm=paradigm, overrides=overrides)

    def train(self, config, *, callbacks=(), progress=False, verbose=0, test=True):
        from keras_percept.training.trainer import train

        # L2 / SSIM / PSNR and JND are scored on the test split: with it, or not at all (tuning trials).
        return (self.train_fn or train)(config, callbacks=callbacks, progress=progress, verbose=verbose,
                                        baselines=test, test=test)

    def selection_score(self, result) -> float:
        return float(result.selection_score)

    def test_score(self, result) -> float:
        return float(result.evaluation.get("lpips", {}).get("mean", math.nan))

    def run_directory(self, config) -> str:
        from keras_percept.training.trainer import run_directory

        return run_directory(config)

    def run_name(self, config) -> str:
        return f"{config.paradigm}-{config.model.net}"

    def seed_metrics(self, result) -> dict[str, float]:
        """The selection 2AFC and each distance's test 2AFC mean (`test_2afc_mean`, `test_2afc_l2_mean`, ...)."""
        from keras_percept.training.evaluation import twoafc_metrics

        return {self.selection_metric: self.selection_score(result),
                **twoafc_metrics({n: {"mean": r["mean"]} for n, r in result.evaluation.items()}, "test")}

    def trial_metrics(self, result) -> dict[str, float]:
        from keras_percept.training.evaluation import twoafc_metrics

        return twoafc_metrics({"lpips": result.selection}, "selection")

    def log_result(self, result, *, register_as=None) -> None:
        log_training_outputs(result, register_as=register_as)



def log_training_outputs(result, *, register_as: str | None = None) -> None:
    """Logs a finished `TrainResult`: selection and test 2AFC (`twoafc_metrics`), JND, plots, the `.keras`
    metric and an MLflow model (registered as `register_as`, alias `latest-trained`)."""
    from keras_percept.experiment.tracking import import_mlflow, model_requirements
    from keras_percept.serving import log_metric_model
    from keras_percept.training.evaluation import format_table, jnd_metrics, twoafc_metrics
    from keras_percept.training.plots import plot_learning_curves, plot_linear_weights

    mlflow = import_mlflow()
    mlflow.log_metrics(twoafc_metrics({"lpips": result.selection}, "selection"))
    mlflow.log_metrics(twoafc_metrics(result.evaluation, "test"))
    mlflow.log_metric("seconds", result.seconds)
    mlflow.log_text(format_table(result.evaluation), "evaluation/test_2afc_table.txt")
    if result.jnd:
        mlflow.log_metrics(jnd_metrics(result.jnd))
        mlflow.log_text(format_table(result.jnd), "evaluation/jnd_table.txt")
    with tempfile.TemporaryDirectory() as tmp:
        curves = os.path.join(tmp, "learning_curves.png")
        plot_learning_curves(result.history, curves)
        mlflow.log_artifact(curves, "plots")
        weights = os.path.join(tmp, "linear_weights.png")
        plot_linear_weights(result.model.metric, weights)
        mlflow.log_artifact(weights, "plots")
    mlflow.log_artifact(result.metric_path, "model_file")
    # A pyfunc model of keras_percept (not MLflow's Keras flavour), so `mlflow models serve` can load it.
    log_metric_model(result.metric_path, registered_model_name=register_as, alias="latest-trained",
                     pip_requirements=model_requirements())


TWOAFC = register_task(TwoAFCTask())
