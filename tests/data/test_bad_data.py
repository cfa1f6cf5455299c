"""Bad data: each case raises an error naming the file, or is skipped, counted and reported."""

from __future__ import annotations

import os

import numpy as np
import pytest
from bapps_fixture import FIXTURE_SIZE, fixture_pixels, write_label, write_png

from keras_percept.data import BadDataError, index_2afc, index_jnd, load_2afc

pytestmark = pytest.mark.one_pass  # file checks and tf.data

VAL_TRAD = ("2afc", "val", "traditional")  # 4 items: 000000 … 000003


def _path(root, *parts):
    return os.path.join(root, *parts)


def _break_png_truncated(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _break_garbage(path):
    with open(path, "wb") as f:
        f.write(b"this is not an image at all")


# Each case: how to damage the fixture (item 000002 of val/traditional), the file it must name, the kind.
CASES = {
    "missing_judge": (lambda r: os.remove(_path(r, *VAL_TRAD, "judge", "000002.npy")), "judge/000002.npy", "label"),
    "unequal_counts": (lambda r: os.remove(_path(r, *VAL_TRAD, "p1", "000002.png")), "p1/000002.png", "count"),
    "extra_ref": (
        lambda r: write_png(_path(r, *VAL_TRAD, "ref", "000009.png"), fixture_pixels(np.random.default_rng(1))),
        "p0/000009.png", "count",
    ),
    "garbage_image": (lambda r: _break_garbage(_path(r, *VAL_TRAD, "p0", "000002.png")), "p0/000002.png", "image"),
    "truncated_png": (
        lambda r: _break_png_truncated(_path(r, *VAL_TRAD, "ref", "000002.png")), "ref/000002.png", "image",
    ),
    "wrong_size": (
        lambda r: write_png(_path(r, *VAL_TRAD, "p1", "000002.png"),
                            fixture_pixels(np.random.default_rng(1), FIXTURE_SIZE // 2)),
        "p1/000002.png", "size",
    ),
    "label_above_one": (
        lambda r: write_label(_path(r, *VAL_TRAD, "judge", "000002.npy"), np.array([1.5])), "judge/000002.npy", "label",
    ),
    "label_negative": (
        lambda r: write_label(_path(r, *VAL_TRAD, "judge", "000002.npy"), np.array([-0.2])), "judge/000002.npy", "label",
    ),
    "label_nan": (
        lambda r: write_label(_path(r, *VAL_TRAD, "judge", "000002.npy"), np.array([np.nan])), "judge/000002.npy", "label",
    ),
    "label_two_values": (
        lambda r: write_label(_path(r, *VAL_TRAD, "judge", "000002.npy"), np.array([0.2, 0.4])), "judge/000002.npy", "label",
    ),
    "label_not_npy": (
        lambda r: _break_garbage(_path(r, *VAL_TRAD, "judge", "000002.npy")), "judge/000002.npy", "label",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_item_raises_naming_the_file(bapps, case):
    root, _ = bapps
    damage, names, _ = CASES[case]
    damage(root)
    with pytest.raises(BadDataError, match="on_error='skip'") as info:
        load_2afc(root, "val", ["cnn", "traditional"], patch_size=FIXTURE_SIZE)
    assert info.value.path.endswith(os.path.join("val", "traditional", names))
    assert os.path.join("traditional", names) in str(info.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_item_is_skipped_counted_and_reported(bapps, case):
    root, truth = bapps
    damage, names, kind = CASES[case]
    damage(root)
    index = index_2afc(root, "val", ["traditional"], on_error="skip")
    assert [(s.kind, s.path.endswith(names)) for s in index.skipped] == [(kind, True)]
    expected_ids = ["000000", "000001", "000003"] if case != "extra_ref" else ["000000", "000001", "000002", "000003"]
    assert index.ids == expected_ids
    # Every kept label still belongs to its own item: nothing shifted.
    np.testing.assert_array_equal(index.labels, [truth[(*VAL_TRAD, i)][1] for i in expected_ids])
    with pytest.warns(UserWarning, match=rf"Skipped 1 of {len(expected_ids) + 1} item\(s\).*1 {kind}"):
        ds = load_2afc(root, "val", ["traditional"], patch_size=FIXTURE_SIZE, on_error="skip")
    labels = np.concatenate([np.asarray(j) for _, j in ds])
    np.testing.assert_array_equal(labels, index.labels)


def test_header_verification_misses_truncation_but_full_catches_it(bapps):
    root, _ = bapps
    _break_png_truncated(_path(root, *VAL_TRAD, "ref", "000002.png"))
    assert len(index_2afc(root, "val", ["traditional"], verify="header")) == 4
    assert len(index_2afc(root, "val", ["traditional"], verify="full", on_error="skip")) == 3


def test_explicit_image_size(bapps):
    root, _ = bapps
    with pytest.raises(BadDataError, match="expected 32x32"):
        index_2afc(root, "val", ["traditional"], image_size=32)
    assert len(index_2afc(root, "val", ["traditional"], image_size=FIXTURE_SIZE)) == 4


def test_duplicate_ids_are_ambiguous(bapps):
    root, _ = bapps
    write_png(_path(root, *VAL_TRAD, "p0", "000001.jpg"), fixture_pixels(np.random.default_rng(2)))
    with pytest.raises(BadDataError, match="share the id '000001'"):
        index_2afc(root, "val", ["traditional"])
    assert index_2afc(root, "val", ["traditional"], on_error="skip").ids == ["000000", "000002", "000003"]


def test_jnd_bad_label(bapps):
    root, _ = bapps
    write_label(_path(root, "jnd", "val", "cnn", "same", "000001.npy"), np.array([2.0]))
    with pytest.raises(BadDataError, match=r"same/000001.npy.*outside \[0, 1\]"):
        index_jnd(root)
    assert len(index_jnd(root, on_error="skip")) == 4


def test_all_items_bad_is_an_error_not_an_empty_dataset(bapps):
    root, _ = bapps
    for i in range(2):
        os.remove(_path(root, "2afc", "train", "cnn", "judge", f"{i:06d}.npy"))
    with pytest.warns(UserWarning, match="Skipped 2 of 2"), pytest.raises(ValueError, match="No usable items"):
        load_2afc(root, "train", ["cnn"], on_error="skip")
