"""Training: configs, the fast `lin` feature cache, projection, L-BFGS, MLflow tracking, resume after a kill.

Tests marked `one_pass` check how `train()` wires Keras, MLflow and the files together; `.ci/run` runs
them in the TensorFlow pass only. On every backend, `train()` runs end to end in
`test_cached_evaluation_equals_the_metric_on_the_images`, and the trunk/head optimizer groups of
`tune`/`scratch` take real steps in `test_optimizers.py`.
"""

from __future__ import annotations

import dataclasses
import os
import re

import keras
import numpy as np
import pytest
import yaml

from keras_percept.adversarial import PGD
from keras_percept.training import load_config
from keras_percept.training.config import TrainConfig, from_dict

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = dict(seed=5, n_train=140, n_val=84, n_jnd=60, progress=False)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> str:
    from keras_percept.data import embedded

    return embedded.build(str(tmp_path_factory.mktemp("tiny") / "set"), **TINY)


def tiny_config(root: str, tmp_path, paradigm: str = "lin", overrides=()) -> TrainConfig:
    base = [f"data.dataset={root}", "data.batch_size=20", "optim.epochs=2", f"output_dir={tmp_path / 'runs'}",
            "strategy=none"]
    if paradigm == "scratch":
        base.append("model.net=squeeze")
    return load_config(paradigm=paradigm, overrides=base + list(overrides))


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("paradigm", ["lin", "tune", "scratch"])
def test_shipped_configs_load(paradigm):
    config = load_config(os.path.join(REPO, "configs", f"{paradigm}.yaml"))
    assert config.paradigm == paradigm
    assert config.model.trunk_weights == (None if paradigm == "scratch" else "imagenet")


def test_lin_yaml_documents_every_key_with_its_default():
    with open(os.path.join(REPO, "configs", "lin.yaml")) as f:
        documented = yaml.safe_load(f)
    assert documented == dataclasses.asdict(TrainConfig())


@pytest.mark.parametrize("overrides, message", [
    (["paradigm=fancy"], r"`paradigm` must be one of \['lin', 'tune', 'scratch'\]. Received: 'fancy'"),
    (["model.net=resnet"], r"`model.net` must be one of .*Received: 'resnet'"),
    (["optim.learning_rate=-1"], r"`optim.learning_rate` must be a number > 0. Received: -1"),
    (["optim.learning_rate=fast"], r"`optim.learning_rate` must be a number > 0. Received: 'fast'"),
    (["data.batch_size=0"], r"`data.batch_size` must be a positive integer. Received: 0"),
    (["optim.epochs=2.5"], r"`optim.epochs` must be a positive integer. Received: 2.5"),
    (["model.dropout=1.0"], r"`model.dropout` must be in \[0.0, 1.0\). Received: 1.0"),
    (["optim.decay_epochs=20"], r"`optim.decay_epochs` must be in \[0, optim.epochs=10\]. Received: 20"),
    (["optim.typo=3"], r"Unknown config key 'optim.typo'"),
    (["model.trunk_weights=null"], r"Paradigm 'lin' needs a pretrained trunk"),
    (["lin_solver=lbfgs"], r"`lin_solver: lbfgs` .* model.comparison='dist2logit'"),
    (["feature_cache=true", "data.flip_left_right=true"], r"`feature_cache: true` needs paradigm 'lin' and no image"),
    (["feature_cache=sometimes"], r"`feature_cache` must be one of \['auto', True, False\]. Received: 'sometimes'"),
    (["optim.trunk_lr_factor=0"], r"`optim.trunk_lr_factor` must be a number > 0 \(use paradigm 'lin' for a frozen"),
    (["optim.gradient_accumulation_steps=1"], r"`optim.gradient_accumulation_steps` must be an integer >= 2 or null"),
    (["nonneg=soft"], r"`nonneg` must be one of \['projection', 'penalty', 'barrier'\]. Received: 'soft'"),
    (["adversarial.norm=l1"], r"In `adversarial`: Argument `norm` must be one of \('linf', 'l2'\). Received: norm='l1'"),
    (["adversarial.norm=linf", "adversarial.epsilon=0"], r"In `adversarial`: Argument `epsilon` must be > 0"),
    (["adversarial.norm=linf", "feature_cache=true"], r"`feature_cache: true` cannot train adversarially"),
    (["model.net=alex-st"], r"`model.trunk_weights` must be one of \['published', None\] for model.net='alex-st'"),
])
def test_invalid_config_values_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(paradigm="lin", overrides=overrides)


