"""The task interface: what the experiment core (restarts, MLflow runs, the Optuna objective and study) needs of a task.

A task is one kind of experiment: 2AFC metric learning (`keras_percept.training.task`),
image-quality regression (`keras_percept.iqa.task`), or one of your own. It owns its config,
data, model, fit and evaluation; the core owns everything around them and calls only the
methods below. A new task is one module: subclass `Task`, fill in what is marked, and
`register_task` it; `run_experiment`, `keras-percept`'s tracking and
`python tuning/search.py --task <name> --space <yaml>` then run it unchanged.

A task's config must be a dataclass (restarts are `dataclasses.replace(config, seed=...)`)
with `seed`, `experiment`, `tracking_uri`, `output_dir`, `optim.epochs` and `to_dict()`;
`restarts` is optional (1 without it). A task's result is whatever its `train` returns; the
core reads it through the task (`selection_score`, `test_score`, `log_result`, ...) and
needs of it `config` (the config it was trained with), `history` (Keras's per-epoch logs),
`seconds` and `model_path`.

Example:

>>> class Mine(Task):  # doctest: +SKIP
...     name, selection_metric, test_metric = "mine", "selection_r2", "test_r2"
...     def load_config(self, path=None, *, overrides=(), paradigm=None): ...
...     def train(self, config, *, callbacks=(), progress=False, verbose=0, test=True): ...
...     def selection_score(self, result): return result.selection_r2
...     def test_score(self, result): return result.test_r2
>>> register_task(Mine())  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import math
import os
from typing import Any, Mapping, Sequence

#: The package's own tasks, imported on first use (so `import keras_percept` stays light).
BUILTIN_TASKS = {"2afc": "keras_percept.training.task", "iqa": "keras_percept.iqa.task"}
_TASKS: dict[str, "Task"] = {}


class Task:
    """One kind of experiment, as the experiment core sees it.

    Attributes a subclass sets:
        name: the registry name (`--task`, the search space's `task:`).
        selection_metric: the MLflow name of the selection score (e.g. `"selection_2afc_all"`).
        test_metric: the MLflow name of the test score (e.g. `"test_2afc_mean"`).
        monitor: the per-epoch key of the selection score in Keras's logs, which the Optuna
            pruner watches (e.g. `"val_twoafc"`; `MLflowEpochLogger` logs it as `selection_*`).
        value_name, value_scale: how tables print the selection score (`"selection 2AFC"`, 100: in %).
        test_name: how reports name the test score (`"test 2AFC"`).
        direction: `"maximize"` or `"minimize"` the selection score (restarts; a study's space says its own).
        model_word: what reports call the saved model (`"metric"` for 2AFC).
        default_config, default_space: paths relative to the project folder, or `None`.
        registers_models: the best model of a study is registered in MLflow's model registry.
        paradigms: the variants `--paradigm` chooses among (empty: the task has none).

    See the module docstring for what the core needs of a task's config and result.
    """

    name: str = ""
    selection_metric: str = "selection_score"
    test_metric: str = "test_score"
    monitor: str = "val_loss"
    value_name: str = "selection score"
    value_scale: float = 1.0
    test_name: str = "test score"
    direction: str = "maximize"
    model_word: str = "model"
    default_config: str | None = None
    default_space: str | None = None
    registers_models: bool = False
    paradigms: tuple[str, ...] = ()

    # -- what a task must provide ------------------------------------------------------------
    def load_config(self, path: str | os.PathLike | None = None, *, overrides: Sequence[str] = (),
                    paradigm: str | None = None):
        """The validated config: defaults, then the YAML file `path`, then `key=value` overrides."""
        raise NotImplementedError

    def train(self, config, *, callbacks=(), progress: bool = False, verbose: int | str = 0, test: bool = True):
        """Trains one model of `config` and returns the task's result. `callbacks` go to Keras's `fit`; with
        `test=False` (tuning trials) the test split is never read."""
        raise NotImplementedError

    def selection_score(self, result) -> float:
        """The score on the selection split (carved from the training data): what restarts and tuning compare."""
        raise NotImplementedError

    def test_score(self, result) -> float:
        """The score on the test split (scored once, compared by nothing); NaN when it was not scored."""
        raise NotImplementedError

    # -- what a task may refine ----------------------------------------------------------------
    def run_directory(self, config) -> str:
        """Where a run of `config` keeps its files (deterministic: a killed run finds its backup)."""
        return os.path.join(config.output_dir, f"{self.name}_seed{config.seed}")

    def run_name(self, config) -> str:
        return f"{self.name} seed {config.seed}"

    def check_finite(self, result) -> None:
        """Raises `FloatingPointError` when a loss in the history or the selection score is not finite."""
        check_finite_history(result.history)
        value = self.selection_score(result)
        if not math.isfinite(value):
            raise FloatingPointError(f"The {self.value_name} is {value}: the predictions are not finite.")

    def seed_metrics(self, result) -> dict[str, float]:
        """What a restart's nested MLflow run logs: its selection and test scores."""
        return {self.selection_metric: float(self.selection_score(result)),
                self.test_metric: float(self.test_score(result))}

    def trial_metrics(self, result) -> dict[str, float]:
        """What a tuning trial's MLflow run logs beside `objective` (trials have no test score)."""
        return {self.selection_metric: float(self.selection_score(result))}

    def log_result(self, result, *, register_as: str | None = None) -> None:
        """Logs the chosen (or a study's retrained best) result to the active MLflow run: its scores and model."""
        from keras_percept.experiment.tracking import import_mlflow

        mlflow = import_mlflow()
        mlflow.log_metrics({**self.seed_metrics(result), "seconds": float(result.seconds)})
        mlflow.log_artifact(result.model_path, "model_file")

    @property
    def spread_metric(self) -> str:
        """The MLflow name of the restarts' sample standard deviation of the test score."""
        return f"restarts_{self.test_metric}_std"

    def format_value(self, value: float) -> str:
        """A score as reports print it (`value_scale`; in % when it is 100)."""
        return f"{100 * value:.2f} %" if self.value_scale == 100 else f"{value:.4f}"


def check_finite_history(history: Mapping[str, list[float]]) -> None:
    """Raises `FloatingPointError` when a loss in the history is NaN or infinite (`TerminateOnNaN` stopped the fit).

    Example:

    >>> check_finite_history({"loss": [0.5, 0.4], "val_twoafc": [float("nan")]})  # only losses are checked
    """
    for key, series in history.items():
        if "loss" in key and any(not math.isfinite(v) for v in series):
            epoch = next(i for i, v in enumerate(series) if not math.isfinite(v))
            raise FloatingPointError(f"`{key}` became {series[epoch]} at epoch {epoch}: training diverged "
                                     "(TerminateOnNaN stopped it).")


def register_task(task: Task) -> Task:
    """Adds `task` to the registry under `task.name` (replacing one of that name) and returns it."""
    if not isinstance(task, Task) or not task.name:
        raise ValueError(f"`task` must be a `Task` with a non-empty `name`. Received: {task!r}")
    _TASKS[task.name] = task
    return task


def get_task(name: str | Task) -> Task:
    """The registered task `name` (the package's own are imported on first use); a `Task` is returned as is.

    `"package.module:name"` imports the module first (it registers its task), so that worker
    processes started by `tuning/search.py` find a task defined outside the package.

    Example:

    >>> get_task("2afc").selection_metric
    'selection_2afc_all'
    """
    if isinstance(name, Task):
        return name
    if isinstance(name, str) and ":" in name:  # "package.module:name": a module that registers its task
        module, name = name.split(":", 1)
        importlib.import_module(module)
    if name not in _TASKS and name in BUILTIN_TASKS:
        importlib.import_module(BUILTIN_TASKS[name])  # registers itself
    if name not in _TASKS:
        raise ValueError(f"`task` must be one of {task_names()}. Received: {name!r}")
    return _TASKS[name]


def task_names() -> list[str]:
    """The package's tasks and every registered one."""
    return sorted(set(BUILTIN_TASKS) | set(_TASKS))


def result_value(mapping: Mapping[str, Any], key: str) -> float:
    """`mapping[key]` as a float, NaN when absent (a split that was not scored)."""
    return float(mapping.get(key, math.nan))
