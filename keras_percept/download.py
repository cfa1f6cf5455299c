"""The one downloader (weights, checkpoints, datasets): hash verification, atomic writes, a clear offline error."""

from __future__ import annotations

import hashlib
import os
import socket
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
    gets `timeout` here through the socket default. Either way the download
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
        _verify(target, sha256, sha256_prefix, url)
        return target
    try:
        with atomic_path(target, keep_extension=True) as tmp:
            if sha256:
                import keras

                previous = socket.getdefaulttimeout()
                socket.setdefaulttimeout(timeout)
                try:
                    keras.utils.get_file(fname=os.path.basename(tmp), origin=url, cache_dir=os.path.dirname(tmp),
                                         cache_subdir="", file_hash=sha256, hash_algorithm="sha256")
                except ValueError:  # get_file's hash mismatch: ours below names the file and the URL
                    pass
                finally:
                    socket.setdefaulttimeout(previous)
            else:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
            _verify(tmp, sha256, sha256_prefix, url)
    except ValueError:
        raise
    except Exception as err:  # get_file turns URLError/HTTPError into a plain Exception
        raise OfflineError(
            f"Could not download {url} ({getattr(err, 'reason', err)}). This machine seems to be offline "
            f"or the server is unreachable. Download the file on a machine with internet access and copy "
            f"it to {target}, then run this again"
            f"{'; ' + hint if hint else ' (or pass its path instead of ' + repr('imagenet') + '/' + repr('official') + ')'}."
        ) from err
    return target


def _verify(path: str, sha256: str | None, sha256_prefix: str | None, url: str) -> None:
    """Raises `ValueError` unless the file's SHA-256 is `sha256` (or starts with `sha256_prefix`)."""
    expected = sha256 or sha256_prefix
    if not expected:
        return
    actual = sha256_of(path)
    if not actual.startswith(expected):
        raise ValueError(
            f"SHA-256 of {path} is {actual}, expected {expected} for {url}. The file is corrupt or changed "
            "upstream; delete it and download it again."
        )
