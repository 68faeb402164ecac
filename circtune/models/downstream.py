"""The downstream head that predicts Square Law parameters, and its input representations.

Shape legend: N samples, F head inputs, K PCA components, G Vgs points,
D Vds points. The head predicts the dimensionless parameters of
``circtune.models.square_law.to_physical`` in log space, in the order of
``circtune.models.square_law.PARAM_NAMES``; each device's sweep spans and
current scale turn them into volts and amperes.

The head takes one of three representations of a device (``INPUT_KINDS``):

    embedding  the VAE encoder mean, L values
    raw        the normalized ibias cube, B * G * D values
    pca        the normalized full table projected on its first K principal
               components, K equal to the latent size
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import Tensor, nn

from circtune.errors import ConfigError
from circtune.models.square_law import N_PARAMS, square_law_current, to_physical
from circtune.models.vae import VAE

InputKind = Literal["embedding", "raw", "pca"]
INPUT_KINDS: tuple[InputKind, ...] = ("embedding", "raw", "pca")
DEFAULT_HIDDEN = 200
# At a warm start the output weights are scaled by this factor, so that the
# first predictions stay near the warm-start parameters but still depend on
# the input.
_WARM_START_WEIGHT_SCALE = 0.1
# Half-widths, in log units, of the box around the warm start that bounds
# the dimensionless predictions softly. Vt / max|Vgs| stays within a factor
# of 4 of the warm start, Kp within 30, lambda within 10 and eta within 1.6.
# Inputs far outside the
# training distribution then give wrong but physical parameters, not
# currents of kiloamperes.
LOG_PARAM_SPANS: tuple[float, ...] = (math.log(4.0), math.log(30.0), math.log(10.0), math.log(1.6))
_MIN_INPUT_STD = 1e-6
_EMBED_BATCH = 1024


class DownstreamHead(nn.Module):
    """One hidden layer mapping ``(N, F)`` inputs to ``(N, 4)`` dimensionless log parameters.

    Inputs are standardized with the stored ``input_mean`` and
    ``input_std`` buffers (0 and 1 until ``set_standardization`` is called)
    before the first layer. The output layer's values ``raw`` become log
    parameters ``center + span * tanh((raw - center) / span)``: equal to
    ``raw`` near ``center`` (the warm start, 0 until ``warm_start`` is
    called) and bounded by ``LOG_PARAM_SPANS`` far from it.

    Args:
        n_inputs: F, the size of one input.
        hidden: Width of the hidden layer.
    """

    input_mean: Tensor
    input_std: Tensor
    center: Tensor
    spans: Tensor

    def __init__(self, n_inputs: int, *, hidden: int = DEFAULT_HIDDEN) -> None:
        super().__init__()
        if n_inputs < 1 or hidden < 1:
            raise ValueError(f"sizes must be positive, but got n_inputs={n_inputs}, hidden={hidden}")
        self.register_buffer("input_mean", torch.zeros(n_inputs))
        self.register_buffer("input_std", torch.ones(n_inputs))
        self.register_buffer("center", torch.zeros(N_PARAMS))
        self.register_buffer("spans", torch.tensor(LOG_PARAM_SPANS))
        self.hidden = nn.Linear(n_inputs, hidden)
        self.output = nn.Linear(hidden, N_PARAMS)
        self.activation = nn.ReLU()

    def forward(self, features: Tensor) -> Tensor:
        """Return ``(N, 4)`` dimensionless log parameters for ``(N, F)`` inputs."""
        standardized = (features - self.input_mean) / self.input_std
        raw = self.output(self.activation(self.hidden(standardized)))  # (N, 4)
        return self.center + self.spans * torch.tanh((raw - self.center) / self.spans)

    def predict_params(self, features: Tensor, vgs: Tensor, vds: Tensor, scale: Tensor) -> Tensor:
        """Return the ``(N, 4)`` physical log parameters of each device.

        Args:
            features: ``(N, F)`` inputs.
            vgs: ``(N, G)`` |Vgs| in volts.
            vds: ``(N, D)`` |Vds| in volts.
            scale: ``(N,)`` current scale in amperes, read from each
                device's own table (``square_law.current_scale``).
        """
        return to_physical(self(features), vgs, vds, scale)

    def predict_current(self, features: Tensor, vgs: Tensor, vds: Tensor, scale: Tensor) -> Tensor:
        """Return the ``(N, G, D)`` predicted |I| in amperes on each device's grid.

        Arguments as in ``predict_params``.
        """
        return square_law_current(self.predict_params(features, vgs, vds, scale), vgs, vds)

    @torch.no_grad()
    def warm_start(self, log_params: Tensor) -> None:
        """Set the output bias and the bounding box's center to ``(4,)`` dimensionless log parameters; shrink the output weights."""
        self.output.bias.copy_(log_params.to(self.output.bias))
        self.center.copy_(log_params.to(self.center))
        self.output.weight.mul_(_WARM_START_WEIGHT_SCALE)

    @torch.no_grad()
    def set_standardization(self, features: Tensor) -> None:
        """Store the mean and floored standard deviation of ``(N, F)`` features."""
        self.input_mean.copy_(features.mean(dim=0))
        self.input_std.copy_(features.std(dim=0, correction=0).clamp(min=_MIN_INPUT_STD))


@dataclasses.dataclass(frozen=True)
class PCAProjection:
    """Principal components of training features.

    Attributes:
        mean: ``(F,)`` mean of the training features.
        components: ``(K, F)`` orthonormal principal directions, largest
            variance first.
    """

    mean: Tensor
    components: Tensor

    def project(self, features: Tensor) -> Tensor:
        """Return the ``(N, K)`` projection of ``(N, F)`` features."""
        return (features - self.mean) @ self.components.T


def fit_pca(features: Tensor, n_components: int) -> PCAProjection:
    """Fit a PCA by singular value decomposition of the centred features.

    Args:
        features: ``(N, F)`` training features only.
        n_components: K, the number of components to keep.

    Raises:
        ConfigError: If K exceeds ``min(N, F)``.
    """
    n_samples, n_features = features.shape
    if not 1 <= n_components <= min(n_samples, n_features):
        raise ConfigError(
            f"PCA with {n_components} components needs at least that many training samples and features, "
            f"but got {n_samples} samples of {n_features} features; lower model/latent_dim"
        )
    mean = features.mean(dim=0)
    _, _, right = torch.linalg.svd(features - mean, full_matrices=False)  # (min(N, F), F)
    components = right[:n_components]

    # fix each direction's sign so that its largest entry is positive
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    return PCAProjection(mean=mean, components=components * signs)


@torch.no_grad()
def embed(vae: VAE, inputs: Tensor, *, batch_size: int = _EMBED_BATCH) -> Tensor:
    """Return the ``(N, L)`` encoder means of ``(N, F)`` inputs, in evaluation mode.

    The module's training flag is restored afterwards.
    """
    was_training = vae.training
    vae.eval()
    try:
        means = [vae.encode(inputs[start : start + batch_size])[0] for start in range(0, inputs.shape[0], batch_size)]
    finally:
        vae.train(was_training)
    return torch.cat(means) if means else inputs.new_zeros((0, vae.latent_dim))
