"""Selection never reads the test split: corrupt the test labels and nothing that was chosen changes.

The test split (the folder's `val`) of a copy of the tiny set has every label
flipped (`judge -> 1 - judge`, which turns every 2AFC score `s` into `1 - s`).
Early stopping, the choice among 2 restarts and a 2-trial Optuna study run on
the clean and on the corrupted copy: the chosen restart, its weights, its
selection scores, the per-epoch selection history and the chosen trial must
be identical, while the test scores do change (the corruption is read). The
negative control wires the test split in as the selection split — the
protocol this replaced — and the same comparison must then fail.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil

import keras
import numpy as np
import optuna
import pytest
import yaml

from keras_percept.training import load_config

pytestmark = pytest.mark.one_pass  # the protocol, not the backend


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    from keras_percept.data import embedded

    base = tmp_path_factory.mktemp("honest")
    clean = embedded.build(str(base / "clean"), seed=5, n_train=400, n_val=84, n_jnd=20, progress=False)
    corrupted = str(base / "corrupted")
    shutil.copytree(clean, corrupted)
    for path in glob.glob(os.path.join(corrupted, "2afc", "val", "*", "judge", "*.npy")):
        np.save(path, 1.0 - np.load(path))
    return {"clean": clean, "corrupted": corrupted}


@pytest.fixture
def test_as_selection(monkeypatch):
    """The negative control: the selection split replaced by the test split (the fit part unchanged)."""
    from keras_percept.data import index_2afc
    from keras_percept.training import trainer

    honest = trainer.selection_split

    def leaky(config, root, *, verify="full"):
        fit, _ = honest(config, root, verify=verify)
        return fit, index_2afc(root, "val", config.data.val_categories, verify=verify)

    def wire():
        monkeypatch.setattr(trainer, "selection_split", leaky)

    return wire


def _config(root, out):
    return load_config(paradigm="lin", overrides=[
        f"data.dataset={root}", "data.batch_size=20", "optim.epochs=5", "optim.learning_rate=0.1", "data.selection_fraction=0.25",
        "optim.schedule=constant", "model.dropout=0", "early_stopping_patience=1", "restarts=2",
        "strategy=none", f"output_dir={out}"])


def _restarts(roots, tmp_path):
    from keras_percept.training.run import run_training

    out = {}
    for name, root in roots.items():
        summary = run_training(_config(root, tmp_path / name), track=False, progress=False, verbose=0)
        metric = keras.saving.load_model(summary.best.metric_path)
        out[name] = {"seed": summary.best.config.seed, "selection_scores": summary.scores,
                     "selection": summary.best.selection, "test": summary.test_scores,
                     "history": summary.best.history["val_twoafc"],
                     "weights": keras.ops.convert_to_numpy(metric.linear_weights())}
        keras.backend.clear_session()
    return out


def _study(roots, tmp_path, monkeypatch):
    """The chosen trial and every trial's value of a 2-trial study per root (trials enqueued, so equal params)."""
    from tuning.search import main

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "paradigm": "lin",
        "params": {"optim.learning_rate": {"type": "float", "low": 1e-4, "high": 0.3, "log": True}},
        "fixed": {"optim.epochs": 3, "strategy": "none", "model.dropout": 0, "optim.schedule": "constant",
                  "data.batch_size": 20, "data.selection_fraction": 0.25},
        "study": {"pruner": {"name": "none"}, "sampler": {"name": "random"}}}))
    out = {}
    for name, root in roots.items():
        where = tmp_path / f"study_{name}"
        where.mkdir()
        monkeypatch.chdir(where)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{where / 'mlflow.db'}")
        storage = f"sqlite:///{where / 'optuna.db'}"
        study = optuna.create_study(study_name="honest", storage=storage, direction="maximize")
        for lr in (3e-4, 0.01):
            study.enqueue_trial({"optim.learning_rate": lr})
        # --worker: the trials only (the retrained best trial's report reads the test split, and may).
        assert main(["--trials", "2", "--study-name", "honest", "--storage", storage, "--space", str(space),
                     "--set", f"data.dataset={root}", "--output-dir", str(where / "runs"), "--no-progress",
                     "--experiment", "honest", "--worker"]) == 0
        study = optuna.load_study(study_name="honest", storage=storage)
        out[name] = {"best": study.best_trial.number, "values": [t.value for t in study.trials]}
    return out


def _assert_unchanged(restarts, studies):
    clean, corrupted = restarts["clean"], restarts["corrupted"]
    assert corrupted["seed"] == clean["seed"]
    assert corrupted["selection_scores"] == clean["selection_scores"]
    assert corrupted["selection"] == clean["selection"]
    assert corrupted["history"] == clean["history"]
    np.testing.assert_array_equal(corrupted["weights"], clean["weights"])
    assert studies["corrupted"] == studies["clean"]


@pytest.mark.slow
def test_corrupted_test_labels_change_no_choice(roots, tmp_path, monkeypatch):
    restarts = _restarts(roots, tmp_path)
    studies = _study(roots, tmp_path, monkeypatch)
    _assert_unchanged(restarts, studies)
    # The corruption is real: every test score s became 1 - s.
    np.testing.assert_allclose(restarts["corrupted"]["test"], 1 - np.asarray(restarts["clean"]["test"]), atol=1e-6)
    # Every choice had something to choose from: the restarts differ on the selection split, the selection score
    # moved between epochs (early stopping kept the best: the chosen weights score its maximum), the trials differ.
    clean = restarts["clean"]
    assert len(set(clean["selection_scores"])) == 2
    assert len(set(clean["history"])) > 1
    assert clean["selection"]["all"] == pytest.approx(max(clean["history"]), abs=1e-6)
    assert studies["clean"]["values"][0] != studies["clean"]["values"][1]


@pytest.mark.slow
def test_negative_control_test_split_as_selection_is_caught(roots, tmp_path, monkeypatch, test_as_selection):
    test_as_selection()
    restarts = _restarts(roots, tmp_path)
    studies = _study(roots, tmp_path, monkeypatch)
    with pytest.raises(AssertionError):
        _assert_unchanged(restarts, studies)
    assert studies["corrupted"]["best"] != studies["clean"]["best"], "the corrupted labels pick the other trial"
    assert restarts["corrupted"]["selection_scores"] != restarts["clean"]["selection_scores"]


def test_selection_fraction_is_validated():
    for bad in (0, 1.0, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match=r"`data.selection_fraction` must be a number in \(0, 1\)"):
            load_config(paradigm="lin", overrides=[f"data.selection_fraction={bad!r}" if isinstance(bad, str)
                                                   else f"data.selection_fraction={bad}"])


def test_restarts_and_trials_share_one_selection_split(roots):
    """The carve depends on the data and `data.seed`, not on the training seed of a restart or a trial."""
    from keras_percept.training.trainer import selection_split

    config = load_config(paradigm="lin", overrides=[f"data.dataset={roots['clean']}"])
    first = selection_split(config, roots["clean"], verify="header")[1].ids
    assert selection_split(dataclasses.replace(config, seed=7), roots["clean"], verify="header")[1].ids == first
    other = dataclasses.replace(config, data=dataclasses.replace(config.data, seed=2))  # a different photo
    assert selection_split(other, roots["clean"], verify="header")[1].ids != first
