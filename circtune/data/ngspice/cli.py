"""Command line of ``python -m circtune.data simulate``.

``add_simulate_arguments`` adds the flags to a parser and ``run_simulate``
runs a parsed command. Lengths and widths are given in micrometres on the
command line and stored in metres. Progress goes to stderr, for example
``120/560 tables, 14.2 tables/s, eta 35 s``.

This module also runs alone: ``python -m circtune.data.ngspice.cli OUT.h5``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from circtune._cli import ArgumentParser, check_output_file, configure_logging, run_main
from circtune.data.ngspice.pdk import PDKS
from circtune.data.ngspice.simulate import DEFAULT_GRID_POINTS, Progress, SimulationSettings, simulate
from circtune.errors import ConfigError

_PROGRESS_INTERVAL_S = 1.0


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of the ``simulate`` command to ``parser``."""
    defaults = SimulationSettings()

    # what to simulate
    parser.add_argument("output", type=Path, help="HDF5 dataset file to write")
    parser.add_argument("--pdk", choices=sorted(PDKS), default=defaults.pdk, help="PDK package (default: sky130)")
    parser.add_argument(
        "--devices",
        nargs="+",
        default=[],
        metavar="NAME",
        help="device names, e.g. nfet_01v8 (default: every device of the PDK)",
    )
    parser.add_argument(
        "--corners",
        nargs="+",
        default=list(defaults.corners),
        metavar="CORNER",
        help="process corners from tt ff ss fs sf (default: tt)",
    )
    parser.add_argument(
        "--temperatures-c",
        nargs="+",
        type=float,
        default=list(defaults.temperatures_c),
        metavar="T",
        help="temperatures in degrees Celsius (default: 27)",
    )

    # geometry
    parser.add_argument(
        "--lengths-um",
        nargs="+",
        type=float,
        metavar="L",
        help="channel lengths in um for every device (default: 1, 2 and 4 times each device's minimum length)",
    )
    parser.add_argument(
        "--device-lengths-um",
        action="append",
        default=[],
        metavar="DEVICE=L1,L2",
        help="channel lengths in um of one device, overriding --lengths-um; repeatable",
    )
    parser.add_argument(
        "--widths-um", nargs="+", type=float, default=[1.0], metavar="W", help="channel widths in um (default: 1)"
    )

    # mismatch and grid
    parser.add_argument(
        "--draws",
        type=int,
        default=defaults.n_mismatch_draws,
        help="mismatch draws per geometry; draw 0 is nominal (default: 1)",
    )
    parser.add_argument(
        "--avt-mv-um", type=float, default=defaults.avt_mv_um, help="Pelgrom A_VT in mV um (default: 4.5)"
    )
    parser.add_argument(
        "--abeta-pct-um", type=float, default=defaults.abeta_pct_um, help="Pelgrom A_beta in %% um (default: 1.0)"
    )
    parser.add_argument(
        "--grid",
        nargs=3,
        type=int,
        default=[DEFAULT_GRID_POINTS] * 3,
        metavar=("B", "G", "D"),
        help=f"points of the Vbs, Vgs and Vds axes (default: {DEFAULT_GRID_POINTS} each)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the mismatch draws (default: 0)")

    # execution
    parser.add_argument("--workers", type=int, default=0, help="parallel ngspice processes; 0 uses every core")
    parser.add_argument(
        "--instances-per-run",
        type=int,
        default=defaults.instances_per_run,
        help="maximum number of instances that one ngspice process simulates (default: 16)",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=defaults.timeout_s,
        help="wall-clock limit of one ngspice process in seconds (default: 600)",
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster address (e.g. auto) to run the jobs on instead of local processes"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an output file that contains other data")


