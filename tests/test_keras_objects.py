"""One harness for every object the package registers with Keras, on every backend.

In the style of keras-hub's `run_layer_test` / `run_model_saving_test`: each
registered layer, model, loss, metric, regulariser, constraint and schedule
(`register_keras_serializable(package="keras_percept")`) is built from a row
of `CASES` and must

1. serialise under its registered name, with a JSON-able config, and come back
   from `keras.saving.deserialize_keras_object` as the same class with the same
   serialised config (so `get_config` is complete);
2. give the original's output when called on the row's inputs, once the clone
   holds the same weights;
3. for layers and models: survive a `.keras` save and `keras.saving.load_model`
   (safe mode) with the same weights and output (a layer inside a small holder
   model, as it is saved in practice).

`test_every_registered_object_has_a_case` fails when a new class is registered
without a row, so nothing registered escapes the harness.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
import pytest

import keras_percept

RNG = np.random.default_rng(0)
# Inputs share sizes where models share a trunk (squeeze 32 px, VGG 24 px, EfficientNet 32 px): JAX compiles each
# eager operation once per shape. The parity tests cover odd sizes.


def _images(n: int, size: int, low: float = -1.0) -> np.ndarray:
    return RNG.uniform(low, 1.0, (n, size, size, 3)).astype(np.float32)


def _pair(size: int = 32, low: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    x0 = _images(2, size, low)
    return x0, np.clip(x0 + RNG.normal(0, 0.2, x0.shape), low, 1.0).astype(np.float32)


H = np.array([0.0, 0.25, 1.0, 0.6], np.float32)  # 2AFC judgments
TWOAFC_PRED = np.array([[0.2, 0.5, -0.3], [0.4, 0.1, 0.8], [0.3, 0.3, 0.0], [0.9, 0.2, 1.5]], np.float32)
MOS = (np.array([3.0, 1.5, 4.2, 2.2], np.float32), np.array([2.8, 1.9, 3.9, 2.0], np.float32))
KERNEL = RNG.uniform(-0.2, 1.0, (1, 1, 6, 1)).astype(np.float32)


@dataclass
class Case:
    """`make()` builds the object; `inputs` are the positional arguments of the call (of `update_state` for a
    metric; the step numbers for a schedule), or a function of the object giving them."""
    make: Callable[[], Any]
    inputs: tuple | Callable[[Any], tuple] = ()


def _lpips(**kwargs):
    from keras_percept import LPIPS

    keras.utils.set_random_seed(1)
    return LPIPS(net="squeeze", **kwargs)


def _iqa_model():
    from keras_percept.models.iqa import IQAModel

    keras.utils.set_random_seed(2)
    return IQAModel(net="squeeze", hidden=8, fusion_dim=8, seed=0)


def _cases() -> dict[str, Case]:
    from keras_percept import backbones, layers, losses, regularizers
    from keras_percept.models import DISTS, ELPIPS
    from keras_percept.backbones.efficientnet_lite import EfficientNetLite0Classifier
    from keras_percept.layers.image_parameter import ClipToRange
    from keras_percept.metrics.keras_metrics import TwoAFCScore
    from keras_percept.metrics.streaming import LPIPSMetric
    from keras_percept.models.comparison import DifferenceComparison, Dist2Logit, LogRatioComparison
    from keras_percept.models.iqa import PooledIQAHead
    from keras_percept.models.twoafc import TwoAFCModel
    from keras_percept.training.schedules import DelayedStart, HoldThenLinearDecay

    d = (np.array([0.1, 0.4, 0.3], np.float32), np.array([0.2, 0.1, 0.3], np.float32))
    steps = (np.int64(0), np.int64(4), np.int64(9), np.int64(30))
    return {
        "AlexNetBackbone": Case(backbones.AlexNetBackbone, (_images(1, 64),)),
        "SqueezeNetBackbone": Case(backbones.SqueezeNetBackbone, (_images(1, 32),)),
        "VGG16Backbone": Case(lambda: backbones.VGG16Backbone(pooling="l2"), (_images(1, 24, low=0.0),)),
        "EfficientNetLite0Backbone": Case(backbones.EfficientNetLite0Backbone, (_images(1, 32),)),
        "EfficientNetLite0Classifier": Case(EfficientNetLite0Classifier, (_images(1, 32),)),
        "CeilMaxPooling2D": Case(layers.CeilMaxPooling2D, (_images(1, 7),)),
        "L2Pooling2D": Case(layers.L2Pooling2D, (_images(1, 9),)),
        "BlurPool2D": Case(lambda: layers.BlurPool2D(4, pad_more=False), (_images(1, 9),)),
        "AlexNetShiftTolerantBackbone": Case(backbones.AlexNetShiftTolerantBackbone, (_images(1, 23),)),
        "VGG16ShiftTolerantBackbone": Case(backbones.VGG16ShiftTolerantBackbone, (_images(1, 19),)),
        "ChannelUnitNormalization": Case(layers.ChannelUnitNormalization, (_images(1, 5),)),
        "InputScaling": Case(layers.InputScaling, (_images(1, 4),)),
        "DropPath": Case(lambda: layers.DropPath(0.3, seed=4), (_images(2, 4),)),
        "ImageParameter": Case(lambda: layers.ImageParameter((4, 5, 3)), (np.zeros((2, 1), np.float32),)),
        "ScaleAttention": Case(lambda: layers.ScaleAttention([4, 6], dim=8, seed=0),
                               ([RNG.normal(size=(3, 4)).astype(np.float32),
                                 RNG.normal(size=(3, 6)).astype(np.float32)],)),
        "DifferenceComparison": Case(DifferenceComparison, d),
        "LogRatioComparison": Case(LogRatioComparison, d),
        "Dist2Logit": Case(lambda: Dist2Logit(hidden=8), d),
        "LPIPS": Case(lambda: _lpips(dropout=0.5, precision="bfloat16"), (_pair(),)),
        "DISTS": Case(lambda: DISTS(), (_pair(24, low=0.0),)),
        # Its draws are not what the harness compares (a copied seed state is already advanced): transforms off.
        "ELPIPS": Case(lambda: ELPIPS(_lpips(), samples=2, max_offset=0, flips=False, transpose=False,
                                      permute_channels=False, colour_scale=(1.0, 1.0), max_downscale=1, seed=3),
                       (_pair(),)),
        "TwoAFCModel": Case(lambda: TwoAFCModel(_lpips(), DifferenceComparison()), ((*_pair(), _images(2, 32)),)),
        "IQAModel": Case(_iqa_model, (_images(2, 32),)),
        "PooledIQAHead": Case(lambda: PooledIQAHead(_iqa_model()),
                              lambda head: (RNG.normal(size=(3, head.iqa_model.pooled_width)).astype(np.float32),)),
        # losses (y_true, y_pred)
        "TwoAFCBCE": Case(lambda: losses.TwoAFCBCE(label_smoothing=0.1), (H, TWOAFC_PRED)),
        "TwoAFCFocal": Case(lambda: losses.TwoAFCFocal(gamma=1.5), (H, TWOAFC_PRED)),
        "TwoAFCHinge": Case(lambda: losses.TwoAFCHinge(margin=0.5), (H, TWOAFC_PRED)),
        "TwoAFCMarginRanking": Case(lambda: losses.TwoAFCMarginRanking(margin=0.2), (H, TWOAFC_PRED)),
        "TwoAFCSimilarityMSE": Case(losses.TwoAFCSimilarityMSE, (H, TWOAFC_PRED)),
        "L1Loss": Case(losses.L1Loss, MOS),
        "L2Loss": Case(losses.L2Loss, MOS),
        "PLCCLoss": Case(losses.PLCCLoss, MOS),
        "SRCCLoss": Case(lambda: losses.SRCCLoss(temperature=0.5), MOS),
        "PairwiseRankLoss": Case(losses.PairwiseRankLoss, MOS),
        "FidelityLoss": Case(lambda: losses.FidelityLoss(sigma=0.7), MOS),
        "PerceptualLoss": Case(lambda: losses.PerceptualLoss(_lpips(), input_range="[-1,1]", precision="bfloat16"),
                               _pair()),
        # metrics (update_state arguments)
        "TwoAFCScore": Case(TwoAFCScore, (H, TWOAFC_PRED)),
        "LPIPSMetric": Case(lambda: LPIPSMetric(_lpips(), keep_per_sample=4), _pair()),
        # regularisers and constraints (a kernel)
        "NonNegPenalty": Case(lambda: regularizers.NonNegPenalty(0.5), (KERNEL,)),
        "LogBarrier": Case(lambda: regularizers.LogBarrier(mu=1e-3), (np.abs(KERNEL) + 0.01,)),
        "L2SP": Case(lambda: regularizers.L2SP(KERNEL * 0.5, strength=0.1), (KERNEL,)),
        "GroupLasso": Case(regularizers.GroupLasso, (KERNEL,)),
        "SimplexPenalty": Case(regularizers.SimplexPenalty, (KERNEL,)),
        "EntropyPenalty": Case(regularizers.EntropyPenalty, (KERNEL,)),
        "ClipToRange": Case(lambda: ClipToRange(0.0, 0.5), (KERNEL,)),
        # schedules (steps)
        "HoldThenLinearDecay": Case(lambda: HoldThenLinearDecay(1e-3, hold_steps=5, decay_steps=10), steps),
        "DelayedStart": Case(lambda: DelayedStart(HoldThenLinearDecay(1e-3, 5, 10), start_step=3), steps),
    }


def _registered() -> set[str]:
    """Names registered under `keras_percept>` once every module of the package is imported."""
    for module in pkgutil.walk_packages(keras_percept.__path__, "keras_percept."):
        importlib.import_module(module.name)
    return {name.split(">", 1)[1] for name in keras.saving.get_custom_objects() if name.startswith("keras_percept>")}


CASE_NAMES = sorted(
    "AlexNetBackbone SqueezeNetBackbone VGG16Backbone EfficientNetLite0Backbone EfficientNetLite0Classifier "
    "AlexNetShiftTolerantBackbone VGG16ShiftTolerantBackbone BlurPool2D "
    "CeilMaxPooling2D L2Pooling2D ChannelUnitNormalization InputScaling DropPath ImageParameter ScaleAttention "
    "DifferenceComparison LogRatioComparison Dist2Logit LPIPS DISTS ELPIPS TwoAFCModel IQAModel PooledIQAHead "
    "TwoAFCBCE TwoAFCFocal TwoAFCHinge TwoAFCMarginRanking TwoAFCSimilarityMSE L1Loss L2Loss PLCCLoss SRCCLoss "
    "PairwiseRankLoss FidelityLoss PerceptualLoss TwoAFCScore LPIPSMetric NonNegPenalty LogBarrier L2SP "
    "GroupLasso SimplexPenalty EntropyPenalty ClipToRange HoldThenLinearDecay DelayedStart".split()
)


def test_every_registered_object_has_a_case():
    registered = _registered()
    assert sorted(registered - set(CASE_NAMES)) == [], "registered without a row in CASES"
    assert sorted(set(CASE_NAMES) - registered) == [], "a row in CASES for a name nobody registers"


@keras.saving.register_keras_serializable(package="keras_percept_tests")
class _Holder(keras.Model):
    """A model around one layer, calling it on a tuple of positional inputs (how a layer is saved in practice)."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, inputs):
        return self.inner(*inputs)

    def get_config(self):
        return {**super().get_config(), "inner": keras.saving.serialize_keras_object(self.inner)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("inner")), **config)


