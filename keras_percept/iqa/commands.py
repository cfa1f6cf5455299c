"""`keras-percept iqa train` and `keras-percept iqa compare-losses` (the MLproject entry point `iqa_compare`).

As for the 2AFC commands, MLflow passes parameters as strings; `none` means
"not given: keep the config's value".
"""

from __future__ import annotations

import argparse
import os

from keras_percept.experiment.cli_args import none_or_text, optional_number, split_overrides


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"--quick must be true or false. Received: {text!r}")
    return value in ("true", "1", "yes")


def _config_path(text):
    path = none_or_text(text)
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"--config must be a YAML file. Received: {path!r} (not found)")
    return path


def add_iqa(sub) -> None:
    iqa = sub.add_parser("iqa", help="Image-quality regression (MOS): train one model, or compare losses.")
    commands = iqa.add_subparsers(dest="iqa_command", required=True)

    t = commands.add_parser("train", help="Train one IQA model (tracked in MLflow).")
    t.add_argument("--config", default=None, help="YAML config (keys as in configs/iqa/compare.yaml)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set loss_type=srcc (repeatable)")
    t.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    t.set_defaults(func=run_iqa_train)

    c = commands.add_parser("compare-losses", help="One model per loss (and seed), everything else fixed; "
                                                   "table and bar plot in MLflow.")
    c.add_argument("--config", default="configs/iqa/compare.yaml", help="YAML config with a `compare:` block")
    c.add_argument("--losses", default=None, help="comma-separated, e.g. l1,l2,srcc,rank,fidelity (default: config's)")
    c.add_argument("--seeds", type=optional_number(int, "--seeds"), default=None, help="repeats per loss (default: config's)")
    c.add_argument("--quick", nargs="?", const="true", default="false", type=_bool,
                   help="the config's `compare.quick` settings (CI); `--quick false` for MLflow's parameter")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (repeatable; space-separated pairs accepted)")
    c.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    c.set_defaults(func=run_compare_losses)


def run_iqa_train(args) -> None:
    from keras_percept.experiment.run import run_experiment
    from keras_percept.iqa.config import load_iqa_config
    from keras_percept.iqa.task import IQA

    config = load_iqa_config(_config_path(args.config), overrides=split_overrides(args.overrides))
    summary = run_experiment(IQA, config, track=not args.no_track, verbose=2)
    best = summary.best
    if summary.run_id:
        print(f"MLflow run: {summary.run_id}")
    if len(summary.scores) > 1:
        print(f"the best of {len(summary.scores)} restarts on the validation SRCC: seed {best.config.seed}")
    if best.val_scores:
        print("selection (validation split): " + ", ".join(f"{k} {v:.4f}" for k, v in best.val_scores.items()))
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in best.scores.items()))
    print(f"model saved: {os.path.abspath(best.model_path)} ({best.seconds:.1f} s)")


def run_compare_losses(args) -> None:
    from keras_percept.iqa.compare import compare_losses

    losses = None if none_or_text(args.losses) is None else [s.strip() for s in args.losses.split(",") if s.strip()]
    compare_losses(_config_path(args.config), losses=losses, seeds=args.seeds, quick=args.quick,
                   overrides=split_overrides(args.overrides), track=not args.no_track)
