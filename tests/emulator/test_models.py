"""Generator and critic architectures: constructor = saved config, no batch norm, physical outputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from emulator.domains import get_domain
from emulator.models import (
    ConvCritic,
    ConvCriticConfig,
    MLPCritic,
    MLPCriticConfig,
    MLPGenerator,
    MLPGeneratorConfig,
    build_model,
)
from emulator.models.mlp_generator import NOISE_SIGMA_GAIN, noise_sigma


def test_critic_has_no_batch_norm():
    critic = MLPCritic(MLPCriticConfig(507, 1, 24, layer_norm=True))
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)
    assert not any(isinstance(m, norms) for m in critic.modules())


def test_critic_scores_are_per_sample():
    """Without batch statistics one sample's score does not depend on the rest of the batch."""
    torch.manual_seed(0)
    critic = MLPCritic(MLPCriticConfig(10, 1, 3, hidden=(8, 8), layer_norm=True))
    x, c, f = torch.randn(6, 10), torch.rand(6, 1), torch.randn(6, 3)
    torch.testing.assert_close(critic(x, c, f)[:2], critic(x[:2], c[:2], f[:2]))


def test_critic_requires_its_features():
    critic = MLPCritic(MLPCriticConfig(10, 1, 3, hidden=(8,)))
    with pytest.raises(ValueError, match="3 physics features"):
        critic(torch.randn(2, 10), torch.rand(2, 1))


@pytest.mark.parametrize("cond_embed", [0, 4])
def test_critic_grown_by_appended_features_scores_as_before(cond_embed):
    """A warm start adds physics features at zero weight: same scores, whatever the new features are."""
    torch.manual_seed(0)
    old = MLPCritic(MLPCriticConfig(10, 1, 3, hidden=(8,), cond_embed=cond_embed))
    new = MLPCritic(MLPCriticConfig(10, 1, 5, hidden=(8,), cond_embed=cond_embed))
    new.load_state_dict(new.adapt_state_dict(old.state_dict()))
    x, c, f = torch.randn(6, 10), torch.rand(6, 1), torch.randn(6, 3)
    torch.testing.assert_close(new(x, c, torch.cat([f, torch.randn(6, 2)], 1)), old(x, c, f))
    with pytest.raises(ValueError, match="appended physics features"):
        old.adapt_state_dict(new.state_dict())


@pytest.mark.parametrize("head", [(), (8,)])
def test_conv_critic_grown_by_appended_features_scores_as_before(head):
    """The conv critic's features enter its first fully connected layer; grown ones start at zero weight."""
    torch.manual_seed(0)
    config = {"sample_shape": (16, 16), "cond_dim": 2, "hidden": (2, 4), "head": head}
    old = ConvCritic(ConvCriticConfig(feature_dim=3, **config))
    new = ConvCritic(ConvCriticConfig(feature_dim=5, **config))
    new.load_state_dict(new.adapt_state_dict(old.state_dict()))
    x, c, f = torch.randn(6, 256), torch.rand(6, 2), torch.randn(6, 3)
    torch.testing.assert_close(new(x, c, torch.cat([f, torch.randn(6, 2)], 1)), old(x, c, f))
    with pytest.raises(ValueError, match="appended physics features"):
        old.adapt_state_dict(new.state_dict())


def test_generator_outputs_are_non_negative_physical_energies():
    torch.manual_seed(0)
    gen = MLPGenerator(MLPGeneratorConfig(507, 1, latent_dim=16, hidden=(32, 32)))
    calo = get_domain("calo")
    e = torch.rand(256, 1) * 99 + 1
    x = gen(torch.randn(256, 16), calo.condition_features(e))
    assert (x >= 0).all() and (x == 0).any(), "final ReLU: non-negative with exact zeros"
    v = calo.from_network(x, e)
    assert (v >= 0).all() and torch.isfinite(v).all()


def test_generator_gets_the_condition_in_every_block():
    gen = MLPGenerator(MLPGeneratorConfig(5, 2, latent_dim=4, hidden=(8, 8)))
    assert [m.in_features for m in gen.linears] == [4 + 2, 8 + 2]
    assert gen.out.in_features == 8 + 2


