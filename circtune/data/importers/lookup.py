"""Read gm/ID lookup tables (MATLAB ``.mat`` and mosplot ``.npz``) into a Dataset.

Shape legend: L lengths, N samples (one per table and length), P quantities,
B Vbs points, G Vgs points, D Vds points. Values are in A, S and F, voltages
in volts.

MATLAB tables (the gm/ID starter kit layout) contain one struct variable per
device, such as ``nch``, with fields

- ``ID, GM, GMB, GDS, CGG, CGS, CGD, CGB, CDD, CSS``: arrays ordered
  ``[L, VGS, VDS, VSB]``; singleton dimensions may be squeezed away, as
  MATLAB does with a trailing singleton VSB;
- ``VGS, VDS, VSB, L``: sweep vectors; ``W`` the width; ``TEMP`` the
  temperature in kelvin; ``CORNER`` the corner name.

``L`` and ``W`` are micrometres as the kit writes them; values of at most
1e-3 are taken as metres. Version 5 and 7 files are read with
``scipy.io.loadmat`` and version 7.3 files (HDF5) with h5py.

mosplot tables are NumPy archives whose single entry ``lookup_table`` is a
pickled dict with one dict per device model, keyed by model name. A model
dict contains arrays ``id, gm, gmbs, gds, cgs, cgd, ...`` ordered
``(L, VBS, VGS, VDS)`` and vectors ``length`` (metres), ``vbs``, ``vgs`` and
``vds``, whose voltages follow the device's sign convention. The width is
``device_parameters["w"]`` (times the multiplier ``m``) or ``width``, at
model or top level. The pickle is loaded by
``safe_pickle.RestrictedUnpickler`` unless ``allow_unsafe_pickle`` is set.

Quantities map to BAG3 names as ibias = ID/id, gm = GM/gm, gb = GMB/gmbs,
gds = GDS/gds, cgs = CGS/cgs, cgd = CGD/cgd, cgb = CGB/cgb. ``cds``, ``cdb``
and ``csb`` cannot be derived from these tables without a device model, so
they are left out and listed in ``attrs["missing_quantities"]``.

Signs follow BAG3 (PMOS voltages and current negative):

- NMOS, and PMOS tables written with negative voltages: vgs = VGS,
  vds = VDS, vbs = -VSB (mosplot stores vbs itself).
- PMOS tables written with magnitudes (VGS >= 0, as the gm/ID kit writes
  them): vgs = -VGS, vds = -VDS, vbs = VSB.
- ibias takes the sign of the polarity. A table whose largest-magnitude
  current has the other sign is negated, and its source record in
  ``attrs["sources"]`` contains ``"ibias_negated": true``. gm, gds, gb and the
  capacitances are kept as stored.

The polarity is ``--polarity`` when given; otherwise negative VGS or
current means PMOS, and a MATLAB table with only positive values is
classified by its variable name (``p...`` or ``n...``, as in ``pch`` and
``nch``). Technology and flavor always come from the overrides; device
defaults to the table name, mismatch draw to 0 (nominal), and corner,
temperature and width come from the overrides or the file, else a
``DataError`` names the flag to pass.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import tokenize
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import h5py
import numpy as np
import scipy.io
import scipy.io.matlab

from circtune import __version__
from circtune.data.dataset import METADATA_COLUMNS, QUANTITIES, Dataset, Metadata
from circtune.data.importers.bag3 import MetadataOverrides, check_metadata_value, flag_name
from circtune.data.importers.resample import GridSpec, concatenate_tables, resample
from circtune.data.importers.safe_pickle import load_pickle
from circtune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MAT_V5_FORMAT = "mat-v5"
MAT_V73_FORMAT = "mat-v7.3"
MOSPLOT_FORMAT = "mosplot-npz"

MAT_QUANTITIES: dict[str, str] = {
    "ID": "ibias",
    "GM": "gm",
    "GMB": "gb",
    "GDS": "gds",
    "CGS": "cgs",
    "CGD": "cgd",
    "CGB": "cgb",
}
MOSPLOT_QUANTITIES: dict[str, str] = {
    "id": "ibias", "gm": "gm", "gmbs": "gb", "gds": "gds", "cgs": "cgs", "cgd": "cgd", "cgb": "cgb",
}  # fmt: skip
MOSPLOT_ENTRY = "lookup_table.npy"

_KELVIN_OFFSET = 273.15
_MICROMETRE_M = 1e-6
# Lengths and widths above this many metres are read as micrometres.
_MAX_METRES = 1e-3
_MOSPLOT_META_KEYS = ("description", "simulator", "parameter_names", "device_parameters", "width")
_ZIP_MAGIC = b"PK\x03\x04"
_MAT_MAGIC = b"MATLAB"


def lookup_format(path: str | os.PathLike[str]) -> str | None:
    """Return the lookup-table format of a file, or None if it is not one.

    The ``.mat`` and ``.npz`` extensions decide; other names are recognized
    by their first bytes.
    """
    file = Path(path)
    head = _read_head(file)
    suffix = file.suffix.lower()
    if suffix == ".npz" or (suffix != ".mat" and head.startswith(_ZIP_MAGIC)):
        return MOSPLOT_FORMAT
    if suffix == ".mat" or head.startswith(_MAT_MAGIC):
        return MAT_V73_FORMAT if h5py.is_hdf5(file) else MAT_V5_FORMAT
    return None


def read_lookup_table(
    path: str | os.PathLike[str],
    *,
    overrides: MetadataOverrides | None = None,
    grid: GridSpec | None = None,
    tables: Sequence[str] | None = None,
    allow_unsafe_pickle: bool = False,
) -> Dataset:
    """Read a MATLAB or mosplot lookup table, choosing the reader by format.

    Args:
        path: A ``.mat`` or ``.npz`` file.
        overrides: Metadata that replaces or completes what the file states.
        grid: Target grid; None gives ``GridSpec.coarse()``. Axes left as
            None in a given grid keep their source points.
        tables: Names of the tables to read (MATLAB variables or mosplot
            model names); None reads all.
        allow_unsafe_pickle: Unpickle a mosplot file without restrictions,
            which runs code from the file.

    Returns:
        A dataset of shape ``(N, P, B, G, D)`` with one sample per table
        and length.

    Raises:
        DataError: If the file is missing, corrupt, not a lookup table, or
            lacks metadata that no override gives.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: file not found; check the path")
    fmt = lookup_format(file)
    if fmt is None:
        raise DataError(f"{file}: not a lookup table; give a MATLAB .mat or mosplot .npz file")
    if fmt == MOSPLOT_FORMAT:
        return read_npz_table(
            file, overrides=overrides, grid=grid, tables=tables, allow_unsafe_pickle=allow_unsafe_pickle
        )
    return read_mat_table(file, overrides=overrides, grid=grid, tables=tables)


