"""The CLI's reader (`keras_percept.images.load_image`) reads every kind of file as a viewer shows it."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from image_kinds import KINDS, H, W, smooth_rgb, write_kind, write_oriented
from PIL import Image

from keras_percept.images import image_shape, load_image

pytestmark = pytest.mark.one_pass

FORMATS = {"jpg": dict(quality=95, subsampling=0), "png": {}, "webp": dict(lossless=True), "tif": {}}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation, fmt):
    upright = smooth_rgb()
    oriented, plain = str(tmp_path / f"oriented.{fmt}"), str(tmp_path / f"plain.{fmt}")
    write_oriented(oriented, upright, orientation, **FORMATS[fmt])
    Image.fromarray(upright).save(plain, **FORMATS[fmt])
    got = load_image(oriented)
    assert got.shape == (H, W, 3) == image_shape(oriented)
    # JPEG: the stored, rotated image is compressed in other blocks than the plain one.
    tolerance = 12 / 255 if fmt == "jpg" else 0.0
    np.testing.assert_allclose(got, load_image(plain), atol=tolerance)


def test_sideways_phone_photo_negative_control(tmp_path):
    upright = smooth_rgb()
    path = str(tmp_path / "phone.jpg")
    write_oriented(path, upright, 6, **FORMATS["jpg"])
    with Image.open(path) as img:
        stored = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    assert stored.shape == (W, H, 3)  # what a reader ignoring EXIF returns
    got = load_image(path)
    assert got.shape != stored.shape
    # Rotated the wrong way (orientation 8 applied instead of 6) is caught as well.
    assert np.abs(got - np.rot90(stored, 1)).max() > 0.2
    np.testing.assert_allclose(got, upright / 255, atol=12 / 255)


@pytest.mark.parametrize("kind", KINDS)
def test_file_kind_reads_as_shown(tmp_path, kind):
    path, expected, atol = write_kind(kind, str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = load_image(path)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("kind", ["gray16_png", "gray16_tiff", "rgb16_png", "rgb16_tiff"])
def test_16_bit_precision_is_kept(tmp_path, kind):
    path, expected, _ = write_kind(kind, str(tmp_path))
    got = load_image(path)
    eight_bit = np.round(expected * 255) / 255
    assert np.abs(expected - eight_bit).max() > 1e-3  # the control: 8 bits lose this much
    assert np.abs(got - expected).max() < 1e-6


@pytest.mark.parametrize("kind", ["multipage_tiff", "animated_gif"])
def test_first_frame_with_a_warning(tmp_path, kind):
    path, _, _ = write_kind(kind, str(tmp_path))
    with pytest.warns(UserWarning, match="has 2 (pages|frames); reading the first"):
        load_image(path)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_file_is_refused(tmp_path, ext):
    path = str(tmp_path / f"cut.{ext}")
    big = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(path)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or damaged .* Copy or export it again"):
        load_image(path)


def test_unknown_and_unsupported_files_are_refused(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not an image format .* Convert it to PNG or JPEG"):
        load_image(text)
    floats = str(tmp_path / "float.tif")
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(floats)
    with pytest.raises(ValueError, match="floating-point pixels .* Convert it to an 8- or 16-bit"):
        load_image(floats)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")


def test_broken_icc_profile_warns_and_reads_as_srgb(tmp_path):
    path = str(tmp_path / "bad_icc.png")
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, icc_profile=b"not a profile")
    with pytest.warns(UserWarning, match="unusable ICC profile"):
        got = load_image(path)
    np.testing.assert_array_equal(got, rgb / np.float32(255))


def test_written_images_leave_no_temporary(tmp_path):
    from keras_percept.images import atomic_write_image

    atomic_write_image(Image.new("RGB", (3, 2), (255, 0, 0)), tmp_path / "red.png")
    assert os.listdir(tmp_path) == ["red.png"]
    assert load_image(tmp_path / "red.png")[0, 0].tolist() == [1.0, 0.0, 0.0]
