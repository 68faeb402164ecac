import pytest
import torch

from circtune.models.vae import ACTIVATIONS, VAE, vae_loss


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _vae(**overrides: object) -> VAE:
    settings: dict[str, object] = {"widths": [16, 8], "latent_dim": 3, "activation": "silu", "dropout": 0.0}
    settings.update(overrides)
    torch.manual_seed(0)
    return VAE(20, **settings)  # type: ignore[arg-type]


def test_vae_forward_shapes() -> None:
    output = _vae()(torch.randn(5, 20))
    assert output.reconstruction.shape == (5, 20)
    assert output.mu.shape == (5, 3)
    assert output.logvar.shape == (5, 3)


def test_vae_decoder_mirrors_encoder() -> None:
    vae = _vae(widths=[32, 16, 8])
    encoder = [(layer.in_features, layer.out_features) for layer in vae.encoder]
    decoder = [(layer.in_features, layer.out_features) for layer in vae.decoder]
    assert encoder == [(20, 32), (32, 16), (16, 8)]
    assert decoder == [(3, 8), (8, 16), (16, 32)]
    assert vae.to_output.out_features == 20


def test_vae_eval_mode_deterministic() -> None:
    vae = _vae(dropout=0.5).eval()
    x = torch.randn(4, 20)
    first = vae(x)
    second = vae(x)
    assert torch.equal(first.reconstruction, second.reconstruction)
    assert torch.equal(first.mu, second.mu)


def test_vae_generator_makes_training_pass_repeatable() -> None:
    vae = _vae(dropout=0.3).train()
    x = torch.randn(4, 20)
    first = vae(x, generator=torch.Generator().manual_seed(7))
    second = vae(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.reconstruction, second.reconstruction)


def test_vae_encoding_depends_on_input() -> None:
    vae = _vae().eval()
    mu_a, _ = vae.encode(torch.zeros(1, 20))
    mu_b, _ = vae.encode(torch.ones(1, 20))
    assert not torch.allclose(mu_a, mu_b)


def test_vae_does_not_modify_input() -> None:
    x = torch.randn(3, 20)
    before = x.clone()
    _vae(dropout=0.5).train()(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_vae_activation_by_name(activation: str) -> None:
    output = _vae(activation=activation)(torch.randn(2, 20))
    assert torch.all(torch.isfinite(output.reconstruction))


def test_vae_loss_terms() -> None:
    vae = _vae().eval()
    x = torch.randn(6, 20)
    output = vae(x)
    loss = vae_loss(output, x, beta=0.5)
    expected_kl = (0.5 * (output.mu**2 + output.logvar.exp() - 1 - output.logvar)).sum(dim=1).mean()
    torch.testing.assert_close(loss.reconstruction, ((output.reconstruction - x) ** 2).mean())
    torch.testing.assert_close(loss.kl, expected_kl)
    torch.testing.assert_close(loss.total, loss.reconstruction + 0.5 * loss.kl)


def test_vae_loss_kl_zero_at_prior() -> None:
    x = torch.zeros(2, 4)
    output = type(_vae()(torch.zeros(1, 20)))(reconstruction=x, mu=torch.zeros(2, 3), logvar=torch.zeros(2, 3))
    assert float(vae_loss(output, x, beta=1.0).kl) == 0.0


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"widths": []}, "sizes must be positive"),
        ({"latent_dim": 0}, "sizes must be positive"),
        ({"activation": "swish2"}, "activation must be one of"),
        ({"dropout": 1.0}, "dropout must lie in"),
    ],
)
def test_vae_invalid_settings_raise(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _vae(**overrides)
