"""E-LPIPS (Kettunen, Härkönen, Lehtinen 2019): any metric of the package averaged over random transformations."""

from __future__ import annotations

import itertools

import keras
import numpy as np
from keras import ops

from keras_percept.images import CHUNK_PIXELS, check_image_batch_pair, checked_image_pair, pair_chunks

#: The six orders of the three colour channels.
PERMUTATIONS = np.array(list(itertools.permutations(range(3))), dtype="int32")


@keras.saving.register_keras_serializable(package="keras_percept")
class ELPIPS(keras.Model):
    """A metric averaged over `samples` random transformations, each applied alike to both images of a pair.

    Per pair and sample, in this order (each draw independent, the same for `x0` and `x1`):

    1. an offset: the image moves down and right by `dy, dx` drawn uniformly from
       `0 ... m`, the uncovered border filled by reflection, with
       `m = min(max_offset, min(H, W) // 8)` (7 px for 64 px patches);
    2. a left-right and an up-down flip, each with probability 1/2 (`flips`);
    3. a transpose (rows for columns) with probability 1/2, for square images
       only (`transpose`);
    4. one of the six orders of the colour channels, uniformly (`permute_channels`);
    5. each channel multiplied, in [0, 1] units, by a factor drawn uniformly
       from `colour_scale` (the range stays inside the metric's `input_range`);
    6. a box downscale by `s` in `1, 2, 4, ... max_downscale`: `s = 1` with
       probability 1/2, the rest split equally among the factors that keep
       `min(H, W) // s` at least the trunk's minimum size (so no sample is too
       small for it; with none, always `s = 1`).

    The distance is the mean of the metric over the samples. Every step is made of
    differentiable `keras.ops`, so it serves as a loss (`PerceptualLoss(ELPIPS(...))`)
    and under attack its gradient is averaged over the transformations too, as the
    paper requires. Draws come from a `keras.random.SeedGenerator(seed)`: the same
    seed, the same calls and the same batching give the same distances; a loaded
    `.keras` file starts again from the seed (Keras saves no generator state). Each
    downscale factor in use costs one metric call on all `samples x batch` pairs at
    that size (1 + 1/4 + 1/16 ... of one full-size call), with the factor chosen per
    pair.

    Limits: the image size must be known when the graph is built (`distance()` takes
    care of it; under TensorFlow, `fit` or `predict` on batches whose size varies
    between calls is refused with an error). Inside a `Loss` on the JAX backend, Keras
    computes the loss statelessly and drops the generator's new state, so every
    training step draws the same transformations (TensorFlow and torch draw new ones).

    Args:
        metric: the metric to ensemble: an `LPIPS` (`spatial=False`, `return_per_layer=False`) or `DISTS`.
        samples: transformations averaged per pair. Defaults to `8`.
        max_offset: largest offset in pixels (capped at `min(H, W) // 8`). Defaults to `7`.
        flips: random left-right and up-down flips. Defaults to `True`.
        transpose: random transposes of square images. Defaults to `True`.
        permute_channels: random colour-channel orders. Defaults to `True`.
        colour_scale: `(low, high)` with `0 < low <= high <= 1`; `(1, 1)` turns scaling off. Defaults to
            `(0.5, 1.0)`.
        max_downscale: largest downscale factor, a power of 2 (`1` turns it off). Defaults to `4`.
        seed: the seed of the draws. Defaults to `0`.

    Example:

    >>> metric = ELPIPS(LPIPS(net="alex"), samples=4, seed=0)
    >>> x0 = np.random.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    >>> metric.distance(x0, x0[::-1]).shape
    (2,)
    >>> loss = keras_percept.losses.PerceptualLoss(metric)  # a loss robust to 1-7 px shifts  # doctest: +SKIP

    Reference: Kettunen, Härkönen, Lehtinen. "E-LPIPS: Robust Perceptual Image Similarity via Random
    Transformation Ensembles", arXiv:1906.03973, 2019.
    """

    def __init__(self, metric, samples: int = 8, max_offset: int = 7, flips: bool = True, transpose: bool = True,
                 permute_channels: bool = True, colour_scale=(0.5, 1.0), max_downscale: int = 4, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(metric, dict):
            metric = keras.saving.deserialize_keras_object(metric)
        if not hasattr(metric, "backbone") or not hasattr(metric, "input_range"):
            raise ValueError(f"Argument `metric` must be a metric of keras_percept (LPIPS, DISTS). "
                             f"Received: {type(metric).__name__}")
        if getattr(metric, "spatial", False) or getattr(metric, "return_per_layer", False):
            raise ValueError("Argument `metric` must give one distance per pair (spatial=False, "
                             "return_per_layer=False).")
        for name, value, low in (("samples", samples, 1), ("max_offset", max_offset, 0),
                                 ("max_downscale", max_downscale, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}")
        if max_downscale & (max_downscale - 1):
            raise ValueError(f"Argument `max_downscale` must be a power of 2. Received: max_downscale={max_downscale}")
        colour_scale = tuple(float(v) for v in colour_scale)
        if len(colour_scale) != 2 or not 0 < colour_scale[0] <= colour_scale[1] <= 1:
            raise ValueError("Argument `colour_scale` must be (low, high) with 0 < low <= high <= 1. "
                             f"Received: colour_scale={colour_scale}")
        self.metric = metric
        self.metric.trainable = False
        self.samples, self.max_offset, self.max_downscale, self.seed = (int(samples), int(max_offset),
                                                                        int(max_downscale), int(seed))
        self.flips, self.transpose, self.permute_channels = bool(flips), bool(transpose), bool(permute_channels)
        self.colour_scale = colour_scale
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        # TensorFlow: one tf.function per image size (`_predict`); set past Keras's attribute tracking.
        object.__setattr__(self, "_graphs", {})
        self.built = True

    @property
    def input_range(self) -> str:
        return self.metric.input_range

    @property
    def backbone(self):
        return self.metric.backbone

    @property
    def net(self) -> str:
        return f"e-{self.metric.net}"

    def offset_range(self, height: int, width: int) -> int:
        """The largest offset `m` used for `height x width` images."""
        return min(self.max_offset, min(height, width) // 8)

    def downscale_factors(self, height: int, width: int) -> list[int]:
        """The downscale factors drawn for `height x width` images (1 first)."""
        factors, s = [1], 2
        while s <= self.max_downscale and min(height, width) // s >= self.metric.backbone.MIN_SIZE:
            factors.append(s)
            s *= 2
        return factors

    def call(self, inputs, training=None):
        x0, x1 = inputs if not isinstance(inputs, dict) else (inputs["x0"], inputs["x1"])
        check_image_batch_pair(tuple(x0.shape), tuple(x1.shape), keras.backend.standardize_dtype(x0.dtype),
                               keras.backend.standardize_dtype(x1.dtype), min_size=self.metric.backbone.MIN_SIZE,
                               net=self.net)
        batch = ops.shape(x0)[0]
        height, width = x0.shape[1], x0.shape[2]
        if height is None or width is None:
            raise ValueError(
                f"{self.net} needs the image size when its graph is built (its offset and downscale ranges "
                f"depend on it). Received: images of shape {tuple(x0.shape)}. Use `distance()`, or call it with "
                "fixed-size batches (TensorFlow's `fit`/`predict` loosen sizes that vary between calls)."
            )
        height, width = int(height), int(width)
        n = self.samples * batch
        pair = ops.concatenate([ops.tile(x0, (self.samples, 1, 1, 1)), ops.tile(x1, (self.samples, 1, 1, 1))],
                               axis=-1)  # both images of a pair in one tensor: every step below treats them alike
        low, high = (-1.0, 1.0) if self.input_range == "[-1,1]" else (0.0, 1.0)
        pair = (pair - low) / (high - low)  # [0, 1]
        pair = self._offset(pair, n, height, width)
        if self.flips:
            pair = self._maybe(pair, n, lambda x: ops.flip(x, axis=2))
            pair = self._maybe(pair, n, lambda x: ops.flip(x, axis=1))
        if self.transpose and height == width:
            pair = self._maybe(pair, n, lambda x: ops.transpose(x, (0, 2, 1, 3)))
        if self.permute_channels:
            choice = keras.random.randint((n,), 0, len(PERMUTATIONS), seed=self.seed_generator)
            order = ops.take(ops.convert_to_tensor(PERMUTATIONS), choice, axis=0)  # (n, 3)
            order = ops.concatenate([order, order + 3], axis=-1)[:, None, None, :]
            pair = ops.take_along_axis(pair, ops.broadcast_to(order, ops.shape(pair)), axis=-1)
        if self.colour_scale != (1.0, 1.0):
            factor = keras.random.uniform((n, 1, 1, 3), *self.colour_scale, seed=self.seed_generator)
            pair = pair * ops.concatenate([factor, factor], axis=-1)
        pair = pair * (high - low) + low
        factors = self.downscale_factors(height, width)
        level = self._level(n, len(factors))
        distance = 0.0
        for k, s in enumerate(factors):
            scaled = pair if s == 1 else ops.average_pool(pair, s, strides=s, padding="valid")
            d = self.metric((scaled[..., :3], scaled[..., 3:]), training=False)
            distance = distance + ops.cast(ops.equal(level, k), d.dtype) * d
        return ops.mean(ops.reshape(distance, (self.samples, batch)), axis=0)

    def _offset(self, pair, n, height, width):
        m = self.offset_range(height, width)
        if m == 0:
            return pair
        padded = ops.pad(pair, ((0, 0), (m, 0), (m, 0), (0, 0)), mode="reflect")
        dy = keras.random.randint((n,), 0, m + 1, seed=self.seed_generator)
        dx = keras.random.randint((n,), 0, m + 1, seed=self.seed_generator)
        rows = (m - dy)[:, None] + ops.arange(height, dtype="int32")[None, :]  # (n, H) source rows
        cols = (m - dx)[:, None] + ops.arange(width, dtype="int32")[None, :]
        channels = ops.shape(pair)[-1]
        padded = ops.take_along_axis(padded, ops.broadcast_to(rows[:, :, None, None], (n, height, width + m, channels)),
                                     axis=1)
        return ops.take_along_axis(padded, ops.broadcast_to(cols[:, None, :, None], (n, height, width, channels)),
                                   axis=2)

    def _maybe(self, pair, n, transform):
        """`transform(pair)` for a random half of the pairs (probability 1/2 each)."""
        coin = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < 0.5
        return ops.where(coin, transform(pair), pair)

    def _level(self, n, levels: int):
        """Per pair, the index of its downscale factor: 0 with probability 1/2, the others equally likely."""
        if levels == 1:
            return ops.zeros((n,), "int32")
        u = keras.random.uniform((n,), seed=self.seed_generator)
        other = 1 + ops.cast(ops.floor((u - 0.5) * 2 * (levels - 1)), "int32")
        return ops.where(u < 0.5, ops.zeros_like(other), ops.minimum(other, levels - 1))

    def distance(self, x0, x1, batch_size: int = 32) -> np.ndarray:
        """`(N,)` distances for NumPy image batches (or single `(H, W, 3)` images), with value checks.

        Example:

        >>> ELPIPS(LPIPS(net="alex")).distance(img_a, img_b)  # doctest: +SKIP
        array([0.204], dtype=float32)
        """
        x0, x1 = checked_image_pair(x0, x1, self.input_range, min_size=self.metric.backbone.MIN_SIZE, net=self.net)
        # Each call holds `samples` transformed copies of its pairs: the pair and pixel budgets are divided by it.
        step = max(1, batch_size // self.samples)
        parts = pair_chunks(len(x0), *x0.shape[1:3], step, chunk_pixels=max(1, CHUNK_PIXELS // self.samples))
        return np.concatenate([np.asarray(self._predict(x0[part], x1[part])) for part in parts])

    def _predict(self, x0, x1):
        """One batch without gradients. On TensorFlow through a `tf.function` per image size: Keras's own
        `predict_on_batch` loosens a size that changed between calls to `None`, which `call` cannot use."""
        if keras.backend.backend() != "tensorflow":
            return self.predict_on_batch((x0, x1))
        import tensorflow as tf

        key = x0.shape[1:3]
        if key not in self._graphs:
            spec = tf.TensorSpec((None, *x0.shape[1:]), tf.float32)
            self._graphs[key] = tf.function(lambda a, b: self((a, b), training=False), input_signature=[spec, spec])
        return self._graphs[key](x0, x1)

    def with_options(self, **overrides) -> "ELPIPS":
        """The same ensemble over `metric.with_options(**overrides)` (a copy of its weights); `self` if unchanged.

        Example:

        >>> ELPIPS(LPIPS(net="alex")).with_options(input_range="[0,1]").input_range
        '[0,1]'
        """
        inner = self.metric.with_options(**overrides)
        if inner is self.metric:
            return self
        return ELPIPS(inner, **{k: v for k, v in self.get_config().items() if k not in ("metric", "name",
                                                                                      "trainable")})

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable,
                "metric": keras.saving.serialize_keras_object(self.metric), "samples": self.samples,
                "max_offset": self.max_offset, "flips": self.flips, "transpose": self.transpose,
                "permute_channels": self.permute_channels, "colour_scale": list(self.colour_scale),
                "max_downscale": self.max_downscale, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> "ELPIPS":
        return cls(**config)
