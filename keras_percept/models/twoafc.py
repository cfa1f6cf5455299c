"""The 2AFC training model: a distance metric plus a comparison head."""

from __future__ import annotations

import keras
from keras import ops

from keras_percept.models.lpips import LPIPS


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCModel(keras.Model):
    """Scores 2AFC triplets: `(ref, p0, p1) -> [d0, d1, G]`, shape `(N, 3)`.

    `d0 = metric(ref, p0)`, `d1 = metric(ref, p1)`; `G = comparison(d0, d1)`
    is the logit of P(a judge prefers p1), which 2AFC losses compare with the
    soft human label h. One trunk pass runs over the three images
    concatenated. The trained metric itself is `model.metric` — save that for
    deployment.

    Args:
        metric: a non-spatial `LPIPS` (or its serialized config).
        comparison: a comparison layer mapping `(d0, d1)` to logits (see
            `keras_percept.models.comparison`), or its serialized config.

    Example:

    >>> from keras_percept.models.comparison import Dist2Logit
    >>> model = TwoAFCModel(LPIPS(net="alex", dropout=0.5), Dist2Logit())
    >>> ref = np.zeros((2, 64, 64, 3), "float32")
    >>> model((ref, ref, ref)).shape
    (2, 3)
    """

    def __init__(self, metric, comparison, **kwargs):
        super().__init__(**kwargs)
        if isinstance(metric, dict):
            metric = keras.saving.deserialize_keras_object(metric)
        if isinstance(comparison, dict):
            comparison = keras.saving.deserialize_keras_object(comparison)
        if not isinstance(metric, LPIPS):
            raise ValueError(f"Argument `metric` must be an LPIPS model. Received: {type(metric).__name__}")
        if metric.spatial or metric.return_per_layer:
            raise ValueError(
                "Argument `metric` must return one distance per pair (spatial=False, return_per_layer=False). "
                f"Received: spatial={metric.spatial}, return_per_layer={metric.return_per_layer}"
            )
        self.metric = metric
        self.comparison = comparison
        # Every sub-layer creates its weights in its constructor, so the model is complete
        # (BackupAndRestore and MirroredStrategy need a built model before `fit`).
        self.built = bool(metric.built and comparison.built)

    def call(self, inputs, training=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
            raise ValueError(
                f"TwoAFCModel expects a triplet (ref, p0, p1). Received: {type(inputs).__name__}"
                + (f" of length {len(inputs)}" if isinstance(inputs, (list, tuple)) else "")
            )
        ref, p0, p1 = inputs
        self.metric._unpack((ref, p0))
        self.metric._unpack((ref, p1))
        n = ops.shape(ref)[0]
        features = self.metric.normalized_features(ops.concatenate([ref, p0, p1], axis=0), training=training)
        f_ref = [f[:n] for f in features]
        f_p0 = [f[n:2 * n] for f in features]
        f_p1 = [f[2 * n:] for f in features]
        d0 = self.metric.distance_from_features(f_ref, f_p0, training=training)
        d1 = self.metric.distance_from_features(f_ref, f_p1, training=training)
        logits = self.comparison(d0, d1)
        return ops.stack([d0, d1, ops.reshape(logits, ops.shape(d0))], axis=-1)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "metric": keras.saving.serialize_keras_object(self.metric),
            "comparison": keras.saving.serialize_keras_object(self.comparison),
        }
