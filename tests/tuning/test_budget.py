"""The study's budget: `--trials N` is N COMPLETE or PRUNED trials; a FAIL is replaced, up to `max_failures`."""

from __future__ import annotations

import optuna
import pytest

from tuning.storage import make_storage
from tuning.study import counts, run_until_budget

pytestmark = pytest.mark.one_pass  # Optuna bookkeeping


def _objective(outcomes: list[str]):
    """Plays `outcomes` in order: "ok" returns 1.0, "prune" prunes, "fail" raises."""
    def objective(trial):
        outcome = outcomes[trial.number]
        if outcome == "fail":
            raise ValueError("bad trial")
        if outcome == "prune":
            raise optuna.TrialPruned()
        return 1.0

    return objective


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(study_name="b", storage=make_storage(f"journal:{tmp_path / 'b.log'}"))


def test_failed_trials_are_replaced_and_not_counted(study):
    started = run_until_budget(study, _objective(["fail", "ok", "fail", "prune", "ok"]), 3)
    assert started == 5
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    assert counts(study)["done"] == 3 and counts(study)["failures"] == 2
    assert run_until_budget(study, _objective([]), 3) == 0, "a resumed study with its budget starts none"


def test_a_setup_where_every_trial_fails_stops_at_max_failures(study):
    assert run_until_budget(study, _objective(["fail"] * 10), 5, max_failures=3) == 3
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3


def test_a_killed_trial_that_was_re_queued_is_not_a_failure(study):
    trial = study.ask()
    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.trials[0])
    assert counts(study) == {"done": 0, "failures": 0, "FAIL": 1, "WAITING": 1}
    assert run_until_budget(study, _objective(["-", "ok"]), 1) == 1
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
