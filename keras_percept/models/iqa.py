"""Image-quality regression: a trunk's multi-scale pooled features → one quality score."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops

from keras_percept.backbones import BACKBONES, get_backbone
from keras_percept.layers.drop_path import DropPath
from keras_percept.layers.scale_attention import ScaleAttention
from keras_percept.layers.scaling import InputScaling
from keras_percept.models.presets import SCALING
from keras_percept.presets import PresetMixin

MODES = ("nr", "fr")
POOLINGS = ("avg", "avg_std")
FUSIONS = ("concat", "attention")
INPUT_RANGES = ("[-1,1]", "[0,1]")


@keras.saving.register_keras_serializable(package="keras_percept")
class IQAModel(PresetMixin, keras.Model):
    """Predicts a quality score `(N, 1)` from an image (no-reference) or an image and its reference (full-reference).

    For each selected trunk tap `k` the feature map is pooled over space into
    a branch vector:

    - `mode="nr"`: `avg(f_k(x))`;
    - `mode="fr"`: `[avg(f_k(x)), avg(|f_k(x) - f_k(ref)|)]` (one trunk pass over both images);
    - `pooling="avg_std"` appends the spatial standard deviation of each of those maps.

    Each branch is batch-normalised (the taps' magnitudes differ by orders)
    and drop-path'ed (`DropPath`: a whole scale dropped per sample in
    training). `fusion="concat"` concatenates the branches; `"attention"`
    projects each to `fusion_dim` and weights them by a per-sample softmax
    over scales (`ScaleAttention`). Then dropout, a hidden ReLU layer,
    dropout, and a linear output.

    `pooled_features` and `score_from_pooled` split the model at the pooled
    vectors: with a frozen trunk those are fixed per patch, so training can
    cache them (see `keras_percept.iqa.trainer`).

    Args:
        net: trunk, one of `"alex"`, `"vgg"`, `"squeeze"`, `"effnet-lite0"`. Defaults to `"effnet-lite0"`.
        mode: `"nr"` (image → score) or `"fr"` ((image, reference) → score). Defaults to `"nr"`.
        taps: indices of the trunk taps to use (`None`: all). Defaults to `None`.
        pooling: `"avg"` or `"avg_std"`. Defaults to `"avg"`.
        fusion: `"concat"` or `"attention"`. Defaults to `"concat"`.
        fusion_dim: common width of the attention projections. Defaults to `128`.
        hidden: width of the hidden layer of the regression head. Defaults to `128`.
        dropout: dropout rate before and after the hidden layer, in [0, 1). Defaults to `0.0`.
        drop_path: per-sample drop rate of each scale branch, in [0, 1). Defaults to `0.0`.
        trunk_trainable: whether the trunk's weights train. Defaults to `False`.
        input_range: `"[-1,1]"` or `"[0,1]"`. Defaults to `"[-1,1]"`.
        seed: seed of dropout and drop-path draws. Defaults to `None`.

    Example:

    >>> model = IQAModel(net="alex", mode="fr", taps=(1, 3), fusion="attention")
    >>> x = np.random.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    >>> model((x, x[::-1])).shape
    (2, 1)
    """

    def __init__(
        self,
        net: str = "effnet-lite0",
        mode: str = "nr",
        taps: Sequence[int] | None = None,
        pooling: str = "avg",
        fusion: str = "concat",
        fusion_dim: int = 128,
        hidden: int = 128,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        trunk_trainable: bool = False,
        input_range: str = "[-1,1]",
        seed: int | None = None,
        **kwargs,
    ):
        for name, value, allowed in (("net", net, tuple(BACKBONES)), ("mode", mode, MODES),
                                     ("pooling", pooling, POOLINGS), ("fusion", fusion, FUSIONS),
                                     ("input_range", input_range, INPUT_RANGES)):
            if value not in allowed:
                raise ValueError(f"Argument `{name}` must be one of {list(allowed)}. Received: {name}={value!r}")
        for name, value in (("dropout", dropout), ("drop_path", drop_path)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"Argument `{name}` must be in [0, 1). Received: {name}={value!r}")
        for name, value in (("fusion_dim", fusion_dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Argument `{name}` must be a positive integer. Received: {name}={value!r}")
        n_taps = len(BACKBONES[net].TAP_CHANNELS)
        taps = list(range(n_taps)) if taps is None else [int(t) for t in taps]
        if not taps or len(set(taps)) != len(taps) or any(not 0 <= t < n_taps for t in taps):
            raise ValueError(f"Argument `taps` must be distinct indices in [0, {n_taps}) for net {net!r}, "
                             f"or None. Received: taps={taps!r}")
        super().__init__(**kwargs)
        self.net = net
        self.mode = mode
        self.taps = sorted(taps)
        self.pooling = pooling
        self.fusion = fusion
        self.fusion_dim = fusion_dim
        self.hidden = hidden
        self.dropout = float(dropout)
        self.drop_path = float(drop_path)
        self.trunk_trainable = bool(trunk_trainable)
        self.input_range = input_range
        self.seed = seed

        self.backbone = get_backbone(net, name=f"{net.replace('-', '_')}_trunk")
        self.backbone.trainable = self.trunk_trainable
        self.scaling = InputScaling(**SCALING[net], name="scaling")
        per_map = 2 if pooling == "avg_std" else 1
        per_tap = 2 if mode == "fr" else 1
        self.branch_widths = [self.backbone.TAP_CHANNELS[t] * per_map * per_tap for t in self.taps]
        self.branch_norms = []
        for k, width in enumerate(self.branch_widths):
            # Statistics over the global batch under a tf.distribute strategy (JAX's DataParallel does that by
            # itself), so that a mirrored step equals a one-device step.
            norm = layers.BatchNormalization(synchronized=keras.backend.backend() == "tensorflow",
                                             name=f"branch_norm_{k}")
            norm.build((None, width))
            self.branch_norms.append(norm)
        if fusion == "attention":
            self.attention = ScaleAttention(self.branch_widths, dim=fusion_dim, drop_path=self.drop_path, seed=seed,
                                            name="scale_attention")
            self.branch_drop = None
            fused_width = fusion_dim
        else:
            self.attention = None
            self.branch_drop = DropPath(self.drop_path, seed=seed, name="branch_drop_path")
            fused_width = sum(self.branch_widths)
        self.dropout_in = layers.Dropout(self.dropout, seed=seed, name="dropout_in")
        self.dense_hidden = layers.Dense(hidden, activation="relu", name="hidden")
        self.dense_hidden.build((None, fused_width))
        self.dropout_out = layers.Dropout(self.dropout, seed=None if seed is None else seed + 1, name="dropout_out")
        self.dense_score = layers.Dense(1, name="score")
        self.dense_score.build((None, hidden))
        self.built = True

    @property
    def pooled_width(self) -> int:
        """Width of `pooled_features`: the sum of the branch widths."""
        return sum(self.branch_widths)

    def _unpack(self, inputs):
        if self.mode == "fr":
            if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
                raise ValueError("An IQAModel with mode='fr' takes (image, reference). "
                                 f"Received: {type(inputs).__name__} of length {len(inputs) if isinstance(inputs, (list, tuple)) else 1}")
            return inputs[0], inputs[1]
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f"An IQAModel with mode='nr' takes one image batch. Received: {len(inputs)} inputs")
            inputs = inputs[0]
        return inputs, None

    def _pool(self, feature_map):
        mean = ops.mean(feature_map, axis=(1, 2))
        if self.pooling == "avg":
            return [mean]
        variance = ops.mean(ops.square(feature_map - mean[:, None, None, :]), axis=(1, 2))
        return [mean, ops.sqrt(variance + 1e-6)]

    def _trunk(self, images, training):
        if self.input_range == "[0,1]":
            images = images * 2.0 - 1.0
        return self.backbone(self.scaling(images), training=training)

    def pooled_features(self, inputs, training=None):
        """The branch vectors of every selected tap, concatenated: `(N, pooled_width)`."""
        x, ref = self._unpack(inputs)
        x = ops.convert_to_tensor(x, dtype=self.compute_dtype)
        if ref is None:
            features = self._trunk(x, training)
            branches = [ops.concatenate(self._pool(features[t]), axis=-1) for t in self.taps]
        else:
            ref = ops.convert_to_tensor(ref, dtype=self.compute_dtype)
            both = self._trunk(ops.concatenate([x, ref], axis=0), training)
            n = ops.shape(x)[0]
            branches = []
            for t in self.taps:
                fx, fr = both[t][:n], both[t][n:]
                branches.append(ops.concatenate(self._pool(fx) + self._pool(ops.abs(fx - fr)), axis=-1))
        return ops.concatenate(branches, axis=-1)

    def score_from_pooled(self, pooled, training=None):
        """The score `(N, 1)` from `pooled_features` output."""
        splits, offset = [], 0
        for width in self.branch_widths:
            splits.append(pooled[:, offset:offset + width])
            offset += width
        branches = [norm(b, training=training) for norm, b in zip(self.branch_norms, splits)]
        if self.attention is not None:
            fused = self.attention(branches, training=training)
        else:
            fused = ops.concatenate([self.branch_drop(b, training=training) for b in branches], axis=-1)
        h = self.dense_hidden(self.dropout_in(fused, training=training))
        return self.dense_score(self.dropout_out(h, training=training))

    def call(self, inputs, training=None):
        return self.score_from_pooled(self.pooled_features(inputs, training=training), training=training)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "net": self.net, "mode": self.mode, "taps": list(self.taps), "pooling": self.pooling,
            "fusion": self.fusion, "fusion_dim": self.fusion_dim, "hidden": self.hidden, "dropout": self.dropout,
            "drop_path": self.drop_path, "trunk_trainable": self.trunk_trainable, "input_range": self.input_range,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict) -> "IQAModel":
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_percept")
class PooledIQAHead(keras.Model):
    """The head of an `IQAModel` alone, on cached pooled features `(N, pooled_width)` → `(N, 1)`.

    Shares its layers with `model`, so training it trains `model`'s head in
    place. Used for training with a frozen trunk, where the pooled features
    of each patch never change; not meant to be saved (save `model`).

    Example:

    >>> head = PooledIQAHead(IQAModel(net="alex"))
    >>> head(np.zeros((2, head.iqa_model.pooled_width), "float32")).shape
    (2, 1)
    """

    def __init__(self, iqa_model: IQAModel, **kwargs):
        super().__init__(**kwargs)
        self.iqa_model = iqa_model
        self.built = True

    def call(self, pooled, training=None):
        return self.iqa_model.score_from_pooled(pooled, training=training)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable,
                "iqa_model": keras.saving.serialize_keras_object(self.iqa_model)}

    @classmethod
    def from_config(cls, config: dict) -> "PooledIQAHead":
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("iqa_model")), **config)
