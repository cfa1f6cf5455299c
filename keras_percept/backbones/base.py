"""Shared base class for feature-extraction trunks."""

from __future__ import annotations

import keras


def internal_data_format() -> str:
    """The layout a trunk computes in: `channels_first` on the torch backend, else `channels_last`.

    Inputs and taps stay NHWC either way. Keras-on-torch runs a channels-last
    convolution or pooling as permute, copy to contiguous, convert to torch's
    channels-last memory format, compute, permute back: two copies of every
    activation per layer (measured on alex 64 px, batch 64: 11 ms of 57 ms
    per call, and its max pools 10x slower). A channels-first graph has one
    transpose at the input and one per tap. Kernels have the same shape in
    both layouts, so weights and `.keras` files do not depend on it.
    """
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def to_internal(x, data_format: str, name: str):
    """NHWC `x` in `data_format` (a `Permute` layer when channels-first)."""
    return x if data_format == "channels_last" else keras.layers.Permute((3, 1, 2), name=name)(x)


def to_nhwc(x, data_format: str, name: str):
    """`x` of `data_format` back in NHWC (a `Permute` layer when channels-first): how taps leave a trunk."""
    return x if data_format == "channels_last" else keras.layers.Permute((2, 3, 1), name=name)(x)


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
        # A channels-first trunk's taps are `Permute` layers (`to_nhwc`), which may come last in the layer
        # order: there the stage ends at the layer that each `tap_k` permutes.
        taps |= {id(layer.input) for layer in self.layers
                 if isinstance(layer, keras.layers.Permute) and id(layer.output) in taps}
        stage, stages = 0, {}
        for layer in self.layers:
            if isinstance(layer, keras.layers.Permute) and id(layer.output) in taps:
                continue  # its input already ended the stage
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
