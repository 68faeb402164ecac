"""Joint training of the VAE and a downstream head on training devices.

Shape legend: N samples, F input features, L latent dimensions, G Vgs
points, D Vds points.

Each step minimises ``reconstruction + beta * KL + gamma * downstream``
where ``downstream`` is the scale-free Square Law loss of the head applied
to the encoder mean. With ``gamma = 0`` the head trains on the detached
mean, so it never changes the encoder: the two-stage pipeline.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from circtune.errors import ConfigError
from circtune.models.downstream import DownstreamHead
from circtune.models.square_law import current_scale, scale_free_loss
from circtune.models.vae import VAE, vae_loss
from circtune.objective.config import TrialConfig
from circtune.objective.data import TensorData

_SEED_MODULUS = 2**63 - 1
_LOSS_NAMES = ("reconstruction", "kl", "downstream", "total")
_FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite, so the trial diverged.

    Attributes:
        loss_name: Which loss, e.g. ``"reconstruction"`` or
            ``"validation Square Law"``.
        epoch: The epoch at which it was seen (1 is the first), or None
            when it was seen after training.
        value: The non-finite value.
    """

    def __init__(self, loss_name: str, *, epoch: int | None, value: float) -> None:
        when = f"at epoch {epoch}" if epoch is not None else "after training"
        super().__init__(
            f"the {loss_name} loss is {value} {when}; the trial diverged, so lower train/lr or "
            "downstream/lr, or check the inputs for NaN"
        )
        self.loss_name = loss_name
        self.epoch = epoch
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only arguments need an explicit recipe to cross process boundaries (Ray pickles errors)
        return (functools.partial(type(self), epoch=self.epoch, value=self.value), (self.loss_name,))


class EpochMetrics(NamedTuple):
    """Mean losses of one epoch over the training samples, and its speed.

    Attributes:
        epoch: Number of the epoch just finished (1 is the first).
        reconstruction: Mean squared error per feature.
        kl: KL divergence, summed over latent dimensions.
        downstream: Scale-free Square Law loss of the joint head.
        total: ``reconstruction + beta * kl + gamma * downstream``.
        samples_per_s: Training samples processed per second.
    """

    epoch: int
    reconstruction: float
    kl: float
    downstream: float
    total: float
    samples_per_s: float


