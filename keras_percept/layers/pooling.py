"""Pooling layers PyTorch trunks use and Keras lacks: `ceil_mode=True` max pooling, DISTS's L2 pooling."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_percept")
class CeilMaxPooling2D(keras.layers.Layer):
    """3x3 / stride-2 max-pooling with PyTorch's `ceil_mode=True` output size.

    PyTorch's SqueezeNet pools with `ceil_mode=True`: the output has
    `ceil((H - 3) / 2) + 1` rows, one more than Keras's "valid" pooling when
    `H` is even. Padding one row and column of `-inf` at the bottom/right and
    then pooling "valid" gives exactly that size for every `H`, and the padded
    cells never win the max, so values match PyTorch too. (Keras's "same"
    padding gives `ceil(H / 2)` rows, which is wrong for odd `H`.)

    Example:

    >>> CeilMaxPooling2D()(np.zeros((1, 4, 4, 1))).shape
    (1, 2, 2, 1)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pool = keras.layers.MaxPooling2D(3, strides=2, padding="valid")

    def call(self, inputs):
        padded = ops.pad(
            inputs, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=float("-inf")
        )
        return self._pool(padded)

    def compute_output_shape(self, input_shape):
        def out(size):
            return None if size is None else (size - 2) // 2 + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])


@keras.saving.register_keras_serializable(package="keras_percept")
class L2Pooling2D(keras.layers.Layer):
    """DISTS's L2 pooling: `sqrt(hann_3x3 * x² + 1e-12)`, stride 2, per channel.

    Keras has no L2 pooling. DISTS (Ding et al., TPAMI 2020) replaces VGG's max pools with it to
    avoid aliasing: the squared input is blurred by the normalised outer product of the Hann
    window's inner taps (`np.hanning(5)[1:-1]` = [0.5, 1, 0.5]), one zero row and column padded on
    every side as PyTorch's `padding=1`, sampled every second pixel, and the square root taken.
    The output has `ceil(H / 2)` rows. The filter is a constant, not a weight.

    Example:

    >>> L2Pooling2D()(np.ones((1, 5, 5, 2))).shape
    (1, 3, 3, 2)
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        window = np.hanning(5)[1:-1]
        self._filter = (window[:, None] * window[None, :] / np.sum(window[:, None] * window[None, :]))

    def call(self, inputs):
        channels = inputs.shape[-1]
        kernel = ops.convert_to_tensor(np.tile(self._filter[:, :, None, None], (1, 1, channels, 1)), inputs.dtype)
        padded = ops.pad(ops.square(inputs), ((0, 0), (1, 1), (1, 1), (0, 0)))
        return ops.sqrt(ops.depthwise_conv(padded, kernel, strides=2, padding="valid") + self.epsilon)

    def compute_output_shape(self, input_shape):
        def out(size):
            return None if size is None else (size + 1) // 2

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}
