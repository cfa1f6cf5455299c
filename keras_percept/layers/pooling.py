"""Pooling that reproduces PyTorch's `ceil_mode=True`."""

from __future__ import annotations

import keras
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
