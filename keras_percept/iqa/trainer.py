"""One IQA training run: config → MOS tables (train / val / test) → patches → `IQAModel` → fit → test scores.

Model selection (per-epoch `val_*` metrics, early stopping, the Optuna
pruner) sees only the validation split, carved from the training images;
the test split is scored once, with the weights that were kept.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
import time
from typing import Any, Callable

import keras
import numpy as np
import yaml

from keras_percept.callbacks import EpochSeeds, GradientNorm, ResumableBackup, ResumableEarlyStopping
from keras_percept.iqa.config import LOSS_TYPES, IQAConfig
from keras_percept.experiment.config import config_fingerprint

#: The per-epoch validation metrics added to Keras's logs (`val_` + the keys of `iqa_scores`).
TEST_METRICS = ("srcc", "plcc", "plcc_raw", "krcc", "rmse")


@dataclasses.dataclass
class IQAResult:
    """What `train_iqa` produced.

    `scores` are the saved (kept) model's `iqa_scores` on the test split;
    `val_scores` the same model's on the validation split (empty without
    one), which is what model selection may use.
    """

    config: IQAConfig
    model_path: str
    history: dict[str, list[float]]
    scores: dict[str, float]
    seconds: float
    model: Any = None
    val_scores: dict[str, float] = dataclasses.field(default_factory=dict)


class IQAEvaluation(keras.callbacks.Callback):
    """Each epoch, predicts the validation split, averages each image's patches and adds `val_srcc`, `val_plcc`, ... to the logs.

    Keras's `validation_data` would give the loss on patches; IQA is scored
    per image with rank and (logistic-mapped) linear correlations over the
    whole split, which no batch-wise `keras.metrics.Metric` computes
    exactly, hence this callback. Place it before `EarlyStopping` and the
    loggers: they read the same `logs` dict after it. `train_iqa` gives it
    the validation split; the test split is scored once, after training.

    Args:
        predict: returns the per-patch predictions of the split, in table order.
        mos: the split's MOS, `(N,)`.
        patches_per_image: patches per image (consecutive in `predict`'s output).

    Example:

    >>> cb = IQAEvaluation(lambda: model.predict(val_ds, verbose=0), val.mos, 4)  # doctest: +SKIP
    """

    def __init__(self, predict: Callable[[], np.ndarray], mos: np.ndarray, patches_per_image: int):
        super().__init__()
        self.predict = predict
        self.mos = np.asarray(mos, dtype=np.float64)
        self.patches_per_image = patches_per_image

    def scores(self) -> dict[str, float]:
        from keras_percept.data.mos import average_over_patches
        from keras_percept.metrics.iqa import iqa_scores

        predictions = np.asarray(self.predict(), dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(predictions)):
            return {name: float("nan") for name in TEST_METRICS}
        return iqa_scores(self.mos, average_over_patches(predictions, self.patches_per_image))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in self.scores().items()})


def load_tables(config: IQAConfig):
    """(train, val, test) `MOSTable`s; val is None for `data.val_fraction: 0`.

    Embedded: train and val come from the embedded train split, split by
    source photograph; test is the embedded val split (other photos, other
    distortion families). CSV: test is split off by image (by reference),
    then val from the rest the same way. For `model.mode: nr` the reference
    paths are dropped (the pipeline then yields single patches); `mode: fr`
    needs a table with references.
    """
    from keras_percept.data.mos import embedded_mos, read_mos_csv, split_by_image

    d = config.data
    if d.dataset == "embedded":
        train = embedded_mos(split="train", n_images=d.n_train, seed=d.seed, judge=d.judge)
        test = embedded_mos(split="val", n_images=d.n_test, seed=d.seed, judge=d.judge)
        groups = embedded_photos(train, seed=d.seed, judge=d.judge)
    else:
        table = read_mos_csv(d.dataset, d.image_dir, layout=d.layout, mos_column=d.mos_column)
        train, test = split_by_image(table, test_fraction=d.test_fraction, seed=d.seed)
        groups = None
    val = None
    if d.val_fraction:
        train, val = split_by_image(train, test_fraction=d.val_fraction, seed=d.seed, groups=groups)
    if config.model.mode == "nr":
        drop = lambda t: None if t is None else dataclasses.replace(t, ref_paths=None)  # noqa: E731
        return drop(train), drop(val), drop(test)
    if not train.full_reference:
        raise ValueError(f"`model.mode: fr` needs reference images (a `ref` column). Received: {d.dataset!r} "
                         "has none")
    return train, val, test


def embedded_photos(table, *, seed: int = 0, judge: str = "observer") -> list[str]:
    """The source photograph of each row of an `embedded_mos(split="train", seed=seed)` table (the CSV's `photo` column)."""
    from keras_percept.data import embedded
    from keras_percept.data.embedded.ratings import write_mos_csv

    root = embedded.build(judge=judge)
    with open(write_mos_csv(root, "train", seed=seed), newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        photo = {os.path.abspath(os.path.join(root, row["filename"])): row["photo"] for row in rows}
    return [photo[os.path.abspath(path)] for path in table.paths]


def build_iqa_model(config: IQAConfig, *, trunk_memo: dict | None = None):
    """The `IQAModel` of `config.model`, with the pretrained trunk for `trunk_weights: imagenet`.

    `trunk_memo`, a dict shared between calls, keeps the pretrained trunk's
    weights (and their fingerprint, for the feature cache's key), so that a
    comparison reads and hashes them once.

    Example:

    >>> model = build_iqa_model(load_iqa_config(overrides=["model.trunk_weights=null"]))  # doctest: +SKIP
    """
    from keras_percept.models.iqa import IQAModel
    from keras_percept.training.model_builder import load_pretrained_trunk

    m = config.model
    model = IQAModel(net=m.net, mode=m.mode, taps=m.taps, pooling=m.pooling, fusion=m.fusion,
                     fusion_dim=m.fusion_dim, hidden=m.hidden, dropout=m.dropout, drop_path=m.drop_path,
                     trunk_trainable=m.trunk_trainable, seed=config.seed, name="iqa")
    if m.trunk_weights is not None:
        key = ("trunk", m.net, m.trunk_weights)
        if trunk_memo is not None and key in trunk_memo:
            model.backbone.set_weights(trunk_memo[key][0])
        else:
            load_pretrained_trunk(model, m.trunk_weights)  # uses only `.net` and `.backbone`
            if trunk_memo is not None:
                trunk_memo[key] = (model.backbone.get_weights(), _fingerprint(model.backbone.weights))
    return model


def _fingerprint(variables) -> str:
    h = hashlib.sha1()
    for variable in variables:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return h.hexdigest()


def run_directory(config: IQAConfig) -> str:
    """`<output_dir>/<net>_<mode>_<loss_type>_seed<seed>`."""
    m = config.model
    return os.path.join(config.output_dir, f"{m.net}_{m.mode}_{config.loss_type}_seed{config.seed}")


def train_iqa(config: IQAConfig, *, callbacks=(), verbose: int | str = "auto",
              feature_memo: dict | None = None, test: bool = True) -> IQAResult:
    """Trains an IQA model as `config` says; saves `<run dir>/model.keras` and `<run dir>/config.yaml`.

    `model.fit` runs under `select_strategy(config.strategy)`. With a frozen
    trunk (and `feature_cache` not false) the pooled trunk features of the
    training patches (`train_patch_num` per image, drawn once from `seed`)
    and of the fixed validation and test patches are computed once, and
    `fit` trains the head on them (`PooledIQAHead`). `feature_memo`, a dict
    shared between calls, keeps the MOS tables and those features for runs
    with the same data, trunk and patches (e.g. the losses of one
    comparison). Each epoch the validation split (`data.val_fraction` of
    the training images) is scored per image (`IQAEvaluation`: `val_srcc`,
    `val_plcc`, `val_plcc_raw`, `val_krcc`, `val_rmse` in the history and
    in the logs that `callbacks` see); with `early_stopping_patience`
    training stops when `val_srcc` has not improved for that many epochs,
    and the best epoch's weights are kept. The test split is scored once,
    with the kept weights (`IQAResult.scores`; empty with `test=False`, as
    tuning trials run: they never read the test split). A NaN loss stops training
    (`TerminateOnNaN`). A killed run started again with the same config
    resumes from its last finished epoch (`ResumableBackup` in
    `<run dir>/backup`, with the early-stopping state) and ends with the
    uninterrupted run's weights: each epoch's patch order, crops and dropout
    draws come from (seed, epoch).

    Example:

    >>> result = train_iqa(load_iqa_config("configs/iqa/compare.yaml", overrides=["optim.epochs=2"]))  # doctest: +SKIP
    >>> result.scores["srcc"], result.val_scores["srcc"]  # doctest: +SKIP
    """
    from keras_percept.convert import save_model_atomic
    from keras_percept.data.mos import mos_patch_dataset
    from keras_percept.losses import get_loss
    from keras_percept.training.optimizers import build_training_optimizer
    from keras_percept.training.strategy import select_strategy

    start = time.time()
    memo = {} if feature_memo is None else feature_memo
    scope = _reusable_scope(select_strategy(config.strategy))  # before any TensorFlow op (multi-worker)
    keras.utils.set_random_seed(config.seed)
    d = config.data
    tables_key = ("tables", repr(dataclasses.astuple(d)), config.model.mode)
    if tables_key not in memo:  # reading and checking the images costs seconds per run
        memo[tables_key] = load_tables(config)
    train_table, val_table, test_table = memo[tables_key]
    fixed_patches = lambda table: mos_patch_dataset(  # noqa: E731
        table, patch_size=d.patch_size, patches_per_image=d.test_patch_num, training=False,
        batch_size=d.batch_size, seed=d.seed)
    run_dir = run_directory(config)
    os.makedirs(run_dir, exist_ok=True)
    stopping = None
    if config.early_stopping_patience:
        stopping = ResumableEarlyStopping(monitor="val_srcc", mode="max", patience=config.early_stopping_patience,
                                          restore_best_weights=True)
    backup = ResumableBackup(os.path.join(run_dir, "backup"), companions=[stopping] if stopping else [],
                             fingerprint=config_fingerprint(config), delete_checkpoint=False)
    epochs = config.optim.epochs
    resume_at = backup.resume_epoch(epochs)
    first = min(resume_at, epochs - 1)  # a finished run still gets one epoch of data (Keras builds on a batch)
    with scope():
        model = build_iqa_model(config, trunk_memo=memo)
    if config.uses_feature_cache():
        train_ds, predict, fit_model, probe = _cached_head(config, model, train_table, val_table, test_table, memo,
                                                           scope, first)
    else:
        train_ds = mos_patch_dataset(train_table, patch_size=d.patch_size, patches_per_image=d.train_patch_num,
                                     training=True, batch_size=d.batch_size, seed=config.seed, drop_remainder=True,
                                     epochs=epochs, first_epoch=first, steps_per_epoch=config.steps_per_epoch)
        fit_model = model
        probe = mos_patch_dataset(train_table, patch_size=d.patch_size, training=False, batch_size=d.batch_size,
                                  seed=d.seed)  # fixed crops: the same batch in every epoch and process
        splits = {"val": val_table, "test": test_table}
        datasets = {name: fixed_patches(t) for name, t in splits.items() if t is not None}
        predict = {name: (lambda ds=ds: model.predict(ds, verbose=0)) for name, ds in datasets.items()}
    steps = config.steps_per_epoch or max(1, (len(train_table) * d.train_patch_num) // d.batch_size)
    with scope():
        fit_model.compile(optimizer=build_training_optimizer(config, steps, trunk=model.backbone),
                          loss=get_loss(LOSS_TYPES[config.loss_type], **config.loss_kwargs))
    fit_callbacks = [keras.callbacks.TerminateOnNaN(), EpochSeeds(config.seed), GradientNorm(probe)]
    validation = None
    if val_table is not None:
        validation = IQAEvaluation(predict["val"], val_table.mos, d.test_patch_num)
        fit_callbacks.insert(0, validation)
    if stopping is not None:
        fit_callbacks.append(stopping)
    fit_model.fit(train_ds, epochs=epochs, initial_epoch=resume_at, steps_per_epoch=steps,
                  callbacks=fit_callbacks + list(callbacks) + [backup], verbose=verbose, shuffle=False)
    history = backup.history  # every epoch's, those before a restart too
    # Of the weights kept (the best validation epoch's under early stopping); the test split's only use.
    val_scores = validation.scores() if validation is not None else {}
    scores = IQAEvaluation(predict["test"], test_table.mos, d.test_patch_num).scores() if test else {}
    model_path = os.path.join(run_dir, "model.keras")
    save_model_atomic(model, model_path)
    backup.delete()  # kept until now: a kill before the model is saved resumes after the last epoch
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    return IQAResult(config, model_path, history, scores, time.time() - start, model, val_scores)


def _cached_head(config: IQAConfig, model, train_table, val_table, test_table, memo: dict, scope, first_epoch: int):
    """(train dataset of pooled features, {"val", "test"} → predictor, `PooledIQAHead`, a fixed probe batch of
    the training features for `GradientNorm`) for a frozen trunk.

    The training batches are those of epochs `first_epoch ... optim.epochs - 1`, in an order drawn from (seed, epoch).
    """
    from keras_percept.data.epochs import tensor_batches
    from keras_percept.data.mos import mos_patch_dataset
    from keras_percept.models.iqa import PooledIQAHead

    d = config.data
    key = _feature_key(config, model, memo)
    if key not in memo:
        extractor = _PooledFeatures(model, name="pooled_features")
        train_patches = mos_patch_dataset(train_table, patch_size=d.patch_size, patches_per_image=d.train_patch_num,
                                          training=True, batch_size=max(d.batch_size, 64), seed=config.seed)
        features = {"train": _extract(extractor, train_patches)}
        for name, table in (("val", val_table), ("test", test_table)):
            if table is not None:
                fixed = mos_patch_dataset(table, patch_size=d.patch_size, patches_per_image=d.test_patch_num,
                                          training=False, batch_size=max(d.batch_size, 64), seed=d.seed)
                features[name] = _extract(extractor, fixed)[0]
        memo[key] = features
    features = memo[key]
    train_x, train_y = features["train"]
    with scope():  # `fit` distributes over the strategy the model was created in
        head = PooledIQAHead(model, name="iqa_head")
    train_ds = tensor_batches((train_x, train_y), d.batch_size, shuffle=True, seed=config.seed, drop_remainder=True,
                              epochs=config.optim.epochs, first_epoch=first_epoch,
                              steps_per_epoch=config.steps_per_epoch).prefetch(2)
    # One direct call on all pooled vectors (a few hundred): `predict` would trace a function per split size.
    predict = {name: (lambda x=x: keras.ops.convert_to_numpy(head(x, training=False)))
               for name, x in features.items() if name != "train"}
    first_rows = lambda a: a[:d.batch_size]  # noqa: E731
    return train_ds, predict, head, keras.tree.map_structure(first_rows, (train_x, train_y))


def _reusable_scope(scope) -> Callable[[], Any]:
    """A function returning a fresh scope of `select_strategy`'s strategy at each call.

    A `tf.distribute` scope can be entered only once; the model, the cached
    head and the compile step each need one, of the same strategy.
    """
    if keras.backend.backend() != "tensorflow":
        return lambda: scope  # a nullcontext (data_parallel sets a global distribution)
    import tensorflow as tf

    with scope:
        strategy = tf.distribute.get_strategy()
    return strategy.scope


class _PooledFeatures(keras.Model):
    """`IQAModel.pooled_features` as a model, so that `predict_on_batch` runs compiled on every backend."""

    def __init__(self, iqa_model, **kwargs):
        super().__init__(**kwargs)
        self.iqa_model = iqa_model

    def call(self, inputs):
        return self.iqa_model.pooled_features(inputs, training=False)


def _extract(extractor, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, MOS) of one pass over `dataset`, read in the same pass (the training order reshuffles)."""
    features, labels = [], []
    for x, y in dataset.as_numpy_iterator():  # NumPy: JAX and torch do not take TensorFlow tensors
        features.append(np.asarray(extractor.predict_on_batch(x), dtype=np.float32))
        labels.append(np.asarray(y, dtype=np.float32))
    return np.concatenate(features), np.concatenate(labels)


def _feature_key(config: IQAConfig, model, memo: dict) -> str:
    """What the cached features depend on: trunk weights, pooling/taps/mode, data and patch settings, seed."""
    m, d = config.model, config.data
    pretrained = memo.get(("trunk", m.net, m.trunk_weights)) if m.trunk_weights is not None else None
    trunk = pretrained[1] if pretrained is not None else _fingerprint(model.backbone.weights)
    return repr((trunk, m.net, m.mode, m.taps, m.pooling, d.dataset, d.image_dir, d.layout, d.mos_column, d.n_train,
                 d.n_test, d.test_fraction, d.val_fraction, d.patch_size, d.train_patch_num, d.test_patch_num,
                 d.seed, config.seed))


def check_finite_run(result: IQAResult) -> None:
    """Raises `FloatingPointError` when a loss went NaN/inf or the SRCC of a scored split (test, else
    validation: a tuning trial scores no test split) is not finite (a failed run)."""
    from keras_percept.experiment.task import check_finite_history

    check_finite_history(result.history)
    split, scores = ("test", result.scores) if result.scores else ("validation", result.val_scores)
    if not math.isfinite(scores.get("srcc", float("nan"))):
        raise FloatingPointError(f"The {split} SRCC is {scores.get('srcc')}: the predictions are not finite.")
