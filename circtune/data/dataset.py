"""The in-memory characterization dataset.

Shape legend, used throughout circtune:

    N  samples (one transistor instance in one condition)
    P  quantities (at most the ten BAG3 names in ``QUANTITIES``)
    B  Vbs points, G  Vgs points, D  Vds points

Values are in SI units (A, S, F) with the signs of the raw data: PMOS
currents and voltages are negative. Voltage axes are per sample because a
5 V device is swept over a wider range than a 1.8 V one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from circtune.errors import DataError

QUANTITIES: tuple[str, ...] = ("ibias", "gm", "gds", "gb", "cgd", "cgs", "cds", "cgb", "cdb", "csb")
QUANTITY_UNITS: dict[str, str] = {
    "ibias": "A", "gm": "S", "gds": "S", "gb": "S",
    "cgd": "F", "cgs": "F", "cds": "F", "cgb": "F", "cdb": "F", "csb": "F",
}  # fmt: skip
AXES: tuple[str, ...] = ("vbs", "vgs", "vds")
FLAVORS: tuple[str, ...] = ("lvt", "svt", "hvt", "hv")
POLARITIES: tuple[str, ...] = ("n", "p")
CORNERS: tuple[str, ...] = ("tt", "ff", "ss", "fs", "sf")

# Metadata columns and their NumPy kinds: "U" text, "f" float, "i" integer.
METADATA_COLUMNS: dict[str, str] = {
    "technology": "U",
    "device": "U",
    "flavor": "U",
    "polarity": "U",
    "corner": "U",
    "temperature_c": "f",
    "length_m": "f",
    "width_m": "f",
    "mismatch_draw": "i",
}


@dataclasses.dataclass(frozen=True)
class Metadata:
    """Per-sample description, one array of length N per column.

    Attributes:
        technology: PDK or model family name, e.g. ``"sky130"``.
        device: Device model name, e.g. ``"nfet_01v8"``.
        flavor: One of ``FLAVORS``: low-Vt, nominal, high-Vt, thick-oxide
            high-voltage.
        polarity: ``"n"`` or ``"p"``.
        corner: Process corner, e.g. ``"tt"``.
        temperature_c: Temperature in degrees Celsius.
        length_m: Channel length in metres.
        width_m: Channel width in metres.
        mismatch_draw: Index of the Monte Carlo mismatch draw; 0 is nominal.
    """

    technology: np.ndarray
    device: np.ndarray
    flavor: np.ndarray
    polarity: np.ndarray
    corner: np.ndarray
    temperature_c: np.ndarray
    length_m: np.ndarray
    width_m: np.ndarray
    mismatch_draw: np.ndarray

    def __post_init__(self) -> None:
        lengths = {name: len(getattr(self, name)) for name in METADATA_COLUMNS}
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"metadata columns have different lengths {lengths}; every column needs one entry per sample"
            )
        for name, kind in METADATA_COLUMNS.items():
            column = np.asarray(getattr(self, name))
            if kind == "U":
                column = column.astype(str)
            elif kind == "f":
                column = column.astype(np.float64)
            else:
                column = column.astype(np.int64)
            object.__setattr__(self, name, column)
        for name, allowed in (("flavor", FLAVORS), ("polarity", POLARITIES)):
            unknown = sorted(set(getattr(self, name).tolist()) - set(allowed))
            if unknown:
                raise DataError(f"metadata column '{name}' has unknown values {unknown}; use one of {list(allowed)}")

    def __len__(self) -> int:
        return len(self.device)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[object] | np.ndarray]) -> Metadata:
        """Build metadata from a mapping of column name to values.

        Raises:
            DataError: If a column is missing or unknown.
        """
        missing = [name for name in METADATA_COLUMNS if name not in columns]
        extra = [name for name in columns if name not in METADATA_COLUMNS]
        if missing or extra:
            raise DataError(
                f"metadata columns missing {missing} and unknown {extra}; expected exactly {list(METADATA_COLUMNS)}"
            )
        return cls(**{name: np.asarray(columns[name]) for name in METADATA_COLUMNS})

    def columns(self) -> dict[str, np.ndarray]:
        """Return the columns as a name-to-array dict, in canonical order."""
        return {name: getattr(self, name) for name in METADATA_COLUMNS}

    def take(self, indices: np.ndarray | Sequence[int]) -> Metadata:
        """Return the rows at ``indices``."""
        index = np.asarray(indices, dtype=np.int64)
        return Metadata(**{name: column[index] for name, column in self.columns().items()})

    @staticmethod
    def concatenate(parts: Sequence[Metadata]) -> Metadata:
        """Stack the rows of several metadata tables."""
        return Metadata(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in METADATA_COLUMNS})


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Characterization tables of N samples on per-sample voltage grids.

    Attributes:
        values: ``(N, P, B, G, D)`` float32 array in SI units, quantity order
            given by ``quantities``.
        quantities: Names of the P quantities, a subset of ``QUANTITIES`` in
            canonical order. Files always contain ``"ibias"``; a dataset
            loaded with only some quantities may lack it.
        vbs: ``(N, B)`` body-source voltages in volts.
        vgs: ``(N, G)`` gate-source voltages in volts.
        vds: ``(N, D)`` drain-source voltages in volts.
        metadata: Per-sample description.
        attrs: Provenance (generator, version, settings), JSON-serializable.
    """

    values: np.ndarray
    quantities: tuple[str, ...]
    vbs: np.ndarray
    vgs: np.ndarray
    vds: np.ndarray
    metadata: Metadata
    attrs: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantities", tuple(self.quantities))
        object.__setattr__(self, "values", np.asarray(self.values, dtype=np.float32))
        for axis in AXES:
            object.__setattr__(self, axis, np.asarray(getattr(self, axis), dtype=np.float64))
        validate(self)

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """Grid size ``(B, G, D)``."""
        _, _, n_vbs, n_vgs, n_vds = self.values.shape
        return (n_vbs, n_vgs, n_vds)

    def quantity(self, name: str) -> np.ndarray:
        """Return the ``(N, B, G, D)`` values of one quantity.

        Raises:
            DataError: If the dataset does not contain ``name``.
        """
        if name not in self.quantities:
            raise DataError(f"quantity '{name}' is not in this dataset; it has {list(self.quantities)}")
        return self.values[:, self.quantities.index(name)]

    def take(self, indices: np.ndarray | Sequence[int]) -> Dataset:
        """Return the samples at ``indices`` as a new dataset."""
        index = np.asarray(indices, dtype=np.int64)
        return Dataset(
            values=self.values[index],
            quantities=self.quantities,
            vbs=self.vbs[index],
            vgs=self.vgs[index],
            vds=self.vds[index],
            metadata=self.metadata.take(index),
            attrs=dict(self.attrs),
        )

    @staticmethod
    def concatenate(parts: Sequence[Dataset], attrs: Mapping[str, object] | None = None) -> Dataset:
        """Stack datasets that share quantities and grid shape.

        Raises:
            DataError: If the parts differ in quantities or grid shape.
        """
        if not parts:
            raise DataError("no datasets to concatenate; pass at least one")
        first = parts[0]
        for part in parts[1:]:
            if part.quantities != first.quantities or part.grid_shape != first.grid_shape:
                raise DataError(
                    f"cannot concatenate datasets with quantities {list(part.quantities)} on grid "
                    f"{part.grid_shape} and {list(first.quantities)} on grid {first.grid_shape}; "
                    "resample them onto one grid first"
                )
        return Dataset(
            values=np.concatenate([part.values for part in parts]),
            quantities=first.quantities,
            vbs=np.concatenate([part.vbs for part in parts]),
            vgs=np.concatenate([part.vgs for part in parts]),
            vds=np.concatenate([part.vds for part in parts]),
            metadata=Metadata.concatenate([part.metadata for part in parts]),
            attrs=dict(attrs if attrs is not None else first.attrs),
        )