def read_mat_table(
    path: str | os.PathLike[str],
    *,
    overrides: MetadataOverrides | None = None,
    grid: GridSpec | None = None,
    tables: Sequence[str] | None = None,
) -> Dataset:
    """Read a MATLAB gm/ID lookup table (version 5, 7 or 7.3).

    Args and Returns as in ``read_lookup_table``.

    Raises:
        DataError: If the file is missing, corrupt, contains no gm/ID struct,
            or its arrays do not match its sweep vectors.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: file not found; check the path")
    if h5py.is_hdf5(file):
        fmt, structs = MAT_V73_FORMAT, _load_mat_v73(file)
    else:
        fmt, structs = MAT_V5_FORMAT, _load_mat_v5(file)
    selected = _select_tables(structs, tables, file, kind="MATLAB struct variable")
    raw_tables = [_mat_table(name, fields, file, overrides or MetadataOverrides()) for name, fields in selected.items()]
    return _build(raw_tables, file, fmt, overrides, grid)


def read_npz_table(
    path: str | os.PathLike[str],
    *,
    overrides: MetadataOverrides | None = None,
    grid: GridSpec | None = None,
    tables: Sequence[str] | None = None,
    allow_unsafe_pickle: bool = False,
) -> Dataset:
    """Read a mosplot ``.npz`` lookup table.

    Args and Returns as in ``read_lookup_table``.

    Raises:
        DataError: If the file is missing, corrupt or truncated, its pickle
            references a forbidden global (without ``allow_unsafe_pickle``),
            or it contains no model table.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: file not found; check the path")
    content = _load_mosplot_dict(file, allow_unsafe=allow_unsafe_pickle)
    models = {
        str(key): value
        for key, value in content.items()
        if key not in _MOSPLOT_META_KEYS and isinstance(value, Mapping) and "id" in value
    }
    selected = _select_tables(models, tables, file, kind="mosplot model")
    overrides = overrides or MetadataOverrides()
    raw_tables = [_mosplot_table(name, model, content, file, overrides) for name, model in selected.items()]
    return _build(raw_tables, file, MOSPLOT_FORMAT, overrides, grid)


