"""Crash-safe file output: a kill at any point leaves the old complete file or nothing.

Every file the package writes for a later run to trust (datasets, feature caches, converted
weights, exports, `.keras` files, CSVs, plots) goes through this module. A temporary sibling is
written, flushed, and renamed over the target with `os.replace`, which is atomic on POSIX and
Windows when both names are on one file system. A process killed by SIGKILL cannot clean up its
temporary, so temporaries carry the host name and PID of their writer, and
`remove_stale_temporaries` (called before each write) deletes those whose writer on this host is
gone; temporaries of other hosts are left alone (their writer may be alive).

Python's `tempfile` does not rename into place and leaves orphans on SIGKILL, hence this module.

Example:

>>> import os, tempfile
>>> target = os.path.join(tempfile.mkdtemp(), "table.csv")
>>> with atomic_write(target) as f:
...     _ = f.write("a,b\\n")
>>> open(target).read()
'a,b\\n'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import warnings
from collections.abc import Iterator
from typing import IO

_MARK = ".tmp-"


def _host() -> str:
    return socket.gethostname().replace(os.sep, "_").replace("-", "_") or "host"


def temporary_name(path: str | os.PathLike, *, keep_extension: bool = False) -> str:
    """The temporary sibling `.<name>.tmp-<host>-<pid>[<ext>]` that this process writes `path` through.

    `keep_extension=True` ends the name with `path`'s extension, for writers that choose the
    format by it (`model.save` requires `.keras`).

    Example:

    >>> os.path.basename(temporary_name("/runs/metric.keras", keep_extension=True)).endswith(".keras")
    True
    """
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    extension = os.path.splitext(name)[1] if keep_extension else ""
    return os.path.join(directory, f".{name}{_MARK}{_host()}-{os.getpid()}{extension}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Deletes temporaries of `path` left by dead writers on this host; returns what it deleted.

    Example:

    >>> remove_stale_temporaries("/nonexistent/dir/file.csv")
    []
    """
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    prefix = f".{name}{_MARK}{_host()}-"
    removed = []
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]  # after the PID: an extension kept for the writer
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        stale = os.path.join(directory, entry)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)
        removed.append(stale)
    return removed


def _discard(tmp: str) -> None:
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False, keep_extension: bool = False) -> Iterator[str]:
    """Yields a temporary path to write; on success it replaces `path`, on error it is deleted.

    With `is_dir=True` the temporary is a fresh empty folder and replaces `path` as a whole
    (an existing empty folder at `path` is replaced; a non-empty one raises `OSError`).
    `keep_extension`: see `temporary_name`. Temporaries that killed writers left are removed
    first, with a warning naming them (the output is then rebuilt by this write).

    Example:

    >>> import numpy as np, os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> with atomic_path(target) as tmp:
    ...     with open(tmp, "wb") as f:
    ...         np.save(f, np.zeros(3))
    >>> np.load(target).shape
    (3,)
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    removed = remove_stale_temporaries(path)
    if removed:
        warnings.warn(
            f"Removed {len(removed)} temporary file(s) that a killed writer of {path!r} left "
            f"({', '.join(os.path.basename(r) for r in removed)}); writing it again.", stacklevel=3,
        )
    tmp = temporary_name(path, keep_extension=keep_extension)
    _discard(tmp)
    if is_dir:
        os.makedirs(tmp)
    try:
        yield tmp
        if is_dir and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))
    finally:
        _discard(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Opens a temporary sibling of `path` for writing; renames it over `path` when the block ends.

    Args:
        path: the file to write.
        mode: `"w"` (text, the default) or `"wb"`.
        **open_kwargs: passed to `open` (e.g. `newline=""` for CSV).

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> with atomic_write(target) as f:
    ...     _ = f.write("done")
    >>> open(target).read()
    'done'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"Argument `mode` must be one of {{'w', 'wb'}}. Received: mode={mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def partial_name(path: str | os.PathLike) -> str:
    """Where an output that is written as it goes lives until complete: `<path>.partial`."""
    return f"{os.fspath(path)}.partial"


def finish_partial(path: str | os.PathLike) -> None:
    """Moves the completed `<path>.partial` to `path` (atomically).

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> with open(partial_name(target), "w") as f:
    ...     _ = f.write("name,distance\\n")
    >>> finish_partial(target); os.path.exists(target), os.path.exists(partial_name(target))
    (True, False)
    """
    os.replace(partial_name(path), os.fspath(path))
    _fsync_dir(os.path.dirname(os.path.abspath(os.fspath(path))))
