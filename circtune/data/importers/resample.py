"""Put characterization tables onto a chosen (vbs, vgs, vds) grid.

Shape legend: N samples, P quantities, B Vbs points, G Vgs points, D Vds
points. Voltages are in volts.

Each axis of the target grid is one of:

- ``source``: every source point, unchanged.
- ``nearest``: n source points at evenly spread indices of the sweep. The
  values are copied from the source, never interpolated, so the spacing is
  only as even as the source allows.
- ``even``: n evenly spaced voltages over the source sweep or over an
  explicit range. Target voltages that coincide with source points are
  copied; the others are linearly interpolated with
  ``scipy.interpolate.RegularGridInterpolator``.

Targets outside the source sweep are rejected because they would need
extrapolation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from circtune.data.dataset import AXES, QUANTITIES, Dataset
from circtune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# Points per axis of the default coarse grid; BOMB tables use 11 x 11 x 11.
DEFAULT_AXIS_POINTS = 11

AxisMode = Literal["source", "nearest", "even"]
_MODES: tuple[str, ...] = ("source", "nearest", "even")

# A target voltage closer to a source point than this fraction of the
# smallest source step is that point. float32 axes store voltages up to
# 2 V with errors below 1.2e-7 V, well below 1e-3 of a 1 mV step.
_COINCIDE_FRACTION_OF_STEP = 1e-3
_COINCIDE_MIN_V = 1e-9


@dataclasses.dataclass(frozen=True)
class AxisGrid:
    """Target points of one voltage axis.

    Attributes:
        mode: ``"source"``, ``"nearest"`` or ``"even"`` (see the module
            docstring).
        n_points: Number of target points; None for ``"source"``. With
            ``"nearest"``, a source with fewer points keeps all of them.
        start_v: First target voltage for ``"even"``; None spans the source
            sweep of each sample.
        stop_v: Last target voltage for ``"even"``; given together with
            ``start_v``.
    """

    mode: AxisMode = "even"
    n_points: int | None = DEFAULT_AXIS_POINTS
    start_v: float | None = None
    stop_v: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"grid mode {self.mode!r} is unknown; use one of {list(_MODES)}")
        if self.mode == "source":
            if self.n_points is not None or self.start_v is not None or self.stop_v is not None:
                raise ConfigError("a 'source' grid axis keeps the source points, so give it no count or range")
            return
        if self.n_points is None or self.n_points < 1:
            raise ConfigError(f"a grid axis needs at least 1 point, but got {self.n_points}")
        if (self.start_v is None) != (self.stop_v is None):
            raise ConfigError("a grid range needs both a start and a stop voltage")
        if self.start_v is not None and self.mode != "even":
            raise ConfigError("only an 'even' grid axis takes a voltage range")
        if self.start_v is not None and self.n_points > 1 and self.start_v == self.stop_v:
            raise ConfigError(f"grid range {self.start_v}:{self.stop_v} is empty; give different start and stop")
        if self.start_v is not None and self.n_points == 1 and self.start_v != self.stop_v:
            raise ConfigError("a grid axis of 1 point needs start and stop equal")

    @classmethod
    def source(cls) -> AxisGrid:
        """Keep every source point."""
        return cls(mode="source", n_points=None)

    @classmethod
    def nearest(cls, n_points: int) -> AxisGrid:
        """Pick ``n_points`` source points spread evenly over the sweep."""
        return cls(mode="nearest", n_points=n_points)

    @classmethod
    def even(cls, n_points: int, start_v: float | None = None, stop_v: float | None = None) -> AxisGrid:
        """Place ``n_points`` evenly spaced voltages over the sweep or a range."""
        return cls(mode="even", n_points=n_points, start_v=start_v, stop_v=stop_v)

    def describe(self) -> str:
        """Return the text form that ``parse_grid`` and ``parse_axis_range`` read."""
        if self.mode == "source":
            return "source"
        if self.mode == "nearest":
            return f"nearest:{self.n_points}"
        if self.start_v is None:
            return str(self.n_points)
        return f"{self.start_v:g}:{self.stop_v:g}:{self.n_points}"


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """Target grid, one ``AxisGrid`` per voltage axis.

    An axis left as None keeps its source points in ``resample``; readers
    replace None with their own default through ``with_defaults``.
    """

    vbs: AxisGrid | None = None
    vgs: AxisGrid | None = None
    vds: AxisGrid | None = None

    @classmethod
    def coarse(cls, n_points: int = DEFAULT_AXIS_POINTS) -> GridSpec:
        """Pick about ``n_points`` source points per axis, without interpolation."""
        axis = AxisGrid.nearest(n_points)
        return cls(vbs=axis, vgs=axis, vds=axis)

    def axis(self, name: str) -> AxisGrid | None:
        """Return the target of axis ``name`` (``"vbs"``, ``"vgs"`` or ``"vds"``)."""
        if name not in AXES:
            raise ConfigError(f"grid axis {name!r} is unknown; use one of {list(AXES)}")
        value: AxisGrid | None = getattr(self, name)
        return value

    def with_defaults(self, default: GridSpec) -> GridSpec:
        """Fill the axes left as None from ``default``."""
        return GridSpec(**{name: self.axis(name) or default.axis(name) for name in AXES})

    def describe(self) -> dict[str, str]:
        """Return each axis in text form, for provenance records."""
        described = {}
        for name in AXES:
            grid = self.axis(name)
            described[name] = grid.describe() if grid is not None else "source"
        return described


def resample(dataset: Dataset, grid: GridSpec, *, source: str = "dataset") -> Dataset:
    """Put every sample of ``dataset`` onto the target ``grid``.

    Args:
        dataset: Tables of shape ``(N, P, B, G, D)`` on per-sample axes.
        grid: Target of each axis; None axes keep the source points.
        source: Name used in error messages, such as the file path.

    Returns:
        A dataset of shape ``(N, P, B', G', D')`` with the same quantities,
        metadata and attrs, plus ``attrs["grid"]`` describing the target.

    Raises:
        DataError: If a target voltage lies outside a sample's source sweep,
            or a source axis has a single point but several are requested.
    """
    if dataset.n_samples == 0:
        return dataset
    plans = [
        [
            _plan_axis(getattr(dataset, axis)[index], grid.axis(axis), axis=axis, source=source, sample=index)
            for axis in AXES
        ]
        for index in range(dataset.n_samples)
    ]
    values = np.stack(
        [
            _resample_sample(dataset.values[index], dataset, index, sample_plans)
            for index, sample_plans in enumerate(plans)
        ]
    )
    axes = {
        axis: np.stack([sample_plans[position].points_v for sample_plans in plans])
        for position, axis in enumerate(AXES)
    }
    attrs = dict(dataset.attrs)
    attrs["grid"] = grid.describe()
    return Dataset(values=values, quantities=dataset.quantities, metadata=dataset.metadata, attrs=attrs, **axes)


def concatenate_tables(parts: Sequence[Dataset], *, source: str) -> Dataset:
    """Stack the samples of datasets read from several files.

    Quantities that some part lacks are left out of every part, never
    filled in. ``attrs["sources"]`` joins the per-file records of all parts,
    ``attrs["missing_quantities"]`` lists what the result lacks, and the
    other attrs come from the first part.

    Args:
        parts: Datasets of one grid shape ``(B, G, D)``.
        source: Name used in error messages, such as the folder path.

    Raises:
        DataError: If there are no parts or their grid shapes differ.
    """
    if not parts:
        raise DataError(f"{source}: no tables to combine; pass at least one file")
    first = parts[0]
    for part in parts[1:]:
        if part.grid_shape != first.grid_shape:
            raise DataError(
                f"{source}: {_first_file(part)} has grid (B, G, D) = {part.grid_shape}, but {_first_file(first)} "
                f"has {first.grid_shape}; put them onto one grid with --grid, for example --grid {DEFAULT_AXIS_POINTS}"
            )
    common = [name for name in QUANTITIES if all(name in part.quantities for part in parts)]
    dropped = sorted({name for part in parts for name in part.quantities} - set(common))
    if dropped:
        logger.warning("%s: leaving out quantities %s because some files lack them", source, dropped)

    attrs = dict(first.attrs)
    attrs["sources"] = [record for part in parts for record in _sources(part)]
    attrs["missing_quantities"] = [name for name in QUANTITIES if name not in common]
    selected = [_select_quantities(part, common) for part in parts]
    return Dataset.concatenate(selected, attrs=attrs)


def parse_grid(text: str) -> GridSpec:
    """Parse a ``--grid`` value into a grid.

    Accepted forms: ``source`` (keep all points), ``N`` (N evenly spaced
    points on every axis), ``nearest:N`` (N source points on every axis), or
    a comma list naming some axes, such as ``vbs=source,vgs=21,vds=nearest:11``.

    Raises:
        ConfigError: If the text is not of these forms.
    """
    text = text.strip()
    if "=" not in text:
        axis = _parse_axis_value(text, where="--grid")
        return GridSpec(vbs=axis, vgs=axis, vds=axis)
    targets: dict[str, AxisGrid] = {}
    for item in text.split(","):
        name, separator, value = item.partition("=")
        name = name.strip()
        if not separator or name not in AXES:
            raise ConfigError(f"--grid item {item!r} is invalid; write axis=N with axis one of {list(AXES)}")
        if name in targets:
            raise ConfigError(f"--grid names axis {name!r} twice; give each axis once")
        targets[name] = _parse_axis_value(value, where=f"--grid {name}")
    return GridSpec(**targets)


def parse_axis_range(text: str, *, flag: str) -> AxisGrid:
    """Parse ``START:STOP:COUNT`` (volts, volts, points) into an even axis.

    Args:
        text: The flag value, such as ``0:1.5:11``.
        flag: The flag name used in error messages, such as ``--vgs``.

    Raises:
        ConfigError: If the text is not three numbers or the range is empty.
    """
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"{flag} {text!r} is invalid; write START:STOP:COUNT in volts, for example 0:1.5:11")
    try:
        start_v, stop_v = float(parts[0]), float(parts[1])
        n_points = int(parts[2])
    except ValueError as error:
        raise ConfigError(
            f"{flag} {text!r} is invalid ({error}); write START:STOP:COUNT, for example 0:1.5:11"
        ) from error
    if not (np.isfinite(start_v) and np.isfinite(stop_v)):
        raise ConfigError(f"{flag} {text!r} has a non-finite voltage; give finite start and stop")
    return AxisGrid.even(n_points, start_v, stop_v)


@dataclasses.dataclass(frozen=True)
class _AxisPlan:
    # points_v: target voltages; indices: source index of each target when
    # every target coincides with a source point, otherwise None.
    points_v: np.ndarray
    indices: np.ndarray | None


def _plan_axis(source_v: np.ndarray, target: AxisGrid | None, *, axis: str, source: str, sample: int) -> _AxisPlan:
    n_source = len(source_v)
    if target is None or target.mode == "source":
        return _AxisPlan(points_v=source_v.copy(), indices=np.arange(n_source))
    assert target.n_points is not None
    if target.mode == "nearest":
        count = min(target.n_points, n_source)
        indices = np.unique(np.rint(np.linspace(0, n_source - 1, count)).astype(np.int64))
        return _AxisPlan(points_v=source_v[indices], indices=indices)

    if target.start_v is None or target.stop_v is None:
        if n_source == 1 and target.n_points > 1:
            raise DataError(
                f"{source}: axis '{axis}' of sample {sample} has one source point at {source_v[0]:g} V, "
                f"so it cannot give {target.n_points} points; use {axis}=1 or {axis}=source"
            )
        points_v = np.linspace(source_v[0], source_v[-1], target.n_points)
    else:
        points_v = np.linspace(target.start_v, target.stop_v, target.n_points)
    return _match_points(source_v, points_v, axis=axis, source=source, sample=sample)


def _match_points(source_v: np.ndarray, points_v: np.ndarray, *, axis: str, source: str, sample: int) -> _AxisPlan:
    steps = np.abs(np.diff(source_v))
    tolerance_v = (
        max(_COINCIDE_MIN_V, _COINCIDE_FRACTION_OF_STEP * float(steps.min())) if steps.size else _COINCIDE_MIN_V
    )
    low_v, high_v = float(source_v.min()), float(source_v.max())
    if points_v.min() < low_v - tolerance_v or points_v.max() > high_v + tolerance_v:
        raise DataError(
            f"{source}: target {axis} points {points_v.min():g}..{points_v.max():g} V lie outside the source sweep "
            f"{low_v:g}..{high_v:g} V of sample {sample}; choose a range inside the sweep, because circtune "
            "does not extrapolate"
        )

    # Snap targets that coincide with a source point onto its exact voltage.
    nearest = np.abs(points_v[:, None] - source_v[None, :]).argmin(axis=1)
    coincide = np.abs(source_v[nearest] - points_v) <= tolerance_v
    snapped_v = np.where(coincide, source_v[nearest], np.clip(points_v, low_v, high_v))
    return _AxisPlan(points_v=snapped_v, indices=nearest if coincide.all() else None)


def _resample_sample(values: np.ndarray, dataset: Dataset, index: int, plans: list[_AxisPlan]) -> np.ndarray:
    # values: (P, B, G, D); grid axis k of a sample is array axis k + 1.
    table = values
    for position, plan in enumerate(plans):
        if plan.indices is not None:
            table = np.take(table, plan.indices, axis=position + 1)
    interpolated = [position for position, plan in enumerate(plans) if plan.indices is None]
    if not interpolated:
        return table

    # Interpolate the remaining axes together; the others ride along as
    # trailing value dimensions of the interpolator.
    grids = []
    for position in interpolated:
        grid_v = getattr(dataset, AXES[position])[index]
        if grid_v[0] > grid_v[-1]:
            grid_v = grid_v[::-1]
            table = np.flip(table, axis=position + 1)
        grids.append(np.asarray(grid_v, dtype=np.float64))
    array_axes = [position + 1 for position in interpolated]
    moved = np.moveaxis(table.astype(np.float64), array_axes, range(len(interpolated)))  # (I1..Ik, P, rest)
    interpolator = RegularGridInterpolator(tuple(grids), moved, method="linear", bounds_error=True)
    mesh = np.meshgrid(*[plans[position].points_v for position in interpolated], indexing="ij")
    result = interpolator(np.stack(mesh, axis=-1))  # (T1..Tk, P, rest)
    return np.moveaxis(result, range(len(interpolated)), array_axes).astype(np.float32)


def _parse_axis_value(text: str, *, where: str) -> AxisGrid:
    text = text.strip()
    if text == "source":
        return AxisGrid.source()
    mode: AxisMode = "even"
    count_text = text
    if text.startswith("nearest:"):
        mode = "nearest"
        count_text = text.removeprefix("nearest:")
    try:
        n_points = int(count_text)
    except ValueError as error:
        raise ConfigError(f"{where} value {text!r} is invalid; write a point count N, nearest:N or source") from error
    return AxisGrid(mode=mode, n_points=n_points)


def _select_quantities(dataset: Dataset, names: Sequence[str]) -> Dataset:
    if tuple(names) == dataset.quantities:
        return dataset
    positions = [dataset.quantities.index(name) for name in names]
    return dataclasses.replace(dataset, values=dataset.values[:, positions], quantities=tuple(names))


def _sources(dataset: Dataset) -> list[object]:
    records = dataset.attrs.get("sources", [])
    return list(records) if isinstance(records, list) else []


def _first_file(dataset: Dataset) -> str:
    for record in _sources(dataset):
        if isinstance(record, dict) and "file" in record:
            return str(record["file"])
    return "a part"
