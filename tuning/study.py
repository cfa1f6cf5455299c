"""Study pieces: sampler and pruner from the search space, the trial budget shared by workers, the summary table."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Callable, Mapping

FINISHED = ("COMPLETE", "PRUNED")

logger = logging.getLogger(__name__)


def make_sampler(settings: Mapping[str, Any], *, seed: int | None, parallel: bool = False):
    """tpe (multivariate, grouped for `when` conditions), random or cmaes (categoricals: TPE).

    Multivariate TPE is the default: the space has a categorical optimizer,
    which CMA-ES cannot model (it hands such parameters to its independent
    sampler). With several workers TPE's `constant_liar` keeps them from
    suggesting the same point while their trials run.
    """
    import optuna

    name = settings.get("name", "tpe")
    startup = int(settings.get("n_startup_trials", 10))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=startup,
                                          constant_liar=parallel)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as err:
            raise ImportError("--sampler cmaes needs the cmaes package: pip install cmaes") from err
        independent = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, independent_sampler=independent,
                                            warn_independent_sampling=False)
    raise ValueError(f"`sampler` must be one of tpe, random, cmaes. Received: {name!r}")


def make_pruner(settings: Mapping[str, Any], *, max_epochs: int):
    """median (`MedianPruner`), halving (`SuccessiveHalvingPruner`), hyperband or none.

    With ~50 trials median or successive halving is the realistic choice:
    Hyperband splits the budget into brackets, each too small to learn from.
    """
    import optuna

    name = settings.get("name", "median")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(settings.get("n_startup_trials", 5)),
                                           n_warmup_steps=int(settings.get("n_warmup_steps", 2)))
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=int(settings.get("min_resource", 1)),
                                                      reduction_factor=int(settings.get("reduction_factor", 3)))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=int(settings.get("min_resource", 1)), max_resource=max_epochs,
                                              reduction_factor=int(settings.get("reduction_factor", 3)))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"`pruner` must be one of median, halving, hyperband, none. Received: {name!r}")


def counts(study) -> dict[str, int]:
    """Trials per state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING); `done`: COMPLETE + PRUNED, what the budget
    counts; `failures`: FAIL trials that were not re-queued after their worker died, what `max_failures` counts.

    Example:

    >>> counts(study)  # doctest: +SKIP
    {'done': 3, 'failures': 1, 'COMPLETE': 2, 'PRUNED': 1, 'FAIL': 2, 'RUNNING': 1}
    """
    import optuna

    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    out: dict[str, int] = {"done": 0, "failures": 0}
    for trial in trials:
        out[trial.state.name] = out.get(trial.state.name, 0) + 1
        out["done"] += trial.state.name in FINISHED
        out["failures"] += trial.state.name == "FAIL" and trial.number not in retried
    return out


def run_until_budget(study, objective: Callable, budget: int, *, max_failures: int | None = None,
                     timeout: float | None = None, poll_seconds: float = 2.0,
                     on_step: Callable[[dict[str, int]], None] | None = None) -> int:
    """Runs trials in this process until the whole study has `budget` COMPLETE or PRUNED trials.

    A FAIL does not count: another trial takes its place. A trial that
    raised is replaced by a newly sampled one; a trial whose worker died is
    re-queued with its parameters (see `tuning.storage`). After `max_failures`
    FAIL trials that were not re-queued (default: `budget`) no new trial
    starts: a setup that makes every trial fail stops.

    Optuna's `MaxTrialsCallback(budget, states=(COMPLETE, PRUNED))` counts
    the same states but stops a study after a trial ends, so each of several
    workers would start one more; here the budget is checked before each
    trial, so a resumed study that already has its budget starts none, and
    several workers overshoot only when two start their last trial at the
    same instant. Before each trial, and every `poll_seconds` while the
    remaining trials run in other processes, `fail_stale_trials` fails the
    RUNNING trials whose worker is dead (every storage of `make_storage` has
    heartbeats); their re-queued copies then run here. Trials that raise
    are recorded as FAIL (`catch=(Exception,)`); `gc_after_trial` frees
    memory between trials. Returns the number of trials this process started.

    Example:

    >>> run_until_budget(study, objective, 20)  # doctest: +SKIP
    20
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    heartbeat = is_heartbeat_enabled(study._storage)
    max_failures = budget if max_failures is None else max_failures
    start = time.monotonic()
    started = 0
    while timeout is None or time.monotonic() - start < timeout:
        if heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        now = counts(study)
        if on_step is not None:
            on_step(now)
        if now["done"] >= budget:
            break
        if now["failures"] >= max_failures:
            logger.warning("%s trials of study %r failed (the limit, --max-failures): no new trial starts.",
                           now["failures"], study.study_name)
            break
        if now["done"] + now.get("RUNNING", 0) >= budget and now.get("WAITING", 0) == 0:
            if not heartbeat:
                break  # without heartbeats a dead worker's trial would be waited for forever
            time.sleep(poll_seconds)
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
        except optuna.exceptions.UpdateFinishedTrialError as err:
            # This process was taken for dead (no heartbeat for the grace period) and its trial failed and re-queued.
            logger.warning("A trial of this process was failed by another one while it ran: %s", err)
        started += 1
    if on_step is not None:
        on_step(counts(study))
    return started


def top_trials_table(study, top: int = 10, *, value_name: str = "selection 2AFC", value_scale: float = 100.0) -> str:
    """The best `top` finished trials (then the others), one line each: number, state, value, seconds, params.

    The value column is headed `value_name` and shows `value * value_scale`
    (2AFC in %; `value_name="SRCC", value_scale=1` for IQA).
    """
    trials = study.get_trials(deepcopy=False)
    maximize = study.direction.name == "MAXIMIZE"
    complete = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value, reverse=maximize)
    names = sorted({k for t in trials for k in t.params})
    header = ["trial", "state", value_name, "sec"] + [n.split(".")[-1] for n in names]
    rows = []
    for t in complete[:top]:
        seconds = t.duration.total_seconds() if t.duration else float("nan")
        rows.append([str(t.number), t.state.name, f"{value_scale * t.value:.{2 if value_scale == 100 else 4}f}", f"{seconds:.0f}"]
                    + [_short(t.params.get(n)) for n in names])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header] + rows]
    states = counts(study)
    states.pop("done")
    states.pop("failures")
    lines.append(f"{len(trials)} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(states.items())))
    return "\n".join(lines)


def _short(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