class JointTrainer:
    """Train a VAE and a downstream head together on the training part.

    Batches are drawn by indexing tensors that are already on the device.
    All randomness comes from the config's seed. Weights are initialised
    under it, and two generators owned by the trainer draw the batch order
    (on the CPU) and the latent noise and dropout masks (on the device). One
    seed therefore gives identical results on the CPU.

    Args:
        config: Trial hyperparameters.
        data: Trial tensors, on ``device``.
        device: Where the models train.

    Raises:
        ValueError: If ``data`` is on another device.
    """

    def __init__(self, config: TrialConfig, data: TensorData, *, device: torch.device) -> None:
        if torch.device(device) != data.device:
            raise ValueError(f"data is on {data.device} but the trainer was asked to train on {device}")
        self.config = config
        self.data = data
        self.device = data.device
        self.epoch = 0
        self._train = data.indices["train"]

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = config.model
            self.vae = VAE(
                int(data.inputs.shape[1]),
                widths=model.widths,
                latent_dim=model.latent_dim,
                activation=model.activation,
                dropout=model.dropout,
            )
            self.head = DownstreamHead(model.latent_dim, hidden=config.downstream.hidden)
        self.head.warm_start(data.warm_start.cpu())
        self.vae.to(self.device)
        self.head.to(self.device)
        # the fused kernel is several times faster than the default per-tensor loop, on CPU as on CUDA
        self.optimizer = torch.optim.AdamW(
            _parameter_groups(self.vae, self.head, config.train.weight_decay),
            lr=config.train.lr,
            fused=self.device.type in _FUSED_OPTIMIZER_DEVICES,
        )
        self._batch_generator = torch.Generator().manual_seed(config.seed)
        self._noise_generator = torch.Generator(device=self.device).manual_seed((config.seed + 1) % _SEED_MODULUS)

    def train_epoch(self) -> EpochMetrics:
        """Run one pass over the training samples in shuffled mini-batches.

        Raises:
            NonFiniteLossError: If a mean loss of the epoch is NaN or infinite.
        """
        self.vae.train()
        self.head.train()
        n_train = len(self._train)
        order = self._train[torch.randperm(n_train, generator=self._batch_generator).to(self.device)]
        sums = torch.zeros(len(_LOSS_NAMES), dtype=torch.float64, device=self.device)

        start_s = time.perf_counter()
        for batch in order.split(self.config.train.batch_size):
            sums += self._step(batch).double() * len(batch)
        means = (sums / n_train).tolist()  # waits for the device
        elapsed_s = time.perf_counter() - start_s
        self.epoch += 1

        for name, value in zip(_LOSS_NAMES, means, strict=True):
            if not math.isfinite(value):
                raise NonFiniteLossError(name, epoch=self.epoch, value=value)
        reconstruction, kl, downstream, total = means
        return EpochMetrics(self.epoch, reconstruction, kl, downstream, total, n_train / max(elapsed_s, 1e-9))

    def state_dict(self) -> dict[str, Any]:
        """Return a deep copy of everything needed to resume: weights, optimizer, epoch, RNG states.

        It contains only tensors, numbers, strings, lists and dicts, so
        ``torch.load(path, weights_only=True)`` reads it back.
        """
        state = {
            "config": self.config.to_flat(),
            "epoch": self.epoch,
            "vae": self.vae.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "batch_rng": self._batch_generator.get_state(),
            "noise_rng": self._noise_generator.get_state(),
        }
        return copy.deepcopy(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict`` so that training continues exactly where it stopped.

        Raises:
            ConfigError: If the state was saved with another config.
        """
        saved = TrialConfig.from_flat(state["config"])
        if saved != self.config:
            raise ConfigError(
                f"the checkpoint was saved with config {saved.to_flat()}, which differs from this trial's "
                f"{self.config.to_flat()}; resume with the same config"
            )
        self.vae.load_state_dict(state["vae"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._batch_generator.set_state(state["batch_rng"].cpu())
        self._noise_generator.set_state(state["noise_rng"].cpu())
        self.epoch = int(state["epoch"])

    def _step(self, batch: Tensor) -> Tensor:
        """Take one optimizer step on ``(n,)`` sample indices; return the 4 loss terms."""
        data = self.data
        gamma = self.config.loss.gamma
        x = data.inputs.index_select(0, batch)  # (n, F)
        with self._autocast():
            output = self.vae(x, generator=self._noise_generator)
            vae_terms = vae_loss(output, x, beta=self.config.loss.beta)
            head_input = output.mu if gamma > 0 else output.mu.detach()  # (n, L)
            measured = data.current[batch]  # (n, G, D)
            scale = current_scale(measured)  # (n,)
            predicted = self.head.predict_current(head_input, data.vgs[batch], data.vds[batch], scale)
        downstream = scale_free_loss(predicted, measured, scale=scale).mean()

        # with gamma = 0 the head still learns, from a loss that cannot reach the encoder; Adam makes
        # the head's step size independent of the weight the loss carries
        objective = vae_terms.total + (gamma if gamma > 0 else 1.0) * downstream
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()

        total = vae_terms.total + gamma * downstream
        return torch.stack([vae_terms.reconstruction, vae_terms.kl, downstream, total]).detach()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.train.precision == "bfloat16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _parameter_groups(vae: VAE, head: DownstreamHead, weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters so that weight decay applies to weight matrices only, not biases."""
    parameters = [*vae.parameters(), *head.parameters()]
    return [
        {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
    ]
