"""Artifacts of a trial run: saved model, latent-space plot and loss curves."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from circtune.models.downstream import DownstreamHead
from circtune.models.vae import VAE
from circtune.objective.config import TrialConfig
from circtune.objective.data import TrialData
from circtune.objective.run import save_model
from circtune.tracking import plots, store

logger = logging.getLogger(__name__)

MODEL_ARTIFACT_PATH = "model"
PLOT_ARTIFACT_PATH = "plots"
_ENCODE_BATCH = 512


def encode_means(vae: VAE, inputs: np.ndarray) -> np.ndarray:
    """Return the ``(N, L)`` encoder means of ``(N, F)`` inputs, on the VAE's device."""
    device = next(vae.parameters()).device
    was_training = vae.training
    vae.eval()
    means = []
    with torch.no_grad():
        for start in range(0, len(inputs), _ENCODE_BATCH):
            batch = torch.as_tensor(np.array(inputs[start : start + _ENCODE_BATCH]), device=device)
            means.append(vae.encode(batch)[0].float().cpu().numpy())
    vae.train(was_training)
    return np.concatenate(means) if means else np.empty((0, vae.latent_dim))


def log_trial_artifacts(
    uri: str,
    run_id: str,
    *,
    vae: VAE,
    head: DownstreamHead,
    config: TrialConfig,
    data: TrialData,
    history: Sequence[Mapping[str, float]],
    title: str,
) -> None:
    """Log the weights, the latent-space plot and the loss curves of a trial."""
    client = store.make_client(uri)
    with tempfile.TemporaryDirectory(prefix="circtune-artifacts-") as folder:
        model_folder = save_model(Path(folder) / "model", vae=vae, head=head, config=config, normalizer=data.normalizer)
        client.log_artifacts(run_id, str(model_folder), MODEL_ARTIFACT_PATH)

        embeddings = encode_means(vae, data.inputs)
        latent = plots.plot_latent(
            embeddings,
            labels={"flavor": data.flavor, "corner": data.corner},
            path=Path(folder) / "latent.png",
            title=f"Encoder means, {title}",
        )
        client.log_artifact(run_id, str(latent), PLOT_ARTIFACT_PATH)

        curves = {name: [float(row[name]) for row in history] for name in ("reconstruction", "kl", "downstream", "total")}
        if history:
            loss_plot = plots.plot_loss_curves(curves, Path(folder) / "loss_curves.png", title=f"Training losses, {title}")
            client.log_artifact(run_id, str(loss_plot), PLOT_ARTIFACT_PATH)
