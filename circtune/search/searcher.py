"""Ray Tune's Optuna searcher with correct trial states.

The stock ``ray.tune.search.optuna.OptunaSearch`` (Ray 2.60) tells Optuna
COMPLETE, with the early and worse value, for a trial that ASHA stopped, and
when a trial reported NaN, Optuna's ``tell`` raises, the stock searcher only
logs a warning, and the trial stays RUNNING in the study forever. Both
mislead the sampler. Here:

- a trial whose last result lacks ``COMPLETE_KEY`` (the trainable sets it in
  its final report only) was stopped early and is told PRUNED;
- a trial that errored, or whose objective values are missing or not finite,
  is told FAIL with the reason in the user attribute ``fail_reason``;
- every other trial is told COMPLETE with its values.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)

COMPLETE_KEY = "trial_complete"
RAY_TRIAL_ID_ATTR = "ray_trial_id"
FAIL_REASON_ATTR = "fail_reason"


class StateCorrectOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records pruned, failed and NaN trials truthfully."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and RAY_TRIAL_ID_ATTR not in ot_trial.user_attrs:
            ot_trial.set_user_attr(RAY_TRIAL_ID_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if isinstance(self.metric, list):
            return
        value = result.get(self.metric)
        if value is None or not _is_finite(value):
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        state, values, reason = classify_trial_end(self.metric, result, error)
        if reason:
            ot_trial.set_user_attr(FAIL_REASON_ATTR, reason)
        study = self.study
        if state == optuna.trial.TrialState.COMPLETE:
            study.tell(ot_trial, values)
        else:
            study.tell(ot_trial, state=state)
        logger.info("Optuna trial %d (Ray trial %s) ended %s", ot_trial.number, trial_id, state.name)
        self._completed_trials.add(trial_id)

    @property
    def study(self) -> optuna.Study:
        """The Optuna study behind this searcher."""
        study = self._ot_study
        assert study is not None, "the study is created with the search space"
        return study


def classify_trial_end(
    metric: str | list[str] | None, result: dict[str, Any] | None, error: bool
) -> tuple[optuna.trial.TrialState, float | list[float] | None, str | None]:
    """Decide how a finished Ray trial is recorded in Optuna.

    Returns:
        ``(state, values, fail_reason)``; values only for COMPLETE.
    """
    if error:
        return optuna.trial.TrialState.FAIL, None, "the trial raised an error (see its MLflow run or Ray's log)"
    if not result:
        return optuna.trial.TrialState.FAIL, None, "the trial ended without reporting a result"
    names = metric if isinstance(metric, list) else [metric]
    values = [result.get(name) for name in names if name is not None]
    if len(values) != len(names) or any(value is None for value in values):
        return optuna.trial.TrialState.FAIL, None, f"the last result lacks the objective {names}"
    if not all(_is_finite(value) for value in values):
        return (
            optuna.trial.TrialState.FAIL,
            None,
            f"the objective is not finite: {dict(zip(names, values, strict=True))}",
        )
    if not result.get(COMPLETE_KEY):
        return optuna.trial.TrialState.PRUNED, None, None
    numbers = [float(value) for value in values]  # type: ignore[arg-type]
    return optuna.trial.TrialState.COMPLETE, numbers if isinstance(metric, list) else numbers[0], None


def _is_finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
