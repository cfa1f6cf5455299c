"""2AFC scores of L2, SSIM and PSNR on the embedded validation split: the floor a learned metric must beat.

    python benchmarks/classical_baselines.py            # default embedded dataset (built once, then cached)
    python benchmarks/classical_baselines.py --quick    # a small validation set, for CI (< 60 s)
    python benchmarks/classical_baselines.py --root DIR # any BAPPS-layout folder, e.g. the real BAPPS
    python benchmarks/classical_baselines.py --judge cvvdp  # the set labelled by ColorVideoVDP

Rows: each classical distance; "observer model" ranks by the simulated
observer's noise-free perceived magnitude and "cvvdp JOD" by ColorVideoVDP's
JOD, whichever judged the set (embedded set only), and "majority
ceiling" is the score of always siding with the majority, the most any
metric can reach on these soft labels. Columns: the validation categories
(distortion groups; "mixed" pairs two groups) and their mean, in percent.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

QUICK = dict(n_train=7, n_val=700, n_jnd=600)


def score_table(root: str) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """({row: {category: 2AFC score, "mean": mean over categories}}, {row: JND mAP})."""
    from keras_percept.data import load_2afc_by_category, load_jnd
    from keras_percept.metrics.classical import CLASSICAL_DISTANCES
    from keras_percept.metrics.twoafc import jnd_map, two_afc_score

    table: dict[str, dict[str, float]] = {name: {} for name in CLASSICAL_DISTANCES}
    table["majority ceiling"] = {}
    for category, ds in load_2afc_by_category(root, "val", value_range="[0,1]", batch_size=256).items():
        batches = [([np.asarray(x) for x in images], np.asarray(judge)) for images, judge in ds]
        judge = np.concatenate([h for _, h in batches])
        for name, fn in CLASSICAL_DISTANCES.items():
            d0 = np.concatenate([fn(ref, p0, value_range="[0,1]") for (ref, p0, _), _ in batches])
            d1 = np.concatenate([fn(ref, p1, value_range="[0,1]") for (ref, _, p1), _ in batches])
            table[name][category] = two_afc_score(d0, d1, judge)
        table["majority ceiling"][category] = float(np.mean(np.maximum(judge, 1 - judge)))
    judge_row = _judge_row(root)
    if judge_row:
        table[judge_row[0]] = judge_row[1]
    for row in table.values():
        row["mean"] = float(np.mean(list(row.values())))

    jnd = {}
    if os.path.isdir(os.path.join(root, "jnd", "val")):
        batches = [([np.asarray(x) for x in images], np.asarray(same)) for images, same in
                   load_jnd(root, value_range="[0,1]", batch_size=256)]
        same = np.concatenate([s for _, s in batches])
        for name, fn in CLASSICAL_DISTANCES.items():
            d = np.concatenate([fn(p0, p1, value_range="[0,1]") for (p0, p1), _ in batches])
            jnd[name] = jnd_map(d, same)
    return table, jnd


def _judge_row(root: str) -> tuple[str, dict[str, float]] | None:
    """(name, 2AFC score) of the judge's noise-free ranking: observer magnitude or cvvdp JOD (embedded sets only)."""
    from keras_percept.data import embedded
    from keras_percept.data.embedded.observer import magnitude
    from keras_percept.metrics.twoafc import two_afc_score

    if not os.path.isfile(os.path.join(root, "metadata", "2afc_val.csv")):
        return None
    rows = embedded.read_metadata(root, "2afc_val")
    by_cvvdp = "jod0" in rows[0]
    scores = {}
    for category in dict.fromkeys(r["category"] for r in rows):
        mine = [r for r in rows if r["category"] == category]
        if by_cvvdp:  # 10 - JOD is ColorVideoVDP's distance to the reference
            q0, q1 = ([10.0 - r[f"jod{k}"] for r in mine] for k in (0, 1))
        else:
            q0 = [magnitude(r["family0"], r["severity0"], r["texture"]) for r in mine]
            q1 = [magnitude(r["family1"], r["severity1"], r["texture"]) for r in mine]
        scores[category] = two_afc_score(q0, q1, [r["label"] for r in mine])
    return ("cvvdp JOD" if by_cvvdp else "observer model"), scores


def iqa_table(root: str, *, seed: int = 0) -> dict[str, dict[str, float]]:
    """Test SRCC / PLCC of each classical distance (negated: a quality score) on the embedded MOS test split.

    The split is `embedded_mos(root, split="val", seed=seed)`, the test split of
    `keras-percept iqa compare-losses` (configs/iqa/compare.yaml: n_test null, seed 0).
    """
    from PIL import Image

    from keras_percept.data.mos import embedded_mos
    from keras_percept.metrics.classical import CLASSICAL_DISTANCES
    from keras_percept.metrics.iqa import iqa_scores

    table = embedded_mos(root, split="val", seed=seed)
    read = lambda paths: np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]) / 255.0  # noqa: E731
    images, refs = read(table.paths), read(table.ref_paths)
    out = {}
    for name, fn in CLASSICAL_DISTANCES.items():
        scores = iqa_scores(table.mos, -fn(images, refs, value_range="[0,1]"))
        out[name] = {"srcc": scores["srcc"], "plcc": scores["plcc"]}
    return out


def format_table(table: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(table.values())))
    width = max(len(n) for n in table) + 2
    lines = [f"{'2AFC %':<{width}}" + "".join(f"{c[:11]:>12}" for c in columns)]
    lines += [f"{name:<{width}}" + "".join(f"{100 * row[c]:>12.1f}" for c in columns) for name, row in table.items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"small validation set {QUICK}")
    parser.add_argument("--root", help="a BAPPS-layout folder instead of the embedded dataset")
    parser.add_argument("--seed", type=int, default=0, help="embedded dataset seed (default 0)")
    parser.add_argument("--judge", default="observer", choices=("observer", "cvvdp"),
                        help="who labels the embedded set (default observer)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.root:
        root = args.root
    else:
        from keras_percept.data import embedded

        root = embedded.build(seed=args.seed, judge=args.judge, **(QUICK if args.quick else {}))
        manifest = embedded.read_manifest(root)
        print(f"embedded dataset {root}\n  counts: {sum(v for k, v in manifest['counts'].items() if '2afc/val' in k)} "
              f"val triplets, {sum(v for k, v in manifest['counts'].items() if k.startswith('jnd'))} JND pairs; "
              f"generated in {manifest['generation_seconds']} s; judge {manifest.get('judge', 'observer')}; "
              "labels are simulated, not human judgments")
    table, jnd = score_table(root)
    print(format_table(table))
    if jnd:
        print("JND mAP %   " + "   ".join(f"{name} {100 * v:.1f}" for name, v in jnd.items()))
    if not args.root:
        iqa = iqa_table(root)
        print(f"IQA on the embedded MOS test split ({manifest.get('judge', 'observer')}): "
              + "   ".join(f"{name} SRCC {v['srcc']:.3f} PLCC {v['plcc']:.3f}" for name, v in iqa.items()))
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
