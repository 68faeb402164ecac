"""Hyperparameters of one search trial, built from and flattened to ``section/name`` keys.

One flat key names each parameter everywhere: in the experiment YAML, in Ray
Tune's config, in Optuna's study and in MLflow's params. The keys, with
their defaults:

    model/latent_dim        16        L, size of the embedding
    model/depth             2         number of hidden layers of the encoder
    model/width_<i>         512, 128  width of hidden layer i, for i <= depth
    model/activation        silu      one of ACTIVATIONS
    model/dropout           0.0       dropout after each hidden layer
    loss/beta               0.001     weight of the KL term
    loss/gamma              0.0       weight of the downstream loss (0: two-stage)
    train/epochs            50        VAE training epochs
    train/batch_size        64        samples per VAE step
    train/lr                0.001     AdamW learning rate
    train/weight_decay      0.0       AdamW weight decay
    train/precision         float32   float32, or bfloat16 autocast
    downstream/hidden       200       hidden width of the downstream head
    downstream/epochs       500       full-batch Adam steps of a fresh head
    downstream/lr           0.001     Adam learning rate of a fresh head
    objective/train_sizes   [16, 64]  labelled training devices per score
    seed                    0         seed of weights, batches and subsets
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from circtune.errors import ConfigError
from circtune.models.vae import ACTIVATIONS

MAX_DEPTH = 8
DEFAULT_DEPTH = 2
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
DEFAULT_WIDTHS: tuple[int, ...] = (512, 128, 64, 64, 64, 64, 64, 64)  # width_<i> default, i = 1 .. MAX_DEPTH
_MAX_SIZE = 1 << 20
_WIDTH_KEY = re.compile(r"model/width_(\d+)")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape of the VAE.

    Attributes:
        latent_dim: L, the size of the embedding.
        widths: Width of each encoder hidden layer, first to last.
        activation: A key of ``circtune.models.vae.ACTIVATIONS``.
        dropout: Dropout probability after each hidden layer.
    """

    latent_dim: int = 16
    widths: tuple[int, ...] = DEFAULT_WIDTHS[:DEFAULT_DEPTH]
    activation: str = "silu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        _check_int("model/latent_dim", self.latent_dim, 1, _MAX_SIZE)
        _check_int("model/depth", self.depth, 1, MAX_DEPTH)
        for index, width in enumerate(self.widths, start=1):
            _check_int(f"model/width_{index}", width, 1, _MAX_SIZE)
        _check_choice("model/activation", self.activation, tuple(ACTIVATIONS))
        _check_float("model/dropout", self.dropout, 0.0, 1.0, high_inclusive=False)

    @property
    def depth(self) -> int:
        """Number of hidden layers of the encoder (and of the decoder)."""
        return len(self.widths)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the joint loss ``reconstruction + beta * KL + gamma * downstream``."""

    beta: float = 1e-3
    gamma: float = 0.0

    def __post_init__(self) -> None:
        _check_float("loss/beta", self.beta, 0.0, 1e6)
        _check_float("loss/gamma", self.gamma, 0.0, 1e6)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """VAE training: AdamW over shuffled mini-batches of training samples."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    precision: str = "float32"

    def __post_init__(self) -> None:
        _check_int("train/epochs", self.epochs, 1, _MAX_SIZE)
        _check_int("train/batch_size", self.batch_size, 1, _MAX_SIZE)
        _check_float("train/lr", self.lr, 0.0, 1.0, low_inclusive=False)
        _check_float("train/weight_decay", self.weight_decay, 0.0, 1.0)
        _check_choice("train/precision", self.precision, PRECISIONS)


