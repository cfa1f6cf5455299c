"""A third task in one file: linear regression with an R² selection score, to prove the core needs no change.

It uses only the public task interface (`keras_percept.experiment.task`) and the
shared config helpers; the experiment core (restarts, MLflow runs) and
`tuning/search.py` (the objective, the study, the retrained best) run it as they
run 2AFC and IQA. `TEST_READS` counts the trainings that scored the test split.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import keras
import numpy as np

from keras_percept.experiment.config import check_positive_int, check_range, merge_config, parse_override, read_yaml
from keras_percept.experiment.task import Task, register_task

TEST_READS: list[int] = []


@dataclasses.dataclass
class ToyOptim:
    learning_rate: float = 0.05
    epochs: int = 3


@dataclasses.dataclass
class ToyConfig:
    optim: ToyOptim = dataclasses.field(default_factory=ToyOptim)
    seed: int = 0
    restarts: int = 1
    n_train: int = 120
    selection_fraction: float = 0.25
    output_dir: str = "runs/toy"
    experiment: str = "toy"
    tracking_uri: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ToyResult:
    config: ToyConfig
    model_path: str
    history: dict
    selection_r2: float
    test_r2: float
    seconds: float


def r2(model, x, y) -> float:
    residual = y - model.predict(x, verbose=0)[:, 0]
    return float(1.0 - residual.var() / y.var())


class SelectionR2(keras.callbacks.Callback):
    """Adds `val_r2` (the selection split's R²) to each epoch's logs, as the real tasks add their scores."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        logs["val_r2"] = r2(self.model, self.x, self.y)


class ToyTask(Task):
    name, selection_metric, test_metric, monitor = "toy", "selected_r2", "test_r2", "val_r2"
    value_name = "selection R2"

    def load_config(self, path=None, *, overrides=(), paradigm=None) -> ToyConfig:
        values = ToyConfig().to_dict()
        if path:
            with open(path) as f:
                values = merge_config(values, read_yaml(f) or {})
        for text in overrides:
            values = merge_config(values, parse_override(text))
        config = ToyConfig(**{**values, "optim": ToyOptim(**values["optim"])})
        check_positive_int("optim.epochs", config.optim.epochs)
        check_positive_int("restarts", config.restarts)
        check_range("selection_fraction", config.selection_fraction, 0.05, 0.95)
        return config

    def train(self, config, *, callbacks=(), progress=False, verbose=0, test=True) -> ToyResult:
        start = time.time()
        data = np.random.default_rng(1234)  # the data are the same for every seed; the seed is initialisation
        x = data.normal(size=(config.n_train + 60, 4)).astype("float32")
        y = (x @ np.array([1.0, -2.0, 0.5, 0.0], "float32") + data.normal(0, 0.5, len(x))).astype("float32")
        n_sel = int(config.selection_fraction * config.n_train)
        fit, sel, held = slice(n_sel, config.n_train), slice(0, n_sel), slice(config.n_train, None)
        keras.utils.set_random_seed(config.seed)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="random_normal")])
        model.compile(optimizer=keras.optimizers.SGD(config.optim.learning_rate), loss="mse")
        history = model.fit(x[fit], y[fit], batch_size=16, epochs=config.optim.epochs, verbose=verbose,
                            callbacks=[SelectionR2(x[sel], y[sel]), *callbacks]).history
        run_dir = self.run_directory(config)
        os.makedirs(run_dir, exist_ok=True)
        model_path = os.path.join(run_dir, "model.keras")
        model.save(model_path)
        if test:
            TEST_READS.append(config.seed)
        return ToyResult(config, model_path, {k: [float(v) for v in vs] for k, vs in history.items()},
                         r2(model, x[sel], y[sel]), r2(model, x[held], y[held]) if test else math.nan,
                         time.time() - start)

    def selection_score(self, result) -> float:
        return result.selection_r2

    def test_score(self, result) -> float:
        return result.test_r2


TOY = register_task(ToyTask())
