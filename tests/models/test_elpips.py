"""E-LPIPS: each sample's value is the metric on one transformation applied alike to both images.

Each transformation is checked by membership: with one sample and one kind of transformation on,
every pair's distance must equal the metric on one of that kind's possible outcomes, computed here
in NumPy. Applied to one image only, or wrongly (e.g. a shift with zero fill), a value falls outside
the set; a test that only compared to "some other number" could not tell.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from backend_utils import value_and_grad
from photo_utils import photo_pairs
from keras_percept import LPIPS
from keras_percept.losses import PerceptualLoss
from keras_percept.metrics import LPIPSMetric
from keras_percept.models import DISTS, ELPIPS

OFF = {"max_offset": 0, "flips": False, "transpose": False, "permute_channels": False, "colour_scale": (1.0, 1.0),
       "max_downscale": 1}


@pytest.fixture(scope="module")
def alex():
    keras.utils.set_random_seed(5)
    return LPIPS(net="alex")


@pytest.fixture(scope="module")
def pairs(photos):
    return photo_pairs(photos, 64, seed=11)


def _d(metric, x0, x1) -> np.ndarray:
    return np.asarray(metric.predict_on_batch((np.ascontiguousarray(x0), np.ascontiguousarray(x1))))


def _assert_each_in(got: np.ndarray, candidates: list[np.ndarray]) -> list[int]:
    """Per pair, the index of the candidate outcome its distance equals (fails when none does)."""
    table = np.stack(candidates, axis=1)  # (pairs, outcomes)
    gaps = np.abs(table - got[:, None])
    best = np.argmin(gaps, axis=1)
    assert np.all(gaps[np.arange(len(got)), best] <= 1e-5 * np.abs(got).max() + 1e-7), (got, table)
    return best.tolist()


def _shift(x: np.ndarray, dy: int, dx: int, m: int) -> np.ndarray:
    """Down-right shift by (dy, dx), the border filled by reflection (NumPy's 'reflect' = no edge repeat)."""
    padded = np.pad(x, ((0, 0), (m, 0), (m, 0), (0, 0)), mode="reflect")
    h, w = x.shape[1:3]
    return padded[:, m - dy:m - dy + h, m - dx:m - dx + w]


def test_with_every_transformation_off_it_is_the_metric(alex, pairs):
    x0, x1 = pairs
    np.testing.assert_allclose(_d(ELPIPS(alex, samples=3, **OFF), x0, x1), _d(alex, x0, x1), rtol=1e-5)


def test_identical_images_are_at_zero_under_every_transformation(alex, pairs):
    x0, _ = pairs
    np.testing.assert_allclose(ELPIPS(alex, samples=6, seed=1).distance(x0, x0), 0.0, atol=1e-6)


def test_offsets_shift_both_images_alike_with_reflection(alex, pairs):
    x0, x1 = pairs
    m = 7
    metric = ELPIPS(alex, samples=1, seed=2, **{**OFF, "max_offset": m})
    assert metric.offset_range(64, 64) == 7 and metric.offset_range(40, 64) == 5
    shifts = list(itertools.product(range(m + 1), repeat=2))
    candidates = [_d(alex, _shift(x0, dy, dx, m), _shift(x1, dy, dx, m)) for dy, dx in shifts]
    seen = set()
    for _ in range(3):  # three draws for each of the 4 pairs
        seen.update(_assert_each_in(_d(metric, x0, x1), candidates))
    assert len(seen) > 4, "the offsets do not vary"
    # Negative control: the first image shifted alone is not among the outcomes.
    alone = _d(alex, _shift(x0, 3, 4, m), x1)
    with pytest.raises(AssertionError):
        _assert_each_in(alone, candidates[1:])


def test_flips_transposes_and_channel_orders_act_on_both_images(alex, pairs):
    x0, x1 = pairs
    geometric = ELPIPS(alex, samples=1, seed=3, **{**OFF, "flips": True, "transpose": True})
    outcomes = []
    for lr, ud, tr in itertools.product((False, True), repeat=3):
        def f(x, lr=lr, ud=ud, tr=tr):
            x = x[:, :, ::-1] if lr else x
            x = x[:, ::-1] if ud else x
            return x.transpose(0, 2, 1, 3) if tr else x
        outcomes.append(_d(alex, f(x0), f(x1)))
    seen = set()
    for _ in range(4):
        seen.update(_assert_each_in(_d(geometric, x0, x1), outcomes))
    assert len(seen) >= 4

    colours = ELPIPS(alex, samples=1, seed=4, **{**OFF, "permute_channels": True})
    orders = list(itertools.permutations(range(3)))
    outcomes = [_d(alex, x0[..., list(p)], x1[..., list(p)]) for p in orders]
    seen = set()
    for _ in range(4):
        seen.update(_assert_each_in(_d(colours, x0, x1), outcomes))
    assert len(seen) >= 3


def test_colour_scaling_stays_in_range_and_scales_both_alike(alex, pairs):
    """A constant factor (low = high) in [0, 1] units: the metric on ((x + 1) c - 1) for both images."""
    x0, x1 = pairs
    metric = ELPIPS(alex, samples=2, seed=5, **{**OFF, "colour_scale": (0.6, 0.6)})
    np.testing.assert_allclose(_d(metric, x0, x1), _d(alex, (x0 + 1) * 0.6 - 1, (x1 + 1) * 0.6 - 1), rtol=1e-5)


def test_downscale_factors_keep_every_sample_above_the_trunk_minimum(alex, pairs):
    metric = ELPIPS(alex, samples=1, seed=6, **{**OFF, "max_downscale": 4})
    assert metric.downscale_factors(64, 64) == [1, 2]  # 64 // 4 = 16 < 31, alex's minimum
    assert metric.downscale_factors(128, 130) == [1, 2, 4]
    assert metric.downscale_factors(40, 64) == [1]
    squeeze = ELPIPS(LPIPS(net="squeeze"), max_downscale=8)  # its trunk needs 17 px
    assert squeeze.downscale_factors(68, 68) == [1, 2, 4] and squeeze.downscale_factors(67, 90) == [1, 2]
    x0, x1 = pairs

    def box(x, s):
        n, h, w, c = x.shape
        return x[:, :h // s * s, :w // s * s].reshape(n, h // s, s, w // s, s, c).mean(axis=(2, 4))

    outcomes = [_d(alex, box(x0, s), box(x1, s)) for s in (1, 2)]
    levels = []
    for _ in range(4):
        levels += _assert_each_in(_d(metric, x0, x1), outcomes)
    assert set(levels) == {0, 1}


def test_draws_are_seeded_and_fresh_on_each_call(alex, pairs):
    x0, x1 = pairs
    a, b, c = (ELPIPS(alex, samples=2, seed=s) for s in (7, 7, 8))
    first = _d(a, x0, x1)
    np.testing.assert_array_equal(first, _d(b, x0, x1))
    assert not np.allclose(first, _d(c, x0, x1))
    assert not np.allclose(first, _d(a, x0, x1)), "a second call drew the same transformations"


def test_more_samples_average_out_the_spread(alex, pairs):
    x0, x1 = pairs
    one, sixteen = ELPIPS(alex, samples=1, seed=0), ELPIPS(alex, samples=16, seed=0)  # each call: new draws
    single = np.stack([_d(one, x0, x1) for _ in range(6)])
    many = np.stack([_d(sixteen, x0, x1) for _ in range(3)])
    assert many.std(axis=0).mean() < single.std(axis=0).mean()


def test_a_loss_and_its_gradient_through_the_transformations(alex, pairs):
    x0, x1 = pairs
    loss = PerceptualLoss(ELPIPS(alex, samples=2, seed=9))
    value, gradient = value_and_grad(lambda x: loss(x0, x), x1, jit=True)
    assert value > 0 and np.isfinite(gradient).all() and np.abs(gradient).max() > 0
    streaming = LPIPSMetric(ELPIPS(alex, samples=2, seed=9))
    streaming.update_state(x0, x1)
    assert float(streaming.result()) > 0
    dists = ELPIPS(DISTS(input_range="[-1,1]"), samples=2, seed=0)  # any metric of the package
    assert dists.net == "e-dists-vgg16" and np.all(dists.distance(x0, x1) > 0)


def test_keras_file_round_trip_keeps_the_metric_and_restarts_the_draws_from_the_seed(alex, pairs, tmp_path):
    x0, x1 = pairs
    metric = ELPIPS(alex, samples=2, seed=10, colour_scale=(0.7, 0.9))
    first = _d(metric, x0, x1)
    path = str(tmp_path / "elpips.keras")
    metric.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ELPIPS) and loaded.get_config() == metric.get_config()
    np.testing.assert_allclose(_d(loaded, x0, x1), first, rtol=1e-5)  # Keras saves no generator state


def test_distance_at_several_sizes_in_a_row(alex, pairs):
    """TensorFlow's predict function loosens a size that changed between calls to None; distance() must not."""
    x0, x1 = pairs
    metric = ELPIPS(alex, samples=2, seed=12)
    for size in (64, 48, 64, 40):
        assert metric.distance(x0[:, :size, :size], x1[:, :size, :size]).shape == (4,)


@pytest.mark.parametrize("kwargs, message", [
    ({"samples": 0}, r"`samples` must be an integer >= 1. Received: samples=0"),
    ({"max_downscale": 3}, r"`max_downscale` must be a power of 2. Received: max_downscale=3"),
    ({"colour_scale": (0.5, 1.5)}, r"`colour_scale` must be \(low, high\) with 0 < low <= high <= 1"),
    ({"max_offset": -1}, r"`max_offset` must be an integer >= 0"),
])
def test_bad_arguments_are_named(alex, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ELPIPS(alex, **kwargs)


def test_only_package_metrics_with_one_distance_per_pair(alex):
    with pytest.raises(ValueError, match="must be a metric of keras_percept"):
        ELPIPS(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(ValueError, match="one distance per pair"):
        ELPIPS(alex.with_options(spatial=True))
