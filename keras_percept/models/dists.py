"""DISTS, Deep Image Structure and Texture Similarity (Ding, Ma, Wang, Simoncelli, TPAMI 2020), backend-neutral."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_percept.backbones import TRUNKS, get_backbone
from keras_percept.backbones.vgg16 import VGG16Backbone
from keras_percept.layers.scaling import InputScaling
from keras_percept.images import check_image_batch_pair, checked_image_pair, pair_chunks
from keras_percept.presets import PresetMixin

INPUT_RANGES = ("[0,1]", "[-1,1]")
#: torchvision's ImageNet normalisation, applied to [0, 1] images before the trunk.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Channels of the six compared representations: the image itself, then relu1_2 ... relu5_3.
TAP_CHANNELS = (3, 64, 128, 256, 512, 512)
#: `trunk="vgg16"`: the published DISTS trunk (VGG16 with L2 pooling, ImageNet normalisation).
REFERENCE_TRUNK = "vgg16"


@keras.saving.register_keras_serializable(package="keras_percept")
class DISTS(PresetMixin, keras.Model):
    """Deep Image Structure and Texture Similarity between two image batches.

    The image and five taps of VGG16 (relu1_2 ... relu5_3, with `L2Pooling2D` in place of
    max pooling) are compared channel by channel through global statistics: a texture term
    `S1 = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)` of the spatial means and a structure term
    `S2 = (2 cov_xy + c2) / (var_x + var_y + c2)`. With `alpha` and `beta` (one weight per channel,
    1,475 each, non-negative) normalised by their joint sum,
    `DISTS = 1 - sum_k sum_c (alpha_kc S1_kc + beta_kc S2_kc)`: 0 for identical images.

    The trunk and the weights start random (`alpha`, `beta` ~ N(0.1, 0.01), as the reference);
    `keras_percept.convert.pretrained_dists()` loads the published metric (torchvision's ImageNet
    VGG16 and the `alpha`/`beta` shipped by the `dists-pytorch` package).

    A DISTS-style head on another trunk: `trunk` names a row of `backbones.TRUNKS` (e.g.
    `"effnet-lite0"`, the trunk with ImageNet weights offline); the image and that trunk's LPIPS
    taps are compared, its input scaled as LPIPS scales it. Such a head has no published
    weights: train it (`model.metric: dists` in a training config).

    Args:
        trunk: `"vgg16"` (the published DISTS layout) or a net of `backbones.TRUNKS`.
            Defaults to `"vgg16"`.
        input_range: `"[0,1]"` (the reference's) or `"[-1,1]"` (mapped to [0, 1] by (x + 1) / 2).
            Defaults to `"[0,1]"`.
        trunk_trainable: whether the VGG16 weights are trainable. Defaults to `False`.
        c1: stabiliser of the texture term. Defaults to `1e-6`.
        c2: stabiliser of the structure term. Defaults to `1e-6`.

    Example:

    >>> model = keras_percept.models.DISTS()
    >>> x0 = np.random.uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    >>> model((x0, x0[::-1])).shape
    (2,)
    >>> metric = keras_percept.convert.pretrained_dists()  # doctest: +SKIP

    Reference: Ding, Ma, Wang, Simoncelli. "Image Quality Assessment: Unifying Structure and
    Texture Similarity", IEEE TPAMI 2020.
    """

    def __init__(self, input_range: str = "[0,1]", trunk_trainable: bool = False, c1: float = 1e-6,
                 c2: float = 1e-6, trunk: str = REFERENCE_TRUNK, **kwargs):
        if trunk != REFERENCE_TRUNK and trunk not in TRUNKS:
            raise ValueError(f"Argument `trunk` must be {REFERENCE_TRUNK!r} or one of {sorted(TRUNKS)}. "
                             f"Received: trunk={trunk!r}")
        if input_range not in INPUT_RANGES:
            raise ValueError(
                f"Argument `input_range` must be one of {INPUT_RANGES}. Received: input_range={input_range!r}"
            )
        for label, value in (("c1", c1), ("c2", c2)):
            if not float(value) > 0:
                raise ValueError(f"Argument `{label}` must be > 0. Received: {label}={value!r}")
        super().__init__(**kwargs)
        self.input_range = input_range
        self.trunk_trainable = bool(trunk_trainable)
        self.c1, self.c2 = float(c1), float(c2)
        self.trunk = trunk
        self.net = f"dists-{trunk}"
        if trunk == REFERENCE_TRUNK:
            self.backbone = VGG16Backbone(pooling="l2", name="vgg16_l2_trunk")
        else:
            self.backbone = get_backbone(trunk, name=f"{trunk.replace('-', '_')}_trunk")
            self.scaling = InputScaling(**TRUNKS[trunk].scaling, name="scaling")
        self.backbone.trainable = self.trunk_trainable
        self._tap_channels = (3, *self.backbone.TAP_CHANNELS)
        weight = {"shape": (sum(self._tap_channels),), "initializer": keras.initializers.RandomNormal(0.1, 0.01),
                  "constraint": keras.constraints.NonNeg()}
        self.alpha = self.add_weight(name="alpha", **weight)
        self.beta = self.add_weight(name="beta", **weight)
        self.built = True

    @property
    def tap_channels(self) -> tuple[int, ...]:
        """Channels of the compared representations: the image (3), then each tap."""
        return self._tap_channels

    @property
    def head_weights(self) -> list:
        """The learned non-negative weights: `[alpha, beta]`."""
        return [self.alpha, self.beta]

    def call(self, inputs, training=None):
        x0, x1 = self._unpack(inputs)
        return self.distance_from_features(self.features(x0, training=training), self.features(x1, training=training))

    def features(self, images, training=None) -> list:
        """The six compared representations of `images` (in `input_range`): the [0, 1] image, then the taps."""
        if self.trunk != REFERENCE_TRUNK:
            signed = images if self.input_range == "[-1,1]" else 2.0 * images - 1.0
            return [(signed + 1.0) / 2.0, *self.backbone(self.scaling(signed), training=training)]
        if self.input_range == "[-1,1]":
            images = (images + 1.0) / 2.0
        mean = ops.convert_to_tensor(np.array(IMAGENET_MEAN, "float32"), images.dtype)
        std = ops.convert_to_tensor(np.array(IMAGENET_STD, "float32"), images.dtype)
        return [images, *self.backbone((images - mean) / std, training=training)]

    def distance_from_features(self, f0: list, f1: list, training=None):
        """DISTS from two lists of `features`, computed in the reference's order of operations."""
        total = ops.sum(self.alpha) + ops.sum(self.beta)
        texture = structure = 0.0
        start = 0
        for a, b, channels in zip(f0, f1, self.tap_channels):
            alpha = self.alpha[start:start + channels] / total
            beta = self.beta[start:start + channels] / total
            start += channels
            mean_a = ops.mean(a, axis=(1, 2), keepdims=True)
            mean_b = ops.mean(b, axis=(1, 2), keepdims=True)
            s1 = (2 * mean_a * mean_b + self.c1) / (ops.square(mean_a) + ops.square(mean_b) + self.c1)
            texture = texture + ops.sum(alpha * ops.squeeze(s1, axis=(1, 2)), axis=-1)
            var_a = ops.mean(ops.square(a - mean_a), axis=(1, 2), keepdims=True)
            var_b = ops.mean(ops.square(b - mean_b), axis=(1, 2), keepdims=True)
            cov = ops.mean(a * b, axis=(1, 2), keepdims=True) - mean_a * mean_b
            s2 = (2 * cov + self.c2) / (var_a + var_b + self.c2)
            structure = structure + ops.sum(beta * ops.squeeze(s2, axis=(1, 2)), axis=-1)
        return 1.0 - (texture + structure)

    def _unpack(self, inputs):
        if isinstance(inputs, dict):
            inputs = (inputs.get("x0"), inputs.get("x1"))
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2 or any(x is None for x in inputs):
            raise ValueError(f"DISTS expects a pair of image batches `(x0, x1)`. Received: {type(inputs).__name__}")
        x0, x1 = inputs
        check_image_batch_pair(tuple(x0.shape), tuple(x1.shape), keras.backend.standardize_dtype(x0.dtype),
                               keras.backend.standardize_dtype(x1.dtype), min_size=self.backbone.MIN_SIZE,
                               net=self.net)
        return x0, x1

    def distance(self, x0, x1, batch_size: int = 32) -> np.ndarray:
        """`(N,)` distances for NumPy image batches (or single `(H, W, 3)` images), with value checks.

        Example:

        >>> DISTS().distance(img_a, img_b)  # doctest: +SKIP
        array([0.187], dtype=float32)
        """
        x0, x1 = checked_image_pair(x0, x1, self.input_range, min_size=self.backbone.MIN_SIZE, net=self.net)
        return np.concatenate([np.asarray(self.predict_on_batch((x0[part], x1[part])))
                               for part in pair_chunks(len(x0), *x0.shape[1:3], batch_size)])

    def with_options(self, spatial: bool = False, return_per_layer: bool = False, **overrides) -> "DISTS":
        """A twin with a copy of this model's weights and config `overrides` (e.g. `input_range`); `self` if unchanged.

        `spatial` and `return_per_layer` exist for the command line, which asks every metric for
        them: DISTS compares global statistics, so it has neither a spatial map nor per-layer terms.

        Example:

        >>> DISTS().with_options(input_range="[-1,1]").input_range
        '[-1,1]'
        """
        if spatial or return_per_layer:
            raise ValueError("DISTS compares global statistics of whole images: it has no spatial map and no "
                             f"per-layer terms. Received: spatial={spatial!r}, return_per_layer={return_per_layer!r}")
        config = {**self.get_config(), **overrides}
        if config == self.get_config():
            return self
        twin = DISTS.from_config(config)
        twin.set_weights(self.get_weights())
        return twin

    def pairwise(self, images, batch_size: int = 32) -> np.ndarray:
        """Not available: unlike LPIPS, DISTS needs both full feature maps of a pair (their covariance).

        Example:

        >>> DISTS().pairwise(np.zeros((3, 32, 32, 3), "float32"))  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: DISTS has no N x N shortcut ...
        """
        raise ValueError("DISTS has no N x N shortcut (each pair's covariance needs both full feature maps); "
                         "compare the pairs with distance(), or `keras-percept distance DIR` without --matrix.")

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "input_range": self.input_range,
                "trunk_trainable": self.trunk_trainable, "c1": self.c1, "c2": self.c2, "trunk": self.trunk}

    @classmethod
    def from_config(cls, config: dict) -> "DISTS":
        return cls(**config)
