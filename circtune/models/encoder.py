"""The embedding model users load from the MLflow model registry."""

from __future__ import annotations

from torch import Tensor, nn

from circtune.models.vae import VAE


class Encoder(nn.Module):
    """Maps ``(N, F)`` normalized flattened tables to ``(N, L)`` embeddings (encoder means).

    Inputs must be transformed like the training data, with the normalizer
    saved beside the weights (``normalizer.npz``).
    """

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor) -> Tensor:
        mu, _ = self.vae.encode(x)
        return mu
