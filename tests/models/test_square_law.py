import math

import numpy as np
import pytest
import torch

from circtune.models.square_law import (
    MAX_CURRENT_A,
    current_scale,
    fit_square_law,
    scale_free_loss,
    square_law_current,
    square_law_errors,
    to_normalized,
    to_physical,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _log_params(vt: float, kp: float, lam: float, eta: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor([[math.log(vt), math.log(kp), math.log(lam), math.log(eta)]], dtype=dtype)


def _reference_current(vt: float, kp: float, lam: float, eta: float, vgs: np.ndarray, vds: np.ndarray) -> np.ndarray:
    """Return the law point by point, written out with Python branches."""
    current = np.zeros((len(vgs), len(vds)))
    for g, gate in enumerate(vgs):
        for d, drain in enumerate(vds):
            vov = gate - vt
            if vov <= 0:
                continue
            if drain > vov:
                current[g, d] = 0.5 * kp * vov**eta * (1 + lam * drain)
            else:
                current[g, d] = kp * (vov * drain - drain**2 / 2) * (1 + lam * drain)
    return current


# (Vt V, Kp A/V^2, lambda 1/V, eta, supply V); the grids avoid points within a few mV of |Vds| = Vov
_KNOWN_DEVICES = [
    (0.45, 2e-4, 0.08, 2.0, 1.8),
    (0.32, 4e-4, 0.15, 2.0, 1.8),
    (0.71, 8e-5, 0.03, 1.7, 3.3),
    (0.58, 1.2e-4, 0.05, 1.45, 5.0),
]


def test_square_law_current_matches_reference() -> None:
    vgs = np.linspace(0.0, 1.8, 7)
    vds = np.linspace(0.0, 1.8, 9)
    for vt, kp, lam, eta, _ in _KNOWN_DEVICES:
        predicted = square_law_current(
            _log_params(vt, kp, lam, eta), torch.from_numpy(vgs)[None], torch.from_numpy(vds)[None]
        )[0].numpy()
        np.testing.assert_allclose(predicted, _reference_current(vt, kp, lam, eta, vgs, vds), rtol=1e-9, atol=1e-20)


def test_square_law_current_zero_in_cutoff() -> None:
    vgs = torch.tensor([[0.0, 0.2, 0.4]], dtype=torch.float64)
    vds = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    current = square_law_current(_log_params(0.45, 2e-4, 0.1, 2.0), vgs, vds)
    assert torch.all(current == 0)


def test_square_law_current_capped_for_extreme_params() -> None:
    vgs = torch.linspace(0.0, 5.0, 6, dtype=torch.float32)[None]
    log_params = torch.tensor([[-3.0, 40.0, 5.0, 2.0]])
    current = square_law_current(log_params, vgs, vgs)
    assert torch.all(torch.isfinite(current))
    assert float(current.max()) <= MAX_CURRENT_A * 1.001


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_square_law_gradient_finite_at_edges(dtype: torch.dtype) -> None:
    # Vt sweeps across the grid point Vgs = 0.5 V, so Vov = 0 and |Vds| = Vov both occur
    vt = torch.linspace(0.49, 0.51, 41, dtype=torch.float64)
    vt = torch.cat([vt, torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64)])
    n_devices = len(vt)
    log_params = (
        torch.stack(
            [
                vt.log(),
                torch.full_like(vt, math.log(2e-4)),
                torch.full_like(vt, math.log(0.1)),
                torch.full_like(vt, math.log(2.0)),
            ],
            dim=-1,
        )
        .to(dtype)
        .requires_grad_()
    )
    grid = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=dtype).expand(n_devices, -1)
    grid = grid.clone().requires_grad_()

    current = square_law_current(log_params, grid, grid)
    measured = square_law_current(log_params.detach() + 0.01, grid.detach(), grid.detach())
    loss = square_law_errors(current, measured).loss.sum() + current.sum() * 1e3
    loss.backward()

    assert torch.all(torch.isfinite(current.float()))
    assert torch.all(torch.isfinite(log_params.grad.float()))
    assert torch.all(torch.isfinite(grid.grad.float()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_square_law_gradient_finite_for_extreme_params(dtype: torch.dtype) -> None:
    log_params = torch.tensor(
        [[-20.0, -60.0, -30.0, -5.0], [3.0, 30.0, 8.0, 3.0], [0.0, 0.0, 0.0, 0.0], [-0.7, -8.0, -2.0, 0.69]],
        dtype=dtype,
    ).requires_grad_()
    grid = torch.linspace(0.0, 5.0, 6, dtype=dtype).expand(4, -1)
    measured = torch.rand(4, 6, 6, dtype=dtype) * 1e-4

    errors = square_law_errors(square_law_current(log_params, grid, grid), measured)
    (errors.loss.sum() + errors.relative_error_pct.sum()).backward()

    assert torch.all(torch.isfinite(errors.loss))
    assert torch.all(torch.isfinite(log_params.grad.float()))


def test_square_law_vectorized_over_devices() -> None:
    vgs = torch.linspace(0.0, 1.8, 6, dtype=torch.float64)
    params = torch.cat([_log_params(*device[:4]) for device in _KNOWN_DEVICES])
    together = square_law_current(params, vgs.expand(len(params), -1), vgs.expand(len(params), -1))
    for index in range(len(params)):
        alone = square_law_current(params[index : index + 1], vgs[None], vgs[None])
        assert torch.equal(together[index], alone[0])


def test_current_scale_max_per_device() -> None:
    current = torch.tensor([[[1e-6, -3e-6]], [[0.0, 0.0]]])
    scale = current_scale(current)
    assert scale[0] == pytest.approx(3e-6)
    assert scale[1] > 0


def test_square_law_errors_scale_free() -> None:
    measured = torch.rand(3, 4, 5, dtype=torch.float64) + 0.1
    predicted = measured * 1.1
    small = square_law_errors(predicted * 1e-9, measured * 1e-9)
    large = square_law_errors(predicted, measured)
    torch.testing.assert_close(small.loss, large.loss)
    torch.testing.assert_close(small.relative_error_pct, torch.full((3,), 10.0, dtype=torch.float64))


def test_square_law_errors_zero_for_exact_prediction() -> None:
    measured = torch.rand(2, 3, 3)
    errors = square_law_errors(measured, measured)
    assert torch.all(errors.loss == 0)
    assert torch.all(errors.relative_error_pct == 0)


def test_fit_square_law_recovers_known_params() -> None:
    n_vgs, n_vds = 11, 11
    devices = torch.cat([_log_params(*device[:4]) for device in _KNOWN_DEVICES])
    supply = torch.tensor([device[4] for device in _KNOWN_DEVICES], dtype=torch.float64)[:, None]
    vgs = torch.linspace(0.0, 1.0, n_vgs, dtype=torch.float64)[None] * supply
    vds = torch.linspace(0.0, 1.0, n_vds, dtype=torch.float64)[None] * supply * 0.97
    current = square_law_current(devices, vgs, vds)

    fit = fit_square_law(current, vgs, vds)

    relative = (fit.log_params.exp() / devices.exp() - 1.0).abs()
    for name, column in zip(("Vt", "Kp", "lambda", "eta"), relative.T, strict=True):
        assert float(column.max()) < 0.01, name
    assert float(fit.errors.relative_error_pct.max()) < 0.01


def test_fit_square_law_float32_inputs() -> None:
    vgs = torch.linspace(0.0, 1.8, 8)[None]
    current = square_law_current(_log_params(0.45, 2e-4, 0.08, 2.0, torch.float32), vgs, vgs)
    fit = fit_square_law(current, vgs, vgs)
    assert fit.log_params.dtype == torch.float64
    assert float(fit.errors.relative_error_pct[0]) < 0.1


def test_scale_free_loss_matches_errors() -> None:
    measured = torch.rand(3, 4, 5) * 1e-4
    predicted = measured * 1.2
    expected = square_law_errors(predicted, measured).loss
    torch.testing.assert_close(scale_free_loss(predicted, measured), expected)
    torch.testing.assert_close(scale_free_loss(predicted, measured, scale=current_scale(measured)), expected)


def test_scale_free_loss_bfloat16_computed_in_float32() -> None:
    measured = torch.rand(2, 3, 3).to(torch.bfloat16)
    assert scale_free_loss(measured * 1.1, measured).dtype == torch.float32


def test_to_physical_inverts_to_normalized() -> None:
    log_params = torch.cat([_log_params(vt, kp, lam, eta) for vt, kp, lam, eta, _ in _KNOWN_DEVICES])
    vgs = torch.stack([torch.linspace(0.0, supply, 11, dtype=torch.float64) for *_, supply in _KNOWN_DEVICES])
    scale = torch.tensor([1e-4, 3e-4, 2e-5, 7e-6], dtype=torch.float64)
    normalized = to_normalized(log_params, vgs, vgs, scale)
    assert not torch.allclose(normalized, log_params)
    torch.testing.assert_close(to_physical(normalized, vgs, vgs, scale), log_params)


def test_normalized_params_same_for_scaled_device() -> None:
    # a device with a 2.5x wider sweep, Vt and 1/lambda, and 10x the current, has the same dimensionless parameters
    vt, kp, lam, eta, supply = 0.45, 2e-4, 0.08, 2.0, 1.8
    small = _log_params(vt, kp, lam, eta)
    large = _log_params(2.5 * vt, kp * 10.0 / 2.5**eta, lam / 2.5, eta)
    grid = torch.linspace(0.0, supply, 11, dtype=torch.float64)[None]
    small_current = square_law_current(small, grid, grid)
    large_current = square_law_current(large, 2.5 * grid, 2.5 * grid)
    torch.testing.assert_close(large_current, 10.0 * small_current)
    torch.testing.assert_close(
        to_normalized(large, 2.5 * grid, 2.5 * grid, current_scale(large_current)),
        to_normalized(small, grid, grid, current_scale(small_current)),
    )