def test_adversarial_training_turns_the_feature_cache_off_and_reaches_the_model():
    from keras_percept.training.model_builder import build_twoafc_model

    config = load_config(overrides=["adversarial.norm=l2", "adversarial.epsilon=2.0", "adversarial.target=p1",
                                    "model.net=alex", "model.trunk_weights=null", "paradigm=scratch"])
    assert not config.uses_feature_cache() and load_config(paradigm="lin").uses_feature_cache()
    model = build_twoafc_model(config)
    assert (model.attack.norm, model.attack.epsilon, model.attack.target, model.attack.steps) == ("l2", 2.0, "p1", 3)
    assert build_twoafc_model(load_config(overrides=["model.net=alex", "model.trunk_weights=null",
                                                     "paradigm=scratch"])).attack is None


def test_exponent_floats_parse_as_numbers():
    assert load_config(overrides=["optim.learning_rate=3e-4"]).optim.learning_rate == 3e-4


def test_scratch_rejects_pretrained_trunk():
    with pytest.raises(ValueError, match="Paradigm 'scratch' trains from random init"):
        from_dict({"paradigm": "scratch", "model": {"trunk_weights": "imagenet"}})


# --- fast lin: feature cache, projection, L-BFGS ---------------------------------------------------

def _metric_and_head(seed: int = 0):
    from keras_percept.models.comparison import DifferenceComparison
    from keras_percept.models.lpips import LPIPS
    from keras_percept.training.model_builder import randomize_linear_weights

    keras.utils.set_random_seed(seed)
    metric = LPIPS(net="squeeze", dropout=0.0)
    randomize_linear_weights(metric, seed)
    return metric, DifferenceComparison(scale=3.0, trainable_scale=False)


