"""Device parameter tables of the synthetic technology, and Pelgrom mismatch.

The synthetic technology "circtune-ekv" resembles a 130 nm bulk CMOS process
with a 1.2 V core oxide (flavors lvt, svt, hvt) and a 5 V thick oxide (hv).
Its magnitudes match public 130 nm silicon. Measured on the model at tt and
27 C:

* Cox 11 fF/um^2 (hv 3 fF/um^2).
* Minimum-length svt NMOS drive 0.43 mA/um at 1.2 V, PMOS 2.3 times weaker.
* Subthreshold swing 79-80 mV/dec, 85 mV/dec for hv.
* Extracted Vt falling 0.64-0.71 mV/K: the 0.63 mV/K parameter plus the
  effect of the mobility loss on the extraction.
* DIBL 67 mV/V at minimum length and 23 mV/V at five times minimum length.

By construction, mobility times Cox falls as T^-1.75, lvt and hvt sit 0.1 V
below and above svt, and the corners move Vt by 0.07 V.

All values are in the NMOS frame: PMOS thresholds are magnitudes. Shape
legend: N instances; ``instance_parameters`` returns tensors of shape (N,).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from circtune.data.dataset import CORNERS, FLAVORS, POLARITIES
from circtune.data.synthetic.physics import ModelParameters
from circtune.errors import ConfigError

TECHNOLOGY = "circtune-ekv"
NOMINAL_TEMPERATURE_C = 27.0
_KELVIN_OFFSET = 273.15
_BOLTZMANN_OVER_CHARGE_V_PER_K = 8.617333262e-5

# Corner direction per polarity: -1 fast (lower |Vt|, higher mobility), +1 slow.
_CORNER_DIRECTIONS: dict[str, dict[str, int]] = {
    "tt": {"n": 0, "p": 0},
    "ff": {"n": -1, "p": -1},
    "ss": {"n": 1, "p": 1},
    "fs": {"n": -1, "p": 1},
    "sf": {"n": 1, "p": -1},
}


@dataclasses.dataclass(frozen=True)
class DeviceType:
    """Nominal parameters of one flavor and polarity at 27 C, in the NMOS frame.

    Attributes:
        rated_voltage_v: Supply voltage, where sweeps of Vgs and Vds end.
        min_length_um: Minimum drawn channel length.
        threshold_v: Long-channel |Vt| at Vsb = 0, tt corner, 27 C.
        body_factor_sqrt_v: Body-effect coefficient gamma.
        surface_potential_v: Surface potential at threshold (2 phi_F).
        trap_factor: Interface-trap over oxide capacitance; sets the slope
            factor together with gamma.
        mobility_cm2_per_vs: Low-field effective mobility.
        oxide_capacitance_ff_per_um2: Gate oxide capacitance per area.
        mobility_degradation_per_v: Vertical-field mobility degradation theta.
        saturation_velocity_m_per_s: Carrier saturation velocity.
        dibl_long_v_per_v: DIBL of a long channel.
        dibl_short_v_per_v: Extra DIBL at minimum length; falls as
            ``(L_min / L)^2``.
        clm_um_per_v: Channel-length modulation lambda times L.
        overlap_ff_per_um: Gate-drain (and gate-source) overlap per width.
        gate_bulk_overlap_ff_per_um: Gate-bulk overlap per length.
        junction_ff_per_um: Zero-bias drain (and source) junction
            capacitance per width, area and sidewall together.
        junction_potential_v: Junction built-in potential.
        junction_grading: Junction grading coefficient.
        vt_temperature_v_per_k: dVt/dT, negative.
        mobility_temperature_exponent: Exponent of T in mobility times Cox.
        corner_vt_shift_v: |Vt| shift of a slow corner (fast: negative).
        corner_mobility_shift: Relative mobility loss of a slow corner.
    """

    rated_voltage_v: float
    min_length_um: float
    threshold_v: float
    body_factor_sqrt_v: float
    surface_potential_v: float
    trap_factor: float
    mobility_cm2_per_vs: float
    oxide_capacitance_ff_per_um2: float
    mobility_degradation_per_v: float
    saturation_velocity_m_per_s: float
    dibl_long_v_per_v: float
    dibl_short_v_per_v: float
    clm_um_per_v: float
    overlap_ff_per_um: float
    gate_bulk_overlap_ff_per_um: float
    junction_ff_per_um: float
    junction_potential_v: float
    junction_grading: float
    vt_temperature_v_per_k: float
    mobility_temperature_exponent: float
    corner_vt_shift_v: float
    corner_mobility_shift: float

    def __post_init__(self) -> None:
        positive = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in ("vt_temperature_v_per_k", "mobility_temperature_exponent")
        }
        negative = [name for name, value in positive.items() if value < 0]
        if negative or not 0 < self.junction_grading < 1:
            raise ValueError(f"device type has negative values in {negative} or grading outside (0, 1)")


_CORE_NMOS = DeviceType(
    rated_voltage_v=1.2,
    min_length_um=0.13,
    threshold_v=0.42,
    body_factor_sqrt_v=0.35,
    surface_potential_v=0.85,
    trap_factor=0.11,
    mobility_cm2_per_vs=235.0,
    oxide_capacitance_ff_per_um2=11.0,
    mobility_degradation_per_v=0.3,
    saturation_velocity_m_per_s=1.0e5,
    dibl_long_v_per_v=0.012,
    dibl_short_v_per_v=0.04,
    clm_um_per_v=0.02,
    overlap_ff_per_um=0.25,
    gate_bulk_overlap_ff_per_um=0.05,
    junction_ff_per_um=0.6,
    junction_potential_v=0.8,
    junction_grading=0.4,
    vt_temperature_v_per_k=-0.63e-3,
    mobility_temperature_exponent=-1.75,
    corner_vt_shift_v=0.07,
    corner_mobility_shift=0.08,
)
_CORE_PMOS = dataclasses.replace(
    _CORE_NMOS,
    threshold_v=0.40,
    body_factor_sqrt_v=0.30,
    trap_factor=0.14,
    mobility_cm2_per_vs=80.0,
    mobility_degradation_per_v=0.2,
    saturation_velocity_m_per_s=0.8e5,
    junction_ff_per_um=0.7,
)
_HV_NMOS = DeviceType(
    rated_voltage_v=5.0,
    min_length_um=0.5,
    threshold_v=0.70,
    body_factor_sqrt_v=0.50,
    surface_potential_v=0.85,
    trap_factor=0.10,
    mobility_cm2_per_vs=300.0,
    oxide_capacitance_ff_per_um2=3.0,
    mobility_degradation_per_v=0.35,
    saturation_velocity_m_per_s=1.0e5,
    dibl_long_v_per_v=0.005,
    dibl_short_v_per_v=0.015,
    clm_um_per_v=0.02,
    overlap_ff_per_um=0.3,
    gate_bulk_overlap_ff_per_um=0.03,
    junction_ff_per_um=0.8,
    junction_potential_v=0.8,
    junction_grading=0.33,
    vt_temperature_v_per_k=-0.63e-3,
    mobility_temperature_exponent=-1.75,
    corner_vt_shift_v=0.07,
    corner_mobility_shift=0.08,
)
_HV_PMOS = dataclasses.replace(
    _HV_NMOS,
    threshold_v=0.75,
    body_factor_sqrt_v=0.45,
    trap_factor=0.12,
    mobility_cm2_per_vs=100.0,
    mobility_degradation_per_v=0.2,
    saturation_velocity_m_per_s=0.8e5,
    junction_ff_per_um=0.9,
)
_FLAVOR_VT_OFFSETS_V: dict[str, float] = {"lvt": -0.10, "svt": 0.0, "hvt": 0.10}

DEVICE_TYPES: dict[tuple[str, str], DeviceType] = {
    **{
        (flavor, polarity): dataclasses.replace(base, threshold_v=base.threshold_v + offset_v)
        for flavor, offset_v in _FLAVOR_VT_OFFSETS_V.items()
        for polarity, base in (("n", _CORE_NMOS), ("p", _CORE_PMOS))
    },
    ("hv", "n"): _HV_NMOS,
    ("hv", "p"): _HV_PMOS,
}


def device_type(flavor: str, polarity: str) -> DeviceType:
    """Return the nominal parameters of a flavor and polarity.

    Raises:
        ConfigError: If the flavor or polarity is unknown.
    """
    if (flavor, polarity) not in DEVICE_TYPES:
        raise ConfigError(
            f"unknown device flavor {flavor!r} or polarity {polarity!r}; use a flavor of {list(FLAVORS)} "
            f"and a polarity of {list(POLARITIES)}"
        )
    return DEVICE_TYPES[(flavor, polarity)]


def device_name(flavor: str, polarity: str) -> str:
    """Return the device model name, e.g. ``"nmos_lvt"`` or ``"pmos_hv"``."""
    return f"{polarity}mos_{flavor}"


def corner_direction(corner: str, polarity: str) -> int:
    """Return -1 for a fast, 0 for a typical and +1 for a slow device of this polarity.

    Raises:
        ConfigError: If the corner is unknown.
    """
    if corner not in _CORNER_DIRECTIONS:
        raise ConfigError(f"unknown corner {corner!r}; use one of {list(CORNERS)}")
    return _CORNER_DIRECTIONS[corner][polarity]


def pelgrom_sigmas(
    width_m: np.ndarray, length_m: np.ndarray, *, avt_mv_um: float, abeta_pct_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return Pelgrom standard deviations of Vt and of the relative beta.

    ``sigma(dVt) = A_VT / sqrt(W L)`` and ``sigma(dbeta / beta) = A_beta / sqrt(W L)``.

    Args:
        width_m: ``(N,)`` channel widths in metres.
        length_m: ``(N,)`` channel lengths in metres.
        avt_mv_um: A_VT in mV um.
        abeta_pct_um: A_beta in % um.

    Returns:
        ``(N,)`` sigma of the threshold shift in volts and ``(N,)`` sigma
        of the relative beta change (a fraction).
    """
    root_area_um = np.sqrt(np.asarray(width_m) * 1e6 * np.asarray(length_m) * 1e6)
    return avt_mv_um * 1e-3 / root_area_um, abeta_pct_um * 1e-2 / root_area_um


