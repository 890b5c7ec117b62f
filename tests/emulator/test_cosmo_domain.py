"""The cosmo domain (64x64 density slices), its conv networks, and simulate -> train -> generate -> serve."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from emulator.domains import get_domain
from emulator.domains.cosmo import (
    BOX_SIZE,
    LOG_SPAN,
    PDF_CENTRES,
    PEAK_CENTRES,
    PK_BANDS,
    S_MAX,
    TRANSFORM_A,
    X_MAX,
)
from emulator.models import (
    ConvCritic,
    ConvCriticConfig,
    ConvGenerator,
    ConvGeneratorConfig,
    build_for_training,
    build_model,
)
from physics_data.cosmo.io import InvalidFieldFile, read_fields, write_fields
from pipelines.cli import main


@pytest.fixture
def cosmo():
    return get_domain("cosmo")


def _lognormal_maps(n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Non-negative maps with ~10 % exact zeros (voids) and a heavy tail up to ~1e3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.exp(torch.randn(n, 64, 64, generator=g, dtype=torch.float64) * 1.5 - 0.5)
    x = x * (torch.rand(n, 64, 64, generator=g) > 0.1)
    return x.clamp(max=1e3).to(dtype)


def test_cosmo_domain_matches_the_simulator_setup(cosmo):
    assert cosmo.sample_shape == (64, 64) and cosmo.file_formats == ("cosmo",)
    assert [(c.name, c.low, c.high) for c in cosmo.conditions] == [
        ("omega_m", 0.101, 0.487),
        ("sigma8", 0.487, 1.331),
    ]
    assert (cosmo.box_size, cosmo.redshift, cosmo.slice_thickness) == (256.0, 0.0, 16.0)
    assert set(cosmo.quick_val_observables) <= set(
        cosmo.observables(np.ones((1, 64, 64)) + 0.1, np.zeros((1, 2)))
    )


# float32: s = -1 + x/2a near empty pixels, so tiny densities keep ~1e-7 absolute, not relative, precision
@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, 1e-12, 0.0), (torch.float32, 2e-5, 1e-6)])
def test_transform_is_exactly_invertible(cosmo, dtype, rtol, atol):
    x = _lognormal_maps(8, dtype=dtype)
    s = cosmo.to_network(x, None)
    assert s.min() >= -1 and s.max() < 1
    back = cosmo.from_network(s, None)
    assert torch.equal(back == 0, x == 0), "empty pixels must stay exactly empty"
    torch.testing.assert_close(back, x, rtol=rtol, atol=atol)


def test_transform_formula(cosmo):
    x = torch.tensor([[0.0, 1.0, TRANSFORM_A, 3 * TRANSFORM_A]], dtype=torch.float64)
    s = cosmo.to_network(x, None)
    torch.testing.assert_close(s, 2 * x / (x + TRANSFORM_A) - 1)
    torch.testing.assert_close(s, torch.tensor([[-1.0, -0.6, 0.0, 0.5]], dtype=torch.float64))


def test_from_network_is_physical_for_any_output(cosmo):
    s = torch.randn(4, 64, 64) * 5  # far outside [-1, 1)
    x = cosmo.from_network(s, None)
    assert torch.isfinite(x).all() and (x >= 0).all() and x.max() <= X_MAX * (1 + 1e-6)
    assert (x[s <= -1] == 0).all() and X_MAX == pytest.approx(TRANSFORM_A * (1 + S_MAX) / (1 - S_MAX))


@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, 1e-12, 0.0), (torch.float32, 2e-5, 1e-6)])
def test_log10_density_variant_is_invertible_and_physical(dtype, rtol, atol):
    log = get_domain("cosmo", "log10_density")
    assert log.preprocessing["name"] == "log10_density" and log.preprocessing["L"] == LOG_SPAN
    x = _lognormal_maps(8, dtype=dtype).clamp(max=300.0)
    n = log.to_network(x, None)
    assert n.min() == -1 and n.max() < 1
    back = log.from_network(n, None)
    assert torch.equal(back == 0, x == 0), "empty pixels must stay exactly empty"
    torch.testing.assert_close(back, x, rtol=rtol, atol=atol)
    # every decade gets the same share of the network range: 1+δ = 0.1, 1, 10, 100 are 1/L apart
    decades = log.to_network(torch.tensor([0.1, 1.0, 10.0, 100.0], dtype=torch.float64), None)
    torch.testing.assert_close(
        torch.diff(decades), torch.full((3,), 1 / LOG_SPAN, dtype=torch.float64), rtol=0.02, atol=0
    )
    wild = log.from_network(torch.randn(4, 64, 64) * 5, None)
    assert torch.isfinite(wild).all() and (wild >= 0).all() and wild.max() <= 10 ** (LOG_SPAN * S_MAX)
    with pytest.raises(ValueError, match="unknown cosmo preprocessing 'nope'; choose one of rodriguez_s"):
        get_domain("cosmo", "nope")


def test_condition_features_map_ranges_to_unit_interval(cosmo):
    c = torch.tensor([[0.101, 0.487], [0.487, 1.331], [0.294, 0.909]])
    torch.testing.assert_close(
        cosmo.condition_features(c), torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    )


def test_conv_generator_output_is_physical_after_from_network(cosmo):
    torch.manual_seed(0)
    gen = build_for_training("ConvGenerator", cosmo.sample_shape, 2, latent_dim=8, hidden=(16, 8, 8, 4))
    assert isinstance(gen, ConvGenerator) and gen.config.base_shape == (8, 8)
    c = torch.tensor([[0.3, 0.8]]).repeat(6, 1)
    x = gen(torch.randn(6, 8), cosmo.condition_features(c))
    assert x.shape == (6, 64 * 64) and x.abs().max() < 1  # tanh: inside the transform's range
    maps = cosmo.from_network(x.view(6, 64, 64), c)
    assert maps.shape == (6, 64, 64) and (maps >= 0).all() and torch.isfinite(maps).all()
    assert maps.std() > 0, "random weights still give structured maps"
    rebuilt = build_model("ConvGenerator", json.loads(json.dumps(gen.config.to_dict())))
    rebuilt.load_state_dict(gen.state_dict())
    z, f = torch.randn(5, 8), torch.rand(5, 2)
    with torch.no_grad():
        full = rebuilt(z, f)
        rebuilt.inference_chunk = 2  # chunked inference must equal one pass
        torch.testing.assert_close(rebuilt(z, f), full)
    assert gen.flops_per_sample() > 0


@pytest.mark.parametrize("cond_embed", [0, 6])
def test_conv_generator_conditions_change_the_maps(cond_embed):
    torch.manual_seed(1)
    gen = ConvGenerator(ConvGeneratorConfig((32, 32), 2, latent_dim=4, hidden=(8, 4), cond_embed=cond_embed))
    assert gen.films[0].in_features == (cond_embed or 2) and (gen.embed is not None) == bool(cond_embed)
    with torch.no_grad():  # FiLM starts as the identity, so perturb it to see its effect
        for film in gen.films:
            film.weight.normal_()
    z = torch.randn(3, 4)
    a, b = gen(z, torch.zeros(3, 2)), gen(z, torch.ones(3, 2))
    assert not torch.allclose(a, b)


def test_conv_generator_global_offset_shifts_each_map_by_its_own_amount():
    """Off at the start (a warm start from a generator without it is the same function), then one level per map."""
    torch.manual_seed(2)
    config = {"sample_shape": (16, 16), "cond_dim": 2, "latent_dim": 4, "hidden": (8, 4), "output_activation": "none"}
    plain = ConvGenerator(ConvGeneratorConfig(**config))
    grown = ConvGenerator(ConvGeneratorConfig(**config, global_offset=True))
    grown.load_state_dict(grown.adapt_state_dict(plain.state_dict()))
    z, c = torch.randn(5, 4), torch.rand(5, 2)
    torch.testing.assert_close(grown(z, c), plain(z, c))
    with torch.no_grad():
        grown.offset.weight.normal_()
    shift = grown(z, c) - plain(z, c)
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))  # the same for every pixel of a map
    assert shift[:, 0].std() > 0.1  # and different from map to map


def test_conv_generator_stage_noise_starts_off_and_then_varies_the_fine_detail():
    """Noise maps per stage: zero strength at the start (a warm start is the same function); then the
    same latent vector with other noise gives other maps, whose mean level the noise hardly moves."""
    torch.manual_seed(3)
    config = {"sample_shape": (16, 16), "cond_dim": 2, "latent_dim": 4, "hidden": (8, 4), "output_activation": "none"}
    plain = ConvGenerator(ConvGeneratorConfig(**config, global_offset=True))
    grown = ConvGenerator(ConvGeneratorConfig(**config, global_offset=True, stage_noise=True))
    assert grown.noise_dim == 4 + 8 * 8 + 16 * 16 and plain.noise_dim == 4
    assert "stage_noise" not in plain.config.to_dict() and grown.config.to_dict()["stage_noise"] is True
    grown.load_state_dict(grown.adapt_state_dict(plain.state_dict()))
    z, c = torch.randn(5, 4), torch.rand(5, 2)
    noise_a, noise_b = torch.randn(5, grown.noise_dim - 4), torch.randn(5, grown.noise_dim - 4)
    torch.testing.assert_close(grown(torch.cat([z, noise_a], 1), c), plain(z, c))
    with torch.no_grad():
        for strength in grown.noise_strength:
            strength.fill_(0.05)  # x NOISE_STRENGTH_GAIN = 0.5
    a, b = grown(torch.cat([z, noise_a], 1), c), grown(torch.cat([z, noise_b], 1), c)
    assert (a - b).abs().mean() > 0.05  # the noise changes pixels ...
    assert (a - b).abs().mean() > 3 * (a.mean(1) - b.mean(1)).abs().mean()  # ... more than the map's level
    assert grown.flops_per_sample() == plain.flops_per_sample()  # the noise adds no multiply-adds



def test_conv_generator_stage_depth_adds_a_convolution_per_stage_and_round_trips():
    """stage_depth=2: one more conv (with its own norm and FiLM) at each of the len(hidden) grids;
    the saved config names it and rebuilds the same function; depth 1 configs do not mention it."""
    torch.manual_seed(4)
    config = {"sample_shape": (16, 16), "cond_dim": 2, "latent_dim": 4, "hidden": (8, 4), "output_activation": "none"}
    plain = ConvGenerator(ConvGeneratorConfig(**config))
    deep = ConvGenerator(ConvGeneratorConfig(**config, stage_depth=2))
    assert "stage_depth" not in plain.config.to_dict() and deep.config.to_dict()["stage_depth"] == 2
    assert [conv.in_channels for conv in deep.extra_convs] == [8, 4] and len(plain.extra_convs) == 0
    # the extra 3x3 convs at 8x8 (8 -> 8 channels) and 16x16 (4 -> 4) and their FiLMs (2 features -> 2 x C)
    added = 2 * 9 * (8 * 8 * 8 * 8 + 4 * 4 * 16 * 16) + 2 * 2 * (2 * 8 + 2 * 4)
    assert deep.flops_per_sample() - plain.flops_per_sample() == added
    rebuilt = build_model("ConvGenerator", deep.config.to_dict())
    rebuilt.load_state_dict(deep.state_dict())
    z, c = torch.randn(3, 4), torch.rand(3, 2)
    torch.testing.assert_close(rebuilt(z, c), deep(z, c))
    deep.load_state_dict(plain.state_dict(), strict=False)  # the same weights but for the extra convs ...
    assert not torch.allclose(deep(z, c), plain(z, c))  # ... which are in the path
    with pytest.raises(ValueError, match="stage_depth"):
        ConvGeneratorConfig(**config, stage_depth=0)

@pytest.mark.parametrize(("layer_norm", "cond_embed"), [(False, 0), (True, 0), (True, 5)])
def test_conv_critic_scores_each_sample_independently(layer_norm, cond_embed):
    torch.manual_seed(0)
    cfg = ConvCriticConfig(
        (64, 64), 2, feature_dim=3, hidden=(4, 8), layer_norm=layer_norm, cond_embed=cond_embed
    )
    critic = ConvCritic(cfg)
    x, c, f = torch.randn(4, 64 * 64), torch.rand(4, 2), torch.randn(4, 3)
    scores = critic(x, c, f)
    assert scores.shape == (4,)
    x2 = x.clone()
    x2[1:] = torch.randn(3, 64 * 64) * 10  # other samples change: sample 0's score must not (no batch norm)
    torch.testing.assert_close(critic(x2, c, f)[0], scores[0])
    assert not torch.allclose(critic(x, c.flip(0), f), scores), "the condition must reach the critic"
    with pytest.raises(ValueError, match="physics features"):
        critic(x, c)


def test_conv_configs_refuse_incompatible_shapes():
    with pytest.raises(ValueError, match="divisible by 16"):
        ConvGeneratorConfig((40, 40), 2, hidden=(8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="divisible by 8"):
        ConvCriticConfig((36, 36), 2, hidden=(4, 4, 4))
    with pytest.raises(ValueError, match="2D maps"):
        ConvCriticConfig((64,), 2)


def test_observables_of_white_noise(cosmo):
    rng = np.random.default_rng(0)
    maps = 1.0 + 0.1 * rng.standard_normal((40, 64, 64))
    obs = cosmo.observables(maps.reshape(40, -1), np.tile([[0.3, 0.8]], (40, 1)))
    assert all(v.shape == (40,) for v in obs.values())
    np.testing.assert_allclose(obs["mean"], 1.0, atol=0.01)
    np.testing.assert_allclose(obs["std"], 0.1, rtol=0.05)
    assert abs(obs["skewness"].mean()) < 0.02
    flat_power = np.log10(0.01 * (BOX_SIZE / 64) ** 2)  # white noise: P = σ² × pixel area, every band
    for name in ("log_pk_k1_2", "log_pk_k3_4", "log_pk_k5_8", "log_pk_k9_16", "log_pk_k17_32"):
        assert obs[name].mean() == pytest.approx(flat_power, abs=0.05), name
    assert obs["v0_nu0"].mean() == pytest.approx(0.5, abs=0.01)  # Gaussian: half the area above the mean
    assert obs["v2_nu0"].mean() == pytest.approx(0.0, abs=0.002)  # and zero genus at nu = 0
    assert (obs["n_peaks"] > 0).all()


def test_critic_features_are_the_observed_band_powers(cosmo):
    maps = _lognormal_maps(6, seed=2, dtype=torch.float32) + 0.05
    x = cosmo.to_network(maps, None).reshape(6, -1).requires_grad_(True)
    feats = cosmo.critic_features(x, None)
    assert feats.shape == (6, cosmo.critic_feature_dim)
    obs = cosmo.observables(maps.numpy(), np.zeros((6, 2)))
    expected = np.stack([obs[f"log_pk_k{lo}_{hi}"] for lo, hi in PK_BANDS], axis=1) - 2.0
    np.testing.assert_allclose(feats[:, : len(PK_BANDS)].detach().numpy(), expected, atol=2e-3)
    (grad,) = torch.autograd.grad(feats.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("preprocessing", ["rodriguez_s", "log10_density"])
def test_critic_features_see_the_mean_density_and_the_pixel_pdf(preprocessing):
    """After the band powers: 10 log10 of the mean 1+δ, then log1p(soft pixel counts) / 4 per PDF_CENTRES bin.

    Empty pixels (voids, 1+δ = 0) lie below the first bin and must count nowhere, not negatively.
    """
    cosmo = get_domain("cosmo", preprocessing)
    maps = _lognormal_maps(4, seed=3, dtype=torch.float32)
    x = cosmo.to_network(maps, None).reshape(4, -1).requires_grad_(True)
    feats = cosmo.critic_features(x, None)
    back = cosmo.from_network(x.detach().reshape(4, 64, 64), None)
    n = len(PK_BANDS)
    np.testing.assert_allclose(feats[:, n].detach().numpy(), 10 * np.log10(back.mean(dim=(1, 2)).numpy()), rtol=1e-5)
    counts = torch.expm1(4.0 * feats[:, n + 1 : n + 1 + len(PDF_CENTRES)].detach()).double()
    y = np.log10(back.flatten(1).double().numpy() + 10.0**-LOG_SPAN)  # empty pixels: -2.6, below every bin
    hats = np.clip(1 - np.abs(y[:, :, None] - np.array(PDF_CENTRES)) / 0.25, 0, None)  # triangular kernels
    np.testing.assert_allclose(counts.numpy(), hats.sum(axis=1), rtol=1e-3, atol=2e-2)
    assert (counts.sum(dim=1) < (back > 0).sum(dim=(1, 2))).all()  # the voids count nowhere
    (grad,) = torch.autograd.grad(feats[:, n:].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_critic_features_count_the_peaks_per_height_bin(cosmo):
    """The last features are log1p(soft peak counts) / 2 per PDF_CENTRES bin of peak height: close to the
    validation's hard count of 5x5 periodic maxima, and differentiable."""
    from physics_data.cosmo.observables import peak_counts

    maps = _lognormal_maps(4, seed=5, dtype=torch.float32)
    x = cosmo.to_network(maps, None).reshape(4, -1).requires_grad_(True)
    feats = cosmo.critic_features(x, None)
    soft = torch.expm1(2.0 * feats[:, len(PK_BANDS) + 1 + len(PDF_CENTRES) :].detach()).double().numpy()
    back = cosmo.from_network(x.detach().reshape(4, 64, 64), None).double().numpy()
    edges = 10.0 ** np.array([PDF_CENTRES[0] - 0.125, *(c + 0.125 for c in PDF_CENTRES)])
    hard = peak_counts(back, edges)  # nearest-bin counts; the soft ones split each peak between two bins
    assert soft.sum(axis=1) == pytest.approx(hard.sum(axis=1), rel=0.03)
    np.testing.assert_allclose(np.cumsum(soft, axis=1), np.cumsum(hard, axis=1), atol=0.05 * hard.sum(axis=1).max())
    (grad,) = torch.autograd.grad(feats[:, -len(PDF_CENTRES) :].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_consistency_statistics_are_log1p_peak_counts_and_ln_band_powers(cosmo):
    """What the trainer's consistency term matches: log1p(soft peak counts) per PEAK_CENTRES bin (0.15
    decades, centred on the validation's peak-height bins), close to the hard counts, then 4 ln P(k) in
    the PK_BANDS (as much weight as the 20 peak bins), the observables' band powers; differentiable."""
    from physics_data.cosmo.observables import peak_counts

    maps = _lognormal_maps(4, seed=6, dtype=torch.float32)
    x = cosmo.to_network(maps, None).reshape(4, -1).requires_grad_(True)
    stats = cosmo.consistency_statistics(x, None)
    n_peak_bins = len(PEAK_CENTRES)
    assert stats.shape == (4, n_peak_bins + len(PK_BANDS))
    back = cosmo.from_network(x.detach().reshape(4, 64, 64), None).double().numpy()
    obs = cosmo.observables(back, None)
    log10_pk = np.stack([obs[f"log_pk_k{lo}_{hi}"] for lo, hi in PK_BANDS], axis=1)
    np.testing.assert_allclose(stats.detach()[:, n_peak_bins:].double().numpy() / (4 * np.log(10.0)), log10_pk, atol=2e-3)
    soft = torch.expm1(stats.detach()[:, :n_peak_bins]).double().numpy()
    inside = (back >= 10.0 ** PEAK_CENTRES[0]) & (back <= 10.0 ** PEAK_CENTRES[-1])
    edges = 10.0 ** np.array([PEAK_CENTRES[0] - 0.075, *(c + 0.075 for c in PEAK_CENTRES)])
    hard = peak_counts(np.where(inside, back, 0.0), edges)
    np.testing.assert_allclose(np.cumsum(soft, axis=1), np.cumsum(hard, axis=1), atol=0.05 * hard.sum(axis=1).max())
    (grad,) = torch.autograd.grad(stats.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_consistency_statistics_move_an_isolated_peak_between_height_bins(cosmo):
    """One clear peak of height 1.06 on a flat 0.1 map counts ~1 in its own bin; its gradient says how to
    move it to the next bin up (raise the peak), which is what the consistency term follows."""
    maps = torch.full((1, 64, 64), 0.1)
    maps[0, 30, 30] = 10.0 ** PEAK_CENTRES[5]  # 1.06, the centre of bin 5
    x = cosmo.to_network(maps, None).reshape(1, -1).requires_grad_(True)
    counts = torch.expm1(cosmo.consistency_statistics(x, None))
    assert counts[0, 5].item() == pytest.approx(1.0, abs=0.02)
    (grad,) = torch.autograd.grad(counts[0, 6], x)
    at_peak = grad[0, 30 * 64 + 30].item()
    assert at_peak > 0 and grad[0].abs().sum().item() == pytest.approx(at_peak, rel=0.05)


def test_read_samples_refuses_another_box(cosmo, tmp_path: Path):
    maps = np.ones((2, 64, 64), np.float32)
    params = np.array([[0.3, 0.8, 128.0, 0.0]] * 2, np.float32)
    write_fields(tmp_path / "b.h5", maps, params, ("omega_m", "sigma8", "box_size", "redshift"))
    with pytest.raises(InvalidFieldFile, match=r"box_size 128 differs.*--box-size 256"):
        cosmo.read_samples(tmp_path / "b.h5")
    write_fields(tmp_path / "g.h5", np.ones((2, 32, 32)), params[:, :2], ("omega_m", "sigma8"))
    with pytest.raises(InvalidFieldFile, match="--grid 64"):
        cosmo.read_samples(tmp_path / "g.h5")


def test_writer_uses_the_simulator_layout(cosmo, tmp_path: Path):
    rng = np.random.default_rng(0)
    maps = rng.random((5, 64, 64)).astype(np.float32)
    cond = np.array([[0.2, 0.7]] * 5, np.float32)
    with cosmo.open_writer(
        tmp_path / "w.h5", "cosmo", {"model": "x", "first_row": 10}, compression=None
    ) as w:
        w.append(cond[:2], maps[:2].reshape(2, -1))
        w.append(cond[2:], maps[2:])
    fs = read_fields(tmp_path / "w.h5")
    assert fs.param_names == ("omega_m", "sigma8", "box_size", "redshift")
    np.testing.assert_array_equal(fs.fields, maps)
    np.testing.assert_allclose(fs.params, np.tile([0.2, 0.7, 256.0, 0.0], (5, 1)))
    assert fs.sim_index.tolist() == [10, 11, 12, 13, 14] and fs.attrs["model"] == "x"
    conditions, samples, _ = cosmo.read_samples(tmp_path / "w.h5", n=3)
    np.testing.assert_allclose(conditions, cond[:3])
    np.testing.assert_array_equal(samples, maps[:3])
    with pytest.raises(ValueError, match="choose one of cosmo"):
        cosmo.open_writer(tmp_path / "x.h5", "calogan", {})


def test_simulate_train_generate_and_serve(tmp_path: Path, capsys):
    from services.core.config import Settings
    from services.main import create_app

    data, models = tmp_path / "sims.h5", tmp_path / "models"
    assert main([
        "simulate", "cosmo", "--n-sims", "2", "--particles", "32", "--steps", "2", "--grid", "64",
        "--omega-m", "0.101:0.487", "--sigma8", "0.487:1.331", "--linear-power", "eh", "--device", "cpu",
        "--seed", "0", "--out", str(data), "--quiet",
    ]) == 0  # fmt: skip
    assert main([
        "train", "cosmo", "--data", str(data), "--out", str(models / "cosmo-tiny"), "--run-dir", str(tmp_path / "run"),
        "--steps", "2", "--batch-size", "16", "--device", "cpu", "--no-progress", "--set", "latent_dim=8",
        "--set", "g_hidden=8,8,4,4", "--set", "d_hidden=4,4,8", "--set", "n_critic=1", "--set", "val_every=2",
        "--set", "g_global_offset=true", "--set", "g_stage_noise=true",
    ]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and np.isfinite(summary["best_score"])
    config = json.loads((models / "cosmo-tiny" / "config.json").read_text())
    assert (config["model_class"], config["domain"], config["model_args"]["hidden"]) == (
        "ConvGenerator",
        "cosmo",
        [8, 8, 4, 4],
    )
    assert config["model_args"]["global_offset"] is True  # saved, so generate and serve rebuild it
    assert config["model_args"]["stage_noise"] is True

    out = tmp_path / "g.h5"
    assert main([
        "generate", "cosmo-tiny", "--models-path", str(models), "--n", "8", "--omega-m", "0.3", "--sigma8", "0.8",
        "--seed", "1", "--device", "cpu", "--quiet", "--out", str(out),
    ]) == 0  # fmt: skip
    fs = read_fields(out)
    assert fs.fields.shape == (8, 64, 64) and (fs.fields >= 0).all()
    np.testing.assert_allclose(fs.params, np.tile([0.3, 0.8, 256.0, 0.0], (8, 1)), rtol=1e-6)
    assert fs.attrs["model"] == "cosmo-tiny" and fs.attrs["box_size"] == 256.0

    settings = Settings(models_path=[models], device="cpu", max_n=1000, json_max_n=10)
    with TestClient(create_app(settings)) as client:
        listed = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["domain"], m["sample_shape"]) for m in listed] == [
            ("cosmo-tiny", "cosmo", [64, 64])
        ]
        r = client.get(
            "/v1/models/cosmo-tiny/samples", params={"n": 8, "seed": 1, "omega_m": 0.3, "sigma8": 0.8}
        )
        assert r.status_code == 200, r.text
        arr = np.load(io.BytesIO(r.content))
        assert arr.shape == (8, 2 + 64 * 64)
        np.testing.assert_allclose(arr[:, :2], np.tile([0.3, 0.8], (8, 1)), rtol=1e-6)
        np.testing.assert_allclose(
            arr[:, 2:].reshape(8, 64, 64), fs.fields, rtol=1e-5, atol=1e-6
        )  # same seed
        bad = client.get("/v1/models/cosmo-tiny/samples", params={"n": 2, "omega_m": 0.9, "sigma8": 0.8})
        assert bad.status_code == 422 and "omega_m" in bad.text