@dataclasses.dataclass(frozen=True)
class _RawTable:
    # One device table in canonical layout: quantities (L, B, G, D) with
    # BAG3 signs, voltages with BAG3 signs, lengths and width in metres.
    name: str
    quantities: dict[str, np.ndarray]
    vbs_v: np.ndarray
    vgs_v: np.ndarray
    vds_v: np.ndarray
    lengths_m: np.ndarray
    polarity: str
    width_m: float | None
    temperature_c: float | None
    corner: str | None
    record: dict[str, object]


def _build(
    raw_tables: list[_RawTable], file: Path, fmt: str, overrides: MetadataOverrides | None, grid: GridSpec | None
) -> Dataset:
    overrides = overrides or MetadataOverrides()
    target = grid if grid is not None else GridSpec.coarse()
    parts = []
    for table in raw_tables:
        dataset = _to_dataset(table, file, fmt, overrides)
        parts.append(resample(dataset, target, source=f"{file} table '{table.name}'"))
    combined = concatenate_tables(parts, source=str(file))
    attrs = dict(combined.attrs)
    attrs["settings"] = {"overrides": overrides.as_dict(), "grid": target.describe()}
    return dataclasses.replace(combined, attrs=attrs)


def _to_dataset(table: _RawTable, file: Path, fmt: str, overrides: MetadataOverrides) -> Dataset:
    n_lengths = len(table.lengths_m)
    lengths_m = table.lengths_m
    if overrides.length_m is not None:
        if n_lengths > 1:
            raise ConfigError(
                f"{flag_name('length_m')} cannot replace the {n_lengths} lengths of table '{table.name}' in {file}; "
                "leave it out, because lookup tables give one sample per length"
            )
        lengths_m = np.array([overrides.length_m])
    fields: dict[str, object] = {
        "device": table.name,
        "polarity": table.polarity,
        "corner": table.corner,
        "temperature_c": table.temperature_c,
        "width_m": table.width_m,
        "mismatch_draw": 0,
        **overrides.as_dict(),
    }
    missing = [name for name in METADATA_COLUMNS if name != "length_m" and fields.get(name) is None]
    if missing:
        flags = ", ".join(flag_name(name) for name in missing)
        raise DataError(f"{file}: table '{table.name}' does not state {missing}; pass {flags}")
    for name, value in fields.items():
        problem = check_metadata_value(name, value)
        if problem:
            raise DataError(f"{file}: table '{table.name}' has {name} {value!r}; {problem}; pass {flag_name(name)}")

    names = tuple(name for name in QUANTITIES if name in table.quantities)
    values = np.stack([table.quantities[name] for name in names], axis=1)  # (L, P, B, G, D)
    columns: dict[str, list[object]] = {
        name: [fields[name]] * n_lengths for name in METADATA_COLUMNS if name != "length_m"
    }
    columns["length_m"] = [float(length) for length in lengths_m]
    record = {"file": str(file), "format": fmt, "table": table.name, "samples": n_lengths, **table.record}
    return Dataset(
        values=values,
        quantities=names,
        vbs=np.tile(table.vbs_v, (n_lengths, 1)),
        vgs=np.tile(table.vgs_v, (n_lengths, 1)),
        vds=np.tile(table.vds_v, (n_lengths, 1)),
        metadata=Metadata.from_columns(columns),
        attrs={
            "generator": "circtune.data.importers",
            "generator_version": __version__,
            "sources": [record],
            "missing_quantities": [name for name in QUANTITIES if name not in names],
        },
    )