@pytest.mark.one_pass  # train() wiring: see the module docstring
def test_cached_means_reproduce_the_full_model_exactly(tiny_root, tmp_path, monkeypatch):
    from keras_percept.data import load_2afc
    from keras_percept.models.twoafc import TwoAFCModel
    from keras_percept.training.feature_cache import CachedLinModel, channel_means_2afc

    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path / "home"))
    metric, head = _metric_and_head()
    means = channel_means_2afc(metric, tiny_root, "val", batch_size=32)
    full = TwoAFCModel(metric, head)
    expected = np.concatenate([
        keras.ops.convert_to_numpy(full(batch, training=False))
        for batch, _ in load_2afc(tiny_root, "val", batch_size=32).as_numpy_iterator()
    ])
    cached = CachedLinModel(metric, head)
    got = keras.ops.convert_to_numpy(cached((means["m0"], means["m1"]), training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert len(os.listdir(tmp_path / "home" / "cache" / "features")) == 1
    again = channel_means_2afc(metric, tiny_root, "val", batch_size=32)  # from the cache file
    np.testing.assert_array_equal(again["m0"], means["m0"])


@pytest.mark.one_pass  # train() wiring: see the module docstring
def test_cache_key_changes_with_trunk_weights(tiny_root, tmp_path, monkeypatch):
    from keras_percept.training.feature_cache import channel_means_2afc

    monkeypatch.setenv("KERAS_PERCEPT_HOME", str(tmp_path / "home"))
    metric, _ = _metric_and_head(seed=0)
    first = channel_means_2afc(metric, tiny_root, "val")
    kernel = metric.backbone.weights[0]
    value = keras.ops.convert_to_numpy(kernel)
    kernel.assign(value + np.random.default_rng(0).normal(0, value.std(), value.shape).astype("float32"))
    second = channel_means_2afc(metric, tiny_root, "val")
    assert len(os.listdir(tmp_path / "home" / "cache" / "features")) == 2
    assert not np.allclose(first["m0"], second["m0"])


def test_nonneg_constraint_is_a_projected_gradient_step():
    """One SGD step with the NonNeg projection equals max(0, w - lr * dL/dw), with dL/dw by hand."""
    from keras_percept.losses import get_loss
    from keras_percept.training.feature_cache import CachedLinModel

    metric, head = _metric_and_head(seed=1)
    cached = CachedLinModel(metric, head)
    c = sum(metric.tap_channels)
    rng = np.random.default_rng(0)
    w = rng.uniform(0.0, 2e-3, c).astype(np.float32)
    cached.linear.kernel.assign(w.reshape(c, 1))
    m0 = rng.uniform(0, 1, (16, c)).astype(np.float32)
    m1 = rng.uniform(0, 1, (16, c)).astype(np.float32)
    h = rng.uniform(0, 1, 16).astype(np.float32)
    lr = 0.05
    cached.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss=get_loss("bce"))
    cached.train_on_batch((m0, m1), h)

    g = 3.0 * ((m0 - m1) @ w)
    grad = 3.0 * (m0 - m1).T @ (1.0 / (1.0 + np.exp(-g)) - h) / len(h)
    expected = np.maximum(0.0, w - lr * grad)
    got = keras.ops.convert_to_numpy(cached.linear.kernel).reshape(-1)
    assert np.sum(w - lr * grad < 0) > 10, "the step must push some weights below 0 for this test to mean anything"
    np.testing.assert_allclose(got, expected, atol=1e-7)
    assert got.min() == 0.0


def test_lbfgs_solution_satisfies_kkt_conditions():
    from keras_percept.training.feature_cache import solve_lbfgs

    rng = np.random.default_rng(3)
    n, c = 400, 12
    true_w = np.array([0.0] * 4 + list(rng.uniform(0.5, 2, c - 4)))
    m0, m1 = rng.uniform(0, 1, (n, c)), rng.uniform(0, 1, (n, c))
    p = 1 / (1 + np.exp(-(m0 - m1) @ true_w))
    means = {"m0": m0, "m1": m1, "h": rng.binomial(5, p) / 5.0}
    w, info = solve_lbfgs(means)
    assert info["converged"], info
    x = m0 - m1
    grad = x.T @ (1 / (1 + np.exp(-(x @ w))) - means["h"]) / n
    free = w > 1e-8
    assert free.sum() >= 4 and (~free).sum() >= 1, w
    np.testing.assert_allclose(grad[free], 0.0, atol=1e-5)   # stationary where w > 0
    assert np.all(grad[~free] > -1e-5)                        # pushing into the bound where w = 0
    assert np.all(w >= 0)


# --- end to end, tracked in MLflow -----------------------------------------------------------------

@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="MLflow tracking does not depend on the backend (training on each backend is tested "
                           "above); runs once per suite, in the TensorFlow pass")
