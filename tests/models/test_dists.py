"""keras_percept.models.DISTS against the PyPI `dists-pytorch` 0.1 reference (PyTorch CPU), on every backend.

Same seeded random torchvision VGG16 in both (the reference's `vgg16(pretrained=True)` is a
download) and the real shipped alpha/beta (`weights.pt`), converted through `convert_dists`.
Sizes include odd ones, where L2 pooling's padding and `ceil(H/2)` rows matter.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_percept.convert import OfflineError, convert_dists, dists_trunk_state, official_dists_weights_path
from keras_percept.layers import L2Pooling2D
from keras_percept.models import DISTS
from torch_reference import reference_dists, run_reference_dists, state_dict_numpy

pytestmark = pytest.mark.reference
TOL = 1e-5


@pytest.fixture(scope="module")
def pair():
    """(reference, converted) on the same seeded random VGG16 and the shipped alpha/beta.

    The reference's own alpha/beta are left out of the trunk state, so `alpha_beta="official"` reads
    `weights.pt` through `official_dists_weights_path` (the path `pretrained_dists` takes).
    """
    ref = reference_dists(seed=3)
    trunk = {k: v for k, v in state_dict_numpy(ref).items() if k not in ("alpha", "beta")}
    return ref, convert_dists(trunk_weights=trunk, alpha_beta="official")


def _images(shape, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0, 1, shape).astype(np.float32)
    x1 = np.clip(x0 + rng.normal(0, 0.2, shape), 0, 1).astype(np.float32)
    return x0, x1


@pytest.mark.parametrize("shape", [(3, 64, 64, 3), (2, 37, 53, 3), (2, 19, 23, 3), (1, 7, 9, 3)])
def test_dists_equals_the_reference(pair, shape):
    ref, model = pair
    x0, x1 = _images(shape)
    expected = run_reference_dists(ref, x0, x1)
    np.testing.assert_allclose(model.distance(x0, x1), expected, atol=TOL, rtol=0)
    assert np.ptp(expected) > 0 or len(expected) == 1


def test_dists_on_photographs_and_in_the_minus_one_one_range(pair):
    from skimage import data

    ref, model = pair
    photo = data.astronaut()[100:228, 150:278].astype(np.float32) / 255.0
    x0 = np.stack([photo, photo[::-1]])
    x1 = np.clip(x0 * 0.8 + 0.1, 0, 1).astype(np.float32)
    expected = run_reference_dists(ref, x0, x1)
    np.testing.assert_allclose(model.distance(x0, x1), expected, atol=TOL, rtol=0)
    signed = model.__class__.from_config({**model.get_config(), "input_range": "[-1,1]"})
    signed.set_weights(model.get_weights())
    np.testing.assert_allclose(signed.distance(2 * x0 - 1, 2 * x1 - 1), expected, atol=TOL, rtol=0)


def test_the_shipped_alpha_beta_are_the_references(pair):
    ref, model = pair
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.alpha), ref.alpha.detach().numpy().reshape(-1))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.beta), ref.beta.detach().numpy().reshape(-1))
    assert official_dists_weights_path().endswith("weights.pt")


@pytest.mark.parametrize("size", [5, 6, 7, 12])
def test_l2_pooling_equals_the_reference_layer(size):
    import torch
    from DISTS_pytorch.DISTS_pt import L2pooling

    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 4)).astype(np.float32)
    with torch.no_grad():
        expected = L2pooling(channels=4)(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    out = keras.ops.convert_to_numpy(L2Pooling2D()(x))
    assert out.shape == expected.shape == L2Pooling2D().compute_output_shape(x.shape)
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=1e-6)


def test_keras_file_round_trip(pair, tmp_path):
    _, model = pair
    path = str(tmp_path / "dists.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, DISTS) and loaded.get_config() == model.get_config()
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x0, x1 = _images((2, 33, 40, 3), seed=4)
    np.testing.assert_allclose(loaded.distance(x0, x1), model.distance(x0, x1), atol=1e-6, rtol=0)


def test_a_dists_head_on_another_trunk(tmp_path):
    """DISTS's statistics on the image and effnet-lite0's LPIPS taps, its input scaled as LPIPS scales it."""
    from keras_percept import LPIPS

    model = DISTS(trunk="effnet-lite0", input_range="[-1,1]")
    assert model.tap_channels == (3, *LPIPS(net="effnet-lite0").tap_channels)
    assert model.alpha.shape == (sum(model.tap_channels),) and model.net == "dists-effnet-lite0"
    x0, x1 = _images((2, 40, 40, 3), seed=7)
    x0, x1 = 2 * x0 - 1, 2 * x1 - 1
    path = str(tmp_path / "head.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.distance(x0, x1), model.distance(x0, x1), atol=1e-6, rtol=0)
    assert np.all(np.abs(model.distance(x0, x0)) < 1e-6) and np.all(model.distance(x0, x1) > 1e-4)
    with pytest.raises(ValueError, match=r"Argument `trunk` must be 'vgg16' or one of"):
        DISTS(trunk="resnet")


def test_identical_images_are_at_distance_zero(pair):
    _, model = pair
    x0, _ = _images((2, 32, 32, 3), seed=5)
    np.testing.assert_allclose(model.distance(x0, x0), 0.0, atol=1e-6)


def test_bad_inputs_say_what_is_wrong(pair):
    _, model = pair
    x0, _ = _images((1, 32, 32, 3))
    with pytest.raises(ValueError, match=r"outside input_range='\[0,1\]'"):
        model.distance(2 * x0 - 1, x0)
    with pytest.raises(ValueError, match="must have the same shape"):
        model.distance(x0, x0[:, :16])
    with pytest.raises(ValueError, match="Argument `input_range` must be one of"):
        DISTS(input_range="0..255")
    with pytest.raises(ValueError, match="must hold 1475 values"):
        convert_dists(alpha_beta={"alpha": np.ones(3), "beta": np.ones(3)})


def test_alpha_beta_of_a_reference_state_dict_unless_told_otherwise(pair):
    ref, model = pair
    state = state_dict_numpy(ref)
    from_state = convert_dists(trunk_weights=state, alpha_beta="official")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(from_state.alpha), state["alpha"].reshape(-1))
    keras.utils.set_random_seed(0)
    kept = convert_dists(trunk_weights=state, alpha_beta=None)  # None: keep the random start
    assert not np.array_equal(keras.ops.convert_to_numpy(kept.alpha), state["alpha"].reshape(-1))


def test_reference_state_dict_keys_map_to_torchvision_keys():
    state = {"stage1.0.weight": 1, "stage2.4.filter": 2, "stage5.28.bias": 3, "alpha": 4, "mean": 5}
    assert dists_trunk_state(state) == {"features.0.weight": 1, "features.28.bias": 3}


def test_pretrained_offline_says_what_to_download(tmp_path, monkeypatch):
    from keras_percept import download
    from keras_percept.convert import pretrained_dists

    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path))
    # Offline as on this machine: torchvision's server is replaced by a local port nobody listens on.
    original = download.fetch
    monkeypatch.setattr("keras_percept.convert.fetch", lambda url, **kw: original(
        url.replace("https://download.pytorch.org", "http://127.0.0.1:9"), **dict(kw, timeout=5)))
    with pytest.raises(OfflineError, match=r"vgg16-397923af\.pth"):
        pretrained_dists()
