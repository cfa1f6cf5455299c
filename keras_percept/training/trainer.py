"""One training run: config → data (fit / selection / test) → model → fit → selection and test scores → saved metric."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any

import keras

from keras_percept.backbones import dtype_policy_scope
from keras_percept.experiment.config import config_fingerprint
from keras_percept.training.config import TrainConfig


@dataclasses.dataclass
class TrainResult:
    """What a run produced.

    `selection` is the metric's 2AFC on the selection split (carved from the
    training data) per category, their `"mean"`, and `"all"` over every
    selection triplet (`selection_score`): what restarts and tuning compare,
    the quantity early stopping watches each epoch (Keras's `val_twoafc`). `evaluation` is the test split's (the folder's `val`,
    scored once): distance name → {category: 2AFC score, "mean": ...}, empty
    when `train(test=False)`.
    """

    config: TrainConfig
    metric_path: str
    history: dict[str, list[float]]
    evaluation: dict[str, dict[str, float]]
    seconds: float
    model: Any = None
    jnd: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # JND mAP, as `evaluation`
    selection: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def model_path(self) -> str:
        """`metric_path` under the name every task's result has (`keras_percept.experiment.task`)."""
        return self.metric_path

    @property
    def selection_score(self) -> float:
        """The 2AFC over every selection triplet: what restarts and tuning compare."""
        return self.selection["all"]


def dataset_root(config: TrainConfig, progress: bool = True) -> str:
    """The BAPPS-layout root: builds (or finds cached) the embedded set, or uses the given folder."""
    if config.data.dataset == "embedded":
        from keras_percept.data import embedded

        return embedded.build(n_train=config.data.n_train, n_val=config.data.n_val, n_jnd=config.data.n_jnd,
                              seed=config.data.seed, judge=config.data.judge, patch_size=config.data.patch_size,
                              hold_out_families=config.data.hold_out_families, progress=progress)
    if not os.path.isdir(os.path.join(config.data.dataset, "2afc")):
        raise FileNotFoundError(
            f"`data.dataset` must be 'embedded' or a folder holding 2afc/ (BAPPS layout). "
            f"Received: {config.data.dataset!r}"
        )
    return config.data.dataset


def selection_split(config: TrainConfig, root: str, *, verify: str = "full"):
    """(triplets to fit on, selection triplets): `data.selection_fraction` of the `train` split carved out.

    The selection split is what early stopping, the choice among restarts and
    tuning score (`keras_percept.data.selection`); the `val` split (the test
    split) is not read here.

    Example:

    >>> fit, selection = selection_split(config, dataset_root(config))  # doctest: +SKIP
    """
    from keras_percept.data import index_2afc
    from keras_percept.data.selection import carve_selection

    d = config.data
    index = index_2afc(root, "train", d.train_categories, verify=verify)
    return carve_selection(index, d.selection_fraction, seed=d.seed)


def by_category(index, config: TrainConfig) -> dict:
    """`datasets_by_category` of an `ItemIndex` at the config's patch and batch size (for per-category 2AFC)."""
    from keras_percept.data import datasets_by_category

    return datasets_by_category(index, patch_size=config.data.patch_size, batch_size=config.data.batch_size)


def test_datasets(config: TrainConfig, root: str) -> dict:
    """{category: pipeline} of the test split (the folder's `val`), read once, for the final evaluation."""
    from keras_percept.data import load_2afc_by_category

    d = config.data
    return load_2afc_by_category(root, "val", d.val_categories, patch_size=d.patch_size, batch_size=d.batch_size)


def make_datasets(config: TrainConfig, fit, selection, *, first_epoch: int = 0):
    """(training dataset, selection dataset) of `selection_split`'s two parts.

    The training dataset holds the batches of epochs `first_epoch ...
    optim.epochs - 1` of the fit part of the `train` split, each epoch's order
    and augmentation drawn from `(seed, epoch)` (`keras_percept.data.epochs`),
    so a resumed run sees the batches of the uninterrupted one.
    """
    from keras_percept.data import TripletAugmentation, dataset_from_index

    d = config.data
    augment = TripletAugmentation(crop_size=d.crop_size, flip_left_right=d.flip_left_right,
                                  flip_up_down=d.flip_up_down, mixup_alpha=d.mixup_alpha,
                                  label_smoothing=d.label_smoothing)
    train = dataset_from_index(fit, patch_size=d.patch_size, batch_size=d.batch_size, shuffle=True, seed=config.seed,
                               augment=augment, drop_remainder=True, epochs=config.optim.epochs,
                               first_epoch=first_epoch, steps_per_epoch=config.steps_per_epoch)
    selection_ds = dataset_from_index(selection, patch_size=d.patch_size, batch_size=d.batch_size)
    return train, selection_ds


def build_callbacks(config: TrainConfig, run_dir: str, probe, extra=(), monitor_groups=None) -> list:
    """NaN guard, per-epoch seeds, weight and gradient statistics, optional early stopping, `extra`, last the backup.

    `probe`: the fixed batch of training data (or a dataset giving it first)
    on which `GradientNorm` takes each epoch's gradient norm.

    The last callback is a `ResumableBackup` of `<run_dir>/backup` holding the
    weight statistics' and the early stopping's state too; a killed run
    started again with the same config resumes from its last finished epoch.
    It is kept until `train` has saved the metric (`ResumableBackup.delete`).
    """
    from keras_percept.callbacks import (
        EpochSeeds,
        GradientNorm,
        ResumableBackup,
        ResumableEarlyStopping,
        WeightMonitor,
    )

    callbacks = [keras.callbacks.TerminateOnNaN(), EpochSeeds(config.seed), GradientNorm(probe)]
    companions = [WeightMonitor(monitor_groups)]
    if config.early_stopping_patience:
        companions.append(ResumableEarlyStopping(
            monitor="val_twoafc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True))
    backup = ResumableBackup(backup_directory(run_dir), companions=companions, fingerprint=config_fingerprint(config),
                             delete_checkpoint=False)
    return callbacks + companions + list(extra) + [backup]


def backup_directory(run_dir: str) -> str:
    """`<run_dir>/backup`; under multi-worker training a non-chief worker's is `<run_dir>/backup_<type><index>`."""
    from keras_percept.training.strategy import is_chief

    if is_chief():
        return os.path.join(run_dir, "backup")
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return os.path.join(run_dir, f"backup_{task['type']}{task['index']}")


def run_directory(config: TrainConfig) -> str:
    """`<output_dir>/<paradigm>_<net>_seed<seed>`: where the backup and the saved metric go.

    Deterministic, so a killed run started again with the same config finds
    its `ResumableBackup` checkpoint and resumes.
    """
    return os.path.join(config.output_dir, f"{config.paradigm}_{config.model.net}_seed{config.seed}")


def train(config: TrainConfig, *, callbacks=(), progress: bool = True, verbose: int | str = "auto",
          baselines: bool = True, test: bool = True) -> TrainResult:
    """Trains one metric as `config` says and saves it as `<run directory>/metric.keras`.

    `lin` without augmentation trains from cached per-channel feature means
    (`training.feature_cache`; exact with dropout off), optionally solved in
    one L-BFGS call (`lin_solver: lbfgs`); everything else runs `model.fit`
    over the images. Fitting uses the `train` split minus its selection part
    (`data.selection_fraction`), whose 2AFC is Keras's `val_*` each epoch (what
    early stopping watches) and `TrainResult.selection` at the end (what
    restarts and tuning compare). With `test`, the saved metric is then scored
    once on the test split (the folder's `val`) per category —
    on the images, or, for cached `lin`, exactly from the cached means — next
    to L2, SSIM and PSNR (`baselines=False` skips those three and the JND
    table). Tuning trials pass `test=False`: they never read the test split.
    A run killed anywhere and started again with the same config resumes
    from its last finished epoch (`build_callbacks`) and ends with the
    uninterrupted run's weights: data order, augmentation and dropout come
    from (seed, epoch), and the backup holds the optimizer, early-stopping
    and history state.

    Example:

    >>> from keras_percept.training import load_config, train
    >>> result = train(load_config(paradigm="lin", overrides=["optim.epochs=2"]))  # doctest: +SKIP
    >>> result.selection_score, result.evaluation["lpips"]["mean"]  # doctest: +SKIP
    """
    from keras_percept.convert import save_model_atomic
    from keras_percept.training.evaluation import classical_distances, evaluate_2afc, evaluate_jnd_folder
    from keras_percept.training.strategy import is_chief, select_strategy

    start = time.time()
    # Before any TensorFlow op: MultiWorkerMirroredStrategy configures its collectives at startup.
    scope = contextlib.nullcontext() if config.uses_feature_cache() else select_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    root = dataset_root(config, progress=progress)
    run_dir = run_directory(config)
    os.makedirs(run_dir, exist_ok=True)
    selection_means = selection_index = None
    with dtype_policy_scope(config.precision):  # the whole model in the config's policy
        if config.uses_feature_cache():
            model, history, selection_means, backup = _fit_cached_lin(config, root, run_dir, callbacks, progress,
                                                                      verbose)
        else:
            model, history, selection_index, backup = _fit_images(config, root, run_dir, scope, callbacks, verbose)
    metric = model.metric.with_options(dropout=0.0) if getattr(model.metric, "dropout", 0.0) else model.metric
    # Under multi-worker training every worker holds the same weights; only the chief writes the result.
    save_dir = run_dir if is_chief() else os.path.join(run_dir, f"worker_{os.getpid()}")
    metric_path = os.path.join(save_dir, "metric.keras")
    save_model_atomic(metric, metric_path)
    if backup is not None:  # kept until now: a kill before the metric is saved resumes after the last epoch
        backup.delete()
    lpips = {"lpips": lambda a, b: metric.predict_on_batch((a, b))}
    if selection_means is not None:
        from keras_percept.training.feature_cache import channel_means_2afc, evaluate_cached

        weights = keras.ops.convert_to_numpy(metric.linear_weights())
        selection = _with_pooled(evaluate_cached(selection_means, weights), list(selection_means["categories"]))
    else:
        selection = _with_pooled(evaluate_2afc(lpips, by_category(selection_index, config))["lpips"],
                                 selection_index.categories)
    evaluation, jnd = {}, {}
    if test:
        distances = dict(classical_distances()) if baselines else {}
        if selection_means is None:
            distances = {**lpips, **distances}
        if distances:
            evaluation = evaluate_2afc(distances, test_datasets(config, root))
        if selection_means is not None:
            d = config.data
            test_means = channel_means_2afc(model.metric, root, "val", d.val_categories, patch_size=d.patch_size,
                                            progress=progress)
            evaluation = {"lpips": evaluate_cached(test_means, weights), **evaluation}
        if baselines:
            jnd = evaluate_jnd_folder({**lpips, **classical_distances()}, root, patch_size=config.data.patch_size,
                                      batch_size=config.data.batch_size)
    return TrainResult(config, metric_path, history, evaluation, time.time() - start, model, jnd, selection)


def _with_pooled(row: dict[str, float], categories: list) -> dict[str, float]:
    """`row` plus `"all"`: the 2AFC over every triplet (categories weighted by their size), as Keras's
    `val_twoafc` pools them; a split carved by photograph has categories of very different sizes."""
    counts = {str(c): categories.count(c) for c in dict.fromkeys(categories)}
    pooled = sum(row[c] * n for c, n in counts.items()) / sum(counts.values())
    return {**row, "all": float(pooled)}


def _compile(model, config: TrainConfig, steps: int, trunk=None) -> None:
    from keras_percept.losses import get_loss
    from keras_percept.metrics.keras_metrics import TwoAFCScore
    from keras_percept.training.optimizers import build_training_optimizer

    model.compile(
        optimizer=build_training_optimizer(config, steps, trunk=trunk),
        loss=get_loss(config.loss),
        metrics=[TwoAFCScore()],
    )


def _steps_per_epoch(config: TrainConfig, train_ds, first_epoch: int) -> int:
    """`steps_per_epoch`, else the batches of one pass; an error when the data holds no full batch.

    `train_ds` holds the batches of epochs `first_epoch ... optim.epochs - 1`.
    """
    steps = config.steps_per_epoch or int(train_ds.cardinality()) // (config.optim.epochs - first_epoch)
    if steps < 1:
        raise ValueError(
            f"The training set has fewer than data.batch_size={config.data.batch_size} triplets; "
            "lower the batch size or add data."
        )
    return steps


def _fit(model, train_ds, selection_ds, config: TrainConfig, callbacks: list, start: int, steps: int, verbose):
    """`model.fit` from epoch `start`, Keras's `val_*` on `selection_ds`; the history of every epoch (those
    before a restart come from the backup)."""
    model.fit(train_ds, validation_data=selection_ds, epochs=config.optim.epochs, initial_epoch=start,
              steps_per_epoch=steps, callbacks=callbacks, verbose=verbose)
    return callbacks[-1].history


def _first_epoch(config: TrainConfig, callbacks: list) -> tuple[int, int]:
    """(epoch `fit` starts at, first epoch of the training data): a backup's epochs done, else 0.

    A run that has nothing left to train still gets one epoch of data (Keras
    draws a batch from it to build the compiled metrics).
    """
    start = callbacks[-1].resume_epoch(config.optim.epochs)
    return start, min(start, config.optim.epochs - 1)


def _fit_images(config: TrainConfig, root: str, run_dir: str, scope, callbacks, verbose):
    from keras_percept.data import TripletAugmentation, dataset_from_index
    from keras_percept.training.model_builder import build_twoafc_model

    d = config.data
    fit, selection = selection_split(config, root)
    # The first batch of the fit part, unshuffled, uncropped and unflipped, with the labels training sees.
    probe = dataset_from_index(fit, patch_size=d.patch_size, batch_size=d.batch_size, prefetch=False,
                               augment=TripletAugmentation(label_smoothing=d.label_smoothing))
    fit_callbacks = build_callbacks(config, run_dir, probe, callbacks)
    start, first = _first_epoch(config, fit_callbacks)
    train_ds, selection_ds = make_datasets(config, fit, selection, first_epoch=first)
    steps = _steps_per_epoch(config, train_ds, first)
    with scope:
        model = build_twoafc_model(config)
        _compile(model, config, steps, trunk=model.metric.backbone)
    history = _fit(model, train_ds, selection_ds, config, fit_callbacks, start, steps, verbose)
    return model, history, selection, fit_callbacks[-1]


def _fit_cached_lin(config: TrainConfig, root: str, run_dir: str, callbacks, progress: bool, verbose):
    """`lin` from cached channel means: the trunk runs once per dataset, not once per epoch."""
    from keras_percept.training.feature_cache import (
        CachedLinModel,
        assign_linear_weights,
        cached_dataset,
        channel_means,
        has_cached_means,
        solve_lbfgs,
    )
    from keras_percept.training.model_builder import build_twoafc_model

    d = config.data
    model = build_twoafc_model(config)
    parts = selection_split(config, root, verify="header")  # enough to find cached means
    if not all(has_cached_means(model.metric, part, patch_size=d.patch_size) for part in parts):
        parts = selection_split(config, root)  # decodes every file once: errors name it before the trunk runs
    means = {name: channel_means(model.metric, part, patch_size=d.patch_size, progress=progress)
             for name, part in zip(("fit", "selection"), parts)}
    if config.lin_solver == "lbfgs":
        weights, info = solve_lbfgs(means["fit"], keras.ops.convert_to_numpy(model.metric.linear_weights()),
                                    l1=config.lin_l1)
        assign_linear_weights(model.metric, weights)
        model.comparison.scale_weight.assign(1.0)
        history = {"lbfgs_loss": [info["loss"]], "lbfgs_iterations": [float(info["iterations"])]}
        return model, history, means["selection"], None
    cached = CachedLinModel(model.metric, model.comparison, dropout=config.model.dropout, name="cached_lin")
    smoothed = dict(means["fit"], h=means["fit"]["h"] * (1 - d.label_smoothing) + 0.5 * d.label_smoothing)
    probe = ((smoothed["m0"][:d.batch_size], smoothed["m1"][:d.batch_size]), smoothed["h"][:d.batch_size])
    fit_callbacks = build_callbacks(config, run_dir, probe, callbacks, monitor_groups={"lin": [cached.linear.kernel]})
    start, first = _first_epoch(config, fit_callbacks)
    train_ds = cached_dataset(smoothed, d.batch_size, shuffle=True, seed=config.seed, drop_remainder=True,
                              epochs=config.optim.epochs, first_epoch=first, steps_per_epoch=config.steps_per_epoch)
    steps = _steps_per_epoch(config, train_ds, first)
    _compile(cached, config, steps)
    history = _fit(cached, train_ds, cached_dataset(means["selection"], d.batch_size), config, fit_callbacks, start,
                   steps, verbose)
    cached.write_back(model.metric)
    return model, history, means["selection"], fit_callbacks[-1]
