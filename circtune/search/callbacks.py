"""Driver-side Tune callback that finishes the MLflow runs trials cannot finish.

A trial stopped by ASHA ends inside ``tune.report`` without returning to the
trainable, and a trial whose worker died never gets to record its failure.
This callback runs in the driver on both events: it gives a stopped trial
its artifacts from the last checkpoint and ends its run FINISHED with the tag
``circtune.trial_state = pruned``, and ends a crashed trial's run FAILED with
the reason. It also logs one line per finished trial.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from ray import tune

from circtune.objective.data import TensorData, TrialData, to_device
from circtune.objective.train import JointTrainer
from circtune.search.searcher import COMPLETE_KEY
from circtune.search.trainable import TrialContext, load_checkpoint_state, trial_config_from_tune
from circtune.tracking import store
from circtune.tracking.artifacts import log_trial_artifacts

logger = logging.getLogger(__name__)

TAG_TRIAL_STATE = "circtune.trial_state"


class TrialRunCallback(tune.Callback):
    """Ends the MLflow run of every trial that ended outside its trainable."""

    def __init__(self, data: TrialData, context: TrialContext, *, metric: str) -> None:
        self._data = data
        self._context = context
        self._metric = metric
        self._trial_numbers: dict[str, int] = {}
        self._cpu_tensors: TensorData | None = None

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trial_numbers.setdefault(trial.trial_id, len(self._trial_numbers) + 1)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        value = result.get(self._metric)
        summary = ", ".join(f"{key}={value}" for key, value in sorted(_flat_config(trial.config).items()))
        if result.get(COMPLETE_KEY):
            logger.info("Trial %s finished: %s %.4g with %s", trial.trial_id, self._metric, value, summary)
            return
        logger.info("Trial %s stopped early by the scheduler at %s %s", trial.trial_id, self._metric, value)
        self._end_run(trial, status="FINISHED", state="pruned", reason=None, with_artifacts=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        reason = _error_reason(trial)
        logger.warning("Trial %s failed: %s", trial.trial_id, reason)
        self._end_run(trial, status="FAILED", state="failed", reason=reason, with_artifacts=False)

    def _end_run(self, trial: Any, *, status: str, state: str, reason: str | None, with_artifacts: bool) -> None:
        uri = self._context.tracking_uri
        context = self._context
        run_id = store.find_child_run(
            uri, context.experiment_id, parent_run_id=context.parent_run_id, trial_id=trial.trial_id
        )
        if run_id is None:
            return
        client = store.make_client(uri)
        client.set_tag(run_id, TAG_TRIAL_STATE, state)
        if client.get_run(run_id).info.status != "RUNNING":
            return
        if with_artifacts:
            self._log_checkpoint_artifacts(trial, run_id)
        store.finish_run(uri, run_id, status, reason=reason)

    def _log_checkpoint_artifacts(self, trial: Any, run_id: str) -> None:
        state, history = load_checkpoint_state(trial.checkpoint)
        if state is None:
            return
        config = trial_config_from_tune(trial.config, self._context.fixed)
        if self._cpu_tensors is None:
            self._cpu_tensors = to_device(self._data, torch.device("cpu"))
        trainer = JointTrainer(config, self._cpu_tensors, device=torch.device("cpu"))
        trainer.load_state_dict(state)
        log_trial_artifacts(
            self._context.tracking_uri, run_id, vae=trainer.vae, head=trainer.head, config=config,
            data=self._data, history=history, title=f"trial {trial.trial_id} (stopped early)",
        )  # fmt: skip


def _error_reason(trial: Any) -> str:
    path = getattr(trial, "error_file", None) or getattr(trial, "pickled_error_file", None)
    if path:
        try:
            with open(path) as handle:
                lines = [line.strip() for line in handle.read().strip().splitlines() if line.strip()]
            if lines:
                return lines[-1][:2000]
        except OSError:
            pass
    return "the trial's worker failed without an error message; see Ray's logs"


def _flat_config(config: dict[str, Any]) -> dict[str, object]:
    from circtune.search.trainable import flatten_config

    return flatten_config(config)
