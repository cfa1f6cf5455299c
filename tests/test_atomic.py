"""keras_percept.atomic: a write leaves the old complete file or the new one, and cleans up after killed writers."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_percept.atomic import atomic_path, atomic_write, remove_stale_temporaries, temporary_name

pytestmark = pytest.mark.one_pass


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _stale(path, pid: int, extension: str = "") -> str:
    name = temporary_name(path, keep_extension=bool(extension)).rsplit("-", 1)[0] + f"-{pid}{extension}"
    with open(name, "w") as f:
        f.write("half")
    return name


def test_error_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("new, incomplete")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["table.csv"]


def test_keep_extension_for_writers_that_choose_the_format(tmp_path):
    target = str(tmp_path / "weights.npy")
    with atomic_path(target, keep_extension=True) as tmp:
        assert tmp.endswith(".npy") and ".tmp-" in tmp
        np.save(tmp, np.arange(3))  # np.save would append .npy to a name without it
    assert np.load(target).tolist() == [0, 1, 2] and os.listdir(tmp_path) == ["weights.npy"]


def test_stale_temporaries_of_dead_writers_are_removed_with_a_warning(tmp_path):
    target = str(tmp_path / "m.keras")
    dead = _dead_pid()
    stale = [_stale(target, dead), _stale(target, dead + 0, ".keras")]
    alive = _stale(target, os.getppid())  # a live writer's temporary is left alone
    with pytest.warns(UserWarning, match=r"Removed 2 temporary file\(s\) that a killed writer of .*m.keras"):
        with atomic_write(target) as f:
            f.write("complete")
    assert not any(os.path.exists(s) for s in stale) and os.path.exists(alive)
    assert remove_stale_temporaries(target) == []


def test_directory_replaces_an_empty_folder_only(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    with atomic_path(target, is_dir=True) as tmp:
        open(os.path.join(tmp, "a.txt"), "w").close()
    assert os.listdir(target) == ["a.txt"]
    with pytest.raises(OSError), atomic_path(target, is_dir=True) as tmp:
        open(os.path.join(tmp, "b.txt"), "w").close()
    assert os.listdir(target) == ["a.txt"] and sorted(os.listdir(tmp_path)) == ["dataset"]
