"""`keras-percept distance / convert / demo` on real image files, called in-process through `cli.main`.

Expected distances come from the Python API on images read here with PIL
(not through `keras_percept.images`), so the CLI's reading, scaling and
printing are all checked.
"""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
import urllib.error
import urllib.request
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image

from keras_percept import LPIPS
from keras_percept.cli import main
from keras_percept.convert import load_pth, official_lin_path, save_model_atomic
from keras_percept.distance import ImagePair, compute_distances, load_metric

pytestmark = pytest.mark.one_pass  # command-line plumbing; its distances are the API's, run on every backend

H, W = 64, 96  # not square, so a transposed heatmap would show


def _photo(name: str, height: int = H, width: int = W) -> np.ndarray:
    """A central crop of a scikit-image photograph with the aspect of (height, width), resized; uint8."""
    from skimage import data

    img = getattr(data, name)()
    rows = min(img.shape[0], img.shape[1] * height // width)
    cols = rows * width // height
    top, left = (img.shape[0] - rows) // 2, (img.shape[1] - cols) // 2
    crop = Image.fromarray(img[top:top + rows, left:left + cols])
    return np.asarray(crop.resize((width, height), Image.BILINEAR))


def _noisy(img: np.ndarray, seed: int, right_half_only: bool = False) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 40, img.shape)
    if right_half_only:
        noise[:, : img.shape[1] // 2] = 0
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _save(path, img: np.ndarray) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = {"quality": 90} if str(path).endswith(".jpg") else {}
    Image.fromarray(img).save(path, **options)
    return str(path)


def _read_pm1(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 127.5 - 1.0


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real photos as PNG/JPEG: single files, two folders of same-named images, and bad inputs."""
    root = tmp_path_factory.mktemp("cli_inputs")
    astronaut, chelsea, coffee = _photo("astronaut"), _photo("chelsea"), _photo("coffee")
    tiny = _photo("coffee", 12, 12)
    f = SimpleNamespace(root=root)
    f.ref = _save(root / "astronaut.png", astronaut)
    f.noisy = _save(root / "astronaut_noisy.png", _noisy(astronaut, 0))
    f.half_noisy = _save(root / "astronaut_half_noisy.png", _noisy(astronaut, 1, right_half_only=True))
    f.cat = _save(root / "chelsea.jpg", chelsea)
    f.cat_noisy = _save(root / "chelsea_noisy.jpg", _noisy(chelsea, 2))
    f.dir0, f.dir1 = root / "dir0", root / "dir1"
    for name, img, seed in (("a.png", astronaut, 3), ("b.png", coffee, 4), ("c.jpg", chelsea, 5)):
        _save(f.dir0 / name, img)
        _save(f.dir1 / name, _noisy(img, seed))
    _save(f.dir0 / "only0.png", _photo("rocket"))
    _save(f.dir1 / "only1.png", coffee)
    f.garbage = root / "bad" / "garbage.png"
    os.makedirs(f.garbage.parent)
    f.garbage.write_bytes(b"this is not a PNG file\x00\x01\x02" * 10)
    f.small = _save(root / "bad" / "small.png", _photo("coffee", 48, 48))
    f.tiny0 = _save(root / "bad" / "tiny0.png", tiny)
    f.tiny1 = _save(root / "bad" / "tiny1.png", _noisy(tiny, 6))
    f.empty = root / "bad" / "empty"
    os.makedirs(f.empty)
    # Folders whose second pair is too small for squeeze: the first pair's heatmap must not be written.
    f.late0, f.late1 = root / "late0", root / "late1"
    for folder, seed in ((f.late0, 7), (f.late1, 8)):
        _save(folder / "a.png", _noisy(_photo("coffee", 32, 32), seed))
        _save(folder / "b.png", _noisy(tiny, seed))
    # `x.png` and `x.jpg` in both folders: both heatmaps would be `x.png`.
    f.clash0, f.clash1 = root / "clash0", root / "clash1"
    for folder, seed in ((f.clash0, 9), (f.clash1, 10)):
        _save(folder / "x.png", _noisy(coffee, seed))
        _save(folder / "x.jpg", _noisy(chelsea, seed))
    return f


@pytest.fixture(scope="module")
def metric():
    """The default pretrained metric through the Python API."""
    return load_metric()


@pytest.fixture(scope="module")
def squeeze(tmp_path_factory):
    """A small random-trunk squeeze LPIPS taking [0, 1] images, saved as `.keras`: (model, path)."""
    keras.utils.set_random_seed(0)
    model = LPIPS(net="squeeze", input_range="[0,1]")
    path = str(tmp_path_factory.mktemp("squeeze_model") / "squeeze.keras")
    save_model_atomic(model, path)
    return model, path


def test_two_images_print_the_api_distance_with_the_default_net(files, metric, capsys):
    assert metric.net == "effnet-lite0"
    code, out, _ = _cli(capsys, "distance", files.cat, files.cat_noisy)
    assert code == 0
    assert len(out.splitlines()) == 1
    expected = float(metric.distance(_read_pm1(files.cat), _read_pm1(files.cat_noisy))[0])
    assert float(out) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert float(out) > 0.01
    code, out, _ = _cli(capsys, "distance", files.ref, files.ref)
    assert (code, out.strip()) == (0, "0.000000")


def test_spatial_writes_a_heatmap_png_of_the_image_size(files, metric, tmp_path, capsys):
    heat = tmp_path / "maps" / "heat.png"
    code, out, _ = _cli(capsys, "distance", files.ref, files.half_noisy, "--spatial", heat)
    assert code == 0
    expected = float(metric.distance(_read_pm1(files.ref), _read_pm1(files.half_noisy))[0])
    assert float(out) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    with Image.open(heat) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "RGB", (W, H))
        green = np.asarray(img, np.float32)[..., 1]  # rises monotonically along the viridis ramp
    # Only the right half is noisy, so the map must be brighter there.
    assert green[:, : W // 4].mean() + 50 < green[:, -W // 4:].mean()
    # The colours are matplotlib's viridis: its top colour where the map peaks.
    from matplotlib import colormaps

    pixels = np.asarray(Image.open(heat)).reshape(-1, 3)
    top = np.asarray(colormaps["viridis"](1.0, bytes=True)[:3])
    assert (np.abs(pixels.astype(int) - top).sum(axis=1) == 0).any()
    assert os.listdir(heat.parent) == ["heat.png"]  # no temporary file left


def test_spatial_path_for_two_images_must_be_png(files, tmp_path, capsys):
    code, out, err = _cli(capsys, "distance", files.ref, files.noisy, "--spatial", tmp_path / "heat.jpg")
    assert code == 2
    assert out == ""
    assert err.startswith("keras-percept: error: --spatial must name a .png file") and "heat.jpg" in err
    assert os.listdir(tmp_path) == []


def test_two_folders_write_one_csv_row_per_common_name(files, metric, tmp_path, capsys):
    out_csv = tmp_path / "res" / "distances.csv"
    heat_dir = tmp_path / "heat"
    code, out, _ = _cli(capsys, "distance", files.dir0, files.dir1, "--out", out_csv, "--spatial", heat_dir)
    assert code == 0
    assert "wrote 3 distance(s)" in out
    with open(out_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "path0", "path1", "distance"]
    assert [r[0] for r in rows[1:]] == ["a.png", "b.png", "c.jpg"]
    for name, path0, path1, distance in rows[1:]:
        assert (path0, path1) == (os.path.join(files.dir0, name), os.path.join(files.dir1, name))
        expected = float(metric.distance(_read_pm1(path0), _read_pm1(path1))[0])
        assert float(distance) == pytest.approx(expected, rel=1e-5, abs=1e-6) and float(distance) > 0.01
    code, single, _ = _cli(capsys, "distance", rows[3][1], rows[3][2])
    assert code == 0 and float(single) == pytest.approx(float(rows[3][3]), abs=1.5e-6)
    assert sorted(os.listdir(heat_dir)) == ["a.png", "b.png", "c.png"]

    code, out, _ = _cli(capsys, "distance", files.dir0, files.dir1)  # no --out: rows on stdout
    assert code == 0
    assert [line.split(",")[0] for line in out.splitlines()] == ["a.png", "b.png", "c.jpg"]
    assert [float(line.split(",")[1]) for line in out.splitlines()] == pytest.approx(
        [float(r[3]) for r in rows[1:]], abs=1e-6)


def test_one_folder_compares_all_pairs(files, metric, tmp_path, capsys):
    out_csv = tmp_path / "allpairs.csv"
    code, _, _ = _cli(capsys, "distance", files.dir0, "--out", out_csv)
    assert code == 0
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    names = sorted(os.listdir(files.dir0))
    assert len(rows) == len(names) * (len(names) - 1) // 2 == 6
    assert [r["name"] for r in rows] == [f"{a}|{b}" for a, b in itertools.combinations(names, 2)]
    pairs = [ImagePair(r["name"], r["path0"], r["path1"]) for r in rows]
    api = compute_distances(metric, pairs, progress=False)
    assert [float(r["distance"]) for r in rows] == pytest.approx(api, rel=1e-5, abs=1e-6)
    assert min(api) > 0


def test_model_file_is_used_instead_of_net(files, squeeze, metric, capsys):
    model, path = squeeze
    code, out, _ = _cli(capsys, "distance", files.ref, files.noisy, "--model", path)
    assert code == 0
    x0, x1 = ((_read_pm1(p) + 1) / 2 for p in (files.ref, files.noisy))  # the model takes [0, 1]
    expected = float(model.distance(x0, x1)[0])
    assert float(out) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    default = float(metric.distance(2 * x0 - 1, 2 * x1 - 1)[0])
    assert abs(float(out) - default) > 1e-3


def test_a_dists_model_file_gives_the_api_distance_and_says_what_it_cannot_do(files, tmp_path, capsys):
    from keras_percept.models import DISTS

    keras.utils.set_random_seed(1)
    model = DISTS()
    path = str(tmp_path / "dists.keras")
    save_model_atomic(model, path)
    code, out, _ = _cli(capsys, "distance", files.ref, files.noisy, "--model", path)
    assert code == 0
    x0, x1 = ((_read_pm1(p) + 1) / 2 for p in (files.ref, files.noisy))  # DISTS takes [0, 1]
    assert float(out) == pytest.approx(float(model.distance(x0, x1)[0]), rel=1e-5, abs=1e-6)
    for extra, needle in (([tmp_path / "heat.png"], "has no spatial map"), ([], "no N x N shortcut")):
        argv = [files.ref, files.noisy, "--spatial", *extra] if extra else [files.dir0, "--matrix"]
        code, out, err = _cli(capsys, "distance", *argv, "--model", path)
        assert (code, out, len(err.splitlines())) == (2, "", 1) and needle in err, err


BAD_INPUTS = {
    # id: (argv after "distance" built from the fixtures, text the error must contain)
    "missing_file": (lambda f, m: [f.ref, f.root / "missing.png"], "missing.png"),
    "corrupt_png": (lambda f, m: [f.ref, f.garbage], "garbage.png"),
    "different_sizes": (lambda f, m: [f.ref, f.small], "small.png' is 48x48"),
    "too_small_for_trunk": (lambda f, m: [f.tiny0, f.tiny1, "--model", m], "tiny0.png' is 12x12"),
    "too_small_in_second_pair": (lambda f, m: [f.late0, f.late1, "--model", m], "b.png' is 12x12"),
    "empty_folder": (lambda f, m: [f.empty], "has 0 image(s)"),
    "empty_second_folder": (lambda f, m: [f.dir0, f.empty], "share no image file names"),
    "missing_model_file": (lambda f, m: [f.ref, f.noisy, "--model", f.root / "nope.keras"], "nope.keras"),
    "heatmap_name_clash": (lambda f, m: [f.clash0, f.clash1], "would both write the heatmap"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_writes_nothing(case, files, squeeze, tmp_path, capsys):
    build, needle = BAD_INPUTS[case]
    inputs = build(files, squeeze[1])
    folders = os.path.isdir(inputs[0])
    spatial = tmp_path / ("heat" if folders else "heat.png")
    before = {p: os.path.getmtime(p) for p in files.root.rglob("*")}
    code, out, err = _cli(capsys, "distance", *inputs, "--out", tmp_path / "out.csv", "--spatial", spatial)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("keras-percept: error: ")
    assert needle in err
    assert os.listdir(tmp_path) == []
    assert {p: os.path.getmtime(p) for p in files.root.rglob("*")} == before


def test_heatmaps_never_overwrite_input_images(files, tmp_path, capsys):
    for folder in ("d0", "d1"):
        for name in ("a.png", "b.png"):
            _save(tmp_path / folder / name, np.asarray(Image.open(files.dir0 / name)))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for argv in ([tmp_path / "d0", tmp_path / "d1", "--spatial", tmp_path / "d0"],
                 [tmp_path / "d0" / "a.png", tmp_path / "d0" / "b.png", "--spatial", tmp_path / "d0" / "b.png"]):
        code, _, err = _cli(capsys, "distance", *argv)
        assert code == 2
        assert "is one of the input images; writing it would overwrite it" in err
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_output_paths_that_cannot_be_files_are_clean_errors(files, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    code, out, err = _cli(capsys, "distance", files.ref, files.noisy, "--out", folder)
    assert (code, out) == (2, "")
    assert err == f"keras-percept: error: The CSV path {str(folder)!r} is a folder; expected a file name.\n"
    assert os.listdir(tmp_path) == ["results"] and os.listdir(folder) == []

    (tmp_path / "heat.png").write_bytes(b"an earlier heatmap")
    code, out, err = _cli(capsys, "distance", files.dir0, files.dir1, "--spatial", tmp_path / "heat.png")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "is a file, not a folder" in err
    assert (tmp_path / "heat.png").read_bytes() == b"an earlier heatmap"


def test_uncached_torchvision_weights_offline_say_what_to_download(files, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(home))
    requested = []

    def offline(url, *args, **kwargs):  # no network here: fail fast instead of trying
        requested.append(url if isinstance(url, str) else url.full_url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    url = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    target = os.path.join(home, "weights", "alexnet-owt-7be5be79.pth")
    out_dir = tmp_path / "out"
    for argv in (["distance", files.ref, files.noisy, "--net", "alex", "--out", out_dir / "d.csv",
                  "--spatial", out_dir / "heat.png"],
                 ["demo", "--net", "alex", "--out", out_dir / "demo"]):
        requested.clear()
        code, out, err = _cli(capsys, *argv)
        assert code == 2
        assert requested == [url]
        assert len(err.splitlines()) == 1
        assert err.startswith(f"keras-percept: error: Could not download {url}")
        assert f"copy it to {target}" in err
        assert not out_dir.exists()
        assert [p for p in home.rglob("*") if p.is_file()] == []


def test_convert_squeeze_with_official_lin_weights(tmp_path, capsys):
    output = tmp_path / "squeeze.keras"
    code, out, _ = _cli(capsys, "convert", "--net", "squeeze", "--trunk-weights", "none",
                        "--lin-weights", "official", "-o", output)
    assert code == 0 and f"saved {output}" in out
    assert os.listdir(tmp_path) == ["squeeze.keras"]
    model = keras.saving.load_model(output)
    assert isinstance(model, LPIPS) and model.net == "squeeze" and model.lpips
    official = load_pth(official_lin_path("squeeze", "0.1"))
    assert len(model.lins) == len(official) == 7
    for k, lin in enumerate(model.lins):
        np.testing.assert_array_equal(
            np.asarray(lin.kernel).reshape(-1), official[f"lin{k}.model.1.weight"].reshape(-1)
        )

    code, _, err = _cli(capsys, "convert", "--net", "squeeze", "--trunk-weights", "none", "-o", tmp_path / "x.h5")
    assert code == 2 and "must end in '.keras'" in err and "x.h5" in err
    assert os.listdir(tmp_path) == ["squeeze.keras"]


@pytest.mark.slow
def test_demo_writes_csv_heatmaps_and_montage(metric, tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, out, _ = _cli(capsys, "demo", "--out", out_dir)
    assert code == 0
    names = [f"{photo}_{kind}.png" for photo in ("chelsea", "astronaut", "coffee")
             for kind in ("noise", "blur", "jpeg", "shift", "contrast")]
    with open(out_dir / "distances.csv", newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(names)
    assert sorted(os.listdir(out_dir / "heatmaps")) == sorted(names)
    with Image.open(out_dir / "heatmaps" / names[0]) as heat:
        assert (heat.format, heat.mode, heat.size) == ("PNG", "RGB", (256, 256))
    with Image.open(out_dir / "montage.png") as montage:
        assert montage.size == (3 * 256, len(names) * 256)
    row = rows["coffee_blur.png"]
    expected = float(metric.distance(_read_pm1(row["path0"]), _read_pm1(row["path1"]))[0])
    assert float(row["distance"]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert min(float(r["distance"]) for r in rows.values()) > 0
    assert all(name in out for name in names)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the entry point does not depend on the backend (the commands are tested in-process on "
                           "each backend); runs once per suite, in the TensorFlow pass")
def test_installed_console_script(files, metric):
    script = os.path.join(os.path.dirname(sys.executable), "keras-percept")
    result = subprocess.run([script, "distance", files.ref, files.noisy], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    expected = float(metric.distance(_read_pm1(files.ref), _read_pm1(files.noisy))[0])
    assert float(result.stdout) == pytest.approx(expected, rel=1e-5, abs=1e-6)

