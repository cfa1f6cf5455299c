"""Pooling layers PyTorch trunks use and Keras lacks: `ceil_mode=True` max pooling, DISTS's L2 pooling, blur pooling."""

from __future__ import annotations

import math

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


@keras.saving.register_keras_serializable(package="keras_percept")
class BlurPool2D(keras.layers.Layer):
    """Anti-aliased downsampling: reflect padding, a binomial blur per channel, then subsampling.

    Keras has no blur pooling. Anti-aliased CNNs (Zhang, ICML 2019) replace each strided
    operation by its stride-1 version followed by this layer, so a shift of the input shifts the
    features instead of aliasing them; ST-LPIPS (Ghildyal & Liu, ECCV 2022) builds its trunks
    this way. The filter is the normalised outer product of a row of Pascal's triangle
    (`filter_size` 3: [1, 2, 1] / 4), a constant, not a weight. Padding reflects `filter_size - 1`
    pixels on every side (ST-LPIPS's `pad_more=True`), or `(filter_size - 1) // 2` before and
    the rest after (`pad_more=False`, antialiased-cnns' default); reflection needs more rows
    and columns than it pads. Output rows: `(H + pad - filter_size) // strides + 1`.

    Args:
        filter_size: taps of the binomial filter, 1 to 7. Defaults to `3`.
        strides: subsampling factor. Defaults to `2`.
        pad_more: pad `filter_size - 1` on every side instead of about half that. Defaults to `True`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to `"channels_last"`.

    Example:

    >>> BlurPool2D()(np.ones((1, 8, 8, 2))).shape
    (1, 5, 5, 2)
    """

    def __init__(self, filter_size: int = 3, strides: int = 2, pad_more: bool = True,
                 data_format: str = "channels_last", **kwargs):
        if int(filter_size) != filter_size or not 1 <= filter_size <= 7:
            raise ValueError(f"Argument `filter_size` must be an integer in [1, 7]. Received: filter_size={filter_size!r}")
        if int(strides) != strides or strides < 1:
            raise ValueError(f"Argument `strides` must be a positive integer. Received: strides={strides!r}")
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError("Argument `data_format` must be 'channels_last' or 'channels_first'. "
                             f"Received: data_format={data_format!r}")
        super().__init__(**kwargs)
        self.filter_size, self.strides, self.pad_more = int(filter_size), int(strides), bool(pad_more)
        self.data_format = data_format
        row = np.array([math.comb(self.filter_size - 1, k) for k in range(self.filter_size)], "float64")
        self.filter = np.outer(row, row) / np.sum(np.outer(row, row))
        before = self.filter_size - 1 if self.pad_more else (self.filter_size - 1) // 2
        after = self.filter_size - 1 if self.pad_more else self.filter_size - 1 - before
        self.padding = (before, after)

    def call(self, inputs):
        channels = inputs.shape[1 if self.data_format == "channels_first" else -1]
        kernel = ops.convert_to_tensor(np.tile(self.filter[:, :, None, None], (1, 1, channels, 1)), inputs.dtype)
        spatial = (self.padding, self.padding)
        pads = ((0, 0), (0, 0), *spatial) if self.data_format == "channels_first" else ((0, 0), *spatial, (0, 0))
        padded = ops.pad(inputs, pads, mode="reflect") if sum(self.padding) else inputs
        return ops.depthwise_conv(padded, kernel, strides=self.strides, padding="valid", data_format=self.data_format)

    def compute_output_shape(self, input_shape):
        def out(size):
            return None if size is None else (size + sum(self.padding) - self.filter_size) // self.strides + 1

        if self.data_format == "channels_first":
            return (input_shape[0], input_shape[1], out(input_shape[2]), out(input_shape[3]))
        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), input_shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "filter_size": self.filter_size, "strides": self.strides,
                "pad_more": self.pad_more, "data_format": self.data_format}
