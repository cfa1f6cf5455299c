"""Input pipeline throughput vs. the training step of an LPIPS model: is the pipeline the bottleneck?

    python benchmarks/data_pipeline.py           # default embedded dataset (4000 training triplets)
    python benchmarks/data_pipeline.py --quick   # smaller, for CI (< 60 s)
    KERAS_BACKEND=jax python benchmarks/data_pipeline.py

Rows, in triplets per second (batch 50, the reference's):
- pipeline: `load_2afc` over the embedded training split (read PNGs, decode,
  shuffle, batch), alone, then with crop + flip + mixup augmentation;
- model step: `train_on_batch` of `LPIPS(net="alex", lpips=True)` (random
  trunk weights: the speed is the same as pretrained) with a small ranking
  head and binary cross-entropy, on a batch already in memory;
- fit: `model.fit` over one batch held in memory (no input cost), then over
  the pipeline (both competing for the cores); the difference is what input costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

QUICK = dict(n_train=700, n_val=7, n_jnd=6)


def pipeline_rate(root: str, batch_size: int, augment=None, epochs: int = 2) -> float:
    """Triplets/s of iterating the training split `epochs` times (after one warm-up batch)."""
    from keras_percept.data import load_2afc

    ds = load_2afc(root, "train", shuffle=True, batch_size=batch_size, augment=augment, verify="header")
    next(iter(ds))
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
        for _, judge in ds:
            count += int(judge.shape[0])
    return count / (time.perf_counter() - start)


def build_model(net: str):
    """LPIPS distances d0, d1 → a small ranking head → P(p1 preferred), trained with binary cross-entropy."""
    import keras

    from keras_percept.models import LPIPS

    metric = LPIPS(net=net, lpips=True, dropout=0.5)
    ref, p0, p1 = (keras.Input((64, 64, 3), name=n) for n in ("ref", "p0", "p1"))
    d0, d1 = metric((ref, p0)), metric((ref, p1))
    features = keras.layers.Concatenate()([keras.layers.Reshape((1,))(d) for d in (d0, d1)])
    prob = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(8, activation="relu")(features))
    model = keras.Model((ref, p0, p1), keras.layers.Reshape(())(prob))
    model.compile(keras.optimizers.Adam(1e-4, beta_1=0.5), "binary_crossentropy")
    return model


def model_rate(model, batch_size: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    x = tuple(rng.uniform(-1, 1, (batch_size, 64, 64, 3)).astype("float32") for _ in range(3))
    y = rng.uniform(0, 1, batch_size).astype("float32")
    model.train_on_batch(x, y)  # compile / trace
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start)


def fit_rate(model, ds, batch_size: int, steps: int, warmup: int = 3) -> float:
    """Triplets/s of one `model.fit` over an endless dataset, timed after `warmup` batches."""
    import keras

    stamps = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps[batch] = time.perf_counter()

    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    return steps * batch_size / (stamps[warmup + steps - 1] - stamps[warmup - 1])


def in_memory_batches(batch_size: int):
    """One random batch repeated forever: `fit` with no input cost."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tuple(rng.uniform(-1, 1, (batch_size, 64, 64, 3)).astype("float32") for _ in range(3))
    return tf.data.Dataset.from_tensors((x, rng.uniform(0, 1, batch_size).astype("float32"))).repeat()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"small dataset {QUICK} and few steps")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--net", default="alex", help="LPIPS trunk (default alex)")
    args = parser.parse_args(argv)

    import keras

    from keras_percept.data import TripletAugmentation, embedded, index_2afc

    root = embedded.build(**(QUICK if args.quick else {}))
    n_train = embedded.read_manifest(root)["params"]["n_train"]
    start = time.perf_counter()
    index_2afc(root, "train")
    verify_s = time.perf_counter() - start

    rows = [
        ("pipeline: read + decode + shuffle + batch", pipeline_rate(root, args.batch_size)),
        ("pipeline + crop 56 / flip / mixup 0.4", pipeline_rate(
            root, args.batch_size, TripletAugmentation(crop_size=56, flip_left_right=True, mixup_alpha=0.4))),
    ]
    model = build_model(args.net)
    steps = 5 if args.quick else 20
    rows.append((f"model step: LPIPS({args.net}, lin) + head, in memory", model_rate(model, args.batch_size, steps)))
    from keras_percept.data import load_2afc

    pipeline = load_2afc(root, "train", shuffle=True, batch_size=args.batch_size, drop_remainder=True,
                         verify="header").repeat()
    rows.append(("model.fit on one batch held in memory", fit_rate(model, in_memory_batches(args.batch_size),
                                                                  args.batch_size, 3 * steps)))
    rows.append(("model.fit reading the pipeline", fit_rate(model, pipeline, args.batch_size, 3 * steps)))

    print(f"backend {keras.backend.backend()}, {os.cpu_count()} cores, batch {args.batch_size}, "
          f"{n_train} training triplets; one-off index + full image check: {verify_s:.1f} s")
    print(f"{'stage':<48}{'triplets/s':>12}{'ms/batch':>10}")
    for name, rate in rows:
        print(f"{name:<48}{rate:>12.0f}{1000 * args.batch_size / rate:>10.1f}")
    ratio = rows[0][1] / rows[2][1]
    slowdown = 1 - rows[4][1] / rows[3][1]
    verdict = "not the bottleneck" if ratio > 1.5 else "a possible bottleneck"
    print(f"The pipeline alone delivers {ratio:.1f}x what the model step consumes: it is {verdict}. "
          f"Sharing the {os.cpu_count()} cores with decoding makes fit {100 * slowdown:.0f}% slower than "
          "from memory.")

if __name__ == "__main__":
    main()
