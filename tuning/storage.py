"""Optuna storage from a URL, following Optuna's guidance on concurrent writers.

* `sqlite:///study.db` — one process at a time (SQLite locks the whole file
  for each write; parallel writers see "database is locked").
* `journal:path/study.log` (the default, under `tuning/studies/`) — several
  processes on one host (`JournalFileBackend` appends under `FlockLock`).
* `postgresql://user@127.0.0.1:5432/db` (or `mysql://`) — several machines.

Every storage has heartbeats: a killed worker's RUNNING trial becomes FAIL
when the study is next started or polled (`optuna.storages.fail_stale_trials`)
and is re-queued once with the same parameters. RDB storages use Optuna's
heartbeat table; the journal storage is `tuning.liveness.HeartbeatJournalStorage`,
whose heartbeat lives in the journal (and which fails a trial at once when
its worker is on this host and gone).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Callable

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock

from tuning.liveness import HeartbeatJournalStorage

try:
    import fcntl
except ImportError:  # Windows: Optuna's own lock
    fcntl = None

logger = logging.getLogger(__name__)

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


class FlockLock(BaseJournalFileLock):
    """The journal's write lock as `fcntl.flock` on `<journal>.flock`: the kernel releases it when its holder dies.

    Optuna's journal locks are files that a killed writer leaves behind, which
    the other workers wait out (30 s) before forcing them open; a worker
    killed while it appends a heartbeat would stall the study that long.

    Example:

    >>> backend = JournalFileBackend("study.log", lock_obj=FlockLock("study.log"))  # doctest: +SKIP
    """

    def __init__(self, journal_path: str):
        self._path = journal_path + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def default_storage_url(study_name: str, directory: str = os.path.join("tuning", "studies")) -> str:
    """`journal:<directory>/<study_name>.log`: persistent and safe for several processes on one host."""
    return f"journal:{os.path.join(directory, study_name + '.log')}"


def scheme(url: str) -> str:
    """`"postgresql+psycopg2://..."` → `"postgresql"`; `"journal:..."` → `"journal"`."""
    head = url.split(":", 1)[0]
    return head.split("+", 1)[0].lower()


def supports_parallel_writers(url: str) -> bool:
    return scheme(url) != "sqlite"


def redact(url: str) -> str:
    """The URL without a password, for logs and MLflow parameters."""
    if "@" not in url or "://" not in url:
        return url
    head, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{head}://{user}@{host}"


def make_storage(url: str, *, heartbeat_interval: int = 10, grace_period: int | None = None, max_retry: int = 1,
                 on_failed_trial: Callable | None = None):
    """An Optuna storage for `url`, with heartbeats and retries of killed trials.

    Args:
        url: `journal:<file>`, `sqlite:///<file>`, `postgresql://...` or `mysql://...`.
        heartbeat_interval: seconds between a running trial's heartbeats. Defaults to `10`.
        grace_period: seconds without a heartbeat before a RUNNING trial is failed.
            Defaults to `None` (three intervals).
        max_retry: how often a killed trial is re-queued with its parameters. Defaults to `1`.
        on_failed_trial: also called as `(study, frozen_trial, reason)` when a trial whose worker
            died is failed. Defaults to `None`.

    Example:

    >>> storage = make_storage("sqlite:///study.db", heartbeat_interval=5)  # doctest: +SKIP
    """
    import optuna

    kind = scheme(url)
    if kind not in RDB_SCHEMES + ("journal",):
        raise ValueError(f"`--storage` must be journal:<file>, sqlite:///<file>, postgresql://... or mysql://... "
                         f"Received: {redact(url)!r}")
    if not isinstance(heartbeat_interval, int) or heartbeat_interval < 1:
        raise ValueError(f"`heartbeat_interval` must be a positive integer. Received: {heartbeat_interval!r}")
    if grace_period is not None and grace_period <= 0:
        raise ValueError(f"`grace_period` must be a positive number of seconds. Received: {grace_period!r}")
    grace_period = 3 * heartbeat_interval if grace_period is None else grace_period
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    storage = None

    def failed(study, trial) -> None:
        reason = getattr(storage, "stale_reason", lambda _: None)(trial._trial_id) or \
            f"no heartbeat for {grace_period} s"
        logger.warning("Trial %s ended FAIL: its worker stopped during the trial (%s); re-queued with its "
                       "parameters unless it was retried %s time(s) already.", trial.number, reason, max_retry)
        if on_failed_trial is not None:
            on_failed_trial(study, trial, reason)
        retry(study, trial)

    if kind == "journal":
        path = url.split(":", 1)[1]
        if not path:
            raise ValueError(f"`--storage` journal URLs look like journal:path/to/study.log. Received: {url!r}")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        backend = JournalFileBackend(path, lock_obj=FlockLock(path) if fcntl is not None else None)
        storage = HeartbeatJournalStorage(backend,
                                          heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                          heartbeat_stale_trial_callback=failed)
        return storage
    if kind == "sqlite":
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental since 2.9
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                             heartbeat_stale_trial_callback=failed)
    return storage
