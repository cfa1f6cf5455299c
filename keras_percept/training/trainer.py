"""One training run: config → data → model → fit → held-out evaluation → saved metric."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import keras
import numpy as np

from keras_percept.training.config import TrainConfig


@dataclasses.dataclass
class TrainResult:
    """What a run produced. `evaluation` maps distance name → {category: 2AFC score, "mean": ...}."""

    config: TrainConfig
    metric_path: str
    history: dict[str, list[float]]
    evaluation: dict[str, dict[str, float]]
    seconds: float
    model: Any = None


def dataset_root(config: TrainConfig, progress: bool = True) -> str:
    """The BAPPS-layout root: builds (or finds cached) the embedded set, or uses the given folder."""
    if config.data.dataset == "embedded":
        from keras_percept.data import embedded

        return embedded.build(n_train=config.data.n_train, n_val=config.data.n_val, seed=config.data.seed,
                              patch_size=config.data.patch_size, progress=progress)
    if not os.path.isdir(os.path.join(config.data.dataset, "2afc")):
        raise FileNotFoundError(
            f"`data.dataset` must be 'embedded' or a folder holding 2afc/ (BAPPS layout). "
            f"Received: {config.data.dataset!r}"
        )
    return config.data.dataset


def make_datasets(config: TrainConfig, root: str):
    """(train dataset, validation dataset, {category: validation dataset})."""
    from keras_percept.data import TripletAugmentation, load_2afc, load_2afc_by_category

    d = config.data
    augment = TripletAugmentation(crop_size=d.crop_size, flip_left_right=d.flip_left_right,
                                  flip_up_down=d.flip_up_down, mixup_alpha=d.mixup_alpha,
                                  label_smoothing=d.label_smoothing)
    train = load_2afc(root, "train", d.train_categories, patch_size=d.patch_size, batch_size=d.batch_size,
                      shuffle=True, seed=config.seed, augment=augment, drop_remainder=True)
    val_by_category = load_2afc_by_category(root, "val", d.val_categories, patch_size=d.patch_size,
                                            batch_size=d.batch_size)
    val = load_2afc(root, "val", d.val_categories, patch_size=d.patch_size, batch_size=d.batch_size)
    return train, val, val_by_category


def build_callbacks(config: TrainConfig, run_dir: str, extra=()) -> list:
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup"), delete_checkpoint=True),
    ]
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_twoafc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True))
    return callbacks + list(extra)


def train(config: TrainConfig, *, callbacks=(), progress: bool = True, verbose: int | str = "auto") -> TrainResult:
    """Trains one metric as `config` says and saves it as `<output_dir>/<paradigm>_<net>/metric.keras`.

    Example:

    >>> from keras_percept.training import load_config, train
    >>> result = train(load_config(paradigm="lin", overrides=["optim.epochs=2"]))  # doctest: +SKIP
    >>> result.evaluation["lpips"]["mean"]  # doctest: +SKIP
    """
    from keras_percept.convert import save_model_atomic
    from keras_percept.losses import get_loss
    from keras_percept.metrics.keras_metrics import TwoAFCScore
    from keras_percept.training.evaluation import classical_distances, evaluate_2afc
    from keras_percept.training.model_builder import build_twoafc_model
    from keras_percept.training.optimizers import build_training_optimizer
    from keras_percept.training.strategy import select_strategy

    start = time.time()
    keras.utils.set_random_seed(config.seed)
    root = dataset_root(config, progress=progress)
    train_ds, val_ds, val_by_category = make_datasets(config, root)
    steps = config.steps_per_epoch or int(train_ds.cardinality())
    if steps < 1:
        raise ValueError(
            f"The training set has fewer than data.batch_size={config.data.batch_size} triplets; "
            "lower the batch size or add data."
        )
    with select_strategy(config.strategy):
        model = build_twoafc_model(config)
        model.compile(
            optimizer=build_training_optimizer(config, steps, trunk_path=model.metric.backbone.name),
            loss=get_loss(config.loss),
            metrics=[TwoAFCScore()],
        )
    run_dir = os.path.join(config.output_dir, f"{config.paradigm}_{config.model.net}")
    os.makedirs(run_dir, exist_ok=True)
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=config.optim.epochs, steps_per_epoch=config.steps_per_epoch,
        callbacks=build_callbacks(config, run_dir, callbacks), verbose=verbose,
    )
    metric = model.metric.with_options(dropout=0.0)
    metric_path = os.path.join(run_dir, "metric.keras")
    save_model_atomic(metric, metric_path)
    evaluation = evaluate_2afc(
        {"lpips": lambda a, b: metric.predict_on_batch((a, b)), **classical_distances()}, val_by_category
    )
    return TrainResult(config, metric_path, {k: [float(v) for v in vs] for k, vs in history.history.items()},
                       evaluation, time.time() - start, model)


def mean_and_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
