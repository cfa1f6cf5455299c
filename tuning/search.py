"""`python tuning/search.py --trials 50`: an Optuna study over a `configs/search/*.yaml` space, tracked in MLflow.

One MLflow parent run per study and a nested run per trial; trials report
`val_twoafc` (Keras's name for the selection split's 2AFC, carved from the
training data) each epoch to the pruner and return its final value; only the
retrained best trial is scored on the test split; the study lives in a persistent
storage (default `journal:tuning/studies/<study>.log`), so running the same
command again resumes it up to `--trials` trials in total, and several
processes (`--n-jobs`, or more commands with `--worker`) share it. At the
end the best trial is retrained, logged as a `.keras` artifact and a
registered MLflow model, next to Optuna's plots and a table of the top trials.

Example:

    python tuning/search.py --trials 50
    python tuning/search.py --task iqa --trials 30                    # IQA: objective = validation SRCC
    python tuning/search.py --trials 50 --n-jobs 2 --storage journal:tuning/studies/lin.log
    python tuning/search.py --trials 200 --storage postgresql://optuna@127.0.0.1:5432/optuna --worker  # more machines
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

from keras_percept.experiment.cli_args import default_or_text, none_or_text, optional_number, split_overrides
from tuning.space import PRUNERS, SAMPLERS, SearchSpace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tuning/search.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=optional_number(int, "--trials"), default=50,
                   help="trials of the whole study (COMPLETE + PRUNED), shared by all workers; a FAIL is replaced, "
                        "not counted; default 50")
    p.add_argument("--max-failures", type=optional_number(int, "--max-failures"), default=None,
                   help="no new trial starts once the study has this many FAIL trials (those re-queued after their "
                        "worker died aside); default: --trials")
    p.add_argument("--task", default="2afc",
                   help="2afc (LPIPS on 2AFC, objective selection 2AFC; test 2AFC reported), iqa (MOS regression, "
                        "objective validation SRCC; test SRCC reported), or a task of your own: a registered name or "
                        "module:name (keras_percept.experiment.task); default 2afc")
    p.add_argument("--paradigm", type=none_or_text, default="lin",
                   help="the task's variant: lin, tune or scratch for 2afc (default lin); ignored by tasks without")
    p.add_argument("--space", type=none_or_text, default=None,
                   help="search space YAML; default configs/search/<paradigm>.yaml (iqa: configs/search/iqa.yaml)")
    p.add_argument("--config", type=none_or_text, default=None,
                   help="base training config YAML; default: paradigm defaults (iqa: configs/iqa/compare.yaml)")
    p.add_argument("--study-name", type=none_or_text, default=None,
                   help="default <paradigm>-search (other tasks: <task>-search)")
    p.add_argument("--storage", type=none_or_text, default=None,
                   help="journal:<file> (default tuning/studies/<study>.log; several processes on one host), "
                        "sqlite:///<file> (one process), postgresql://... (several machines)")
    p.add_argument("--sampler", type=default_or_text, default=None, choices=(None,) + SAMPLERS,
                   help="default: the space's (tpe)")
    p.add_argument("--pruner", type=default_or_text, default=None, choices=(None,) + PRUNERS,
                   help="'none' turns pruning off; default: the space's (median)")
    p.add_argument("--timeout", type=optional_number(float, "--timeout"), default=None,
                   help="seconds after which this process starts no new trial")
    p.add_argument("--n-jobs", type=optional_number(int, "--n-jobs"), default=1,
                   help="worker processes on this host (processes, not threads: Keras's global state is per process)")
    p.add_argument("--seed", type=none_or_text, default="0", help="sampler seed (worker k uses seed + k); 'none': random")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every trial (repeatable; space-separated pairs accepted)")
    p.add_argument("--output-dir", type=none_or_text, default=None, help="trial folders; default runs/tuning/<study>")
    p.add_argument("--experiment", type=none_or_text, default=None, help="MLflow experiment; default the config's")
    p.add_argument("--register-as", type=none_or_text, default=None,
                   help="registered model name of the best metric; default keras_percept-<study>")
    p.add_argument("--top", type=int, default=10, help="rows of the final table")
    p.add_argument("--heartbeat-interval", type=int, default=10,
                   help="seconds between the heartbeats of a running trial (every storage); default 10")
    p.add_argument("--grace-period", type=int, default=None,
                   help="seconds without a heartbeat before a RUNNING trial is failed and re-queued; default three "
                        "intervals (a trial whose worker ran on this host and is gone is failed at once)")
    p.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help="Keras fit verbosity of each trial")
    p.add_argument("--worker", action="store_true",
                   help="only run trials (another process or machine of a running study): no final report")
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return run(args, argv)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args, argv: list[str]) -> int:
    # Under `mlflow run` this names the project's run; taken out so no trial's start_run() resumes it.
    project_run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    import optuna

    from keras_percept.experiment.task import get_task
    from keras_percept.experiment.tracking import DEFAULT_TRACKING_URI, import_mlflow
    from tuning import storage as storages
    from tuning.objective import Objective, mark_mlflow_run_failed
    from tuning.study import make_pruner, make_sampler, run_until_budget, top_trials_table
    from tuning.tracking import end_orphan_runs, log_study_setup, resolve_parent_run

    task = get_task(args.task)
    if args.config is None and task.default_config:
        args.config = os.path.join(REPO, task.default_config)
    if args.space is None and not task.default_space:
        raise ValueError(f"Task {task.name!r} has no default search space: give --space <yaml>. Received: --space none")
    space_path = args.space or os.path.join(REPO, task.default_space.format(paradigm=args.paradigm))
    space = SearchSpace.from_yaml(space_path)
    if space.task != task.name:
        raise ValueError(f"The search space {space_path!r} is for task {space.task!r}. Received: --task {args.task}")
    if task.paradigms and args.paradigm not in task.paradigms:
        raise ValueError(f"--paradigm must be one of {list(task.paradigms)} for task {task.name!r}. "
                         f"Received: --paradigm {args.paradigm}")
    if task.paradigms and space.paradigm != args.paradigm:
        raise ValueError(f"The search space {space_path!r} is for paradigm {space.paradigm!r}. "
                         f"Received: --paradigm {args.paradigm}")
    overrides = split_overrides(args.overrides)
    # Validates the fixed part before any trial: a bad --set fails once, not N times.
    base = task.load_config(args.config, paradigm=args.paradigm, overrides=space.fixed_overrides() + overrides)
    study_name = args.study_name or (f"{args.paradigm}-search" if task.paradigms else f"{task.name}-search")
    url = args.storage or storages.default_storage_url(study_name)
    if args.n_jobs > 1 and not storages.supports_parallel_writers(url):
        raise ValueError("SQLite storage is for one process at a time (parallel writers lock the file): use "
                         "--storage journal:<file> on one host or postgresql://... across machines. "
                         f"Received: --storage {url} with --n-jobs {args.n_jobs}")
    seed = None if args.seed is None else int(args.seed) + args.worker_index
    parallel = args.n_jobs > 1 or args.worker
    sampler = make_sampler({**space.sampler, **({"name": args.sampler} if args.sampler else {})}, seed=seed,
                           parallel=parallel)
    pruner_settings = {**space.pruner, **({"name": args.pruner} if args.pruner else {})}
    pruner = make_pruner(pruner_settings, max_epochs=base.optim.epochs)

    mlflow = import_mlflow()
    mlflow.set_tracking_uri(base.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
    storage = storages.make_storage(url, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                                    on_failed_trial=mark_mlflow_run_failed)
    study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner,
                                direction=space.direction, load_if_exists=True)
    experiment = args.experiment or base.experiment
    parent = resolve_parent_run(study, experiment=experiment, project_run_id=project_run_id,
                                tags={"optuna.role": "study", "optuna.study_name": study_name})
    parent_id = parent.info.run_id
    end_orphan_runs(study, parent_id, parent.info.experiment_id)
    if not args.worker:
        log_study_setup(parent_id, {
            "study_name": study_name, "storage": storages.redact(url), "task": task.name,
            "paradigm": args.paradigm if task.paradigms else "n/a", "trials": args.trials,
            "sampler": sampler.__class__.__name__, "pruner": pruner_settings["name"], "seed": args.seed,
            "n_jobs": args.n_jobs, "space": os.path.relpath(space_path, REPO) if space_path.startswith(REPO)
            else space_path, "overrides": " ".join(overrides) or "none"}, space_path)

    objective = Objective(space, parent_run_id=parent_id, experiment_id=parent.info.experiment_id,
                          study_name=study_name, config_path=args.config, overrides=overrides,
                          output_dir=args.output_dir or os.path.join("runs", "tuning", study_name),
                          task=task, verbose=args.verbose)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workers = _spawn_workers(argv, args.n_jobs) if not args.worker else []
    start = time.time()
    status = "FAILED"
    try:
        with _progress(study_name, args.trials, disable=args.no_progress or args.worker) as on_step:
            run_until_budget(study, objective, args.trials, max_failures=args.max_failures, timeout=args.timeout,
                             on_step=on_step)
        failed_workers = [w.wait() for w in workers]
        end_orphan_runs(study, parent_id, parent.info.experiment_id)
        if args.worker:
            return 0
        print(top_trials_table(study, args.top, value_name=task.value_name, value_scale=task.value_scale))
        code = _finish(study, parent_id, base, args, objective, wall=time.time() - start)
        status = "FINISHED"
        if any(failed_workers):
            print(f"warning: worker exit codes {failed_workers}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
        if not args.worker:
            mlflow.MlflowClient().set_terminated(parent_id, status=status)


def _spawn_workers(argv: list[str], n_jobs: int) -> list[subprocess.Popen]:
    # Same working directory (relative storage and tracking paths); `-m` finds the installed package, or the
    # project folder under `mlflow run`, which does not install the project.
    return [subprocess.Popen([sys.executable, "-m", "tuning.search", *argv, "--worker", "--worker-index", str(k),
                              "--no-progress"]) for k in range(1, n_jobs)]


@contextlib.contextmanager
def _progress(name: str, total: int, disable: bool):
    """A tqdm bar over the study's finished trials (every worker's), with the pruned and failed counts."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"study {name}", unit="trial", disable=disable)

    def on_step(states):
        bar.n = min(states["done"], total)
        bar.set_postfix(pruned=states.get("PRUNED", 0), failed=states.get("FAIL", 0), refresh=False)
        bar.refresh()

    try:
        yield on_step
    finally:
        bar.close()


