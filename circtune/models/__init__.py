"""Networks and the physics model: the VAE, the Square Law and the downstream head."""

from circtune.models.device import select_device
from circtune.models.downstream import INPUT_KINDS, DownstreamHead, InputKind, PCAProjection, embed, fit_pca
from circtune.models.square_law import (
    PARAM_NAMES,
    SquareLawErrors,
    SquareLawFit,
    current_scale,
    fit_square_law,
    scale_free_loss,
    square_law_current,
    square_law_errors,
)
from circtune.models.vae import ACTIVATIONS, VAE, VAELoss, VAEOutput, vae_loss

__all__ = [
    "ACTIVATIONS",
    "INPUT_KINDS",
    "PARAM_NAMES",
    "VAE",
    "DownstreamHead",
    "InputKind",
    "PCAProjection",
    "SquareLawErrors",
    "SquareLawFit",
    "VAELoss",
    "VAEOutput",
    "current_scale",
    "embed",
    "fit_pca",
    "fit_square_law",
    "scale_free_loss",
    "select_device",
    "square_law_current",
    "square_law_errors",
    "vae_loss",
]
