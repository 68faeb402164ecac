"""One search trial from start to finish, and saving its model.

``run_trial`` trains jointly for ``train/epochs`` epochs, scores the
embeddings on the validation part every ``eval_every`` epochs and after the
last, and reports each epoch to a callback. It needs no Ray; a Ray Tune
trainable wraps it and reports from the callback.

A saved model is a folder with three files: ``weights.pt`` (the VAE and
joint-head state dicts, loadable with ``torch.load(path,
weights_only=True)``), ``normalizer.npz`` (the input transform) and
``config.json`` (the flat trial config and the input size).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from circtune.data.h5format import atomic_path
from circtune.data.preprocess import Normalizer
from circtune.errors import DataError
from circtune.models.downstream import DownstreamHead
from circtune.models.vae import VAE
from circtune.objective.config import TrialConfig
from circtune.objective.data import TensorData, TrialData, to_device
from circtune.objective.score import TrialScore, score_validation
from circtune.objective.train import EpochMetrics, JointTrainer

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
NORMALIZER_FILE = "normalizer.npz"
CONFIG_FILE = "config.json"

EpochCallback = Callable[[int, EpochMetrics, TrialScore | None], None]
CheckpointCallback = Callable[[int, dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """Outcome of a finished trial.

    Attributes:
        config: The trial's hyperparameters.
        history: Metrics of every epoch this call trained.
        scores: ``(epoch, score)`` of every validation score, in order.
        vae: The trained VAE, in evaluation mode.
        head: The jointly trained head.
    """

    config: TrialConfig
    history: tuple[EpochMetrics, ...]
    scores: tuple[tuple[int, TrialScore], ...]
    vae: VAE
    head: DownstreamHead

    @property
    def final_score(self) -> TrialScore:
        """The validation score after the last epoch: the trial's objective."""
        return self.scores[-1][1]


class SavedModel(NamedTuple):
    """A model read back by ``load_model``."""

    vae: VAE
    head: DownstreamHead
    config: TrialConfig
    normalizer: Normalizer


def run_trial(
    config: TrialConfig,
    data: TrialData | TensorData,
    *,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
    eval_every: int = 0,
    resume_state: Mapping[str, Any] | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> TrialResult:
    """Train one trial and score it on the validation part.

    Args:
        config: Trial hyperparameters.
        data: Trial data; NumPy data is copied to ``device`` first.
        device: Where to train.
        on_epoch: Called after every epoch as ``on_epoch(epoch, metrics,
            score)``; ``score`` is None on epochs that were not scored.
        eval_every: Score every this many epochs; 0 scores only after the
            last epoch, which is always scored.
        resume_state: A ``JointTrainer.state_dict()`` to continue from.
        on_checkpoint: Called on every scored epoch, before ``on_epoch``, as
            ``on_checkpoint(epoch, trainer_state)``.

    Returns:
        The history, the scores and the trained models.

    Raises:
        NonFiniteLossError: If a training or validation loss is not finite.
        ConfigError: If a downstream size exceeds the training devices, or
            ``resume_state`` belongs to another config.
        ValueError: If ``eval_every`` is negative.
    """
    if eval_every < 0:
        raise ValueError(f"eval_every must be 0 or positive, but got {eval_every}")
    tensors = data if isinstance(data, TensorData) and data.device == device else to_device(_source(data), device)
    trainer = JointTrainer(config, tensors, device=device)
    if resume_state is not None:
        trainer.load_state_dict(resume_state)

    history: list[EpochMetrics] = []
    scores: list[tuple[int, TrialScore]] = []
    while trainer.epoch < config.train.epochs:
        metrics = trainer.train_epoch()
        history.append(metrics)
        epoch = metrics.epoch
        score = None
        if epoch == config.train.epochs or (eval_every and epoch % eval_every == 0):
            score = score_validation(trainer.vae, tensors, config, epoch=epoch)
            scores.append((epoch, score))
            if on_checkpoint is not None:
                on_checkpoint(epoch, trainer.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, metrics, score)
    if not scores:  # resumed after the last epoch
        scores.append((trainer.epoch, score_validation(trainer.vae, tensors, config, epoch=trainer.epoch)))
    return TrialResult(config, tuple(history), tuple(scores), trainer.vae.eval(), trainer.head.eval())


def save_model(
    directory: str | os.PathLike[str], *, vae: VAE, head: DownstreamHead, config: TrialConfig, normalizer: Normalizer
) -> Path:
    """Save weights, normalizer and config into ``directory``, each file written atomically.

    Returns:
        The folder written.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as temporary:
        torch.save({"vae": vae.state_dict(), "head": head.state_dict()}, temporary)
    with atomic_path(folder / NORMALIZER_FILE) as temporary, temporary.open("wb") as stream:
        state = normalizer.state()
        np.savez(stream, quantities=state["quantities"], mean=state["mean"], std=state["std"])
    description = {"config": config.to_flat(), "n_features": vae.n_features}
    with atomic_path(folder / CONFIG_FILE) as temporary:
        temporary.write_text(json.dumps(description, indent=2) + "\n")
    logger.info("Saved the model to %s", folder)
    return folder


def load_model(directory: str | os.PathLike[str], *, device: torch.device | None = None) -> SavedModel:
    """Read a folder written by ``save_model``.

    Raises:
        DataError: If a file is missing, unreadable or inconsistent with the
            others.
        ConfigError: If the saved config is invalid.
    """
    folder = Path(directory)
    try:
        description = json.loads((folder / CONFIG_FILE).read_text())
        weights = torch.load(folder / WEIGHTS_FILE, map_location=device or "cpu", weights_only=True)
        with np.load(folder / NORMALIZER_FILE, allow_pickle=False) as arrays:
            normalizer = Normalizer(
                quantities=tuple(str(name) for name in arrays["quantities"]), mean=arrays["mean"], std=arrays["std"]
            )
        config = TrialConfig.from_flat(description["config"])
        vae = VAE(
            int(description["n_features"]),
            widths=config.model.widths,
            latent_dim=config.model.latent_dim,
            activation=config.model.activation,
            dropout=config.model.dropout,
        )
        head = DownstreamHead(config.model.latent_dim, hidden=config.downstream.hidden)
        vae.load_state_dict(weights["vae"])
        head.load_state_dict(weights["head"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as error:
        raise DataError(
            f"{folder} is not a readable saved circtune model ({type(error).__name__}: {' '.join(str(error).split())}); "
            "save one with python -m circtune.train --out"
        ) from error
    if device is not None:
        vae.to(device)
        head.to(device)
    return SavedModel(vae=vae.eval(), head=head.eval(), config=config, normalizer=normalizer)


def _source(data: TrialData | TensorData) -> TrialData:
    return data.source if isinstance(data, TensorData) else data
