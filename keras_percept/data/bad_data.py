"""Bad-data policy shared by the BAPPS-layout readers.

A reader checks every item before it builds a pipeline. With
`on_error="raise"` (the default) the first bad item raises `BadDataError`
naming the file; with `on_error="skip"` bad items are left out, collected as
`SkippedItem`s, and summarised in one warning. A label is never guessed.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from typing import Sequence

ON_ERROR = ("raise", "skip")


class BadDataError(ValueError):
    """An item of a BAPPS-layout dataset cannot be used; `path` names the file or folder."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class SkippedItem:
    """One item left out under `on_error="skip"`: the offending `path`, a short `kind`, and why."""

    path: str
    kind: str
    reason: str


class ErrorPolicy:
    """Raises or records bad items, following `on_error`.

    Example:

    >>> policy = ErrorPolicy("skip")
    >>> policy.bad("judge/000001.npy", "label", "judge 1.5 is outside [0, 1]")
    >>> len(policy.skipped)
    1
    """

    def __init__(self, on_error: str):
        check_on_error(on_error)
        self.on_error = on_error
        self.skipped: list[SkippedItem] = []

    def bad(self, path: str, kind: str, reason: str) -> None:
        if self.on_error == "raise":
            raise BadDataError(path, f"{reason} (pass on_error='skip' to skip bad items)")
        self.skipped.append(SkippedItem(path, kind, reason))


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"Argument `on_error` must be one of {ON_ERROR}. Received: on_error={on_error!r}")


def summarize_skipped(skipped: Sequence[SkippedItem], total: int, where: str, *, examples: int = 3) -> str:
    """One line: how many items were skipped, by kind, with the first few files.

    Example:

    >>> summarize_skipped([SkippedItem("a/p0/1.png", "image", "not a PNG")], 10, "a")
    'Skipped 1 of 10 item(s) in a: 1 image. First: a/p0/1.png (not a PNG)'
    """
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(Counter(s.kind for s in skipped).items()))
    first = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:examples])
    return f"Skipped {len(skipped)} of {total} item(s) in {where}: {kinds}. First: {first}"


def warn_skipped(skipped: Sequence[SkippedItem], total: int, where: str) -> None:
    if skipped:
        warnings.warn(summarize_skipped(skipped, total, where), UserWarning, stacklevel=3)
