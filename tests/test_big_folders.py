"""`keras-percept distance DIR0 DIR1 --out d.csv` on many pairs: batches, streaming, resume, shards.

A random-trunk alex metric on 32 x 32 PNGs keeps the runs short. The crash test SIGKILLs a real
`keras-percept` process once its partial CSV holds a few batches, then resumes it; the result
must be the CSV of an uninterrupted run, byte for byte.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

import keras_percept.distance as distance_module
from keras_percept import LPIPS
from keras_percept.atomic import partial_name
from keras_percept.cli import main
from keras_percept.distance import collect_pairs, iter_distances, shard_pairs

pytestmark = pytest.mark.one_pass  # files, batching and CSV plumbing; the distances are the API's

SIZE = 32


def _make_folders(root, n: int) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    dirs = (os.path.join(root, "ref"), os.path.join(root, "dist"))
    for d in dirs:
        os.makedirs(d)
    for k in range(n):
        ref = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        noisy = np.clip(ref + rng.normal(0, 10 + k % 30, ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(os.path.join(dirs[0], f"{k:05d}.png"))
        Image.fromarray(noisy).save(os.path.join(dirs[1], f"{k:05d}.png"))
    return dirs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(folders of 45 same-named pairs, a seeded alex metric, its .keras path)."""
    root = tmp_path_factory.mktemp("big")
    dirs = _make_folders(str(root), 45)
    keras.utils.set_random_seed(0)
    model = LPIPS(net="alex")
    path = str(root / "alex.keras")
    model.save(path)
    return dirs, model, path


def _rows(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _read_pm1(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 127.5 - 1.0


def test_rows_are_the_api_distances_in_pair_order(setup, tmp_path, capsys):
    (ref, dist), model, path = setup
    out = tmp_path / "d.csv"
    assert main(["distance", ref, dist, "--out", str(out), "--model", path, "--batch-size", "8"]) == 0
    captured = capsys.readouterr()
    assert "wrote 45 distance(s)" in captured.out
    assert "pair/s" in captured.err and "<" in captured.err  # tqdm: rate, elapsed<remaining
    rows = _rows(out)
    assert rows[0] == ["name", "path0", "path1", "distance"]
    assert [r[0] for r in rows[1:]] == sorted(os.listdir(ref))
    for name, p0, p1, d in rows[1:]:
        expected = model.distance(_read_pm1(p0), _read_pm1(p1))[0]
        assert float(d) == pytest.approx(float(expected), abs=1.5e-6)
    assert not os.path.exists(partial_name(out))


def test_only_one_batch_of_images_is_read_before_its_rows(setup, monkeypatch):
    (ref, dist), model, _ = setup
    reads = []
    real = distance_module.load_image
    monkeypatch.setattr(distance_module, "load_image", lambda p: reads.append(p) or real(p))
    batches = iter_distances(model, collect_pairs(ref, dist), batch_size=8)
    first = next(batches)
    assert len(first) == 8 and len(reads) == 16
    second = next(batches)
    assert len(second) == 8 and len(reads) == 32
    assert [len(b) for b in batches] == [8, 8, 8, 5]


def test_sharded_csvs_concatenate_to_the_single_run(setup, tmp_path, capsys):
    (ref, dist), _, path = setup
    single = tmp_path / "all.csv"
    assert main(["distance", ref, dist, "--out", str(single), "--model", path, "--batch-size", "4"]) == 0
    parts = []
    for k in (1, 2, 3, 4):
        out = tmp_path / f"part{k}.csv"
        assert main(["distance", ref, dist, "--out", str(out), "--model", path, "--batch-size", "4",
                     "--shard", f"{k}/4"]) == 0
        rows = _rows(out)
        assert rows[0] == ["name", "path0", "path1", "distance"]
        assert (len(rows) - 1) % 4 == 0 or k == 4  # cut at batch boundaries
        parts.extend(rows[1:])
    assert parts == _rows(single)[1:]
    capsys.readouterr()
    for bad in ("0/4", "5/4", "2", "a/b"):
        assert main(["distance", ref, dist, "--shard", bad, "--model", path]) == 2
        assert "--shard must be K/N with 1 <= K <= N" in capsys.readouterr().err


def test_shards_are_contiguous_batches_covering_every_pair_once():
    pairs = [distance_module.ImagePair(str(i), "a", "b") for i in range(103)]
    for n in (1, 2, 3, 7, 30):
        shards = [shard_pairs(pairs, (k, n), batch_size=8) for k in range(1, n + 1)]
        assert [p for shard in shards for p in shard] == pairs
        assert all(len(s) % 8 == 0 for s in shards[:-1])


def test_an_interrupted_partial_is_not_overwritten_and_resumes(setup, tmp_path, capsys):
    (ref, dist), _, path = setup
    full = tmp_path / "full.csv"
    assert main(["distance", ref, dist, "--out", str(full), "--model", path, "--batch-size", "8"]) == 0
    expected = full.read_bytes()
    out = tmp_path / "d.csv"
    lines = expected.split(b"\n")
    # What a crash leaves: the header, 2 batches and a half-written row.
    partial = b"\n".join(lines[:17]) + b"\n" + lines[17][:15]
    open(partial_name(out), "wb").write(partial)
    capsys.readouterr()
    assert main(["distance", ref, dist, "--out", str(out), "--model", path, "--batch-size", "8"]) == 2
    assert "exists: an earlier run stopped before it finished. Pass --resume" in capsys.readouterr().err
    assert open(partial_name(out), "rb").read() == partial and not out.exists()
    assert main(["distance", ref, dist, "--out", str(out), "--model", path, "--batch-size", "8", "--resume"]) == 0
    captured = capsys.readouterr().out
    assert "wrote 45 distance(s) to" in captured and "(16 resumed from" in captured
    assert out.read_bytes() == expected
    assert not os.path.exists(partial_name(out))


def test_a_partial_of_other_inputs_is_refused(setup, tmp_path, capsys):
    (ref, dist), _, path = setup
    out = tmp_path / "d.csv"
    open(partial_name(out), "w").write("name,path0,path1,distance\nzebra.png,a,b,0.1\n")
    assert main(["distance", ref, dist, "--out", str(out), "--model", path, "--resume"]) == 2
    assert "holds rows for pairs that are not among the inputs (e.g. 'zebra.png')" in capsys.readouterr().err
    assert main(["distance", ref, dist, "--model", path, "--resume"]) == 2
    assert "--resume continues <out>.partial; give --out" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_csv(tmp_path):
    ref, dist = _make_folders(str(tmp_path), 600)
    keras.utils.set_random_seed(0)
    model_path = str(tmp_path / "alex.keras")
    LPIPS(net="alex").save(model_path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "keras_percept.cli", "distance", ref, dist, "--model", model_path,
               "--batch-size", "16", "--out"]
    full = tmp_path / "full.csv"
    subprocess.run(command + [str(full)], env=env, check=True, capture_output=True, timeout=600)

    out = tmp_path / "d.csv"
    partial = partial_name(out)
    proc = subprocess.Popen(command + [str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(partial) and open(partial, "rb").read().count(b"\n") > 1 + 3 * 16:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    kept = open(partial, "rb").read().count(b"\n") - 1
    assert 3 * 16 <= kept < 600 and not out.exists()

    resumed = subprocess.run(command + [str(out), "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"wrote 600 distance(s) to {out} ({kept} resumed" in resumed.stdout
    assert out.read_bytes() == full.read_bytes()
    assert not os.path.exists(partial)
