"""Training benchmark: wall time of the default `lin` run, and lin / tune / scratch vs. L2 / SSIM / PSNR.

    python benchmarks/training.py            # full: the shipped configs on the default embedded set
    python benchmarks/training.py --quick    # a few minutes: small data, 1 epoch (CI runs this)
    python benchmarks/training.py --judge cvvdp   # the set labelled by ColorVideoVDP (pip install cvvdp)
    python benchmarks/training.py --judge cvvdp --paradigms lin --set data.n_train=12000 --no-extras
                                                  # one variation of the set (size, families, patch size)

Prints, per paradigm, the wall time, the selection 2AFC (the split carved
from the training data that early stopping and restarts see) and the test
2AFC (%) per category on the embedded val split (held-out photographs and,
unless `data.hold_out_families=false`, distortion families; scored once),
next to the classical baselines scored by the same code; the speed-up of the cached-feature `lin` over `lin` through the
trunk; the L-BFGS `lin` solve; and a paired bootstrap comparison of `lin`
against the best classical baseline; then every metric's test 2AFC with
a bootstrap 95 % CI, among them the uncalibrated baseline (the ImageNet
EfficientNet-Lite0 trunk without linear layers), and paired tests of the
trained `lin` against it and against SSIM. Labels are from the simulated
observer (`--judge observer`) or ColorVideoVDP (`--judge cvvdp`), not from
people (see README, "Data").
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _config(paradigm: str, quick: bool, out: str, overrides=(), epochs: int | None = None, judge: str = "observer"):
    from keras_percept.training import load_config

    extra = [f"output_dir={out}", f"data.judge={judge}", *overrides] + ([f"optim.epochs={epochs}"] if epochs else [])
    if quick:
        extra += ["data.n_train=400", "data.n_val=210", "data.n_jnd=40", "optim.epochs=1"]
        if paradigm != "lin":
            extra.append("steps_per_epoch=3")
    return load_config(os.path.join(REPO, "configs", f"{paradigm}.yaml"), overrides=extra)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, 1 epoch (minutes)")
    parser.add_argument("--paradigms", nargs="+", default=["lin", "tune", "scratch"])
    parser.add_argument("--epochs", type=int, default=None, help="override optim.epochs of tune and scratch")
    parser.add_argument("--judge", default="observer", choices=("observer", "cvvdp"),
                        help="who labelled the embedded set (default observer)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, e.g. data.n_train=12000 (repeatable)")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the cached-vs-trunk timing and the L-BFGS solve after `lin`")
    args = parser.parse_args(argv)

    from keras_percept.metrics.comparison import compare_paired
    from keras_percept.training import train
    from keras_percept.training.evaluation import classical_distances, per_triplet_scores
    from keras_percept.training.run import run_training
    from keras_percept.training.trainer import test_datasets

    out = tempfile.mkdtemp(prefix="kp_bench_")
    rows, results = [], {}
    for paradigm in args.paradigms:
        config = _config(paradigm, args.quick, out, args.overrides,
                         epochs=None if paradigm == "lin" else args.epochs, judge=args.judge)
        if paradigm == "lin":
            config = dataclasses.replace(config, tracking_uri=f"sqlite:///{os.path.join(out, 'mlflow.db')}")
        if not results:  # the set is built (or found in the cache) before the clock starts; say how long it took
            start = time.time()
            root = _root(config)
            print(f"embedded set {os.path.basename(root)}: ready in {time.time() - start:.1f} s", flush=True)
        start = time.time()
        if paradigm == "lin":  # the default run, as `mlflow run . -P paradigm=lin` runs it (tracked)
            result = run_training(config, progress=False, verbose=0).best
        else:
            result = train(config, progress=False, verbose=0)
        seconds = time.time() - start
        results[paradigm] = result
        rows.append((paradigm, seconds, result.evaluation["lpips"]))
        print(f"[{paradigm}] {seconds:.1f} s, selection 2AFC {100 * result.selection_score:.2f}, "
              f"test 2AFC {100 * result.evaluation['lpips']['mean']:.2f}", flush=True)

    evaluation = next(iter(results.values())).evaluation
    categories = [c for c in evaluation["lpips"] if c != "mean"]
    print(f"\nTest 2AFC (%) on the embedded val split (never used for a choice), judge {args.judge}"
          + (" (quick mode)" if args.quick else ""))
    header = f"{'metric':<16}{'wall s':>8}" + "".join(f"{c[:11]:>12}" for c in categories) + f"{'mean':>8}"
    print(header)
    print("-" * len(header))
    for name, seconds, row in rows:
        print(f"{name:<16}{seconds:>8.1f}" + "".join(f"{100 * row[c]:>12.2f}" for c in categories)
              + f"{100 * row['mean']:>8.2f}")
    for name in ("l2", "ssim", "psnr"):
        row = evaluation[name]
        print(f"{name:<16}{'':>8}" + "".join(f"{100 * row[c]:>12.2f}" for c in categories)
              + f"{100 * row['mean']:>8.2f}")

    print_intervals(results, args.judge)  # before the runs below, which write to the same output folder

    if "lin" in results:
        lin = results["lin"]
        val = test_datasets(lin.config, _root(lin.config))
        best = max(("l2", "ssim", "psnr"), key=lambda n: evaluation[n]["mean"])
        metric = keras_load(lin.metric_path)
        cmp = compare_paired(per_triplet_scores(lambda a, b: metric.predict_on_batch((a, b)), val),
                             per_triplet_scores(classical_distances()[best], val))
        print("\n" + cmp.describe("lin", best))
        beats = all(lin.evaluation["lpips"]["mean"] > evaluation[n]["mean"] for n in ("l2", "ssim", "psnr"))
        print(f"lin beats every classical baseline: {'yes' if beats else 'NO'}")
        if args.no_extras:
            return 0

        # Fast lin: the second epoch's time through the trunk vs. on cached channel means (cache warm).
        timings = {}
        for cache in (False, True):
            cfg = _config("lin", False, out, [*args.overrides, f"feature_cache={str(cache).lower()}",
                                              "optim.epochs=2", "model.dropout=0.0"], judge=args.judge)
            cfg = dataclasses.replace(cfg, data=lin.config.data)
            timer = EpochTimer()
            train(cfg, callbacks=[timer], progress=False, verbose=0)
            timings[cache] = timer.seconds[-1]
        print(f"\nlin, one epoch ({lin.config.data.n_train} triplets): through the trunk {timings[False]:.2f} s, "
              f"from cached means {timings[True]:.2f} s (x{timings[False] / timings[True]:.0f})")
        cfg = _config("lin", args.quick, out, [*args.overrides, "lin_solver=lbfgs", "model.comparison=difference"],
                      judge=args.judge)
        start = time.time()
        solved = train(cfg, progress=False, verbose=0)
        print(f"lin by L-BFGS (difference head): {time.time() - start:.1f} s, "
              f"{int(solved.history['lbfgs_iterations'][0])} iterations, test 2AFC "
              f"{100 * solved.evaluation['lpips']['mean']:.2f}")
    return 0


def print_intervals(results: dict, judge: str) -> None:
    """Every metric's test 2AFC with a bootstrap 95 % CI; trained `lin` vs the baseline and vs SSIM, paired."""
    from keras_percept.convert import pretrained_lpips
    from keras_percept.metrics.comparison import compare_paired
    from keras_percept.training.evaluation import classical_distances, per_triplet_scores
    from keras_percept.training.trainer import test_datasets

    first = next(iter(results.values()))
    val = test_datasets(first.config, _root(first.config))
    baseline = pretrained_lpips("effnet-lite0")
    distances = {"baseline": lambda a, b: baseline.predict_on_batch((a, b)), **classical_distances()}
    for paradigm, result in results.items():
        metric = keras_load(result.metric_path)
        distances[paradigm] = lambda a, b, m=metric: m.predict_on_batch((a, b))
    scores = {name: per_triplet_scores(fn, val) for name, fn in distances.items()}
    print(f"\nTest 2AFC (%), judge {judge}, bootstrap 95 % CI (n = {scores['baseline'].size} triplets)")
    for name, s in scores.items():
        c = compare_paired(s, scores["baseline"])
        print(f"{name:<16}{100 * c.score_a:>8.2f}  [{100 * c.ci_a[0]:.2f}, {100 * c.ci_a[1]:.2f}]")
    if "lin" in scores:
        for other in ("baseline", "ssim"):
            print(compare_paired(scores["lin"], scores[other]).describe("lin", other))


def _root(config):
    from keras_percept.training.trainer import dataset_root

    return dataset_root(config, progress=False)


def EpochTimer():
    """A Keras callback recording each epoch's wall time in `.seconds`."""
    import keras

    class _Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.time() - self._start)

    return _Timer()


def keras_load(path):
    import keras

    import keras_percept  # noqa: F401

    return keras.saving.load_model(path)


if __name__ == "__main__":
    sys.exit(main())
