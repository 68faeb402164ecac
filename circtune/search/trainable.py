"""The Ray Tune trainable: one trial of the search, recorded in MLflow.

Each trial reports to Tune after every validation score (one Tune
iteration per score, which is the time unit ASHA uses), with a checkpoint of
the whole trainer state, so a trial whose worker died resumes from its last
score. Its MLflow child run gets the flat parameters, tags that say where Ray
placed it (node, GPU ids, reserved resources), per-epoch metrics, the
failure reason when it fails, and its artifacts when it finishes. Trials
that ASHA stops are finished by the driver (``callbacks.TrialRunCallback``),
because Tune ends their thread without returning to this code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from circtune.models.device import select_device
from circtune.objective.config import TrialConfig
from circtune.objective.data import TrialData, to_device
from circtune.objective.run import TrialResult, run_trial
from circtune.objective.score import TrialScore
from circtune.objective.train import EpochMetrics
from circtune.search.searcher import COMPLETE_KEY
from circtune.tracking import store
from circtune.tracking.artifacts import log_trial_artifacts

logger = logging.getLogger(__name__)

TRAINER_STATE_FILE = "trainer.pt"
HISTORY_FILE = "history.json"
EPOCH_METRICS = ("reconstruction", "kl", "downstream", "total", "samples_per_s")
# Tags that record where Ray placed a trial, set on its child run at every start.
TAG_NODE_ID = "circtune.node_id"
TAG_NODE_IP = "circtune.node_ip"
TAG_GPU_IDS = "circtune.gpu_ids"
TAG_CUDA_VISIBLE_DEVICES = "circtune.cuda_visible_devices"
TAG_RESOURCES = "circtune.resources"
TAG_DEVICE = "circtune.device"
# Set when a retried trial continued from a checkpoint: the last epoch that checkpoint covered.
TAG_RESUMED_AFTER_EPOCH = "circtune.resumed_after_epoch"


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """Settings that every trial of one search shares, besides the data.

    Attributes:
        fixed: Flat ``section/name`` values that every trial uses.
        eval_every: Epochs between validation scores.
        tracking_uri: MLflow tracking URI (absolute).
        experiment_id: MLflow experiment id.
        parent_run_id: MLflow run of the search.
        search_id: Identifier of the search.
    """

    fixed: Mapping[str, object]
    eval_every: int
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    search_id: str


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    """Flatten Tune's nested config back into ``section/name`` keys."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}/"))
        else:
            flat[name] = value
    return flat


def trial_config_from_tune(config: Mapping[str, Any], fixed: Mapping[str, object]) -> TrialConfig:
    """Merge the fixed values with the values Optuna chose for this trial."""
    return TrialConfig.from_flat({**fixed, **flatten_config(config)}, allow_inactive=True)


def score_metrics(score: TrialScore) -> dict[str, float]:
    """Return the metrics of a validation score under their reported names."""
    metrics = {
        "validation_loss": score.loss,
        "validation_error_pct": score.relative_error_pct,
        "oracle_loss": score.oracle.loss,
        "oracle_error_pct": score.oracle.relative_error_pct,
    }
    for size_score in score.per_size:
        metrics[f"validation_loss_n{size_score.size}"] = size_score.loss
        metrics[f"validation_error_pct_n{size_score.size}"] = size_score.relative_error_pct
    return metrics


