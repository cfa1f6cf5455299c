"""Shared base class for feature-extraction trunks."""

from __future__ import annotations

import keras


class Backbone(keras.Model):
    """A functional trunk mapping an NHWC image batch to a list of tapped features.

    Subclasses build their graph in `__init__` and pass `inputs`/`outputs` to
    this constructor. Class attributes describe the taps so that heads
    (e.g. LPIPS linear layers) can be built without running the trunk:

    - `TAP_CHANNELS`: channel count of each tapped feature map.
    - `TAP_REDUCTIONS`: spatial reduction factor of each tap (approximate for
      trunks with "valid" convolutions).
    - `MIN_SIZE`: smallest input height/width the trunk accepts.

    Example:

    >>> from keras_percept.backbones import AlexNetBackbone
    >>> trunk = AlexNetBackbone()
    >>> [f.shape[-1] for f in trunk(np.zeros((1, 64, 64, 3)))]
    [64, 192, 384, 256, 256]
    """

    TAP_CHANNELS: tuple[int, ...] = ()
    TAP_REDUCTIONS: tuple[int, ...] = ()
    MIN_SIZE: int = 1

    def get_config(self) -> dict:
        # The graph is rebuilt by `__init__`; only constructor arguments are stored.
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict) -> "Backbone":
        return cls(**config)

    @property
    def feature_info(self) -> list[dict]:
        """Channels and reduction of every tap, timm-style."""
        return [
            {"channels": c, "reduction": r}
            for c, r in zip(self.TAP_CHANNELS, self.TAP_REDUCTIONS)
        ]
