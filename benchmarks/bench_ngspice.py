"""Benchmark ngspice characterization: CPU seconds per table, one instance per run vs batches.

Each configuration simulates ``--tables`` tables of one device on a B x G x D
grid (11 x 11 x 11 by default) serially in this process, once with one
instance per ngspice run and once per batch size given. CPU time is the user
plus system time of this process and its ngspice children. It counts the work
of one core even when other programs share the machine, though contention for
caches still inflates it. Wall time is printed beside it.

Usage:

    python benchmarks/bench_ngspice.py
    python benchmarks/bench_ngspice.py --pdk gf180mcu --device nfet_03v3 --tables 32 --batch-sizes 1 8 32
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections.abc import Sequence

from circtune.data.ngspice import pdk, runner
from circtune.data.ngspice.netlist import InstanceParams
from circtune.data.ngspice.runner import ngspice_executable, ngspice_version, run_batch
from circtune.data.ngspice.simulate import SimulationSettings, device_grid, mismatch_parameters

DEFAULT_DEVICES = (
    ("sky130", "nfet_01v8"),
    ("sky130", "pfet_01v8"),
    ("sky130", "nfet_g5v0d10v5"),
    ("gf180mcu", "nfet_03v3"),
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print one markdown table row per configuration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pdk", help="PDK of a single device to benchmark (default: a set of four devices)")
    parser.add_argument("--device", help="device name, with --pdk")
    parser.add_argument("--tables", type=int, default=16, help="tables per configuration (default: 16)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="instances per run (default: 1 16)")
    parser.add_argument("--grid", type=int, nargs=3, default=[11, 11, 11], metavar=("B", "G", "D"))
    parser.add_argument(
        "--whole-library",
        action="store_true",
        help="load the whole sky130 corner library in every run instead of the needed model cards",
    )
    args = parser.parse_args(argv)
    if args.whole_library:
        runner.select_model_cards = lambda *args, **kwargs: None
    devices = ((args.pdk, args.device),) if args.pdk else DEFAULT_DEVICES

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    library = "whole corner library" if args.whole_library else "needed model cards"
    print(f"ngspice {ngspice_version(ngspice_executable())}; grid {' x '.join(map(str, args.grid))}; {library}")
    print("| pdk | device | instances per run | tables | CPU s per table | tables/s per core | wall s |")
    print("|---|---|---|---|---|---|---|")
    for pdk_name, device_name in devices:
        for batch_size in args.batch_sizes:
            cpu_s, wall_s = _measure(pdk_name, device_name, args.tables, batch_size, args.grid)
            print(
                f"| {pdk_name} | {device_name} | {batch_size} | {args.tables} | {cpu_s / args.tables:.3f} "
                f"| {args.tables / cpu_s:.1f} | {wall_s:.1f} |",
                flush=True,
            )


def _measure(
    pdk_name: str, device_name: str, n_tables: int, batch_size: int, grid_size: Sequence[int]
) -> tuple[float, float]:
    """Return CPU and wall seconds to simulate ``n_tables`` mismatch instances in runs of ``batch_size``."""
    installed = pdk.locate_pdk(pdk_name)
    device = pdk.get_device(pdk_name, device_name)
    n_vbs, n_vgs, n_vds = grid_size
    grid = device_grid(device, n_vbs=n_vbs, n_vgs=n_vgs, n_vds=n_vds)
    settings = SimulationSettings(pdk=pdk_name, devices=(device_name,))
    length_m, width_m = device.default_lengths_m[1], 1e-6
    instances = [
        InstanceParams(length_m, width_m, *mismatch_parameters(settings, device_name, length_m, width_m, draw))
        for draw in range(n_tables)
    ]
    pdk.select_model_cards(installed, device, "tt", [(length_m, width_m)])  # parse the model file outside the timing

    cpu_start_s, wall_start_s = _cpu_s(), time.perf_counter()
    for start in range(0, n_tables, batch_size):
        result = run_batch(
            device,
            "tt",
            temperature_c=27.0,
            instances=instances[start : start + batch_size],
            grid=grid,
            installed=installed,
        )
        if result.failures:
            raise RuntimeError(f"{device_name}: {result.failures[0].describe()}")
    return _cpu_s() - cpu_start_s, time.perf_counter() - wall_start_s


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
