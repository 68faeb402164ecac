"""``python -m circtune.data``: generate, simulate, convert and inspect datasets."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from circtune._cli import ArgumentParser, check_output_file, configure_logging, run_main
from circtune._progress import ProgressLine
from circtune.data.dataset import Dataset
from circtune.data.default import DEFAULT_NAME, default_dataset_path, ensure_default_dataset
from circtune.data.h5format import DatasetFile, write_dataset
from circtune.errors import ConfigError

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-command per task."""
    parser = ArgumentParser(
        prog="python -m circtune.data",
        description="Create, import and inspect transistor characterization datasets (canonical HDF5 files).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate",
        help="generate a synthetic dataset with the built-in all-region MOSFET model",
        description="Generate a synthetic dataset with the built-in all-region MOSFET model. Without --out, "
        "the default dataset is written to the cache that 'dataset: default' reads.",
    )
    generate.add_argument("--out", type=Path, help="output .h5 file (default: the cache file of these settings)")
    generate.add_argument("--seed", type=int, help="random seed of the mismatch draws (default: 0)")
    generate.add_argument("--mismatch-draws", type=int, help="Monte Carlo draws per device and condition")
    generate.add_argument("--grid", help="grid size as VBS,VGS,VDS point counts, for example 11,11,11")
    generate.add_argument("--force", action="store_true", help="overwrite an existing output file")

    inspect = commands.add_parser(
        "inspect",
        help="print a summary of a dataset and optionally plot I-V curves",
        description="Print counts by flavor, corner and temperature, value ranges per quantity and voltage axes.",
    )
    inspect.add_argument("path", nargs="?", default=DEFAULT_NAME, help="dataset .h5 file, or 'default' (default)")
    inspect.add_argument("--plot", type=Path, metavar="PNG", help="save Id-Vds curves of a few devices to PNG")

    convert = commands.add_parser(
        "convert",
        help="import BAG3 ss_params.hdf5 files or gm/ID lookup tables (.mat, .npz)",
        description="Import BAG3 ss_params.hdf5 files or gm/ID lookup tables into the canonical format.",
    )
    from circtune.data.importers import add_convert_arguments

    add_convert_arguments(convert)

    simulate = commands.add_parser(
        "simulate",
        help="characterize open-PDK devices with ngspice",
        description="Characterize open-PDK BSIM4 devices with ngspice into the canonical format.",
    )
    from circtune.data.ngspice.cli import add_simulate_arguments

    add_simulate_arguments(simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv``; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.command == "generate":
        return _generate(args)
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "convert":
        from circtune.data.importers import run_convert

        return run_convert(args)
    from circtune.data.ngspice.cli import run_simulate

    return run_simulate(args)


def _generate(args: argparse.Namespace) -> int:
    from circtune.data.synthetic import GeneratorSettings, generate

    settings = GeneratorSettings.from_dict(_generator_overrides(args))
    check_output_file(args.out, "--out")
    progress = ProgressLine("generating", "samples")
    if args.out is None:
        path = default_dataset_path(settings)
        if path.exists() and not args.force:
            print(f"{path} already exists (use --force to regenerate)")
            return 0
        if args.force:
            path.unlink(missing_ok=True)
        path = ensure_default_dataset(settings, progress=progress)
    else:
        path = args.out
        if path.exists() and not args.force:
            raise ConfigError(f"output file {path} already exists; pass --force to overwrite it or choose another --out")
        write_dataset(generate(settings, progress=progress), path)
    print(f"wrote {path}")
    return 0


def _generator_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.mismatch_draws is not None:
        overrides["n_mismatch_draws"] = args.mismatch_draws
    if args.grid is not None:
        overrides.update(zip(("n_vbs", "n_vgs", "n_vds"), _parse_grid(args.grid), strict=True))
    return overrides


def _parse_grid(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) < 1:
        raise ConfigError(f"--grid must be three positive point counts VBS,VGS,VDS such as 11,11,11, but got {text!r}")
    return sizes[0], sizes[1], sizes[2]


def _inspect(args: argparse.Namespace) -> int:
    from circtune.data.summary import format_summary, plot_iv_curves, summarize

    check_output_file(args.plot, "--plot")
    path = ensure_default_dataset(progress=ProgressLine("generating", "samples")) if args.path == DEFAULT_NAME else Path(args.path)
    with DatasetFile(path) as handle:
        dataset: Dataset = handle.load()
    print(format_summary(summarize(dataset), str(path)))
    if args.plot is not None:
        print(f"wrote {plot_iv_curves(dataset, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
