"""The loss comparison: one IQA model per loss (and seed), everything else fixed, as MLflow runs under one parent.

`keras-percept iqa compare-losses --config configs/iqa/compare.yaml` runs
it; the table (loss, test SRCC and PLCC mean ± std over seeds, ΔSRCC vs.
L1 and whether it is within the seed spread, the validation SRCC, wall
time, status) is printed and logged to the parent run as Markdown and CSV,
with a bar plot. Selection (early stopping) uses the validation split
carved from the training images; the reported SRCC/PLCC are on the test
split, which no run looks at before its weights are final.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
import tempfile
import time
from typing import Any, Sequence

from keras_percept.atomic import atomic_path
from keras_percept.iqa.config import LOSS_TYPES, load_iqa_config, read_config_file
from keras_percept.experiment.run import mean_and_spread

COMPARE_KEYS = ("losses", "seeds", "loss_kwargs", "quick")


@dataclasses.dataclass
class RunRecord:
    """One (loss, seed) run: its test and validation scores (empty when it failed), wall time, status, MLflow run id."""

    loss: str
    seed: int
    scores: dict[str, float]
    seconds: float
    status: str
    run_id: str | None = None
    error: str | None = None
    val_scores: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Comparison:
    """All runs of a comparison and its summary table."""

    runs: list[RunRecord]
    losses: list[str]
    seeds: list[int]
    parent_run_id: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One row per loss: test SRCC / PLCC mean and std over its finished seeds, Δ SRCC vs. L1, spread flag,
        validation SRCC mean, time, status.

        `within_spread` is True when |Δ SRCC| <= the larger of the two losses'
        seed standard deviations: such a difference is not distinguishable
        from initialisation and shuffling luck. It is None with one seed.
        """
        stats = {}
        for loss in self.losses:
            done = [r for r in self.runs if r.loss == loss and r.status == "FINISHED"]
            srcc = [r.scores["srcc"] for r in done]
            plcc = [r.scores["plcc"] for r in done]
            val = [r.val_scores["srcc"] for r in done if "srcc" in r.val_scores]
            stats[loss] = {
                "val_srcc": sum(val) / len(val) if val else math.nan,
                "srcc": mean_and_spread(srcc) if srcc else (math.nan, math.nan),
                "plcc": mean_and_spread(plcc) if plcc else (math.nan, math.nan),
                "n_ok": len(done),
                "seconds": [r.seconds for r in self.runs if r.loss == loss],
            }
        out = []
        base = stats.get("l1")
        for loss in self.losses:
            s = stats[loss]
            delta, within = math.nan, None
            if base is not None and s["n_ok"] and base["n_ok"]:
                delta = s["srcc"][0] - base["srcc"][0]
                if len(self.seeds) > 1 and loss != "l1":
                    within = abs(delta) <= max(s["srcc"][1], base["srcc"][1])
            n = sum(r.loss == loss for r in self.runs)
            out.append({
                "loss": loss, "srcc_mean": s["srcc"][0], "srcc_std": s["srcc"][1], "plcc_mean": s["plcc"][0],
                "plcc_std": s["plcc"][1], "delta_srcc_vs_l1": delta, "within_spread": within,
                "val_srcc_mean": s["val_srcc"],
                "seconds_per_run": sum(s["seconds"]) / max(1, len(s["seconds"])),
                "status": "ok" if s["n_ok"] == n else f"FAILED {n - s['n_ok']}/{n}",
            })
        return out

    def markdown(self) -> str:
        """The table as Markdown, with a line on what the spread flag means."""
        lines = ["| loss | test SRCC | test PLCC | Δ test SRCC vs L1 | val SRCC (selection) | wall s/run | status |",
                 "|---|---|---|---|---|---|---|"]
        for row in self.rows():
            val = "—" if math.isnan(row["val_srcc_mean"]) else f"{row['val_srcc_mean']:.4f}"
            lines.append(f"| {row['loss']} | {_pm(row['srcc_mean'], row['srcc_std'])} | "
                         f"{_pm(row['plcc_mean'], row['plcc_std'])} | {_delta(row)} | {val} | "
                         f"{row['seconds_per_run']:.1f} | {row['status']} |")
        lines.append("")
        lines.append(f"mean ± std over {len(self.seeds)} seed(s) {self.seeds}. Test SRCC/PLCC: on the untouched test "
                     "split, scored once with the weights kept (PLCC after the 4-parameter logistic mapping). "
                     "Val SRCC: on the validation split carved from the training images, which alone drives "
                     "early stopping (selection, not a result).")
        if len(self.seeds) > 1:
            lines.append("'(within seed spread)': |ΔSRCC| <= the larger seed std of the two losses, "
                         "so the difference is not distinguishable from seed luck.")
        else:
            lines.append("One seed: no spread, so no difference can be called real.")
        return "\n".join(lines)

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows()[0]))
        writer.writeheader()
        writer.writerows(self.rows())
        return buffer.getvalue()


