"""Stochastic depth: drop a whole branch per sample during training."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_percept")
class DropPath(keras.layers.Layer):
    """Zeroes the whole input of a sample with probability `rate` in training, else scales it by `1 / (1 - rate)`.

    Stochastic depth (Huang et al., ECCV 2016) applied to a branch: unlike
    `keras.layers.Dropout`, which drops single units, the mask is one
    Bernoulli draw per sample, broadcast over every other axis, so a sample
    either keeps the branch (rescaled, expectation unchanged) or loses it.
    Keras 3 has no such layer (keras-hub and keras-cv each keep their own),
    hence this one. At inference it is the identity.

    Formula:

    ```
    training:  y_n = x_n * b_n / (1 - rate),  b_n ~ Bernoulli(1 - rate)
    inference: y_n = x_n
    ```

    Args:
        rate: probability of dropping a sample's branch, in [0, 1). Defaults to `0.0`.
        seed: seed of the layer's `keras.random.SeedGenerator`. Defaults to `None`.

    Example:

    >>> layer = DropPath(0.5, seed=1)
    >>> y = layer(np.ones((4, 3), "float32"), training=True)  # rows are all 0 or all 2
    >>> np.asarray(layer(np.ones((4, 3), "float32"))).tolist()[0]  # inference: identity
    [1.0, 1.0, 1.0]

    Reference: Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with
    Stochastic Depth", ECCV 2016.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Argument `rate` must be a number in [0, 1). Received: rate={rate!r}")
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        draw = keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype)
        mask = ops.cast(draw < keep, inputs.dtype)
        return inputs * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
