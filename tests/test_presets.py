"""Presets: built-in names, preset folders written by `save_to_preset`, and `hf://` / `kaggle://` handles.

The built-in alex/vgg/squeeze presets need torchvision's trunk, which cannot be downloaded here:
their offline error is checked. The effnet preset (shipped weights) and preset folders are loaded
for real, and folders are read back in fresh processes on all three backends. The hub clients
run for real up to the network: their endpoint is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest

from keras_percept import LPIPS
from keras_percept.cli import main
from keras_percept.convert import OfflineError, load_pth, published_metric_path, save_model_atomic
from keras_percept.convert.efficientnet import efficientnet_lite0_weights_path
from keras_percept.convert.state_dict import conv_kernel
from keras_percept.models import IQAModel
from keras_percept.models.presets import OFFICIAL_LIN_URL, TORCHVISION_WEIGHTS
from keras_percept.presets import PRESET_FILES, PRESETS, hub_cache_dir, save_to_preset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL = [f"lpips_{net}_v{v}" for v in ("0.1", "0.0") for net in ("alex", "vgg", "squeeze")]


def _images(seed: int, n: int = 3, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty KERAS_PERCEPT_HOME, and no network for urllib (fail at once instead of trying)."""
    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path / "home"))
    requested = []

    def offline(url, *args, **kwargs):
        requested.append(url if isinstance(url, str) else url.full_url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tmp_path / "home", requested


@pytest.fixture(scope="module")
def alex_preset(tmp_path_factory):
    """A seeded random alex LPIPS taking [0, 1] input, saved as a preset: (model, folder)."""
    keras.utils.set_random_seed(3)
    model = LPIPS(net="alex", input_range="[0,1]")
    folder = str(tmp_path_factory.mktemp("presets") / "alex")
    assert model.save_to_preset(folder) == folder
    return model, folder


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.one_pass
def test_builtin_table_holds_the_official_weights_and_the_offline_baseline():
    assert sorted(PRESETS) == sorted(OFFICIAL + ["lpips_effnet_lite0", "st_lpips_alex", "st_lpips_vgg", "dists_vgg16",
                                                 "elpips_vgg_v0.1"])
    for name in OFFICIAL:
        row = PRESETS[name]
        net, version = name.split("_")[1], name.rsplit("_v", 1)[1]
        assert (row.net, row.version, row.lpips) == (net, version, True)
        assert row.trunk_url == TORCHVISION_WEIGHTS[net]
        assert row.lin_url == OFFICIAL_LIN_URL.format(version=version, net=net)
    effnet = PRESETS["lpips_effnet_lite0"]
    assert (effnet.net, effnet.lpips, effnet.trunk_url, effnet.lin_url) == ("effnet-lite0", False, None, None)
    for net in ("alex", "vgg"):
        st = PRESETS[f"st_lpips_{net}"]
        assert (st.net, st.lpips, st.trunk_url, st.lin_url) == (f"{net}-st", True, None, None)
        assert st.published_file == f"weights/vST0.0/{net}_shift_tolerant.pth"


@pytest.mark.one_pass
@pytest.mark.parametrize("name", ["dists_vgg16", "elpips_vgg_v0.1"])
def test_dists_and_elpips_presets_offline_say_what_to_download(name, home):
    from keras_percept.presets import from_preset

    root, requested = home
    assert PRESETS[name].metric == name.split("_")[0] and PRESETS[name].trunk_url == TORCHVISION_WEIGHTS["vgg"]
    with pytest.raises(OfflineError, match="Could not download"):
        from_preset(name)
    assert requested == [TORCHVISION_WEIGHTS["vgg"]]


def test_elpips_preset_wraps_the_calibrated_metric(home, monkeypatch):
    """With the vgg trunk at hand (here: the reference's seeded one), the preset is E-LPIPS around LPIPS vgg."""
    from keras_percept import presets
    from keras_percept.models import ELPIPS

    monkeypatch.setattr(presets, "pretrained_lpips", lambda net, version, lpips: LPIPS(net=net, version=version))
    model = presets.from_preset("elpips_vgg_v0.1")
    assert isinstance(model, ELPIPS) and model.metric.net == "vgg" and model.samples == 8 and model.seed == 0


def test_st_lpips_preset_loads_the_published_file_offline(home):
    metric = LPIPS.from_preset("st_lpips_alex", spatial=True)
    assert home[1] == []  # nothing downloaded
    state = load_pth(published_metric_path("alex-st"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(metric.get_layer("lin_4").kernel),
                                  conv_kernel(state["lin4.model.1.weight"]))
    assert metric.spatial and metric.net == "alex-st"


def test_effnet_preset_loads_the_shipped_trunk(home, photos):
    metric = LPIPS.from_preset("lpips_effnet_lite0")
    assert isinstance(metric, LPIPS) and (metric.net, metric.lpips, metric.version) == ("effnet-lite0", False, "0.1")
    state = load_pth(efficientnet_lite0_weights_path())
    stem = metric.backbone.get_layer("stem_conv")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(stem.kernel), conv_kernel(state["_conv_stem.weight"]))
    assert home[1] == []  # nothing downloaded
    x0 = 2 * photos["chelsea"][None, :128, :128] - 1
    x1 = 2 * photos["coffee"][None, :128, :128] - 1
    assert metric.distance(x0, x0)[0] == 0.0
    assert metric.distance(x0, x1)[0] > 0.05
    spatial = LPIPS.from_preset("lpips_effnet_lite0", spatial=True, input_range="[0,1]")
    assert spatial.distance((x0 + 1) / 2, (x1 + 1) / 2).shape == (1, 128, 128, 1)


@pytest.mark.one_pass
@pytest.mark.parametrize("name", OFFICIAL)
def test_official_presets_offline_say_what_to_download_and_where(name, home):
    root, requested = home
    net = PRESETS[name].net
    url = TORCHVISION_WEIGHTS[net]
    with pytest.raises(OfflineError) as info:
        LPIPS.from_preset(name)
    assert requested == [url]
    target = os.path.join(root, "weights", os.path.basename(url))
    assert f"Could not download {url}" in str(info.value)
    assert f"copy it to {target}" in str(info.value)
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_saved_preset_is_a_kerashub_folder_that_loads_back(alex_preset, tmp_path):
    model, folder = alex_preset
    assert sorted(os.listdir(folder)) == sorted(PRESET_FILES)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    assert (config["class_name"], config["registered_name"]) == ("LPIPS", "keras_percept>LPIPS")
    assert config["config"]["net"] == "alex" and config["config"]["input_range"] == "[0,1]"
    with open(os.path.join(folder, "metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["keras_version"] == keras.__version__
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["saved_under_backend"] == keras.backend.backend()

    loaded = LPIPS.from_preset(folder)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    x0, x1 = (_images(0) + 1) / 2, (_images(1) + 1) / 2
    np.testing.assert_array_equal(loaded.distance(x0, x1), model.distance(x0, x1))
    heat = LPIPS.from_preset(folder, spatial=True)
    assert heat.spatial and heat.distance(x0, x1).shape == (3, 64, 64, 1)


@pytest.mark.one_pass
def test_bad_preset_arguments_are_clear_errors(alex_preset, tmp_path):
    _, folder = alex_preset
    with pytest.raises(ValueError, match=r"Preset overrides \['colour'\] are not options of LPIPS"):
        LPIPS.from_preset(folder, colour="red")
    with pytest.raises(ValueError, match="holds a LPIPS, not a IQAModel"):
        IQAModel.from_preset(folder)
    with pytest.raises(ValueError, match="Unknown preset 'lpips_resnet'.*lpips_alex_v0.1"):
        LPIPS.from_preset("lpips_resnet")
    with pytest.raises(ValueError, match="is not empty"):
        save_to_preset(LPIPS(net="alex"), folder)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    os.remove(broken / "model.weights.h5")
    with pytest.raises(ValueError, match="not a complete preset folder: model.weights.h5 missing"):
        LPIPS.from_preset(broken)
    with pytest.raises(ValueError, match="hf://<owner>/<repo>"):
        LPIPS.from_preset("hf://only-an-owner")
    with pytest.raises(ValueError, match="kaggle://<owner>/<model>"):
        LPIPS.from_preset("kaggle://owner/model")


def test_iqa_model_round_trips_through_a_preset(tmp_path):
    keras.utils.set_random_seed(1)
    model = IQAModel(net="alex", mode="fr")
    folder = model.save_to_preset(tmp_path / "iqa")
    loaded = IQAModel.from_preset(folder)
    x0, x1 = _images(2, 2), _images(3, 2)
    np.testing.assert_allclose(loaded.predict_on_batch((x0, x1)), model.predict_on_batch((x0, x1)), atol=1e-6)


LOAD_SCRIPT = """
import sys, numpy as np, keras
from keras_percept import LPIPS
folder, inputs, out = sys.argv[1:]
data = np.load(inputs)
np.save(out, LPIPS.from_preset(folder).distance(data["x0"], data["x1"]))
print(keras.backend.backend())
"""


@pytest.mark.slow
def test_a_preset_saved_on_this_backend_loads_on_every_backend(alex_preset, tmp_path):
    model, folder = alex_preset
    x0, x1 = (_images(4) + 1) / 2, (_images(5) + 1) / 2
    np.savez(tmp_path / "inputs.npz", x0=x0, x1=x1)
    expected = model.distance(x0, x1)
    for backend in ("tensorflow", "jax", "torch"):
        out = tmp_path / f"{backend}.npy"
        proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, folder, str(tmp_path / "inputs.npz"), str(out)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split()[-1] == backend
        np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.one_pass
def test_hf_handle_offline_names_the_page_and_the_folder(home, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    target = hub_cache_dir("hf://keras-percept/lpips-alex")
    with pytest.raises(OfflineError) as info:
        LPIPS.from_preset("hf://keras-percept/lpips-alex")
    message = str(info.value)
    assert "Could not download preset hf://keras-percept/lpips-alex" in message
    assert "https://huggingface.co/keras-percept/lpips-alex" in message
    assert f"put them in {target}" in message and "config.json, model.weights.h5, metadata.json" in message
    assert "Connection refused" in message  # the client really tried, on 127.0.0.1
    assert len(message.splitlines()) == 1
    assert not os.path.exists(target) and os.listdir(os.path.dirname(target)) == []  # no half-downloaded folder


@pytest.mark.one_pass
def test_kaggle_handle_offline_names_the_page_and_the_folder(home, monkeypatch):
    from kagglesdk import kaggle_env

    for env in kaggle_env.KaggleEnv:
        monkeypatch.setitem(kaggle_env._env_to_endpoint, env, f"http://127.0.0.1:{_closed_port()}")
    handle = "kaggle://keras-percept/lpips/keras/alex"
    target = hub_cache_dir(handle)
    with pytest.raises(OfflineError) as info:
        LPIPS.from_preset(handle)
    message = str(info.value)
    assert f"Could not download preset {handle}" in message
    assert "https://www.kaggle.com/models/keras-percept/lpips/keras/alex" in message
    assert "Connection refused" in message and "127.0.0.1" in message
    assert f"put them in {target}" in message
    assert not os.path.exists(target)


@pytest.mark.one_pass
def test_a_handle_copied_where_the_error_says_loads_without_network(home, alex_preset, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the copy in the preset folder must be used")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    model, folder = alex_preset
    shutil.copytree(folder, hub_cache_dir("hf://me/alex"))
    loaded = LPIPS.from_preset("hf://me/alex")
    x0, x1 = (_images(6) + 1) / 2, (_images(7) + 1) / 2
    np.testing.assert_array_equal(loaded.distance(x0, x1), model.distance(x0, x1))


@pytest.mark.one_pass
def test_missing_hub_client_says_which_extra_to_install(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(ImportError, match=r"pip install keras-percept\[hub\]"):
        LPIPS.from_preset("hf://me/alex")
    with pytest.raises(ImportError, match=r"pip install keras-percept\[hub\]"):
        LPIPS.from_preset("kaggle://me/lpips/keras/alex")


@pytest.mark.one_pass
def test_cli_saves_a_trained_metric_as_a_preset_and_uses_it(alex_preset, tmp_path, capsys):
    from PIL import Image

    model, _ = alex_preset
    path = str(tmp_path / "metric.keras")
    save_model_atomic(model, path)
    assert main(["preset", "save", path, str(tmp_path / "preset")]) == 0
    assert "saved preset" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "preset")) == sorted(PRESET_FILES)
    images = [(np.random.default_rng(k).uniform(0, 255, (40, 40, 3))).astype(np.uint8) for k in range(2)]
    for k, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{k}.png")
    assert main(["distance", str(tmp_path / "0.png"), str(tmp_path / "1.png"), "--preset", str(tmp_path / "preset")]) == 0
    expected = model.distance(images[0][None] / 255.0, images[1][None] / 255.0)[0]
    assert float(capsys.readouterr().out) == pytest.approx(float(expected), abs=1e-6)
    assert main(["preset", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in PRESETS)
    assert main(["preset", "save", path, str(tmp_path / "preset")]) == 2
    assert "is not empty" in capsys.readouterr().err