def run_tune_trial(config: dict[str, Any], *, data: TrialData, context: TrialContext) -> None:
    """Train, score and record one trial; the function Ray Tune runs."""
    import ray
    from ray import tune

    started_s = time.perf_counter()
    trial_config = trial_config_from_tune(config, context.fixed)
    tune_context = tune.get_context()
    trial_id = str(tune_context.get_trial_id())
    uri = context.tracking_uri
    run_id, created = store.find_or_create_child_run(
        uri,
        context.experiment_id,
        parent_run_id=context.parent_run_id,
        search_id=context.search_id,
        trial_id=trial_id,
        run_name=str(tune_context.get_trial_name()),
    )
    store.log_params(uri, run_id, trial_config.to_flat())
    resume_state, history = load_checkpoint_state(tune.get_checkpoint())
    logger.info(
        "Trial %s %s MLflow run %s%s", trial_id, "created" if created else "reuses", run_id,
        f", resuming after epoch {resume_state['epoch']}" if resume_state else "",
    )  # fmt: skip
    if resume_state is not None:
        store.make_client(uri).set_tag(run_id, TAG_RESUMED_AFTER_EPOCH, str(resume_state["epoch"]))

    # Ray 2.60 leaves CUDA_VISIBLE_DEVICES unset for a trial that reserved no
    # GPU, so without this check such a trial would use a GPU of its node.
    device = select_device() if ray.get_gpu_ids() else torch.device("cpu")
    _log_placement(uri, run_id, device)
    tensors = to_device(data, device)
    pending: dict[str, Any] = {}
    # Time spent in tracking, reporting and checkpointing inside the training loop.
    overhead = {"in_loop_s": 0.0}

    def on_checkpoint(epoch: int, state: dict[str, Any]) -> None:
        pending["state"] = state

    def on_epoch(epoch: int, metrics: EpochMetrics, score: TrialScore | None) -> None:
        callback_started_s = time.perf_counter()
        try:
            _record_epoch(epoch, metrics, score)
        finally:
            overhead["in_loop_s"] += time.perf_counter() - callback_started_s

    def _record_epoch(epoch: int, metrics: EpochMetrics, score: TrialScore | None) -> None:
        values = {name: float(getattr(metrics, name)) for name in EPOCH_METRICS}
        history.append({"epoch": epoch, **values})
        store.log_metrics(uri, run_id, values, step=epoch)
        if score is None:
            return
        result: dict[str, Any] = {**score_metrics(score), "reconstruction": metrics.reconstruction, "epoch": epoch}
        store.log_metrics(uri, run_id, score_metrics(score), step=epoch)
        if epoch >= trial_config.train.epochs:
            # The last report goes out after the artifacts, because ASHA stops
            # a trial that reaches max_t inside that report.
            pending["final"] = result
            return
        _report(result, pending.pop("state"), history)

    outcome: TrialResult | None = None
    try:
        loop_started_s = time.perf_counter()
        outcome = run_trial(
            trial_config,
            tensors,
            device=device,
            on_epoch=on_epoch,
            eval_every=context.eval_every,
            resume_state=resume_state,
            on_checkpoint=on_checkpoint,
        )
        compute_s = time.perf_counter() - loop_started_s - overhead["in_loop_s"]
        log_trial_artifacts(uri, run_id, vae=outcome.vae, head=outcome.head, config=trial_config, data=data,
                            history=history, title=f"trial {trial_id}")  # fmt: skip
        timing = trial_timing(compute_s, time.perf_counter() - started_s)
        store.log_metrics(uri, run_id, timing, step=trial_config.train.epochs)
        store.finish_run(uri, run_id, "FINISHED")
        final = pending.get("final")
        if final is not None:
            _report({**final, **timing, COMPLETE_KEY: True}, pending.pop("state"), history)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        logger.error("Trial %s failed: %s", trial_id, reason)
        store.finish_run(uri, run_id, "FAILED", reason=reason)
        raise
    finally:
        # Every reference to GPU tensors must go first, or empty_cache keeps their blocks.
        del tensors, outcome
        pending.clear()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def trial_timing(compute_s: float, total_s: float) -> dict[str, float]:
    """Return the training-and-scoring time of a trial and its share of the trial's wall time.

    ``total_s`` runs from the trainable's start to the end of its artifact
    logging, so the rest is MLflow, Tune reporting, checkpoints and artifacts.
    """
    return {"time_compute_s": compute_s, "time_trial_s": total_s, "compute_share": compute_s / max(total_s, 1e-9)}


def placement_tags(device: torch.device) -> dict[str, str]:
    """Return where Ray placed the calling trial: node, GPU ids, reserved resources and torch device."""
    import ray

    runtime = ray.get_runtime_context()
    return {
        TAG_NODE_ID: runtime.get_node_id(),
        TAG_NODE_IP: ray.util.get_node_ip_address(),
        TAG_GPU_IDS: ",".join(str(gpu_id) for gpu_id in ray.get_gpu_ids()),
        TAG_CUDA_VISIBLE_DEVICES: os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
        TAG_RESOURCES: json.dumps(runtime.get_assigned_resources(), sort_keys=True),
        TAG_DEVICE: str(device),
    }


def _log_placement(uri: str, run_id: str, device: torch.device) -> None:
    from mlflow.entities import RunTag

    tags = [RunTag(key, value) for key, value in placement_tags(device).items()]
    store.make_client(uri).log_batch(run_id, tags=tags)


def _report(result: dict[str, Any], state: dict[str, Any], history: list[dict[str, float]]) -> None:
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="circtune-checkpoint-") as folder:
        torch.save(state, Path(folder) / TRAINER_STATE_FILE)
        (Path(folder) / HISTORY_FILE).write_text(json.dumps(history))
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))


def load_checkpoint_state(checkpoint: Any) -> tuple[dict[str, Any] | None, list[dict[str, float]]]:
    """Return the trainer state and epoch history stored in a trial checkpoint; ``(None, [])`` without one."""
    if checkpoint is None:
        return None, []
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / TRAINER_STATE_FILE, map_location="cpu", weights_only=True)
        history = json.loads((Path(folder) / HISTORY_FILE).read_text())
    return state, history