def run_simulate(args: argparse.Namespace) -> int:
    """Run a parsed ``simulate`` command; returns the exit status.

    Raises:
        ConfigError: If the flags describe an invalid simulation.
    """
    settings = settings_from_arguments(args)
    check_output_file(Path(args.output), "output")
    if args.address is not None:
        from circtune.cluster.address import check_ray_address

        check_ray_address(args.address)
    reporter = _ProgressPrinter()
    path = simulate(settings, args.output, progress=reporter, ray_address=args.address, overwrite=args.force)
    reporter.finish()
    print(path)
    return 0


def settings_from_arguments(args: argparse.Namespace) -> SimulationSettings:
    """Build validated settings from parsed flags.

    Raises:
        ConfigError: If a flag value is invalid.
    """
    n_vbs, n_vgs, n_vds = args.grid
    devices = tuple(args.devices) or tuple(PDKS[args.pdk].devices)
    common = tuple(value * 1e-6 for value in args.lengths_um) if args.lengths_um else None
    lengths: dict[str, tuple[float, ...]] | tuple[float, ...] | None = common
    if args.device_lengths_um:
        lengths = _device_lengths(args.device_lengths_um, devices, common)
    return SimulationSettings(
        pdk=args.pdk,
        devices=devices,
        corners=tuple(args.corners),
        temperatures_c=tuple(args.temperatures_c),
        lengths_m=lengths,
        widths_m=tuple(value * 1e-6 for value in args.widths_um),
        n_mismatch_draws=args.draws,
        avt_mv_um=args.avt_mv_um,
        abeta_pct_um=args.abeta_pct_um,
        n_vbs=n_vbs,
        n_vgs=n_vgs,
        n_vds=n_vds,
        seed=args.seed,
        workers=args.workers,
        instances_per_run=args.instances_per_run,
        timeout_s=args.timeout_s,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``simulate`` command alone."""
    parser = ArgumentParser(prog="python -m circtune.data.ngspice.cli", description=__doc__.splitlines()[0])
    add_simulate_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")

    def command(arguments: Sequence[str] | None) -> int:
        args = parser.parse_args(arguments)
        configure_logging(args.verbose)
        return run_simulate(args)

    return run_main(command, argv)


class _ProgressPrinter:
    """Print progress to stderr at most once per interval, and the last state."""

    def __init__(self) -> None:
        self._last_print_s = -_PROGRESS_INTERVAL_S
        self._last: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self._last = progress
        now_s = time.monotonic()
        if now_s - self._last_print_s >= _PROGRESS_INTERVAL_S:
            self._last_print_s = now_s
            _print_progress(progress)

    def finish(self) -> None:
        if self._last is not None:
            _print_progress(self._last)


def _print_progress(progress: Progress) -> None:
    eta = f"{progress.eta_s:.0f} s" if progress.eta_s != float("inf") else "unknown"
    failed = f", {progress.failed_tables} failed" if progress.failed_tables else ""
    print(
        f"{progress.done_tables}/{progress.total_tables} tables, {progress.tables_per_s:.1f} tables/s, eta {eta}{failed}",
        file=sys.stderr,
        flush=True,
    )


def _device_lengths(
    entries: Sequence[str], devices: Sequence[str], common: tuple[float, ...] | None
) -> dict[str, tuple[float, ...]]:
    lengths: dict[str, tuple[float, ...]] = {}
    for entry in entries:
        name, separator, values = entry.partition("=")
        if not separator or name not in devices:
            raise ConfigError(
                f"--device-lengths-um {entry!r} must be DEVICE=L1,L2 with DEVICE one of the simulated {list(devices)}"
            )
        try:
            lengths[name] = tuple(float(value) * 1e-6 for value in values.split(","))
        except ValueError as error:
            raise ConfigError(f"--device-lengths-um {entry!r} has a length that is not a number") from error
    missing = [name for name in devices if name not in lengths]
    if missing and common is None:
        raise ConfigError(f"--device-lengths-um gives no lengths for {missing}; add them or give --lengths-um")
    return {name: lengths.get(name, common or ()) for name in devices}


if __name__ == "__main__":
    sys.exit(main())
