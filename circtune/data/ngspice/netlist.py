"""Build ngspice netlists that characterize a batch of transistor instances.

A netlist contains K instances of one catalogue device in parallel between
shared ideal sources ``vd``, ``vg``, ``vs`` (0 V) and ``vb``, so every
instance sees the same bias and the instances stay independent. Each
instance has 0 V sources in series with its drain, gate and source
(``vid<k>``, ``vig<k>``, ``vis<k>``) that measure its own terminal currents.

Its ``.control`` block runs two passes:

1. AC: at the first Vbs value and every (Vgs, Vds) pair of the grid, one
   ``ac`` point at ``AC_FREQUENCY_HZ`` with the gate driven by 1 V. The
   imaginary parts of the three measured currents give the gate column of
   the admittance matrix. One file ``ac_<g>_<d>.txt`` per bias point.
2. DC: for each Vbs value, one ``dc`` sweep of Vds (fastest) and Vgs that
   saves the drain current and the BSIM4 operating-point values
   ``@m<k>[...]``. One file ``dc_<b>.txt`` per Vbs value.

Only names from the device catalogue that match strict patterns, and
numbers that this module formats, go into a netlist; the model files are
reached through a link named ``pdk`` in the run folder, so no file system
path is written either.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Sequence

import numpy as np

from circtune.data.ngspice.pdk import PDKS, DeviceSpec, PdkSpec
from circtune.errors import ConfigError

AC_FREQUENCY_HZ = 1.0e6
MODELS_LINK = "pdk"
# File in the run folder with the model statements a run needs (see
# pdk.select_model_cards); netlists include it in place of the corner library.
MODEL_CARDS_FILE = "models.spice"
# Operating-point values saved per instance in the DC pass, in file order.
# "i_drain" is the current of the drain ammeter, the rest are BSIM4 names.
DC_VALUES: tuple[str, ...] = (
    "i_drain", "gm", "gds", "gmbs",
    "cgg", "cgd", "cgs", "cgb", "cdg", "cdd", "cds", "csg", "csd", "css",
    "capbd", "capbs",
)  # fmt: skip
# Imaginary parts of the currents into gate, drain and source per volt of
# gate drive, saved per instance in the AC pass, in file order.
AC_VALUES: tuple[str, ...] = ("im_y_gg", "im_y_dg", "im_y_sg")
# Simulator options: a small gmin keeps leakage-level currents free of the
# default 1e-12 S shunt; tight tolerances keep pA currents and aF charges exact.
SIMULATOR_OPTIONS: tuple[tuple[str, float], ...] = (
    ("gmin", 1e-15),
    ("abstol", 1e-15),
    ("reltol", 1e-5),
    ("itl1", 500.0),
    ("itl2", 500.0),
)

_IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_UNIFORM_STEP_RTOL = 1e-6


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    """Bias grid of one table, in volts, source at 0 V.

    Attributes:
        vbs_v: The B body-source voltages; any strictly monotonic values.
        vgs_v: The G gate-source voltages, uniformly spaced (G >= 2).
        vds_v: The D drain-source voltages, uniformly spaced (D >= 2).
    """

    vbs_v: tuple[float, ...]
    vgs_v: tuple[float, ...]
    vds_v: tuple[float, ...]

    def __post_init__(self) -> None:
        for name, minimum in (("vbs_v", 1), ("vgs_v", 2), ("vds_v", 2)):
            values = tuple(float(value) for value in getattr(self, name))
            object.__setattr__(self, name, values)
            if len(values) < minimum:
                raise ConfigError(f"grid axis {name} has {len(values)} points; give at least {minimum}")
            if not all(math.isfinite(value) for value in values):
                raise ConfigError(f"grid axis {name} contains NaN or infinite voltages: {values}")
            steps = np.diff(values)
            if len(values) > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
                raise ConfigError(f"grid axis {name} is not strictly monotonic: {values}")
        for name in ("vgs_v", "vds_v"):
            steps = np.diff(getattr(self, name))
            if not np.allclose(steps, steps[0], rtol=_UNIFORM_STEP_RTOL, atol=0.0):
                raise ConfigError(f"grid axis {name} is not uniformly spaced; a dc sweep needs a constant step")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size ``(B, G, D)``."""
        return (len(self.vbs_v), len(self.vgs_v), len(self.vds_v))


