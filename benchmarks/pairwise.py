"""Distance matrix benchmark: `LPIPS.pairwise` (each image through the trunk once) vs every pair through the trunk.

    python benchmarks/pairwise.py                # N = 64 images of 64 x 64, alex (the README's number)
    python benchmarks/pairwise.py --quick        # N = 16 images of 32 x 32 (CI)
    KERAS_BACKEND=jax python benchmarks/pairwise.py --n 32 --size 128 --net vgg

"Pair by pair" is what the all-pairs mode of `keras-percept distance DIR` does: the N(N-1)/2 pairs
through `LPIPS.distance` in batches of 32, the trunk run on both images of every pair. The trunk
is seeded random (the speed does not depend on its weights). Each side runs once to warm up
(tracing, compilation), then `--rounds` times; the best round is kept. The matrices must agree
to 1e-6.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from keras_percept import LPIPS


def best_time(fn, rounds: int) -> tuple[float, np.ndarray]:
    result = fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 16, 32 x 32, one round")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--net", default="alex")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.n, args.size, args.rounds = 16, 32, 1

    keras.utils.set_random_seed(0)
    metric = LPIPS(net=args.net)
    images = np.random.default_rng(0).uniform(-1, 1, (args.n, args.size, args.size, 3)).astype("float32")
    rows, cols = np.triu_indices(args.n, k=1)

    def pair_by_pair() -> np.ndarray:
        return metric.distance(images[rows], images[cols], batch_size=args.batch_size)

    matrix_seconds, matrix = best_time(lambda: metric.pairwise(images, batch_size=args.batch_size), args.rounds)
    pairs_seconds, pairs = best_time(pair_by_pair, args.rounds)
    diff = float(np.abs(matrix[rows, cols] - pairs).max())
    print(f"{keras.backend.backend()}, {args.net}, N = {args.n} images of {args.size}x{args.size}, "
          f"{len(rows)} pairs, batch {args.batch_size}, best of {args.rounds}")
    print(f"  pair by pair (the trunk on both images of each pair): {pairs_seconds:.3f} s "
          f"({len(rows) / pairs_seconds:.0f} pairs/s)")
    print(f"  pairwise (each image through the trunk once):        {matrix_seconds:.3f} s "
          f"({len(rows) / matrix_seconds:.0f} pairs/s)")
    print(f"  speedup {pairs_seconds / matrix_seconds:.1f}x; max |difference| {diff:.1e}")
    if diff > 1e-6:
        raise SystemExit(f"pairwise differs from pair-by-pair distances by {diff:.2e} > 1e-6")


if __name__ == "__main__":
    main()
