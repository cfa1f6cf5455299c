"""Several worker processes on one study: a shared journal file, and PostgreSQL with a worker killed mid-trial.

These start their own processes (and a PostgreSQL server), so they run once per suite, in the TensorFlow pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import keras
import optuna
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SEARCH = os.path.join(REPO, "tuning", "search.py")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="starts its own worker processes; runs once per suite, in the TensorFlow pass"),
]


def _env(tmp_path):
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", TF_CPP_MIN_LOG_LEVEL="2",
                KERAS_BACKEND="tensorflow")


# The tiny set has 140 training triplets: batch sizes above that would make every trial FAIL.
SPACE = """
paradigm: lin
params:
  optim.optimizer: {type: categorical, choices: [adam, sgd]}
  optim.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
fixed: {data.batch_size: 20, strategy: none}
"""


def _args(tiny_root, tmp_path, *extra):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return [sys.executable, SEARCH, "--space", str(space), "--set", f"data.dataset={tiny_root}", "--no-progress",
            "--output-dir", str(tmp_path / "runs"), "--experiment", "workers-test", *extra]


def test_two_workers_share_a_journal_study_without_duplicates(tiny_root, tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    done = subprocess.run(_args(tiny_root, tmp_path, "--trials", "4", "--n-jobs", "2", "--storage", storage,
                                "--study-name", "parallel", "--pruner", "none", "--set", "optim.epochs=2"),
                          env=_env(tmp_path), cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="parallel", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))))
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 4 <= len(finished) <= 5, "a global budget of 4 (one extra only if both workers start the last at once)"
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2, "both processes ran trials"


def test_killed_worker_trial_fails_by_heartbeat_on_postgresql_and_the_study_completes(postgres_url, tiny_root,
                                                                                      tmp_path):
    import mlflow

    common = ["--trials", "3", "--storage", postgres_url, "--study-name", "fault", "--pruner", "none",
              "--heartbeat-interval", "1", "--grace-period", "4", "--set", "optim.epochs=25", "--worker"]
    env = _env(tmp_path)
    # Create MLflow's SQLite schema first: two processes migrating a new file at once collide ("duplicate column").
    mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).search_experiments()
    victim = subprocess.Popen(_args(tiny_root, tmp_path, *common), env=env, cwd=str(tmp_path),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    survivor = subprocess.Popen(_args(tiny_root, tmp_path, *common, "--worker-index", "1"), env=env,
                                cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        killed = None
        # One storage (one connection pool) for all the polling: a new storage per poll opens new
        # connections faster than garbage collection closes them ("too many clients").
        storage = optuna.storages.RDBStorage(postgres_url)
        deadline = time.time() + 300
        while killed is None and time.time() < deadline and victim.poll() is None:
            time.sleep(0.3)
            try:
                study = optuna.load_study(study_name="fault", storage=storage)
            except KeyError:
                continue
            for t in study.get_trials(deepcopy=False):
                if t.state.name == "RUNNING" and t.user_attrs.get("worker", "").endswith(f":{victim.pid}") \
                        and len(t.intermediate_values) >= 2:
                    os.kill(victim.pid, signal.SIGKILL)
                    killed = t.number
        assert killed is not None, "the victim never ran a trial: " + (victim.stderr.read()[-2000:] if victim.poll()
                                                                        is not None else "")
        assert victim.wait(timeout=60) == -signal.SIGKILL
        _, err = survivor.communicate(timeout=600)
        assert survivor.returncode == 0, err[-3000:]
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()

    study = optuna.load_study(study_name="fault", storage=postgres_url)
    trials = {t.number: t for t in study.trials}
    assert trials[killed].state.name == "FAIL"
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].params == trials[killed].params
    assert sum(t.state.name == "COMPLETE" for t in trials.values()) == 3
    assert not [t for t in trials.values() if t.state.name in ("RUNNING", "WAITING")]

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(trials[killed].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["optuna.trial.state"] == "FAIL"
