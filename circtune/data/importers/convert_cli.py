"""The ``convert`` command: turn BAG3 files and lookup tables into a dataset file.

Usage::

    python -m circtune.data convert SOURCE... -o OUT.h5 [options]

Each SOURCE is a BAG3 ``ss_params.hdf5`` file, a folder searched
recursively for them, a MATLAB ``.mat`` or a mosplot ``.npz`` lookup table
(see ``bag3`` and ``lookup`` for the layouts and the metadata rules). All
samples go into one canonical HDF5 file, written atomically, so an
interrupted run leaves no partial file.

Grid: without grid flags, BAG3 files keep their source grid and lookup
tables get about ``DEFAULT_AXIS_POINTS`` (11) source points per axis, copied without interpolation.
``--grid`` and ``--vbs/--vgs/--vds`` set the target grid of every source.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py

from circtune.data.dataset import AXES, FLAVORS, POLARITIES, QUANTITIES, Dataset
from circtune.data.h5format import write_dataset
from circtune.data.importers.bag3 import BAG3_FILE_NAME, FORMAT_NAME, MetadataOverrides, find_bag3_files, read_bag3_file
from circtune.data.importers.lookup import lookup_format, read_lookup_table
from circtune.data.importers.resample import (
    DEFAULT_AXIS_POINTS,
    GridSpec,
    concatenate_tables,
    parse_axis_range,
    parse_grid,
    resample,
)
from circtune.errors import ConfigError, DataError

ProgressCallback = Callable[[int, int, Path], None]


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``convert`` command's arguments to ``parser``."""
    parser.add_argument(
        "sources",
        nargs="+",
        type=Path,
        metavar="SOURCE",
        help=f"BAG3 {BAG3_FILE_NAME} file, folder searched recursively for them, MATLAB .mat or mosplot .npz table",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.h5", help="dataset file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")

    grid = parser.add_argument_group("target grid")
    grid.add_argument(
        "--grid",
        metavar="SPEC",
        help="points per axis: N (evenly spaced, interpolated where they miss source points), nearest:N (source "
        "points only), source, or per axis such as vbs=source,vgs=21,vds=nearest:11; default: the source grid "
        f"for BAG3 files and nearest:{DEFAULT_AXIS_POINTS} for lookup tables",
    )
    for axis in AXES:
        grid.add_argument(
            f"--{axis}",
            metavar="START:STOP:COUNT",
            help=f"evenly spaced {axis} points, START and STOP in volts, for example 0:1.5:11; write "
            f"--{axis}=-1.5:0:11 when START is negative",
        )

    metadata = parser.add_argument_group("device metadata (replaces what the files state)")
    metadata.add_argument("--technology", help="PDK or model family name, such as sky130")
    metadata.add_argument("--device", help="device model name, such as nfet_01v8")
    metadata.add_argument("--flavor", choices=FLAVORS, help="low-Vt, nominal, high-Vt or thick-oxide high-voltage")
    metadata.add_argument("--polarity", choices=POLARITIES, help="n for NMOS, p for PMOS")
    metadata.add_argument("--corner", help="process corner of lookup tables, such as tt")
    metadata.add_argument("--temperature-c", type=float, metavar="DEGREES", help="temperature in degrees Celsius")
    metadata.add_argument("--length-m", type=float, metavar="METRES", help="channel length in metres, such as 1.5e-07")
    metadata.add_argument("--width-m", type=float, metavar="METRES", help="channel width in metres, such as 1e-06")
    metadata.add_argument("--mismatch-draw", type=int, metavar="N", help="Monte Carlo mismatch draw; 0 is nominal")

    options = parser.add_argument_group("reading")
    options.add_argument(
        "--allow-missing",
        action="store_true",
        help="leave quantities that BAG3 files lack out of the dataset instead of stopping",
    )
    options.add_argument(
        "--allow-unsafe-pickle",
        action="store_true",
        help="load mosplot .npz pickles without restrictions; this runs code from the file, so trust it first",
    )
    options.add_argument(
        "--table",
        action="append",
        metavar="NAME",
        help="read only this table from each lookup file (MATLAB variable or mosplot model name); repeatable",
    )


def run_convert(args: argparse.Namespace) -> int:
    """Run ``convert`` with parsed arguments and print a one-line summary.

    Returns:
        The exit status, 0 on success.

    Raises:
        ConfigError: If a flag is invalid or the output exists without
            ``--overwrite``.
        DataError: If a source is missing, malformed or incomplete.
    """
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise ConfigError(f"{output}: file exists; pass --overwrite to replace it or choose another name")
    overrides = MetadataOverrides(
        technology=args.technology,
        device=args.device,
        flavor=args.flavor,
        polarity=args.polarity,
        corner=args.corner,
        temperature_c=args.temperature_c,
        length_m=args.length_m,
        width_m=args.width_m,
        mismatch_draw=args.mismatch_draw,
    )
    grid = grid_from_arguments(args)
    files = expand_sources(args.sources)
    if output.resolve() in {file.resolve() for file in files}:
        raise ConfigError(f"{output}: the output is also a source; choose another output name")

    dataset = load_sources(
        files,
        overrides=overrides,
        grid=grid,
        allow_missing=args.allow_missing,
        allow_unsafe_pickle=args.allow_unsafe_pickle,
        tables=args.table,
        progress=_print_progress if len(files) > 1 else None,
    )
    write_dataset(dataset, output)
    print(_summary(dataset, output, n_files=len(files)))
    return 0


def grid_from_arguments(args: argparse.Namespace) -> GridSpec | None:
    """Return the grid that ``--grid`` and ``--vbs/--vgs/--vds`` ask for, or None.

    Raises:
        ConfigError: If a value is invalid or an axis is set twice.
    """
    grid = parse_grid(args.grid) if args.grid else None
    ranges = {axis: parse_axis_range(text, flag=f"--{axis}") for axis in AXES if (text := getattr(args, axis))}
    if not ranges:
        return grid
    targets = {axis: (grid.axis(axis) if grid else None) for axis in AXES}
    for axis, target in ranges.items():
        if targets[axis] is not None:
            raise ConfigError(f"both --grid and --{axis} set axis {axis}; give it once")
        targets[axis] = target
    return GridSpec(**targets)


def expand_sources(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Replace folders by the BAG3 files under them and check for repeats.

    Raises:
        DataError: If a source does not exist, a folder contains no BAG3 file,
            or a file is given twice.
    """
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(find_bag3_files(path))
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"{path}: file or folder not found; check the path")
    seen: dict[Path, Path] = {}
    for file in files:
        resolved = file.resolve()
        if resolved in seen:
            raise DataError(f"{file}: given twice (also as {seen[resolved]}); pass each file once")
        seen[resolved] = file
    return files


def source_format(path: str | os.PathLike[str]) -> str:
    """Return the format of one source file: ``bag3`` or a lookup-table format.

    Raises:
        DataError: If the file format is not supported.
    """
    file = Path(path)
    fmt = lookup_format(file)
    if fmt is not None:
        return fmt
    if not h5py.is_hdf5(file):
        raise DataError(f"{file}: unknown format; give a BAG3 {BAG3_FILE_NAME}, a MATLAB .mat or a mosplot .npz file")
    try:
        with h5py.File(file, "r") as handle:
            if handle.attrs.get("format") == "circtune-dataset":
                raise DataError(f"{file}: already a circtune dataset; use it directly instead of converting it")
            if "corner" in handle or "ibias" in handle:
                return FORMAT_NAME
    except OSError as error:
        raise DataError(f"{file}: cannot read HDF5 data ({error}); the file may be truncated, copy it again") from error
    raise DataError(f"{file}: HDF5 file without the BAG3 layout (no 'corner' or 'ibias' dataset); check the file")


def load_sources(
    files: Sequence[str | os.PathLike[str]],
    *,
    overrides: MetadataOverrides | None = None,
    grid: GridSpec | None = None,
    allow_missing: bool = False,
    allow_unsafe_pickle: bool = False,
    tables: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> Dataset:
    """Read source files of any supported format into one dataset.

    Args:
        files: BAG3 files and lookup tables (folders expanded beforehand with
            ``expand_sources``).
        overrides: Metadata that replaces or completes what the files state.
        grid: Target grid. None keeps BAG3 grids and gives lookup tables
            ``GridSpec.coarse()``; axes left as None behave the same way.
        allow_missing: Leave quantities that BAG3 files lack out.
        allow_unsafe_pickle: Unpickle mosplot files without restrictions.
        tables: Tables to read from lookup files; None reads all.
        progress: Called with (1-based index, count, path) before each file.

    Returns:
        A dataset of shape ``(N, P, B, G, D)`` over all files, with
        ``attrs["sources"]`` recording each file and its format.

    Raises:
        DataError: If a file is unreadable or the files' grids differ.
    """
    overrides = overrides or MetadataOverrides()
    parts = []
    for index, source in enumerate(files, start=1):
        file = Path(source)
        if progress is not None:
            progress(index, len(files), file)
        parts.append(_load_one(file, overrides, grid, allow_missing, allow_unsafe_pickle, tables))
    dataset = concatenate_tables(parts, source="the sources")
    attrs = dict(dataset.attrs)
    attrs["settings"] = {
        "overrides": overrides.as_dict(),
        "grid": grid.describe() if grid is not None else "default",
        "allow_missing": allow_missing,
        "allow_unsafe_pickle": allow_unsafe_pickle,
        "tables": list(tables) if tables else None,
    }
    attrs.pop("grid", None)
    return Dataset(
        values=dataset.values,
        quantities=dataset.quantities,
        vbs=dataset.vbs,
        vgs=dataset.vgs,
        vds=dataset.vds,
        metadata=dataset.metadata,
        attrs=attrs,
    )


def _load_one(
    file: Path,
    overrides: MetadataOverrides,
    grid: GridSpec | None,
    allow_missing: bool,
    allow_unsafe_pickle: bool,
    tables: Sequence[str] | None,
) -> Dataset:
    if source_format(file) == FORMAT_NAME:
        dataset = read_bag3_file(file, overrides=overrides, allow_missing=allow_missing)
        return resample(dataset, grid, source=str(file)) if grid is not None else dataset
    lookup_grid = (grid or GridSpec()).with_defaults(GridSpec.coarse())
    return read_lookup_table(
        file, overrides=overrides, grid=lookup_grid, tables=tables, allow_unsafe_pickle=allow_unsafe_pickle
    )


def _print_progress(index: int, count: int, file: Path) -> None:
    print(f"[{index}/{count}] reading {file}", file=sys.stderr, flush=True)


def _summary(dataset: Dataset, output: Path, *, n_files: int) -> str:
    n_vbs, n_vgs, n_vds = dataset.grid_shape
    missing = [name for name in QUANTITIES if name not in dataset.quantities]
    text = (
        f"wrote {output}: {dataset.n_samples} samples from {n_files} file{'s' if n_files != 1 else ''}, "
        f"quantities {list(dataset.quantities)}, grid {n_vbs} x {n_vgs} x {n_vds} (vbs x vgs x vds)"
    )
    return text + (f", without {missing}" if missing else "")