@dataclasses.dataclass(frozen=True)
class InstanceParams:
    """Geometry and mismatch of one transistor instance.

    Attributes:
        length_m: Drawn channel length in metres.
        width_m: Drawn channel width in metres.
        delvto_v: Threshold shift added by BSIM4's ``delvto``, in volts.
        mulu0: Low-field mobility factor, BSIM4's ``mulu0`` (1 is nominal).
    """

    length_m: float
    width_m: float
    delvto_v: float = 0.0
    mulu0: float = 1.0

    def __post_init__(self) -> None:
        for name in ("length_m", "width_m", "mulu0"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"instance {name} must be a finite positive number, but got {value!r}")
        if not _is_real(self.delvto_v) or not math.isfinite(self.delvto_v):
            raise ConfigError(f"instance delvto_v must be a finite number, but got {self.delvto_v!r}")


@dataclasses.dataclass(frozen=True)
class Netlist:
    """A netlist and the layout of the files its control block writes.

    Attributes:
        text: The netlist, ready for ``ngspice -b``.
        n_instances: K, the number of instances.
        dc_files: One file per Vbs value, in grid order.
        ac_files: ``ac_files[g][d]``, one file per (Vgs, Vds) pair.
        dc_columns: Number of columns of a DC file: the Vds scale, v(g),
            then ``DC_VALUES`` for each instance in turn.
        ac_columns: Number of columns of an AC file: the frequency, then
            ``AC_VALUES`` for each instance in turn.
    """

    text: str
    n_instances: int
    dc_files: tuple[str, ...]
    ac_files: tuple[tuple[str, ...], ...]
    dc_columns: int
    ac_columns: int


