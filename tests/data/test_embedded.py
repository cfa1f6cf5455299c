"""The embedded dataset: real photos, family coverage, held-out validation, simulated labels, caching."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from bapps_fixture import SMALL_EMBEDDED

from keras_percept.data import embedded, index_2afc, index_jnd, load_2afc
from keras_percept.data.embedded.observer import Observer, magnitude
from keras_percept.metrics.twoafc import two_afc_score
from keras_percept.training import load_config
from keras_percept.training.trainer import dataset_root

pytestmark = pytest.mark.one_pass  # the embedded dataset generator (NumPy, image files)


def test_real_photographs_from_both_packages():
    assert {"china", "flower"} <= set(embedded.PHOTOS) and "astronaut" in embedded.PHOTOS
    for name in embedded.PHOTOS:
        photo = embedded.load_photo(name)
        assert photo.dtype == np.float32 and photo.ndim == 3 and photo.shape[2] == 3
        assert min(photo.shape[:2]) >= 96 and photo.std() > 0.05
        assert np.ptp(photo[..., 0] - photo[..., 2]) > 0.1  # colour, not grey


def test_at_least_15_families_in_all_groups():
    assert len(embedded.FAMILIES) >= 15
    assert set(embedded.GROUPS) == {"photometric", "noise", "blur", "spatial", "compression", "combination"}


def test_family_coverage_and_held_out_validation(embedded_root):
    manifest = embedded.read_manifest(embedded_root)
    train = embedded.read_metadata(embedded_root, "2afc_train")
    val = embedded.read_metadata(embedded_root, "2afc_val")
    used = {split: {r[k] for r in rows for k in ("family0", "family1")} for split, rows in (("train", train), ("val", val))}
    assert used["val"] == set(embedded.DEFAULT_VAL_FAMILIES)
    assert used["train"] == set(embedded.FAMILIES) - set(embedded.DEFAULT_VAL_FAMILIES)
    photos = {split: {r["photo"] for r in rows} for split, rows in (("train", train), ("val", val))}
    assert photos["val"] == set(embedded.DEFAULT_VAL_PHOTOS)
    assert not photos["train"] & photos["val"]
    assert photos["train"] | photos["val"] == set(embedded.PHOTOS)
    assert manifest["counts"]["2afc/train/mixed"] == SMALL_EMBEDDED["n_train"] // 7
    mixed = [r for r in train if r["category"] == "mixed"]
    group = {f: fam.group for f, fam in embedded.FAMILIES.items()}
    assert all(group[r["family0"]] != group[r["family1"]] for r in mixed)
    levels = {r[k] for r in train for k in ("severity0", "severity1")}
    assert levels == {0.2, 0.4, 0.6, 0.8, 1.0}


def test_families_shared_when_not_held_out(monkeypatch, tmp_path):
    """`hold_out_families=False`: train and val draw from all 24 families, the photographs stay apart, the
    default set keeps its cache key, and the training config passes the key through."""
    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path / "home"))
    small = {**SMALL_EMBEDDED, "n_train": 280, "n_val": 280, "n_jnd": 6}
    shared = embedded.build(**small, hold_out_families=False)
    assert embedded.build(**small) != shared
    assert "hold_out_families" not in embedded.read_manifest(embedded.build(**small))["params"]
    assert embedded.read_manifest(shared)["params"]["hold_out_families"] is False
    used = {split: {r[k] for r in embedded.read_metadata(shared, f"2afc_{split}") for k in ("family0", "family1")}
            for split in ("train", "val")}
    assert used["train"] == used["val"] == set(embedded.FAMILIES)
    photos = {split: {r["photo"] for r in embedded.read_metadata(shared, f"2afc_{split}")} for split in ("train", "val")}
    assert photos["val"] == set(embedded.DEFAULT_VAL_PHOTOS) and not photos["train"] & photos["val"]
    overrides = [f"data.{k}={v}" for k, v in small.items() if k != "progress"] + ["data.hold_out_families=false"]
    assert dataset_root(load_config(None, overrides=overrides), progress=False) == shared
    with pytest.raises(ValueError, match="hold_out_families"):
        load_config(None, overrides=["data.hold_out_families=maybe"])
    with pytest.raises(ValueError, match="hold_out_families"):
        embedded.build(str(tmp_path / "x"), **small, hold_out_families="no")


def test_reader_serves_the_embedded_layout(embedded_root):
    manifest = embedded.read_manifest(embedded_root)
    for split, n in (("train", SMALL_EMBEDDED["n_train"]), ("val", SMALL_EMBEDDED["n_val"])):
        index = index_2afc(embedded_root, split)
        assert len(index) == n and not index.skipped
        for category in index.category_names:
            assert index.categories.count(category) == manifest["counts"][f"2afc/{split}/{category}"]
    assert len(index_jnd(embedded_root)) == SMALL_EMBEDDED["n_jnd"]
    (ref, p0, p1), judge = next(iter(load_2afc(embedded_root, "val", batch_size=8)))
    assert ref.shape == (8, 64, 64, 3) and float(np.min(ref)) >= -1 and float(np.max(ref)) <= 1


def test_labels_are_fractions_of_the_simulated_judges(embedded_root):
    for split, judges in (("train", 2), ("val", 5)):
        labels = index_2afc(embedded_root, split).labels
        assert labels.min() >= 0 and labels.max() <= 1
        np.testing.assert_allclose(labels * judges, np.round(labels * judges), atol=1e-5)
        assert len(np.unique(labels)) > 2  # real disagreement, not hard labels
    same = index_jnd(embedded_root).labels
    np.testing.assert_allclose(same * 3, np.round(same * 3), atol=1e-5)


def test_observer_follows_severity_within_a_family(embedded_root):
    rows = [r for split in ("2afc_train", "2afc_val") for r in embedded.read_metadata(embedded_root, split)
            if r["family0"] == r["family1"] and r["severity0"] != r["severity1"]]
    assert len(rows) >= 40
    # Severity used as a distance: agreement with the simulated judges.
    agreement = two_afc_score([r["severity0"] for r in rows], [r["severity1"] for r in rows], [r["label"] for r in rows])
    assert agreement > 0.8
    majority_wrong = [r for r in rows if (r["label"] - 0.5) * (r["severity0"] - r["severity1"]) < 0]
    assert len(majority_wrong) / len(rows) < 0.15


def test_observer_psychometric_function():
    obs, rng = Observer(), np.random.default_rng(0)
    levels = [0.2, 0.4, 0.6, 0.8, 1.0]
    p_prefer_p1 = [
        obs.judge_2afc(rng, ("jpeg", 0.6), ("jpeg", s1), texture=1.0, n_judges=4000) for s1 in levels
    ]  # p1 gets worse left to right
    assert all(a > b for a, b in zip(p_prefer_p1, p_prefer_p1[1:]))
    assert p_prefer_p1[2] == pytest.approx(0.5, abs=0.03)
    assert p_prefer_p1[0] < 1 - obs.lapse / 2 + 0.01 and p_prefer_p1[-1] > obs.lapse / 2 - 0.01
    assert obs.judge_jnd(rng, None, texture=1.0, n_judges=2000) > 0.9
    assert obs.judge_jnd(rng, ("gaussian_noise", 0.6), texture=1.0, n_judges=2000) < 0.2


def test_texture_masks_noise_and_reveals_blur():
    assert magnitude("gaussian_noise", 0.5, texture=0.2) > magnitude("gaussian_noise", 0.5, texture=3.0)
    assert magnitude("gaussian_blur", 0.5, texture=0.2) < magnitude("gaussian_blur", 0.5, texture=3.0)
    assert magnitude("lightness", 0.5, texture=0.2) == magnitude("lightness", 0.5, texture=3.0) == 0.5


@pytest.mark.parametrize("family", sorted(embedded.FAMILIES))
def test_severity_is_graded(family):
    """The image change (RMS over a few patches) grows with the severity level."""
    photo = embedded.load_photo("astronaut")
    patches = [photo[y:y + 96, x:x + 96] for y, x in ((40, 40), (200, 300), (350, 120), (100, 380))]
    rms = [
        np.mean([np.sqrt(np.mean((embedded.distort(p, family, s, np.random.default_rng(k)) - p) ** 2))
                 for k, p in enumerate(patches)])
        for s in (0.2, 0.6, 1.0)
    ]
    assert 0 < rms[0] < rms[1] < rms[2]


def test_jnd_same_falls_with_severity(embedded_root):
    rows = embedded.read_metadata(embedded_root, "jnd_val")
    mild = [r["label"] for r in rows if r["severity"] < 0.12]
    strong = [r["label"] for r in rows if r["severity"] > 0.35]
    assert mild and strong and np.mean(mild) > np.mean(strong) + 0.3


def test_deterministic_for_a_seed(embedded_root, tmp_path):
    small = {**SMALL_EMBEDDED, "n_train": 14, "n_val": 14, "n_jnd": 6}
    a = embedded.build(str(tmp_path / "a"), **small)
    b = embedded.build(str(tmp_path / "b"), **small)
    c = embedded.build(str(tmp_path / "c"), **{**small, "seed": small["seed"] + 1})
    for split in ("train", "val"):
        ia, ib, ic = (index_2afc(root, split) for root in (a, b, c))
        np.testing.assert_array_equal(ia.labels, ib.labels)
        for pa, pb in zip(ia.paths["p0"], ib.paths["p0"]):
            assert open(pa, "rb").read() == open(pb, "rb").read()
        assert embedded.read_metadata(a, f"2afc_{split}") != embedded.read_metadata(c, f"2afc_{split}")


def test_cached_by_parameters(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path / "home"))
    small = {**SMALL_EMBEDDED, "n_train": 7, "n_val": 7, "n_jnd": 6}
    root = embedded.build(**small)
    assert root.startswith(str(tmp_path / "home" / "datasets" / "embedded-"))
    stamp = os.path.getmtime(os.path.join(root, "manifest.json"))
    start = time.perf_counter()
    assert embedded.build(**small) == root
    assert time.perf_counter() - start < 1.0 and os.path.getmtime(os.path.join(root, "manifest.json")) == stamp
    assert embedded.build(**{**small, "n_val": 14}) != root
    assert sorted(os.listdir(tmp_path / "home" / "datasets")) == sorted(
        [os.path.basename(root), os.path.basename(embedded.build(**{**small, "n_val": 14}))]
    )  # no scratch folders left behind


def test_refuses_to_overwrite_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="pass another `root`"):
        embedded.build(str(tmp_path / "mine"), **{**SMALL_EMBEDDED, "n_train": 7})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_photos": ["lena"]}, "val_photos"),
        ({"val_families": []}, "val_families"),
        ({"val_families": list(embedded.FAMILIES)}, "val_families"),
        ({"n_train": 0}, "n_train"),
        ({"patch_size": 4}, "patch_size"),
        ({"observer_lapse": 1.5}, "lapse"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        embedded.build(str(tmp_path / "x"), **{**SMALL_EMBEDDED, **kwargs})


def test_config_file_documents_the_defaults():
    import inspect

    import yaml

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "data", "embedded.yaml")
    with open(path) as f:
        config = yaml.safe_load(f)
    defaults = {
        name: list(p.default) if isinstance(p.default, tuple) else p.default
        for name, p in inspect.signature(embedded.build).parameters.items() if name not in ("root", "progress")
    }
    assert config == defaults
