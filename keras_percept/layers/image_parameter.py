"""A layer holding one image as its weight, and the value-range constraint that keeps it valid.

Used to optimise an image directly (LPIPS as a loss: `keras_percept.examples.optimize_image`).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_percept")
class ClipToRange(keras.constraints.Constraint):
    """Clips a weight's values into `[low, high]` after each optimizer step.

    Keras's built-in constraints bound norms or signs, not values, hence this one.

    Example:

    >>> ClipToRange(0.0, 1.0)(np.array([-0.5, 0.3, 2.0]))  # [0.0, 0.3, 1.0]
    """

    def __init__(self, low: float = 0.0, high: float = 1.0):
        if not low < high:
            raise ValueError(f"Arguments `low` < `high` required. Received: low={low}, high={high}")
        self.low = float(low)
        self.high = float(high)

    def __call__(self, w):
        return ops.clip(w, self.low, self.high)

    def get_config(self) -> dict:
        return {"low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="keras_percept")
class ImageParameter(keras.layers.Layer):
    """A layer whose only weight is one `(H, W, 3)` image; it outputs that image for each input row.

    Args:
        image_shape: `(H, W, 3)`.
        value_range: `(low, high)` the image is clipped to after each step.
            Defaults to `(0.0, 1.0)`.

    Example:

    >>> layer = ImageParameter((64, 64, 3))
    >>> layer.image.assign(start)  # doctest: +SKIP
    >>> layer(np.zeros((1, 1))).shape
    (1, 64, 64, 3)
    """

    def __init__(self, image_shape: Sequence[int], value_range: Sequence[float] = (0.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or image_shape[-1] != 3:
            raise ValueError(f"Argument `image_shape` must be (H, W, 3). Received: image_shape={image_shape}")
        self.image_shape = image_shape
        self.value_range = tuple(float(v) for v in value_range)
        self.image = self.add_weight(
            shape=image_shape, initializer="zeros", constraint=ClipToRange(*self.value_range), name="image"
        )
        self.built = True

    def call(self, inputs):
        return ops.broadcast_to(ops.expand_dims(self.image, 0), (ops.shape(inputs)[0], *self.image_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.image_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "image_shape": self.image_shape, "value_range": self.value_range}
