"""IQA training configuration: YAML → validated dataclasses, as `keras_percept.training.config` does for 2AFC.

`load_iqa_config` merges, in order: the dataclass defaults, a YAML file
(keys as in `configs/iqa/compare.yaml`), and `key.sub=value` overrides.
The optimizer block is the 2AFC `OptimConfig` (same keys, same builder),
with IQA defaults.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from keras_percept.experiment.config import (
    check_choice,
    check_positive_int,
    check_range,
    merge_config,
    parse_override,
    read_yaml,
)
from keras_percept.training.config import NETS, OPTIMIZERS, SCHEDULES, STRATEGIES, OptimConfig, check_trunk_weights

#: `loss_type` → the `keras_percept.losses` registry name.
LOSS_TYPES: dict[str, str] = {
    "l1": "l1",
    "l2": "l2",
    "plcc": "plcc",
    "srcc": "srcc",
    "rank": "pairwise_rank",
    "fidelity": "fidelity",
}
MODES = ("nr", "fr")
LAYOUTS = ("auto", "koniq", "generic")
POOLINGS = ("avg", "avg_std")
FUSIONS = ("concat", "attention")
FEATURE_CACHE = ("auto", True, False)


@dataclass
class IQADataConfig:
    """Where images and MOS come from.

    `dataset: embedded` uses the embedded real-photo distorted images with
    SIMULATED MOS (`keras_percept.data.mos.embedded_mos`): its `train` split
    for training and its `val` split (other photos, other distortion
    families) for testing, `n_train` / `n_test` images of each (null: the
    reader's defaults, 1,600 / 600). Otherwise `dataset` is a MOS CSV
    (`read_mos_csv` with `image_dir`, `layout`, `mos_column`), split by
    image with `test_fraction`. `seed` picks the split / subset / simulated
    ratings; it is the same for every training seed, so repeats differ only
    in initialisation, shuffling and crops. `judge` rates the embedded set:
    "observer" (simulated 5-point ratings) or "cvvdp" (ratings around each
    patch's ColorVideoVDP JOD; `pip install cvvdp`).

    `val_fraction` of the training images is held out as the validation
    split, which alone drives model selection (per-epoch `val_*` metrics,
    early stopping, the Optuna pruner and objective); the test split is
    scored once, at the end. The validation split shares no content with
    the training images: for a CSV it is split like the test split (by
    reference image, or by image); for the embedded set it is split by
    source photograph (`round(val_fraction * 7)` of the train split's 7
    photos), because its reference patches are overlapping crops of a few
    photographs, so a split by reference patch would put the same pixels in
    both. (Its distortion families are shared with training: holding those
    out too would drop most of the remaining images; the test split has
    new photos and new families.) `0` turns validation off (then no early
    stopping).
    """

    dataset: str = "embedded"
    judge: str = "observer"
    image_dir: str | None = None
    layout: str = "auto"
    mos_column: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    patch_size: int = 64
    train_patch_num: int = 1
    test_patch_num: int = 1
    batch_size: int = 32
    seed: int = 0


@dataclass
class IQAModelConfig:
    """`keras_percept.models.IQAModel` arguments, plus `trunk_weights` ("imagenet" or null: random init)."""

    net: str = "effnet-lite0"
    mode: str = "nr"
    taps: list[int] | None = None
    pooling: str = "avg"
    fusion: str = "concat"
    fusion_dim: int = 128
    hidden: int = 128
    dropout: float = 0.0
    drop_path: float = 0.0
    trunk_trainable: bool = False
    trunk_weights: str | None = "imagenet"


def _iqa_optim() -> OptimConfig:
    return OptimConfig(optimizer="adamw", learning_rate=1e-3, beta_1=0.9, weight_decay=1e-4, schedule="cosine",
                       epochs=20, warmup_epochs=1.0, trunk_lr_factor=0.1)


@dataclass
class IQAConfig:
    """Everything an IQA training run needs.

    `loss_type` is one of `LOSS_TYPES` (`rank` is `pairwise_rank_loss`);
    `loss_kwargs` go to the loss class (e.g. `{temperature: 0.05}` for srcc,
    `{sigma: 0.5}` for fidelity). `early_stopping_patience`: epochs without a
    better validation SRCC (`val_srcc`, on `data.val_fraction` of the
    training images, never the test split) before stopping; the best epoch's
    weights are restored. `restarts`: `keras-percept iqa train` trains seeds
    `seed`, `seed + 1`, ... and keeps the one with the best validation SRCC
    (the experiment core's `run_experiment`). `feature_cache`: with a frozen trunk ("auto" or true) the
    pooled trunk features of each patch are computed once and only the head
    trains (exact: a frozen trunk gives the same features every epoch), but
    the training patches are then drawn once, not once per epoch.
    """

    model: IQAModelConfig = field(default_factory=IQAModelConfig)
    data: IQADataConfig = field(default_factory=IQADataConfig)
    optim: OptimConfig = field(default_factory=_iqa_optim)
    loss_type: str = "l1"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    early_stopping_patience: int | None = None
    feature_cache: Any = "auto"
    seed: int = 0
    restarts: int = 1
    strategy: str = "auto"
    output_dir: str = "runs/iqa"
    experiment: str = "keras_percept-iqa"
    tracking_uri: str | None = None
    steps_per_epoch: int | None = None

    @property
    def paradigm(self) -> str:
        """"tune" with a trainable trunk, else "lin": how `build_training_optimizer` splits trunk and head rates."""
        return "tune" if self.model.trunk_trainable else "lin"

    def uses_feature_cache(self) -> bool:
        """True when training runs on cached pooled features (frozen trunk, cache not turned off)."""
        return self.feature_cache is not False and not self.model.trunk_trainable

    def validate(self) -> "IQAConfig":
        """Raises `ValueError` naming the first invalid key; returns self."""
        m, d, o = self.model, self.data, self.optim
        check_choice("loss_type", self.loss_type, tuple(LOSS_TYPES))
        if not isinstance(self.loss_kwargs, Mapping):
            raise ValueError(f"`loss_kwargs` must be a mapping. Received: {self.loss_kwargs!r}")
        try:
            from keras_percept.losses import get_loss

            get_loss(LOSS_TYPES[self.loss_type], **self.loss_kwargs)
        except TypeError as err:
            raise ValueError(f"`loss_kwargs` must be arguments of loss {self.loss_type!r}. "
                             f"Received: {dict(self.loss_kwargs)!r} ({err})") from None
        check_choice("model.net", m.net, NETS)
        check_choice("model.mode", m.mode, MODES)
        check_choice("model.pooling", m.pooling, POOLINGS)
        check_choice("model.fusion", m.fusion, FUSIONS)
        check_trunk_weights(m.net, m.trunk_weights)
        check_choice("data.layout", d.layout, LAYOUTS)
        check_choice("optim.optimizer", o.optimizer, OPTIMIZERS)
        check_choice("optim.schedule", o.schedule, SCHEDULES)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("feature_cache", self.feature_cache, FEATURE_CACHE)
        if m.taps is not None and (not isinstance(m.taps, list) or not m.taps
                                   or not all(isinstance(t, int) and not isinstance(t, bool) for t in m.taps)):
            raise ValueError(f"`model.taps` must be a non-empty list of tap indices or null. Received: {m.taps!r}")
        check_range("model.dropout", m.dropout, 0.0, 1.0, high_open=True)
        check_range("model.drop_path", m.drop_path, 0.0, 1.0, high_open=True)
        check_range("optim.weight_decay", o.weight_decay, 0.0, None)
        check_range("optim.warmup_epochs", o.warmup_epochs, 0.0, None)
        if not isinstance(d.test_fraction, (int, float)) or not 0.0 < d.test_fraction < 1.0:
            raise ValueError(f"`data.test_fraction` must be in (0, 1). Received: {d.test_fraction!r}")
        if isinstance(d.val_fraction, bool) or not isinstance(d.val_fraction, (int, float)) \
                or not 0.0 <= d.val_fraction < 1.0:
            raise ValueError(f"`data.val_fraction` must be in [0, 1). Received: {d.val_fraction!r}")
        if self.early_stopping_patience is not None and d.val_fraction == 0:
            raise ValueError("`early_stopping_patience` needs a validation split (`data.val_fraction` > 0): early "
                             f"stopping never looks at the test split. Received: data.val_fraction={d.val_fraction}")
        for name, value in (("model.fusion_dim", m.fusion_dim), ("model.hidden", m.hidden),
                            ("data.patch_size", d.patch_size), ("data.train_patch_num", d.train_patch_num),
                            ("data.test_patch_num", d.test_patch_num), ("optim.epochs", o.epochs),
                            ("restarts", self.restarts)):
            check_positive_int(name, value)
        if self.restarts > 1 and d.val_fraction == 0:
            raise ValueError("`restarts` > 1 needs a validation split (`data.val_fraction` > 0) to choose among the "
                             f"seeds: the test split is never used for a choice. Received: restarts={self.restarts}, "
                             f"data.val_fraction={d.val_fraction}")
        if isinstance(d.batch_size, bool) or not isinstance(d.batch_size, int) or d.batch_size < 2:
            raise ValueError("`data.batch_size` must be an integer >= 2 (the rank losses compare samples within "
                             f"a batch). Received: {d.batch_size!r}")
        for name, value in (("data.n_train", d.n_train), ("data.n_test", d.n_test),
                            ("early_stopping_patience", self.early_stopping_patience),
                            ("steps_per_epoch", self.steps_per_epoch)):
            if value is not None:
                check_positive_int(name, value)
        if isinstance(o.learning_rate, bool) or not isinstance(o.learning_rate, (int, float)) \
                or not o.learning_rate > 0:
            raise ValueError(f"`optim.learning_rate` must be a number > 0. Received: {o.learning_rate!r}")
        if o.global_clipnorm is not None and not o.global_clipnorm > 0:
            raise ValueError(f"`optim.global_clipnorm` must be > 0 or null. Received: {o.global_clipnorm!r}")
        if o.unfreeze_every_epochs is not None and not m.trunk_trainable:
            raise ValueError("`optim.unfreeze_every_epochs` needs `model.trunk_trainable: true`. "
                             f"Received: model.trunk_trainable={m.trunk_trainable!r}")
        if self.feature_cache is True and m.trunk_trainable:
            raise ValueError("`feature_cache: true` needs a frozen trunk (`model.trunk_trainable: false`). "
                             "Received: model.trunk_trainable=True")
        if d.dataset != "embedded" and not os.path.isfile(d.dataset):
            raise ValueError(f"`data.dataset` must be 'embedded' or a MOS CSV file. Received: {d.dataset!r} "
                             "(not a file)")
        if d.judge not in ("observer", "cvvdp"):
            raise ValueError(f"`data.judge` must be one of ('observer', 'cvvdp'). Received: {d.judge!r}")
        if d.dataset == "embedded" and d.patch_size > 64:
            raise ValueError("`data.patch_size` must be <= 64 for the embedded dataset (its images are 64 x 64). "
                             f"Received: {d.patch_size}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def iqa_config_from_dict(values: Mapping) -> IQAConfig:
    """Builds and validates an `IQAConfig` from nested plain data (unknown keys are errors).

    Example:

    >>> iqa_config_from_dict({"loss_type": "srcc", "optim": {"epochs": 3}}).optim.epochs
    3
    """
    defaults = dataclasses.asdict(IQAConfig())
    # `loss_kwargs` is free-form: merged as a whole, not key by key against the (empty) default.
    loss_kwargs = dict(values.get("loss_kwargs") or {}) if isinstance(values.get("loss_kwargs", {}), Mapping) \
        else values["loss_kwargs"]
    merged = merge_config(defaults, {k: v for k, v in values.items() if k != "loss_kwargs"})
    config = IQAConfig(
        **{k: v for k, v in merged.items() if k not in ("model", "data", "optim", "loss_kwargs")},
        loss_kwargs=loss_kwargs,
        model=IQAModelConfig(**merged["model"]),
        data=IQADataConfig(**merged["data"]),
        optim=OptimConfig(**merged["optim"]),
    )
    return config.validate()


def load_iqa_config(path: str | os.PathLike | None = None, *, overrides: Sequence[str] = ()) -> IQAConfig:
    """Defaults ← YAML file ← `key=value` overrides, validated.

    A YAML file may hold a `compare:` block (read by `compare_losses`); it is
    not part of the training config and is ignored here.

    Example:

    >>> cfg = load_iqa_config("configs/iqa/compare.yaml", overrides=["loss_type=srcc"])  # doctest: +SKIP
    """
    values = read_config_file(path)
    values.pop("compare", None)
    for text in overrides:
        update = parse_override(text)
        if "loss_kwargs" in update:
            values["loss_kwargs"] = {**(values.get("loss_kwargs") or {}), **update.pop("loss_kwargs")}
        values = _merge_plain(values, update)
    return iqa_config_from_dict(values)


def read_config_file(path: str | os.PathLike | None) -> dict[str, Any]:
    """The YAML mapping in `path` (`{}` for None)."""
    if path is None:
        return {}
    with open(path) as f:
        loaded = read_yaml(f) or {}
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{str(path)!r} must hold a YAML mapping. Received: {type(loaded).__name__}")
    return dict(loaded)


def _merge_plain(base: Mapping, update: Mapping) -> dict:
    """Nested dict update without key checks (the checks happen once, against the defaults)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_plain(out[key], value)
        else:
            out[key] = value
    return out
