"""The `keras-percept train` and `keras-percept evaluate` commands (the MLproject entry points).

MLflow passes every `-P` parameter as a string and casts no `int` / `float`
parameter, so both commands parse and validate their numbers here, naming
the parameter and the value on error. The string `none` means "not given:
keep the config's value".
"""

from __future__ import annotations

import json
import os

from keras_percept.atomic import atomic_write
from keras_percept.experiment.cli_args import none_or_text, optional_number, split_overrides
from keras_percept.training.config import NETS, PARADIGMS


def add_train(sub) -> None:
    p = sub.add_parser("train", help="Train an LPIPS paradigm (lin / tune / scratch) on 2AFC data, tracked in MLflow.")
    p.add_argument("--paradigm", default="lin", choices=PARADIGMS)
    p.add_argument("--config", default=None, help="YAML config (keys as in configs/lin.yaml); 'none': paradigm defaults")
    p.add_argument("--net", default=None, help=f"trunk: one of {', '.join(NETS)} or 'none' (config's)")
    p.add_argument("--epochs", type=optional_number(int, "--epochs"), default=None)
    p.add_argument("--batch-size", type=optional_number(int, "--batch-size"), default=None)
    p.add_argument("--lr", type=optional_number(float, "--lr"), default=None, help="learning rate")
    p.add_argument("--restarts", type=optional_number(int, "--restarts"), default=None,
                   help="train N seeds, keep the best on the selection split, report the test spread")
    p.add_argument("--seed", default=None, help="first seed (integer) or 'none'")
    p.add_argument("--strategy", default=None, help="auto, none, mirrored, multiworker, data_parallel")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set optim.schedule=cosine (repeatable; space-separated pairs accepted)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--summary-json", default=None, help="also write the scores and paths as JSON")
    p.set_defaults(func=run_train)


def train_overrides(args) -> list[str]:
    """Command-line options → `key=value` config overrides (validated later by the config)."""
    out = []
    if none_or_text(args.net) is not None:
        out.append(f"model.net={args.net}")
    for value, key in ((args.epochs, "optim.epochs"), (args.batch_size, "data.batch_size"),
                       (args.lr, "optim.learning_rate"), (args.restarts, "restarts")):
        if value is not None:
            out.append(f"{key}={value}")
    if none_or_text(args.seed) is not None:
        try:
            out.append(f"seed={int(args.seed)}")
        except ValueError:
            raise ValueError(f"--seed must be an integer or 'none'. Received: {args.seed!r}") from None
    if args.strategy:
        out.append(f"strategy={args.strategy}")
    return out + split_overrides(args.overrides)


def run_train(args) -> None:
    from keras_percept.training.config import load_config
    from keras_percept.training.run import format_summary, run_training, summary_dict

    config_path = none_or_text(args.config)
    if config_path is not None and not os.path.isfile(config_path):
        raise FileNotFoundError(f"--config must be a YAML file. Received: {config_path!r} (not found)")
    config = load_config(config_path, paradigm=args.paradigm, overrides=train_overrides(args))
    summary = run_training(config, track=not args.no_track)
    print(format_summary(summary))
    if args.summary_json:
        with atomic_write(args.summary_json) as f:
            json.dump(summary_dict(summary), f, indent=2)


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="Test 2AFC (the val split, per category) and JND mAP of a saved metric vs. L2/SSIM/PSNR.")
    p.add_argument("--model", required=True, help="a metric saved as .keras")
    p.add_argument("--dataset", default="embedded", help="'embedded' (default) or a BAPPS-layout root folder")
    p.add_argument("--against", default="l2",
                   help="paired comparison (bootstrap 95%% CI + permutation test) against l2, ssim, psnr or a .keras")
    p.add_argument("--batch-size", type=optional_number(int, "--batch-size"), default=50)
    p.add_argument("--shift", default="none",
                   help="robustness: the ST-LPIPS shift test at these pixel shifts of the reference, e.g. 1,2,3 "
                        "(flip rate and 2AFC of every distance); 'none' (default) skips it")
    p.add_argument("--pgd-epsilon", type=optional_number(float, "--pgd-epsilon"), default=None,
                   help="robustness: 2AFC of the metric (and L2) under a PGD attack of this radius in the [-1, 1] "
                        "range (0.0314 = 4/255 of [0, 1]); 'none' (default) skips it")
    p.add_argument("--pgd-steps", type=optional_number(int, "--pgd-steps"), default=10)
    p.add_argument("--pgd-norm", default="linf", choices=("linf", "l2"))
    p.add_argument("--pgd-target", default="ref", choices=("ref", "p0", "p1"), help="the image the attack moves")
    p.add_argument("--track", action="store_true", help="log the results to MLflow (on by default under mlflow run)")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args) -> None:
    import keras

    import keras_percept  # noqa: F401  (registers the layers for load_model)
    from keras_percept.data import load_2afc, load_2afc_by_category
    from keras_percept.metrics.comparison import compare_paired
    from keras_percept.training.evaluation import (
        classical_distances,
        evaluate_2afc,
        evaluate_jnd_folder,
        format_table,
        per_triplet_scores,
    )

    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"--model must be a saved .keras metric. Received: {args.model!r} (not found)")
    root = _evaluation_root(args.dataset)
    metric = keras.saving.load_model(args.model)
    fns = {"lpips": lambda a, b: metric.predict_on_batch((a, b)), **classical_distances()}
    if args.against.endswith(".keras"):
        other = keras.saving.load_model(args.against)
        fns["against"] = lambda a, b: other.predict_on_batch((a, b))
        against = "against"
    elif args.against in ("l2", "ssim", "psnr"):
        against = args.against
    else:
        raise ValueError(f"--against must be l2, ssim, psnr or a .keras file. Received: {args.against!r}")
    val = load_2afc_by_category(root, "val", batch_size=args.batch_size)
    table = evaluate_2afc(fns, val)
    comparison = compare_paired(per_triplet_scores(fns["lpips"], val), per_triplet_scores(fns[against], val))
    jnd = evaluate_jnd_folder(fns, root, batch_size=args.batch_size)
    print("test 2AFC (%) (the val split):")
    print(format_table(table))
    if jnd:
        print("JND mAP per category (%):")
        print(format_table(jnd))
    print(comparison.describe("lpips", args.against))
    robustness = _robustness(args, metric, fns, load_2afc(root, "val", batch_size=args.batch_size))
    if args.track or os.environ.get("MLFLOW_RUN_ID"):
        _log_evaluation(args, table, jnd, comparison, robustness)