def test_lin_run_is_tracked_in_mlflow(tiny_root, tmp_path):
    import mlflow

    from keras_percept.training.run import format_summary, run_training

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = dataclasses.replace(tiny_config(tiny_root, tmp_path, overrides=["restarts=2"]),
                                 tracking_uri=uri, register_model="tiny-lin")
    summary = run_training(config, progress=False, verbose=0)

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["config.paradigm"] == "lin"
    assert parent.data.params["config.model.net"] == "effnet-lite0"
    # The chosen restart is the best on the selection split; the test split is reported, per category too.
    assert summary.best.selection_score == max(summary.scores)
    assert parent.data.metrics["restarts_selection_2afc_all"] == pytest.approx(np.mean(summary.scores))
    assert parent.data.metrics["restarts_test_2afc_mean"] == pytest.approx(np.mean(summary.test_scores))
    assert parent.data.metrics["selection_2afc_all"] == pytest.approx(summary.best.selection_score)
    for category, score in summary.best.evaluation["lpips"].items():
        assert parent.data.metrics[f"test_2afc_{category}"] == pytest.approx(score)
    for baseline in ("l2", "ssim", "psnr"):
        assert 0.0 < parent.data.metrics[f"test_2afc_{baseline}_mean"] <= 1.0
    jnd = summary.best.jnd["lpips"]  # JND mAP per category and their mean, as the reference reports it
    assert len(jnd) > 2 and jnd["mean"] == pytest.approx(np.mean([v for k, v in jnd.items() if k != "mean"]))
    for key in jnd:
        assert parent.data.metrics[f"jnd_map_{key}"] == pytest.approx(jnd[key])
        assert 0.0 < parent.data.metrics[f"jnd_map_ssim_{key}"] <= 1.0
    assert "JND mAP per category (%):" in format_summary(summary)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert sorted(r.data.params["config.seed"] for r in children) == ["0", "1"]
    for child in children:
        history = client.get_metric_history(child.info.run_id, "selection_twoafc")  # Keras's val_twoafc
        assert [m.step for m in history] == [0, 1]
        assert child.data.metrics["selection_2afc_all"] in summary.scores
        assert len(client.get_metric_history(child.info.run_id, "learning_rate")) == 2
        assert len(client.get_metric_history(child.info.run_id, "lin_zero_fraction")) == 2
    artifacts = {a.path for a in client.list_artifacts(summary.run_id)}
    assert {"config", "plots", "model_file", "evaluation"} <= artifacts
    plots = {a.path for a in client.list_artifacts(summary.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/linear_weights.png"}
    version = client.get_model_version_by_alias("tiny-lin", "latest-trained")
    assert version.run_id == summary.run_id

    local = client.download_artifacts(summary.run_id, "model_file/metric.keras", str(tmp_path))
    loaded = keras.saving.load_model(local)
    x0 = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    x1 = np.clip(x0 + 0.2, -1, 1)
    np.testing.assert_allclose(loaded.distance(x0, x1), summary.best.model.metric.distance(x0, x1), atol=1e-6)
    assert np.all(np.concatenate([keras.ops.convert_to_numpy(lin.kernel).ravel() for lin in loaded.lins]) >= 0)


@pytest.mark.one_pass  # train() wiring: see the module docstring
def test_failed_run_ends_failed_with_the_error_logged(tmp_path):
    import mlflow

    from keras_percept.training.run import run_training

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = dataclasses.replace(load_config(paradigm="lin", overrides=[f"data.dataset={tmp_path / 'missing'}"]),
                                 tracking_uri=uri)
    with pytest.raises(FileNotFoundError, match="`data.dataset` must be 'embedded' or a folder holding 2afc/"):
        run_training(config, progress=False, verbose=0)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("keras_percept").experiment_id])
    assert run.info.status == "FAILED"
    error = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    assert "FileNotFoundError" in open(error).read()


@pytest.mark.slow
@pytest.mark.one_pass  # train() wiring: see the module docstring
def test_lbfgs_lin_beats_or_matches_its_starting_point(tiny_root, tmp_path):
    from keras_percept.training import train

    config = tiny_config(tiny_root, tmp_path, overrides=["lin_solver=lbfgs", "model.comparison=difference"])
    result = train(config, progress=False, verbose=0)
    assert result.history["lbfgs_iterations"][0] >= 1
    weights = np.concatenate([keras.ops.convert_to_numpy(lin.kernel).ravel() for lin in result.model.metric.lins])
    assert weights.min() >= 0 and weights.max() > 0
    assert 0.5 < result.evaluation["lpips"]["mean"] <= 1.0


# --- resume after a kill ---------------------------------------------------------------------------
# The SIGKILL tests (a child killed mid-epoch and started again, per backend and paradigm, MLflow
# continuation) are in tests/faults/test_kill_train.py; these check the pieces in one process.

