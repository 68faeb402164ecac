"""Run ngspice on a batch of instances and map its output to BAG3 quantities.

Shape legend: K instances in one run, P quantities, B Vbs points, G Vgs
points, D Vds points. Voltages in V, currents in A, conductances in S,
capacitances in F.

BAG3 extracts its quantities from 3-port Y parameters (gate, drain, source;
body AC-grounded) at a low frequency: gm = (Re y_dg - Re y_sg) / 2,
gds = (Re y_dd - Re y_sd) / 2, gb = (Re y_ss - Re y_ds) / 2 - gm - gds, pair
capacitances as the mean of both off-diagonal entries (cgd = -(Im y_gd +
Im y_dg) / 2w and so on), and the body capacitances as what is left of the
diagonal (cgb = cgg - cgd - cgs). This module reproduces those definitions
from the BSIM4 operating point. With C_xy = @m[cxy] = dQx/dVy, the signed
intrinsic charge derivatives that ngspice reports:

    quantity  ngspice source
    ibias     i(vid): current of the 0 V source in series with the drain,
              positive into the drain (negative for PMOS)
    gm        @m[gm]
    gds       @m[gds]
    gb        @m[gmbs]
    cgd       -(C_gd + C_dg) / 2 + Cov_gd
    cgs       -(C_gs + C_sg) / 2 + Cov_gs
    cds       -(C_ds + C_sd) / 2
    cgb       C_gg + Cov_g - cgd - cgs
    cdb       C_dd + @m[capbd] + Cov_gd - cds - cgd
    csb       C_ss + @m[capbs] + Cov_gs - cgs - cds

Cov are the gate overlap and fringe capacitances, which BSIM4 keeps out of
its reported C_xy. An AC point with the gate driven gives them at each
(Vgs, Vds) of the first Vbs value: Cov_gd = C_dg - Im(y_dg)/w, Cov_gs =
C_sg - Im(y_sg)/w, and Cov_g = Im(y_gg)/w - C_gg (the sum of gate-drain,
gate-source and gate-body overlap). BSIM4's overlap capacitances depend on
Vgd and Vgs but not on Vbs, and its gate-body overlap is a constant. So the
values found at the first Vbs apply to the whole grid, which
``reference_point`` checks against a full Y parameter extraction. gm, gds
and gb are the channel derivatives. BAG3's Y parameter values also contain
the junction and impact-ionization conductances, about 0.2 % of gds in
saturation for sky130 nfet_01v8. Under these definitions cds is negative in
saturation, because BSIM4's drain charge grows with the source voltage there.

Convergence failures: a failed ``dc`` or ``ac`` point leaves its output
file short or missing. The batch is then run again one instance at a time
to find the instances that fail, and each failing instance is reported
with its bias point and gets NaN values, never numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from circtune.data.dataset import QUANTITIES
from circtune.data.ngspice.netlist import (
    AC_FREQUENCY_HZ,
    AC_VALUES,
    DC_VALUES,
    MODEL_CARDS_FILE,
    MODELS_LINK,
    InstanceParams,
    Netlist,
    SweepGrid,
    build_netlist,
    build_y_netlist,
)
from circtune.data.ngspice.pdk import DeviceSpec, InstalledPdk, select_model_cards
from circtune.errors import DataError, ServiceError

logger = logging.getLogger(__name__)

NGSPICE = "ngspice"
DEFAULT_TIMEOUT_S = 600.0
# Largest difference between a voltage written by a dc sweep and its grid value.
_SWEEP_TOLERANCE_V = 1e-6
_FATAL_PATTERNS = re.compile(r"error on line|could not find|unknown (?:model|parameter|subckt)|fatal", re.IGNORECASE)
_FAILURE_PATTERNS = re.compile(
    r"iteration limit|no convergence|not converge|singular|timestep too small|failed|aborted", re.IGNORECASE
)


@dataclasses.dataclass(frozen=True)
class ConvergenceFailure:
    """An instance that ngspice could not solve at one bias point.

    Attributes:
        instance: Index of the instance in its batch.
        analysis: ``"dc"`` or ``"ac"``.
        vbs_v: Body-source voltage of the failing point.
        vgs_v: Gate-source voltage of the failing point.
        vds_v: Drain-source voltage of the failing point.
        message: ngspice's messages about the failure, possibly empty.
    """

    instance: int
    analysis: str
    vbs_v: float
    vgs_v: float
    vds_v: float
    message: str

    def describe(self) -> str:
        """Return the bias point and message as one phrase."""
        where = f"Vbs={self.vbs_v:g} V, Vgs={self.vgs_v:g} V, Vds={self.vds_v:g} V"
        return f"{self.analysis} analysis failed at {where}" + (f" ({self.message})" if self.message else "")


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Tables of K instances simulated together.

    Attributes:
        values: ``(K, P, B, G, D)`` quantities in ``QUANTITIES`` order; NaN
            for every instance listed in ``failures``.
        raw: ngspice's values: each of ``DC_VALUES`` as ``(K, B, G, D)`` and
            each of ``AC_VALUES`` as ``(K, G, D)`` (at the first Vbs).
        failures: One entry per failed instance.
    """

    values: np.ndarray
    raw: Mapping[str, np.ndarray]
    failures: tuple[ConvergenceFailure, ...]

    @property
    def ok(self) -> np.ndarray:
        """``(K,)`` bool, True where the instance has a complete table."""
        ok = np.ones(self.values.shape[0], dtype=bool)
        ok[[failure.instance for failure in self.failures]] = False
        return ok


