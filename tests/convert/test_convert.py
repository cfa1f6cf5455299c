"""Weight conversion: strict key mapping, official files, offline downloads."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_percept import LPIPS
from keras_percept.convert import (
    OfflineError,
    convert_lpips,
    fetch,
    lin_layer_weights,
    load_pth,
    official_lin_path,
    torchvision_trunk_path,
    trunk_layer_weights,
)

ALEX_TAPS = (64, 192, 384, 256, 256)


def _alex_lins(value=0.5):
    return {f"lin{k}.model.1.weight": np.full((1, c, 1, 1), value, np.float32) for k, c in enumerate(ALEX_TAPS)}


def _torchvision_state(net):
    torch = pytest.importorskip("torch")
    from torch_reference import import_lpips

    import_lpips()
    import torchvision

    torch.manual_seed(0)
    builder = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16,
               "squeeze": torchvision.models.squeezenet1_1}[net]
    return {k: v.numpy() for k, v in builder().state_dict().items()}


@pytest.mark.reference
@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_full_torchvision_state_dict_maps_every_conv(net):
    state = _torchvision_state(net)
    weights = trunk_layer_weights(state, net)
    model = LPIPS(net=net)
    n_convs = sum(1 for layer in model.backbone.layers if layer.__class__.__name__ == "Conv2D")
    assert len(weights) == n_convs
    first = "features_0" if net != "squeeze" else "features_3_squeeze"
    torch_key = "features.0.weight" if net != "squeeze" else "features.3.squeeze.weight"
    np.testing.assert_array_equal(weights[first][0], state[torch_key].transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match=r"Unexpected tensor\(s\).*'classifier\."):
        trunk_layer_weights(state, net, ignore_classifier=False)


def test_missing_trunk_tensor_is_named():
    state = {"features.0.weight": np.zeros((64, 3, 11, 11), np.float32)}
    with pytest.raises(ValueError, match=r"Missing tensor 'features.0.bias' .*expected shape \(64,\)"):
        trunk_layer_weights(state, "alex")


def test_misshaped_tensor_is_named():
    lins = _alex_lins()
    lins["lin2.model.1.weight"] = np.zeros((1, 383, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"'lin2.model.1.weight'.*shape \(1, 383, 1, 1\); expected \(1, 384, 1, 1\)"):
        lin_layer_weights(lins, ALEX_TAPS)


def test_extra_tensor_is_named():
    lins = _alex_lins()
    lins["lin5.model.1.weight"] = np.zeros((1, 512, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"Unexpected tensor\(s\).*'lin5.model.1.weight'"):
        lin_layer_weights(lins, ALEX_TAPS)


def test_lin_weights_saved_without_dropout_are_accepted_once():
    lins = {k.replace("model.1", "model.0"): v for k, v in _alex_lins(0.25).items()}
    assert lin_layer_weights(lins, ALEX_TAPS)["lin_4"][0].shape == (1, 1, 256, 1)
    both = {**lins, **_alex_lins()}
    with pytest.raises(ValueError, match="Both 'lin0.model.1.weight' and 'lin0.model.0.weight'"):
        lin_layer_weights(both, ALEX_TAPS)


def test_lin_weights_for_the_wrong_net_fail():
    """Issue #141 of the reference: loading with strict=False silently keeps random weights."""
    vgg_lins = {f"lin{k}.model.1.weight": np.ones((1, c, 1, 1)) for k, c in enumerate((64, 128, 256, 512, 512))}
    with pytest.raises(ValueError, match="'lin1.model.1.weight'"):
        convert_lpips("alex", lin_weights=vgg_lins)


@pytest.mark.reference
@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_official_weights_load_exactly(net):
    path = official_lin_path(net)
    state = load_pth(path)
    model = convert_lpips(net, lin_weights="official")
    for k, lin in enumerate(model.lins):
        expected = state[f"lin{k}.model.1.weight"].reshape(-1)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(lin.kernel).reshape(-1), expected)
        assert expected.min() >= 0  # the paper's weights are non-negative


def test_load_pth_errors(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(FileNotFoundError, match="No state dict file"):
        load_pth(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Could not read .*corrupt.pth"):
        load_pth(corrupt)


def test_offline_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path))
    # A local port nobody listens on: the download fails fast, as it does offline.
    with pytest.raises(OfflineError, match=r"Could not download .*copy it to .*alexnet-owt-7be5be79\.pth"):
        fetch("http://127.0.0.1:9/models/alexnet-owt-7be5be79.pth", sha256_prefix="7be5be79", timeout=5)
    assert not any(p.name.endswith(".pth") for p in tmp_path.rglob("*"))


def test_imagenet_trunk_uses_verified_cached_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path))
    cached = tmp_path / "weights" / "alexnet-owt-7be5be79.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="SHA-256 of .* expected 7be5be79"):
        torchvision_trunk_path("alex")