def _select_tables(
    available: Mapping[str, Mapping[str, object]], requested: Sequence[str] | None, file: Path, *, kind: str
) -> dict[str, Mapping[str, object]]:
    if not available:
        raise DataError(f"{file}: no {kind} with gm/ID tables found; check that this is a gm/ID lookup table")
    if requested is None:
        return dict(available)
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise DataError(f"{file}: tables {unknown} not found; the file contains {sorted(available)}")
    return {name: available[name] for name in requested}


# MATLAB files.


def _load_mat_v5(file: Path) -> dict[str, dict[str, object]]:
    # NOTE: scipy 1.17.1 loadmat crashed the interpreter (SIGBUS) on a
    # version 5 file with one corrupted byte; truncated files raise errors.
    try:
        content = scipy.io.loadmat(file, squeeze_me=False, struct_as_record=True, chars_as_strings=True)
    except (
        scipy.io.matlab.MatReadError,
        ValueError,
        TypeError,
        LookupError,
        OSError,
        EOFError,
        NotImplementedError,
        zlib.error,
    ) as error:
        raise DataError(
            f"{file}: cannot read MATLAB data ({error}); the file may be truncated, copy it again"
        ) from error
    structs: dict[str, dict[str, object]] = {}
    for name, value in content.items():
        if name.startswith("__") or not isinstance(value, np.ndarray) or value.dtype.names is None:
            continue
        if value.size != 1:
            logger.warning(
                "%s: skipping struct array '%s' of shape %s; gm/ID tables are 1x1 structs", file, name, value.shape
            )
            continue
        record = value.reshape(-1)[0]
        structs[name] = {field.upper(): _mat_v5_value(record[field]) for field in value.dtype.names}
    return {name: fields for name, fields in structs.items() if _is_gm_id_struct(fields)}


def _mat_v5_value(value: object) -> object:
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return "".join(value.reshape(-1).tolist()).strip()
    if isinstance(value, np.ndarray) and value.dtype.kind in "iufb":
        return value.astype(np.float64)
    return None


def _load_mat_v73(file: Path) -> dict[str, dict[str, object]]:
    structs: dict[str, dict[str, object]] = {}
    try:
        with h5py.File(file, "r") as handle:
            for name, node in handle.items():
                if name.startswith("#") or not isinstance(node, h5py.Group) or _matlab_class(node) != "struct":
                    continue
                structs[name] = {
                    field.upper(): _mat_v73_value(child)
                    for field, child in node.items()
                    if isinstance(child, h5py.Dataset)
                }
    except OSError as error:
        raise DataError(
            f"{file}: cannot read MATLAB 7.3 data ({error}); the file may be truncated, copy it again"
        ) from error
    return {name: fields for name, fields in structs.items() if _is_gm_id_struct(fields)}


def _is_gm_id_struct(fields: Mapping[str, object]) -> bool:
    return "ID" in fields or "VGS" in fields


def _matlab_class(node: h5py.HLObject) -> str:
    value = node.attrs.get("MATLAB_class", b"")
    return value.decode("ascii") if isinstance(value, bytes | np.bytes_) else str(value)


