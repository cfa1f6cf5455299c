"""The search space as data: the shipped YAML, suggestions, conditional parameters, and each invalid entry named."""

from __future__ import annotations

import os

import optuna
import pytest

from tuning.space import SearchSpace

pytestmark = pytest.mark.one_pass  # search-space parsing

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_shipped_lin_space_searches_optimizer_lr_batch_and_weight_decay():
    space = SearchSpace.from_yaml(os.path.join(REPO, "configs", "search", "lin.yaml"))
    params = {p.name: p for p in space.params}
    assert set(params) == {"optim.optimizer", "optim.learning_rate", "data.batch_size", "optim.weight_decay"}
    assert set(params["optim.optimizer"].choices) == {"adam", "adamw", "sgd", "rmsprop"}
    assert params["optim.learning_rate"].log and params["optim.weight_decay"].log
    assert params["data.batch_size"].type == "categorical"
    assert space.direction == "maximize" and space.monitor == "val_twoafc"
    assert space.sampler["name"] == "tpe" and space.pruner["name"] == "median"


def test_suggestions_become_valid_config_overrides():
    from keras_percept.training import load_config

    space = SearchSpace.from_yaml(os.path.join(REPO, "configs", "search", "lin.yaml"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        values = space.suggest(trial)
        config = load_config(paradigm="lin", overrides=space.fixed_overrides() + space.overrides(values))
        assert config.optim.optimizer == values["optim.optimizer"]
        assert config.optim.learning_rate == values["optim.learning_rate"]
        assert 1e-4 <= config.optim.learning_rate <= 0.3
        assert config.data.batch_size == values["data.batch_size"]
        study.tell(trial, 0.5)


def test_when_suggests_a_parameter_only_under_its_condition():
    space = SearchSpace.from_dict({"params": {
        "optim.optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "optim.momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optim.optimizer": ["sgd"]}},
    }})
    for optimizer in ("adam", "sgd"):
        trial = optuna.trial.FixedTrial({"optim.optimizer": optimizer, "optim.momentum": 0.9})
        assert ("optim.momentum" in space.suggest(trial)) == (optimizer == "sgd")


@pytest.mark.parametrize("data, message", [
    ({"params": {}}, r"`params` must be a non-empty mapping"),
    ({"params": {"optim.learning_rate": {"type": "beta"}}}, r"`params.optim.learning_rate.type` must be one of"),
    ({"params": {"optim.learning_rate": {"type": "float", "low": 1.0, "high": 0.1}}}, r"needs numbers low < high"),
    ({"params": {"optim.learning_rate": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
     r"`params.optim.learning_rate.low` must be > 0 with log: true. Received: 0.0"),
    ({"params": {"data.batch_size": {"type": "categorical", "choices": []}}}, r"`params.data.batch_size.choices`"),
    ({"params": {"x": {"type": "int", "low": 1, "high": 3, "step": 2}}}, r"Unknown keys \['step'\] in `params.x`"),
    ({"params": {"x": {"type": "int", "low": 1, "high": 3, "when": {"y": [1]}}}}, r"refers to 'y'"),
    ({"params": {"x": {"type": "int", "low": 1, "high": 3}}, "study": {"sampler": {"name": "grid"}}},
     r"`study.sampler.name` must be one of \['tpe', 'random', 'cmaes'\]. Received: 'grid'"),
    ({"params": {"x": {"type": "int", "low": 1, "high": 3}}, "study": {"pruner": {"name": "patient"}}},
     r"`study.pruner.name` must be one of"),
    ({"params": {"x": {"type": "int", "low": 1, "high": 3}}, "study": {"direction": "up"}},
     r"`study.direction` must be 'maximize' or 'minimize'. Received: 'up'"),
    ({"params": {"x": {"type": "int", "low": 1, "high": 3}}, "ranges": {}}, r"Unknown search-space keys \['ranges'\]"),
])
def test_invalid_search_spaces_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_dict(data)


@pytest.mark.parametrize("argv, message", [
    (["--trials", "many"], "--trials must be int or 'none'. Received: 'many'"),
    (["--n-jobs", "0"], "--n-jobs must be > 0. Received: '0'"),
    (["--sampler", "grid"], "invalid choice: 'grid'"),
])
def test_search_command_rejects_bad_options(argv, message, capsys):
    from tuning.search import main

    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_sqlite_storage_is_refused_for_parallel_workers(tmp_path, capsys):
    from tuning.search import main

    code = main(["--trials", "2", "--n-jobs", "2", "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    assert code == 2
    assert "SQLite storage is for one process at a time" in capsys.readouterr().err
