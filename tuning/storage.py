"""Optuna storage from a URL, following Optuna's guidance on concurrent writers.

* `sqlite:///study.db` — one process at a time (SQLite locks the whole file
  for each write; parallel writers see "database is locked").
* `journal:path/study.log` (the default, under `tuning/studies/`) — several
  processes on one host (`JournalFileBackend` appends with file locks).
* `postgresql://user@127.0.0.1:5432/db` (or `mysql://`) — several machines.

Heartbeats (a killed worker's RUNNING trial becomes FAIL after
`grace_period` seconds and is re-queued with the same parameters) need an
RDB storage; Optuna's journal storage has none, so there a killed worker's
trial stays RUNNING.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


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
    """An Optuna storage for `url`, with heartbeats and retries of killed trials where the storage has them.

    Args:
        url: `journal:<file>`, `sqlite:///<file>`, `postgresql://...` or `mysql://...`.
        heartbeat_interval: seconds between a running trial's heartbeats (RDB only). Defaults to `10`.
        grace_period: seconds without a heartbeat before a RUNNING trial is failed.
            Defaults to `None` (Optuna's: twice the interval).
        max_retry: how often a killed trial is re-queued with its parameters. Defaults to `1`.
        on_failed_trial: also called as `(study, frozen_trial)` when a stale trial is failed. Defaults to `None`.

    Example:

    >>> storage = make_storage("sqlite:///study.db", heartbeat_interval=5)  # doctest: +SKIP
    """
    import optuna

    kind = scheme(url)
    if kind == "journal":
        path = url.split(":", 1)[1]
        if not path:
            raise ValueError(f"`--storage` journal URLs look like journal:path/to/study.log. Received: {url!r}")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    if kind not in RDB_SCHEMES:
        raise ValueError(f"`--storage` must be journal:<file>, sqlite:///<file>, postgresql://... or mysql://... "
                         f"Received: {redact(url)!r}")
    if heartbeat_interval is not None and heartbeat_interval < 1:
        raise ValueError(f"`heartbeat_interval` must be a positive integer. Received: {heartbeat_interval!r}")
    if kind == "sqlite":
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def failed(study, trial) -> None:
        if on_failed_trial is not None:
            on_failed_trial(study, trial)
        retry(study, trial)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental since 2.9
        return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                          heartbeat_stale_trial_callback=failed)
