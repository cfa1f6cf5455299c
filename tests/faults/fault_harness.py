"""Kill a real process at a chosen point and check what it leaves behind (fault-injection suite).

A kill point is "the k-th line of the child's output that matches a pattern", optionally followed
by a seeded random delay, so that kills land at many places of a run and a failing point can be
replayed. The child is killed with SIGKILL (no handler, no `finally`), as the OOM killer or a
pre-empted machine would.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class KillResult:
    killed: bool          # False: the child finished before the kill point
    returncode: int
    output: str


def run_and_kill(args: list[str], *, pattern: str | None = None, occurrence: int = 1,
                 delay: float = 0.0, env: dict | None = None, cwd: str | None = None,
                 timeout: float = 300.0, on_line: Callable[[str], None] | None = None) -> KillResult:
    """Runs `args`; SIGKILLs it `delay` s after the `occurrence`-th output line matching `pattern`.

    With `pattern=None` the kill comes `delay` s after the start. stdout and stderr are merged.
    `on_line` sees each output line as it comes (e.g. to start another process at some point).
    """
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=child_env, cwd=cwd, start_new_session=True)
    lines: list[str] = []
    fired = threading.Event()
    killed = threading.Event()

    def kill_later():
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed.set()

    if pattern is None:
        fired.set()
        threading.Thread(target=kill_later, daemon=True).start()
    regex = re.compile(pattern) if pattern else None
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line)
            if regex is not None and not fired.is_set() and regex.search(line):
                seen += 1
                if seen >= occurrence:
                    fired.set()
                    threading.Thread(target=kill_later, daemon=True).start()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args} ran past {timeout} s; output:\n{''.join(lines[-40:])}")
    except BaseException:  # a timeout, or `on_line` failed: leave no child running
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    proc.wait()
    return KillResult(killed=killed.is_set(), returncode=proc.returncode, output="".join(lines))


def seeded_delays(seed: int, n: int, low: float, high: float) -> list[float]:
    """`n` reproducible kill delays in [low, high) s."""
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def python(*args: str) -> list[str]:
    """A command line running this interpreter."""
    return [sys.executable, *args]


def leftovers(root: str) -> list[str]:
    """Temporary or partial files under `root` (what a crash must not leave for a later run)."""
    found = []
    for directory, dirs, files in os.walk(root):
        for name in files + dirs:
            if ".tmp-" in name or name.endswith(".partial"):
                found.append(os.path.join(directory, name))
    return found
