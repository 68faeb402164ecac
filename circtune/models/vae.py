"""A fully connected variational autoencoder for flattened characterization tables.

Shape legend: N samples, F input features (P * B * G * D for a whole table),
L latent dimensions. Inputs are standardized signed-log values, so they and
the reconstructions are unitless.

The encoder maps F -> widths[0] -> ... -> widths[-1] -> 2 L (mean and log
variance of q(z|x)); the decoder mirrors it, L -> widths[-1] -> ... ->
widths[0] -> F, with a linear output layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}
# The log variance is clamped to this range before exp(), so a diverging
# encoder gives large but finite losses that the trainer can report.
_LOGVAR_RANGE = (-30.0, 20.0)


class VAEOutput(NamedTuple):
    """Output of a forward pass.

    Attributes:
        reconstruction: ``(N, F)`` decoded sample.
        mu: ``(N, L)`` mean of q(z|x), the embedding.
        logvar: ``(N, L)`` log variance of q(z|x).
    """

    reconstruction: Tensor
    mu: Tensor
    logvar: Tensor


class VAELoss(NamedTuple):
    """Terms of the VAE loss, each a scalar averaged over the batch.

    Attributes:
        total: ``reconstruction + beta * kl``.
        reconstruction: Mean squared error per feature.
        kl: KL divergence of q(z|x) from the unit Gaussian, summed over
            latent dimensions.
    """

    total: Tensor
    reconstruction: Tensor
    kl: Tensor


class VAE(nn.Module):
    """Fully connected VAE with a mirrored encoder and decoder.

    Args:
        n_features: F, the size of one flattened input.
        widths: Hidden layer widths of the encoder, first to last; the
            decoder uses them in reverse. Its length is the depth.
        latent_dim: L, the size of the embedding.
        activation: A key of ``ACTIVATIONS``.
        dropout: Dropout probability after each hidden layer, in [0, 1).

    Raises:
        ValueError: If a size is not positive, the activation is unknown or
            the dropout is outside [0, 1).
    """

    def __init__(
        self,
        n_features: int,
        *,
        widths: Sequence[int],
        latent_dim: int,
        activation: str = "silu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_features < 1 or latent_dim < 1 or not widths or min(widths) < 1:
            raise ValueError(
                f"sizes must be positive, but got n_features={n_features}, widths={list(widths)}, "
                f"latent_dim={latent_dim}"
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, but got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), but got {dropout}")
        self.n_features = n_features
        self.latent_dim = latent_dim
        self.dropout = dropout

        encoder_sizes = [n_features, *widths]
        decoder_sizes = [latent_dim, *reversed(widths)]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(encoder_sizes))
        self.to_latent = nn.Linear(widths[-1], 2 * latent_dim)
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(decoder_sizes))
        self.to_output = nn.Linear(widths[0], n_features)
        self.activation = ACTIVATIONS[activation]()

    def encode(self, x: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Return the ``(N, L)`` mean and log variance of q(z|x) for ``(N, F)`` inputs."""
        hidden = self._hidden_stack(x, self.encoder, generator)
        mu, logvar = self.to_latent(hidden).chunk(2, dim=-1)
        return mu, logvar.clamp(*_LOGVAR_RANGE)

    def decode(self, z: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Return the ``(N, F)`` reconstruction of ``(N, L)`` latent codes."""
        return self.to_output(self._hidden_stack(z, self.decoder, generator))

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, sample the latent code and decode.

        In training mode z is drawn from q(z|x) and dropout is active; in
        evaluation mode z is the mean and dropout is off.

        Args:
            x: ``(N, F)`` standardized inputs.
            generator: Random source for the latent noise and dropout masks,
                on the device of ``x``; the global one if None.
        """
        mu, logvar = self.encode(x, generator=generator)
        if self.training:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + noise * torch.exp(0.5 * logvar)
        else:
            z = mu
        return VAEOutput(reconstruction=self.decode(z, generator=generator), mu=mu, logvar=logvar)

    def _hidden_stack(self, x: Tensor, layers: nn.ModuleList, generator: torch.Generator | None) -> Tensor:
        for layer in layers:
            x = _dropout(self.activation(layer(x)), self.dropout if self.training else 0.0, generator)
        return x


def vae_loss(output: VAEOutput, x: Tensor, *, beta: float) -> VAELoss:
    """Compute the VAE loss of a batch.

    Args:
        output: The forward pass on ``x``.
        x: ``(N, F)`` inputs.
        beta: Weight of the KL term.

    Returns:
        Total, reconstruction and KL terms, in float32 or wider.
    """
    reconstruction = (output.reconstruction.float() - x.float()).square().mean()
    mu = output.mu.float()
    logvar = output.logvar.float()
    kl = (0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)).sum(dim=1).mean()
    return VAELoss(total=reconstruction + beta * kl, reconstruction=reconstruction, kl=kl)


def _dropout(x: Tensor, probability: float, generator: torch.Generator | None) -> Tensor:
    """Apply inverted dropout with masks drawn from ``generator``."""
    if probability == 0.0:
        return x
    keep = torch.empty_like(x).bernoulli_(1.0 - probability, generator=generator)
    return x * keep / (1.0 - probability)