def format_number(value: object, field: str) -> str:
    """Format a finite real number for a netlist, exactly and without units.

    Raises:
        ConfigError: If ``value`` is not a finite real number.
    """
    if not _is_real(value):
        raise ConfigError(f"{field} must be a real number, but got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ConfigError(f"{field} must be finite, but got {number!r}")
    return repr(number)


def check_name(name: object, field: str, *, pattern: re.Pattern[str] = _IDENTIFIER_PATTERN) -> str:
    """Return ``name`` if it is a string matching ``pattern``.

    Raises:
        ConfigError: If it is not.
    """
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise ConfigError(f"{field} {name!r} is not a valid netlist name; it must match {pattern.pattern}")
    return name


def build_netlist(
    device: DeviceSpec,
    corner: str,
    *,
    temperature_c: float,
    instances: Sequence[InstanceParams],
    grid: SweepGrid,
    include_model_cards: bool = False,
) -> Netlist:
    """Build the characterization netlist of K instances of one device.

    Args:
        device: A device of the catalogue (``pdk.PDKS``); other objects are
            rejected, even with the same fields.
        corner: One of the PDK's corners.
        temperature_c: Simulation temperature in degrees Celsius.
        instances: The K instances, all of ``device``.
        grid: The bias grid, signed for the device's polarity.
        include_model_cards: Include ``MODEL_CARDS_FILE`` from the run
            folder instead of the PDK's corner library.

    Returns:
        The netlist text and the layout of its output files.

    Raises:
        ConfigError: If a name is not from the catalogue or fails its
            pattern, or a number is not finite.
    """
    pdk = _catalogue_pdk(device)
    if corner not in pdk.corner_sections:
        raise ConfigError(f"unknown corner {corner!r} for PDK '{pdk.name}'; use one of {list(pdk.corner_sections)}")
    if not instances:
        raise ConfigError("no instances to simulate; give at least one")
    model = check_name(device.model, "model name")
    lines = _header_lines(pdk, device, corner, temperature_c, include_model_cards)
    lines += _source_lines()
    for index, instance in enumerate(instances):
        lines += _instance_lines(index, model, instance)

    dc_files = tuple(f"dc_{b:03d}.txt" for b in range(len(grid.vbs_v)))
    ac_files = tuple(tuple(f"ac_{g:03d}_{d:03d}.txt" for d in range(len(grid.vds_v))) for g in range(len(grid.vgs_v)))
    lines.append(".control")
    lines += ["set wr_singlescale", "set wr_vecnames"]
    lines += _ac_pass(len(instances), grid, ac_files)
    lines += _dc_pass(len(instances), grid, dc_files)
    lines += [".endc", ".end", ""]
    return Netlist(
        text="\n".join(lines),
        n_instances=len(instances),
        dc_files=dc_files,
        ac_files=ac_files,
        dc_columns=2 + len(DC_VALUES) * len(instances),
        ac_columns=1 + len(AC_VALUES) * len(instances),
    )


def build_y_netlist(
    device: DeviceSpec,
    corner: str,
    *,
    temperature_c: float,
    instance: InstanceParams,
    vbs_v: float,
    vgs_v: float,
    vds_v: float,
    include_model_cards: bool = False,
) -> Netlist:
    """Build a netlist that measures the 3-port Y parameters at one bias point.

    Three copies of the instance, each with its own sources, have the gate,
    the drain or the source driven by a 1 V AC source. One ``ac`` point
    writes ``ac_000_000.txt``: the frequency, then for each driven terminal
    (g, d, s) the real and imaginary parts of the currents into g, d and s.

    Raises:
        ConfigError: As ``build_netlist``.
    """
    pdk = _catalogue_pdk(device)
    if corner not in pdk.corner_sections:
        raise ConfigError(f"unknown corner {corner!r} for PDK '{pdk.name}'; use one of {list(pdk.corner_sections)}")
    model = check_name(device.model, "model name")
    bias = {"d": vds_v, "g": vgs_v, "s": 0.0, "b": vbs_v}
    lines = _header_lines(pdk, device, corner, temperature_c, include_model_cards)
    currents = []
    for driven in "gds":
        for terminal, voltage in bias.items():
            drive = " ac 1" if terminal == driven else ""
            lines.append(
                f"v{terminal}{driven} n{terminal}{driven} 0 dc {format_number(voltage, 'bias voltage')}{drive}"
            )
        for terminal in "gds":
            lines.append(f"vi{terminal}{driven} n{terminal}{driven} m{terminal}{driven} dc 0")
            currents.append(f"i(vi{terminal}{driven})")
        lines.append(f"m{driven} md{driven} mg{driven} ms{driven} nb{driven} {model} {_instance_parameters(instance)}")
    frequency = format_number(AC_FREQUENCY_HZ, "AC frequency")
    parts = " ".join(f"real({current}) imag({current})" for current in currents)
    lines += [".control", "set wr_singlescale", "set wr_vecnames", f"save {' '.join(currents)}"]
    lines += [f"ac lin 1 {frequency} {frequency}", f"wrdata ac_000_000.txt {parts}", ".endc", ".end", ""]
    return Netlist(
        text="\n".join(lines), n_instances=1, dc_files=(), ac_files=(("ac_000_000.txt",),), dc_columns=0, ac_columns=19
    )


def _header_lines(
    pdk: PdkSpec, device: DeviceSpec, corner: str, temperature_c: float, include_model_cards: bool
) -> list[str]:
    """Return the title, model library and option lines of a netlist."""
    model = check_name(device.model, "model name")
    section = check_name(pdk.corner_sections[corner], "library section")
    lines = [f"* circtune characterization of {model}, corner {section}"]
    if include_model_cards:
        lines.append(f'.include "{MODEL_CARDS_FILE}"')
    else:
        lib_file = check_name(pdk.libraries[device.library].lib_file, "library file", pattern=_FILE_NAME_PATTERN)
        includes = [check_name(name, "include file", pattern=_FILE_NAME_PATTERN) for name in pdk.includes]
        lines += [f'.include "{MODELS_LINK}/{name}"' for name in includes]
        lines.append(f'.lib "{MODELS_LINK}/{lib_file}" {section}')
    options = " ".join(f"{key}={format_number(value, key)}" for key, value in SIMULATOR_OPTIONS)
    lines.append(f".option temp={format_number(temperature_c, 'temperature')} {options}")
    return lines


def _catalogue_pdk(device: DeviceSpec) -> PdkSpec:
    pdk = PDKS.get(device.pdk) if isinstance(device, DeviceSpec) else None
    if pdk is None or pdk.devices.get(device.name) != device:
        raise ConfigError(
            f"device {device!r} is not in the catalogue; get it with circtune.data.ngspice.pdk.get_device"
        )
    return pdk


def _source_lines() -> list[str]:
    return ["vd d 0 dc 0", "vg g 0 dc 0 ac 1", "vs s 0 dc 0", "vb b 0 dc 0"]


def _instance_parameters(instance: InstanceParams) -> str:
    return (
        f"l={format_number(instance.length_m, 'length')} w={format_number(instance.width_m, 'width')} "
        f"delvto={format_number(instance.delvto_v, 'delvto')} mulu0={format_number(instance.mulu0, 'mulu0')}"
    )


def _instance_lines(index: int, model: str, instance: InstanceParams) -> list[str]:
    geometry = _instance_parameters(instance)
    return [
        f"vid{index} d d{index} dc 0",
        f"vig{index} g g{index} dc 0",
        f"vis{index} s s{index} dc 0",
        f"m{index} d{index} g{index} s{index} b {model} {geometry}",
    ]


def _ac_pass(n_instances: int, grid: SweepGrid, ac_files: tuple[tuple[str, ...], ...]) -> list[str]:
    currents = [f"i(vi{terminal}{k})" for k in range(n_instances) for terminal in ("g", "d", "s")]
    frequency = format_number(AC_FREQUENCY_HZ, "AC frequency")
    lines = [f"save {' '.join(currents)}", f"alter vb = {format_number(grid.vbs_v[0], 'vbs')}"]
    for g, vgs in enumerate(grid.vgs_v):
        lines.append(f"alter vg = {format_number(vgs, 'vgs')}")
        for d, vds in enumerate(grid.vds_v):
            lines.append(f"alter vd = {format_number(vds, 'vds')}")
            lines.append(f"ac lin 1 {frequency} {frequency}")
            lines.append(f"wrdata {ac_files[g][d]} {' '.join(f'imag({current})' for current in currents)}")
            lines.append("destroy all")
    return lines


def _dc_pass(n_instances: int, grid: SweepGrid, dc_files: tuple[str, ...]) -> list[str]:
    vectors = ["v(g)"]
    for k in range(n_instances):
        vectors.append(f"i(vid{k})")
        vectors += [f"@m{k}[{name}]" for name in DC_VALUES[1:]]
    vds_sweep = _sweep_arguments(grid.vds_v)
    vgs_sweep = _sweep_arguments(grid.vgs_v)
    lines = ["delete all", f"save {' '.join(vectors)}"]
    for b, vbs in enumerate(grid.vbs_v):
        lines.append(f"alter vb = {format_number(vbs, 'vbs')}")
        lines.append(f"dc vd {vds_sweep} vg {vgs_sweep}")
        lines.append(f"wrdata {dc_files[b]} {' '.join(vectors)}")
        lines.append("destroy all")
    return lines


def _sweep_arguments(values: tuple[float, ...]) -> str:
    """Return ``start stop step`` of a dc sweep that hits every grid value once.

    The stop lies a quarter step past the last value, so rounding in
    ngspice's accumulated sweep value can neither drop the last point nor
    add one.
    """
    step = (values[-1] - values[0]) / (len(values) - 1)
    stop = values[-1] + 0.25 * step
    return " ".join(format_number(value, "sweep bound") for value in (values[0], stop, step))


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
