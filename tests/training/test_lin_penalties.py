"""`lin_penalty`: elastic net, group lasso, simplex and entropy on the linear weights, per tap, from the config.

Each is checked three ways: its value against NumPy (every backend), a `lin` training run in which
the penalty it was given ends lower than in the same run without it, and the cached `lin` model
(one kernel over every tap) charging exactly the per-tap sum the full model charges.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_percept.regularizers import LIN_PENALTIES, PerTap, lin_penalty
from keras_percept.training import load_config

PENALTIES = [p for p in LIN_PENALTIES if p != "none"]


def numpy_penalty(name: str, strength: float, w: np.ndarray) -> float:
    w = np.asarray(w, np.float64).reshape(-1)
    if name == "elastic_net":
        return strength * (np.abs(w).sum() + np.square(w).sum())
    if name == "group_lasso":
        return strength * np.sqrt(np.square(w).sum() + 1e-12)
    if name == "simplex":
        return strength * (w.sum() - 1.0) ** 2
    p = np.abs(w) / (np.abs(w).sum() + 1e-8)
    return -strength * (p * np.log(p + 1e-8)).sum()


@pytest.mark.parametrize("name", PENALTIES)
def test_penalty_values_match_numpy(name):
    w = np.array([0.3, -0.1, 0.0, 0.6], np.float32)
    value = keras.ops.convert_to_numpy(lin_penalty(name, 0.5)(keras.ops.convert_to_tensor(w)))
    np.testing.assert_allclose(value, numpy_penalty(name, 0.5, w), rtol=1e-5)
    assert lin_penalty("none", 0.5) is None


def test_per_tap_sums_over_the_taps_and_a_whole_kernel_would_not():
    w = np.array([[0.2], [0.5], [0.1], [0.9], [0.4]], np.float32)
    per_tap = PerTap(lin_penalty("group_lasso", 1.0), [2, 3])
    expected = numpy_penalty("group_lasso", 1.0, w[:2]) + numpy_penalty("group_lasso", 1.0, w[2:])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_tap(w)), expected, rtol=1e-5)
    assert abs(expected - numpy_penalty("group_lasso", 1.0, w)) > 0.1  # the split matters


def test_bad_penalty_settings_are_named():
    with pytest.raises(ValueError, match=r"`lin_penalty` must be one of .*Received: 'ridge'"):
        load_config(paradigm="lin", overrides=["lin_penalty=ridge"])
    with pytest.raises(ValueError, match=r"`lin_penalty_strength` must be a number > 0. Received: 0"):
        load_config(paradigm="lin", overrides=["lin_penalty=simplex", "lin_penalty_strength=0"])
    with pytest.raises(ValueError, match="`lin_solver: lbfgs` solves the convex L1 problem only"):
        load_config(paradigm="lin", overrides=["lin_penalty=entropy", "lin_solver=lbfgs"])


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from keras_percept.data import embedded

    return embedded.build(str(tmp_path_factory.mktemp("penalties") / "set"), seed=5, n_train=120, n_val=30,
                          n_jnd=20, patch_size=32, progress=False)


def _config(root, out, penalty="none", strength=0.01):
    return load_config(paradigm="lin", overrides=[
        f"data.dataset={root}", "data.patch_size=32", "data.batch_size=20", "optim.epochs=4", "optim.schedule=constant",
        "optim.learning_rate=0.01", "model.dropout=0", "strategy=none", f"output_dir={out}",
        f"lin_penalty={penalty}", f"lin_penalty_strength={strength}"])


def _taps(metric) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(lin.kernel).reshape(-1) for lin in metric.lins]


@pytest.fixture(scope="module")
def unpenalised(root, tmp_path_factory):
    from keras_percept.training import train

    result = train(_config(root, tmp_path_factory.mktemp("none")), progress=False, verbose=0, test=False)
    return _taps(result.model.metric)


@pytest.mark.slow
@pytest.mark.one_pass  # training wiring; the penalty values run on every backend above
@pytest.mark.parametrize("name, strength", [("elastic_net", 0.05), ("group_lasso", 0.5), ("simplex", 1.0),
                                            ("entropy", 0.5)])
def test_training_with_a_penalty_lowers_it_per_tap(name, strength, root, unpenalised, tmp_path):
    from keras_percept.training import train
    from keras_percept.training.feature_cache import CachedLinModel

    config = _config(root, tmp_path, name, strength)
    result = train(config, progress=False, verbose=0, test=False)
    taps = _taps(result.model.metric)

    def total(weights):
        return sum(numpy_penalty(name, 1.0, w) for w in weights)

    assert total(taps) < total(unpenalised), f"{name}: the penalty it was trained with did not go down"
    # The cached model (one kernel over every tap) charges the per-tap sum, as the full model does.
    cached = CachedLinModel(result.model.metric, result.model.comparison, name="probe")
    charged = sum(float(keras.ops.convert_to_numpy(loss)) for loss in cached.losses)
    np.testing.assert_allclose(charged, strength * total(taps), rtol=1e-4)
