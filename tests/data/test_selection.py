"""The selection split carved from the training data: by photograph where known, else per category."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from keras_percept.data import index_2afc
from keras_percept.data.selection import MIN_GROUPS, carve_selection, photo_groups, selection_positions

pytestmark = pytest.mark.one_pass  # index bookkeeping, no tensors


def test_per_category_fraction_without_groups():
    categories = ["a"] * 50 + ["b"] * 10 + ["c"] * 3 + ["d"]
    fit, selection = selection_positions(categories, 0.2, seed=0)
    assert sorted(np.concatenate([fit, selection])) == list(range(len(categories)))
    picked = collections.Counter(categories[i] for i in selection)
    # round(0.2 n), at least one of a category of two or more, never the whole category
    assert picked == {"a": 10, "b": 2, "c": 1}
    again = selection_positions(categories, 0.2, seed=0)
    np.testing.assert_array_equal(again[1], selection)
    assert not np.array_equal(selection_positions(categories, 0.2, seed=1)[1], selection)


def test_grouped_split_keeps_every_photograph_on_one_side():
    rng = np.random.default_rng(0)
    groups = [f"photo{k}" for k in rng.integers(0, 8, size=400)]
    categories = [f"cat{k}" for k in rng.integers(0, 5, size=400)]
    fit, selection = selection_positions(categories, 0.2, seed=3, groups=groups)
    fit_photos, selection_photos = {groups[i] for i in fit}, {groups[i] for i in selection}
    assert fit_photos.isdisjoint(selection_photos) and selection_photos and fit_photos
    # the share closest to the fraction that whole photographs allow (one photo is ~1/8 of the items)
    assert abs(len(selection) / 400 - 0.2) < 1 / 8


def test_too_few_photographs_fall_back_to_triplets():
    groups = [f"photo{k % (MIN_GROUPS - 1)}" for k in range(100)]
    fit, selection = selection_positions(["a"] * 100, 0.2, seed=0, groups=groups)
    assert len(selection) == 20
    assert {groups[i] for i in fit} & {groups[i] for i in selection}, "split by triplet, photos on both sides"


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2, True, "0.2", None])
def test_bad_fraction_is_refused_with_the_value(bad):
    with pytest.raises(ValueError, match=r"Argument `fraction` must be a number in \(0, 1\). Received: fraction="):
        selection_positions(["a"] * 10, bad, seed=0)


def test_data_too_small_for_a_selection_split():
    with pytest.raises(ValueError, match="too small to carve a selection split"):
        selection_positions(["a", "b", "c"], 0.2, seed=0)


def test_embedded_set_is_split_by_photograph(tmp_path):
    from keras_percept.data import embedded

    root = embedded.build(str(tmp_path / "set"), seed=1, n_train=120, n_val=14, n_jnd=6, progress=False)
    index = index_2afc(root, "train", verify="header")
    groups = photo_groups(index)
    assert groups is not None and len(set(groups)) >= MIN_GROUPS
    fit, selection = carve_selection(index, 0.2, seed=0)
    assert len(fit) + len(selection) == len(index)
    key = dict(zip(zip(index.categories, index.ids), groups))
    fit_photos = {key[c, i] for c, i in zip(fit.categories, fit.ids)}
    selection_photos = {key[c, i] for c, i in zip(selection.categories, selection.ids)}
    assert fit_photos.isdisjoint(selection_photos)
    # No selection triplet is in the fit part, and the selection part keeps its labels.
    assert set(zip(fit.categories, fit.ids)).isdisjoint(zip(selection.categories, selection.ids))
    labels = dict(zip(zip(index.categories, index.ids), index.labels))
    assert all(labels[c, i] == h for c, i, h in zip(selection.categories, selection.ids, selection.labels))


def test_bapps_folder_without_metadata_is_split_per_category(tmp_path):
    import shutil

    from keras_percept.data import embedded

    root = embedded.build(str(tmp_path / "set"), seed=1, n_train=120, n_val=14, n_jnd=6, progress=False)
    shutil.rmtree(f"{root}/metadata")  # a BAPPS folder does not say which image a patch came from
    index = index_2afc(root, "train", verify="header")
    assert photo_groups(index) is None
    fit, selection = carve_selection(index, 0.25, seed=0)
    for category in index.category_names:
        n = index.categories.count(category)
        assert selection.categories.count(category) == max(1, round(0.25 * n))
