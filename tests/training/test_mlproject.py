"""`mlflow run . -P paradigm=...` end to end (the project's main job), and the MLproject's own files."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL = "data.n_train=140 data.n_val=84 data.n_jnd=40 data.seed=7 data.batch_size=20"


def _requirement_names(requirements) -> set[str]:
    return {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_python_env_lists_every_runtime_dependency():
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    with open(os.path.join(REPO, "python_env.yaml")) as f:
        env = yaml.safe_load(f)
    listed = _requirement_names(env["dependencies"])
    assert _requirement_names(project["dependencies"]) <= listed
    assert _requirement_names(project["optional-dependencies"]["tune"]) <= listed
    assert "torch==2.13.0" in env["dependencies"], "the CPU wheel of torch must be pinned"


def test_mlproject_entry_points_call_the_cli():
    with open(os.path.join(REPO, "MLproject")) as f:
        project = yaml.safe_load(f)
    assert set(project["entry_points"]) >= {"main", "evaluate"}
    main = project["entry_points"]["main"]
    assert main["parameters"]["paradigm"]["default"] == "lin"
    for name in main["parameters"]:
        assert "{" + name + "}" in main["command"], f"parameter {name} is not passed to the command"


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "two"], "--epochs must be int or 'none'. Received: 'two'"),
    (["train", "--lr", "-1"], "--lr must be > 0. Received: '-1'"),
    (["train", "--paradigm", "finetune"], "invalid choice: 'finetune'"),
])
def test_train_command_rejects_bad_parameters(argv, message, capsys):
    from keras_percept.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_command_rejects_a_bad_seed_and_config(tmp_path, capsys):
    from keras_percept.cli import main

    assert main(["train", "--seed", "x1", "--no-track"]) == 2
    assert "--seed must be an integer or 'none'. Received: 'x1'" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--no-track"]) == 2
    assert "--config must be a YAML file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def project_env(tmp_path_factory):
    """Shared cache (the embedded set is built once) and one SQLite tracking store."""
    base = tmp_path_factory.mktemp("mlproject")
    env = dict(os.environ, KERAS_PERCEPT_HOME=str(base / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{base / 'mlflow.db'}",
               TF_CPP_MIN_LOG_LEVEL="2")
    return base, env


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="runs `mlflow run` once per suite (the TensorFlow pass); the training it calls is "
                           "tested on every backend in test_training.py")
# lin (the README's command). `scratch` and `tune` take the same entry point with another `paradigm` value;
# their training is tests/training/test_training.py's, so they are left out for CI time.
@pytest.mark.parametrize("paradigm", ["lin"])
def test_mlflow_run_trains_logs_and_saves_a_loadable_metric(paradigm, project_env):
    import mlflow

    base, env = project_env
    out = base / f"runs_{paradigm}"
    overrides = f"{SMALL} output_dir={out} optim.epochs=1"
    if paradigm != "lin":
        overrides += " steps_per_epoch=2"
    cmd = ["mlflow", "run", REPO, "-P", f"paradigm={paradigm}", "--env-manager", "local", "-P", "epochs=1",
           "-P", f"overrides={overrides}", "--experiment-name", "mlproject-test"]
    done = subprocess.run(cmd, env=env, cwd=str(base), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "selection 2AFC" in done.stdout and "test 2AFC (%)" in done.stdout

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("mlproject-test")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"params.paradigm = '{paradigm}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["config.paradigm"] == paradigm
    assert run.data.params["config.optim.epochs"] == "1"
    assert run.data.params["config.model.trunk_weights"] == ("None" if paradigm == "scratch" else "imagenet")
    assert {"loss", "selection_twoafc", "learning_rate", "selection_2afc_all", "test_2afc_mean",
            "test_2afc_ssim_mean"} <= set(run.data.metrics)
    if paradigm != "lin":
        assert "trunk_drift" in run.data.metrics and run.data.metrics["trunk_drift"] > 0
    resolved = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config/resolved.yaml", str(base))))
    assert resolved["paradigm"] == paradigm and resolved["data"]["n_train"] == 140

    path = client.download_artifacts(run.info.run_id, "model_file/metric.keras", str(base / f"dl_{paradigm}"))
    check = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, path], env=env, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    d = np.array(check.stdout.split()[-2:], dtype=float)
    assert d[0] == 0.0 and d[1] > 0.0


# A fresh process: the logged file loads with nothing but `import keras_percept` and measures distances.
LOAD_AND_MEASURE = """
import sys, numpy as np, keras, keras_percept
metric = keras.saving.load_model(sys.argv[1])
x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
print(float(metric.distance(x, x)[0]), float(metric.distance(x, np.clip(x + 0.3, -1, 1))[0]))
"""
