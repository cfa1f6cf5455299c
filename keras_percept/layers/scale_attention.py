"""Attention over feature scales: project every tap to a common width, weight them by a softmax."""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from keras_percept.layers.drop_path import DropPath


@keras.saving.register_keras_serializable(package="keras_percept")
class ScaleAttention(keras.layers.Layer):
    """Fuses K pooled feature vectors (one per trunk tap) into one, with per-sample softmax weights over scales.

    Formula:

    ```
    h_k = x_k @ W_k + b_k                      # (N, dim), one projection per scale
    s_k = tanh(h_k) @ v                        # (N,), one shared scoring vector
    a   = softmax([s_1, ..., s_K])             # over scales, per sample
    y   = sum_k a_k * drop_path(h_k)           # (N, dim)
    ```

    Additive (Bahdanau-style) attention with the scales as the sequence;
    `keras.layers.Attention` / `MultiHeadAttention` expect one width for
    every position, the taps here have different widths, hence the
    per-scale projections. With `drop_path > 0` a scale's projected vector
    is dropped for a whole sample in training (`DropPath`), so the head
    cannot rely on one scale alone.

    Args:
        input_dims: width of each scale's input vector, e.g. `(32, 48, 80)`.
        dim: common projected width. Defaults to `128`.
        drop_path: per-sample drop rate of each scale's branch, in [0, 1). Defaults to `0.0`.
        seed: seed of the drop-path draws. Defaults to `None`.

    Call arguments:
        inputs: a list of K tensors `(N, input_dims[k])`.
        return_weights: also return the attention weights `(N, K)`. Defaults to `False`.

    Example:

    >>> layer = ScaleAttention((8, 16), dim=4)
    >>> y, a = layer([np.ones((2, 8)), np.ones((2, 16))], return_weights=True)
    >>> tuple(y.shape), tuple(a.shape)
    ((2, 4), (2, 2))
    """

    def __init__(self, input_dims: Sequence[int], dim: int = 128, drop_path: float = 0.0, seed: int | None = None,
                 **kwargs):
        input_dims = [int(d) for d in input_dims]
        if not input_dims or any(d < 1 for d in input_dims):
            raise ValueError(f"Argument `input_dims` must be a non-empty list of positive widths. "
                             f"Received: input_dims={input_dims!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Argument `dim` must be a positive integer. Received: dim={dim!r}")
        super().__init__(**kwargs)
        self.input_dims = input_dims
        self.dim = dim
        self.drop_path = float(drop_path)
        self.seed = seed
        self.projections = []
        for k, width in enumerate(input_dims):
            dense = keras.layers.Dense(dim, name=f"project_{k}")
            dense.build((None, width))
            self.projections.append(dense)
        self.score = keras.layers.Dense(1, use_bias=False, name="score")
        self.score.build((None, dim))
        self.branch_drop = DropPath(self.drop_path, seed=seed, name="branch_drop_path")
        self.built = True

    def call(self, inputs, training=None, return_weights: bool = False):
        if len(inputs) != len(self.projections):
            raise ValueError(f"ScaleAttention expects {len(self.projections)} inputs (one per scale). "
                             f"Received: {len(inputs)}")
        projected = [p(x) for p, x in zip(self.projections, inputs)]
        scores = ops.concatenate([self.score(ops.tanh(h)) for h in projected], axis=-1)  # (N, K)
        weights = ops.softmax(scores, axis=-1)
        stacked = ops.stack([self.branch_drop(h, training=training) for h in projected], axis=1)  # (N, K, dim)
        fused = ops.sum(stacked * weights[:, :, None], axis=1)
        return (fused, weights) if return_weights else fused

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.dim)

    def get_config(self) -> dict:
        return {**super().get_config(), "input_dims": self.input_dims, "dim": self.dim, "drop_path": self.drop_path,
                "seed": self.seed}
