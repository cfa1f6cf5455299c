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

    def stage_of_variables(self) -> dict[str, int]:
        """`{variable path: stage}` for every trainable variable; stage k ends at tap k.

        A layer belongs to the stage of the first tap computed after it (the
        layers are in topological order), so stage 0 is nearest the input.
        Gradual unfreezing uses this to release the trunk from the top down.
        """
        taps = {id(t) for t in self.outputs}
        stage, stages = 0, {}
        for layer in self.layers:
            for variable in layer.trainable_variables:
                stages[variable.path] = min(stage, len(self.outputs) - 1)
            if id(layer.output) in taps:
                stage += 1
        return stages

    @property
    def feature_info(self) -> list[dict]:
        """Channels and reduction of every tap, timm-style."""
        return [
            {"channels": c, "reduction": r}
            for c, r in zip(self.TAP_CHANNELS, self.TAP_REDUCTIONS)
        ]
