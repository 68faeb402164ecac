"""Transforms that turn raw tables into network inputs and Square Law targets.

Shape legend: N samples, P quantities, B Vbs points, G Vgs points, D Vds
points.

Network inputs: PMOS tables are mirrored onto NMOS signs (only the drain
current changes sign under the mirror, because conductances and capacitances
are derivatives of current or charge by voltage, and both flip together).
Then each quantity goes through a signed logarithm
``sign(x) * log10(1 + |x| / scale)`` because it spans many decades and some
capacitances (``cds`` above all) are negative, and each feature is
standardized with statistics of training samples only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from circtune.data.dataset import Dataset
from circtune.errors import DataError

# Signed-log scales: below these magnitudes a quantity is treated as linear.
LOG_SCALES: dict[str, float] = {
    "ibias": 1e-12,  # A
    "gm": 1e-12, "gds": 1e-12, "gb": 1e-12,  # S
    "cgd": 1e-18, "cgs": 1e-18, "cds": 1e-18, "cgb": 1e-18, "cdb": 1e-18, "csb": 1e-18,  # F
}  # fmt: skip
_MIN_STD = 1e-3  # in signed-log decades; features with less spread are only centred
_ZERO_VBS_TOLERANCE_V = 1e-9


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Signed-log transform and per-feature standardization.

    Attributes:
        quantities: Names of the P quantities it transforms, in order.
        mean: ``(P, B, G, D)`` mean of the signed-log training values.
        std: ``(P, B, G, D)`` standard deviation, floored at a small value.
    """

    quantities: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def transform(self, dataset: Dataset) -> np.ndarray:
        """Return the ``(N, P, B, G, D)`` float32 network input of a dataset.

        Raises:
            DataError: If the dataset's quantities or grid differ from the
                ones the normalizer was fitted on.
        """
        if dataset.quantities != self.quantities or dataset.grid_shape != self.mean.shape[1:]:
            raise DataError(
                f"dataset has quantities {list(dataset.quantities)} on grid {dataset.grid_shape}, but the "
                f"normalizer was fitted on {list(self.quantities)} on grid {self.mean.shape[1:]}"
            )
        logged = signed_log_values(dataset)
        return ((logged - self.mean) / self.std).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """Return the arrays that define the normalizer, for saving."""
        return {"quantities": np.asarray(self.quantities), "mean": self.mean, "std": self.std}


@dataclasses.dataclass(frozen=True)
class SquareLawTargets:
    """Drain-current magnitudes at Vbs = 0 with their voltage axes.

    Attributes:
        current: ``(N, G, D)`` |ibias| in amperes at Vbs = 0.
        vgs: ``(N, G)`` |Vgs| in volts.
        vds: ``(N, D)`` |Vds| in volts.
    """

    current: np.ndarray
    vgs: np.ndarray
    vds: np.ndarray


def fit_normalizer(dataset: Dataset, train: np.ndarray) -> Normalizer:
    """Fit the standardization on the training samples only.

    Args:
        dataset: The whole dataset.
        train: Indices of the training samples; no other sample is read.

    Raises:
        DataError: If ``train`` is empty.
    """
    if len(train) == 0:
        raise DataError("the training part is empty, so no normalization can be fitted; hold out fewer flavors")
    logged = signed_log_values(dataset.take(train))
    mean = logged.mean(axis=0)
    std = np.maximum(logged.std(axis=0), _MIN_STD)
    return Normalizer(quantities=dataset.quantities, mean=mean.astype(np.float32), std=std.astype(np.float32))


def signed_log_values(dataset: Dataset) -> np.ndarray:
    """Return the ``(N, P, B, G, D)`` signed-log values, PMOS mirrored to NMOS signs."""
    values = dataset.values.astype(np.float64)
    if "ibias" in dataset.quantities:
        mirror = np.where(dataset.metadata.polarity == "p", -1.0, 1.0)
        values[:, dataset.quantities.index("ibias")] *= mirror[:, None, None, None]
    scales = np.array([LOG_SCALES[name] for name in dataset.quantities])[None, :, None, None, None]
    return np.sign(values) * np.log10(1.0 + np.abs(values) / scales)


def square_law_targets(dataset: Dataset) -> SquareLawTargets:
    """Extract |ibias| on the (Vgs, Vds) grid at Vbs = 0, per sample.

    Raises:
        DataError: If ibias is absent or a sample has no Vbs = 0 point.
    """
    if "ibias" not in dataset.quantities:
        raise DataError(f"the Square Law task needs 'ibias', but the dataset has only {list(dataset.quantities)}")
    zero = np.argmin(np.abs(dataset.vbs), axis=1)  # (N,)
    offsets = np.abs(dataset.vbs[np.arange(dataset.n_samples), zero])
    if np.any(offsets > _ZERO_VBS_TOLERANCE_V):
        sample = int(np.argmax(offsets))
        raise DataError(
            f"sample {sample} (device {dataset.metadata.device[sample]}) has no Vbs = 0 point, its closest is "
            f"{offsets[sample]:.3g} V; sweep Vbs through 0"
        )
    ibias = dataset.quantity("ibias")  # (N, B, G, D)
    current = np.abs(ibias[np.arange(dataset.n_samples), zero])  # (N, G, D)
    return SquareLawTargets(current=current.astype(np.float64), vgs=np.abs(dataset.vgs), vds=np.abs(dataset.vds))