def draw_mismatch(
    rng: np.random.Generator, sigma_vt_v: np.ndarray, sigma_beta: np.ndarray, draw_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Draw Pelgrom threshold shifts and beta factors, with draw 0 as the nominal device.

    Args:
        rng: Source of the normal deviates; two are taken per instance, in
            instance order, whether or not the instance is nominal.
        sigma_vt_v: ``(N,)`` threshold sigma in volts.
        sigma_beta: ``(N,)`` relative beta sigma.
        draw_index: ``(N,)`` mismatch draw index per instance.

    Returns:
        ``(N,)`` threshold shifts in volts (positive: higher |Vt|) and
        ``(N,)`` beta factors ``exp(sigma_beta * z)``, which stay positive.
    """
    deviates = rng.standard_normal((len(draw_index), 2))  # (N, 2)
    nominal = np.asarray(draw_index) == 0
    delta_vt_v = np.where(nominal, 0.0, sigma_vt_v * deviates[:, 0])
    beta_factor = np.where(nominal, 1.0, np.exp(sigma_beta * deviates[:, 1]))
    return delta_vt_v, beta_factor


def instance_parameters(
    flavor: Sequence[str] | np.ndarray,
    polarity: Sequence[str] | np.ndarray,
    *,
    corner: Sequence[str] | np.ndarray,
    temperature_c: np.ndarray,
    length_m: np.ndarray,
    width_m: np.ndarray,
    delta_vt_v: np.ndarray,
    beta_factor: np.ndarray,
) -> ModelParameters:
    """Build model parameters of N device instances.

    Args:
        flavor: ``(N,)`` flavor names.
        polarity: ``(N,)`` ``"n"`` or ``"p"``.
        corner: ``(N,)`` corner names.
        temperature_c: ``(N,)`` temperatures in degrees Celsius.
        length_m: ``(N,)`` channel lengths in metres.
        width_m: ``(N,)`` channel widths in metres.
        delta_vt_v: ``(N,)`` mismatch threshold shifts in volts.
        beta_factor: ``(N,)`` mismatch factors on mobility times Cox.

    Returns:
        Parameters in the NMOS frame, each a float64 tensor of shape (N,).

    Raises:
        ConfigError: If a flavor, polarity or corner is unknown.
    """
    types = [device_type(name, pol) for name, pol in zip(flavor, polarity, strict=True)]
    directions = np.array([corner_direction(name, pol) for name, pol in zip(corner, polarity, strict=True)])

    def column(name: str) -> np.ndarray:
        return np.array([getattr(entry, name) for entry in types], dtype=np.float64)

    length_um = np.asarray(length_m, dtype=np.float64) * 1e6
    width_um = np.asarray(width_m, dtype=np.float64) * 1e6
    temperature_k = np.asarray(temperature_c, dtype=np.float64) + _KELVIN_OFFSET
    nominal_k = NOMINAL_TEMPERATURE_C + _KELVIN_OFFSET

    threshold_v = (
        column("threshold_v")
        + column("vt_temperature_v_per_k") * (temperature_k - nominal_k)
        + directions * column("corner_vt_shift_v")
        + delta_vt_v
    )
    mobility_m2_per_vs = (
        column("mobility_cm2_per_vs")
        * 1e-4
        * (temperature_k / nominal_k) ** column("mobility_temperature_exponent")
        * (1.0 - directions * column("corner_mobility_shift"))
        * beta_factor
    )
    cox_f_per_um2 = column("oxide_capacitance_ff_per_um2") * 1e-15
    # velocity saturation as a second degradation term 1 / (E_sat L), E_sat = 2 v_sat / mu
    saturation_per_v = (
        column("mobility_cm2_per_vs") * 1e-4 / (2.0 * column("saturation_velocity_m_per_s") * length_um * 1e-6)
    )
    dibl_v_per_v = (
        column("dibl_long_v_per_v") + column("dibl_short_v_per_v") * (column("min_length_um") / length_um) ** 2
    )

    values = {
        "threshold_v": threshold_v,
        "body_factor_sqrt_v": column("body_factor_sqrt_v"),
        "surface_potential_v": column("surface_potential_v"),
        "trap_factor": column("trap_factor"),
        "beta_a_per_v2": mobility_m2_per_vs * cox_f_per_um2 * 1e12 * width_um / length_um,
        "thermal_voltage_v": _BOLTZMANN_OVER_CHARGE_V_PER_K * temperature_k,
        "degradation_per_v": column("mobility_degradation_per_v") + saturation_per_v,
        "dibl_v_per_v": dibl_v_per_v,
        "clm_per_v": column("clm_um_per_v") / length_um,
        "gate_capacitance_f": cox_f_per_um2 * width_um * length_um,
        "overlap_capacitance_f": column("overlap_ff_per_um") * 1e-15 * width_um,
        "gate_bulk_overlap_f": column("gate_bulk_overlap_ff_per_um") * 1e-15 * length_um,
        "junction_capacitance_f": column("junction_ff_per_um") * 1e-15 * width_um,
        "junction_potential_v": column("junction_potential_v"),
        "junction_grading": column("junction_grading"),
    }
    return ModelParameters(**{name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in values.items()})
