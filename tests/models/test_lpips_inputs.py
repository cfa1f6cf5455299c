"""Bad inputs and bad arguments give clear errors naming what was received."""

from __future__ import annotations

import numpy as np
import pytest

from keras_percept import LPIPS
from keras_percept.images import pair_chunks


@pytest.fixture(scope="module")
def alex():
    return LPIPS(net="alex")


def _pair(shape=(2, 64, 64, 3), low=-1.0, high=1.0):
    rng = np.random.default_rng(0)
    return rng.uniform(low, high, shape).astype(np.float32), rng.uniform(low, high, shape).astype(np.float32)


@pytest.mark.parametrize("kwargs, message", [
    ({"net": "resnet"}, r"`net` must be one of .*Received: net='resnet'"),
    ({"version": "0.2"}, r"`version` must be one of .*Received: version='0.2'"),
    ({"input_range": "[0,255]"}, r"`input_range` must be one of .*\[0,255\]"),
    ({"dropout": 1.5}, r"`dropout` must be in \[0, 1\). Received: dropout=1.5"),
])
def test_invalid_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LPIPS(**kwargs)


def test_mismatched_shapes(alex):
    x0, _ = _pair()
    _, x1 = _pair((2, 64, 48, 3))
    for run in (lambda: alex((x0, x1)), lambda: alex.distance(x0, x1)):
        with pytest.raises(ValueError, match=r"same shape.*\(2, 64, 64, 3\).*\(2, 64, 48, 3\)"):
            run()


def test_wrong_rank(alex):
    x = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match=r"rank 4 .*Received shape \(64, 64\) \(rank 2\)"):
        alex((x, x))


@pytest.mark.parametrize("channels, hint", [(1, "grayscale, repeat to 3"), (4, "RGBA, drop the alpha")])
def test_wrong_channel_count(alex, channels, hint):
    x0, x1 = _pair((2, 64, 64, channels))
    with pytest.raises(ValueError, match=f"{channels} channel.*expected 3.*{hint}"):
        alex((x0, x1))


def test_channels_first_hint(alex):
    x0, x1 = _pair((2, 3, 64, 64))
    with pytest.raises(ValueError, match="channels-first"):
        alex((x0, x1))


def test_uint8_rejected(alex):
    x = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"dtype uint8; expected floating point.*127\.5"):
        alex((x, x))
    with pytest.raises(ValueError, match="dtype uint8"):
        alex.distance(x, x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_rejected(alex, bad):
    x0, x1 = _pair()
    x1[1, 3, 4, 2] = bad
    with pytest.raises(ValueError, match=r"x1 contains 1 NaN/Inf"):
        alex.distance(x0, x1)


def test_out_of_range_values(alex):
    x0, x1 = _pair(low=0, high=255)
    with pytest.raises(ValueError, match=r"x0 has values in \[.*\], outside input_range='\[-1,1\]'.*0\.\.255"):
        alex.distance(x0, x1)
    zero_one = LPIPS(net="alex", input_range="[0,1]")
    x0, x1 = _pair()
    with pytest.raises(ValueError, match=r"outside input_range='\[0,1\]'.*use input_range='\[-1,1\]'"):
        zero_one.distance(x0, x1)


@pytest.mark.parametrize("net, ok, too_small", [("alex", 31, 30), ("vgg", 16, 15), ("squeeze", 17, 16)])
def test_minimum_size(net, ok, too_small):
    model = LPIPS(net=net)
    x0, x1 = _pair((1, ok, ok, 3))
    assert np.isfinite(model.distance(x0, x1)).all()
    x0, x1 = _pair((1, too_small, too_small, 3))
    with pytest.raises(ValueError, match=f"{too_small}x{too_small} pixels; the {net} trunk needs at least {ok}x{ok}"):
        model.distance(x0, x1)


def test_distance_accepts_single_images_and_batches(alex):
    x0, x1 = _pair((5, 40, 40, 3))
    batched = alex.distance(x0, x1, batch_size=2)
    assert batched.shape == (5,)
    single = alex.distance(x0[3], x1[3])
    np.testing.assert_allclose(single, batched[3:4], rtol=1e-5)


@pytest.mark.parametrize("n, size, batch_size, chunk_pixels, expected", [
    (40, 256, 32, 8 * 256 * 256, [8, 8, 8, 8, 8]),  # large images: cut within each batch of 32
    (70, 64, 32, 8 * 256 * 256, [32, 32, 6]),  # 64 px: the batches the caller asked for
    (10, 400, 4, 8 * 256 * 256, [3, 1, 3, 1, 2]),  # 3 images of 400 px per call; cuts never cross a batch
    (3, 2048, 32, 8 * 256 * 256, [1, 1, 1]),  # never below one pair
    (10, 256, 32, None, [10]),
])
def test_pair_chunks_bound_the_pixels_of_a_call(n, size, batch_size, chunk_pixels, expected):
    parts = list(pair_chunks(n, size, size, batch_size, chunk_pixels))
    assert [p.stop - p.start for p in parts] == expected
    assert parts[0].start == 0 and parts[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))


def test_pair_chunks_reject_a_bad_batch_size():
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer. Received: batch_size=0"):
        list(pair_chunks(4, 64, 64, 0))


def test_distance_of_large_images_runs_in_chunks_with_the_same_values(alex, monkeypatch):
    x0, x1 = _pair((10, 256, 256, 3))
    expected = np.asarray(alex.predict_on_batch((x0, x1)))  # the whole batch in one call
    calls = []
    original = alex.predict_on_batch
    monkeypatch.setattr(alex, "predict_on_batch", lambda pair: calls.append(len(pair[0])) or original(pair))
    got = alex.distance(x0, x1, batch_size=32)
    assert calls == [8, 2]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_identical_images_have_zero_distance(alex):
    x0, _ = _pair()
    np.testing.assert_allclose(alex.distance(x0, x0), 0.0, atol=1e-7)


def test_inputs_must_be_a_pair(alex):
    x0, _ = _pair()
    with pytest.raises(ValueError, match="pair of image batches"):
        alex((x0, x0, x0))
    with pytest.raises(ValueError, match="keys 'x0' and 'x1'"):
        alex({"a": x0, "x1": x0})