@pytest.mark.one_pass  # tf.data only
def test_each_epochs_order_and_augmentation_is_a_function_of_seed_and_epoch(tiny_root):
    from keras_percept.data import TripletAugmentation, load_2afc
    from keras_percept.training.feature_cache import cached_dataset

    kwargs = dict(patch_size=64, batch_size=20, shuffle=True, seed=3, drop_remainder=True,
                  augment=TripletAugmentation(crop_size=48, flip_left_right=True))
    whole = [(x[0].numpy(), y.numpy()) for x, y in load_2afc(tiny_root, "train", epochs=3, **kwargs)]
    tail = [(x[0].numpy(), y.numpy()) for x, y in load_2afc(tiny_root, "train", epochs=3, first_epoch=2, **kwargs)]
    per_epoch = len(whole) // 3
    assert per_epoch == 7 and len(tail) == per_epoch
    for (a_ref, a_h), (b_ref, b_h) in zip(whole[2 * per_epoch:], tail):  # a new process starting at epoch 2
        np.testing.assert_array_equal(b_h, a_h)
        np.testing.assert_array_equal(b_ref, a_ref)  # same crops and flips too
    labels = [np.concatenate([h for _, h in whole[e * per_epoch:(e + 1) * per_epoch]]) for e in range(3)]
    assert not np.array_equal(labels[0], labels[1]) and np.allclose(np.sort(labels[0]), np.sort(labels[1]))
    means = {"m0": np.arange(40.0)[:, None], "m1": np.zeros((40, 1)), "h": np.arange(40.0)}
    order = lambda ds: np.concatenate([h.numpy() for _, h in ds])  # noqa: E731
    full = order(cached_dataset(means, 8, shuffle=True, seed=1, epochs=4))
    np.testing.assert_array_equal(order(cached_dataset(means, 8, shuffle=True, seed=1, epochs=4, first_epoch=3)),
                                  full[120:])
    assert sorted(full[:40]) == list(range(40)) and not np.array_equal(full[:40], full[40:80])


def test_early_stopping_state_and_history_survive_a_restart(tmp_path):
    from keras_percept.callbacks import EpochSeeds, ResumableBackup, ResumableEarlyStopping

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5, 0.0], "float32")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == stop_at:
                raise KeyboardInterrupt

    def fit(backup_dir):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.3), keras.layers.Dense(1)])
        model.compile(keras.optimizers.Adam(0.05), "mse")
        # The validation targets are negated: val_loss worsens, epoch 0 stays the best, the wait count grows.
        stopping = ResumableEarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
        backup = ResumableBackup(backup_dir, companions=[stopping], fingerprint="f")
        start = backup.resume_epoch(6)
        model.fit(x, y, validation_data=(x, -y), epochs=6, initial_epoch=start, batch_size=8,
                  shuffle=False, verbose=0, callbacks=[EpochSeeds(0), stopping, Interrupt(), backup])
        return model, stopping, backup

    stop_at = -1
    straight, straight_stopping, straight_backup = fit(tmp_path / "a")
    stop_at = 3
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b")
    assert sorted(os.listdir(tmp_path / "b")) == ["epoch_00003"]  # one complete checkpoint, no temporaries
    stop_at = -1
    resumed, resumed_stopping, resumed_backup = fit(tmp_path / "b")
    assert resumed_backup.history.keys() == straight_backup.history.keys()
    for key, values in straight_backup.history.items():
        np.testing.assert_allclose(resumed_backup.history[key], values, rtol=1e-5, err_msg=key)
    assert straight_stopping.best_epoch == 0 and straight_stopping.wait == 5
    for name in ("wait", "best", "best_epoch", "stopped_epoch"):
        assert getattr(resumed_stopping, name) == pytest.approx(getattr(straight_stopping, name)), name
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert not os.path.exists(tmp_path / "b"), "a finished fit deletes its backup"
    other = tmp_path / "other" / "epoch_00001"  # a checkpoint of another config in the same folder
    os.makedirs(other)
    (other / "state.json").write_text('{"fingerprint": "f", "epoch": 1, "stopped": false, "history": {}}')
    with pytest.raises(ValueError, match="is of another run"):
        ResumableBackup(tmp_path / "other", fingerprint="g").resume_epoch()


# --- tune and scratch through the images (TensorFlow pass of .ci/run) -------------------------------------------

@pytest.mark.slow
@pytest.mark.one_pass  # train() wiring: see the module docstring
def test_tune_moves_the_trunk_under_l2sp(tiny_root, tmp_path):
    from keras_percept.regularizers import L2SP
    from keras_percept.training import train

    config = tiny_config(tiny_root, tmp_path, paradigm="tune", overrides=["steps_per_epoch=2", "optim.epochs=1",
                                                                          "optim.learning_rate=1e-3"])
    result = train(config, progress=False, verbose=0)
    trunk = result.model.metric.backbone
    regularized = [v for v in trunk.trainable_weights if isinstance(v.regularizer, L2SP)]
    assert len(regularized) == len(trunk.trainable_weights) > 10
    assert result.history["trunk_drift"][0] > 0
    assert np.isfinite(result.history["loss"][0])
    assert result.config.l2sp == pytest.approx(1e-3)


