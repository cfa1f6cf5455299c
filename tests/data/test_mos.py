"""MOS datasets: the CSV reader (KonIQ-10k and generic layouts, bad rows), the split, patch pipelines, embedded MOS."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

from keras_percept.data import (
    BadDataError,
    MOSTable,
    average_over_patches,
    embedded_mos,
    mos_patch_dataset,
    read_mos_csv,
    split_by_image,
)
from keras_percept.metrics.iqa import srcc

pytestmark = pytest.mark.one_pass  # MOS file readers and tf.data

KONIQ_HEADER = '"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"'


def _crops(photos: dict[str, np.ndarray], n: int, shape=(40, 48), seed: int = 0) -> list[np.ndarray]:
    """`n` uint8 crops of the scikit-image photographs, cycling through the photos."""
    rng = np.random.default_rng(seed)
    images = list(photos.values())
    out = []
    for k in range(n):
        img = images[k % len(images)]
        top, left = rng.integers(0, img.shape[0] - shape[0]), rng.integers(0, img.shape[1] - shape[1])
        out.append(np.round(img[top:top + shape[0], left:left + shape[1]] * 255).astype(np.uint8))
    return out


def _save(folder, name: str, pixels: np.ndarray) -> str:
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def koniq(tmp_path, photos):
    """A KonIQ-10k-layout folder: `1024x768/*.jpg` (real photo crops) and the scores CSV."""
    crops = _crops(photos, 6)
    rows = []
    for k, pixels in enumerate(crops):
        name = f"{10004473376 + k}.jpg"
        _save(tmp_path / "1024x768", name, pixels)
        votes = [k, 2, 10 - k, 3, k + 1]
        mos = sum((r + 1) * v for r, v in enumerate(votes)) / sum(votes)
        counts = ",".join(map(str, votes))
        rows.append(f'"{name}",{counts},{sum(votes)},{mos:.4f},{0.5 + k / 10:.3f},{20.0 + 11 * k:.2f}')
    csv_path = tmp_path / "koniq10k_scores_and_distributions.csv"
    csv_path.write_text("\n".join([KONIQ_HEADER, *rows]) + "\n")
    return str(csv_path), str(tmp_path / "1024x768"), crops


@pytest.fixture
def generic(tmp_path, photos):
    """A full-reference generic folder: 4 references, 2 distorted PNGs each (lossless, to compare pixels)."""
    refs = _crops(photos, 4, shape=(36, 44), seed=1)
    lines, truth = ["filename,mos,std,ref"], []
    for r, ref in enumerate(refs):
        _save(tmp_path / "ref", f"r{r}.png", ref)
        for d in range(2):
            distorted = 255 - ref if d == 0 else ref // 2  # pixel-wise maps: the same crop window is checkable
            _save(tmp_path / "dist", f"r{r}_d{d}.png", distorted)
            lines.append(f"dist/r{r}_d{d}.png,{1 + r + d / 2},{0.1 * (d + 1)},ref/r{r}.png")
            truth.append(distorted)
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "scores.csv"), truth


# --- reading ------------------------------------------------------------------------------------------


def test_koniq_layout_reads_mos_zscore_by_default(koniq):
    csv_path, image_dir, _ = koniq
    table = read_mos_csv(csv_path, image_dir)
    assert len(table) == 6 and table.ref_paths is None and table.std is None and table.skipped == ()
    np.testing.assert_allclose(table.mos, [20.0 + 11 * k for k in range(6)])
    assert table.mos.dtype == np.float32
    assert table.paths[0] == os.path.join(image_dir, "10004473376.jpg") and os.path.isabs(table.paths[0])
    assert read_mos_csv(csv_path, image_dir, layout="koniq").paths == table.paths


def test_koniq_mos_column_choice_reads_sd(koniq):
    csv_path, image_dir, _ = koniq
    table = read_mos_csv(csv_path, image_dir, mos_column="MOS")
    votes = np.array([[k, 2, 10 - k, 3, k + 1] for k in range(6)])
    np.testing.assert_allclose(table.mos, (votes * np.arange(1, 6)).sum(1) / votes.sum(1), atol=1e-4)
    np.testing.assert_allclose(table.std, [0.5 + k / 10 for k in range(6)], atol=1e-6)


def test_generic_layout_full_reference(generic):
    csv_path, _ = generic
    table = read_mos_csv(csv_path)  # file names relative to the CSV's folder
    folder = os.path.dirname(csv_path)
    assert table.full_reference and len(table) == 8
    assert table.paths[3] == os.path.join(folder, "dist", "r1_d1.png")
    assert table.ref_paths[3] == os.path.join(folder, "ref", "r1.png")
    np.testing.assert_allclose(table.mos[:4], [1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(table.std[:2], [0.1, 0.2], atol=1e-7)


def test_generic_without_std_or_ref_and_other_columns_ignored(tmp_path, photos):
    for k, pixels in enumerate(_crops(photos, 3)):
        _save(tmp_path / "img", f"{k}.png", pixels)
    (tmp_path / "s.csv").write_text("# a comment line\nid,Filename,MOS,note\n7,0.png,3.5,x\n8,1.png,2,y\n9,2.png,4,z\n")
    table = read_mos_csv(tmp_path / "s.csv", tmp_path / "img", layout="generic")
    assert table.std is None and table.ref_paths is None
    np.testing.assert_allclose(table.mos, [3.5, 2.0, 4.0])


@pytest.mark.parametrize(
    "row, match",
    [
        ("missing.png,3.0", r"s\.csv:3: image file .*missing\.png.* does not exist"),
        ("1.png,good", r"s\.csv:3: column 'mos' has non-numeric value 'good'"),
        ("1.png,", r"s\.csv:3: column 'mos' is empty"),
        ("1.png,nan", r"s\.csv:3: column 'mos' has non-finite value 'nan'"),
        ("1.png,3.0,extra", r"s\.csv:3: the row has 3 field\(s\), the header 2"),
        (",3.0", r"s\.csv:3: the file name is empty"),
        ("0.png,3.0", r"s\.csv:3: image .*0\.png' is also on line 2"),
    ],
)
def test_bad_row_raises_naming_line_column_and_value(tmp_path, photos, row, match):
    for k, pixels in enumerate(_crops(photos, 2)):
        _save(tmp_path, f"{k}.png", pixels)
    (tmp_path / "s.csv").write_text(f"filename,mos\n0.png,2.0\n{row}\n")
    with pytest.raises(BadDataError, match=match):
        read_mos_csv(tmp_path / "s.csv")


def test_bad_koniq_rows_are_skipped_and_reported(koniq):
    csv_path, image_dir, _ = koniq
    with open(csv_path) as f:
        lines = f.read().splitlines()
    lines[2] = lines[2].replace("10004473377.jpg", "gone.jpg")  # line 3: missing file
    lines[4] = lines[4].rsplit(",", 1)[0] + ",abc"  # line 5: non-numeric MOS_zscore
    lines.insert(6, "")  # a blank line is not a row
    with open(csv_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(BadDataError, match=r"koniq10k_scores_and_distributions\.csv:3: image file .*gone\.jpg"):
        read_mos_csv(csv_path, image_dir)
    with pytest.warns(UserWarning, match=r"Skipped 2 of 6 item\(s\).*1 MOS_zscore, 1 missing file"):
        table = read_mos_csv(csv_path, image_dir, on_error="skip")
    assert len(table) == 4
    assert [line for line, _ in table.skipped] == [3, 5]
    assert "gone.jpg" in table.skipped[0][1] and "'abc'" in table.skipped[1][1]
    np.testing.assert_allclose(table.mos, [20.0, 42.0, 64.0, 75.0])


def test_unreadable_image_and_missing_reference_are_reported(generic):
    csv_path, _ = generic
    folder = os.path.dirname(csv_path)
    with open(os.path.join(folder, "dist", "r0_d1.png"), "wb") as f:
        f.write(b"not an image")
    os.remove(os.path.join(folder, "ref", "r3.png"))
    with pytest.warns(UserWarning, match=r"Skipped 3 of 8"):
        table = read_mos_csv(csv_path, on_error="skip")
    assert len(table) == 5
    assert [line for line, _ in table.skipped] == [3, 8, 9]
    assert "unreadable" in table.skipped[0][1] and "reference file" in table.skipped[1][1]
    with pytest.raises(BadDataError, match=r"scores\.csv:3: image .*r0_d1\.png' is unreadable"):
        read_mos_csv(csv_path)


@pytest.mark.parametrize(
    "text, kwargs, match",
    [
        ("name,score\na.png,1\n", {}, r"unrecognised header \['name', 'score'\]"),
        ("filename,quality\na.png,1\n", {}, r"the generic layout needs a column 'mos'"),
        (KONIQ_HEADER + "\n", {"mos_column": "DMOS"}, r"the koniq layout needs a column 'DMOS'"),
        ("", {}, "the CSV is empty"),
    ],
)
def test_header_errors(tmp_path, text, kwargs, match):
    (tmp_path / "s.csv").write_text(text)
    for on_error in ("raise", "skip"):  # a header problem cannot be skipped
        with pytest.raises(BadDataError, match=match):
            read_mos_csv(tmp_path / "s.csv", on_error=on_error, **kwargs)


def test_all_rows_bad_is_an_error(tmp_path):
    (tmp_path / "s.csv").write_text("filename,mos\na.png,1\nb.png,2\n")
    with pytest.warns(UserWarning), pytest.raises(BadDataError, match=r"no usable rows \(2 data row\(s\), 2 skipped\)"):
        read_mos_csv(tmp_path / "s.csv", on_error="skip")


@pytest.mark.parametrize("kwargs, match", [({"layout": "tid"}, "`layout`"), ({"on_error": "ignore"}, "`on_error`")])
def test_invalid_reader_arguments(koniq, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_mos_csv(koniq[0], **kwargs)


def test_table_checks_and_subset():
    table = MOSTable(("a", "b", "c"), [1.0, 2.0, 3.0], [0.1, 0.2, 0.3], ("r", "r", "s"))
    part = table.subset([2, 0])
    assert part.paths == ("c", "a") and part.ref_paths == ("s", "r")
    np.testing.assert_allclose(part.mos, [3.0, 1.0])
    np.testing.assert_allclose(part.std, [0.3, 0.1], rtol=1e-6)
    with pytest.raises(ValueError, match="one value per path"):
        MOSTable(("a", "b"), [1.0])
    with pytest.raises(ValueError, match="one path per image"):
        MOSTable(("a", "b"), [1.0, 2.0], None, ("r",))
    with pytest.raises(IndexError, match="indices"):
        table.subset([3])


# --- splitting ----------------------------------------------------------------------------------------


def test_split_by_image_is_disjoint_and_deterministic():
    table = MOSTable(tuple(f"/d/{i}.png" for i in range(50)), np.arange(50.0))
    train, test = split_by_image(table, test_fraction=0.2, seed=3)
    assert len(test) == 10 and len(train) == 40
    assert not set(train.paths) & set(test.paths) and set(train.paths) | set(test.paths) == set(table.paths)
    assert list(train.paths) == sorted(train.paths, key=table.paths.index)  # table order kept
    again = split_by_image(table, test_fraction=0.2, seed=3)[1]
    assert again.paths == test.paths
    assert split_by_image(table, test_fraction=0.2, seed=4)[1].paths != test.paths
    np.testing.assert_array_equal(test.mos, [float(p[3:-4]) for p in test.paths])  # labels follow their images


def test_split_full_reference_by_reference(generic):
    table = read_mos_csv(generic[0])
    for seed in range(5):
        train, test = split_by_image(table, test_fraction=0.25, seed=seed)
        assert len(set(test.ref_paths)) == 1 and len(test) == 2  # one reference with both of its versions
        assert not set(train.ref_paths) & set(test.ref_paths)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, "0.2"])
def test_split_rejects_bad_fraction(fraction):
    table = MOSTable(("a", "b", "c"), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_image(table, test_fraction=fraction)


# --- patches ------------------------------------------------------------------------------------------


def _patches(ds) -> tuple[list, np.ndarray]:
    xs, ys = [], []
    for x, y in ds:
        xs.append(x), ys.append(y.numpy())
    return xs, np.concatenate(ys)


def _window_of(patch: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """Where `patch` sits in `image` (both float), or None."""
    size = patch.shape[0]
    for top in range(image.shape[0] - size + 1):
        for left in range(image.shape[1] - size + 1):
            if np.allclose(image[top:top + size, left:left + size], patch, atol=1e-6):
                return top, left
    return None


def test_test_patches_are_fixed_ordered_crops(tmp_path, photos):
    crops = _crops(photos, 3)
    table = MOSTable(tuple(_save(tmp_path / "png", f"{k}.png", c) for k, c in enumerate(crops)), [3.0, 1.0, 2.0])
    ds = mos_patch_dataset(table, patch_size=24, patches_per_image=4, training=False, batch_size=5, input_range="[0,1]")
    xs, ys = _patches(ds)
    assert [tuple(x.shape) for x in xs] == [(5, 24, 24, 3), (5, 24, 24, 3), (2, 24, 24, 3)]
    np.testing.assert_array_equal(ys, np.repeat([3.0, 1.0, 2.0], 4))
    patches = np.concatenate([x.numpy() for x in xs])
    assert patches.dtype == np.float32
    windows = [_window_of(p, crops[k // 4] / np.float32(255)) for k, p in enumerate(patches)]
    assert all(w is not None for w in windows)  # image i's patches are crops of image i, unflipped
    assert len(set(windows[:4])) > 1  # several positions per image
    again = np.concatenate([x.numpy() for x in _patches(ds)[0]])
    rebuilt = mos_patch_dataset(table, patch_size=24, patches_per_image=4, training=False, batch_size=3,
                                input_range="[0,1]")
    np.testing.assert_array_equal(again, patches)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x in _patches(rebuilt)[0]]), patches)


def test_training_patches_are_random_shuffled_crops(tmp_path, photos):
    crops = _crops(photos, 4)
    table = MOSTable(tuple(_save(tmp_path, f"{k}.png", c) for k, c in enumerate(crops)), [1.0, 2.0, 3.0, 4.0])
    ds = mos_patch_dataset(table, patch_size=20, patches_per_image=3, training=True, batch_size=4, seed=1, epochs=2)
    assert ds.cardinality().numpy() == 6
    batches = list(ds)  # epoch e's order and crops come from (seed, e)
    epochs = [(tuple(x for x, _ in half), np.concatenate([y.numpy() for _, y in half]))
              for half in (batches[:3], batches[3:])]
    for xs, ys in epochs:
        assert sorted(ys.tolist()) == sorted([1.0, 2.0, 3.0, 4.0] * 3)
        patches = np.concatenate([x.numpy() for x in xs])
        assert patches.min() >= -1 and patches.max() <= 1 and patches.min() < -0.5
        for patch, label in zip(patches, ys):
            image = crops[int(label) - 1] / np.float32(255)
            unit = (patch + 1) / 2
            found = _window_of(unit, image) or _window_of(unit[:, ::-1], image)
            assert found is not None  # a crop (maybe mirrored) of the image its label belongs to
    assert not np.array_equal(epochs[0][1], epochs[1][1]) or not np.array_equal(
        np.concatenate([x.numpy() for x in epochs[0][0]]), np.concatenate([x.numpy() for x in epochs[1][0]]))
    rebuilt = _patches(mos_patch_dataset(table, patch_size=20, patches_per_image=3, training=True, batch_size=4,
                                         seed=1))
    np.testing.assert_array_equal(rebuilt[1], epochs[0][1])  # reproducible for a seed


def test_full_reference_patches_share_the_crop_window(generic):
    table = read_mos_csv(generic[0])
    inverted = [k for k in range(len(table)) if "_d0" in table.paths[k]]  # distorted = 255 - reference
    for training in (True, False):
        ds = mos_patch_dataset(table.subset(inverted), patch_size=16, patches_per_image=3, training=training,
                               batch_size=4)
        for (patch, ref_patch), mos in ds:
            assert patch.shape == ref_patch.shape == (patch.shape[0], 16, 16, 3)
            np.testing.assert_allclose(patch.numpy(), -ref_patch.numpy(), atol=1e-6)  # [-1, 1]: 255 - x → -x


def test_images_smaller_than_the_patch_are_an_error(generic):
    table = read_mos_csv(generic[0])
    with pytest.raises(ValueError, match=r"patch_size=40.*12 image\(s\) are smaller.*\(36x44 pixels\)"):
        mos_patch_dataset(table, patch_size=40, training=False)


def test_full_reference_sizes_must_match(generic):
    table = read_mos_csv(generic[0])
    Image.open(table.ref_paths[0]).crop((0, 0, 40, 30)).save(table.ref_paths[0])
    with pytest.raises(ValueError, match=r"same size.*r0_d0\.png' \(36, 44\) and .*r0\.png' \(30, 40\)"):
        mos_patch_dataset(table, patch_size=16, training=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"patch_size": 0}, "patch_size"), ({"patches_per_image": 1.5}, "patches_per_image"),
     ({"batch_size": -1}, "batch_size"), ({"input_range": "[0,255]"}, "input_range"), ({"training": 1}, "training")],
)
def test_invalid_patch_arguments(generic, kwargs, match):
    args = {"patch_size": 16, "training": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        mos_patch_dataset(read_mos_csv(generic[0]), **args)


def test_average_over_patches():
    np.testing.assert_allclose(average_over_patches(np.array([1.0, 3.0, 2.0, 4.0, 0.0, 6.0]), 2), [2.0, 3.0, 3.0])
    np.testing.assert_allclose(average_over_patches(np.arange(6.0)[:, None], 3), [1.0, 4.0])
    with pytest.raises(ValueError, match=r"\(N \* 4,\).*Received shape: \(6,\)"):
        average_over_patches(np.arange(6.0), 4)


# --- the embedded (simulated) MOS -----------------------------------------------------------------------


def test_embedded_mos_is_simulated_full_reference_and_held_out(embedded_root):
    train, val = embedded_mos(embedded_root, split="train"), embedded_mos(embedded_root, split="val")
    assert (len(train), len(val)) == (280, 168)  # every p0/p1 of the small fixture set (fewer than the defaults)
    for table in (train, val):
        assert table.full_reference and table.std is not None
        assert table.mos.min() >= 1 and table.mos.max() <= 5 and table.std.min() >= 0
        assert all(os.path.isfile(p) for p in table.paths[:5] + table.ref_paths[:5])
    csv_path = os.path.join(embedded_root, "mos_train_raters20_seed0_v1.csv")
    with open(csv_path) as f:
        assert f.readline().startswith("# SIMULATED MOS, not human ratings")
        rows = list(csv.DictReader(f))
    photos = {split: {r["photo"] for r in _csv_rows(embedded_root, split)} for split in ("train", "val")}
    assert not photos["train"] & photos["val"]
    # The simulated raters follow severity: a clear negative rank correlation, not a perfect one.
    rho = srcc([float(r["mos"]) for r in rows], [-float(r["severity"]) for r in rows])
    assert 0.4 < rho < 0.99


def test_embedded_mos_is_deterministic_and_subsettable(embedded_root):
    csv_path = os.path.join(embedded_root, "mos_val_raters20_seed0_v1.csv")
    first = embedded_mos(embedded_root, split="val")
    with open(csv_path) as f:
        content = f.read()
    os.remove(csv_path)
    second = embedded_mos(embedded_root, split="val")
    with open(csv_path) as f:
        assert f.read() == content
    np.testing.assert_array_equal(first.mos, second.mos)
    other = embedded_mos(embedded_root, split="val", seed=1)
    assert not np.array_equal(other.mos, first.mos)
    part = embedded_mos(embedded_root, split="val", n_images=50)
    assert len(part) == 50 and set(part.paths) <= set(first.paths)
    with pytest.raises(ValueError, match="n_images"):
        embedded_mos(embedded_root, split="val", n_images=1000)
    with pytest.raises(ValueError, match="split"):
        embedded_mos(embedded_root, split="test")


def _csv_rows(root: str, split: str) -> list[dict]:
    with open(os.path.join(root, f"mos_{split}_raters20_seed0_v1.csv")) as f:
        f.readline()
        return list(csv.DictReader(f))
