"""Embedded dataset generation and feature caching SIGKILLed at several points, then run again.

One child command builds a tiny embedded dataset and caches its validation features (squeeze
trunk). It is killed at seeded points during generation (twice) and with the feature cache
half written (the child writes half the `.npz` into its temporary and
waits there); each later run must remove the dead writers' temporaries, say so, and rebuild
what is missing. The run that finishes must give the dataset of an uninterrupted build (every
file byte-equal; the manifest up to its wall time) and the features of an uninterrupted run
(arrays equal), and leave no temporary or partial file.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np
import pytest
from fault_harness import leftovers, python, run_and_kill, seeded_delays

from keras_percept.data import embedded
from keras_percept.models.lpips import LPIPS
from keras_percept.training.feature_cache import channel_means_2afc

pytestmark = [pytest.mark.slow, pytest.mark.one_pass]

TINY = dict(seed=3, n_train=140, n_val=84, n_jnd=60)

CHILD = r"""
import io, os, sys, time
import keras, numpy as np
from keras_percept.data import embedded
from keras_percept.models.lpips import LPIPS
from keras_percept.training import feature_cache

root, out, stall = sys.argv[1], sys.argv[2], sys.argv[3] == "stall"
real_savez = np.savez

def half_then_wait(f, **arrays):  # the cache write, with a place to be killed in the middle of it
    buffer = io.BytesIO()
    real_savez(buffer, **arrays)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    print("cache half written", flush=True)
    if stall:
        time.sleep(600)
    f.write(data[len(data) // 2:])

np.savez = half_then_wait
print("building", flush=True)
embedded.build(root, progress=False, **TINY)
print("built", flush=True)
keras.utils.set_random_seed(0)
metric = LPIPS(net="squeeze", dropout=0.0)
print("computing", flush=True)
means = feature_cache.channel_means_2afc(metric, root, "val", batch_size=28)
real_savez(out, **means)
print("done", flush=True)
"""


def _tree(root: str) -> dict[str, str]:
    """SHA-256 of every file under `root`; the manifest without its wall time."""
    digests = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                data = f.read()
            if name == "manifest.json":
                manifest = json.loads(data)
                manifest.pop("generation_seconds")
                data = json.dumps(manifest, sort_keys=True).encode()
            digests[os.path.relpath(path, root)] = hashlib.sha256(data).hexdigest()
    return digests


def _cache_files(work) -> list[str]:
    folder = os.path.join(work, "home", "cache", "features")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_killed_generation_and_feature_caching_rebuild_the_same_files(tmp_path):
    reference_root = embedded.build(str(tmp_path / "reference"), progress=False, **TINY)
    reference_tree = _tree(reference_root)

    work = tmp_path / "work"
    root, out = str(work / "set"), str(tmp_path / "means.npz")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "KERAS_PERCEPT_HOME": str(work / "home")}
    child = python("-c", f"TINY = {TINY!r}\n" + CHILD, root, out)
    d1, d2 = seeded_delays(1303, 2, 0.2, 1.2)
    kill_points = [  # (name, pattern, delay, stall at the half-written cache)
        (f"generation +{d1:.2f}s", "^building", d1, False),
        (f"generation +{d2:.2f}s", "^building", d2, False),
        ("cache half written", "^cache half written", 0.0, True),
    ]
    survived, found = [], []
    for name, pattern, delay, stall in kill_points:
        result = run_and_kill(child + ["stall" if stall else "go"], pattern=pattern, delay=delay, env=env,
                              timeout=240)
        if not result.killed:  # finished before the kill point: not a kill, nothing to check
            print(f"kill point {name}: the child finished first")
            continue
        assert result.returncode == -9, result.output[-2000:]
        if stall:
            if found:  # the previous kill's temporary dataset: removed by this run, which said so
                assert "Removed 1 temporary file(s) that a killed writer of" in result.output, result.output
            assert _tree(root) == reference_tree
        found = leftovers(str(work))
        if stall:
            assert found, "the kill did not land in the cache write"
            assert [f for f in _cache_files(work) if ".tmp-" not in f] == []  # no cache file a later run reads
        else:  # the dataset is complete (killed just after the rename) or absent: never partial
            assert not os.path.exists(root) or _tree(root) == reference_tree
        survived.append(f"{name} (left {len(found)} temporary)")
    final = run_and_kill(child + ["go"], pattern=None, delay=10_000, env=env, timeout=240)
    assert not final.killed and final.returncode == 0, final.output[-3000:]
    assert "Removed 1 temporary file(s) that a killed writer of" in final.output  # said so
    print(f"kill points tried: {len(kill_points)}, survived: {len(survived)}: " + "; ".join(survived))

    assert _tree(root) == reference_tree
    assert leftovers(str(work)) == []
    keras.utils.set_random_seed(0)
    reference = channel_means_2afc(LPIPS(net="squeeze", dropout=0.0), reference_root, "val", batch_size=28,
                                   cache=False)
    with np.load(out) as got:
        assert sorted(got.files) == sorted(reference)
        for key in reference:
            np.testing.assert_array_equal(got[key], reference[key], err_msg=key)
    cache_files = _cache_files(work)
    assert len(cache_files) == 1 and cache_files[0].endswith(".npz")
    with np.load(os.path.join(work, "home", "cache", "features", cache_files[0])) as cached:
        np.testing.assert_array_equal(cached["m0"], reference["m0"])
    assert len(survived) >= 2