def test_build_model_roundtrips_the_saved_config():
    cfg = MLPGeneratorConfig(507, 1, latent_dim=32, hidden=(64, 64), layer_norm=False)
    gen = build_model("MLPGenerator", cfg.to_dict())
    assert gen.config == cfg
    with pytest.raises(ValueError, match="unknown model class"):
        build_model("Nope", {})
    with pytest.raises(ValueError, match="bad constructor arguments"):
        build_model("MLPGenerator", {**cfg.to_dict(), "bogus": 1})


def test_flops_count_from_layer_shapes():
    gen = MLPGenerator(MLPGeneratorConfig(7, 1, latent_dim=3, hidden=(5,)))
    assert gen.flops_per_sample() == 2 * ((3 + 1) * 5 + (5 + 1) * 7)


def test_extra_head_isolates_a_loss_on_the_extra_outputs_from_the_main_layers():
    cfg = MLPGeneratorConfig(508, 1, latent_dim=8, hidden=(16, 16), head_outputs=1, head_hidden=(8,))
    gen = MLPGenerator(cfg)
    z, c = torch.randn(32, 8), torch.rand(32, 1)
    out = gen(z, c)
    assert out.shape == (32, 508)
    out[:, -1].square().sum().backward()  # a loss on the extra output only (like the energy term)
    main = [*gen.linears, gen.out]
    assert all(m.weight.grad is None or not m.weight.grad.any() for m in main)
    assert gen.extra_out.weight.grad.abs().sum() > 0
    rebuilt = build_model("MLPGenerator", cfg.to_dict())  # the head survives the saved config
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in gen.parameters())


def test_condition_embedding_feeds_the_trunk_and_the_head_separately():
    """cond_embed: the condition is embedded for the trunk and (separately) for the head; FiLM starts as identity."""
    torch.manual_seed(0)
    cfg = MLPGeneratorConfig(508, 1, latent_dim=8, hidden=(16, 16), head_outputs=1, head_hidden=(8,), cond_embed=4)
    gen = MLPGenerator(cfg)
    assert [m.in_features for m in gen.linears] == [8 + 4, 16 + 4]
    assert gen.extra_embed is not gen.embed
    z, c = torch.randn(32, 8), torch.rand(32, 1)
    gen(z, c)[:, -1].square().sum().backward()  # a loss on the head only never reaches the trunk's embedding
    assert gen.embed.linear.weight.grad is None or not gen.embed.linear.weight.grad.any()
    assert gen.extra_embed.linear.weight.grad.abs().sum() > 0
    assert all(not f.linear.weight.any() for f in gen.films)  # zero-initialised FiLM: identity at start
    rebuilt = build_model("MLPGenerator", cfg.to_dict())
    rebuilt.load_state_dict(gen.state_dict())
    torch.testing.assert_close(rebuilt(z, c), gen(z, c))


def test_film_lets_the_condition_scale_hidden_units():
    from emulator.models.conditioning import FiLM

    film = FiLM(2, 3)
    with torch.no_grad():
        film.linear.weight[0, 0] = 1.0  # gamma_0 = e_0
    h, e = torch.ones(2, 3), torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    torch.testing.assert_close(film(h, e)[:, 0], torch.tensor([1.0, 3.0]))
    with torch.no_grad():  # the fused sampling path gives the same result
        film.linear.bias.copy_(torch.arange(6.0))
        h = torch.randn(2, 3)
        fused = film(h, e)
    with torch.enable_grad():
        torch.testing.assert_close(fused, film(h, e).detach())