def _mat_v73_value(node: h5py.Dataset) -> object:
    # MATLAB writes column-major arrays, so HDF5 stores the axes reversed.
    if node.attrs.get("MATLAB_empty", 0):
        return np.zeros((0,))
    matlab_class = _matlab_class(node)
    data = np.asarray(node[()])
    if matlab_class == "char":
        return "".join(chr(code) for code in data.T.reshape(-1)).strip()
    if data.dtype.kind not in "iufb":
        return None
    return data.T.astype(np.float64)


def _mat_table(name: str, fields: Mapping[str, object], file: Path, overrides: MetadataOverrides) -> _RawTable:
    where = f"{file} table '{name}'"
    vectors = {key: _vector(fields, key, where) for key in ("L", "VGS", "VDS", "VSB")}
    shape = (len(vectors["L"]), len(vectors["VGS"]), len(vectors["VDS"]), len(vectors["VSB"]))
    if not isinstance(fields.get("ID"), np.ndarray):
        raise DataError(f"{where}: field 'ID' is missing; a gm/ID table needs the drain current")

    quantities: dict[str, np.ndarray] = {}
    for key, quantity in MAT_QUANTITIES.items():
        array = fields.get(key)
        if isinstance(array, np.ndarray):
            full = _expand(array, shape, where=f"{where} field '{key}'", order="[L, VGS, VDS, VSB]")
            quantities[quantity] = full.transpose(0, 3, 1, 2)  # (L, VSB, VGS, VDS)

    polarity = _mat_polarity(name, vectors["VGS"], quantities["ibias"], overrides, where)
    sign = _voltage_sign(polarity, vectors["VGS"], where)
    negated = _fix_ibias_sign(quantities, polarity)
    record: dict[str, object] = {"ibias_negated": negated, "voltages_negated": sign < 0}
    info = fields.get("INFO")
    if isinstance(info, str) and info:
        record["info"] = info

    # Fields that an override replaces are not parsed, so a bad one cannot fail.
    width_m = overrides.width_m
    if width_m is None:
        width_m = _scalar_metres(fields.get("W"), where=f"{where} field 'W'")
    temperature_c = overrides.temperature_c
    if temperature_c is None:
        temperature_c = _celsius_from_kelvin(fields.get("TEMP"), where=f"{where} field 'TEMP'")
    return _RawTable(
        name=name,
        quantities=quantities,
        vbs_v=-sign * vectors["VSB"] + 0.0,  # + 0.0 turns -0.0 into 0.0
        vgs_v=sign * vectors["VGS"],
        vds_v=sign * vectors["VDS"],
        lengths_m=_metres(vectors["L"], where=f"{where} field 'L'"),
        polarity=polarity,
        width_m=width_m,
        temperature_c=temperature_c,
        corner=_text(fields.get("CORNER")),
        record=record,
    )


def _mat_polarity(name: str, vgs: np.ndarray, ibias: np.ndarray, overrides: MetadataOverrides, where: str) -> str:
    if overrides.polarity is not None:
        return overrides.polarity
    negative = (vgs.min() < 0 and vgs.max() <= 0) or _dominant_sign(ibias) < 0
    by_name = {"p": "p", "n": "n"}.get(name[:1].lower())
    if negative:
        if by_name == "n":
            raise DataError(
                f"{where}: the name suggests NMOS but VGS or ID is negative; pass {flag_name('polarity')} n or p"
            )
        return "p"
    if by_name is None:
        raise DataError(
            f"{where}: the polarity cannot be determined from positive VGS and ID; pass {flag_name('polarity')} n or p"
        )
    return by_name


# mosplot files.


