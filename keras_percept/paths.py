"""Where keras_percept keeps downloaded and converted files."""

from __future__ import annotations

import os


def cache_dir(*parts: str) -> str:
    """`$KERAS_PERCEPT_HOME` (default `~/.cache/keras_percept`) joined with `parts`, created.

    Example:

    >>> cache_dir("weights")  # doctest: +SKIP
    '/home/me/.cache/keras_percept/weights'
    """
    root = os.environ.get("KERAS_PERCEPT_HOME") or os.path.join("~", ".cache", "keras_percept")
    path = os.path.join(os.path.expanduser(root), *parts)
    os.makedirs(path, exist_ok=True)
    return path
