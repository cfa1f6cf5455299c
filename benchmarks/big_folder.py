"""Big-folder benchmark: peak memory of `keras-percept distance DIR0 DIR1 --out d.csv` against the number of pairs.

    python benchmarks/big_folder.py              # 1,000, 5,000 and 20,000 pairs of 32 x 32 PNGs
    python benchmarks/big_folder.py --quick      # 1,000 and 3,000 pairs (CI, < 60 s)
    python benchmarks/big_folder.py --pairs 1000 100000 --size 64

Each size runs the real command in its own process (a seeded random alex metric saved as
`.keras`, batch 32); its peak resident memory is that process's `ru_maxrss` (from `wait4`,
framework imports included). The folders hold `--distinct` different images, hard-linked under
as many names as there are pairs, so building 20,000 pairs takes seconds while every pair is
still read and decoded from its own file. "all images" is what holding every image of every pair
in float32 would take, the memory the command needed before it ran in batches.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

FLAT_TOLERANCE_MB = 100  # peak RSS may grow this much from the smallest to the largest size


def make_folders(root: str, pairs: int, size: int, distinct: int) -> tuple[str, str]:
    """Two folders of `pairs` same-named PNGs, hard links to `distinct` seeded random images."""
    rng = np.random.default_rng(0)
    sources = os.path.join(root, "sources")
    os.makedirs(sources, exist_ok=True)
    for k in range(distinct):
        for side in (0, 1):
            path = os.path.join(sources, f"{side}_{k}.png")
            if not os.path.exists(path):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    dirs = (os.path.join(root, f"ref_{pairs}"), os.path.join(root, f"dist_{pairs}"))
    for side, folder in enumerate(dirs):
        os.makedirs(folder)
        for k in range(pairs):
            os.link(os.path.join(sources, f"{side}_{k % distinct}.png"), os.path.join(folder, f"{k:06d}.png"))
    return dirs


def run(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `command`, run in its own process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 3,000 pairs (CI)")
    parser.add_argument("--pairs", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (alex needs >= 31)")
    parser.add_argument("--distinct", type=int, default=200, help="different images per folder")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.quick:
        args.pairs = [1000, 3000]

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from keras_percept import LPIPS

    with tempfile.TemporaryDirectory() as root:
        keras.utils.set_random_seed(0)
        model = os.path.join(root, "alex.keras")
        LPIPS(net="alex").save(model)
        print(f"keras-percept distance DIR0 DIR1 --out d.csv, alex (random trunk), {args.size}x{args.size} PNGs, "
              f"batch {args.batch_size}")
        print(f"{'pairs':>8}  {'seconds':>8}  {'pairs/s':>8}  {'peak MB':>8}  {'all images MB':>13}")
        peaks = []
        for pairs in args.pairs:
            ref, dist = make_folders(root, pairs, args.size, args.distinct)
            out = os.path.join(root, f"d_{pairs}.csv")
            seconds, peak = run([sys.executable, "-m", "keras_percept.cli", "distance", ref, dist, "--out", out,
                                 "--model", model, "--batch-size", str(args.batch_size)])
            with open(out) as f:
                rows = sum(1 for _ in f) - 1
            if rows != pairs:
                raise SystemExit(f"{out} has {rows} rows; expected {pairs}")
            everything = 2 * pairs * args.size * args.size * 3 * 4 / 2**20
            print(f"{pairs:>8,}  {seconds:>8.1f}  {pairs / seconds:>8.0f}  {peak:>8.0f}  {everything:>13.0f}")
            peaks.append(peak)
        growth = peaks[-1] - peaks[0]
        print(f"peak memory from {args.pairs[0]:,} to {args.pairs[-1]:,} pairs: {growth:+.0f} MB")
        if growth > FLAT_TOLERANCE_MB:
            raise SystemExit(f"peak memory grew by {growth:.0f} MB > {FLAT_TOLERANCE_MB} MB: not bounded by the batch")


if __name__ == "__main__":
    main()
