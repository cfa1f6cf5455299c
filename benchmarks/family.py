"""The metric family side by side on the embedded set: test 2AFC, shift flips, PGD score, speed.

    python benchmarks/family.py            # full (see the README for its time and numbers)
    python benchmarks/family.py --quick    # small data, 1 epoch, 1 seed (CI runs this)

Rows: L2, SSIM, the uncalibrated EfficientNet-Lite0 baseline; LPIPS-effnet (`lin`), a
DISTS-style head on EfficientNet-Lite0 (`lin`: alpha/beta), ST-LPIPS alex trained from scratch
here (`scratch`, net alex-st), E-LPIPS around the trained LPIPS-effnet, an adversarially trained
LPIPS-effnet (R-LPIPS: `lin` with `adversarial.norm: linf`); and the published ST-LPIPS alex of
the stlpips-pytorch wheel (trained by its authors on BAPPS, evaluated only). Offline only
EfficientNet-Lite0 has ImageNet weights, hence the effnet rows; the published alex/vgg/DISTS
metrics are proven by parity tests instead.

Protocol: every trained row is trained with `train()` on the fit part of the embedded train
split; early stopping (none here) and any choice see only the selection split carved from it;
the val split is the test split, scored once per seed. Trained rows give mean +- std over
`--seeds` seeds. Shift test: the reference shifted right by 1/2/3 px (crop + reflect), flip =
the order of d0 and d1 changes, over the whole test split. PGD: L-inf on the reference,
`--pgd-epsilon` in the [-1, 1] range, `--pgd-steps` steps, over the first `--pgd-triplets` test
triplets (E-LPIPS: each step's gradient averages its transforms, drawn afresh every step; its
2AFC and shift test use common random numbers, the same draws for every call). Speed:
forward pairs/s at 64 px, batch 50, on this process's backend. Labels come from the simulated
observer (see README, "Data"), not from people.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bfloat16 import cpu_line  # noqa: E402  (the CPU line every benchmark prints)


#: name -> (paradigm, config overrides, epochs: full run). `None` epochs: the config's (10).
TRAINED = {
    "LPIPS-effnet lin": ("lin", [], None),
    "DISTS-head effnet lin": ("lin", ["model.metric=dists", "optim.learning_rate=1e-3"], 3),
    "ST-LPIPS alex scratch": ("scratch", ["model.net=alex-st"], 3),
    "R-LPIPS effnet lin (PGD linf)": ("lin", ["adversarial.norm=linf", "adversarial.epsilon=0.0314",
                                              "adversarial.steps=2"], 3),
}


def _config(paradigm: str, overrides, epochs, seed: int, quick: bool, out: str):
    from keras_percept.training import load_config

    extra = [f"output_dir={out}", f"seed={seed}", *overrides]
    if quick:
        extra += ["data.n_train=300", "data.n_val=120", "data.n_jnd=20", "optim.epochs=1", "steps_per_epoch=3"]
    elif epochs:
        extra.append(f"optim.epochs={epochs}")
    return load_config(os.path.join(REPO, "configs", f"{paradigm}.yaml"), overrides=extra)


def _speed(fn, batches) -> float:
    fn(*batches[0])  # warm-up (graph tracing, allocation)
    start = time.perf_counter()
    for a, b in batches:
        fn(a, b)
    return sum(len(a) for a, _ in batches) / (time.perf_counter() - start)


def _figures(name, predict, differentiable, variables, val, pgd_val, attack, speed_batches) -> dict:
    from keras_percept.robustness import pgd_2afc, shift_test
    from keras_percept.training.evaluation import evaluate_2afc

    start = time.time()
    row = {"2afc": evaluate_2afc({name: predict}, {"all": val})[name]["all"]}
    row.update({k: v for k, v in shift_test({name: predict}, val)[name].items() if k.startswith("flip")})
    row["pgd"] = pgd_2afc(differentiable, pgd_val, attack, variables=variables)["2afc_pgd"] if differentiable else None
    row["pairs/s"] = _speed(predict, speed_batches)
    print(f"  {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if v is not None)
          + f" ({time.time() - start:.0f} s)", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, 1 epoch, 1 seed (minutes)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--pgd-epsilon", type=float, default=0.0314, help="in the [-1, 1] range (4/255 of [0, 1])")
    parser.add_argument("--pgd-steps", type=int, default=5)
    parser.add_argument("--pgd-triplets", type=int, default=200)
    parser.add_argument("--elpips-samples", type=int, default=4)
    args = parser.parse_args(argv)

    import keras

    from keras_percept.adversarial import PGD
    from keras_percept.convert import pretrained_lpips
    from keras_percept.data import load_2afc
    from keras_percept.models.ensemble import ELPIPS
    from keras_percept.robustness import l2_distance_ops, metric_distance
    from keras_percept.training import train
    from keras_percept.training.evaluation import classical_distances
    from keras_percept.training.trainer import dataset_root

    seeds = 1 if args.quick else args.seeds
    attack = PGD(args.pgd_epsilon, steps=1 if args.quick else args.pgd_steps)
    out = tempfile.mkdtemp(prefix="kp_family_")
    print(f"CPU: {cpu_line()}; Keras backend {keras.backend.backend()}", flush=True)
    root = dataset_root(_config("lin", [], None, 0, args.quick, out), progress=False)
    val = load_2afc(root, "val", batch_size=50)
    pgd_triplets = 30 if args.quick else args.pgd_triplets
    pgd_val = val.unbatch().take(pgd_triplets).batch(50)
    speed_batches = [(ref, p0) for (ref, p0, _), _ in val.take(2 if args.quick else 6).as_numpy_iterator()]

    def keras_rows(name, metric, variables=None):
        predict = lambda a, b, m=metric: keras.ops.convert_to_numpy(m.predict_on_batch((a, b)))  # noqa: E731
        return _figures(name, predict, metric_distance(metric), metric.variables if variables is None else variables,
                        val, pgd_val, attack, speed_batches)

    def elpips_rows(metric):
        """2AFC and shift test with common random numbers: every call starts from the seed, so d0 and d1, and
        the shifted and unshifted passes, see the same transforms (otherwise the flips measure the draws, not
        the shift). PGD with fresh draws at every step."""
        start = keras.ops.convert_to_numpy(metric.seed_generator.state)

        def predict(a, b):
            metric.seed_generator.state.assign(start)
            return keras.ops.convert_to_numpy(metric.predict_on_batch((a, b)))

        return _figures("elpips", predict, metric_distance(metric), metric.variables, val, pgd_val, attack,
                        speed_batches)

    table: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    classical = classical_distances()
    table["L2"] = [_figures("L2", classical["l2"], l2_distance_ops, (), val, pgd_val, attack, speed_batches)]
    table["SSIM"] = [_figures("SSIM", classical["ssim"], None, (), val, pgd_val, attack, speed_batches)]
    table["effnet baseline (no training)"] = [keras_rows("baseline", pretrained_lpips("effnet-lite0"))]
    table["ST-LPIPS alex published (BAPPS)"] = [keras_rows("st", pretrained_lpips("alex-st"))]
    for name, (paradigm, overrides, epochs) in TRAINED.items():
        rows, start = [], time.time()
        for seed in range(seeds):
            result = train(_config(paradigm, overrides, epochs, seed, args.quick, out), progress=False, verbose=0)
            metric = keras.saving.load_model(result.metric_path)
            rows.append(keras_rows(name, metric))
            if name == "LPIPS-effnet lin":
                table.setdefault(f"E-LPIPS ({args.elpips_samples} samples) of LPIPS-effnet", []).append(
                    elpips_rows(ELPIPS(metric, samples=args.elpips_samples, seed=seed)))
        seconds[name] = (time.time() - start) / seeds
        table[name] = rows
        print(f"[{name}] {seconds[name]:.0f} s per seed", flush=True)

    print(f"\nThe family on the embedded set{' (quick mode)' if args.quick else ''}: test 2AFC (%) on the val split "
          f"(scored once), shift flips (%), 2AFC (%) under {attack.describe()} on {pgd_triplets} test triplets, "
          f"forward pairs/s (64 px, batch 50); trained rows: mean +- std over {seeds} seed(s)")
    columns = ["2afc", "flip_1px", "flip_2px", "flip_3px", "pgd", "pairs/s"]
    header = f"{'metric':<40}" + "".join(f"{c:>14}" for c in columns) + f"{'train s/seed':>14}"
    print(header)
    print("-" * len(header))
    for name, rows in table.items():
        cells = []
        for column in columns:
            values = [r[column] for r in rows if r[column] is not None]
            if not values:
                cells.append(f"{'n/a':>14}")
                continue
            scale = 1.0 if column == "pairs/s" else 100.0
            mean, std = scale * float(np.mean(values)), scale * float(np.std(values))
            cells.append(f"{mean:>8.{0 if column == 'pairs/s' else 2}f} +-{std:>4.1f}" if len(values) > 1
                         else f"{mean:>14.{0 if column == 'pairs/s' else 2}f}")
        train_s = f"{seconds[name]:>14.0f}" if name in seconds else f"{'':>14}"
        print(f"{name:<40}" + "".join(cells) + train_s)
    print("\nSSIM has no PGD figure: this package computes it in NumPy (not differentiable).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
