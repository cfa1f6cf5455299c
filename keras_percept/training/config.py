"""Training configuration: YAML → validated dataclasses; the resolved config is logged.

Every key is a keyword argument of the code it configures (see README,
"Training configuration"). `load_config` merges, in order: the paradigm's
defaults, a YAML file, and `key.sub=value` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from keras_percept.adversarial import PGD
from keras_percept.backbones import TRUNKS
from keras_percept.experiment.config import (
    check_choice,
    check_positive_int,
    check_range,
    get_dotted,
    merge_config,
    parse_override,
    read_yaml,
)

PARADIGMS = ("lin", "tune", "scratch")
METRICS = ("lpips", "dists")
NETS = tuple(TRUNKS)
COMPARISONS = ("dist2logit", "difference", "log_ratio")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("reference", "constant", "cosine", "step", "linear", "exponential", "cosine_restarts")
NONNEG = ("projection", "penalty", "barrier")
STRATEGIES = ("auto", "none", "mirrored", "multiworker", "data_parallel")
FEATURE_CACHE = ("auto", True, False)
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
LIN_SOLVERS = ("fit", "lbfgs")


def check_trunk_weights(net: str, trunk_weights: str | None) -> None:
    """`model.trunk_weights` must be None or a source `net` has (`Trunk.trunk_sources`)."""
    allowed = (*TRUNKS[net].trunk_sources, None)
    if trunk_weights not in allowed:
        raise ValueError(f"Argument `model.trunk_weights` must be one of {list(allowed)} for model.net={net!r}. "
                         f"Received: model.trunk_weights={trunk_weights!r}")


@dataclass
class ModelConfig:
    """The metric being trained.

    `metric`: "lpips" (per-channel linear weights on squared differences of
    normalised features) or "dists" (DISTS's structure and texture terms with
    learned alpha/beta on the same trunk; `net: vgg` is the published DISTS
    layout, VGG16 with L2 pooling; `dropout` does not apply to it).
    `trunk_weights`: "imagenet" (pretrained; the shipped EfficientNet-Lite0 for
    effnet-lite0), "published" (the ST-LPIPS trunk of `alex-st` / `vgg-st`)
    or None (random, the `scratch` paradigm). `dropout` is the
    rate before each linear layer (the reference trains with 0.5).
    """

    metric: str = "lpips"
    net: str = "effnet-lite0"
    version: str = "0.1"
    trunk_weights: str | None = "imagenet"
    dropout: float = 0.5
    comparison: str = "dist2logit"
    comparison_hidden: int = 32


@dataclass
class DataConfig:
    """Where triplets come from. `dataset`: "embedded" (built offline) or a BAPPS root folder.

    `judge` labels the embedded set: "observer" (simulated) or "cvvdp" (ColorVideoVDP, `pip install cvvdp`);
    `hold_out_families: false` tests it on the training families (photographs still held out).
    `selection_fraction` of the training triplets form the selection split
    (`keras_percept.data.selection`), which early stopping, the choice among
    restarts and tuning see; the `val` split is the test split, scored once.
    The carve is seeded by `seed`, so every restart and trial shares it.
    """

    dataset: str = "embedded"
    judge: str = "observer"
    hold_out_families: bool = True
    train_categories: list[str] | None = None
    val_categories: list[str] | None = None
    patch_size: int = 64
    batch_size: int = 50
    n_train: int = 4000
    n_val: int = 1200
    n_jnd: int = 1200
    seed: int = 0
    selection_fraction: float = 0.2
    crop_size: int | None = None
    flip_left_right: bool = False
    flip_up_down: bool = False
    mixup_alpha: float = 0.0
    label_smoothing: float = 0.0


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule.

    `schedule="reference"` is the paper's: constant for `epochs - decay_epochs`
    epochs, then linear decay to 0 over `decay_epochs` (null: half the epochs,
    the reference's 5 of 10).
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    epsilon: float = 1e-8
    momentum: float = 0.9
    weight_decay: float = 0.0
    global_clipnorm: float | None = None
    schedule: str = "reference"
    epochs: int = 10
    decay_epochs: int | None = None
    warmup_epochs: float = 0.0
    step_every_epochs: int = 3
    step_factor: float = 0.1
    restart_epochs: int = 3
    trunk_lr_factor: float = 0.1
    gradient_accumulation_steps: int | None = None
    unfreeze_every_epochs: int | None = None


@dataclass
class AdversarialConfig:
    """Adversarial training (R-LPIPS): each batch attacked by PGD before the step (`keras_percept.adversarial`).

    `norm: null` trains on clean images. `epsilon` is in the [-1, 1] image range
    (0.0627 = 8/255 of a [0, 1] image); `step_size: null` is 2.5 epsilon / steps;
    `target` is the image moved: ref, p0 or p1. The trunk must see the attacked
    images, so the feature cache is off.
    """

    norm: str | None = None
    epsilon: float = 0.0627
    steps: int = 3
    step_size: float | None = None
    target: str = "ref"

    def pgd_arguments(self) -> dict | None:
        """`PGD` keyword arguments, or None when off."""
        return None if self.norm is None else dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """Everything a training run needs; `paradigm` selects lin / tune / scratch defaults."""

    paradigm: str = "lin"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    loss: str = "bce"
    nonneg: str = "projection"
    nonneg_strength: float | None = None
    l2sp: float = 0.0
    lin_l1: float = 0.0
    lin_penalty: str = "none"
    lin_penalty_strength: float = 0.01
    feature_cache: str = "auto"
    lin_solver: str = "fit"
    early_stopping_patience: int | None = None
    seed: int = 0
    restarts: int = 1
    strategy: str = "auto"
    output_dir: str = "runs"
    experiment: str = "keras_percept"
    tracking_uri: str | None = None
    precision: str = "float32"
    register_model: str | None = None
    steps_per_epoch: int | None = None

    def validate(self) -> "TrainConfig":
        """Raises `ValueError` naming the first invalid key; returns self."""
        check_choice("paradigm", self.paradigm, PARADIGMS)
        check_choice("model.metric", self.model.metric, METRICS)
        check_choice("model.net", self.model.net, NETS)
        if self.model.metric == "dists":
            lin_only = {"nonneg": (self.nonneg, "projection"), "lin_l1": (self.lin_l1, 0.0),
                        "lin_penalty": (self.lin_penalty, "none"), "lin_solver": (self.lin_solver, "fit")}
            for key, (value, default) in lin_only.items():
                if value != default:
                    raise ValueError(f"`{key}` acts on LPIPS's linear weights; `model.metric: dists` keeps alpha/beta "
                                     f"non-negative by projection. Received: {key}={value!r} (expected {default!r})")
        check_choice("model.version", str(self.model.version), ("0.1", "0.0"))
        check_choice("model.comparison", self.model.comparison, COMPARISONS)
        check_trunk_weights(self.model.net, self.model.trunk_weights)
        check_choice("optim.optimizer", self.optim.optimizer, OPTIMIZERS)
        check_choice("optim.schedule", self.optim.schedule, SCHEDULES)
        check_choice("nonneg", self.nonneg, NONNEG)
        check_choice("strategy", self.strategy, STRATEGIES)
        if self.adversarial.norm is not None:
            try:
                PGD(**self.adversarial.pgd_arguments())
            except ValueError as err:
                raise ValueError(f"In `adversarial`: {err}") from None
            if self.feature_cache is True:
                raise ValueError("`feature_cache: true` cannot train adversarially: the trunk must see the attacked "
                                 f"images. Received: adversarial.norm={self.adversarial.norm!r}")
        check_choice("feature_cache", self.feature_cache, FEATURE_CACHE)
        check_choice("lin_solver", self.lin_solver, LIN_SOLVERS)
        check_choice("precision", self.precision, PRECISIONS)
        if self.optim.unfreeze_every_epochs is not None:
            check_positive_int("optim.unfreeze_every_epochs", self.optim.unfreeze_every_epochs)
            if self.paradigm != "tune":
                raise ValueError("`optim.unfreeze_every_epochs` (gradual unfreezing) applies to paradigm 'tune'. "
                                 f"Received: paradigm={self.paradigm!r}")
        steps = self.optim.gradient_accumulation_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 2):
            raise ValueError(f"`optim.gradient_accumulation_steps` must be an integer >= 2 or null. Received: {steps!r}")
        check_range("l2sp", self.l2sp, 0.0, None)
        check_range("lin_l1", self.lin_l1, 0.0, None)
        from keras_percept.regularizers import LIN_PENALTIES

        check_choice("lin_penalty", self.lin_penalty, LIN_PENALTIES)
        if isinstance(self.lin_penalty_strength, bool) or not isinstance(self.lin_penalty_strength, (int, float)) \
                or not self.lin_penalty_strength > 0:
            raise ValueError(f"`lin_penalty_strength` must be a number > 0. Received: {self.lin_penalty_strength!r}")
        if self.lin_penalty != "none" and self.lin_solver == "lbfgs":
            raise ValueError("`lin_solver: lbfgs` solves the convex L1 problem only: use `lin_solver: fit` with a "
                             f"`lin_penalty`. Received: lin_penalty={self.lin_penalty!r}")
        if self.nonneg_strength is not None and not (
                isinstance(self.nonneg_strength, (int, float)) and self.nonneg_strength > 0):
            raise ValueError(f"`nonneg_strength` must be > 0 or null. Received: {self.nonneg_strength!r}")
        if self.early_stopping_patience is not None:
            check_positive_int("early_stopping_patience", self.early_stopping_patience)
        if self.steps_per_epoch is not None:
            check_positive_int("steps_per_epoch", self.steps_per_epoch)
        check_range("model.dropout", self.model.dropout, 0.0, 1.0, high_open=True)
        check_range("data.label_smoothing", self.data.label_smoothing, 0.0, 1.0, high_open=True)
        if not isinstance(self.data.hold_out_families, bool):
            raise ValueError(
                f"`data.hold_out_families` must be true or false. Received: {self.data.hold_out_families!r}")
        if self.data.judge not in ("observer", "cvvdp"):
            raise ValueError(f"`data.judge` must be one of ('observer', 'cvvdp'). Received: {self.data.judge!r}")
        if isinstance(self.data.seed, bool) or not isinstance(self.data.seed, int) or self.data.seed < 0:
            raise ValueError(f"`data.seed` must be an integer >= 0. Received: {self.data.seed!r}")
        check_range("data.mixup_alpha", self.data.mixup_alpha, 0.0, None)
        if isinstance(self.data.selection_fraction, bool) or not isinstance(self.data.selection_fraction, (int, float)) \
                or not 0.0 < self.data.selection_fraction < 1.0:
            raise ValueError("`data.selection_fraction` must be a number in (0, 1) (the share of the training "
                             f"triplets carved out for selection). Received: {self.data.selection_fraction!r}")
        check_range("optim.weight_decay", self.optim.weight_decay, 0.0, None)
        if isinstance(self.optim.trunk_lr_factor, bool) or not isinstance(self.optim.trunk_lr_factor, (int, float)) \
                or not self.optim.trunk_lr_factor > 0:
            raise ValueError(
                "`optim.trunk_lr_factor` must be a number > 0 (use paradigm 'lin' for a frozen trunk). "
                f"Received: {self.optim.trunk_lr_factor!r}")
        for name in ("data.patch_size", "data.batch_size", "data.n_train", "data.n_val", "data.n_jnd", "optim.epochs",
                     "restarts", "model.comparison_hidden"):
            check_positive_int(name, get_dotted(self, name))
        if isinstance(self.optim.learning_rate, bool) or not isinstance(self.optim.learning_rate, (int, float)) \
                or not self.optim.learning_rate > 0:
            raise ValueError(f"`optim.learning_rate` must be a number > 0. Received: {self.optim.learning_rate!r}")
        if self.optim.global_clipnorm is not None and not self.optim.global_clipnorm > 0:
            raise ValueError(f"`optim.global_clipnorm` must be > 0 or null. Received: {self.optim.global_clipnorm!r}")
        if self.optim.decay_epochs is not None and not (
                isinstance(self.optim.decay_epochs, int) and 0 <= self.optim.decay_epochs <= self.optim.epochs):
            raise ValueError(
                f"`optim.decay_epochs` must be in [0, optim.epochs={self.optim.epochs}]. "
                f"Received: {self.optim.decay_epochs!r}"
            )
        if self.feature_cache is True and not self.uses_feature_cache():
            raise ValueError(
                "`feature_cache: true` needs paradigm 'lin' and no image augmentation (crop_size, flips, mixup). "
                f"Received: paradigm={self.paradigm!r}, data={self.data!r}"
            )
        if self.lin_solver == "lbfgs" and not (self.uses_feature_cache() and self.model.comparison == "difference"):
            raise ValueError(
                "`lin_solver: lbfgs` solves the convex lin + difference problem: it needs paradigm 'lin', "
                "model.comparison 'difference' and the feature cache (no augmentation, feature_cache not false). "
                f"Received: paradigm={self.paradigm!r}, model.comparison={self.model.comparison!r}, "
                f"feature_cache={self.feature_cache!r}"
            )
        if self.paradigm == "scratch" and self.model.trunk_weights is not None:
            raise ValueError("Paradigm 'scratch' trains from random init: set model.trunk_weights: null.")
        if self.paradigm in ("lin", "tune") and self.model.trunk_weights is None:
            raise ValueError(f"Paradigm {self.paradigm!r} needs a pretrained trunk: model.trunk_weights one of "
                             f"{TRUNKS[self.model.net].trunk_sources}. Received: model.trunk_weights=None")
        return self

    def uses_feature_cache(self) -> bool:
        """True when `lin` training runs from cached per-channel feature means (see `training.feature_cache`)."""
        d = self.data
        augmented = d.crop_size is not None or d.flip_left_right or d.flip_up_down or d.mixup_alpha > 0
        return (self.feature_cache is not False and self.paradigm == "lin" and not augmented
                and self.adversarial.norm is None and self.model.metric == "lpips")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: What each paradigm changes from the dataclass defaults.
PARADIGM_DEFAULTS: dict[str, dict[str, Any]] = {
    "lin": {},
    "tune": {"optim": {"trunk_lr_factor": 0.1}, "l2sp": 1e-3},
    "scratch": {"model": {"trunk_weights": None}},
}


def from_dict(values: Mapping) -> TrainConfig:
    """Builds and validates a `TrainConfig` from nested plain data (unknown keys are errors)."""
    merged = merge_config(dataclasses.asdict(TrainConfig()), values)
    config = TrainConfig(
        **{k: v for k, v in merged.items() if k not in ("model", "data", "optim", "adversarial")},
        model=ModelConfig(**merged["model"]),
        data=DataConfig(**merged["data"]),
        optim=OptimConfig(**merged["optim"]),
        adversarial=AdversarialConfig(**merged["adversarial"]),
    )
    return config.validate()


def load_config(
    path: str | os.PathLike | None = None,
    *,
    paradigm: str | None = None,
    overrides: Sequence[str] = (),
) -> TrainConfig:
    """Paradigm defaults ← YAML file ← overrides, validated.

    Example:

    >>> cfg = load_config("configs/lin.yaml", overrides=["optim.epochs=2"])  # doctest: +SKIP
    """
    values: dict = {}
    if path is not None:
        with open(path) as f:
            loaded = read_yaml(f) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path!r} must hold a YAML mapping. Received: {type(loaded).__name__}")
        values = dict(loaded)
    chosen = paradigm or values.get("paradigm", "lin")
    check_choice("paradigm", chosen, PARADIGMS)
    layered = merge_config(dataclasses.asdict(TrainConfig()), PARADIGM_DEFAULTS[chosen])
    layered = merge_config(layered, values)
    layered["paradigm"] = chosen
    for text in overrides:
        layered = merge_config(layered, parse_override(text))
    return from_dict(layered)
