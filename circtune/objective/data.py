"""Everything a trial reads, prepared once per dataset and split.

Shape legend: N samples, P quantities, B Vbs points, G Vgs points, D Vds
points, F = P * B * G * D input features.

``TrialData`` contains NumPy arrays only, so a search can put one copy in Ray's
object store per node; ``to_device`` turns it into torch tensors on one
device. Nothing in it is computed from held-out samples except the oracle
floor of the validation part, which only scores and never trains.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from circtune.data.dataset import Dataset
from circtune.data.preprocess import Normalizer, fit_normalizer, square_law_targets
from circtune.data.split import Split
from circtune.errors import DataError
from circtune.models.square_law import current_scale, fit_square_law, to_normalized

logger = logging.getLogger(__name__)

Part = Literal["train", "validation", "test"]

# Training devices fitted to find the head's warm start.
_WARM_START_DEVICES = 512


class OracleFloor(NamedTuple):
    """Errors of a direct Square Law fit of each device to its own current.

    Attributes:
        loss: Scale-free loss, mean over devices.
        relative_error_pct: Relative error in percent, mean over devices.
        n_devices: Number of devices fitted.
    """

    loss: float
    relative_error_pct: float
    n_devices: int


@dataclasses.dataclass(frozen=True)
class TrialData:
    """NumPy inputs, targets and split of one dataset.

    Attributes:
        inputs: ``(N, F)`` float32 standardized signed-log tables, flattened
            in (P, B, G, D) order.
        ibias_columns: ``(start, stop)`` of the ibias channel within F.
        current: ``(N, G, D)`` float32 |ibias| at Vbs = 0, in amperes.
        vgs: ``(N, G)`` float32 |Vgs| in volts.
        vds: ``(N, D)`` float32 |Vds| in volts.
        train: Indices of training samples.
        validation: Indices of held-out samples that score trials.
        test: Indices of held-out samples for the final report only.
        flavor: ``(N,)`` flavor of each sample, for plots.
        corner: ``(N,)`` process corner of each sample, for plots.
        grid_shape: ``(P, B, G, D)``.
        warm_start: ``(4,)`` dimensionless log parameters (see
            ``square_law.to_physical``), the median of direct fits of
            training devices.
        oracle_validation: Direct-fit floor on the validation part.
        normalizer: The input transform, fitted on training samples.
    """

    inputs: np.ndarray
    ibias_columns: tuple[int, int]
    current: np.ndarray
    vgs: np.ndarray
    vds: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    flavor: np.ndarray
    corner: np.ndarray
    grid_shape: tuple[int, int, int, int]
    warm_start: np.ndarray
    oracle_validation: OracleFloor
    normalizer: Normalizer

    @property
    def n_features(self) -> int:
        """F, the size of one flattened table."""
        return int(self.inputs.shape[1])

    def ibias_features(self) -> np.ndarray:
        """Return the ``(N, B * G * D)`` normalized ibias cube, a view of ``inputs``."""
        start, stop = self.ibias_columns
        return self.inputs[:, start:stop]


@dataclasses.dataclass(frozen=True)
class TensorData:
    """The tensors of a ``TrialData`` on one torch device.

    Attributes:
        inputs: ``(N, F)`` float32 network inputs.
        current: ``(N, G, D)`` float32 |ibias| at Vbs = 0, in amperes.
        vgs: ``(N, G)`` float32 |Vgs| in volts.
        vds: ``(N, D)`` float32 |Vds| in volts.
        indices: Sample indices of each part, as int64 tensors.
        source: The NumPy data these tensors were made from.
        device: Where the tensors are.
    """

    inputs: Tensor
    current: Tensor
    vgs: Tensor
    vds: Tensor
    indices: dict[Part, Tensor]
    source: TrialData
    device: torch.device

    @property
    def warm_start(self) -> Tensor:
        """``(4,)`` dimensionless log parameters of a typical training device, on ``device``."""
        # A copy: arrays from Ray's object store are read-only, which torch warns about.
        return torch.tensor(np.array(self.source.warm_start), dtype=torch.float32, device=self.device)

    def ibias_features(self) -> Tensor:
        """Return the ``(N, B * G * D)`` normalized ibias cube, a view of ``inputs``."""
        start, stop = self.source.ibias_columns
        return self.inputs[:, start:stop]


def prepare_trial_data(dataset: Dataset, split: Split) -> TrialData:
    """Transform a dataset into trial inputs and Square Law targets.

    The normalizer and the warm start are fitted on the training part only.

    Args:
        dataset: The whole dataset.
        split: Its training, validation and test indices.

    Returns:
        The prepared data.

    Raises:
        DataError: If the dataset lacks ibias or a Vbs = 0 point, or the
            training part is empty.
    """
    start_s = time.perf_counter()
    normalizer = fit_normalizer(dataset, split.train)
    n_samples = dataset.n_samples
    inputs = normalizer.transform(dataset).reshape(n_samples, -1)  # (N, F)
    targets = square_law_targets(dataset)
    cube = int(np.prod(dataset.grid_shape))
    ibias = dataset.quantities.index("ibias")

    current = targets.current.astype(np.float32)
    vgs = targets.vgs.astype(np.float32)
    vds = targets.vds.astype(np.float32)
    warm_start = _typical_device_fit(current[split.train], vgs[split.train], vds[split.train])
    oracle = oracle_floor(current[split.validation], vgs[split.validation], vds[split.validation])
    logger.info(
        "Prepared %d samples of %d features in %.1f s; validation oracle floor %.3g %%",
        n_samples, inputs.shape[1], time.perf_counter() - start_s, oracle.relative_error_pct,
    )  # fmt: skip
    return TrialData(
        inputs=inputs,
        ibias_columns=(ibias * cube, (ibias + 1) * cube),
        current=current,
        vgs=vgs,
        vds=vds,
        train=np.asarray(split.train, dtype=np.int64),
        validation=np.asarray(split.validation, dtype=np.int64),
        test=np.asarray(split.test, dtype=np.int64),
        flavor=dataset.metadata.flavor.copy(),
        corner=dataset.metadata.corner.copy(),
        grid_shape=(len(dataset.quantities), *dataset.grid_shape),
        warm_start=warm_start,
        oracle_validation=oracle,
        normalizer=normalizer,
    )


def to_device(data: TrialData, device: torch.device) -> TensorData:
    """Copy the arrays of ``data`` into torch tensors on ``device``.

    Arrays that NumPy marks read-only (those from Ray's object store) are
    copied first; on the CPU, writable arrays share memory with ``data``.
    """
    return TensorData(
        inputs=_tensor(data.inputs, device),
        current=_tensor(data.current, device),
        vgs=_tensor(data.vgs, device),
        vds=_tensor(data.vds, device),
        indices={"train": _tensor(data.train, device), "validation": _tensor(data.validation, device),
                 "test": _tensor(data.test, device)},
        source=data,
        device=device,
    )  # fmt: skip


def oracle_floor(current: np.ndarray, vgs: np.ndarray, vds: np.ndarray) -> OracleFloor:
    """Fit every device directly and return the mean errors.

    Args:
        current: ``(N, G, D)`` |I| in amperes.
        vgs: ``(N, G)`` |Vgs| in volts.
        vds: ``(N, D)`` |Vds| in volts.

    Raises:
        DataError: If there are no devices.
    """
    if len(current) == 0:
        raise DataError("the oracle fit got no devices; every held-out part of the split needs at least one sample")
    fit = fit_square_law(*(torch.from_numpy(np.array(array, dtype=np.float64)) for array in (current, vgs, vds)))
    return OracleFloor(
        loss=float(fit.errors.loss.mean()),
        relative_error_pct=float(fit.errors.relative_error_pct.mean()),
        n_devices=len(current),
    )


def _typical_device_fit(current: np.ndarray, vgs: np.ndarray, vds: np.ndarray) -> np.ndarray:
    """Return the ``(4,)`` median dimensionless log parameters of direct fits of training devices.

    At most ``_WARM_START_DEVICES`` devices, evenly spaced, are fitted. The
    median in dimensionless units is robust to the devices whose fit is
    degenerate (a Vt of nearly 0 V) and to a mix of 1.8 V and 5 V sweeps,
    which make a fit of the mean current meaningless.
    """
    chosen = np.unique(np.linspace(0, len(current) - 1, min(len(current), _WARM_START_DEVICES)).round().astype(int))
    tensors = [torch.from_numpy(np.asarray(array[chosen], dtype=np.float64)) for array in (current, vgs, vds)]
    fit = fit_square_law(*tensors)
    normalized = to_normalized(fit.log_params, tensors[1], tensors[2], current_scale(tensors[0]))
    return normalized.median(dim=0).values.numpy()


def _tensor(array: np.ndarray, device: torch.device) -> Tensor:
    source = array if array.flags.writeable else array.copy()
    return torch.from_numpy(np.ascontiguousarray(source)).to(device)