def _init_arguments(cls) -> set[str]:
    """The named arguments of `cls.__init__` (what a complete `get_config` holds), but `dtype`: Keras's own
    `Loss.get_config` leaves an unset dtype out."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters
            if p.name not in ("self", "dtype") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _apply(obj, inputs):
    """The object's output on `inputs`, as a flat list of NumPy arrays."""
    if isinstance(obj, keras.metrics.Metric):
        obj.update_state(*inputs)
        out = obj.result()
    elif isinstance(obj, keras.optimizers.schedules.LearningRateSchedule):
        out = [obj(step) for step in inputs]
    elif isinstance(obj, keras.layers.Layer):
        out = obj(*inputs, training=False) if _takes_training(obj) else obj(*inputs)
    else:  # losses, regularisers, constraints
        out = obj(*inputs)
    return [np.asarray(keras.ops.convert_to_numpy(x), np.float64) for x in keras.tree.flatten(out)]


def _takes_training(layer) -> bool:
    import inspect

    return "training" in inspect.signature(layer.call).parameters


def _copy_weights(source, target) -> None:
    """Gives `target` (a clone) `source`'s weights: its own, or those of the model it wraps (a loss's or a
    metric's `.metric`, a metric's `.source` loss)."""
    if isinstance(source, keras.layers.Layer) and not isinstance(source, keras.metrics.Metric):
        target.set_weights(source.get_weights())
        return
    for attribute in ("metric", "source"):
        if getattr(source, attribute, None) is not None:
            _copy_weights(getattr(source, attribute), getattr(target, attribute))


