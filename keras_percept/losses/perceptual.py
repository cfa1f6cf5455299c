"""LPIPS as a training loss for image-generation models (the reference's `lpips_loss.py` use case)."""

from __future__ import annotations

import os
import warnings

import keras

from keras_percept.distance import DEFAULT_NET
from keras_percept.models.lpips import INPUT_RANGES, LPIPS, PRECISIONS


@keras.saving.register_keras_serializable(package="keras_percept")
class PerceptualLoss(keras.losses.Loss):
    """LPIPS distance between target and generated images, through a frozen metric.

    Formula:

    ```python
    loss = lpips((y_true, y_pred))  # one value per image, then `reduction`
    ```

    The metric is frozen (`metric.trainable = False`, set in place on a
    metric you pass) and always runs in inference mode. A `Loss` is not a
    layer, so the metric's weights never join the generator's
    `trainable_weights`: `model.compile(loss=PerceptualLoss(...))` trains the
    generator only, on every backend (on JAX the metric's weights enter the
    compiled step as constants). Gradients with respect to the images are
    finite everywhere, including at `y_pred == y_true` (see
    `keras_percept.layers.normalization.unit_normalize`).

    Saving a generator compiled with this loss stores the loss *config*, not
    the metric's weights. A metric built from `net`/`pretrained` or loaded
    from a `.keras` path is rebuilt from that source on load; a metric passed
    as an instance is stored as its architecture only, and restoring it warns
    that its weights are new. Pass a `.keras` path to keep a custom metric.

    Args:
        metric: `None` (build one from `net`, `version`, `pretrained`), an
            `LPIPS` instance, or the path of a `.keras` file holding one. It
            must return one distance per pair (`spatial=False`,
            `return_per_layer=False`). Defaults to `None`.
        net: trunk when `metric` is `None`: `"effnet-lite0"` (works offline:
            the uncalibrated baseline on the shipped ImageNet EfficientNet-Lite0),
            `"alex"`, `"vgg"` (the reference recommends vgg as a loss) or
            `"squeeze"` (calibrated; the ImageNet trunk is downloaded once).
            Defaults to `"effnet-lite0"`.
        version: LPIPS version when `metric` is `None`. Defaults to `"0.1"`.
        pretrained: when `metric` is `None`: `True` for the paper's weights
            (`keras_percept.convert.pretrained_lpips`), `False` for an
            untrained `LPIPS(net=...)`. Defaults to `True`.
        input_range: range of the images, `"[-1,1]"` or `"[0,1]"`; `None`
            keeps the metric's own (`"[-1,1]"` for a metric built here).
            Defaults to `None`.
        precision: the metric's trunk arithmetic, `"float32"` or `"bfloat16"`
            (see `LPIPS`; the gradient reaching the images then passes the
            trunk in bfloat16 too); `None` keeps the metric's own. Defaults
            to `None`.
        reduction: Keras reduction over the per-image values. Defaults to
            `"sum_over_batch_size"` (the batch mean).
        name: Defaults to `"perceptual_loss"`.
        dtype: dtype of the loss computation. Defaults to `None` (floatx).

    Example:

    >>> loss = PerceptualLoss(net="effnet-lite0", input_range="[0,1]")
    >>> target = np.random.uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    >>> float(loss(target, target))
    0.0
    >>> generator.compile(optimizer="adam", loss=loss)  # doctest: +SKIP

    Reference: Zhang et al., "The Unreasonable Effectiveness of Deep Features
    as a Perceptual Metric", CVPR 2018; `lpips_loss.py` in
    richzhang/PerceptualSimilarity.
    """

    def __init__(
        self,
        metric: LPIPS | str | os.PathLike | dict | None = None,
        *,
        net: str = DEFAULT_NET,
        version: str = "0.1",
        pretrained: bool = True,
        input_range: str | None = None,
        precision: str | None = None,
        reduction: str = "sum_over_batch_size",
        name: str = "perceptual_loss",
        dtype=None,
    ):
        if input_range is not None and input_range not in INPUT_RANGES:
            raise ValueError(
                f"Argument `input_range` must be one of {INPUT_RANGES} or None. Received: input_range={input_range!r}"
            )
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"Argument `precision` must be one of {PRECISIONS} or None. Received: precision={precision!r}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.precision = precision
        self.net = net
        self.version = str(version)
        self.pretrained = bool(pretrained)
        self.input_range = input_range
        self.metric_source = os.fspath(metric) if isinstance(metric, (str, os.PathLike)) else None
        self._metric_given = metric is not None and self.metric_source is None
        self.metric = self._resolve_metric(metric)
        self.metric.trainable = False

    def _resolve_metric(self, metric) -> LPIPS:
        # What this loss overrides of the metric's own options (None: keep the metric's).
        options = {key: value for key, value in (("input_range", self.input_range), ("precision", self.precision))
                   if value is not None}
        if isinstance(metric, dict):
            warnings.warn(
                "PerceptualLoss: restoring a metric that was passed as an instance; its architecture is "
                "restored but its weights are newly initialised (a loss config cannot carry weights). "
                "Pass the metric as a `.keras` path to keep them.",
                stacklevel=3,
            )
            metric = keras.saving.deserialize_keras_object(metric)
        elif isinstance(metric, (str, os.PathLike)):
            path = os.fspath(metric)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Argument `metric`: no such .keras file: {path!r}")
            metric = keras.saving.load_model(path)
        elif metric is None:
            if self.pretrained:
                from keras_percept.convert import pretrained_lpips

                return pretrained_lpips(self.net, version=self.version, **options)
            return LPIPS(net=self.net, version=self.version, **options)
        from keras_percept.models.dists import DISTS
        from keras_percept.models.ensemble import ELPIPS

        if not isinstance(metric, (LPIPS, DISTS, ELPIPS)):
            raise ValueError(
                "Argument `metric` must be None, an LPIPS, DISTS or ELPIPS model or a path to a .keras file "
                f"holding one. Received: {type(metric).__name__}"
            )
        if self.precision is not None and not isinstance(getattr(metric, "metric", metric), LPIPS):
            raise ValueError(f"Argument `precision` is an LPIPS option; {type(metric).__name__} "
                             f"{'over DISTS ' if isinstance(metric, ELPIPS) else ''}has none. "
                             f"Received: precision={self.precision!r}")
        spatial, per_layer = getattr(metric, "spatial", False), getattr(metric, "return_per_layer", False)
        if spatial or per_layer:
            raise ValueError(
                "Argument `metric` must return one distance per pair (spatial=False, return_per_layer=False). "
                f"Received: spatial={spatial}, return_per_layer={per_layer}"
            )
        return metric.with_options(**options)

    def call(self, y_true, y_pred):
        return self.metric((y_true, y_pred), training=False)

    def get_config(self) -> dict:
        if self.metric_source is not None:
            metric = self.metric_source
        elif self._metric_given:
            metric = keras.saving.serialize_keras_object(self.metric)
        else:
            metric = None
        return {
            **super().get_config(),
            "metric": metric,
            "net": self.net,
            "version": self.version,
            "pretrained": self.pretrained,
            "input_range": self.input_range,
            "precision": self.precision,
        }