def _log_study_summary(client, study, parent_id: str, args, objective, wall: float) -> dict:
    """Trial counts, wall time, the top-trials table and Optuna's plots on the parent run; returns the counts."""
    from tuning.study import counts, top_trials_table
    from tuning.tracking import log_plots

    states = counts(study)
    client.log_metric(parent_id, "n_complete", states.get("COMPLETE", 0))
    client.log_metric(parent_id, "n_pruned", states.get("PRUNED", 0))
    client.log_metric(parent_id, "n_fail", states.get("FAIL", 0))
    client.log_metric(parent_id, "fraction_pruned", states.get("PRUNED", 0) / max(states["done"], 1))
    client.log_metric(parent_id, "wall_seconds", wall)
    task = objective.task
    client.log_text(parent_id, top_trials_table(study, args.top, value_name=task.value_name,
                                                value_scale=task.value_scale), "summary/top_trials.txt")
    log_plots(study, parent_id)
    return states


def _log_study_and_best(client, study, parent_id: str, args, objective, wall: float):
    """The parent-run summary plus the best trial's value, number and parameters; `None` if none completed."""
    states = _log_study_summary(client, study, parent_id, args, objective, wall)
    if not states.get("COMPLETE"):
        print("error: no trial completed; see the FAIL trials' error.txt in MLflow", file=sys.stderr)
        return None
    best = study.best_trial
    client.log_metric(parent_id, "best_value", best.value)
    client.log_metric(parent_id, "best_trial", best.number)
    for key, value in best.params.items():
        client.set_tag(parent_id, f"best.{key}", str(value))
    return best


