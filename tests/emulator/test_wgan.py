"""The WGAN-GP step: gradient penalty, energy-consistency term, and one real update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emulator.domains import get_domain
from emulator.models import MLPCritic, MLPCriticConfig, MLPGenerator, MLPGeneratorConfig
from emulator.wgan_gp import (
    STAT_NAMES,
    Batch,
    GANStep,
    condition_bins,
    crps_two_sample,
    energy_consistency,
    gradient_penalty,
    response_spread,
)


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_gradient_penalty_of_a_linear_critic(scale):
    """D(x) = w.x + b has gradient w everywhere, so GP = lambda (||w|| - 1)^2 exactly."""
    torch.manual_seed(0)
    lin = nn.Linear(20, 1)
    with torch.no_grad():
        lin.weight.mul_(scale / lin.weight.norm())
    real, fake = torch.randn(64, 20), torch.randn(64, 20)
    gp = gradient_penalty(lambda x: lin(x).squeeze(1), real, fake, gp_lambda=10.0)
    assert gp.item() == pytest.approx(10.0 * (scale - 1.0) ** 2, rel=1e-5, abs=1e-6)


def test_joint_gradient_penalty_takes_the_norm_over_samples_and_features():
    """D(x, f) = a.x + b.f: the joint GP is lambda (||(a, b)|| - 1)^2, whatever f's scale."""
    torch.manual_seed(0)
    a, b = torch.full((20,), 0.1), torch.full((5,), 0.2)  # ||(a, b)||^2 = 0.2 + 0.2
    real, fake = torch.randn(64, 20), torch.randn(64, 20)
    real_f, fake_f = 1e3 * torch.randn(64, 5), 1e3 * torch.randn(64, 5)
    gp = gradient_penalty(lambda x, f: x @ a + f @ b, (real, real_f), (fake, fake_f), gp_lambda=10.0)
    assert gp.item() == pytest.approx(10.0 * (0.4**0.5 - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_is_differentiable_in_the_critic_weights():
    lin = nn.Linear(4, 1)
    gp = gradient_penalty(lambda x: lin(x).squeeze(1), torch.randn(8, 4), torch.randn(8, 4), 10.0)
    gp.backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0


def test_energy_consistency_zero_for_matching_and_positive_for_shifted():
    torch.manual_seed(0)
    r = torch.rand(400) * 0.1 + 0.95
    feat = torch.rand(400)
    assert energy_consistency(r, r, feat, 10).item() == pytest.approx(0.0, abs=1e-6)
    shifted = energy_consistency(r + 0.02, r, feat, 10).item()
    assert shifted == pytest.approx(0.02, rel=1e-3)  # |Δmean| = 0.02 in every bin, std unchanged (float32)
    # relative: in units of the bins' real spread (~0.1 / sqrt(12)), so 100x narrower and 100x less shifted scores the same
    relative = energy_consistency(r + 0.02, r, feat, 10, "relative").item()
    assert relative == pytest.approx(0.02 / (0.1 / 12**0.5), rel=0.15)
    narrow = energy_consistency(0.01 * (r + 0.02), 0.01 * r, feat, 10, "relative").item()
    assert narrow == pytest.approx(relative, rel=1e-2)  # up to the 1e-6 regulariser


def test_consistency_of_several_statistics_is_the_mean_of_their_terms():
    """K statistics per sample (B, K): the term is the mean of the K single-statistic terms, and
    response_spread gives each its own spread per bin."""
    torch.manual_seed(1)
    real, fake, feat = torch.rand(300, 3), torch.rand(300, 3) * 1.2, torch.rand(300)
    for scale in ("absolute", "relative"):
        each = [energy_consistency(fake[:, k], real[:, k], feat, 10, scale) for k in range(3)]
        assert energy_consistency(fake, real, feat, 10, scale).item() == pytest.approx(
            sum(each).item() / 3, rel=1e-5
        )
    spread = response_spread(real, feat, 10)
    assert spread.shape == (10, 3)
    for k in range(3):
        torch.testing.assert_close(spread[:, k], response_spread(real[:, k], feat, 10))


def test_energy_consistency_skips_bins_with_too_few_samples():
    r = torch.linspace(0.9, 1.1, 100)
    feat = torch.full((100,), 0.05)
    feat[:3] = 0.95  # three samples alone in the last bin, badly off
    fake = r.clone()
    fake[:3] += 5.0
    assert energy_consistency(fake, r, feat, 10).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("centre", [0.0, 0.3])
def test_crps_is_smallest_for_the_true_spread_and_centre(centre):
    # y ~ N(centre, 1) at every condition; fakes ~ N(mu, s): the expected score is lowest at mu = centre, s = 1
    torch.manual_seed(0)
    n = 400_000
    y = torch.randn(n) + centre

    def score(mu: float, s: float) -> float:
        return crps_two_sample(mu + s * torch.randn(n), mu + s * torch.randn(n), y).mean().item()

    best = score(centre, 1.0)
    assert best == pytest.approx(1 / torch.pi**0.5, rel=0.01)  # the CRPS of a perfect Gaussian forecast
    for mu, s in [(centre, 0.5), (centre, 0.8), (centre, 1.25), (centre + 0.2, 1.0)]:
        assert score(mu, s) > best + 0.003, (mu, s)


def test_crps_reaches_the_energies_a_uniform_batch_leaves_out_of_the_moment_term():
    # 256 energies uniform in 1-100 GeV, bins in log E: the bins below ~6 GeV hold < 8 showers, so
    # the moment term gives those showers no gradient at all; the per-shower CRPS widens them
    torch.manual_seed(0)
    energy = torch.rand(256) * 99 + 1
    feature = torch.log10(energy) / 2
    bins = condition_bins(feature, 10)
    low = torch.bincount(bins, minlength=10)[bins] < 8  # showers in bins the moment term skips
    assert low.sum() >= 5 and energy[low].max() < 10
    width = torch.tensor(0.005, requires_grad=True)  # generated width of the low-energy showers only
    draws = 400  # independent batches at the same energies (the CRPS gradient is right on average)
    real = 1 + 0.01 * torch.randn(draws, 256)  # the data are twice as wide
    noise, noise2 = torch.randn(draws, 256), torch.randn(draws, 256)

    def fake(n: torch.Tensor) -> torch.Tensor:
        return torch.where(low, 1 + width * n, 1 + 0.01 * n)

    moments = sum(energy_consistency(fake(noise[i]), real[i], feature, 10) for i in range(draws))
    (g_moments,) = torch.autograd.grad(moments, width)
    assert g_moments.item() == 0.0
    (g_crps,) = torch.autograd.grad(crps_two_sample(fake(noise), fake(noise2), real).sum(), width)
    assert g_crps.item() < 0  # descending it widens the too-narrow low-energy showers


def test_crps_of_a_point_mass_is_the_absolute_error():
    f, y = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    assert torch.allclose(crps_two_sample(f, f, y), torch.tensor([0.5, 1.0]))


def test_response_spread_is_the_per_bin_std_with_a_fallback_for_empty_bins():
    torch.manual_seed(0)
    feat = torch.cat([torch.full((500,), 0.05), torch.full((500,), 0.55)])
    r = torch.cat([0.01 * torch.randn(500), 0.1 * torch.randn(500)])
    spread = response_spread(r, feat, 10)
    assert spread[0].item() == pytest.approx(r[:500].std().item(), rel=1e-5)
    assert spread[5].item() == pytest.approx(r[500:].std().item(), rel=1e-5)
    assert spread[3].item() == pytest.approx(r.std().item(), rel=1e-5)  # no samples: the overall spread


def _tiny_gan(energy_weight: float = 1.0, **kw) -> tuple[GANStep, Batch]:
    torch.manual_seed(0)
    calo = get_domain("calo")
    gen = MLPGenerator(MLPGeneratorConfig(508, 1, latent_dim=8, hidden=(16,)))
    critic = MLPCritic(MLPCriticConfig(507, 1, calo.critic_feature_dim, hidden=(16,)))
    gan = GANStep(gen, critic, calo, n_critic=2, energy_weight=energy_weight, **kw)
    e = torch.rand(32, 1) * 99 + 1
    x = torch.relu(torch.randn(32, 507)) * 5
    return gan, Batch(x, e, calo.condition_features(e))


@pytest.mark.parametrize("gp_space", ["input", "joint"])
def test_gan_step_updates_both_networks_and_reports_finite_losses(gp_space):
    gan, batch = _tiny_gan(gp_space=gp_space)
    g0 = [p.clone() for p in gan.generator.parameters()]
    d0 = [p.clone() for p in gan.critic.parameters()]
    stats = gan.step(lambda: batch).as_dict()
    assert set(stats) == set(STAT_NAMES)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, gan.generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, gan.critic.parameters(), strict=True))
    assert all(p.requires_grad for p in gan.critic.parameters()), "critic grads re-enabled after the G step"
    assert gan.opt_g.param_groups[0]["betas"] == (0.5, 0.9)


