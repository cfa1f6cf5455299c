"""The BAPPS-layout reader: values, labels, categories and order, on a generated fixture."""

from __future__ import annotations

import numpy as np
import pytest
from bapps_fixture import FIXTURE_2AFC, FIXTURE_JND, FIXTURE_SIZE, make_bapps

from keras_percept.data import index_2afc, load_2afc, load_2afc_by_category, load_jnd


def _collect(ds):
    images, labels = None, []
    for batch_images, batch_labels in ds:
        arrays = [np.asarray(x) for x in batch_images]
        images = arrays if images is None else [np.concatenate([a, b]) for a, b in zip(images, arrays)]
        labels.append(np.asarray(batch_labels))
    return images, np.concatenate(labels)


def _expected(truth, kind, split, categories, dirs):
    keys = [k for c in categories for k in sorted(k for k in truth if k[:3] == (kind, split, c))]
    images = [np.stack([truth[k][0][d] for k in keys]) for d in dirs]
    return keys, images, np.array([truth[k][1] for k in keys], dtype=np.float32)


@pytest.mark.parametrize("value_range", ["[-1,1]", "[0,1]"])
def test_2afc_values_labels_and_order(bapps, value_range):
    root, truth = bapps
    ds = load_2afc(root, "val", ["traditional", "cnn"], patch_size=FIXTURE_SIZE, batch_size=3,
                   value_range=value_range)
    images, labels = _collect(ds)
    _, expected, expected_labels = _expected(truth, "2afc", "val", ["traditional", "cnn"], ("ref", "p0", "p1"))
    for got, want in zip(images, expected):
        unit = want.astype(np.float32) / 255.0
        np.testing.assert_allclose(got, 2 * unit - 1 if value_range == "[-1,1]" else unit, atol=1e-6)
        assert got.dtype == np.float32 and got.shape[1:] == (FIXTURE_SIZE, FIXTURE_SIZE, 3)
    np.testing.assert_array_equal(labels, expected_labels)


def test_batch_structure_and_remainder(bapps):
    root, _ = bapps
    ds = load_2afc(root, "val", batch_size=4, patch_size=FIXTURE_SIZE)
    sizes = [int(judge.shape[0]) for (ref, p0, p1), judge in ds]
    assert sizes == [4, 4, 1]  # 9 val triplets
    dropped = load_2afc(root, "val", batch_size=4, patch_size=FIXTURE_SIZE, drop_remainder=True)
    assert [int(j.shape[0]) for _, j in dropped] == [4, 4]


def test_default_categories_are_all_folders_sorted(bapps):
    root, truth = bapps
    index = index_2afc(root, "val")
    assert index.category_names == sorted(FIXTURE_2AFC["val"])
    assert len(index) == sum(FIXTURE_2AFC["val"].values())
    assert index.ids[:2] == ["000000", "000001"]
    assert index.paths["p1"][0].endswith("val/cnn/p1/000000.png")
    assert float(index.labels[0]) == truth[("2afc", "val", "cnn", "000000")][1]


def test_resizes_to_patch_size_like_pil_bilinear(tmp_path):
    root = str(tmp_path)
    truth = make_bapps(root, size=32)
    (ref, _, _), _ = next(iter(load_2afc(root, "train", ["cnn"], patch_size=16, batch_size=1, value_range="[0,1]")))
    from PIL import Image

    stored = truth[("2afc", "train", "cnn", "000000")][0]["ref"]
    pil = np.asarray(Image.fromarray(stored).resize((16, 16), Image.BILINEAR), dtype=np.float32) / 255
    assert ref.shape == (1, 16, 16, 3)
    assert np.abs(np.asarray(ref[0]) - pil).mean() < 0.01


def test_shuffle_is_a_seeded_permutation(bapps):
    root, _ = bapps
    kwargs = dict(patch_size=FIXTURE_SIZE, batch_size=100, shuffle=True, seed=7)
    _, ordered = _collect(load_2afc(root, "val", patch_size=FIXTURE_SIZE, batch_size=100))
    ds = load_2afc(root, "val", **kwargs)
    epoch1, epoch2 = (_collect(ds)[1] for _ in range(2))
    again = _collect(load_2afc(root, "val", **kwargs))[1]
    np.testing.assert_array_equal(np.sort(epoch1), np.sort(ordered))
    np.testing.assert_array_equal(epoch1, again)
    ref_first = [_collect(load_2afc(root, "val", **{**kwargs, "seed": s}))[0][0][:, 0, 0, 0] for s in (7, 8)]
    assert not np.array_equal(ref_first[0], ref_first[1])
    assert epoch1.shape == epoch2.shape


def test_by_category_iterates_each_category(bapps):
    root, truth = bapps
    per_category = load_2afc_by_category(root, "val", ["color", "traditional"], patch_size=FIXTURE_SIZE)
    assert list(per_category) == ["color", "traditional"]
    for category, ds in per_category.items():
        _, labels = _collect(ds)
        np.testing.assert_array_equal(labels, _expected(truth, "2afc", "val", [category], ())[2])


def test_jnd_pairs(bapps):
    root, truth = bapps
    images, same = _collect(load_jnd(root, patch_size=FIXTURE_SIZE, value_range="[0,1]"))
    _, expected, expected_same = _expected(truth, "jnd", "val", sorted(FIXTURE_JND), ("p0", "p1"))
    assert len(images) == 2
    for got, want in zip(images, expected):
        np.testing.assert_allclose(got, want / 255.0, atol=1e-6)
    np.testing.assert_array_equal(same, expected_same)


def test_model_fit_consumes_the_pipeline(bapps):
    """`model.fit` on the active Keras backend accepts the tf.data pipeline."""
    import keras

    root, _ = bapps
    ref, p0, p1 = (keras.Input((FIXTURE_SIZE, FIXTURE_SIZE, 3)) for _ in range(3))
    d0 = keras.layers.GlobalAveragePooling2D()(keras.layers.Subtract()([ref, p0]))
    d1 = keras.layers.GlobalAveragePooling2D()(keras.layers.Subtract()([ref, p1]))
    logit = keras.layers.Dense(1)(keras.layers.Concatenate()([d0, d1]))
    model = keras.Model((ref, p0, p1), keras.layers.Reshape(())(keras.layers.Activation("sigmoid")(logit)))
    model.compile("sgd", "binary_crossentropy")
    history = model.fit(load_2afc(root, "train", patch_size=FIXTURE_SIZE, batch_size=2), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"value_range": "0-255"}, "value_range"),
        ({"patch_size": 0}, "patch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"verify": "none"}, "verify"),
        ({"on_error": "ignore"}, "on_error"),
        ({"image_size": -1}, "image_size"),
    ],
)
def test_invalid_arguments(bapps, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_2afc(bapps[0], "val", **kwargs)


def test_missing_root_and_category_are_explained(bapps, tmp_path):
    with pytest.raises(FileNotFoundError, match="embedded"):
        load_2afc(str(tmp_path / "nowhere"), "val")
    with pytest.raises(FileNotFoundError, match=r"Available: \['cnn', 'color', 'traditional'\]"):
        load_2afc(bapps[0], "val", ["superres"])
    with pytest.raises(ValueError, match="split"):
        load_2afc(bapps[0], "test")
