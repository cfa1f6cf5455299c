"""The one downloader (weights, checkpoints, datasets): hash verification, atomic writes, a clear offline error."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request

from keras_percept.atomic import atomic_path
from keras_percept.paths import cache_dir


class OfflineError(ConnectionError):
    """A file could not be downloaded; the message says how to provide it by hand."""


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def torchvision_hash_prefix(url: str) -> str | None:
    """torchvision names files `<name>-<sha256 prefix>.pth`; returns that prefix."""
    stem = os.path.splitext(os.path.basename(url))[0]
    prefix = stem.rsplit("-", 1)[-1]
    return prefix if len(prefix) >= 8 and all(c in "0123456789abcdef" for c in prefix) else None


def fetch(url: str, *, target: str | os.PathLike | None = None, sha256: str | None = None,
          sha256_prefix: str | None = None, subdir: str = "weights", timeout: float = 30.0,
          hint: str | None = None) -> str:
    """Returns the local path of `url`, downloading it first if needed: the package's one downloader.

    The file goes to `target` (default `<cache>/<subdir>/<file name>`). A
    file already there is checked against `sha256` (the full SHA-256) or
    `sha256_prefix` (torchvision publishes a prefix in its file names) and
    used. With the full SHA-256 the transfer is `keras.utils.get_file`
    (progress bar, hash check); without it, a plain streamed read, because
    `get_file` verifies only full hashes and, having no timeout of its own,
    gets `timeout` here through the socket default (process-wide while it
    runs: do not fetch from several threads at once). A streamed transfer
    shorter than its `Content-Length` is an error. Either way the download
    is written through `atomic_path`: a killed or failed transfer leaves no
    file at `target` that a later run could trust. Without network access it
    raises `OfflineError` naming the URL, where to put a copy downloaded
    elsewhere, and `hint` (what else to do; default: pass a file path instead
    of 'imagenet'/'official').

    Example:

    >>> fetch("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ...       sha256_prefix="7be5be79")  # doctest: +SKIP
    '/root/.cache/keras_percept/weights/alexnet-owt-7be5be79.pth'
    """
    target = os.path.abspath(os.fspath(target)) if target else os.path.join(cache_dir(subdir),
                                                                              os.path.basename(url))
    if os.path.isfile(target):
        _verify(target, target, sha256, sha256_prefix, url)
        return target
    try:
        with atomic_path(target, keep_extension=True) as tmp:
            if sha256:
                _get_file(url, tmp, sha256, timeout)
            else:
                _stream(url, tmp, timeout)
            _verify(tmp, target, sha256, sha256_prefix, url)
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, _FetchFailure) as err:
        raise OfflineError(
            f"Could not download {url} ({getattr(err, 'reason', err)}). This machine seems to be offline "
            f"or the server is unreachable. Download the file on a machine with internet access and copy "
            f"it to {target}, then run this again"
            f"{'; ' + hint if hint else ' (or pass its path instead of ' + repr('imagenet') + '/' + repr('official') + ')'}."
        ) from err
    return target


class _FetchFailure(Exception):
    """`keras.utils.get_file`'s network failure (it raises a plain `Exception` "URL fetch failure ...")."""


def _get_file(url: str, path: str, sha256: str, timeout: float) -> None:
    """`keras.utils.get_file` into `path` (it verifies the hash; `_verify` says which file and URL failed)."""
    import keras

    previous = socket.getdefaulttimeout()  # get_file takes no timeout: the socket default is its only one
    socket.setdefaulttimeout(timeout)
    try:
        keras.utils.get_file(fname=os.path.basename(path), origin=url, cache_dir=os.path.dirname(path),
                             cache_subdir="", file_hash=sha256, hash_algorithm="sha256")
    except ValueError as err:
        if "hash does not match" not in str(err):
            raise
    except Exception as err:
        if not str(err).startswith("URL fetch failure"):
            raise
        raise _FetchFailure(str(err)) from err
    finally:
        socket.setdefaulttimeout(previous)


def _stream(url: str, path: str, timeout: float) -> None:
    """Streams `url` into `path`; a transfer shorter than its `Content-Length` is an error, not a file."""
    received = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
        expected = response.headers.get("Content-Length")
        while chunk := response.read(1 << 20):
            out.write(chunk)
            received += len(chunk)
    if expected is not None and received != int(expected):
        raise ConnectionError(f"the transfer ended after {received} of {expected} bytes")


def _verify(path: str, target: str, sha256: str | None, sha256_prefix: str | None, url: str) -> None:
    """Raises `ValueError` unless the file `path` (to be, or being, `target`) has SHA-256 `sha256` / `sha256_prefix`."""
    expected = sha256 or sha256_prefix
    if not expected:
        return
    actual = sha256_of(path)
    if not actual.startswith(expected):
        where = f"the download of {target} (not kept)" if path != target else target
        advice = "download it again" if path != target else "delete it and download it again"
        raise ValueError(
            f"SHA-256 of {where} is {actual}, expected {expected} for {url}. The file is corrupt or changed "
            f"upstream; {advice}."
        )