@pytest.mark.parametrize(("loss", "scale"), [("crps", "absolute"), ("crps", "relative"), ("moments+crps", "relative")])
def test_crps_energy_term_trains_the_generator(loss, scale):
    spread = torch.full((10,), 0.05) if scale == "relative" else None
    gan, batch = _tiny_gan(energy_loss=loss, energy_scale=scale, response_scale=spread)
    g0 = [p.clone() for p in gan.generator.parameters()]
    stats = gan.step(lambda: batch).as_dict()
    assert stats["energy"] > 0 and torch.isfinite(torch.tensor(stats["loss_g"]))
    assert any(not torch.equal(a, b) for a, b in zip(g0, gan.generator.parameters(), strict=True))


def test_relative_crps_needs_the_response_scale():
    with pytest.raises(ValueError, match="response_scale"):
        _tiny_gan(energy_loss="crps", energy_scale="relative")
    with pytest.raises(ValueError, match="energy_loss"):
        _tiny_gan(energy_loss="quantiles")


def test_energy_weight_needs_a_domain_response():
    class NoResponse:
        name = "x"

    gen = MLPGenerator(MLPGeneratorConfig(3, 1, latent_dim=2, hidden=(4,)))
    critic = MLPCritic(MLPCriticConfig(3, 1, hidden=(4,)))
    with pytest.raises(ValueError, match="consistency_statistics"):
        GANStep(gen, critic, NoResponse(), energy_weight=1.0)