def ngspice_executable() -> str:
    """Return the path of the ngspice program.

    Raises:
        ServiceError: If ngspice is not on PATH.
    """
    path = shutil.which(NGSPICE)
    if path is None:
        raise ServiceError(
            "ngspice was not found on PATH; install it (Debian/Ubuntu: 'apt-get install ngspice') "
            "or add its folder to PATH"
        )
    return path


@functools.lru_cache(maxsize=4)
def ngspice_version(executable: str) -> str:
    """Return ngspice's version, e.g. ``"39"``, from ``ngspice -v``.

    Raises:
        ServiceError: If the program does not run or prints no version.
    """
    try:
        completed = subprocess.run([executable, "-v"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ServiceError(f"cannot run '{executable} -v' ({error}); check the ngspice installation") from error
    match = re.search(r"ngspice-(\S+)", completed.stdout + completed.stderr)
    if match is None:
        raise ServiceError(f"'{executable} -v' printed no version; check the ngspice installation")
    return match.group(1)


def run_batch(
    device: DeviceSpec,
    corner: str,
    *,
    temperature_c: float,
    instances: Sequence[InstanceParams],
    grid: SweepGrid,
    installed: InstalledPdk,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    scratch_dir: Path | None = None,
) -> BatchResult:
    """Simulate K instances of one device in one ngspice run.

    When the batch has a convergence failure, each instance is simulated
    alone, so that only the instances that fail by themselves are dropped.

    Args:
        device: Catalogue device.
        corner: Process corner, one of the PDK's.
        temperature_c: Temperature in degrees Celsius.
        instances: The K instances.
        grid: Signed bias grid of shape ``(B, G, D)``.
        installed: The located PDK package.
        timeout_s: Wall-clock limit of one ngspice run in seconds.
        scratch_dir: Folder for the run folders; the system's temporary
            folder if None.

    Returns:
        The tables, raw ngspice values and failures of the K instances.

    Raises:
        ServiceError: If ngspice is missing, crashes or times out.
        DataError: If ngspice rejects the netlist or writes an unexpected
            sweep.
    """
    executable = ngspice_executable()
    run = functools.partial(
        _run_once,
        executable,
        device,
        corner,
        temperature_c,
        grid=grid,
        installed=installed,
        timeout_s=timeout_s,
        scratch_dir=scratch_dir,
    )
    raw, failure = run(instances)
    if failure is None:
        return BatchResult(values=map_quantities(raw), raw=raw, failures=())
    if len(instances) == 1:
        return _failed_result(raw, (dataclasses.replace(failure, instance=0),))

    logger.info(
        "%s %s %s at %g C: batch of %d instances failed (%s); simulating them one at a time",
        device.pdk,
        device.name,
        corner,
        temperature_c,
        len(instances),
        failure.describe(),
    )
    raws: list[Mapping[str, np.ndarray]] = []
    failures: list[ConvergenceFailure] = []
    for index, instance in enumerate(instances):
        single, single_failure = run([instance])
        raws.append(single)
        if single_failure is not None:
            failures.append(dataclasses.replace(single_failure, instance=index))
    merged = {name: np.concatenate([single[name] for single in raws]) for name in raws[0]}
    return _failed_result(merged, tuple(failures)) if failures else BatchResult(map_quantities(merged), merged, ())


def map_quantities(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """Map ngspice values to the ten BAG3 quantities (see the module table).

    Args:
        raw: Each of ``DC_VALUES`` as ``(K, B, G, D)`` and each of
            ``AC_VALUES`` as ``(K, G, D)``, measured at the first Vbs.

    Returns:
        ``(K, P, B, G, D)`` float64 values in ``QUANTITIES`` order.
    """
    omega = 2.0 * math.pi * AC_FREQUENCY_HZ
    c = {name: raw[name] for name in DC_VALUES}

    # overlap capacitances at the first Vbs, (K, 1, G, D) to broadcast over B
    overlap_gd = (c["cdg"][:, 0] - raw["im_y_dg"] / omega)[:, None]
    overlap_gs = (c["csg"][:, 0] - raw["im_y_sg"] / omega)[:, None]
    overlap_g = (raw["im_y_gg"] / omega - c["cgg"][:, 0])[:, None]

    cgd = -0.5 * (c["cgd"] + c["cdg"]) + overlap_gd
    cgs = -0.5 * (c["cgs"] + c["csg"]) + overlap_gs
    cds = -0.5 * (c["cds"] + c["csd"])
    quantities = {
        "ibias": c["i_drain"],
        "gm": c["gm"],
        "gds": c["gds"],
        "gb": c["gmbs"],
        "cgd": cgd,
        "cgs": cgs,
        "cds": cds,
        "cgb": c["cgg"] + overlap_g - cgd - cgs,
        "cdb": c["cdd"] + c["capbd"] + overlap_gd - cds - cgd,
        "csb": c["css"] + c["capbs"] + overlap_gs - cgs - cds,
    }
    return np.stack([quantities[name] for name in QUANTITIES], axis=1)  # (K, P, B, G, D)


def reference_point(
    device: DeviceSpec,
    corner: str,
    *,
    temperature_c: float,
    instance: InstanceParams,
    vbs_v: float,
    vgs_v: float,
    vds_v: float,
    installed: InstalledPdk,
    timeout_s: float = 60.0,
) -> dict[str, float]:
    """Extract the BAG3 quantities at one bias point from full Y parameters.

    This is BAG3's own recipe (see the module docstring) applied to an
    ngspice AC analysis with the gate, drain and source driven in turn, one
    copy of the instance each. It is slow and serves to check
    ``map_quantities``, which needs no AC analysis per grid point.

    Returns:
        The nine small-signal quantities (all but ``ibias``) by name.

    Raises:
        ServiceError: If ngspice is missing, crashes or times out.
        DataError: If the analysis does not converge.
    """
    cards = select_model_cards(installed, device, corner, [(instance.length_m, instance.width_m)])
    netlist = build_y_netlist(
        device,
        corner,
        temperature_c=temperature_c,
        instance=instance,
        vbs_v=vbs_v,
        vgs_v=vgs_v,
        vds_v=vds_v,
        include_model_cards=cards is not None,
    )
    with tempfile.TemporaryDirectory(prefix="circtune-ngspice-") as folder:
        log = _execute(ngspice_executable(), netlist.text, Path(folder), installed, timeout_s, device, cards)
        rows = _read_table(Path(folder) / netlist.ac_files[0][0], netlist.ac_columns)
    if rows is None or rows.shape[0] != 1:
        raise DataError(
            f"{device.name}: Y parameter analysis failed at Vbs={vbs_v}, Vgs={vgs_v}, Vds={vds_v} "
            f"({_failure_message(log) or 'no message from ngspice'}); choose another bias point"
        )
    # columns: frequency, then for drive g, d, s the real and imaginary parts of
    # the currents into g, d, s; y[(measured, driven)] is complex
    values = rows[0, 1:].reshape(3, 3, 2)  # (driven, measured, re/im)
    y = {
        (measured, driven): complex(*values[i, j]) for i, driven in enumerate("gds") for j, measured in enumerate("gds")
    }
    omega = 2.0 * math.pi * AC_FREQUENCY_HZ
    gm = (y["d", "g"].real - y["s", "g"].real) / 2.0
    gds = (y["d", "d"].real - y["s", "d"].real) / 2.0
    gb = (y["s", "s"].real - y["d", "s"].real) / 2.0 - gm - gds
    cgd = -(y["g", "d"].imag + y["d", "g"].imag) / (2.0 * omega)
    cgs = -(y["g", "s"].imag + y["s", "g"].imag) / (2.0 * omega)
    cds = -(y["d", "s"].imag + y["s", "d"].imag) / (2.0 * omega)
    return {
        "gm": gm,
        "gds": gds,
        "gb": gb,
        "cgd": cgd,
        "cgs": cgs,
        "cds": cds,
        "cgb": y["g", "g"].imag / omega - cgd - cgs,
        "cdb": y["d", "d"].imag / omega - cds - cgd,
        "csb": y["s", "s"].imag / omega - cgs - cds,
    }


def _run_once(
    executable: str,
    device: DeviceSpec,
    corner: str,
    temperature_c: float,
    instances: Sequence[InstanceParams],
    *,
    grid: SweepGrid,
    installed: InstalledPdk,
    timeout_s: float,
    scratch_dir: Path | None,
) -> tuple[dict[str, np.ndarray], ConvergenceFailure | None]:
    cards = select_model_cards(installed, device, corner, [(item.length_m, item.width_m) for item in instances])
    netlist = build_netlist(
        device,
        corner,
        temperature_c=temperature_c,
        instances=instances,
        grid=grid,
        include_model_cards=cards is not None,
    )
    with tempfile.TemporaryDirectory(prefix="circtune-ngspice-", dir=scratch_dir) as folder:
        log = _execute(executable, netlist.text, Path(folder), installed, timeout_s, device, cards)
        return _collect(netlist, Path(folder), grid, log, device)


def _execute(
    executable: str,
    text: str,
    folder: Path,
    installed: InstalledPdk,
    timeout_s: float,
    device: DeviceSpec,
    model_cards: str | None,
) -> str:
    """Run ``ngspice -b`` on a netlist in ``folder`` and return its output.

    ngspice 39 exits with status 1 after a control block that runs only
    ``dc``/``ac`` analyses, even when all succeeded, so a run is judged by
    the files it wrote. HOME points at the run folder, so no user
    ``.spiceinit`` changes the simulation.
    """
    (folder / MODELS_LINK).symlink_to(installed.models_dir, target_is_directory=True)
    if model_cards is not None:
        (folder / MODEL_CARDS_FILE).write_text(model_cards, encoding="utf-8")
    (folder / "netlist.sp").write_text(text, encoding="utf-8")
    environment = dict(os.environ, HOME=str(folder), OMP_NUM_THREADS="1")
    try:
        completed = subprocess.run(
            [executable, "-b", "netlist.sp"],
            cwd=folder,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ServiceError(
            f"ngspice timed out after {timeout_s:g} s on {device.pdk} {device.name}; "
            "raise the timeout or put fewer instances in one run"
        ) from error
    except OSError as error:
        raise ServiceError(f"cannot run {executable} ({error}); check the ngspice installation") from error
    if completed.returncode < 0:
        raise ServiceError(f"ngspice was killed by signal {-completed.returncode} on {device.pdk} {device.name}")
    log = completed.stdout + completed.stderr
    fatal = [line.strip() for line in log.splitlines() if _FATAL_PATTERNS.search(line)]
    if fatal:
        raise DataError(
            f"ngspice rejected the netlist of {device.pdk} {device.name}: {fatal[0]}; "
            "check that the installed PDK package matches the catalogue"
        )
    return log


def _collect(
    netlist: Netlist, folder: Path, grid: SweepGrid, log: str, device: DeviceSpec
) -> tuple[dict[str, np.ndarray], ConvergenceFailure | None]:
    """Read the AC and DC files of a run into raw arrays.

    Returns:
        Raw arrays (NaN where a point is missing) and the first failure.
    """
    n_instances = netlist.n_instances
    n_vbs, n_vgs, n_vds = grid.shape
    raw = {name: np.full((n_instances, n_vbs, n_vgs, n_vds), np.nan) for name in DC_VALUES}
    raw |= {name: np.full((n_instances, n_vgs, n_vds), np.nan) for name in AC_VALUES}
    failures: list[ConvergenceFailure] = []
    message = _failure_message(log)

    for g, d in np.ndindex(n_vgs, n_vds):
        rows = _read_table(folder / netlist.ac_files[g][d], netlist.ac_columns)
        if rows is None or rows.shape[0] != 1 or not np.all(np.isfinite(rows)):
            failures.append(ConvergenceFailure(-1, "ac", grid.vbs_v[0], grid.vgs_v[g], grid.vds_v[d], message))
            continue
        per_instance = rows[0, 1:].reshape(n_instances, len(AC_VALUES))  # (K, 3)
        for position, name in enumerate(AC_VALUES):
            raw[name][:, g, d] = per_instance[:, position]

    for b, vbs in enumerate(grid.vbs_v):
        rows = _read_table(folder / netlist.dc_files[b], netlist.dc_columns)
        if rows is not None and rows.shape[0] > n_vgs * n_vds:
            raise DataError(
                f"ngspice swept {rows.shape[0]} points for {device.pdk} {device.name}, but the grid has "
                f"{n_vgs * n_vds}; use a grid whose Vgs and Vds steps are uniform"
            )
        n_good = _count_good_rows(rows, n_vgs * n_vds)
        if n_good < n_vgs * n_vds:
            g, d = divmod(n_good, n_vds)
            failures.append(ConvergenceFailure(-1, "dc", vbs, grid.vgs_v[g], grid.vds_v[d], message))
        if n_good == 0 or rows is None:
            continue
        _check_sweep(rows[:n_good], grid, device)
        columns = rows[:n_good, 2:].reshape(n_good, n_instances, len(DC_VALUES))  # (rows, K, values)
        for position, name in enumerate(DC_VALUES):
            table = np.full((n_instances, n_vgs * n_vds), np.nan)  # (K, G*D), Vds fastest
            table[:, :n_good] = columns[:, :, position].T
            raw[name][:, b] = table.reshape(n_instances, n_vgs, n_vds)
    return raw, (failures[0] if failures else None)


def _read_table(path: Path, n_columns: int) -> np.ndarray | None:
    """Read a ``wrdata`` file (one header line) as ``(rows, n_columns)``, or None if missing."""
    if not path.is_file():
        return None
    try:
        rows = np.loadtxt(path, skiprows=1, ndmin=2)
    except ValueError as error:
        raise DataError(f"{path.name}: cannot read ngspice output ({error}); check the free disk space") from error
    if rows.size and rows.shape[1] != n_columns:
        raise DataError(f"{path.name}: ngspice wrote {rows.shape[1]} columns, expected {n_columns}")
    return rows.reshape(-1, n_columns)


def _count_good_rows(rows: np.ndarray | None, n_expected: int) -> int:
    """Return how many leading rows are present and finite."""
    if rows is None:
        return 0
    finite = np.all(np.isfinite(rows[:n_expected]), axis=1)
    return int(np.argmin(finite)) if not finite.all() else int(finite.size)


def _check_sweep(rows: np.ndarray, grid: SweepGrid, device: DeviceSpec) -> None:
    """Check that a dc sweep visited the grid points in order, Vds fastest."""
    n_rows = rows.shape[0]
    expected_vds = np.tile(grid.vds_v, len(grid.vgs_v))[:n_rows]
    expected_vgs = np.repeat(grid.vgs_v, len(grid.vds_v))[:n_rows]
    if not (
        np.allclose(rows[:, 0], expected_vds, atol=_SWEEP_TOLERANCE_V, rtol=0.0)
        and np.allclose(rows[:, 1], expected_vgs, atol=_SWEEP_TOLERANCE_V, rtol=0.0)
    ):
        raise DataError(
            f"ngspice swept other voltages than the grid for {device.pdk} {device.name}; "
            "use a grid whose Vgs and Vds steps are uniform"
        )


def _failure_message(log: str) -> str:
    lines = dict.fromkeys(line.strip() for line in log.splitlines() if _FAILURE_PATTERNS.search(line))
    text = "; ".join(lines)
    return text if len(text) <= 300 else text[:297] + "..."


def _failed_result(raw: Mapping[str, np.ndarray], failures: tuple[ConvergenceFailure, ...]) -> BatchResult:
    values = map_quantities(raw)
    values[[failure.instance for failure in failures]] = np.nan
    return BatchResult(values=values, raw=raw, failures=failures)