def validate(dataset: Dataset, source: str = "dataset") -> None:
    """Check shapes, quantity names and finiteness of a dataset.

    Args:
        dataset: The dataset to check.
        source: Name used in error messages, such as the file path.

    Raises:
        DataError: On the first problem found, naming it and the fix.
    """
    values = dataset.values
    if values.ndim != 5:
        raise DataError(f"{source}: values must have shape (N, P, B, G, D), but got shape {values.shape}")
    n_samples, n_quantities, n_vbs, n_vgs, n_vds = values.shape
    check_quantity_names(dataset.quantities, source)
    if n_quantities != len(dataset.quantities):
        raise DataError(
            f"{source}: values hold {n_quantities} quantities but {len(dataset.quantities)} names are given; "
            "give one name per quantity"
        )
    for axis, size in zip(AXES, (n_vbs, n_vgs, n_vds), strict=True):
        grid = getattr(dataset, axis)
        if grid.shape != (n_samples, size):
            raise DataError(
                f"{source}: axis '{axis}' has shape {grid.shape}, but the values need ({n_samples}, {size}); "
                "give one voltage per grid point for every sample"
            )
        if not np.all(np.isfinite(grid)):
            raise DataError(f"{source}: axis '{axis}' contains NaN or infinite voltages; remove those samples")
        steps = np.diff(grid, axis=1)
        if size > 1 and not np.all(np.all(steps > 0, axis=1) | np.all(steps < 0, axis=1)):
            raise DataError(f"{source}: axis '{axis}' is not strictly monotonic in every sample; sort the sweep")
    if len(dataset.metadata) != n_samples:
        raise DataError(
            f"{source}: metadata has {len(dataset.metadata)} rows for {n_samples} samples; give one row per sample"
        )
    bad = ~np.isfinite(values)
    if bad.any():
        sample, quantity = (int(i) for i in np.argwhere(bad)[0][:2])
        raise DataError(
            f"{source}: quantity '{dataset.quantities[quantity]}' of sample {sample} "
            f"(device {dataset.metadata.device[sample]}) contains {int(bad.sum())} NaN or infinite values "
            "in total; regenerate or drop those samples"
        )


def check_quantity_names(names: Sequence[str], source: str, *, require_ibias: bool = False) -> None:
    """Check that quantity names are known, unique and in canonical order.

    Raises:
        DataError: If a name is unknown, duplicated or out of order, or
            ``require_ibias`` is set and ibias is missing.
    """
    unknown = [name for name in names if name not in QUANTITIES]
    if unknown:
        raise DataError(f"{source}: unknown quantities {unknown}; allowed names are {list(QUANTITIES)}")
    if len(set(names)) != len(names):
        raise DataError(f"{source}: quantity names repeat in {list(names)}; give each quantity once")
    if require_ibias and "ibias" not in names:
        raise DataError(f"{source}: the quantity 'ibias' is missing; every dataset needs the drain current")
    if list(names) != [name for name in QUANTITIES if name in names]:
        raise DataError(f"{source}: quantities {list(names)} are not in the canonical order {list(QUANTITIES)}")
