"""The tf.data readers (BAPPS, MOS) decode every kind of file with the CLI's pixels."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from image_kinds import KINDS, smooth_rgb, write_kind, write_oriented
from PIL import Image

from keras_percept.data import index_2afc, load_2afc
from keras_percept.data import mos
from keras_percept.data.reader import decode_file
from keras_percept.images import load_image

pytestmark = pytest.mark.one_pass


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    folder = str(tmp_path_factory.mktemp("kinds"))
    paths = [write_kind(kind, folder)[0] for kind in KINDS]
    for orientation in range(1, 9):
        path = os.path.join(folder, f"oriented{orientation}.jpg")
        write_oriented(path, smooth_rgb(), orientation, quality=90)
        paths.append(path)
    return paths


def test_pipeline_pixels_equal_the_cli_reader(files):
    ds = tf.data.Dataset.from_tensor_slices(files).map(decode_file, num_parallel_calls=2, deterministic=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = list(ds.as_numpy_iterator())
        for path, image in zip(files, decoded, strict=True):
            np.testing.assert_array_equal(image, load_image(path), err_msg=path)
            np.testing.assert_array_equal(mos._decode(tf.constant(path)).numpy(), image, err_msg=path)


def test_tensorflow_decoder_alone_misses_the_orientation(files):
    """The control: what `tf.io.decode_image` (the readers' old decoder) gives for a sideways photo."""
    path = next(p for p in files if p.endswith("oriented6.jpg"))
    plain = tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()
    assert plain.shape[:2] != decode_file(tf.constant(path)).shape[:2]


def test_bapps_reader_applies_orientation_and_keeps_16_bits(bapps):
    root, truth = bapps
    folder = os.path.join(root, "2afc", "val", "traditional")
    upright = truth[("2afc", "val", "traditional", "000000")][0]["ref"]
    os.remove(os.path.join(folder, "ref", "000000.png"))
    write_oriented(os.path.join(folder, "ref", "000000.png"), upright, 6)
    deep = np.random.default_rng(0).integers(0, 65536, upright.shape, dtype=np.uint16)
    tf.io.write_file(os.path.join(folder, "p0", "000000.png"), tf.io.encode_png(deep))
    for verify in ("full", "header"):
        assert len(index_2afc(root, "val", ["traditional"], verify=verify)) == 4
    (ref, p0, _), _ = next(iter(load_2afc(root, "val", ["traditional"], batch_size=4, value_range="[0,1]",
                                          patch_size=upright.shape[0])))
    np.testing.assert_array_equal(ref[0].numpy(), upright / np.float32(255))
    np.testing.assert_allclose(p0[0].numpy(), deep / 65535.0, atol=1e-7, rtol=0)
    with Image.open(os.path.join(folder, "ref", "000000.png")) as img:
        assert not np.array_equal(np.asarray(img), upright)  # stored sideways


def test_unreadable_file_is_named_by_the_index(bapps):
    root, _ = bapps
    path = os.path.join(root, "2afc", "val", "cnn", "p1", "000001.png")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    index = index_2afc(root, "val", ["cnn"], on_error="skip")
    assert [s.path for s in index.skipped] == [path]
    assert "truncated or damaged" in index.skipped[0].reason
