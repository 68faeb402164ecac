"""Read BAG3 small-signal tables (``ss_params.hdf5``) into a Dataset.

Shape legend: C corners, N samples (one per corner), P quantities, B Vbs
points, G Vgs points, D Vds points. Values are in A, S and F, voltages in
volts, with the raw signs of the file.

File layout, one device per file:

- ten gzip datasets ``ibias, gm, gds, gb, cgd, cgs, cds, cgb, cdb, csb``, each
  shaped by the axis order that its attribute ``sweep_params`` names
  (normally ``corner, vgs, vbs, vds``; any order of these four is read);
- 1-D datasets ``vgs``, ``vbs`` and ``vds`` with the sweep voltages;
- a 1-D byte-string dataset ``corner`` with the corner names.

Each corner becomes one sample. A folder is searched recursively for
``ss_params.hdf5`` files, read in sorted path order.

Device metadata comes from a JSON sidecar beside each file, named
``ss_params.json`` or ``metadata.json`` (not both), for example::

    {"technology": "sky130", "device": "nfet_01v8", "flavor": "svt",
     "polarity": "n", "temperature_c": 27, "length_m": 1.5e-07,
     "width_m": 1e-06, "mismatch_draw": 0}

The sidecar values apply to every corner of the file, so corners
simulated at different temperatures need one file each. ``flavor`` is one
of lvt, svt, hvt, hv. ``polarity`` may be left out when
the Vgs sweep has a sign (negative Vgs means PMOS). ``mismatch_draw`` may be
left out for nominal devices and then is 0. ``MetadataOverrides``, filled
from command-line flags such as ``--device``, takes precedence over the
sidecar. Any other missing field is a ``DataError`` naming the file, the
field and the flag.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np

from circtune import __version__
from circtune.data.dataset import FLAVORS, METADATA_COLUMNS, POLARITIES, QUANTITIES, Dataset, Metadata
from circtune.data.importers.resample import GridSpec, concatenate_tables, resample
from circtune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

BAG3_FILE_NAME = "ss_params.hdf5"
SIDECAR_NAMES: tuple[str, ...] = ("ss_params.json", "metadata.json")
SWEEP_AXES: tuple[str, ...] = ("corner", "vgs", "vbs", "vds")
FORMAT_NAME = "bag3"

# Fields every sample needs that a BAG3 file does not contain.
_REQUIRED_FIELDS: tuple[str, ...] = ("technology", "device", "flavor", "temperature_c", "length_m", "width_m")
_SIDECAR_FIELDS: tuple[str, ...] = (*_REQUIRED_FIELDS, "polarity", "mismatch_draw")
# Lengths and widths above 1 mm are unit mistakes, usually micrometres.
_MAX_DIMENSION_M = 1e-3
_ABSOLUTE_ZERO_C = -273.15
_CANONICAL_ORDER: tuple[str, ...] = ("corner", "vbs", "vgs", "vds")


@dataclasses.dataclass(frozen=True)
class MetadataOverrides:
    """Metadata given on the command line; each field set here wins over the file.

    Lookup-table readers use the same fields.

    Attributes:
        technology: PDK or model family name, e.g. ``"sky130"``.
        device: Device model name, e.g. ``"nfet_01v8"``.
        flavor: One of ``FLAVORS``.
        polarity: ``"n"`` or ``"p"``.
        corner: Process corner, e.g. ``"tt"``; lookup tables only, because
            BAG3 files name their corners.
        temperature_c: Temperature in degrees Celsius.
        length_m: Channel length in metres; BAG3 files and single-length
            lookup tables only.
        width_m: Channel width in metres.
        mismatch_draw: Monte Carlo mismatch draw; 0 is the nominal device.
    """

    technology: str | None = None
    device: str | None = None
    flavor: str | None = None
    polarity: str | None = None
    corner: str | None = None
    temperature_c: float | None = None
    length_m: float | None = None
    width_m: float | None = None
    mismatch_draw: int | None = None

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            problem = check_metadata_value(name, value)
            if problem:
                raise ConfigError(f"{flag_name(name)} {value!r} is invalid: {problem}")

    def as_dict(self) -> dict[str, object]:
        """Return the fields that are set, by name."""
        return {
            field.name: value for field in dataclasses.fields(self) if (value := getattr(self, field.name)) is not None
        }


def flag_name(field: str) -> str:
    """Return the command-line flag of a metadata field, e.g. ``--temperature-c``."""
    return "--" + field.replace("_", "-")


def check_metadata_value(name: str, value: object) -> str | None:
    """Return what is wrong with one metadata value, or None if it is valid."""
    kind = METADATA_COLUMNS.get(name)
    if kind is None:
        return f"'{name}' is not a metadata field; use one of {list(METADATA_COLUMNS)}"
    if kind == "U":
        if not isinstance(value, str) or not value.strip():
            return "give a non-empty text"
        if name == "flavor" and value not in FLAVORS:
            return f"use one of {list(FLAVORS)}"
        if name == "polarity" and value not in POLARITIES:
            return f"use one of {list(POLARITIES)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return "give a number"
    if kind == "i":
        return None if float(value).is_integer() and value >= 0 else "give a whole number of 0 or more"
    if not np.isfinite(value):
        return "give a finite number"
    if name == "temperature_c" and value <= _ABSOLUTE_ZERO_C:
        return "give a temperature in degrees Celsius above -273.15"
    if name in ("length_m", "width_m") and not 0 < value <= _MAX_DIMENSION_M:
        return f"give metres between 0 and {_MAX_DIMENSION_M:g}, for example 1.5e-07 for 0.15 um"
    return None


def find_bag3_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Return the ``ss_params.hdf5`` files under ``folder``, in sorted order.

    Raises:
        DataError: If the folder does not exist or contains no such file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; check the path")
    files = sorted(path for path in root.rglob(BAG3_FILE_NAME) if path.is_file())
    if not files:
        raise DataError(f"{root}: no {BAG3_FILE_NAME} file in this folder or below; check the path")
    return files


def read_bag3(
    path: str | os.PathLike[str],
    *,
    overrides: MetadataOverrides | None = None,
    allow_missing: bool = False,
    grid: GridSpec | None = None,
) -> Dataset:
    """Read one ``ss_params.hdf5`` file, or every one under a folder.

    Args:
        path: A BAG3 file or a folder searched recursively.
        overrides: Metadata that replaces or completes the sidecar files.
        allow_missing: Leave quantities that a file lacks out of the result
            instead of raising. Quantities missing from any file are left
            out for all of them.
        grid: Target grid; None keeps the source grid, which then must be
            the same in every file.

    Returns:
        A dataset of shape ``(N, P, B, G, D)`` with one sample per corner
        of every file.

    Raises:
        DataError: On a missing, malformed or inconsistent file, missing
            metadata, or files of different grid shapes without ``grid``.
    """
    root = Path(path)
    files = find_bag3_files(root) if root.is_dir() else [root]
    parts = []
    for file in files:
        part = read_bag3_file(file, overrides=overrides, allow_missing=allow_missing)
        parts.append(resample(part, grid, source=str(file)) if grid is not None else part)
    return concatenate_tables(parts, source=str(root))


def read_bag3_file(
    path: str | os.PathLike[str],
    *,
    overrides: MetadataOverrides | None = None,
    allow_missing: bool = False,
) -> Dataset:
    """Read one ``ss_params.hdf5`` file on its own grid.

    Args:
        path: The BAG3 file.
        overrides: Metadata that replaces or completes the sidecar file.
        allow_missing: Leave quantities the file lacks out instead of raising.

    Returns:
        A dataset of shape ``(C, P, B, G, D)``, one sample per corner, with
        ``attrs["missing_quantities"]`` listing what the file lacks.

    Raises:
        DataError: If the file is missing, not HDF5, lacks quantities or
            axes, has extra quantities, a bad ``sweep_params``, shapes that
            do not match the axes, NaN or infinite values, non-monotonic
            axes, or its metadata is incomplete.
    """
    file = Path(path)
    overrides = overrides or MetadataOverrides()
    if overrides.corner is not None:
        raise ConfigError(f"{flag_name('corner')} applies to lookup tables only; BAG3 files name their corners")
    _check_readable(file)
    try:
        with h5py.File(file, "r") as handle:
            axes, corners, tables = _read_contents(handle, file, allow_missing=allow_missing)
    except OSError as error:
        raise DataError(f"{file}: cannot read HDF5 data ({error}); the file may be truncated, copy it again") from error

    names = tuple(name for name in QUANTITIES if name in tables)
    missing = [name for name in QUANTITIES if name not in tables]
    values = np.stack([tables[name] for name in names], axis=1)  # (C, P, B, G, D)
    n_corners = len(corners)
    metadata = _file_metadata(file, overrides, corners=corners, vgs_v=axes["vgs"])
    return Dataset(
        values=values,
        quantities=names,
        vbs=np.tile(axes["vbs"], (n_corners, 1)),
        vgs=np.tile(axes["vgs"], (n_corners, 1)),
        vds=np.tile(axes["vds"], (n_corners, 1)),
        metadata=metadata,
        attrs={
            "generator": "circtune.data.importers",
            "generator_version": __version__,
            "sources": [{"file": str(file), "format": FORMAT_NAME, "samples": n_corners}],
            "missing_quantities": missing,
            "settings": {"overrides": overrides.as_dict(), "allow_missing": allow_missing},
        },
    )


def _check_readable(file: Path) -> None:
    if not file.exists():
        raise DataError(f"{file}: file not found; check the path")
    if file.is_dir():
        raise DataError(f"{file}: is a folder; pass it as a folder source or name the {BAG3_FILE_NAME} inside")
    if not h5py.is_hdf5(file):
        raise DataError(f"{file}: not an HDF5 file; BAG3 tables are HDF5 files named {BAG3_FILE_NAME}")


def _read_contents(
    handle: h5py.File, file: Path, *, allow_missing: bool
) -> tuple[dict[str, np.ndarray], list[str], dict[str, np.ndarray]]:
    axes = {name: _read_axis(handle, name, file) for name in ("vgs", "vbs", "vds")}
    corners = _read_corners(handle, file)
    sizes = {"corner": len(corners), **{name: len(values) for name, values in axes.items()}}

    extra = sorted(set(handle.keys()) - set(QUANTITIES) - set(SWEEP_AXES))
    if extra:
        raise DataError(
            f"{file}: entries {extra} are not BAG3 quantities; remove them from the file, because circtune reads "
            f"exactly {list(QUANTITIES)}"
        )
    missing = [name for name in QUANTITIES if name not in handle]
    if missing and not allow_missing:
        raise DataError(
            f"{file}: quantities {missing} are missing; regenerate the file with them or pass --allow-missing "
            "to leave them out"
        )
    if "ibias" in missing:
        raise DataError(f"{file}: quantity 'ibias' is missing; every dataset needs the drain current")
    tables = {name: _read_quantity(handle, name, file, sizes) for name in QUANTITIES if name in handle}
    return axes, corners, tables


def _read_axis(handle: h5py.File, name: str, file: Path) -> np.ndarray:
    node = handle.get(name)
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{file}: axis dataset '{name}' is missing; a BAG3 file stores each sweep as a 1-D dataset")
    if node.ndim != 1 or node.shape[0] == 0 or node.dtype.kind not in "iuf":
        raise DataError(
            f"{file}: axis '{name}' has shape {node.shape} and type {node.dtype}, but a non-empty 1-D numeric "
            "array is required; rewrite the sweep"
        )
    values = np.asarray(node[...], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{file}: axis '{name}' contains NaN or infinite voltages; rewrite the sweep")
    steps = np.diff(values)
    if steps.size and not (np.all(steps > 0) or np.all(steps < 0)):
        raise DataError(f"{file}: axis '{name}' is not strictly monotonic; sort the sweep and its tables")
    return values


def _read_corners(handle: h5py.File, file: Path) -> list[str]:
    node = handle.get("corner")
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{file}: dataset 'corner' is missing; a BAG3 file names its corners there")
    if node.ndim != 1 or node.shape[0] == 0:
        raise DataError(f"{file}: dataset 'corner' has shape {node.shape}, but a non-empty 1-D list is required")
    return [_decode(item) for item in node[...]]


def _read_quantity(handle: h5py.File, name: str, file: Path, sizes: dict[str, int]) -> np.ndarray:
    node = handle[name]
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{file}: quantity '{name}' is not a dataset; rewrite the file")
    if node.dtype.kind not in "iuf":
        raise DataError(f"{file}: quantity '{name}' has type {node.dtype}, but numbers are required; rewrite the file")
    order = _sweep_order(node, name, file)
    expected = tuple(sizes[axis] for axis in order)
    if node.shape != expected:
        raise DataError(
            f"{file}: quantity '{name}' has shape {node.shape}, but its sweep_params {order} need {expected} "
            "from the axis lengths; rewrite the table or its axes"
        )
    values = np.asarray(node[...], dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"{file}: quantity '{name}' contains {int(bad.sum())} NaN or infinite values; rerun the simulation "
            "points that failed"
        )
    return values.transpose([order.index(axis) for axis in _CANONICAL_ORDER])  # (C, B, G, D)


def _sweep_order(node: h5py.Dataset, name: str, file: Path) -> list[str]:
    if "sweep_params" not in node.attrs:
        raise DataError(
            f"{file}: quantity '{name}' has no attribute 'sweep_params'; BAG3 lists the axis order there, "
            "for example [corner, vgs, vbs, vds]"
        )
    raw = node.attrs["sweep_params"]
    order = [_decode(item) for item in np.atleast_1d(raw)]
    if sorted(order) != sorted(SWEEP_AXES):
        raise DataError(
            f"{file}: attribute 'sweep_params' of quantity '{name}' is {order}, but it must name each of "
            f"{list(SWEEP_AXES)} exactly once; fix the attribute to match the array axes"
        )
    return order


def _decode(item: object) -> str:
    if isinstance(item, bytes | np.bytes_):
        return item.decode("utf-8")
    return str(item)


def _file_metadata(file: Path, overrides: MetadataOverrides, *, corners: list[str], vgs_v: np.ndarray) -> Metadata:
    sidecar_path, sidecar = _read_sidecar(file)
    fields: dict[str, object] = {**sidecar, **overrides.as_dict()}

    sign_polarity = _polarity_from_vgs(vgs_v)
    polarity = fields.get("polarity") or sign_polarity
    if polarity is not None and sign_polarity is not None and polarity != sign_polarity:
        raise DataError(
            f"{file}: polarity '{polarity}' contradicts the Vgs sweep {vgs_v.min():g}..{vgs_v.max():g} V, which "
            f"is that of polarity '{sign_polarity}'; fix {flag_name('polarity')} or the sidecar"
        )
    fields["polarity"] = polarity
    fields.setdefault("mismatch_draw", 0)

    missing = [name for name in (*_REQUIRED_FIELDS, "polarity") if fields.get(name) is None]
    if missing:
        where = sidecar_path or file.with_name(SIDECAR_NAMES[0])
        flags = ", ".join(flag_name(name) for name in missing)
        raise DataError(f"{file}: metadata {missing} missing; add them to {where} or pass {flags}")
    n_corners = len(corners)
    columns: dict[str, list[object]] = {
        name: [fields[name]] * n_corners for name in METADATA_COLUMNS if name != "corner"
    }
    columns["corner"] = list(corners)
    return Metadata.from_columns(columns)


def _read_sidecar(file: Path) -> tuple[Path | None, dict[str, object]]:
    candidates = [file.with_name(name) for name in SIDECAR_NAMES if file.with_name(name).is_file()]
    if not candidates:
        return None, {}
    if len(candidates) > 1:
        raise DataError(f"{file}: both {candidates[0].name} and {candidates[1].name} are beside it; keep only one")
    sidecar = candidates[0]
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{sidecar}: cannot read JSON metadata ({error}); fix the file") from error
    if not isinstance(content, dict):
        raise DataError(f"{sidecar}: metadata must be a JSON object with keys {list(_SIDECAR_FIELDS)}")
    unknown = sorted(set(content) - set(_SIDECAR_FIELDS))
    if unknown:
        raise DataError(f"{sidecar}: keys {unknown} are unknown; use only {list(_SIDECAR_FIELDS)}")
    for name, value in content.items():
        problem = check_metadata_value(name, value)
        if problem:
            raise DataError(f"{sidecar}: key '{name}' has invalid value {value!r}; {problem}")
    return sidecar, content


def _polarity_from_vgs(vgs_v: np.ndarray) -> str | None:
    if vgs_v.max() > 0 and vgs_v.min() >= 0:
        return "n"
    if vgs_v.min() < 0 and vgs_v.max() <= 0:
        return "p"
    return None