def test_dists_head_trains_through_the_same_trainer(tiny_root, tmp_path):
    """`model.metric: dists`: alpha/beta move (and stay non-negative), tune moves the trunk, the saved metric is DISTS."""
    from keras_percept.models import DISTS
    from keras_percept.training import train

    config = tiny_config(tiny_root, tmp_path, paradigm="tune", overrides=[
        "model.metric=dists", "steps_per_epoch=2", "optim.epochs=1", "optim.learning_rate=1e-2"])
    assert not config.uses_feature_cache()
    result = train(config, progress=False, verbose=0)
    metric = result.model.metric
    assert isinstance(metric, DISTS) and metric.trunk == "effnet-lite0" and metric.trunk_trainable
    assert result.history["lin_drift"][0] > 0 and result.history["trunk_drift"][0] > 0
    assert all(float(np.min(keras.ops.convert_to_numpy(w))) >= 0.0 for w in metric.head_weights)
    loaded = keras.saving.load_model(result.metric_path)
    assert isinstance(loaded, DISTS) and loaded.trunk == "effnet-lite0"
    from keras_percept.training.plots import plot_linear_weights

    plot_linear_weights(metric, str(tmp_path / "weights.png"))  # the plot MLflow gets: alpha and beta panels
    assert os.path.getsize(tmp_path / "weights.png") > 1000


@pytest.mark.one_pass  # train() wiring; the trunks and the attack are tested on every backend elsewhere
def test_st_lpips_from_scratch_and_adversarial_lin_through_train(tiny_root, tmp_path):
    from keras_percept.training import train

    scratch = train(tiny_config(tiny_root, tmp_path, paradigm="scratch", overrides=[
        "model.net=alex-st", "steps_per_epoch=2", "optim.epochs=1"]), progress=False, verbose=0)
    assert scratch.model.metric.net == "alex-st" and scratch.history["trunk_drift"][0] > 0
    assert keras.saving.load_model(scratch.metric_path).net == "alex-st"
    config = tiny_config(tiny_root, tmp_path, overrides=["adversarial.norm=linf", "adversarial.steps=2",
                                                         "steps_per_epoch=2", "optim.epochs=1", "seed=3"])
    adversarial = train(config, progress=False, verbose=0)
    assert adversarial.model.attack == PGD(0.0627, steps=2) and not config.uses_feature_cache()
    assert np.isfinite(adversarial.history["loss"][0]) and 0.0 <= adversarial.evaluation["lpips"]["mean"] <= 1.0


@pytest.mark.parametrize("overrides, message", [
    (["lin_l1=0.1"], r"`lin_l1` acts on LPIPS's linear weights"),
    (["nonneg=penalty"], r"`nonneg` acts on LPIPS's linear weights"),
    (["model.metric=ssim"], r"`model.metric` must be one of \['lpips', 'dists'\]"),
])
def test_dists_refuses_the_linear_weight_options(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides=["model.metric=dists", *overrides] if "model.metric=ssim" not in overrides else overrides)


@pytest.mark.slow
@pytest.mark.one_pass  # train() wiring: see the module docstring
def test_scratch_with_mixed_precision_and_gradient_accumulation(tiny_root, tmp_path):
    from keras_percept.training import train

    config = tiny_config(tiny_root, tmp_path, paradigm="scratch", overrides=[
        "steps_per_epoch=4", "optim.epochs=1", "precision=mixed_bfloat16", "optim.gradient_accumulation_steps=2"])
    result = train(config, progress=False, verbose=0)
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored after training"
    model = result.model
    assert model.metric.backbone.layers[1].compute_dtype == "bfloat16"
    assert model.optimizer.gradient_accumulation_steps == 2
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2, "4 batches, 2 applied updates"
    assert np.isfinite(result.history["loss"][0]) and result.history["trunk_drift"][0] > 0