def _assert_same(got, expected, what):
    assert len(got) == len(expected), what
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_registered_object(name, tmp_path):
    case = _cases()[name]
    obj = case.make()
    inputs = case.inputs(obj) if callable(case.inputs) else case.inputs
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["registered_name"] == f"keras_percept>{name}", serialized.get("registered_name")
    text = json.dumps(serialized)  # a config that JSON cannot hold would not survive a .keras file
    expected = _apply(obj, inputs)

    missing = _init_arguments(type(obj)) - set(serialized["config"])
    assert not missing, f"{name}: arguments of __init__ that get_config leaves out: {sorted(missing)}"

    clone = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(clone) is type(obj)
    assert json.loads(json.dumps(keras.saving.serialize_keras_object(clone))) == json.loads(text), \
        "the clone's config differs: get_config is incomplete"
    if isinstance(obj, keras.layers.Layer) and not isinstance(obj, keras.metrics.Metric):
        _apply(clone, inputs)  # builds a lazily built clone before the weights are copied
    _copy_weights(obj, clone)
    _assert_same(_apply(clone, inputs), expected, f"{name}: the deserialized clone's output")

    if isinstance(obj, keras.layers.Layer) and not isinstance(obj, keras.metrics.Metric):
        saved = obj if isinstance(obj, keras.Model) else _Holder(obj)
        path = str(tmp_path / f"{name}.keras")
        saved.save(path)
        loaded = keras.saving.load_model(path)
        inner = loaded if saved is obj else loaded.inner
        assert type(inner) is type(obj)
        for a, b in zip(obj.get_weights(), inner.get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: a weight changed in the .keras round trip")
        _assert_same(_apply(inner, inputs), expected, f"{name}: the loaded .keras model's output")
