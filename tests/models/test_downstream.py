import math

import pytest
import torch

from circtune.errors import ConfigError
from circtune.models.downstream import DownstreamHead, embed, fit_pca
from circtune.models.square_law import current_scale, square_law_current, square_law_errors, to_normalized
from circtune.models.vae import VAE

# dimensionless: Vt / max|Vgs|, Kp max|Vgs|^eta / scale, lambda max|Vds|, eta
_WARM_START = torch.tensor([math.log(0.25), math.log(2.0), math.log(0.15), math.log(2.0)])
_SCALE = torch.tensor([1e-4])


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _head(n_inputs: int = 6, hidden: int = 200) -> DownstreamHead:
    torch.manual_seed(0)
    return DownstreamHead(n_inputs, hidden=hidden)


def test_downstream_head_default_width() -> None:
    head = DownstreamHead(6)
    assert head.hidden.out_features == 200
    assert head.output.out_features == 4


def test_downstream_prediction_changes_with_input() -> None:
    head = _head()
    head.warm_start(_WARM_START)
    first = head(torch.zeros(1, 6))
    second = head(torch.ones(1, 6))
    assert not torch.allclose(first, second)
    vgs = torch.linspace(0.0, 1.8, 5)[None]
    assert not torch.allclose(
        head.predict_current(torch.zeros(1, 6), vgs, vgs, _SCALE), head.predict_current(torch.ones(1, 6), vgs, vgs, _SCALE)
    )


def test_downstream_head_warm_start_sets_bias() -> None:
    head = _head()
    head.warm_start(_WARM_START)
    torch.testing.assert_close(head.output.bias.detach(), _WARM_START)


def test_downstream_head_warm_start_predicts_near_fit() -> None:
    head = _head()
    head.set_standardization(torch.randn(50, 6))
    head.warm_start(_WARM_START)
    predicted = head(torch.randn(20, 6)).detach()
    assert float((predicted - _WARM_START).abs().max()) < 0.5


def test_downstream_head_standardizes_inputs() -> None:
    features = torch.randn(30, 6) * 1e3 + 5e3
    head = _head()
    head.set_standardization(features)
    torch.testing.assert_close(head.input_mean, features.mean(dim=0))
    torch.testing.assert_close(head.input_std, features.std(dim=0, correction=0))


def test_downstream_head_trained_recovers_params() -> None:
    # the input distinguishes two device types, and the head must learn the parameters of each
    targets = torch.tensor(
        [[math.log(0.4), math.log(3e-4), math.log(0.1), math.log(2.0)],
         [math.log(0.6), math.log(1e-4), math.log(0.05), math.log(1.8)]]
    )  # fmt: skip
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    grid = torch.linspace(0.0, 1.8, 9).expand(2, -1)
    current = square_law_current(targets, grid, grid)
    scale = current_scale(current)
    head = _head(n_inputs=2, hidden=32)
    head.warm_start(to_normalized(targets, grid, grid, scale).mean(dim=0))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 1500)
    for _ in range(1500):
        loss = square_law_errors(head.predict_current(features, grid, grid, scale), current).loss.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()

    relative = (head.predict_params(features, grid, grid, scale).detach().exp() / targets.exp() - 1.0).abs()
    errors = square_law_errors(head.predict_current(features, grid, grid, scale).detach(), current)
    for name, column in zip(("Vt", "Kp", "eta"), relative[:, [0, 1, 3]].T, strict=True):
        assert float(column.max()) < 0.01, name
    # lambda moves the current least, so float32 Adam pins it less tightly than the direct fit does
    assert float(relative[:, 2].max()) < 0.05
    assert float(errors.relative_error_pct.max()) < 1.0


def test_fit_pca_components_orthonormal() -> None:
    features = torch.randn(40, 10, dtype=torch.float64)
    pca = fit_pca(features, 3)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(3, dtype=torch.float64))


def test_fit_pca_finds_dominant_direction() -> None:
    generator = torch.Generator().manual_seed(0)
    direction = torch.tensor([3.0, 4.0, 0.0]) / 5.0
    features = torch.randn(200, 1, generator=generator) * 10 * direction + 0.01 * torch.randn(
        200, 3, generator=generator
    )
    pca = fit_pca(features, 1)
    assert float((pca.components[0] - direction).abs().max()) < 1e-2


def test_fit_pca_projection_centred() -> None:
    features = torch.randn(30, 5) + 7.0
    projected = fit_pca(features, 2).project(features)
    assert projected.shape == (30, 2)
    assert float(projected.mean(dim=0).abs().max()) < 1e-4


def test_fit_pca_too_many_components_raises() -> None:
    with pytest.raises(ConfigError, match="lower model/latent_dim"):
        fit_pca(torch.randn(3, 10), 4)


def test_embed_restores_training_mode() -> None:
    torch.manual_seed(0)
    vae = VAE(8, widths=[6], latent_dim=2, dropout=0.5).train()
    inputs = torch.randn(5, 8)
    means = embed(vae, inputs, batch_size=2)
    assert vae.training
    torch.testing.assert_close(means, vae.eval().encode(inputs)[0])
