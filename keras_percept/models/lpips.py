"""The LPIPS distance model (Zhang et al., CVPR 2018), backend-neutral."""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers, ops

from keras_percept.backbones import BACKBONES, dtype_policy_scope, get_backbone
from keras_percept.images import check_image_batch_pair, check_image_values, checked_image_pair, pair_chunks
from keras_percept.layers.normalization import ChannelUnitNormalization
from keras_percept.layers.scaling import InputScaling
from keras_percept.models.presets import SCALING
from keras_percept.presets import PresetMixin

INPUT_RANGES = ("[-1,1]", "[0,1]")
VERSIONS = ("0.1", "0.0")
PRECISIONS = ("float32", "bfloat16")


def cpu_has_bfloat16() -> bool | None:
    """Whether this CPU has bfloat16 arithmetic (x86 AVX512_BF16 or AMX-BF16, Arm BF16); None if it cannot tell.

    Read from `/proc/cpuinfo` (Linux; elsewhere None, and `LPIPS` then runs
    bfloat16 unchecked). Without these instructions the frameworks emulate
    bfloat16 in float32 code, slower than float32 itself.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = {flag for line in f if line.startswith(("flags", "Features")) for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


@keras.saving.register_keras_serializable(package="keras_percept")
class LPIPS(PresetMixin, keras.Model):
    """Learned Perceptual Image Patch Similarity between two image batches.

    For each trunk tap: features of both images are unit-normalised across
    channels, their squared difference is weighted per channel by a
    non-negative 1x1 convolution ("lin" layer), then averaged over space (or
    bilinearly upsampled to the input size for a spatial map); the taps are
    summed. The trunk runs once per batch.

    Inputs are channels-last float images `(N, H, W, 3)`, both of the same
    shape, in `input_range`. Calling the model checks ranks, channels, dtypes
    and shapes; value checks (NaN, range) need the data on the host, so they
    happen in `distance()` and the CLI.

    Args:
        net: trunk, one of `"alex"`, `"vgg"`, `"squeeze"`, `"effnet-lite0"`.
            Defaults to `"alex"`.
        version: `"0.1"` (scaling layer on) or `"0.0"` (the original release,
            no input scaling). Defaults to `"0.1"`.
        lpips: `True` for learned linear layers; `False` for the uncalibrated
            baseline (channel sum, every tap weighted equally). Defaults to `True`.
        spatial: return a `(N, H, W, 1)` distance map instead of `(N,)`.
            Defaults to `False`.
        input_range: `"[-1,1]"` or `"[0,1]"` (mapped to [-1, 1] by 2x - 1).
            Defaults to `"[-1,1]"`.
        dropout: dropout rate before each linear layer (training only).
            Defaults to `0.0`.
        return_per_layer: also return the per-tap terms, as
            `(total, [term_0, ...])`. Defaults to `False`.
        trunk_trainable: whether trunk weights are trainable. Defaults to `False`.
        epsilon: added to the channel norm (reference: 1e-10). Defaults to `1e-10`.
        precision: `"float32"`, or `"bfloat16"` for the trunk's arithmetic
            (Keras's `mixed_bfloat16` policy: weights stay float32); the
            normalisation, differences and sums stay float32. On a CPU
            without bfloat16 instructions (`cpu_has_bfloat16()`), the trunk
            runs in float32 with a warning. Defaults to `"float32"`.

    Example:

    >>> model = keras_percept.LPIPS(net="alex")
    >>> x0 = np.random.uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    >>> model((x0, x0[::-1])).shape
    (4,)
    >>> metric = LPIPS.from_preset("lpips_alex_v0.1")  # doctest: +SKIP

    Reference: Zhang, Isola, Efros, Shechtman, Wang. "The Unreasonable
    Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018.
    """

    def __init__(
        self,
        net: str = "alex",
        version: str = "0.1",
        lpips: bool = True,
        spatial: bool = False,
        input_range: str = "[-1,1]",
        dropout: float = 0.0,
        return_per_layer: bool = False,
        trunk_trainable: bool = False,
        epsilon: float = 1e-10,
        precision: str = "float32",
        **kwargs,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"Argument `precision` must be one of {PRECISIONS}. Received: precision={precision!r}")
        if net not in BACKBONES:
            raise ValueError(f"Argument `net` must be one of {sorted(BACKBONES)}. Received: net={net!r}")
        if str(version) not in VERSIONS:
            raise ValueError(f"Argument `version` must be one of {VERSIONS}. Received: version={version!r}")
        if input_range not in INPUT_RANGES:
            raise ValueError(
                f"Argument `input_range` must be one of {INPUT_RANGES}. Received: input_range={input_range!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"Argument `dropout` must be in [0, 1). Received: dropout={dropout!r}")
        super().__init__(**kwargs)
        self.net = net
        self.version = str(version)
        self.lpips = bool(lpips)
        self.spatial = bool(spatial)
        self.input_range = input_range
        self.dropout = float(dropout)
        self.return_per_layer = bool(return_per_layer)
        self.trunk_trainable = bool(trunk_trainable)
        self.epsilon = float(epsilon)
        self.precision = precision

        self.backbone = _trunk_in_precision(net, precision)
        self.backbone.trainable = self.trunk_trainable
        self.scaling = InputScaling(**SCALING[net], name="scaling") if self.version == "0.1" else None
        self.normalize = ChannelUnitNormalization(self.epsilon, name="normalize")
        self.lins = []
        self.dropouts = []
        if self.lpips:
            for k, channels in enumerate(self.backbone.TAP_CHANNELS):
                lin = layers.Conv2D(
                    1,
                    1,
                    use_bias=False,
                    kernel_initializer=keras.initializers.Constant(1.0 / channels),
                    kernel_constraint=keras.constraints.NonNeg(),
                    name=f"lin_{k}",
                )
                lin.build((None, None, None, channels))
                self.lins.append(lin)
                self.dropouts.append(layers.Dropout(self.dropout, name=f"lin_{k}_dropout"))
        self.built = True

    @property
    def tap_channels(self) -> tuple[int, ...]:
        return self.backbone.TAP_CHANNELS

    def call(self, inputs, training=None):
        x0, x1 = self._unpack(inputs)
        # One trunk pass per batch, as the reference does. Image i of x0 and image i of x1 then take the
        # same path through the CPU convolution kernels, so LPIPS(x, x) is exactly 0 and its gradient too.
        # In one pass over the concatenation, the kernels may round a row differently by its batch
        # position (1e-15 here); on 2 cores the two passes measured as fast as one.
        f0 = self.normalized_features(x0, training=training)
        f1 = self.normalized_features(x1, training=training)
        return self.distance_from_features(f0, f1, ops.shape(x0)[1:3], training=training)

    def normalized_features(self, images, training=None) -> list:
        """Unit-normalised trunk taps of `images` (in `input_range`), one tensor per tap.

        One call over a concatenation of several batches runs the trunk once;
        `distance_from_features` then compares any two of them.
        """
        if self.input_range == "[0,1]":
            images = 2.0 * images - 1.0
        if self.scaling is not None:
            images = self.scaling(images)
        # A bfloat16 trunk's taps are normalised, differenced and summed in float32 (under a float32 global
        # dtype policy; under the trainer's `precision: mixed_*` every layer computes in that policy).
        return [self.normalize(ops.cast(f, "float32")) for f in self.backbone(images, training=training)]

    def distance_from_features(self, f0: list, f1: list, size=None, training=None):
        """LPIPS from two lists of normalised taps; `size` = (H, W) of the spatial map.

        For a scalar distance without active dropout, each tap's term is
        `mean_hw(diff) @ w` instead of `mean_hw(lin(diff))`: the same number
        (a 1x1 convolution commutes with the spatial mean) without running
        the linear layer over every pixel.
        """
        by_means = not self.spatial and (self.dropout == 0.0 or not training)
        terms = []
        for k, (a, b) in enumerate(zip(f0, f1)):
            diff = ops.square(a - b)
            if by_means:
                means = ops.mean(diff, axis=(1, 2))
                if self.lpips:
                    kernel = ops.cast(ops.reshape(self.lins[k].kernel, (-1, 1)), means.dtype)
                    terms.append(ops.reshape(ops.matmul(means, kernel), (-1,)))
                else:
                    terms.append(ops.sum(means, axis=-1))
                continue
            if self.lpips:
                term = self.lins[k](self.dropouts[k](diff, training=training))
            else:
                term = ops.sum(diff, axis=-1, keepdims=True)
            if self.spatial:
                term = ops.image.resize(term, size, interpolation="bilinear", antialias=False)
            else:
                term = ops.mean(term, axis=(1, 2, 3))
            terms.append(term)
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return (total, terms) if self.return_per_layer else total

    def channel_means(self, f0: list, f1: list):
        """Per-channel spatial means of squared normalised differences, concatenated over taps.

        With dropout off, `distance = channel_means(...) @ linear_weights()`
        exactly (linear layers are 1x1 convolutions, which commute with the
        spatial mean). This is what the fast `lin` feature cache stores.

        Returns:
            `(N, sum(tap_channels))`.
        """
        return ops.concatenate([ops.mean(ops.square(a - b), axis=(1, 2)) for a, b in zip(f0, f1)], axis=-1)

    @property
    def head_weights(self) -> list:
        """The learned non-negative weights: one 1x1 kernel per tap (empty for `lpips=False`)."""
        return [lin.kernel for lin in self.lins]

    def linear_weights(self):
        """All linear-layer weights as one `(sum(tap_channels),)` vector (ones for `lpips=False`)."""
        if not self.lpips:
            return ops.ones((sum(self.tap_channels),))
        return ops.concatenate([ops.reshape(lin.kernel, (-1,)) for lin in self.lins], axis=0)

    def _unpack(self, inputs):
        if isinstance(inputs, dict):
            missing = {"x0", "x1"} - set(inputs)
            if missing:
                raise ValueError(
                    f"LPIPS inputs as a dict need keys 'x0' and 'x1'. Received keys: {sorted(inputs)}"
                )
            inputs = (inputs["x0"], inputs["x1"])
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "LPIPS expects a pair of image batches `(x0, x1)`. "
                f"Received: {type(inputs).__name__}"
                + (f" of length {len(inputs)}" if isinstance(inputs, (list, tuple)) else "")
            )
        x0, x1 = inputs
        check_image_batch_pair(
            tuple(x0.shape), tuple(x1.shape), keras.backend.standardize_dtype(x0.dtype),
            keras.backend.standardize_dtype(x1.dtype), min_size=self.backbone.MIN_SIZE, net=self.net,
        )
        return x0, x1

    def distance(self, x0, x1, batch_size: int = 32) -> np.ndarray:
        """Distances for NumPy image batches, with full input validation.

        Checks everything `call` checks plus NaN/Inf and that values lie in
        `input_range`, then runs the model in batches without tracking
        gradients. Single images `(H, W, 3)` are accepted too.

        Returns:
            `(N,)` distances, or `(N, H, W, 1)` maps when `spatial=True`.

        Example:

        >>> LPIPS(net="alex").distance(img_a, img_b)  # doctest: +SKIP
        array([0.213], dtype=float32)
        """
        x0, x1 = checked_image_pair(x0, x1, self.input_range, min_size=self.backbone.MIN_SIZE, net=self.net)
        outputs = []
        for part in pair_chunks(len(x0), *x0.shape[1:3], batch_size):
            out = self.predict_on_batch((x0[part], x1[part]))
            outputs.append(np.asarray(out[0] if self.return_per_layer else out))
        return np.concatenate(outputs, axis=0)

    def pairwise(self, images, batch_size: int = 32) -> np.ndarray:
        """All `N x N` distances between `N` images, each image through the trunk once.

        The trunk features of every image are computed once (in batches of `batch_size`); each
        pair `i < j` then compares image `i`'s features with image `j`'s by
        `distance_from_features`, the computation `call` makes after the trunk (`batch_size`
        pairs at a time). The matrix is symmetric with a zero diagonal. Scalar distances only:
        a `spatial=True` metric raises `ValueError` (use `with_options(spatial=False)`).

        Args:
            images: `(N, H, W, 3)` NumPy images in `input_range`, all of one size.
            batch_size: images per trunk call, and pairs per distance call. Defaults to `32`.

        Returns:
            `(N, N)` float32 distances.

        Example:

        >>> LPIPS(net="alex").pairwise(np.zeros((3, 64, 64, 3), "float32")).shape
        (3, 3)
        """
        if self.spatial:
            raise ValueError(
                "pairwise() gives one distance per pair; spatial maps for all N x N pairs are not supported. "
                "Use metric.with_options(spatial=False).pairwise(images)."
            )
        images = np.asarray(images)
        check_image_batch_pair(images.shape, images.shape, str(images.dtype), str(images.dtype),
                               min_size=self.backbone.MIN_SIZE, net=self.net)
        check_image_values(images, "images", self.input_range)
        images = images.astype("float32", copy=False)
        trunk, head = _FeatureStage(self), _PairStage(self)
        # Every call gets the same batch size (the last batch is padded), so each stage compiles once.
        step = min(batch_size, len(images))
        batches = [trunk.predict_on_batch(_padded(images[s:s + step], step)) for s in range(0, len(images), step)]
        features = [np.concatenate([batch[k] for batch in batches])[:len(images)] for k in range(len(batches[0]))]
        rows, cols = np.triu_indices(len(images), k=1)
        upper = np.zeros(len(rows), np.float32)
        step = min(batch_size, len(rows))
        for start in range(0, len(rows), step):
            i, j = _padded(rows[start:start + step], step), _padded(cols[start:start + step], step)
            d = head.predict_on_batch(([f[i] for f in features], [f[j] for f in features]))
            upper[start:start + step] = d[:len(upper) - start]
        matrix = np.zeros((len(images), len(images)), np.float32)
        matrix[rows, cols] = matrix[cols, rows] = upper
        return matrix

    def with_options(self, **overrides) -> "LPIPS":
        """A twin of this model with a copy of its weights, and config `overrides` (e.g. `spatial=True`).

        Returns `self` when nothing changes. Weight-shaping options (`net`,
        `lpips`) cannot be overridden.

        Example:

        >>> heatmaps = LPIPS(net="alex").with_options(spatial=True)
        """
        fixed = {"net", "lpips"} & set(overrides)
        if fixed:
            raise ValueError(f"Options {sorted(fixed)} change the weights and cannot be overridden.")
        config = {**self.get_config(), **overrides}
        if config == self.get_config():
            return self
        twin = LPIPS.from_config(config)
        twin.set_weights(self.get_weights())
        return twin

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "net": self.net,
            "version": self.version,
            "lpips": self.lpips,
            "spatial": self.spatial,
            "input_range": self.input_range,
            "dropout": self.dropout,
            "return_per_layer": self.return_per_layer,
            "trunk_trainable": self.trunk_trainable,
            "epsilon": self.epsilon,
            "precision": self.precision,
        }

    @classmethod
    def from_config(cls, config: dict) -> "LPIPS":
        return cls(**config)


def _trunk_in_precision(net: str, precision: str):
    """The trunk, built under Keras's `mixed_bfloat16` policy for `precision="bfloat16"` (if the CPU has it)."""
    name = f"{net.replace('-', '_')}_trunk"
    if precision == "float32":
        return get_backbone(net, name=name)
    if cpu_has_bfloat16() is False and not _has_accelerator():
        warnings.warn("LPIPS(precision='bfloat16'): this CPU has no bfloat16 instructions (AVX512_BF16, AMX-BF16 "
                      "or Arm BF16), where bfloat16 is emulated and slower than float32; the trunk runs in float32.",
                      stacklevel=3)
        return get_backbone(net, name=name)
    with dtype_policy_scope("mixed_bfloat16"):
        return get_backbone(net, name=name)


def _has_accelerator() -> bool:
    """Whether the Keras backend sees a GPU or TPU (where bfloat16 does not depend on the CPU)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` with its first row repeated at the end up to `size` rows."""
    return np.concatenate([batch, np.repeat(batch[:1], size - len(batch), axis=0)]) if len(batch) < size else batch


class _FeatureStage(keras.Model):
    """`LPIPS.normalized_features` as a model, so that `predict_on_batch` compiles it on every backend."""

    def __init__(self, lpips: LPIPS):
        super().__init__(name="lpips_features")
        self.lpips = lpips
        self.built = True

    def call(self, images):
        return self.lpips.normalized_features(images, training=False)


class _PairStage(keras.Model):
    """The scalar distance from two lists of normalised taps (`LPIPS.distance_from_features`), as a model."""

    def __init__(self, lpips: LPIPS):
        super().__init__(name="lpips_pairs")
        self.lpips = lpips.with_options(spatial=False, return_per_layer=False)
        self.built = True

    def call(self, inputs):
        f0, f1 = inputs
        return self.lpips.distance_from_features(list(f0), list(f1), training=False)
