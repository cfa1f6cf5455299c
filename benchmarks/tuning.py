"""Tuning benchmark: what a `lin` study gains over the default config, on the selection and on the test split.

    python benchmarks/tuning.py                 # the shipped search space, 50 trials, the default embedded set
    python benchmarks/tuning.py --trials 20
    python benchmarks/tuning.py --quick         # minutes: small data, 3 trials of 2 epochs (CI runs this)

Runs the default `lin` config (`configs/lin.yaml`) and a study of
`tuning/search.py` over `configs/search/lin.yaml` (TPE, median pruning), in a
fresh folder with its own MLflow store. Both choose on the selection split
(`data.selection_fraction` of the training triplets); the test split (the
val split) is scored once per row: the default run's metric and the best
trial retrained. Prints one table: selection 2AFC, test 2AFC and wall time
of the default config and of the best trial, and the gain of each, so the
gain on the selection split (what the study maximised, biased upwards by the
choice) can be read against the gain on the split no choice has seen.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# This script is named like the installed `tuning` package it drives: its own folder, first on the import
# path when run as `python benchmarks/tuning.py`, would shadow that package.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

QUICK = ["data.n_train=400", "data.n_val=210", "data.n_jnd=40"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, 3 trials of 2 epochs (minutes)")
    parser.add_argument("--trials", type=int, default=None, help="trials of the study (default 50; quick 3)")
    args = parser.parse_args(argv)
    trials = args.trials or (3 if args.quick else 50)
    overrides = QUICK + ["optim.epochs=2"] if args.quick else []

    import mlflow

    from keras_percept.training import load_config
    from keras_percept.training.run import run_training
    from tuning.search import main as search

    out = tempfile.mkdtemp(prefix="kp_tuning_bench_")
    uri = f"sqlite:///{os.path.join(out, 'mlflow.db')}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    print(f"output: {out}", flush=True)

    start = time.time()
    config = load_config(os.path.join(REPO, "configs", "lin.yaml"),
                         overrides=overrides + [f"output_dir={os.path.join(out, 'default')}", f"tracking_uri={uri}"])
    default = run_training(config, progress=False, verbose=0).best
    default_seconds = time.time() - start
    print(f"default config: selection {100 * default.selection_score:.2f} %, "
          f"test {100 * default.evaluation['lpips']['mean']:.2f} % ({default_seconds:.0f} s)", flush=True)

    start = time.time()
    study_overrides = [part for o in overrides for part in ("--set", o)]
    code = search(["--trials", str(trials), "--study-name", "bench", "--storage",
                   f"sqlite:///{os.path.join(out, 'optuna.db')}", "--output-dir", os.path.join(out, "trials"),
                   "--experiment", "tuning-benchmark", "--no-progress", *study_overrides])
    study_seconds = time.time() - start
    if code != 0:
        print(f"error: the study ended with exit code {code}", file=sys.stderr)
        return code
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tuning-benchmark")
    (parent,) = client.search_runs([experiment.experiment_id], filter_string="tags.`optuna.role` = 'study'")
    metrics = parent.data.metrics
    best = {"selection": metrics["best_value"], "test": metrics["best_test_2afc_mean"]}
    base = {"selection": default.selection_score, "test": default.evaluation["lpips"]["mean"]}

    print(f"\n`lin` on the embedded set{' (quick mode)' if args.quick else ''}: 2AFC (%); the study chose on "
          "the selection split only")
    header = f"{'config':<34}{'selection':>11}{'test':>9}{'wall s':>9}"
    print(header)
    print("-" * len(header))
    print(f"{'default (configs/lin.yaml)':<34}{100 * base['selection']:>11.2f}{100 * base['test']:>9.2f}"
          f"{default_seconds:>9.0f}")
    label = f"best of {trials} trials (#{int(metrics['best_trial'])})"
    print(f"{label:<34}{100 * best['selection']:>11.2f}{100 * best['test']:>9.2f}{study_seconds:>9.0f}")
    print(f"{'gain':<34}{100 * (best['selection'] - base['selection']):>+11.2f}"
          f"{100 * (best['test'] - base['test']):>+9.2f}")
    print(f"best trial's parameters: { {k[5:]: v for k, v in parent.data.tags.items() if k.startswith('best.')} }")
    return 0


if __name__ == "__main__":
    sys.exit(main())