def _robustness(args, metric, fns, val) -> dict[str, dict[str, float]]:
    """The shift test and the PGD score the arguments ask for, printed; `{distance: {figure: value}}`."""
    from keras_percept.adversarial import PGD
    from keras_percept.robustness import l2_distance_ops, metric_distance, pgd_2afc, shift_test
    from keras_percept.training.evaluation import format_table

    table: dict[str, dict[str, float]] = {}
    if args.shift.lower() != "none":
        try:
            shifts = tuple(int(s) for s in args.shift.split(","))
        except ValueError:
            raise ValueError(f"--shift must be pixel counts such as 1,2,3 or 'none'. Received: {args.shift!r}") from None
        table = shift_test(fns, val, shifts)
        print("shift test (reference shifted right; flip = the order of d0 and d1 changes) (%):")
        print(format_table({name: {k: v for k, v in row.items() if k.startswith("flip")} for name, row in table.items()}))
    if args.pgd_epsilon is not None:
        attack = PGD(args.pgd_epsilon, steps=args.pgd_steps, norm=args.pgd_norm, target=args.pgd_target)
        for name, distance, variables in (("lpips", metric_distance(metric), metric.variables),
                                          ("l2", l2_distance_ops, ())):
            table.setdefault(name, {}).update(
                {k: v for k, v in pgd_2afc(distance, val, attack, variables=variables).items() if k != "attacked"})
        print(f"2AFC (%) clean and under {attack.describe()}:")
        print(format_table({n: {"2afc": r["2afc"], "2afc_pgd": r["2afc_pgd"]} for n, r in table.items() if "2afc_pgd" in r}))
    return table


def _evaluation_root(dataset: str) -> str:
    if dataset == "embedded":
        from keras_percept.data import embedded

        return embedded.build(progress=True)
    if not os.path.isdir(os.path.join(dataset, "2afc")):
        raise FileNotFoundError(f"--dataset must be 'embedded' or a folder holding 2afc/. Received: {dataset!r}")
    return dataset


def _log_evaluation(args, table, jnd, comparison, robustness) -> None:
    from keras_percept.training.evaluation import format_table, jnd_metrics, twoafc_metrics
    from keras_percept.experiment.tracking import DEFAULT_TRACKING_URI, import_mlflow

    mlflow = import_mlflow()
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
    with mlflow.start_run(run_name="evaluate"):
        mlflow.log_params({"model": args.model, "dataset": args.dataset, "against": args.against,
                           "shift": args.shift, "pgd_epsilon": args.pgd_epsilon, "pgd_steps": args.pgd_steps,
                           "pgd_norm": args.pgd_norm, "pgd_target": args.pgd_target})
        mlflow.log_metrics({f"robust_{name}_{figure}": value for name, row in robustness.items()
                            for figure, value in row.items()})
        mlflow.log_metrics(twoafc_metrics(table, "test"))
        mlflow.log_metrics(jnd_metrics(jnd))
        mlflow.log_metrics({"diff_vs_against": comparison.difference, "diff_ci_low": comparison.ci_difference[0],
                            "diff_ci_high": comparison.ci_difference[1], "paired_p_value": comparison.p_value})
        mlflow.log_text(format_table(table) + "\n" + comparison.describe("lpips", args.against),
                        "evaluation/2afc_table.txt")
        if jnd:
            mlflow.log_text(format_table(jnd), "evaluation/jnd_table.txt")
