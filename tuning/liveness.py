"""Which RUNNING trials still have a live worker: a heartbeat for Optuna's journal storage, and a same-host fast path.

Optuna's RDB storages record a heartbeat per running trial and fail the
trials whose heartbeat is older than a grace period; its journal storage has
none, so a killed worker's trial stayed RUNNING forever. `HeartbeatJournalStorage`
adds Optuna's heartbeat interface (`BaseHeartbeat`) to the journal storage:
Optuna's own thread (the one it runs for RDB storages while a trial runs)
writes the record below into the trial's system attribute `heartbeat`, every
`heartbeat_interval` seconds, through the journal itself, so every process
that can open the study sees it, on one host or on many:

    {"trial": <trial id>, "time": <unix seconds>, "host": <host name>,
     "machine": <host name/boot id/PID namespace>, "pid": <pid>, "start": <process start tick>}

A RUNNING trial is failed (`optuna.storages.fail_stale_trials`) when

* its last record says the worker runs on this machine (same host name, boot
  and PID namespace) and that process is gone, exited but not yet reaped, or
  replaced by another with the same PID: at once; or
* its last record (before the first one: the trial's start) is older than
  `grace_period` seconds: any host. Hosts' clocks must agree to well within
  the grace period (NTP keeps them within milliseconds).

A re-queued trial inherits its predecessor's system attributes; a record
whose `trial` is another trial's id is ignored.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from typing import Any, Callable, Mapping

import optuna
from optuna.storages._heartbeat import BaseHeartbeat

HEARTBEAT_ATTR = "heartbeat"

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """This host's name, boot id and PID namespace: processes with equal ids can see each other's PIDs.

    Example:

    >>> machine_id()  # doctest: +SKIP
    'node-3/6a1f...-9c2e/pid:[4026531836]'
    """
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:  # not Linux: the host name alone
        pass
    return "/".join(parts)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of `pid` from /proc, or `None` if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def worker_record(trial_id: int | None = None) -> dict[str, Any]:
    """The heartbeat record this process writes for `trial_id` (see the module docstring).

    Example:

    >>> worker_record(7)["trial"]
    7
    """
    stat = _proc_stat(os.getpid())
    return {"trial": trial_id, "time": time.time(), "host": socket.gethostname(), "machine": machine_id(),
            "pid": os.getpid(), "start": stat[1] if stat else None}


def process_gone(record: Mapping[str, Any]) -> bool:
    """Whether the worker of a heartbeat record is known to be dead: on this machine, and not running.

    `False` when it runs elsewhere (only its heartbeat's age tells) or is alive.

    Example:

    >>> process_gone(worker_record(0))
    False
    """
    if record.get("machine") != machine_id() or not isinstance(record.get("pid"), int):
        return False
    pid = record["pid"]
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    return state in ("Z", "X") or (record.get("start") is not None and start != record["start"])


def stale_reason(trial: optuna.trial.FrozenTrial, *, grace_period: float, now: float | None = None) -> str | None:
    """Why the RUNNING `trial` has no live worker, or `None` if it may have one.

    Example:

    >>> stale_reason(study.trials[-1], grace_period=30)  # doctest: +SKIP
    'worker process 4242 on node-3 is gone'
    """
    now = time.time() if now is None else now
    record = trial.system_attrs.get(HEARTBEAT_ATTR)
    if not isinstance(record, dict) or record.get("trial") != trial._trial_id:
        record = None  # none yet, or the record of the trial this one retries
    if record is not None and process_gone(record):
        return f"worker process {record['pid']} on {record['host']} is gone"
    last = record["time"] if record is not None else trial.datetime_start.timestamp()
    if now - last > grace_period:
        where = f" (worker {record['host']}:{record['pid']})" if record is not None else ""
        return f"no heartbeat for {now - last:.0f} s, grace period {grace_period:g} s{where}"
    return None


class HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """Optuna's `JournalStorage` with heartbeats: a killed worker's trial is failed as on an RDB storage.

    Args:
        backend: a journal backend, e.g. `optuna.storages.journal.JournalFileBackend(path)`.
        heartbeat_interval: seconds between a running trial's records. Defaults to `10`.
        grace_period: seconds without a record before a RUNNING trial is failed.
            Defaults to `None` (three intervals: a record can wait for the journal's file lock).
        heartbeat_stale_trial_callback: called as `(study, frozen_trial)` after a trial is
            failed, as Optuna's RDB storage does. Defaults to `None`.

    Example:

    >>> from optuna.storages.journal import JournalFileBackend
    >>> storage = HeartbeatJournalStorage(JournalFileBackend("study.log"), heartbeat_interval=5)  # doctest: +SKIP
    >>> optuna.storages.fail_stale_trials(optuna.load_study(study_name="s", storage=storage))  # doctest: +SKIP
    """

    def __init__(self, backend, *, heartbeat_interval: int = 10, grace_period: float | None = None,
                 heartbeat_stale_trial_callback: Callable | None = None):
        if not isinstance(heartbeat_interval, int) or heartbeat_interval < 1:
            raise ValueError(f"`heartbeat_interval` must be a positive integer. Received: {heartbeat_interval!r}")
        if grace_period is not None and grace_period <= 0:
            raise ValueError(f"`grace_period` must be positive. Received: {grace_period!r}")
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = 3 * heartbeat_interval if grace_period is None else grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback
        self._reasons: dict[int, str] = {}

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, worker_record(trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.warning("Trial id %s was ended by another process while this one ran it (its heartbeat was "
                           "late by more than the grace period).", trial_id)
        except Exception as err:  # Optuna's thread ends on an exception: keep beating, say why one failed
            logger.warning("Could not record the heartbeat of trial id %s: %s: %s", trial_id, type(err).__name__, err)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            reason = stale_reason(trial, grace_period=self.grace_period, now=now)
            if reason is not None:
                self._reasons[trial._trial_id] = reason
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable | None:
        return self.heartbeat_stale_trial_callback

    get_failed_trial_callback = get_heartbeat_stale_trial_callback  # its name before Optuna 4.9

    def stale_reason(self, trial_id: int) -> str | None:
        """Why `_get_stale_trial_ids` found trial `trial_id` stale (for the failed trial's records)."""
        return self._reasons.get(trial_id)