def _pm(mean: float, std: float) -> str:
    return "—" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}"


def _delta(row) -> str:
    if math.isnan(row["delta_srcc_vs_l1"]):
        return "—"
    if row["loss"] == "l1":
        return "0 (reference)"
    note = {True: " (within seed spread)", False: " (beyond seed spread)", None: ""}[row["within_spread"]]
    return f"{row['delta_srcc_vs_l1']:+.4f}{note}"


def compare_settings(config_path: str | None, *, losses: Sequence[str] | None = None, seeds: int | None = None,
                     quick: bool = False) -> tuple[list[str], int, dict[str, dict], list[str]]:
    """(losses, number of seeds, per-loss kwargs, extra overrides) from the YAML `compare:` block and the options."""
    block = read_config_file(config_path).get("compare") or {}
    unknown = set(block) - set(COMPARE_KEYS)
    if unknown:
        raise ValueError(f"Unknown keys {sorted(unknown)} in `compare`. Known keys: {list(COMPARE_KEYS)}")
    quick_block = dict(block.get("quick") or {}) if quick else {}
    chosen = list(losses or block.get("losses") or LOSS_TYPES)
    for loss in chosen:
        if loss not in LOSS_TYPES:
            raise ValueError(f"`losses` must be among {list(LOSS_TYPES)}. Received: {loss!r}")
    n_seeds = seeds or quick_block.get("seeds") or block.get("seeds") or 1
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"`seeds` must be a positive integer. Received: {n_seeds!r}")
    per_loss = dict(block.get("loss_kwargs") or {})
    return chosen, n_seeds, per_loss, list(quick_block.get("overrides") or [])


def compare_losses(config_path: str | None = None, *, losses: Sequence[str] | None = None, seeds: int | None = None,
                   quick: bool = False, overrides: Sequence[str] = (), track: bool = True,
                   out=None) -> Comparison:
    """Trains one model per (loss, seed) with everything else fixed; returns (and logs) the comparison.

    Every run is an MLflow child run (params, per-epoch validation metrics
    `selection_srcc` etc. (Keras's `val_srcc`), final `test_srcc` etc. and `selected_val_srcc` etc.,
    status) of one parent run, which gets the table
    (`comparison/table.md`, `comparison/table.csv`), per-loss summary
    metrics and a bar plot with error bars (`comparison/srcc_plcc.png`). A
    run that raises or diverges (NaN) ends FAILED with `error.txt`, and the
    comparison goes on. Under `mlflow run` the project's run is the parent.
    The MOS tables (read once) and the pooled trunk features (once per seed)
    are shared between the runs.

    Example:

    >>> comparison = compare_losses("configs/iqa/compare.yaml", quick=True)  # doctest: +SKIP
    >>> print(comparison.markdown())  # doctest: +SKIP
    """
    out = sys.stdout if out is None else out  # looked up per call (pytest and others replace sys.stdout)
    chosen, n_seeds, per_loss, quick_overrides = compare_settings(config_path, losses=losses, seeds=seeds,
                                                                  quick=quick)
    base = load_iqa_config(config_path, overrides=[*quick_overrides, *overrides])
    seed_list = [base.seed + k for k in range(n_seeds)]
    plan = [(seed, loss) for seed in seed_list for loss in chosen]
    runs: list[RunRecord] = []
    memo: dict = {}

    def run_all(parent_id=None):
        for k, (seed, loss) in enumerate(plan, 1):
            run_overrides = [*quick_overrides, *overrides, f"loss_type={loss}", f"seed={seed}"]
            run_overrides += [f"loss_kwargs.{key}={value}" for key, value in (per_loss.get(loss) or {}).items()]
            print(f"[{k}/{len(plan)}] loss {loss}, seed {seed} ...", file=out, flush=True)
            record = _one_run(config_path, run_overrides, loss, seed, track, memo)
            runs.append(record)
            done = (f"SRCC {record.scores['srcc']:.4f}, PLCC {record.scores['plcc']:.4f}"
                    if record.status == "FINISHED" else f"FAILED: {record.error}")
            print(f"[{k}/{len(plan)}] loss {loss}, seed {seed}: {done} ({record.seconds:.0f} s)", file=out,
                  flush=True)
        return Comparison(runs, chosen, seed_list, parent_id)

    if not track:
        comparison = run_all()
    else:
        from keras_percept.experiment.tracking import import_mlflow, mlflow_run

        mlflow = import_mlflow()
        start = time.time()
        with mlflow_run(base, run_name="iqa compare-losses", tags={"iqa.role": "compare"}) as parent:
            mlflow.log_params({"compare.losses": ",".join(chosen), "compare.seeds": n_seeds,
                               "compare.quick": quick})
            comparison = run_all(parent.info.run_id)
            _log_comparison(comparison, wall=time.time() - start)
    print(comparison.markdown(), file=out, flush=True)
    return comparison