def _parent_run(mlflow, parent_id: str):
    """The study's parent run, reopened in its own experiment: an earlier `mlflow.set_experiment` in this
    process (a training run before the study, as `benchmarks/tuning.py` does) may name another one."""
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient().get_run(parent_id).info.experiment_id)
    return mlflow.start_run(run_id=parent_id)


def _finish(study, parent_id: str, base, args, objective, *, wall: float) -> int:
    """Parent-run summary: counts, best trial, plots, top table; the best trial retrained, scored once on the
    test split (`best_<test metric>`), logged by its task and, where the task registers models, registered."""
    from keras_percept.experiment.tracking import MLflowEpochLogger, import_mlflow
    from tuning.tracking import worker_tag

    mlflow = import_mlflow()
    task = objective.task
    best = _log_study_and_best(mlflow.MlflowClient(), study, parent_id, args, objective, wall)
    if best is None:
        return 1
    config = objective.load_config(best.params, os.path.join(objective.output_dir, "best"))
    register_as = None
    if task.registers_models:
        register_as = args.register_as or getattr(base, "register_model", None) or f"keras_percept-{study.study_name}"
    with _parent_run(mlflow, parent_id):
        with mlflow.start_run(run_name=f"best: trial {best.number} retrained", nested=True,
                              tags={"optuna.role": "best", "optuna.trial_number": str(best.number), **worker_tag()}):
            mlflow.log_params(best.params)
            result = task.train(config, callbacks=[MLflowEpochLogger()], progress=False, verbose=0, test=True)
            task.log_result(result, register_as=register_as)
        retrained, test = float(task.selection_score(result)), float(task.test_score(result))
        mlflow.log_metrics({"best_value_retrained": retrained, f"best_{task.test_metric}": test})
        mlflow.log_artifact(result.model_path, "best_model")
    show = task.format_value
    print(f"best: trial {best.number}, {task.value_name} {show(best.value)} (retrained: {show(retrained)}); "
          f"{task.test_name} {show(test)} (scored once, used for no choice); params {best.params}")
    registered = f" (registered as {register_as!r})" if register_as else ""
    print(f"{task.model_word}: {os.path.abspath(result.model_path)}{registered}; MLflow parent run {parent_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
