"""The alpha-power Square Law, its scale-free loss, and a direct least-squares fit.

Shape legend: N devices, G Vgs points, D Vds points. All voltages and
currents are magnitudes (PMOS devices enter through |Vgs|, |Vds| and |I|),
in volts and amperes.

The four parameters of a device are the columns of an ``(N, 4)`` tensor in
log space, in the order of ``PARAM_NAMES``, so that every parameter stays
positive whatever a network predicts:

    log_vt      threshold voltage Vt, in V
    log_kp      transconductance factor Kp, in A/V^2 (A/V^eta in saturation)
    log_lambda  channel-length modulation lambda, in 1/V
    log_eta     saturation exponent eta (2 for the textbook law)

With ``Vov = |Vgs| - Vt`` the drain current is 0 in cut-off (``Vov <= 0``),
``0.5 Kp Vov^eta (1 + lambda |Vds|)`` in saturation (``|Vds| > Vov``) and
``Kp (Vov |Vds| - |Vds|^2 / 2) (1 + lambda |Vds|)`` in triode.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

PARAM_NAMES: tuple[str, ...] = ("log_vt", "log_kp", "log_lambda", "log_eta")
N_PARAMS = len(PARAM_NAMES)

# exp() of the log-current is capped here, so values, squared errors and
# gradients stay finite in float32 and bfloat16 whatever parameters a network
# predicts. No transistor in these tables conducts this much.
MAX_CURRENT_A = 1e3
# Floor of a device's current scale, so a device that never conducts has a
# finite scale-free loss.
MIN_CURRENT_SCALE_A = 1e-12
# Arguments of logarithms are clamped at this value (or at the dtype's
# smallest normal number, if that is larger).
_LOG_FLOOR = 1e-12
_LOG_HALF = math.log(0.5)
_MIN_RELATIVE_RMS = 1e-12  # RMS(I) / scale of a device that never conducts

# Direct fit: coarse grid over (Vt, eta) with Kp and lambda solved in closed
# form, then Levenberg-Marquardt in log space.
_FIT_VT_FRACTIONS = torch.linspace(0.01, 0.95, 48, dtype=torch.float64)  # of each device's max |Vgs|
_FIT_ETAS = torch.linspace(1.0, 3.0, 9, dtype=torch.float64)
_FIT_MIN_LAMBDA_PER_V = 1e-6
_FIT_LOG_ETA_RANGE = (math.log(0.5), math.log(4.0))
_FIT_INITIAL_DAMPING = 1e-3
_FIT_MIN_KP = 1e-300  # A/V^2, keeps log(Kp) finite where the closed form gives 0
_FIT_CHUNK_DEVICES = 256


class SquareLawErrors(NamedTuple):
    """Per-device errors of predicted against measured current.

    Attributes:
        loss: ``(N,)`` mean over the grid of the squared error divided by the
            square of the device's current scale (its max |I|); unitless.
        relative_error_pct: ``(N,)`` ``100 * RMS(error) / RMS(I)`` per device.
    """

    loss: Tensor
    relative_error_pct: Tensor


class SquareLawFit(NamedTuple):
    """Result of a direct least-squares fit.

    Attributes:
        log_params: ``(N, 4)`` fitted parameters in log space.
        errors: Errors of the fitted current against the measured one.
    """

    log_params: Tensor
    errors: SquareLawErrors


def square_law_current(log_params: Tensor, vgs: Tensor, vds: Tensor) -> Tensor:
    """Evaluate the alpha-power Square Law on each device's (Vgs, Vds) grid.

    The law is evaluated in log space with clamped logarithm arguments, and
    both branches of every ``torch.where`` stay finite, so values and
    gradients are finite everywhere, including cut-off and ``|Vds| = Vov``.

    Args:
        log_params: ``(N, 4)`` parameters in log space, columns as in
            ``PARAM_NAMES``.
        vgs: ``(N, G)`` |Vgs| in volts.
        vds: ``(N, D)`` |Vds| in volts.

    Returns:
        ``(N, G, D)`` drain-current magnitude in amperes, at most
        ``MAX_CURRENT_A``.

    Note:
        For eta other than 2 the saturation and triode expressions differ at
        ``|Vds| = Vov``, so the current jumps there. A fit can then stop next
        to such a jump instead of at the true parameters.
    """
    log_vt, log_kp, log_lambda, log_eta = (column[:, None, None] for column in log_params.unbind(dim=-1))  # (N, 1, 1)
    vov = vgs[:, :, None] - torch.exp(log_vt)  # (N, G, 1)
    vds_grid = vds[:, None, :]  # (N, 1, D)
    floor = _log_floor(torch.promote_types(log_params.dtype, vgs.dtype))

    # both regions in log space, each finite for every input
    log_saturation = _LOG_HALF + torch.exp(log_eta) * torch.log(vov.clamp(min=floor))
    log_triode = torch.log(vds_grid.clamp(min=floor)) + torch.log((vov - 0.5 * vds_grid).clamp(min=floor))
    log_shape = torch.where(vds_grid > vov, log_saturation, log_triode)  # (N, G, D)

    log_current = log_kp + log_shape + torch.log1p(torch.exp(log_lambda) * vds_grid)
    current = torch.exp(log_current.clamp(max=math.log(MAX_CURRENT_A)))
    conducting = (vov > 0) & (vds_grid > 0)
    return torch.where(conducting, current, torch.zeros_like(current))


def to_physical(normalized: Tensor, vgs: Tensor, vds: Tensor, scale: Tensor) -> Tensor:
    """Convert dimensionless log parameters to physical ones on each device's own scales.

    With ``U = max |Vgs|``, ``V = max |Vds|`` (the device's sweep spans) and
    ``S`` its current scale, the dimensionless parameters are ``Vt / U``,
    ``Kp U^eta / S``, ``lambda V`` and ``eta``. They take similar values for
    a 1.8 V and a 5 V device that differ mostly in sweep span, oxide
    thickness and size, so a head that predicts them need not extrapolate
    in absolute units. The map is one-to-one per device.

    Args:
        normalized: ``(N, 4)`` dimensionless parameters in log space.
        vgs: ``(N, G)`` |Vgs| in volts.
        vds: ``(N, D)`` |Vds| in volts.
        scale: ``(N,)`` current scale in amperes, see ``current_scale``.

    Returns:
        ``(N, 4)`` log parameters in the units of ``PARAM_NAMES``.
    """
    log_u, log_v, log_s = _log_scales(vgs, vds, scale, normalized.dtype)
    log_vt, log_kp, log_lambda, log_eta = normalized.unbind(dim=-1)
    return torch.stack([log_vt + log_u, log_kp + log_s - torch.exp(log_eta) * log_u, log_lambda - log_v, log_eta], -1)


def to_normalized(log_params: Tensor, vgs: Tensor, vds: Tensor, scale: Tensor) -> Tensor:
    """Invert ``to_physical``: ``(N, 4)`` physical log parameters to dimensionless ones."""
    log_u, log_v, log_s = _log_scales(vgs, vds, scale, log_params.dtype)
    log_vt, log_kp, log_lambda, log_eta = log_params.unbind(dim=-1)
    return torch.stack([log_vt - log_u, log_kp - log_s + torch.exp(log_eta) * log_u, log_lambda + log_v, log_eta], -1)


def _log_scales(vgs: Tensor, vds: Tensor, scale: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Return the ``(N,)`` logs of max |Vgs|, max |Vds| and the current scale, floored."""
    floor = _log_floor(torch.promote_types(dtype, vgs.dtype))
    return (
        torch.log(vgs.abs().amax(dim=1).clamp(min=floor)),
        torch.log(vds.abs().amax(dim=1).clamp(min=floor)),
        torch.log(scale.clamp(min=MIN_CURRENT_SCALE_A)),
    )


def current_scale(current: Tensor) -> Tensor:
    """Return each device's current scale: its max |I| over the grid, floored.

    Args:
        current: ``(N, G, D)`` current magnitudes in amperes.

    Returns:
        ``(N,)`` scale in amperes, at least ``MIN_CURRENT_SCALE_A``.
    """
    return current.abs().amax(dim=(1, 2)).clamp(min=MIN_CURRENT_SCALE_A)


def scale_free_loss(predicted: Tensor, measured: Tensor, *, scale: Tensor | None = None) -> Tensor:
    """Return each device's mean squared error over the grid divided by its squared current scale.

    Computed in float32 or wider whatever the input dtype.

    Args:
        predicted: ``(N, G, D)`` predicted current in amperes.
        measured: ``(N, G, D)`` measured current in amperes.
        scale: ``(N,)`` current scales, ``current_scale(measured)`` if None;
            pass them to skip recomputing them in a training loop.

    Returns:
        ``(N,)`` unitless loss.
    """
    dtype = torch.promote_types(torch.promote_types(predicted.dtype, measured.dtype), torch.float32)
    measured = measured.to(dtype)
    device_scale = current_scale(measured) if scale is None else scale.to(dtype)
    return ((predicted.to(dtype) - measured) / device_scale[:, None, None]).square().mean(dim=(1, 2))


def square_law_errors(predicted: Tensor, measured: Tensor) -> SquareLawErrors:
    """Compute the scale-free loss and the relative error of each device.

    Both are computed in float32 or wider whatever the input dtype.

    Args:
        predicted: ``(N, G, D)`` predicted current in amperes.
        measured: ``(N, G, D)`` measured current in amperes.

    Returns:
        Per-device loss and relative error in percent.
    """
    dtype = torch.promote_types(torch.promote_types(predicted.dtype, measured.dtype), torch.float32)
    measured = measured.to(dtype)
    scale = current_scale(measured)  # (N,)
    loss = scale_free_loss(predicted, measured, scale=scale)
    rms_measured = (measured / scale[:, None, None]).square().mean(dim=(1, 2)).sqrt().clamp(min=_MIN_RELATIVE_RMS)
    return SquareLawErrors(loss=loss, relative_error_pct=100.0 * loss.sqrt() / rms_measured)


def fit_square_law(current: Tensor, vgs: Tensor, vds: Tensor, *, iterations: int = 100) -> SquareLawFit:
    """Fit the Square Law to each device's own current by least squares.

    Every device is fitted independently, all at once, in float64 on the
    device of ``current``. The start is the best point of a coarse grid over
    Vt and eta, with Kp and lambda solved in closed form at each point.
    Batched Levenberg-Marquardt steps in log space then minimise the
    scale-free loss.

    Args:
        current: ``(N, G, D)`` measured |I| in amperes.
        vgs: ``(N, G)`` |Vgs| in volts.
        vds: ``(N, D)`` |Vds| in volts.
        iterations: Number of Levenberg-Marquardt steps.

    Returns:
        Fitted log parameters and their errors, in float64.

    Note:
        lambda is kept at or above 1e-6 per volt and eta in [0.5, 4].
    """
    current, vgs, vds = (tensor.detach().to(torch.float64) for tensor in (current, vgs, vds))
    log_params = torch.cat(
        [_grid_start(current[i : i + _FIT_CHUNK_DEVICES], vgs[i : i + _FIT_CHUNK_DEVICES], vds[i : i + _FIT_CHUNK_DEVICES])
         for i in range(0, current.shape[0], _FIT_CHUNK_DEVICES)]
    )  # fmt: skip
    log_params = _levenberg_marquardt(log_params, current, vgs, vds, iterations=iterations)
    errors = square_law_errors(square_law_current(log_params, vgs, vds), current)
    return SquareLawFit(log_params=log_params, errors=errors)


def _log_floor(dtype: torch.dtype) -> float:
    return max(_LOG_FLOOR, float(torch.finfo(dtype).tiny))


def _clamp_fit_params(log_params: Tensor) -> Tensor:
    log_vt, log_kp, log_lambda, log_eta = log_params.unbind(dim=-1)
    return torch.stack(
        [log_vt, log_kp, log_lambda.clamp(min=math.log(_FIT_MIN_LAMBDA_PER_V)), log_eta.clamp(*_FIT_LOG_ETA_RANGE)],
        dim=-1,
    )


def _grid_start(current: Tensor, vgs: Tensor, vds: Tensor) -> Tensor:
    """Return ``(N, 4)`` starting log parameters from a grid over Vt and eta."""
    n_devices = current.shape[0]
    fractions = _FIT_VT_FRACTIONS.to(current.device)
    vt = fractions[None, :] * vgs.amax(dim=1, keepdim=True)  # (N, V)
    scale = current_scale(current)[:, None, None, None]  # (N, 1, 1, 1)
    measured = (current / scale[:, 0])[:, None]  # (N, 1, G, D)
    vds_grid = vds[:, None, None, :]  # (N, 1, 1, D)
    vov = vgs[:, None, :, None] - vt[:, :, None, None]  # (N, V, G, 1)

    # a device that never conducts keeps this start: Vt at the top of its sweep, no current
    best_loss = torch.full((n_devices,), math.inf, dtype=current.dtype, device=current.device)
    best = torch.stack(
        [vt[:, -1].log(), torch.full_like(vt[:, -1], math.log(MIN_CURRENT_SCALE_A)),
         torch.full_like(vt[:, -1], math.log(_FIT_MIN_LAMBDA_PER_V)), torch.full_like(vt[:, -1], math.log(2.0))],
        dim=-1,
    )  # fmt: skip
    for eta in _FIT_ETAS.tolist():
        # I = kp * shape + (kp * lambda) * shape * |Vds|: linear in (kp, kp * lambda)
        shape = _plain_shape(vov, vds_grid, eta) / scale  # (N, V, G, D)
        kp, kp_lambda, loss = _solve_linear_pair(shape, shape * vds_grid, measured)  # each (N, V)
        loss = torch.where(kp > 0, loss, torch.full_like(loss, math.inf))
        candidate_loss, candidate = loss.min(dim=1)  # (N,)
        better = candidate_loss < best_loss
        rows = torch.arange(n_devices, device=current.device)
        lam = (kp_lambda[rows, candidate] / kp[rows, candidate].clamp(min=_FIT_MIN_KP)).clamp(min=_FIT_MIN_LAMBDA_PER_V)
        params = torch.stack(
            [vt[rows, candidate].log(), kp[rows, candidate].clamp(min=_FIT_MIN_KP).log(), lam.log(),
             torch.full_like(lam, math.log(eta))],
            dim=-1,
        )  # fmt: skip
        best = torch.where(better[:, None], params, best)
        best_loss = torch.where(better, candidate_loss, best_loss)
    return best


def _plain_shape(vov: Tensor, vds: Tensor, eta: float) -> Tensor:
    """Return the Square Law with Kp = 1 and lambda = 0, evaluated directly."""
    positive = vov.clamp(min=0.0)
    saturation = 0.5 * positive**eta
    triode = positive * vds - 0.5 * vds.square()
    return torch.where(vds > positive, saturation, triode)


def _solve_linear_pair(first: Tensor, second: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Solve ``target ~ a * first + b * second`` by least squares over the last two axes.

    Where ``b`` would be negative it is set to 0 and ``a`` refitted alone.
    Returns ``a``, ``b`` and the mean squared residual.
    """
    dims = (-2, -1)
    s11 = (first * first).sum(dims)
    s12 = (first * second).sum(dims)
    s22 = (second * second).sum(dims)
    t1 = (first * target).sum(dims)
    t2 = (second * target).sum(dims)
    determinant = s11 * s22 - s12 * s12
    usable = determinant > 1e-12 * s11 * s22
    safe_determinant = torch.where(usable, determinant, torch.ones_like(determinant))
    a = (s22 * t1 - s12 * t2) / safe_determinant
    b = (s11 * t2 - s12 * t1) / safe_determinant

    alone = ~usable | (b < 0)
    a = torch.where(alone, t1 / s11.clamp(min=1e-300), a)
    b = torch.where(alone, torch.zeros_like(b), b)
    residual = a[..., None, None] * first + b[..., None, None] * second - target
    return a, b, residual.square().mean(dims)


def _current_and_jacobian(log_params: Tensor, vgs: Tensor, vds: Tensor) -> tuple[Tensor, Tensor]:
    """Return the ``(N, G, D)`` current and its ``(N, G, D, 4)`` derivatives by the log parameters."""
    current = square_law_current(log_params, vgs, vds)
    vt, _, lam, eta = (column[:, None, None] for column in log_params.exp().unbind(dim=-1))  # (N, 1, 1)
    vov = vgs[:, :, None] - vt  # (N, G, 1)
    vds_grid = vds[:, None, :]  # (N, 1, D)
    saturated = vds_grid > vov
    floor = _log_floor(current.dtype)

    # derivatives of log(current) by each log parameter, then times current
    d_vt = torch.where(saturated, -eta / vov.clamp(min=floor), -1.0 / (vov - 0.5 * vds_grid).clamp(min=floor)) * vt
    d_kp = torch.ones_like(d_vt)
    d_lambda = (lam * vds_grid / (1.0 + lam * vds_grid)).expand_as(d_vt)
    d_eta = torch.where(saturated, eta * torch.log(vov.clamp(min=floor)), torch.zeros_like(d_vt))
    d_log_current = torch.stack(torch.broadcast_tensors(d_vt, d_kp, d_lambda, d_eta), dim=-1)  # (N, G, D, 4)
    uncapped = (current < MAX_CURRENT_A)[..., None]
    return current, torch.where(uncapped, current[..., None] * d_log_current, torch.zeros_like(d_log_current))


def _levenberg_marquardt(log_params: Tensor, current: Tensor, vgs: Tensor, vds: Tensor, *, iterations: int) -> Tensor:
    """Refine ``(N, 4)`` log parameters, each device with its own damping."""
    scale = current_scale(current)[:, None]  # (N, 1)
    measured = current.flatten(start_dim=1) / scale  # (N, G * D)

    def residual_of(params: Tensor) -> Tensor:
        return square_law_current(params, vgs, vds).flatten(start_dim=1) / scale - measured

    params = _clamp_fit_params(log_params)
    loss = residual_of(params).square().sum(dim=1)  # (N,)
    damping = torch.full_like(loss, _FIT_INITIAL_DAMPING)
    for _ in range(iterations):
        predicted, jacobian = _current_and_jacobian(params, vgs, vds)
        residual = predicted.flatten(start_dim=1) / scale - measured  # (N, G * D)
        jacobian = jacobian.flatten(start_dim=1, end_dim=2) / scale[:, :, None]  # (N, G * D, 4)

        normal = jacobian.transpose(1, 2) @ jacobian  # (N, 4, 4)
        gradient = (jacobian.transpose(1, 2) @ residual[:, :, None])[:, :, 0]  # (N, 4)
        diagonal = torch.diagonal(normal, dim1=1, dim2=2).clamp(min=1e-12)
        step = torch.linalg.solve(normal + torch.diag_embed(damping[:, None] * diagonal + 1e-12), -gradient)

        trial = _clamp_fit_params(params + step)
        trial_loss = residual_of(trial).square().sum(dim=1)
        accept = torch.isfinite(trial_loss) & (trial_loss < loss)
        params = torch.where(accept[:, None], trial, params)
        loss = torch.where(accept, trial_loss, loss)
        damping = torch.where(accept, damping * 0.3, damping * 10.0).clamp(1e-12, 1e12)
    return params