def test_critic_condition_embedding_changes_only_the_condition_inputs():
    critic = MLPCritic(MLPCriticConfig(10, 2, 3, hidden=(8, 8), cond_embed=5))
    assert [m.in_features for m in critic.linears] == [10 + 3 + 5, 8 + 5]
    assert critic(torch.randn(4, 10), torch.rand(4, 2), torch.randn(4, 3)).shape == (4,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # v1.0: raw condition, LayerNorm, ReLU output
        {"head_outputs": 1, "head_hidden": (8,), "output_activation": "none"},  # v1.1.0
        {"head_outputs": 1, "head_hidden": (8, 8), "cond_embed": 4, "output_activation": "none"},  # v1.2.0
        {"cond_embed": 4, "layer_norm": False},
        {"head_outputs": 1, "head_hidden": (8,), "cond_embed": 4, "output_noise": 0.1},  # v1.5.0
        {"output_noise": 0.3},
        {"cond_embed": 4, "output_noise": 0.3, "output_noise_max": 1.0},
    ],
)
def test_sampling_form_computes_the_same_function(kwargs):
    """for_sampling() folds LayerNorm's affine into FiLM and fuses the condition terms: same outputs."""
    torch.manual_seed(0)
    gen = MLPGenerator(MLPGeneratorConfig(20, 1, latent_dim=8, hidden=(16, 16), **kwargs))
    with torch.no_grad():  # move every parameter off its initial value (FiLM starts at zero, LayerNorm at 1/0)
        for p in gen.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z = torch.randn(64, gen.noise_dim)
    for c in (torch.rand(64, 1), torch.full((64, 1), 0.7)):  # per-sample conditions; one for all (broadcast)
        with torch.inference_mode():
            expected, got = gen(z, c), gen.for_sampling()(z, c)
        assert got.shape == expected.shape and got.is_contiguous()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_output_noise_reaches_outputs_below_zero_for_every_latent():
    """A switched-off output (pre-activation < 0 for every z) gets a gradient only through the noise."""
    torch.manual_seed(0)
    for sigma, expect_grad in ((0.0, False), (0.5, True)):
        gen = MLPGenerator(MLPGeneratorConfig(6, 1, latent_dim=4, hidden=(8,), output_noise=sigma))
        with torch.no_grad():
            gen.out.weight.zero_()
            gen.out.bias.fill_(-0.3)  # every output switched off, whatever z
        z = torch.randn(512, gen.noise_dim)
        assert gen.noise_dim == 4 + (6 if sigma else 0)
        gen(z, torch.rand(512, 1)).sum().backward()
        assert bool(gen.out.bias.grad.abs().gt(0).all()) is expect_grad


def test_bounded_output_noise_starts_at_its_sigma_and_never_exceeds_the_bound():
    torch.manual_seed(0)
    gen = MLPGenerator(MLPGeneratorConfig(6, 1, latent_dim=4, hidden=(8,), output_noise=0.3, output_noise_max=1.0))
    c = torch.rand(256, 1)
    with torch.no_grad():
        sigma = noise_sigma(NOISE_SIGMA_GAIN * gen.noise_log_sigma(c), 1.0)
        torch.testing.assert_close(sigma, torch.full_like(sigma, 0.3))
    gen(torch.randn(256, gen.noise_dim), c).sum().backward()  # trainable: no in-place op on a traced tensor
    assert gen.noise_log_sigma.bias.grad.abs().sum() > 0
    with torch.no_grad():
        gen.noise_log_sigma.bias.fill_(10.0)  # far past the bound: sigma saturates at 1
        gen.out.weight.zero_()
        gen.out.bias.fill_(-1.0)
        x = gen(torch.randn(20_000, gen.noise_dim), torch.rand(20_000, 1))
    lit = (x > 0).float().mean().item()  # P(-1 + sigma n > 0) = P(n > 1) = 0.159 at sigma = 1
    assert abs(lit - 0.1587) < 0.01
    with pytest.raises(ValueError, match="output_noise_max"):
        MLPGeneratorConfig(6, 1, output_noise=1.0, output_noise_max=1.0)


def test_output_noise_is_conditioned_and_added_to_old_weights_at_its_initial_sigma():
    torch.manual_seed(0)
    old = MLPGenerator(MLPGeneratorConfig(6, 1, latent_dim=4, hidden=(8,), cond_embed=3))
    new = MLPGenerator(MLPGeneratorConfig(6, 1, latent_dim=4, hidden=(8,), cond_embed=3, output_noise=0.2))
    new.load_state_dict(new.adapt_state_dict(old.state_dict()))
    assert [n for n, _ in new.named_parameters()][: len(list(old.parameters()))] == [
        n for n, _ in old.named_parameters()
    ], "noise parameters come last: optimizer state indices of the old ones are kept"
    c = torch.rand(32, 1)
    z = torch.randn(32, new.noise_dim)
    with torch.no_grad():
        torch.testing.assert_close(NOISE_SIGMA_GAIN * new.noise_log_sigma(new.embed(c)), torch.full((32, 6), math.log(0.2)))
        without_noise = new(torch.cat([z[:, :4], torch.zeros(32, 6)], 1), c)
        torch.testing.assert_close(without_noise, old(z[:, :4], c))