def _one_run(config_path, run_overrides, loss: str, seed: int, track: bool, memo: dict) -> RunRecord:
    import keras

    from keras_percept.iqa.trainer import check_finite_run, train_iqa

    start = time.time()
    run_id = None
    try:
        config = load_iqa_config(config_path, overrides=run_overrides)
        if not track:
            result = train_iqa(config, verbose=0, feature_memo=memo)
            check_finite_run(result)
        else:
            from keras_percept.experiment.tracking import MLflowEpochLogger, import_mlflow, mlflow_run

            mlflow = import_mlflow()
            with mlflow_run(config, run_name=f"{loss} seed {seed}", nested=True,
                            tags={"iqa.role": "loss_run", "iqa.loss": loss, "iqa.seed": str(seed)}) as run:
                run_id = run.info.run_id
                result = train_iqa(config, callbacks=[MLflowEpochLogger()], verbose=0, feature_memo=memo)
                check_finite_run(result)
                mlflow.log_metrics({f"test_{name}": value for name, value in result.scores.items()})
                mlflow.log_metrics({f"selected_val_{name}": value for name, value in result.val_scores.items()})
                mlflow.log_metric("seconds", result.seconds)
                mlflow.set_tag("iqa.model_path", os.path.abspath(result.model_path))
        return RunRecord(loss, seed, result.scores, time.time() - start, "FINISHED", run_id,
                         val_scores=result.val_scores)
    except Exception as err:  # recorded (FAILED in MLflow by mlflow_run) and the comparison goes on
        return RunRecord(loss, seed, {}, time.time() - start, "FAILED", run_id, f"{type(err).__name__}: {err}")
    finally:
        keras.backend.clear_session()


def _log_comparison(comparison: Comparison, *, wall: float) -> None:
    from keras_percept.experiment.tracking import import_mlflow

    mlflow = import_mlflow()
    for row in comparison.rows():
        metrics = {f"{key}_{row['loss']}": row[key] for key in ("srcc_mean", "srcc_std", "plcc_mean", "plcc_std",
                                                                 "delta_srcc_vs_l1", "val_srcc_mean", "seconds_per_run")}
        mlflow.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)})
    mlflow.log_metric("n_failed", sum(r.status != "FINISHED" for r in comparison.runs))
    mlflow.log_metric("wall_seconds", wall)
    mlflow.log_text(comparison.markdown(), "comparison/table.md")
    mlflow.log_text(comparison.csv(), "comparison/table.csv")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "srcc_plcc.png")
        plot_comparison(comparison, path)
        mlflow.log_artifact(path, "comparison")


def plot_comparison(comparison: Comparison, path: str) -> None:
    """Bars of SRCC and PLCC per loss with ± one seed standard deviation as error bars."""
    import numpy as np

    from keras_percept.training.plots import _pyplot

    plt = _pyplot()
    rows = comparison.rows()
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 2, 3.8))
    for offset, key, label in ((-0.2, "srcc", "SRCC"), (0.2, "plcc", "PLCC")):
        means = [0.0 if math.isnan(r[f"{key}_mean"]) else r[f"{key}_mean"] for r in rows]
        stds = [0.0 if math.isnan(r[f"{key}_std"]) else r[f"{key}_std"] for r in rows]
        ax.bar(x + offset, means, width=0.4, yerr=stds, capsize=4, label=label)
    ax.set_xticks(x, [r["loss"] + ("" if r["status"] == "ok" else "\n" + r["status"]) for r in rows])
    ax.set_ylabel("test correlation (selection on val)")
    ax.set_title(f"IQA loss comparison (mean ± std over {len(comparison.seeds)} seed(s))")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, keep_extension=True) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)

