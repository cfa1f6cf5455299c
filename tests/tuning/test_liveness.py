"""Liveness of running trials on the journal storage: a live worker's trial is never failed, a dead one's is.

The workers are real processes running `study.optimize` on a shared journal file (Optuna's own heartbeat
thread writes the records); they are stopped (SIGSTOP: alive, silent, as a worker behind a lost network
link) or killed (SIGKILL) to see which path fails their trial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from tuning.liveness import HEARTBEAT_ATTR, machine_id, process_gone, stale_reason, worker_record
from tuning.storage import make_storage

pytestmark = pytest.mark.one_pass  # Optuna plumbing and processes, no Keras

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# A worker whose objective sleeps: `python -c WORKER <journal> <seconds>`.
WORKER = """
import sys, time, optuna
from tuning.storage import make_storage
storage = make_storage("journal:" + sys.argv[1], heartbeat_interval=1, grace_period=3)
study = optuna.load_study(study_name="s", storage=storage)
def objective(trial):
    print("running", trial.number, flush=True)
    time.sleep(float(sys.argv[2]))
    return 1.0
study.optimize(objective, n_trials=1)
"""


def _worker(path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.stdout.readline().startswith("running"), "the worker did not start its trial"
    return proc


def _study(path):
    return optuna.load_study(study_name="s", storage=make_storage(f"journal:{path}", heartbeat_interval=1,
                                                                  grace_period=3))


def _reap(study) -> None:
    optuna.storages.fail_stale_trials(study)


@pytest.fixture
def journal(tmp_path):
    path = tmp_path / "study.log"
    optuna.create_study(study_name="s", storage=make_storage(f"journal:{path}"))
    return path


@pytest.mark.slow
def test_live_slow_worker_is_never_failed_a_stopped_one_is_after_the_grace_period(journal):
    study = _study(journal)
    live = _worker(journal, 9)
    try:
        deadline = time.time() + 7  # more than twice the grace period of 3 s
        while time.time() < deadline:
            _reap(study)
            assert [t.state.name for t in study.get_trials()] == ["RUNNING"]
            time.sleep(0.3)
        assert live.wait(timeout=60) == 0
        assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]
        record = study.trials[0].system_attrs[HEARTBEAT_ATTR]
        assert record["pid"] == live.pid and record["trial"] == study.trials[0]._trial_id

        # The negative control: the same worker, alive but not beating, is failed once the grace period is over.
        stopped = _worker(journal, 60)
        _stop_outside_the_lock(stopped, journal)
        stopped_at = time.time()
        while study.get_trials()[1].state.name == "RUNNING":
            assert time.time() - stopped_at < 60, "a silent worker's trial was never failed"
            _reap(study)
            time.sleep(0.3)
        assert time.time() - stopped_at > 2, "failed before its heartbeat was late"
        trials = study.get_trials()
        assert trials[1].state.name == "FAIL"
        assert trials[2].state.name == "WAITING" and trials[2].system_attrs["failed_trial"] == 1, "re-queued"
    finally:
        for proc in (live, locals().get("stopped")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_killed_worker_on_this_host_is_failed_at_once_with_the_reason(journal):
    study = _study(journal)
    victim = _worker(journal, 60)
    deadline = time.time() + 60
    while HEARTBEAT_ATTR not in study.get_trials()[0].system_attrs:  # Optuna's thread writes its first record
        assert time.time() < deadline, "the worker wrote no heartbeat"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    trial = study.get_trials()[0]
    assert stale_reason(trial, grace_period=3600) == f"worker process {victim.pid} on {os.uname().nodename} is gone"
    reasons = []
    storage = make_storage(f"journal:{journal}", heartbeat_interval=1, grace_period=3600,
                           on_failed_trial=lambda study, trial, reason: reasons.append((trial.number, reason)))
    optuna.storages.fail_stale_trials(optuna.load_study(study_name="s", storage=storage))
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]
    assert reasons == [(0, f"worker process {victim.pid} on {os.uname().nodename} is gone")]


def test_records_of_other_hosts_go_by_age_and_copied_records_are_ignored(journal):
    storage = make_storage(f"journal:{journal}")
    study = optuna.load_study(study_name="s", storage=storage)
    trial = study.ask()
    now = time.time()
    foreign = {**worker_record(trial._trial_id), "machine": "elsewhere/boot/pid:[1]", "host": "elsewhere",
               "pid": 1, "time": now - 100}
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, foreign)
    frozen = study.get_trials()[0]
    assert not process_gone(foreign), "a PID of another machine says nothing"
    assert stale_reason(frozen, grace_period=300, now=now) is None
    assert stale_reason(frozen, grace_period=30, now=now).startswith("no heartbeat for 100 s")
    # A re-queued trial starts with its predecessor's attributes: that record is not its own, so its start counts.
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, {**foreign, "trial": trial._trial_id + 1})
    frozen = study.get_trials()[0]
    assert stale_reason(frozen, grace_period=30, now=frozen.datetime_start.timestamp() + 10) is None


def test_process_gone_checks_pid_reuse_and_zombies():
    me = worker_record(0)
    assert me["machine"] == machine_id() and not process_gone(me)
    assert process_gone({**me, "start": "1"}), "same PID, another start time: the PID was reused"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while _state(child.pid) != "Z":
        time.sleep(0.05)  # exited, not yet reaped: a zombie still has its PID
    assert process_gone({**me, "pid": child.pid, "start": None})
    child.wait()
    assert process_gone({**me, "pid": child.pid, "start": None})


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped (Linux `/proc`; elsewhere a pause long enough in practice).

    Every thread: Optuna's heartbeat thread writes to the journal too, and may still take the lock after
    the main thread shows as stopped."""
    tasks = f"/proc/{pid}/task"
    if not os.path.isdir(tasks):
        time.sleep(0.2)
        return True
    states = []
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    assert "Z" not in states, f"worker {pid} exited instead of stopping"
    return bool(states) and all(state in ("T", "t") for state in states)


def _stop_outside_the_lock(proc, journal) -> None:
    """SIGSTOPs `proc` while it does not hold the journal's lock (a stopped holder would block every writer).

    The lock is tried only once `proc` is really stopped: `kill` returns before the signal is delivered,
    and a worker that took the lock in between, then stopped, deadlocked the test (seen in CI under load)."""
    import fcntl

    with open(f"{journal}.flock", "a") as lock:
        while True:
            os.kill(proc.pid, signal.SIGSTOP)
            deadline = time.time() + 10
            while not _stopped(proc.pid):
                assert time.time() < deadline, f"worker {proc.pid} did not stop"
                time.sleep(0.01)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.kill(proc.pid, signal.SIGCONT)
                time.sleep(0.1)
                continue
            fcntl.flock(lock, fcntl.LOCK_UN)
            return
