"""Unit-length normalisation of feature vectors across channels."""

from __future__ import annotations

import keras
from keras import ops


def unit_normalize(features, epsilon: float = 1e-10):
    """Divides each pixel's feature vector by `sqrt(sum_c f^2) + epsilon`.

    Forward values are those of the reference `lpips.normalize_tensor`
    (epsilon *outside* the square root). The reference's gradient is NaN where
    a feature vector is all zeros (`d sqrt(s)/ds` is infinite at 0;
    PerceptualSimilarity issues #69, #121). Here the square root only ever
    sees positive values (the "double where" trick), so the norm's gradient is
    0 at such pixels and finite everywhere, while the forward numbers are
    unchanged: at an all-zero vector the reference divides 0 by `epsilon` too.

    Args:
        features: tensor `(..., C)`, channels last.
        epsilon: added to the norm. Defaults to `1e-10`.

    Example:

    >>> unit_normalize(np.array([[3.0, 4.0]]))
    [[0.6, 0.8]]
    """
    sum_sq = ops.sum(ops.square(features), axis=-1, keepdims=True)
    positive = sum_sq > 0
    safe = ops.where(positive, sum_sq, ops.ones_like(sum_sq))
    norm = ops.where(positive, ops.sqrt(safe), ops.zeros_like(sum_sq))
    # One reciprocal per pixel, then a multiply over the channels: cheaper than dividing every element.
    return ops.multiply(features, ops.reciprocal(norm + epsilon))


@keras.saving.register_keras_serializable(package="keras_percept")
class ChannelUnitNormalization(keras.layers.Layer):
    """Layer form of `unit_normalize` (reference eps 1e-10, finite gradients).

    Args:
        epsilon: added to the channel norm. Defaults to `1e-10`.

    Example:

    >>> ChannelUnitNormalization()(np.ones((1, 1, 1, 4), "float32"))
    [[[[0.5, 0.5, 0.5, 0.5]]]]
    """

    def __init__(self, epsilon: float = 1e-10, **kwargs):
        super().__init__(**kwargs)
        if not epsilon >= 0:
            raise ValueError(f"Argument `epsilon` must be >= 0. Received: epsilon={epsilon}")
        self.epsilon = float(epsilon)

    def call(self, inputs):
        return unit_normalize(inputs, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}
