"""The shared wrapper that turns a pure loss function into a serializable `keras.losses.Loss`."""

from __future__ import annotations

import keras


class FunctionLoss(keras.losses.Loss):
    """Calls `fn(y_true, y_pred, **options)`; subclasses set `fn` and `options` (constructor argument names).

    `get_config` returns the base config plus every option, so `from_config`
    (the base class's `cls(**config)`) rebuilds the loss.
    """

    fn = None
    options: tuple[str, ...] = ()

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, **{k: getattr(self, k) for k in self.options})

    def get_config(self) -> dict:
        return {**super().get_config(), **{k: getattr(self, k) for k in self.options}}
