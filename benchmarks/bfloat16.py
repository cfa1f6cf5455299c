"""bfloat16 against float32: accuracy on the embedded validation split, and speed against the reference.

    python benchmarks/bfloat16.py                  # full: the default embedded set, alex 64 px / vgg 256 px rows
    python benchmarks/bfloat16.py --quick          # a tiny set, small batches (CI runs this)

Accuracy (current KERAS_BACKEND): for each metric, `LPIPS(precision="bfloat16")` with the float32
metric's weights, both on every triplet of the embedded set's `val` split (d(ref, p0) and d(ref, p1)):
max and median relative error of the distances, Spearman correlation between the two, and the fraction
of 2AFC decisions (which of p0, p1 is closer) that agree. Metrics: EfficientNet-Lite0 with its real
ImageNet weights (the package's uncalibrated baseline, offline), and alex and vgg on a seeded random
trunk with the paper's linear weights (no ImageNet weights offline for those).

Speed (pairs/s, best of `--rounds`, warm-up excluded): the Keras metric in float32 and in bfloat16,
and the reference `lpips` package in float32 and under `torch.autocast("cpu", dtype=torch.bfloat16)`
(its fair bfloat16 counterpart), on the same seeded nets, in this one process, one after the other.
The CPU model and its bfloat16 flags are printed first; on a CPU without them the Keras metric warns
and runs float32.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))  # torch_reference: the reference package's nets

SPEED = {"full": {"alex": dict(size=64, batch=32, calls=10), "vgg": dict(size=256, batch=8, calls=2)},
         "quick": {"alex": dict(size=64, batch=4, calls=1), "vgg": dict(size=64, batch=2, calls=1)}}


def cpu_line() -> str:
    """`lscpu`'s model name and the CPU's vector and bfloat16 flags."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
    shown = [f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")]
    return f"{model} ({os.cpu_count()} cores; flags: {' '.join(shown) or 'none of avx2/avx512/amx'})"


def metrics(nets: list[str]) -> dict:
    """{name: float32 LPIPS}: EfficientNet-Lite0 (ImageNet, baseline) and seeded alex/vgg with official lins."""
    import keras

    from keras_percept.convert import convert_lpips, pretrained_lpips, split_lpips_state_dict
    from torch_reference import reference_lpips, state_dict_numpy

    out = {}
    for net in nets:
        if net == "effnet-lite0":
            out["effnet-lite0 (ImageNet)"] = pretrained_lpips("effnet-lite0")
        else:
            keras.utils.set_random_seed(0)
            trunk, _ = split_lpips_state_dict(state_dict_numpy(reference_lpips(net, seed=0)))
            out[f"{net} (seeded)"] = convert_lpips(net, trunk_weights=trunk, lin_weights="official")
    return out


def bfloat16_twin(metric):
    return metric.with_options(precision="bfloat16")


def accuracy(metric, twin, root: str, patch_size: int) -> dict:
    """The four accuracy figures of `twin` (bfloat16) against `metric` (float32) on `root`'s val triplets."""
    from scipy.stats import spearmanr

    from keras_percept.data import dataset_from_index, index_2afc

    full, half = [], []
    for (ref, p0, p1), _ in dataset_from_index(index_2afc(root, "val"), patch_size=patch_size, batch_size=50):
        ref, p0, p1 = (np.asarray(x) for x in (ref, p0, p1))
        full.append(np.stack([metric.distance(ref, p0), metric.distance(ref, p1)], axis=1))
        half.append(np.stack([twin.distance(ref, p0), twin.distance(ref, p1)], axis=1))
    full, half = np.concatenate(full), np.concatenate(half)
    relative = np.abs(half - full) / np.maximum(np.abs(full), 1e-12)
    agree = np.sign(full[:, 0] - full[:, 1]) == np.sign(half[:, 0] - half[:, 1])
    return {"triplets": len(full), "max_rel": float(relative.max()), "median_rel": float(np.median(relative)),
            "spearman": float(spearmanr(full.ravel(), half.ravel())[0]), "agree": float(agree.mean())}


def _best_rate(fn, batch: int, calls: int, rounds: int) -> float:
    fn()  # warm-up: tracing, compilation
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = max(best, calls * batch / (time.perf_counter() - start))
    return best


def speed(net: str, metric, twin, p: dict, rounds: int) -> dict:
    """pairs/s of the Keras metric (float32, bfloat16) and of the reference (float32, bfloat16 autocast)."""
    import torch

    from torch_reference import reference_lpips

    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (p["batch"], p["size"], p["size"], 3)).astype(np.float32)
    x1 = np.clip(x0 + rng.normal(0, 0.3, x0.shape), -1, 1).astype(np.float32)
    rates = {name: _best_rate(lambda m=m: m.predict_on_batch((x0, x1)), p["batch"], p["calls"], rounds)
             for name, m in (("keras float32", metric), ("keras bfloat16", twin))}
    reference = reference_lpips(net, seed=0)
    t0, t1 = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) for x in (x0, x1))
    with torch.no_grad():
        rates["reference float32"] = _best_rate(lambda: reference(t0, t1), p["batch"], p["calls"], rounds)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rates["reference bfloat16 autocast"] = _best_rate(lambda: reference(t0, t1), p["batch"], p["calls"],
                                                             rounds)
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny embedded set and small batches (CI)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per speed row; the best is kept")
    args = parser.parse_args(argv)

    import keras

    from keras_percept.data import embedded
    from keras_percept.models.lpips import cpu_has_bfloat16

    has_bf16 = cpu_has_bfloat16()
    print(f"CPU: {cpu_line()}; bfloat16 instructions: {has_bf16}; Keras backend {keras.backend.backend()}")
    if has_bf16 is False:
        print("NOTE: no bfloat16 instructions here: the Keras 'bfloat16' metric falls back to float32 (its rows "
              "below are float32), and the reference's autocast is emulated.")
    if args.quick:
        root = embedded.build(seed=1, n_train=20, n_val=40, n_jnd=10, patch_size=32, progress=False)  # cached
        patch, nets, mode, rounds = 32, ["effnet-lite0", "alex"], "quick", 1
    else:
        from keras_percept.training import load_config
        from keras_percept.training.trainer import dataset_root

        root = dataset_root(load_config(paradigm="lin"))  # the main job's default embedded set (cached)
        patch, nets, mode, rounds = 64, ["effnet-lite0", "alex", "vgg"], "full", args.rounds
    models = metrics(nets)
    print(f"\naccuracy of bfloat16 against float32, embedded val split ({patch} px):")
    print(f"{'metric':<26}{'triplets':>9}{'max rel':>10}{'median rel':>12}{'Spearman':>10}{'2AFC agree':>12}")
    for name, metric in models.items():
        a = accuracy(metric, bfloat16_twin(metric), root, patch)
        print(f"{name:<26}{a['triplets']:>9}{a['max_rel']:>10.2e}{a['median_rel']:>12.2e}{a['spearman']:>10.5f}"
              f"{100 * a['agree']:>11.2f}%")
    print("\nspeed, pairs/s (best of rounds), one process:")
    print(f"{'row':<20}{'keras fp32':>12}{'keras bf16':>12}{'ref fp32':>10}{'ref bf16 ac':>12}"
          f"{'bf16/ref fp32':>15}{'bf16/ref bf16':>15}")
    for net in ("alex", "vgg") if mode == "full" else ("alex",):
        p = SPEED[mode][net]
        metric = models[f"{net} (seeded)"]
        r = speed(net, metric, bfloat16_twin(metric), p, rounds)
        print(f"{net + ' ' + str(p['size']) + ' px b' + str(p['batch']):<20}{r['keras float32']:>12.1f}"
              f"{r['keras bfloat16']:>12.1f}{r['reference float32']:>10.1f}{r['reference bfloat16 autocast']:>12.1f}"
              f"{r['keras bfloat16'] / r['reference float32']:>14.2f}x"
              f"{r['keras bfloat16'] / r['reference bfloat16 autocast']:>14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