def _load_mosplot_dict(file: Path, *, allow_unsafe: bool) -> Mapping[object, object]:
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            if MOSPLOT_ENTRY not in names:
                raise DataError(
                    f"{file}: entry 'lookup_table' is missing (the archive contains {names}); mosplot tables store "
                    "one pickled dict there"
                )
            # read() checks the CRC, so a damaged entry fails here instead of
            # feeding damaged bytes to the unpickler.
            entry = archive.read(MOSPLOT_ENTRY)
        content = _read_object_array(io.BytesIO(entry), file, allow_unsafe=allow_unsafe)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, SyntaxError, tokenize.TokenError) as error:
        raise DataError(
            f"{file}: cannot read the NumPy archive ({error}); the file may be truncated, copy it again"
        ) from error
    if isinstance(content, np.ndarray) and content.dtype == object and content.size == 1:
        content = content.reshape(-1)[0]
    if not isinstance(content, Mapping):
        raise DataError(f"{file}: 'lookup_table' contains a {type(content).__name__}, but a mosplot table is a dict")
    return content


def _read_object_array(stream: IO[bytes], file: Path, *, allow_unsafe: bool) -> object:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        _, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        _, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise DataError(f"{file}: 'lookup_table' uses .npy format version {version}; only 1.0 and 2.0 are read")
    if dtype != np.dtype(object):
        raise DataError(f"{file}: 'lookup_table' is a {dtype} array, but a mosplot table is a pickled dict")
    return load_pickle(stream, source=f"{file} entry 'lookup_table'", allow_unsafe=allow_unsafe)


def _mosplot_table(
    name: str, model: Mapping[str, object], content: Mapping[object, object], file: Path, overrides: MetadataOverrides
) -> _RawTable:
    where = f"{file} table '{name}'"
    vectors = {key: _vector(model, key, where) for key in ("length", "vbs", "vgs", "vds")}
    shape = (len(vectors["length"]), len(vectors["vbs"]), len(vectors["vgs"]), len(vectors["vds"]))
    quantities: dict[str, np.ndarray] = {}
    for key, quantity in MOSPLOT_QUANTITIES.items():
        array = model.get(key)
        if array is not None:
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
                raise DataError(f"{where}: entry '{key}' is not a numeric array; regenerate the table")
            quantities[quantity] = _expand(
                array.astype(np.float64), shape, where=f"{where} entry '{key}'", order="(L, VBS, VGS, VDS)"
            )

    sign_polarity = _polarity_from_sign(vectors["vgs"])
    polarity = overrides.polarity or sign_polarity
    if polarity is None:
        raise DataError(
            f"{where}: the polarity cannot be determined from the Vgs sweep; pass {flag_name('polarity')} n or p"
        )
    if sign_polarity is not None and polarity != sign_polarity:
        raise DataError(
            f"{where}: polarity '{polarity}' contradicts the Vgs sweep {vectors['vgs'].min():g}.."
            f"{vectors['vgs'].max():g} V; fix {flag_name('polarity')}"
        )
    negated = _fix_ibias_sign(quantities, polarity)
    width_m, width_note = _mosplot_width(model, content, where)
    record: dict[str, object] = {"ibias_negated": negated, **width_note}
    return _RawTable(
        name=name,
        quantities=quantities,
        vbs_v=vectors["vbs"],
        vgs_v=vectors["vgs"],
        vds_v=vectors["vds"],
        lengths_m=_metres(vectors["length"], where=f"{where} entry 'length'"),
        polarity=polarity,
        width_m=width_m,
        temperature_c=None,
        corner=None,
        record=record,
    )


def _mosplot_width(
    model: Mapping[str, object], content: Mapping[object, object], where: str
) -> tuple[float | None, dict[str, object]]:
    # A SPICE multiplier m puts m devices in parallel, so it scales the width.
    for scope in (model, content):
        parameters = scope.get("device_parameters")
        if isinstance(parameters, Mapping) and "w" in parameters:
            width = _scalar_metres(parameters["w"], where=f"{where} device_parameters 'w'")
            multiplier = _scalar(parameters.get("m", 1))
            if width is not None and multiplier is not None and multiplier != 1:
                return width * multiplier, {"width_multiplier": multiplier}
            return width, {}
        if "width" in scope:
            return _scalar_metres(scope["width"], where=f"{where} entry 'width'"), {}
    return None, {}


