"""The `bapps` TFDS builder, prepared from a manual_dir holding the generated fixture."""

from __future__ import annotations

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from keras_percept.data import register_tfds_builder  # noqa: E402

pytestmark = pytest.mark.one_pass  # the TFDS builder


@pytest.fixture(scope="module")
def builder_class():
    return register_tfds_builder()


def _load(config, split, manual_dir, data_dir):
    return tfds.load(
        f"bapps/{config}", split=split, data_dir=str(data_dir), as_supervised=True, shuffle_files=False,
        download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)},
    )


def test_configs_cover_bapps(builder_class):
    names = {c.name for c in builder_class.BUILDER_CONFIGS}
    assert {"2afc_val_traditional", "2afc_train_mix", "2afc_val_frameinterp", "jnd_val_cnn"} <= names
    assert len(names) == 3 + 6 + 2


def test_2afc_val_traditional_from_manual_dir(builder_class, bapps, tmp_path):
    root, truth = bapps
    ds = _load("2afc_val_traditional", "val", root, tmp_path / "tfds")
    # TFDS may reorder examples: match them to the fixture by the ref image's bytes.
    got = {images[0].tobytes(): (images, float(judge)) for images, judge in ds.as_numpy_iterator()}
    want = {
        images["ref"].tobytes(): ((images["ref"], images["p0"], images["p1"]), label)
        for (kind, split, category, _), (images, label) in truth.items()
        if (kind, split, category) == ("2afc", "val", "traditional")
    }
    assert len(got) == len(want) == 4 and got.keys() == want.keys()
    for key, (images, label) in want.items():
        for g, w in zip(got[key][0], images):
            np.testing.assert_array_equal(g, w)
        assert got[key][1] == pytest.approx(label)


def test_jnd_config_and_ids(builder_class, bapps, tmp_path):
    root, truth = bapps
    builder = tfds.builder("bapps/jnd_val_cnn", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
    by_id = {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="val"))}
    assert sorted(by_id) == ["000000", "000001"]
    for item_id, ex in by_id.items():
        images, same = truth[("jnd", "val", "cnn", item_id)]
        np.testing.assert_array_equal(ex["p1"], images["p1"])
        assert ex["same"] == pytest.approx(same)


def test_missing_manual_data_is_reported(builder_class, bapps, tmp_path):
    with pytest.raises(AssertionError, match="python -m keras_percept.data.download"):
        _load("2afc_train_cnn", "train", str(tmp_path / "empty"), tmp_path / "tfds")
    import shutil

    shutil.rmtree(f"{bapps[0]}/2afc/train/cnn")
    with pytest.raises(FileNotFoundError, match=r"categories.*\['cnn'\].*Available: \['traditional'\]"):
        _load("2afc_train_cnn", "train", bapps[0], tmp_path / "tfds")
