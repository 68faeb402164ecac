"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from circtune.data.dataset import QUANTITIES, Dataset, Metadata


def build_dataset(
    *,
    flavors: tuple[str, ...] = ("lvt", "svt", "hv"),
    corners: tuple[str, ...] = ("tt", "ff", "ss"),
    temperatures_c: tuple[float, ...] = (27.0, 85.0),
    n_draws: int = 2,
    grid: tuple[int, int, int] = (2, 4, 5),
    seed: int = 0,
) -> Dataset:
    """Build a small dataset of square-law NMOS and PMOS tables with smooth fake extras."""
    rng = np.random.default_rng(seed)
    n_vbs, n_vgs, n_vds = grid
    rows = list(itertools.product(flavors, ("n", "p"), corners, temperatures_c, range(n_draws)))
    n_samples = len(rows)
    threshold = {"lvt": 0.3, "svt": 0.4, "hvt": 0.5, "hv": 0.7}
    vdd = {"lvt": 1.8, "svt": 1.8, "hvt": 1.8, "hv": 5.0}
    values = np.empty((n_samples, len(QUANTITIES), n_vbs, n_vgs, n_vds))
    axes = {"vbs": np.empty((n_samples, n_vbs)), "vgs": np.empty((n_samples, n_vgs)), "vds": np.empty((n_samples, n_vds))}
    for index, (flavor, polarity, _corner, temperature, _draw) in enumerate(rows):
        sign = 1.0 if polarity == "n" else -1.0
        vbs = -sign * np.linspace(0.0, vdd[flavor] / 2, n_vbs)
        vgs = sign * np.linspace(0.0, vdd[flavor], n_vgs)
        vds = sign * np.linspace(0.0, vdd[flavor], n_vds)
        axes["vbs"][index], axes["vgs"][index], axes["vds"][index] = vbs, vgs, vds
        vt = threshold[flavor] - 0.0007 * (temperature - 27.0) + 0.01 * rng.standard_normal()
        vt_b = vt + 0.2 * (np.sqrt(0.8 + np.abs(vbs)) - np.sqrt(0.8))  # (B,)
        overdrive = np.clip(np.abs(vgs)[None, :] - vt_b[:, None], 1e-3, None)[:, :, None]  # (B, G, 1)
        vds_abs = np.abs(vds)[None, None, :]
        current = 2e-4 * np.where(
            vds_abs < overdrive, overdrive * vds_abs - vds_abs**2 / 2, overdrive**2 / 2
        ) * (1 + 0.05 * vds_abs)
        values[index, 0] = sign * (current + 1e-12)
        for position in range(1, len(QUANTITIES)):
            values[index, position] = (1e-5 if position < 4 else 1e-15) * (1.0 + position * current / current.max())
    metadata = Metadata.from_columns(
        {
            "technology": ["test"] * n_samples,
            "device": [f"{polarity}mos_{flavor}" for flavor, polarity, *_ in rows],
            "flavor": [row[0] for row in rows],
            "polarity": [row[1] for row in rows],
            "corner": [row[2] for row in rows],
            "temperature_c": [row[3] for row in rows],
            "length_m": [1e-6] * n_samples,
            "width_m": [1e-6] * n_samples,
            "mismatch_draw": [row[4] for row in rows],
        }
    )
    return Dataset(values=values, quantities=QUANTITIES, metadata=metadata, attrs={"generator": "tests"}, **axes)


@pytest.fixture
def small_dataset() -> Dataset:
    """A 72-sample dataset of three flavors, both polarities, on a 2 x 4 x 5 grid."""
    return build_dataset()


@pytest.fixture
def dataset_factory() -> Callable[..., Dataset]:
    """The ``build_dataset`` function, for tests that need other sizes."""
    return build_dataset


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path: Ray's socket paths must stay under 108 bytes."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