# Shared conversions.


def _vector(fields: Mapping[str, object], key: str, where: str) -> np.ndarray:
    value = fields.get(key)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf" or value.size == 0:
        raise DataError(f"{where}: sweep vector '{key}' is missing or not numeric; regenerate the table")
    vector = value.astype(np.float64).reshape(-1)
    if vector.size != max(value.shape, default=1):
        raise DataError(f"{where}: sweep vector '{key}' has shape {value.shape}, but a vector is required")
    if not np.all(np.isfinite(vector)):
        raise DataError(f"{where}: sweep vector '{key}' contains NaN or infinite values; regenerate the table")
    steps = np.diff(vector)
    if steps.size and not (np.all(steps > 0) or np.all(steps < 0)):
        raise DataError(f"{where}: sweep vector '{key}' is not strictly monotonic; sort the sweep")
    return vector


def _expand(array: np.ndarray, shape: tuple[int, ...], *, where: str, order: str) -> np.ndarray:
    # Restore dimensions of size 1 that the writer squeezed away.
    if array.shape != shape:
        squeezed = tuple(size for size in array.shape if size != 1)
        if squeezed != tuple(size for size in shape if size != 1):
            raise DataError(f"{where} has shape {array.shape}, but the sweep vectors need {shape} ordered {order}")
        array = array.reshape(shape)
    if not np.all(np.isfinite(array)):
        raise DataError(f"{where} contains {int((~np.isfinite(array)).sum())} NaN or infinite values; regenerate it")
    return array


def _metres(values: np.ndarray, *, where: str) -> np.ndarray:
    lengths = values * _MICROMETRE_M if values.max() > _MAX_METRES else values
    if lengths.min() <= 0 or lengths.max() > _MAX_METRES:
        raise DataError(f"{where}: values {values.min():g}..{values.max():g} are neither metres nor micrometres")
    return lengths


def _scalar_metres(value: object, *, where: str) -> float | None:
    number = _scalar(value)
    if number is None:
        return None
    return float(_metres(np.array([number]), where=where)[0])


def _celsius_from_kelvin(value: object, *, where: str) -> float | None:
    kelvin = _scalar(value)
    if kelvin is None:
        return None
    if kelvin <= 0:
        raise DataError(f"{where}: {kelvin:g} is not a temperature in kelvin; pass {flag_name('temperature_c')}")
    return kelvin - _KELVIN_OFFSET


def _scalar(value: object) -> float | None:
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(-1)[0])
    return None


def _text(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def _polarity_from_sign(vgs: np.ndarray) -> str | None:
    if vgs.max() > 0 and vgs.min() >= 0:
        return "n"
    if vgs.min() < 0 and vgs.max() <= 0:
        return "p"
    return None


def _voltage_sign(polarity: str, vgs: np.ndarray, where: str) -> float:
    # Returns -1 for PMOS tables written with voltage magnitudes, else +1.
    sign_polarity = _polarity_from_sign(vgs)
    if polarity == "n" and sign_polarity == "p":
        raise DataError(f"{where}: polarity 'n' contradicts the negative VGS sweep; fix {flag_name('polarity')}")
    return -1.0 if polarity == "p" and sign_polarity == "n" else 1.0


def _dominant_sign(values: np.ndarray) -> float:
    return float(np.sign(values.reshape(-1)[np.abs(values).argmax()]))


def _fix_ibias_sign(quantities: dict[str, np.ndarray], polarity: str) -> bool:
    expected = 1.0 if polarity == "n" else -1.0
    if _dominant_sign(quantities["ibias"]) == -expected:
        quantities["ibias"] = -quantities["ibias"]
        return True
    return False


def _read_head(file: Path) -> bytes:
    try:
        with file.open("rb") as stream:
            return stream.read(len(_MAT_MAGIC))
    except OSError:
        return b""
