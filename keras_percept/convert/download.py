"""Downloading checkpoints with hash verification and a clear offline error."""

from __future__ import annotations

import hashlib
import os
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


def fetch(url: str, *, sha256_prefix: str | None = None, subdir: str = "weights", timeout: float = 30.0) -> str:
    """Returns the cached path of `url`, downloading it first if needed.

    The download goes to a temporary file that is renamed only after its
    SHA-256 matches `sha256_prefix`, so a broken transfer never leaves a
    corrupt cached file. Without network access it raises `OfflineError`
    naming the URL and the path where a manually downloaded copy is picked up.

    Example:

    >>> fetch("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ...       sha256_prefix="7be5be79")  # doctest: +SKIP
    '/root/.cache/keras_percept/weights/alexnet-owt-7be5be79.pth'
    """
    target = os.path.join(cache_dir(subdir), os.path.basename(url))
    if os.path.isfile(target):
        _verify(target, sha256_prefix, url)
        return target
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            _verify(tmp, sha256_prefix, url)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
        raise OfflineError(
            f"Could not download {url} ({getattr(err, 'reason', err)}). This machine seems to be offline "
            f"or the server is unreachable. Download the file on a machine with internet access and copy "
            f"it to {target} (or pass its path instead of 'imagenet'/'official')."
        ) from err
    return target


def _verify(path: str, sha256_prefix: str | None, url: str) -> None:
    if sha256_prefix is None:
        return
    actual = sha256_of(path)
    if not actual.startswith(sha256_prefix):
        raise ValueError(
            f"SHA-256 of {path} ({actual[:12]}…) does not match the expected prefix {sha256_prefix} "
            f"for {url}. Delete the file and download it again."
        )
