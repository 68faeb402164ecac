"""A tiny dataset with Square Law currents of known parameters, and trial fixtures built on it.

40 samples on a 3 x 6 x 6 grid: 14 low-Vt and 14 nominal devices for
training and 12 thick-oxide high-voltage devices held out, both polarities,
three corners. The drain current follows the Square Law with a body effect;
the other nine quantities are smooth positive stand-ins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from circtune.data.dataset import QUANTITIES, Dataset, Metadata
from circtune.data.split import Split, split_by_flavor
from circtune.objective.config import TrialConfig
from circtune.objective.data import TrialData, prepare_trial_data

# flavor: (samples, supply in V, Vt in V, Kp in A/V^2, lambda in 1/V)
_FLAVORS = {
    "lvt": (14, 1.8, 0.35, 3e-4, 0.10),
    "svt": (14, 1.8, 0.50, 2e-4, 0.08),
    "hv": (12, 3.3, 0.75, 1e-4, 0.04),
}
_CORNERS = ("tt", "ff", "ss")
_CORNER_VT_SHIFT_V = {"tt": 0.0, "ff": -0.05, "ss": 0.05}
_BODY_FACTOR_SQRT_V = 0.2
_SURFACE_POTENTIAL_V = 0.7
TINY_CONFIG = {
    "model/latent_dim": 4,
    "model/depth": 1,
    "model/width_1": 32,
    "loss/beta": 1e-3,
    "train/epochs": 3,
    "train/batch_size": 8,
    "train/lr": 3e-3,
    "downstream/hidden": 16,
    "downstream/epochs": 100,
    "downstream/lr": 3e-3,
    "objective/train_sizes": [8, 16],
    "seed": 0,
}


def build_tiny_dataset(*, n_vbs: int = 3, n_vgs: int = 6, n_vds: int = 6, seed: int = 0) -> Dataset:
    """Return the tiny dataset; identical for identical arguments."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    values, vbs_axes, vgs_axes, vds_axes = [], [], [], []
    for flavor, (count, supply_v, vt_v, kp, lam) in _FLAVORS.items():
        for index in range(count):
            polarity = "n" if index % 2 == 0 else "p"
            corner = _CORNERS[(index // 2) % len(_CORNERS)]
            sign = 1.0 if polarity == "n" else -1.0
            vt = vt_v + _CORNER_VT_SHIFT_V[corner] + rng.normal(0.0, 0.01) + (0.05 if polarity == "p" else 0.0)
            device_kp = kp * (0.5 if polarity == "p" else 1.0) * rng.uniform(0.9, 1.1)
            body_bias = np.linspace(0.6, 0.0, n_vbs)  # reverse body bias magnitude, ending at 0
            vgs = np.linspace(0.0, supply_v, n_vgs)
            vds = np.linspace(0.0, supply_v, n_vds)
            values.append(_quantities(body_bias, vgs, vds, vt=vt, kp=device_kp, lam=lam, sign=sign))
            vbs_axes.append(-sign * body_bias)
            vgs_axes.append(sign * vgs)
            vds_axes.append(sign * vds)
            rows.append(
                {"technology": "tiny", "device": f"{polarity}fet_{flavor}", "flavor": flavor, "polarity": polarity,
                 "corner": corner, "temperature_c": 27.0, "length_m": 0.15e-6, "width_m": 1e-6,
                 "mismatch_draw": index // 6}
            )  # fmt: skip
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    return Dataset(
        values=np.stack(values).astype(np.float32),
        quantities=QUANTITIES,
        vbs=np.stack(vbs_axes),
        vgs=np.stack(vgs_axes),
        vds=np.stack(vds_axes),
        metadata=Metadata.from_columns(columns),
        attrs={"generator": "tests/objective/conftest.py", "generator_version": "1", "settings": {"seed": seed}},
    )


def tiny_split(dataset: Dataset) -> Split:
    """Hold out the high-voltage flavor, half of its device groups for validation."""
    return split_by_flavor(dataset.metadata, ("hv",), validation_fraction=0.5, seed=0)


def tiny_config(**updates: object) -> TrialConfig:
    """Return a small, fast trial config with some flat keys changed."""
    return TrialConfig.from_flat({**TINY_CONFIG, **updates})


def poison_part(data: TrialData, part: str) -> TrialData:
    """Return a copy with NaN inputs and currents on the samples of ``part``."""
    indices = getattr(data, part)
    inputs = data.inputs.copy()
    current = data.current.copy()
    inputs[indices] = np.nan
    current[indices] = np.nan
    return dataclasses.replace(data, inputs=inputs, current=current)


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    return build_tiny_dataset()


@pytest.fixture(scope="session")
def tiny_trial_data(tiny_dataset: Dataset) -> TrialData:
    return prepare_trial_data(tiny_dataset, tiny_split(tiny_dataset))


@pytest.fixture
def make_config() -> Callable[..., TrialConfig]:
    """The ``tiny_config`` function: a small, fast config with some flat keys changed."""
    return tiny_config


@pytest.fixture
def poison() -> Callable[[TrialData, str], TrialData]:
    """The ``poison_part`` function: NaN inputs and currents on one part of the split."""
    return poison_part


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _quantities(
    body_bias: np.ndarray, vgs: np.ndarray, vds: np.ndarray, *, vt: float, kp: float, lam: float, sign: float
) -> np.ndarray:
    """Return ``(P, B, G, D)`` values on magnitude axes; ibias carries the polarity's sign."""
    body = _BODY_FACTOR_SQRT_V * (np.sqrt(_SURFACE_POTENTIAL_V + body_bias) - np.sqrt(_SURFACE_POTENTIAL_V))
    vov = vgs[None, :, None] - (vt + body)[:, None, None]  # (B, G, 1)
    vds_grid = vds[None, None, :]  # (1, 1, D)
    positive = np.clip(vov, 0.0, None)
    shape = np.where(vds_grid > positive, 0.5 * positive**2, positive * vds_grid - 0.5 * vds_grid**2)
    current = kp * shape * (1.0 + lam * vds_grid)  # (B, G, D)

    gm = kp * np.minimum(positive, vds_grid) + 1e-9
    gds = kp * np.clip(positive - vds_grid, 0.0, None) + lam * current + 1e-9
    gb = 0.2 * gm
    capacitance = 1e-15 * (1.0 + 0.1 * vgs[None, :, None] + 0.05 * vds_grid)
    capacitances = [capacitance * factor for factor in (0.3, 1.0, 0.2, 0.4, 0.5, 0.6)]
    order = (sign * current, gm, gds, gb, *capacitances)
    return np.stack([np.broadcast_to(q, current.shape) for q in order])
