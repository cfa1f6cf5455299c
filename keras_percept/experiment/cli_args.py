"""Command-line argument types shared by `keras-percept train / evaluate / iqa` and `tuning/search.py`.

MLflow passes every `-P` parameter as a string, so the MLproject entry points
parse their numbers here. The string `none` (or `null`, or empty) means "not
given: keep the config's value".

Example:

>>> optional_number(int, "--epochs")("none") is None
True
>>> split_overrides(["optim.epochs=2 data.batch_size=20", "none"])
['optim.epochs=2', 'data.batch_size=20']
"""

from __future__ import annotations

import argparse

_NONE = ("", "none", "null")


def none_or_text(text):
    """`None` for "none" / "null" / "", else the text unchanged."""
    return None if text is None or str(text).strip().lower() in _NONE else text


def default_or_text(text):
    """`None` for "default" or "" (for options where "none" is itself a value, e.g. `--pruner none`)."""
    return None if text is None or str(text).strip().lower() in ("", "default") else text


def optional_number(kind, name: str):
    """An argparse type: a `kind` (int or float) > 0, or `None` for "none"; errors name the option."""
    def parse(text: str):
        if none_or_text(text) is None:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {kind.__name__} or 'none'. Received: {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0. Received: {text!r}")
        return value

    return parse


def split_overrides(items) -> list[str]:
    """`--set` values as single `key=value` overrides: space-separated pairs split, "none" dropped."""
    return [part for item in items for part in item.split() if part.lower() != "none"]
