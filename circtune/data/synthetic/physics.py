"""All-region MOSFET model: drain current, terminal charges and their derivatives.

The model follows the structure of EKV 2.6, written for torch tensors in
float64 so that autograd supplies exact derivatives:

* Pinch-off voltage from the gate-bulk voltage through the surface-potential
  relation ``Vgb - Vfb = psi + gamma * sqrt(psi) + c * (psi - phi)``, where
  ``c`` is an interface-trap factor that raises the slope factor
  ``n = 1 + c + gamma / (2 sqrt(psi))`` to about 1.3 at threshold.
* Forward and reverse currents ``i = ln(1 + exp(v / 2))^2`` with
  ``v = (Vp - Vsb) / Ut`` (forward) and ``(Vp - Vdb) / Ut`` (reverse), and
  ``Id = 2 n beta Ut^2 (i_f - i_r)``.
* Short-channel effects act on the current only. DIBL raises the gate drive
  by ``dibl * Vds``. Channel-length modulation multiplies the current by
  ``1 + lambda Vds``. Mobility degradation and velocity saturation divide it
  by ``1 + theta * Vov_avg``, where ``Vov_avg`` is the mean overdrive of the
  source and drain ends.
* EKV normalized terminal charges with the Ward-Dutton partition, computed
  without DIBL so that DIBL cannot turn cgd negative in saturation. The
  depletion and trap charge goes to the bulk, and charge neutrality gives
  the gate charge. Overlap charges go to gate-drain and gate-source, a
  gate-bulk overlap charge to gate-bulk, and reverse-biased depletion
  charges of the drain and source junctions to drain-bulk and source-bulk.

Everything is computed in the NMOS frame: PMOS callers pass negated voltages
and negate the drain current. Conductances and capacitances keep their sign
under that mirror, so they come out the same for both polarities.

Small-signal quantities, with ``Q_x`` the total charge on terminal ``x`` and
derivatives taken at fixed potentials of the other terminals:

    gm  =  dId/dVg     gds =  dId/dVd     gb  =  dId/dVb
    cgd = -dQg/dVd     cgs = -dQg/dVs     cgb = -dQg/dVb
    cds = -dQd/dVs     cdb = -dQd/dVb     csb = -dQs/dVb

This is BAG3's pair-capacitance convention (``-Im(Y_ij) / omega`` of the
admittance matrix), taken from one triangle of the matrix where BAG3's
``mos_y_to_ss`` averages ``Y_ij`` and ``Y_ji``. ``ibias``, ``gm`` and ``gb``
are zero at ``Vds = 0`` and positive elsewhere. ``gds`` and the capacitances
other than ``cds`` are positive everywhere. ``cds`` is negative in inversion
and tends to zero in cut-off: in any charge-conserving model, raising the
source potential removes channel electrons, part of them from the drain's
share, so the intrinsic ``-dQd/dVs`` is negative. BAG3's average of
``Y_ds`` and ``Y_sd`` is negative for the same reason.

Shapes: every function works elementwise on tensors that broadcast against
each other; parameters usually have shape ``(N, 1, 1, 1)`` against voltages
of shape ``(N, B, G, D)``. Units: volts, amperes, siemens, farads, coulombs.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F

# Lower bound of the gate drive above flat band, which keeps sqrt finite in strong accumulation (outside any sweep).
_MIN_DRIVE_V = 1e-3
# Lower bound of 1 + V/phi_j in the junction charge, reached only at a forward bias of 0.9 phi_j and beyond.
_MIN_JUNCTION_FACTOR = 0.1


@dataclasses.dataclass(frozen=True)
class ModelParameters:
    """Parameters of device instances in the NMOS frame, one tensor entry per instance.

    Every field is a float64 tensor, and all fields broadcast against the
    voltages passed to the model functions.

    Attributes:
        threshold_v: Long-channel threshold voltage at Vsb = 0, including
            corner, temperature and mismatch shifts.
        body_factor_sqrt_v: Body-effect coefficient gamma in V^0.5.
        surface_potential_v: Surface potential at threshold (2 phi_F) in volts.
        trap_factor: Interface-trap capacitance over oxide capacitance.
        beta_a_per_v2: Mobility times Cox times W/L, in A/V^2.
        thermal_voltage_v: kT/q in volts.
        degradation_per_v: Mobility degradation plus velocity saturation
            coefficient theta in 1/V.
        dibl_v_per_v: Threshold drop per volt of Vds.
        clm_per_v: Channel-length modulation lambda in 1/V.
        gate_capacitance_f: Cox W L in farads.
        overlap_capacitance_f: Gate-drain (and gate-source) overlap
            capacitance in farads.
        gate_bulk_overlap_f: Gate-bulk overlap capacitance in farads.
        junction_capacitance_f: Zero-bias capacitance of each of the drain
            and source junctions in farads.
        junction_potential_v: Junction built-in potential in volts.
        junction_grading: Junction grading coefficient.
    """

    threshold_v: torch.Tensor
    body_factor_sqrt_v: torch.Tensor
    surface_potential_v: torch.Tensor
    trap_factor: torch.Tensor
    beta_a_per_v2: torch.Tensor
    thermal_voltage_v: torch.Tensor
    degradation_per_v: torch.Tensor
    dibl_v_per_v: torch.Tensor
    clm_per_v: torch.Tensor
    gate_capacitance_f: torch.Tensor
    overlap_capacitance_f: torch.Tensor
    gate_bulk_overlap_f: torch.Tensor
    junction_capacitance_f: torch.Tensor
    junction_potential_v: torch.Tensor
    junction_grading: torch.Tensor

    def reshape(self, *shape: int) -> ModelParameters:
        """Return the parameters with every tensor reshaped, e.g. ``(N,)`` to ``(N, 1, 1, 1)``."""
        return ModelParameters(**{field.name: getattr(self, field.name).reshape(shape) for field in _FIELDS})

    def take(self, indices: slice | torch.Tensor) -> ModelParameters:
        """Return the instances at ``indices`` along the first dimension."""
        return ModelParameters(**{field.name: getattr(self, field.name)[indices] for field in _FIELDS})


_FIELDS = dataclasses.fields(ModelParameters)


class TerminalCharges(NamedTuple):
    """Total charges on the four terminals in coulombs, which sum to zero."""

    gate: torch.Tensor
    drain: torch.Tensor
    source: torch.Tensor
    bulk: torch.Tensor


class SmallSignalParameters(NamedTuple):
    """The ten BAG3 quantities at each bias point, NMOS frame, in A, S and F."""

    ibias: torch.Tensor
    gm: torch.Tensor
    gds: torch.Tensor
    gb: torch.Tensor
    cgd: torch.Tensor
    cgs: torch.Tensor
    cds: torch.Tensor
    cgb: torch.Tensor
    cdb: torch.Tensor
    csb: torch.Tensor


class _PinchOff(NamedTuple):
    voltage_v: torch.Tensor  # Vp, bulk-referenced
    slope: torch.Tensor  # n
    surface_potential_v: torch.Tensor  # psi at pinch-off


def drain_current(
    params: ModelParameters,
    vg: torch.Tensor,
    vd: torch.Tensor,
    vs: torch.Tensor,
    vb: torch.Tensor,
) -> torch.Tensor:
    """Compute the drain current from the four terminal potentials.

    Args:
        params: Instance parameters, broadcastable against the voltages.
        vg: Gate potential in volts (NMOS frame).
        vd: Drain potential in volts.
        vs: Source potential in volts.
        vb: Bulk potential in volts.

    Returns:
        Current into the drain in amperes, the broadcast shape of the inputs.
    """
    vds = vd - vs
    pinch = _pinch_off(params, vg - vb + params.dibl_v_per_v * vds)
    ut = params.thermal_voltage_v
    forward = F.softplus((pinch.voltage_v - (vs - vb)) / (2.0 * ut))  # sqrt(i_f)
    reverse = F.softplus((pinch.voltage_v - (vd - vb)) / (2.0 * ut))  # sqrt(i_r)

    # i_f - i_r as a product, so small Vds does not cancel two large squares
    normalized = (forward - reverse) * (forward + reverse)
    specific_a = 2.0 * pinch.slope * params.beta_a_per_v2 * ut**2
    mean_overdrive_v = pinch.slope * ut * (forward + reverse)
    degradation = 1.0 + params.degradation_per_v * mean_overdrive_v
    return specific_a * normalized * (1.0 + params.clm_per_v * vds) / degradation


def terminal_charges(
    params: ModelParameters,
    vg: torch.Tensor,
    vd: torch.Tensor,
    vs: torch.Tensor,
    vb: torch.Tensor,
) -> TerminalCharges:
    """Compute the intrinsic-plus-extrinsic charges on the four terminals.

    Args:
        params: Instance parameters, broadcastable against the voltages.
        vg: Gate potential in volts (NMOS frame).
        vd: Drain potential in volts.
        vs: Source potential in volts.
        vb: Bulk potential in volts.

    Returns:
        Gate, drain, source and bulk charges in coulombs.
    """
    intrinsic = _intrinsic_charges(params, vg, vd, vs, vb)

    gate_drain = params.overlap_capacitance_f * (vg - vd)
    gate_source = params.overlap_capacitance_f * (vg - vs)
    gate_bulk = params.gate_bulk_overlap_f * (vg - vb)
    drain_junction = _junction_charge(params, vd - vb)
    source_junction = _junction_charge(params, vs - vb)
    return TerminalCharges(
        gate=intrinsic.gate + gate_drain + gate_source + gate_bulk,
        drain=intrinsic.drain - gate_drain + drain_junction,
        source=intrinsic.source - gate_source + source_junction,
        bulk=intrinsic.bulk - gate_bulk - drain_junction - source_junction,
    )


def small_signal_parameters(
    params: ModelParameters,
    vgs: torch.Tensor,
    vds: torch.Tensor,
    vbs: torch.Tensor,
) -> SmallSignalParameters:
    """Compute the ten BAG3 quantities with autograd derivatives.

    Every bias point is independent, so the gradient of a summed output with
    respect to a full-shape voltage tensor is the per-point derivative.

    Args:
        params: Instance parameters, broadcastable against the voltages.
        vgs: Gate-source voltages in volts (NMOS frame), e.g. ``(N, 1, G, 1)``.
        vds: Drain-source voltages, e.g. ``(N, 1, 1, D)``.
        vbs: Bulk-source voltages, e.g. ``(N, B, 1, 1)``.

    Returns:
        The quantities, each of the broadcast shape, e.g. ``(N, B, G, D)``,
        detached from the autograd graph.
    """
    shape = torch.broadcast_shapes(vgs.shape, vds.shape, vbs.shape)
    vg, vd, vb = (voltage.expand(shape).clone().requires_grad_(True) for voltage in (vgs, vds, vbs))
    vs = torch.zeros(shape, dtype=vgs.dtype, requires_grad=True)

    with torch.enable_grad():
        current = drain_current(params, vg, vd, vs, vb)
        gm, gds, gb = torch.autograd.grad(current.sum(), (vg, vd, vb))

        charges = terminal_charges(params, vg, vd, vs, vb)
        dqg_dvd, dqg_dvs, dqg_dvb = torch.autograd.grad(charges.gate.sum(), (vd, vs, vb), retain_graph=True)
        dqd_dvs, dqd_dvb = torch.autograd.grad(charges.drain.sum(), (vs, vb), retain_graph=True)
        (dqs_dvb,) = torch.autograd.grad(charges.source.sum(), (vb,))

    return SmallSignalParameters(
        ibias=current.detach(),
        gm=gm,
        gds=gds,
        gb=gb,
        cgd=-dqg_dvd,
        cgs=-dqg_dvs,
        cds=-dqd_dvs,
        cgb=-dqg_dvb,
        cdb=-dqd_dvb,
        csb=-dqs_dvb,
    )


def _pinch_off(params: ModelParameters, gate_bulk_v: torch.Tensor) -> _PinchOff:
    """Solve ``(1 + c) psi + gamma sqrt(psi) = Vgb - Vfb + c phi`` for psi, then Vp = psi - phi."""
    gamma = params.body_factor_sqrt_v
    phi = params.surface_potential_v
    trap = params.trap_factor
    flat_band_v = params.threshold_v - phi - gamma * torch.sqrt(phi)

    drive_v = torch.clamp(gate_bulk_v - flat_band_v + trap * phi, min=_MIN_DRIVE_V)
    # root of (1 + c) s^2 + gamma s - drive = 0 in the form that does not cancel
    root = 2.0 * drive_v / (gamma + torch.sqrt(gamma**2 + 4.0 * (1.0 + trap) * drive_v))
    surface_v = root**2
    slope = 1.0 + trap + gamma / (2.0 * root)
    return _PinchOff(voltage_v=surface_v - phi, slope=slope, surface_potential_v=surface_v)


def _intrinsic_charges(
    params: ModelParameters,
    vg: torch.Tensor,
    vd: torch.Tensor,
    vs: torch.Tensor,
    vb: torch.Tensor,
) -> TerminalCharges:
    """EKV 2.6 normalized charges with the Ward-Dutton partition, scaled by Cox W L Ut."""
    pinch = _pinch_off(params, vg - vb)
    ut = params.thermal_voltage_v
    n = pinch.slope
    forward = torch.sqrt(0.25 + F.softplus((pinch.voltage_v - (vs - vb)) / (2.0 * ut)) ** 2)
    reverse = torch.sqrt(0.25 + F.softplus((pinch.voltage_v - (vd - vb)) / (2.0 * ut)) ** 2)

    # inversion charge and its drain share, which both vanish in weak inversion (forward = reverse = 1/2)
    total = forward + reverse
    inversion = -n * (4.0 / 3.0 * (forward**2 + forward * reverse + reverse**2) / total - 1.0)
    drain_share = (3.0 * reverse**3 + 6.0 * reverse**2 * forward + 4.0 * reverse * forward**2 + 2.0 * forward**3) / (
        15.0 * total**2
    )
    drain = -n * (4.0 * drain_share - 0.5)
    source = inversion - drain

    # depletion and trap charge at pinch-off, less what the inversion charge screens
    gamma = params.body_factor_sqrt_v
    depletion = -(gamma * torch.sqrt(pinch.surface_potential_v) + params.trap_factor * pinch.voltage_v) / ut
    bulk = depletion - (n - 1.0) / n * inversion
    gate = -(inversion + bulk)

    scale_c = params.gate_capacitance_f * ut
    return TerminalCharges(gate=scale_c * gate, drain=scale_c * drain, source=scale_c * source, bulk=scale_c * bulk)


def _junction_charge(params: ModelParameters, reverse_bias_v: torch.Tensor) -> torch.Tensor:
    """Depletion charge of an n+/p junction, the integral of ``Cj0 / (1 + V/phi_j)^m`` from 0 to V."""
    potential_v = params.junction_potential_v
    grading = params.junction_grading
    factor = torch.clamp(1.0 + reverse_bias_v / potential_v, min=_MIN_JUNCTION_FACTOR)
    return params.junction_capacitance_f * potential_v / (1.0 - grading) * (factor ** (1.0 - grading) - 1.0)
