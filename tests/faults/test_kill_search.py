"""`python tuning/search.py --trials N` SIGKILLed mid-trial and run again leaves no zombie, on the default storage.

The issue's scenario at small scale (3 trials of 2 epochs on a tiny embedded set, the default
`journal:tuning/studies/<study>.log` under the working folder): after the last run there is no
RUNNING or WAITING trial, exactly N trials are COMPLETE or PRUNED, every killed trial is FAIL with
its MLflow run FAILED and the reason tagged, was re-run once with its parameters, and no MLflow run
is RUNNING. One study takes both scenarios in turn (for CI time: each search.py start costs about
10 s): one worker killed at seeded points (the k-th `Epoch i/2` line of a trial plus a seeded delay),
then the same command with two workers (`--n-jobs 2`) whose spawned one is killed mid-trial while the
first goes on. The test prints how many kill points it tried and how many left a zombie that the
next run failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from fault_harness import leftovers, run_and_kill, seeded_delays
from optuna.storages.journal import JournalFileBackend

pytestmark = [pytest.mark.slow, pytest.mark.one_pass]  # Optuna/MLflow/process plumbing

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SEARCH = os.path.join(REPO, "tuning", "search.py")
SPACE = """
paradigm: lin
params:
  optim.optimizer: {type: categorical, choices: [adam, sgd]}
  optim.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
fixed: {data.batch_size: 20, strategy: none, optim.epochs: 2}
study: {pruner: {name: none}}
"""
TRIALS = 3  # with 2, the second run's first process may start both before the spawned one is up


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> str:
    from keras_percept.data import embedded

    return embedded.build(str(tmp_path_factory.mktemp("kill_search") / "set"), seed=5, n_train=60, n_val=40,
                          n_jnd=20, progress=False)


@pytest.fixture
def search(tmp_path, tiny_set):
    """(command, env, cwd): `search.py --trials 3` of study `kill` on the default storage, in `tmp_path`."""
    (tmp_path / "space.yaml").write_text(SPACE)
    command = [sys.executable, SEARCH, "--trials", str(TRIALS), "--study-name", "kill", "--space", "space.yaml",
               "--set", f"data.dataset={tiny_set}", "--experiment", "kill-search", "--output-dir", "runs",
               "--no-progress", "--verbose", "2"]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", TF_CPP_MIN_LOG_LEVEL="2",
               KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")
    return command, env, str(tmp_path)


def _study(cwd: str):
    """The study on the default storage, read with Optuna's plain journal storage (no heartbeat of its own)."""
    path = os.path.join(cwd, "tuning", "studies", "kill.log")
    return optuna.load_study(study_name="kill", storage=optuna.storages.JournalStorage(JournalFileBackend(path)))


def _running(cwd: str) -> list[int]:
    return [t.number for t in _study(cwd).get_trials(deepcopy=False) if t.state.name == "RUNNING"]


def _check_no_zombie(cwd: str, env: dict, killed: set[int], n_trials: int = TRIALS) -> None:
    import mlflow

    trials = {t.number: t for t in _study(cwd).trials}
    states = {n: t.state.name for n, t in trials.items()}
    assert not [n for n, s in states.items() if s in ("RUNNING", "WAITING")], states
    assert sum(s in ("COMPLETE", "PRUNED") for s in states.values()) == n_trials, states
    for number in killed:
        assert states[number] == "FAIL", states
        if "failed_trial" in trials[number].system_attrs:
            continue  # itself the re-run of a killed trial: re-queued once only (max_retry=1)
        retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == number]
        assert len(retries) == 1 and retries[0].params == trials[number].params, f"trial {number} not re-run once"
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("kill-search")
    runs = client.search_runs([experiment.experiment_id])
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], "an MLflow run is still RUNNING"
    by_trial = {int(r.data.tags["optuna.trial_number"]): r for r in runs if r.data.tags.get("optuna.role") == "trial"}
    for number in killed:
        if number in by_trial:  # a kill before the trial's run was opened leaves no run
            run = by_trial[number]
            assert run.info.status == "FAILED" and run.data.tags["optuna.trial.state"] == "FAIL"
            assert "is gone" in run.data.tags["optuna.fail_reason"], run.data.tags
    assert [r.info.status for r in runs if r.data.tags.get("optuna.role") == "study"] == ["FINISHED"]
    assert not leftovers(os.path.join(cwd, "tuning")), "partial files next to the journal"


def _kill_spawned_worker_mid_trial(main: subprocess.Popen, cwd: str, zombies: set[int], timeout: float = 300) -> int | None:
    """SIGKILLs `main`'s spawned worker once its trial has reported an epoch; returns that trial's number.

    `zombies`: trials of processes killed before `main` started (their PIDs are gone or reused).
    """
    deadline = time.time() + timeout
    while time.time() < deadline and main.poll() is None:
        time.sleep(0.3)
        try:
            trials = _study(cwd).get_trials(deepcopy=False)
        except (KeyError, FileNotFoundError):
            continue  # the study is not created yet
        for t in trials:
            worker = t.user_attrs.get("worker", ":")
            pid = int(worker.rsplit(":", 1)[1] or 0)
            if (t.state.name == "RUNNING" and pid and pid != main.pid and t.intermediate_values
                    and t.number not in zombies):
                os.kill(pid, signal.SIGKILL)
                return t.number
    return None


def test_killed_workers_leave_no_zombie_single_then_two_workers(search):
    """One study, both scenarios: the single worker SIGKILLed mid-trial (a seeded point), then the same
    command with `--n-jobs 2`, whose spawned worker is SIGKILLed mid-trial while the first goes on.

    The second run must fail the first run's zombie when it starts (nothing of the killed process is
    alive) and the spawned worker's trial while it runs (that worker's heartbeat stops), re-run both
    and end with `--trials` finished trials.
    """
    command, env, cwd = search
    # Kill point: the 2nd "Epoch i/2" line of the run (mid-trial) plus a seeded delay.
    # One point for CI time (each costs a process start and a trial); raise the list to try more.
    points = list(zip([2], seeded_delays(13, 1, 0.0, 0.8)))
    killed: set[int] = set()
    zombies = 0
    for occurrence, delay in points:
        result = run_and_kill(command, pattern=r"^Epoch \d+/2", occurrence=occurrence, delay=delay, env=env,
                              cwd=cwd, timeout=300)
        assert result.killed, "the run ended before its kill point:\n" + result.output[-3000:]
        running = _running(cwd)
        assert len(running) <= 1
        zombies += len(running)
        killed.update(running)
    assert zombies >= 1, "no kill landed inside a trial: the scenario was not exercised"
    print(f"\nsearch.py single worker: {len(points)} kill points tried, {zombies} left a RUNNING trial")

    log = os.path.join(cwd, "two_workers.log")  # a file, not a pipe: nobody reads while the test polls the study
    with open(log, "w") as out:
        main = subprocess.Popen(command + ["--n-jobs", "2"], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            spawned = _kill_spawned_worker_mid_trial(main, cwd, killed)
            main.wait(timeout=600)
        finally:
            if main.poll() is None:
                os.killpg(main.pid, signal.SIGKILL)
                main.wait()
    with open(log) as f:
        output = f.read()
    assert spawned is not None, "the spawned worker never ran a trial:\n" + output[-3000:]
    assert main.returncode == 0, output[-4000:]
    assert "worker exit codes [-9]" in output
    print(f"search.py --n-jobs 2: 1 kill point tried (the spawned worker after epoch 1); "
          f"{len(points) + 1} kill points survived (no zombie after the run)")
    _check_no_zombie(cwd, env, killed | {spawned})