@dataclasses.dataclass(frozen=True)
class DownstreamConfig:
    """A fresh downstream head: hidden width and full-batch Adam training."""

    hidden: int = 200
    epochs: int = 500
    lr: float = 1e-3

    def __post_init__(self) -> None:
        _check_int("downstream/hidden", self.hidden, 1, _MAX_SIZE)
        _check_int("downstream/epochs", self.epochs, 1, _MAX_SIZE)
        _check_float("downstream/lr", self.lr, 0.0, 1.0, low_inclusive=False)


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Scoring: the numbers of labelled training devices a fresh head is fitted on."""

    train_sizes: tuple[int, ...] = (16, 64)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_sizes", tuple(self.train_sizes))
        if not self.train_sizes:
            raise ConfigError("objective/train_sizes is empty; give at least one size, for example [16, 64]")
        for size in self.train_sizes:
            _check_int("objective/train_sizes", size, 1, _MAX_SIZE)


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """Every hyperparameter of one trial, one frozen dataclass per section."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    downstream: DownstreamConfig = dataclasses.field(default_factory=DownstreamConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0, 2**63 - 1)

    @classmethod
    def from_flat(cls, flat: Mapping[str, object], *, allow_inactive: bool = False) -> TrialConfig:
        """Build a config from flat ``section/name`` keys; missing keys take defaults.

        Args:
            flat: Parameter values by flat key.
            allow_inactive: Drop ``model/width_<i>`` keys with i greater than
                the depth instead of rejecting them (a search space that is
                not conditional samples them anyway).

        Raises:
            ConfigError: On an unknown key, a value of the wrong type, or a
                value out of range; the message names the key.
        """
        values = {key: _coerce(key, value) for key, value in flat.items()}
        depth = values.get("model/depth", DEFAULT_DEPTH)
        assert isinstance(depth, int)
        _check_int("model/depth", depth, 1, MAX_DEPTH)
        _check_widths(values, depth, allow_inactive=allow_inactive)

        widths = tuple(
            _as_int(f"model/width_{i}", values.get(f"model/width_{i}", DEFAULT_WIDTHS[i - 1]))
            for i in range(1, depth + 1)
        )
        model = ModelConfig(widths=widths, **_section(values, "model", ("latent_dim", "activation", "dropout")))
        return cls(
            model=model,
            loss=LossConfig(**_section(values, "loss", ("beta", "gamma"))),
            train=TrainConfig(**_section(values, "train", ("epochs", "batch_size", "lr", "weight_decay", "precision"))),
            downstream=DownstreamConfig(**_section(values, "downstream", ("hidden", "epochs", "lr"))),
            objective=ObjectiveConfig(**_section(values, "objective", ("train_sizes",))),
            **_section(values, "", ("seed",)),
        )

    def to_flat(self) -> dict[str, object]:
        """Return the flat ``section/name`` keys that ``from_flat`` reads back to this config."""
        flat: dict[str, object] = {"model/latent_dim": self.model.latent_dim, "model/depth": self.model.depth}
        flat.update({f"model/width_{i}": width for i, width in enumerate(self.model.widths, start=1)})
        flat.update(
            {
                "model/activation": self.model.activation,
                "model/dropout": self.model.dropout,
                "loss/beta": self.loss.beta,
                "loss/gamma": self.loss.gamma,
                "train/epochs": self.train.epochs,
                "train/batch_size": self.train.batch_size,
                "train/lr": self.train.lr,
                "train/weight_decay": self.train.weight_decay,
                "train/precision": self.train.precision,
                "downstream/hidden": self.downstream.hidden,
                "downstream/epochs": self.downstream.epochs,
                "downstream/lr": self.downstream.lr,
                "objective/train_sizes": list(self.objective.train_sizes),
                "seed": self.seed,
            }
        )
        return flat

    def with_values(self, updates: Mapping[str, object]) -> TrialConfig:
        """Return a copy with some flat keys changed, validated like ``from_flat``."""
        return TrialConfig.from_flat({**self.to_flat(), **updates})


# Kind of every flat key except model/width_<i>: "int", "float", "ints" or a tuple of choices.
_KINDS: dict[str, str | tuple[str, ...]] = {
    "model/latent_dim": "int",
    "model/depth": "int",
    "model/activation": tuple(ACTIVATIONS),
    "model/dropout": "float",
    "loss/beta": "float",
    "loss/gamma": "float",
    "train/epochs": "int",
    "train/batch_size": "int",
    "train/lr": "float",
    "train/weight_decay": "float",
    "train/precision": PRECISIONS,
    "downstream/hidden": "int",
    "downstream/epochs": "int",
    "downstream/lr": "float",
    "objective/train_sizes": "ints",
    "seed": "int",
}
FLAT_KEYS: tuple[str, ...] = (*_KINDS, *(f"model/width_{i}" for i in range(1, MAX_DEPTH + 1)))


def _coerce(key: str, value: object) -> object:
    kind = "int" if _WIDTH_KEY.fullmatch(key) else _KINDS.get(key)
    if kind is None or (_WIDTH_KEY.fullmatch(key) and not 1 <= int(key.rsplit("_", 1)[1]) <= MAX_DEPTH):
        raise ConfigError(
            f"unknown parameter {key!r}; known parameters are {', '.join(_KINDS)} and model/width_1 .. "
            f"model/width_{MAX_DEPTH}"
        )
    if kind == "int":
        return _as_int(key, value)
    if kind == "float":
        return _as_float(key, value)
    if kind == "ints":
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_as_int(key, item) for item in items)
    assert isinstance(kind, tuple)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be one of {list(kind)}, but got {value!r}")
    return value


def _as_int(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, but got {value!r}")
    if hasattr(value, "__index__"):
        return int(value.__index__())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ConfigError(f"{key} must be an integer, but got {value!r}")


def _as_float(key: str, value: object) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, but got {value!r}")
    if isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, but got {value!r}") from None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, but got {value!r}") from None


def _section(values: Mapping[str, object], section: str, names: tuple[str, ...]) -> dict[str, Any]:
    prefix = f"{section}/" if section else ""
    return {name: values[prefix + name] for name in names if prefix + name in values}


def _check_widths(values: Mapping[str, object], depth: int, *, allow_inactive: bool) -> None:
    for key in list(values):
        match = _WIDTH_KEY.fullmatch(key)
        if match and int(match.group(1)) > depth and not allow_inactive:
            raise ConfigError(f"{key} is set but model/depth is {depth}; remove {key} or raise model/depth")


def _check_int(key: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, but got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{key} must lie in [{low}, {high}], but got {value}")


def _check_float(
    key: str, value: float, low: float, high: float, *, low_inclusive: bool = True, high_inclusive: bool = True
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, but got {value!r}")
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        interval = f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ConfigError(f"{key} must lie in {interval}, but got {value}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, but got {value!r}")