@pytest.mark.one_pass  # the cache's algebra (channel means through a linear head); each backend's trunk: parity tests
def test_cached_evaluation_equals_the_metric_on_the_images(tiny_root, tmp_path):
    from keras_percept.data import index_2afc
    from keras_percept.training import train
    from keras_percept.training.evaluation import evaluate_2afc
    from keras_percept.training.trainer import by_category, selection_split

    config = tiny_config(tiny_root, tmp_path)
    result = train(config, progress=False, verbose=0, baselines=False)
    assert set(result.evaluation) == {"lpips"}
    metric = keras.saving.load_model(result.metric_path)
    fn = {"lpips": lambda a, b: metric.predict_on_batch((a, b))}
    checks = [(result.evaluation["lpips"], index_2afc(tiny_root, "val")),
              (result.selection, selection_split(config, tiny_root)[1])]  # the same code on another split
    for cached, index in checks:
        on_images = evaluate_2afc(fn, by_category(index, config))["lpips"]
        assert set(on_images) == set(cached) - {"all"}
        for category in index.category_names:
            # Equal up to a near-tie flipping: at most one triplet of the category.
            n = index.categories.count(category)
            assert cached[category] == pytest.approx(on_images[category], abs=1 / n + 1e-9), category
        assert cached["mean"] == pytest.approx(on_images["mean"], abs=0.05)


@pytest.mark.parametrize("tf_config, chief", [
    (None, True),
    ('{"cluster": {"worker": ["a", "b"]}, "task": {"type": "worker", "index": 0}}', True),
    ('{"cluster": {"worker": ["a", "b"]}, "task": {"type": "worker", "index": 1}}', False),
    ('{"cluster": {"chief": ["c"], "worker": ["a"]}, "task": {"type": "worker", "index": 0}}', False),
    ('{"cluster": {"chief": ["c"], "worker": ["a"]}, "task": {"type": "chief", "index": 0}}', True),
])
def test_only_the_chief_writes_results(tf_config, chief, monkeypatch):
    from keras_percept.training.strategy import is_chief

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert is_chief() is chief


# --- comparing metrics -------------------------------------------------------------------------------

def test_paired_comparison_against_numpy():
    from keras_percept.metrics.comparison import compare_paired

    rng = np.random.default_rng(0)
    a = rng.binomial(1, 0.8, 2000).astype(float)
    b = rng.binomial(1, 0.6, 2000).astype(float)
    result = compare_paired(a, b, seed=1)
    assert result.difference == pytest.approx(a.mean() - b.mean())
    assert result.ci_difference[0] < result.difference < result.ci_difference[1]
    assert result.ci_a[0] < a.mean() < result.ci_a[1]
    assert result.p_value < 0.001                      # a 20-point difference on 2000 triplets
    same = compare_paired(a, a.copy(), seed=1)
    assert same.difference == 0.0 and same.p_value == 1.0 and same.ci_difference == (0.0, 0.0)
    with pytest.raises(ValueError, match="must be non-empty and the same size. Received: 3, 2"):
        compare_paired([1, 0, 1], [1, 0])


@pytest.mark.one_pass  # train() wiring: see the module docstring
def test_evaluate_command_prints_tables_and_a_paired_comparison(tiny_root, tmp_path, capsys):
    from keras_percept.cli import main
    from keras_percept.convert import save_model_atomic

    metric, _ = _metric_and_head()
    path = str(tmp_path / "squeeze.keras")
    save_model_atomic(metric, path)
    assert main(["evaluate", "--model", path, "--dataset", tiny_root, "--against", "ssim"]) == 0
    out = capsys.readouterr().out
    assert "test 2AFC (%) (the val split):" in out and "JND mAP per category (%):" in out
    assert re.search(r"lpips [\d.]+ \[[\d.]+, [\d.]+\] vs ssim [\d.]+ .* paired p = [\d.]+", out), out
    assert main(["evaluate", "--model", path, "--dataset", tiny_root, "--against", "mse"]) == 2
    assert "--against must be l2, ssim, psnr or a .keras file. Received: 'mse'" in capsys.readouterr().err
