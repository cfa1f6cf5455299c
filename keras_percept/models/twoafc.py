"""The 2AFC training model: a distance metric plus a comparison head."""

from __future__ import annotations

import keras
from keras import ops

from keras_percept.adversarial import PGD
from keras_percept.models.dists import DISTS
from keras_percept.models.lpips import LPIPS


@keras.saving.register_keras_serializable(package="keras_percept")
class TwoAFCModel(keras.Model):
    """Scores 2AFC triplets: `(ref, p0, p1) -> [d0, d1, G]`, shape `(N, 3)`.

    `d0 = metric(ref, p0)`, `d1 = metric(ref, p1)`; `G = comparison(d0, d1)`
    is the logit of P(a judge prefers p1), which 2AFC losses compare with the
    soft human label h. One trunk pass runs over the three images
    concatenated. The trained metric itself is `model.metric` — save that for
    deployment.

    With `adversarial` (R-LPIPS), every training batch is first attacked: its
    `target` image moves by PGD, in inference mode, to raise the binary
    cross-entropy of the comparison logit against h (`keras_percept.adversarial`);
    the step then trains on the attacked batch. Evaluation and prediction see
    clean images.

    Args:
        metric: a non-spatial `LPIPS` or a `DISTS` (or its serialized config).
        comparison: a comparison layer mapping `(d0, d1)` to logits (see
            `keras_percept.models.comparison`), or its serialized config.
        adversarial: `PGD` arguments (`epsilon`, `steps`, `norm`, `step_size`,
            `target`) for adversarial training, or `None`. Defaults to `None`.

    Example:

    >>> from keras_percept.models.comparison import Dist2Logit
    >>> model = TwoAFCModel(LPIPS(net="alex", dropout=0.5), Dist2Logit())
    >>> ref = np.zeros((2, 64, 64, 3), "float32")
    >>> model((ref, ref, ref)).shape
    (2, 3)
    """

    def __init__(self, metric, comparison, adversarial: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.adversarial = dict(adversarial) if adversarial else None
        self.attack = PGD(**self.adversarial) if self.adversarial else None
        if isinstance(metric, dict):
            metric = keras.saving.deserialize_keras_object(metric)
        if isinstance(comparison, dict):
            comparison = keras.saving.deserialize_keras_object(comparison)
        if not isinstance(metric, (LPIPS, DISTS)):
            raise ValueError(f"Argument `metric` must be an LPIPS or DISTS model. Received: {type(metric).__name__}")
        if getattr(metric, "spatial", False) or getattr(metric, "return_per_layer", False):
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
        extract = self.metric.normalized_features if isinstance(self.metric, LPIPS) else self.metric.features
        features = extract(ops.concatenate([ref, p0, p1], axis=0), training=training)
        f_ref = [f[:n] for f in features]
        f_p0 = [f[n:2 * n] for f in features]
        f_p1 = [f[2 * n:] for f in features]
        d0 = self.metric.distance_from_features(f_ref, f_p0, training=training)
        d1 = self.metric.distance_from_features(f_ref, f_p1, training=training)
        logits = self.comparison(d0, d1)
        return ops.stack([d0, d1, ops.reshape(logits, ops.shape(d0))], axis=-1)

    def train_step(self, *args):
        """Keras's step; with `adversarial`, on the PGD-attacked batch (JAX passes `(state, data)`)."""
        if self.attack is None:
            return super().train_step(*args)
        if keras.backend.backend() == "jax":
            state, data = args
            mapping = [*zip(self.trainable_variables, state[0]), *zip(self.non_trainable_variables, state[1])]
            return super().train_step(state, self._attacked(data, state_mapping=mapping))
        return super().train_step(self._attacked(args[0]))

    def _attacked(self, data, **gradient_kwargs):
        x, y = data[0], data[1]
        h = ops.reshape(ops.cast(y, "float32"), (-1,))

        def loss_of(ref, p0, p1):
            logits = self((ref, p0, p1), training=False)[:, 2]
            return ops.mean(ops.binary_crossentropy(h, logits, from_logits=True))

        return (self.attack.perturb(tuple(x), loss_of, **gradient_kwargs), *data[1:])

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "metric": keras.saving.serialize_keras_object(self.metric),
            "comparison": keras.saving.serialize_keras_object(self.comparison),
            "adversarial": self.adversarial,
        }
