"""The Domain registry, the calo domain's preprocessing, and a toy domain trained and sampled with no core change."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from emulator.conditions import parse_conditions
from emulator.domains import Condition, available_domains, get_domain, register_domain, unregister_domain
from emulator.domains.calo import SCALE, UNITS, X_MAX
from emulator.sampler import Sampler
from emulator.train import train_func


@pytest.fixture(params=UNITS)
def calo(request):
    """The calo domain with each preprocessing variant."""
    return get_domain("calo", request.param)


def _random_showers(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse non-negative values (~half exact zeros, fractions 1e-12..1 of E_inc) and energies 1-100 GeV."""
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(n, 1, generator=g, dtype=torch.float64) * 99 + 1
    frac = torch.exp(torch.randn(n, 507, generator=g, dtype=torch.float64) * 4 - 8).clamp(max=1.0)
    frac = frac * (torch.rand(n, 507, generator=g) < 0.5)
    return frac * e * 1000.0, e  # MeV


def test_calo_shape_and_conditions(calo):
    assert calo.sample_shape == (507,)
    (cond,) = calo.conditions
    assert (cond.name, cond.unit, cond.low, cond.high) == ("energy", "GeV", 1.0, 100.0)
    assert calo.file_formats[0] == "calogan"


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_preprocessing_is_exactly_invertible(calo, dtype, rtol):
    v, e = _random_showers(2000)
    v, e = v.to(dtype), e.to(dtype)
    x = calo.to_network(v, e)
    back = calo.from_network(x, e)
    assert torch.equal(back == 0, v == 0), "zeros must stay exact zeros and non-zeros non-zero"
    torch.testing.assert_close(back, v, rtol=rtol, atol=0.0)


def test_to_network_formula(calo):
    from physics_data.calo.geometry import READOUT_THRESHOLD_MEV

    e = torch.tensor([[50.0]], dtype=torch.float64)
    v = torch.zeros(1, 507, dtype=torch.float64)
    v[0, 300] = 0.25 * 50_000.0  # a quarter of the incident energy
    v[0, 301] = READOUT_THRESHOLD_MEV
    x = calo.to_network(v, e)
    if calo.preprocessing["name"] == "log1p_fraction":
        assert x[0, 300].item() == pytest.approx(np.log1p(0.25 / SCALE))
    else:  # in units of the readout threshold: a cell at threshold is at ln 2 at any energy
        assert x[0, 300].item() == pytest.approx(np.log1p(12_500.0 / READOUT_THRESHOLD_MEV))
        assert x[0, 301].item() == pytest.approx(np.log(2.0))
    assert (x[0, :300] == 0).all()


def test_unknown_preprocessing_variant_is_refused():
    with pytest.raises(ValueError, match="log1p_threshold"):
        get_domain("calo", "log1p_nope")
    assert get_domain("calo", "log1p_fraction") is get_domain("calo")  # the default is the registered one


def test_from_network_is_physical_for_any_output(calo):
    x = torch.randn(500, 507) * 30  # including huge and negative network values
    e = torch.rand(500, 1) * 99 + 1
    v = calo.from_network(x, e)
    assert torch.isfinite(v).all() and (v >= 0).all()
    assert (v[x <= 0] == 0).all()
    assert (v <= 1.5 * 1000 * e * 1.0001).all()  # capped: at most 1.5 x E_inc per value
    assert X_MAX == pytest.approx(np.log1p(1.5 / SCALE))


def test_condition_features_map_range_to_unit_interval(calo):
    f = calo.condition_features(torch.tensor([[1.0], [10.0], [100.0]]))
    torch.testing.assert_close(f, torch.tensor([[0.0], [0.5], [1.0]]))


def test_critic_features_match_observables(calo):
    from physics_data.calo.observables import compute_observables

    v, e = _random_showers(64, seed=3)
    x = calo.to_network(v.float(), e.float()).requires_grad_(True)
    feats = calo.critic_features(x, e.float())
    assert feats.shape == (64, calo.critic_feature_dim) and torch.isfinite(feats).all()
    obs = compute_observables(v[:, :504].numpy(), e[:, 0].numpy())
    np.testing.assert_allclose(feats[:, 0].detach().numpy(), obs["response"], rtol=1e-4)  # response
    np.testing.assert_allclose(feats[:, 4:7].detach().numpy()[:, 1], obs["f_1"], rtol=1e-4, atol=1e-6)
    for d in range(3):  # log-scaled E_ratio_d and sigma_d^2 (sigma in mm, features in units of 240 mm)
        e_ratio = 10 ** (3 * feats[:, 25 + d].detach().double().numpy()) - 1e-3
        np.testing.assert_allclose(e_ratio, obs[f"E_ratio_{d}"], rtol=1e-3, atol=1e-5)
        variance = 10 ** (3 * feats[:, 28 + d].detach().double().numpy()) - 1e-6
        np.testing.assert_allclose(np.sqrt(variance.clip(0)) * 240.0, obs[f"sigma_{d}"], rtol=1e-2, atol=0.05)
    (grad,) = torch.autograd.grad(feats.sum(), x)
    assert torch.isfinite(grad).all()
    resp = calo.energy_response(x, e.float())
    np.testing.assert_allclose(resp.detach().numpy(), obs["response"], rtol=1e-4)


def test_critic_sees_the_cell_energy_spectrum_per_layer(calo):
    from physics_data.calo.geometry import READOUT_THRESHOLD_MEV, layer_slices

    v, e = _random_showers(32, seed=5)
    v[:, :504] = torch.where(v[:, :504] >= READOUT_THRESHOLD_MEV, v[:, :504], 0.0)  # as the generator emits them
    v[:, :504] = v[:, :504].clamp(max=READOUT_THRESHOLD_MEV * math.expm1(14.0))  # inside the last bin centre
    frac = (v[:, :504] / (1000.0 * e)).float()
    spectrum = calo.cell_spectrum(frac, e.float())
    assert spectrum.shape == (32, 3, 28)
    for d, sl in enumerate(layer_slices()):  # every lit cell counts exactly once over the bins
        torch.testing.assert_close(spectrum[:, d].sum(dim=1), (v[:, sl] > 0).sum(dim=1).float(), rtol=1e-4, atol=1e-3)
    one = torch.zeros(1, 504)
    one[0, 0] = READOUT_THRESHOLD_MEV * math.expm1(6.5) / 10_000.0  # one layer-0 cell at bin centre 6.5, E = 10 GeV
    counts = calo.cell_spectrum(one, torch.tensor([[10.0]]))
    assert counts[0, 0, 12] == pytest.approx(1.0, abs=1e-4) and counts.sum() == pytest.approx(1.0, abs=1e-4)
    y = torch.log1p(frac * (1000.0 * e.float() / READOUT_THRESHOLD_MEV))  # triangular kernels, bin by bin
    hats = (1.0 - (y[:, :, None] - torch.arange(1, 29) * 0.5).abs() / 0.5).clamp_min(0.0)
    direct = torch.stack([hats[:, sl].sum(dim=1) for sl in layer_slices()], dim=1)
    torch.testing.assert_close(spectrum, direct, rtol=1e-4, atol=1e-4)
    x = calo.to_network(v.float(), e.float()).requires_grad_(True)
    feats = calo.critic_features(x, e.float())[:, 31:]
    torch.testing.assert_close(feats, torch.log1p(spectrum).flatten(1) * 0.5, rtol=1e-4, atol=1e-5)
    (grad,) = torch.autograd.grad(feats.sum(), x)
    assert torch.isfinite(grad).all() and grad[:, :504].abs().sum() > 0


def test_observables_use_cells_only(calo):
    v, e = _random_showers(10)
    obs = calo.observables(v.numpy(), e.numpy())
    v2 = v.clone()
    v2[:, 504:] += 1000.0  # overflow does not enter E_tot (CaloGAN definition)
    obs2 = calo.observables(v2.numpy(), e.numpy())
    np.testing.assert_array_equal(obs["E_tot"], obs2["E_tot"])


def test_writer_rejects_unknown_format(calo, tmp_path):
    with pytest.raises(ValueError, match="calogan"):
        calo.open_writer(tmp_path / "x.h5", "root", {})


def test_writer_roundtrip(calo, tmp_path):
    from physics_data.calo.io import read_showers

    v, e = _random_showers(20)
    with calo.open_writer(tmp_path / "x.h5", "calogan", {"model": "test"}) as w:
        w.append(e.float().numpy(), v.float().numpy())
    s = read_showers(tmp_path / "x.h5")
    np.testing.assert_array_equal(s.cells, v[:, :504].float().numpy())
    np.testing.assert_array_equal(s.overflow, v[:, 504:].float().numpy())
    np.testing.assert_array_equal(s.energy, e[:, 0].float().numpy())


def test_unknown_domain_lists_available():
    with pytest.raises(KeyError, match="calo"):
        get_domain("nope")


def test_register_rejects_incomplete_domain():
    class Half:
        name = "half"

    with pytest.raises(TypeError, match="missing"):
        register_domain(Half())


# -- a toy domain, registered through the public API only ---------------------------------------


class GaussianDomain:
    """2-D Gaussian samples centred on (mu, -mu), sigma 0.1, conditioned on mu in [-1, 1]."""

    name = "toy-gauss"
    sample_shape = (2,)
    conditions = (Condition("mu", "1", -1.0, 1.0, "mean of the first coordinate"),)
    layout = "2 float32 values"
    file_formats = ("npz",)

    def to_network(self, samples, conditions):
        return samples * 5.0

    def from_network(self, x, conditions):
        return x / 5.0

    def condition_features(self, conditions):
        return conditions * 0.5 + 0.5

    def observables(self, samples, conditions):
        return {"x0": samples[:, 0] - conditions[:, 0], "x1": samples[:, 1] + conditions[:, 0]}

    def read_samples(self, path, n=None):
        d = np.load(path)
        return d["conditions"][:n], d["samples"][:n], {"generator": "toy"}

    def open_writer(self, path, fmt, attrs, compression=None):
        raise NotImplementedError


@pytest.fixture
def toy_domain():
    dom = GaussianDomain()
    register_domain(dom)
    yield dom
    unregister_domain(dom.name)
    assert "toy-gauss" not in available_domains()


def test_toy_domain_trains_and_samples_with_the_same_code(toy_domain, tmp_path: Path):
    assert "toy-gauss" in available_domains()
    rng = np.random.default_rng(0)
    mu = rng.uniform(-1, 1, size=(600, 1)).astype(np.float32)
    samples = (np.concatenate([mu, -mu], axis=1) + 0.1 * rng.standard_normal((600, 2))).astype(np.float32)
    np.savez(tmp_path / "toy.npz", conditions=mu, samples=samples)
    summary = train_func(
        {
            "domain": "toy-gauss", "data": str(tmp_path / "toy.npz"), "out": str(tmp_path / "toy-model"),
            "run_dir": str(tmp_path / "run"), "steps": 4, "batch_size": 32, "n_critic": 2, "latent_dim": 4,
            "g_hidden": [16], "d_hidden": [16], "val_every": 2, "checkpoint_every": 2, "log_every": 1,
            "val_samples": 100, "progress": False,
        }
    )
    assert summary["steps"] == 4 and np.isfinite(summary["best_score"])
    sampler = Sampler.from_dir(tmp_path / "toy-model", device="cpu")
    assert sampler.domain is toy_domain
    spec = parse_conditions(toy_domain, {"mu": {"uniform": [-0.5, 0.5]}}, n=50)
    out = sampler.generate(50, spec, seed=1)
    assert out.samples.shape == (50, 2) and out.conditions.shape == (50, 1)
    assert (out.samples < 0).any(), "the toy generator has no ReLU output: values can be negative"


def test_calo_fused_decode_matches_network_output_then_from_network(calo):
    torch.manual_seed(0)
    raw = torch.randn(256, 507 + calo.generator_extra_outputs) * 3.0
    raw[:, 507:] = torch.randn(256, calo.generator_extra_outputs) * 0.5  # response (and the spot variant's per-layer outputs)
    e = torch.rand(256, 1) * 99.0 + 1.0
    torch.manual_seed(1)  # the Poisson-spot variant draws its counts from torch's generator: the same draws in both
    expected = calo.from_network(calo.network_output(raw, e), e)
    torch.manual_seed(1)
    fused = calo.decode(raw.clone(), e)
    # a Poisson count of thousands of spots (this test's random cells reach 60 GeV in one strip) can differ by one
    # between the two float paths (lambda in fractions of E or in MeV): 1 / 5000, then rescaled over the shower
    rtol = 5e-4 if calo.random_output else 1e-4
    torch.testing.assert_close(fused, expected, rtol=rtol, atol=1e-6)
    assert (fused[:, :504] == 0).sum() == (expected[:, :504] == 0).sum()  # same cells under threshold
    raw[:, :504] = -10.0
    raw[:, 7], raw[:, 507] = 1.0, 4.0  # one lit cell, response softplus(4 + 0.54) = 4.5 E: capped at 1.5 E
    torch.manual_seed(2)
    capped = calo.decode(raw.clone(), e)
    torch.manual_seed(2)
    torch.testing.assert_close(capped, calo.from_network(calo.network_output(raw, e), e), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(capped[:, 7], 1.5 * 1000.0 * e[:, 0])
    raw[:, 505] = 40.0  # a huge overflow value: capped at 1.5 E too
    capped = calo.decode(raw.clone(), e)
    torch.testing.assert_close(capped, calo.from_network(calo.network_output(raw, e), e), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(capped[:, 505], 1.5 * 1000.0 * e[:, 0])



def test_spot_variant_quantises_cells_in_learned_spot_energies():
    from emulator.domains.calo import SPOT_MEV_START
    from physics_data.calo.geometry import READOUT_THRESHOLD_MEV

    spots, plain = get_domain("calo", "log1p_threshold_spots"), get_domain("calo", "log1p_threshold")
    assert spots.generator_extra_outputs == 10 and "spots" in spots.preprocessing
    e = torch.tensor([[20.0]])
    cells_mev = torch.tensor([4.0, 11.0, 16.0, 23.0, 100.0]) * SPOT_MEV_START / 10.0
    raw = torch.full((1, 517), -10.0)
    raw[0, :5] = torch.log1p(cells_mev / READOUT_THRESHOLD_MEV)
    raw[0, 5] = math.log1p((20_000.0 - cells_mev.sum().item()) / READOUT_THRESHOLD_MEV)  # the core: sum = R E
    raw[0, 507:511] = 0.0  # response 1, spot energy SPOT_MEV_START in every layer
    raw[0, 511:514] = -10.0  # staircase slope ~0: whole spots
    raw[0, 514:] = 10.0  # cells below half a spot kept as they are
    out = spots.from_network(spots.network_output(raw, e), e)[0, :6]
    torch.testing.assert_close(out[:5] / out[1], torch.tensor([0.4, 1.0, 2.0, 2.0, 10.0]), rtol=1e-3, atol=0)
    assert out.sum().item() == pytest.approx(20_000.0, rel=1e-4)  # the response still fixes the total
    torch.testing.assert_close(spots.decode(raw.clone(), e)[0, :6], out, rtol=1e-4, atol=1e-4)
    raw[0, 511:] = 10.0  # slope ~1: no quantisation, the plain variant's shower
    torch.testing.assert_close(
        spots.network_output(raw, e), plain.network_output(raw[:, :508], e), rtol=1e-3, atol=1e-3
    )
    raw[0, 511:514], raw[0, 514:] = -10.0, -10.0  # faint scale ~0: the 0.4-spot cell goes under the threshold
    out = spots.from_network(spots.network_output(raw, e), e)[0, :6]
    assert out[0] == 0 and (out[1:] > 0).all()
    raw = raw.clone().requires_grad_(True)
    raw.data[0, 511:] = 0.0
    (grad,) = torch.autograd.grad(spots.network_output(raw, e)[0, :5].pow(2).sum(), raw)
    assert torch.isfinite(grad).all() and (grad[0, :5] != 0).all()  # the cells
    assert grad[0, 508] != 0 and grad[0, 511] != 0 and grad[0, 514] != 0  # spot energy, slope, faint scale


def test_whole_spot_variant_makes_every_front_layer_cell_a_whole_number_of_spots():
    from emulator.domains.calo import FRONT_SPOT_MEV
    from physics_data.calo.geometry import READOUT_THRESHOLD_MEV

    spots = get_domain("calo", "log1p_threshold_whole_spots")
    assert spots.generator_extra_outputs == 1 and "spots" in spots.preprocessing
    e = torch.tensor([[20.0]])
    cells_mev = torch.tensor([4.0, 11.0, 16.0, 23.0, 100.0]) * FRONT_SPOT_MEV / 10.0
    raw = torch.full((1, 508), -10.0)
    raw[0, :5] = torch.log1p(cells_mev / READOUT_THRESHOLD_MEV)
    raw[0, 300] = math.log1p(3.0 / READOUT_THRESHOLD_MEV)  # a faint middle-layer cell: left alone
    raw[0, 301] = math.log1p((20_000.0 - cells_mev.sum().item() - 3.0) / READOUT_THRESHOLD_MEV)  # sum = R E
    raw[0, 507] = 0.0  # response 1
    out = spots.from_network(spots.network_output(raw, e), e)[0]
    spot = out[1]
    assert spot.item() == pytest.approx(FRONT_SPOT_MEV, rel=1e-3)  # rescaled to the response: within 0.1 %
    torch.testing.assert_close(out[:5] / spot, torch.tensor([0.0, 1.0, 2.0, 2.0, 10.0]), rtol=1e-4, atol=0)
    assert out[300].item() == pytest.approx(3.0, rel=1e-3)
    assert out.sum().item() == pytest.approx(20_000.0, rel=1e-5)  # the response still fixes the total
    torch.testing.assert_close(spots.decode(raw.clone(), e)[0], out, rtol=1e-5, atol=1e-4)


def test_front_spot_energy_is_the_reference_simulators():
    """The quantum is the mode of the simulator's front-layer cell energies (e+ and gamma, 2 and 50 GeV)."""
    from emulator.domains.calo import FRONT_SPOT_MEV
    from physics_data.calo.geometry import layer_slices
    from physics_data.calo.simulate import simulate

    for particle in ("e+", "gamma"):
        for energy in (2.0, 50.0):
            cells = simulate(particle, 300, energy=energy, seed=1).cells[:, layer_slices()[0]].ravel()
            counts, edges = np.histogram(cells[cells > 0], bins=np.arange(4.0, 30.0, 1.0))
            assert abs(edges[counts.argmax()] + 0.5 - FRONT_SPOT_MEV) <= 1.0, (particle, energy)


def test_whole_spot_counts_get_the_finite_difference_gradient():
    """An empty cell's gradient is the step to one spot in network space, not the log's slope at zero."""
    from emulator.domains.calo import FRONT_SPOT_MEV as q
    from physics_data.calo.geometry import READOUT_THRESHOLD_MEV

    spots = get_domain("calo", "log1p_threshold_whole_spots")
    e = torch.tensor([[20.0]])
    raw = torch.full((1, 508), -10.0)
    raw[0, 0] = math.log1p(0.3 * q / READOUT_THRESHOLD_MEV)  # 0.3 spots: empty
    raw[0, 1] = math.log1p(3.1 * q / READOUT_THRESHOLD_MEV)  # 3.1 spots: three
    raw[0, 301] = math.log1p((20_000.0 - 3.4 * q) / READOUT_THRESHOLD_MEV)
    raw[0, 507] = 0.0
    raw.requires_grad_(True)
    x = spots.network_output(raw, e)
    assert x[0, 0] == 0
    (empty,) = torch.autograd.grad(x[0, 0], raw, retain_graph=True)
    (three,) = torch.autograd.grad(x[0, 1], raw)
    # d x_0 / d u_0 = log1p(q / T) (one spot), d u_0 / d raw_0 = (0.3 q + T) / q (times the response
    # rescaling's 1 - 0.3 q / 20 GeV)
    t = READOUT_THRESHOLD_MEV
    share = 1.0 - 0.3 * q / 20_000.0
    assert empty[0, 0].item() == pytest.approx(math.log1p(q / t) * (0.3 * q + t) / q * share, rel=1e-4)
    three_to_four = math.log((4.0 * q + t) / (3.0 * q + t))
    share = 1.0 - 3.1 * q / 20_000.0
    # (the rescaling to the response is held constant: what cell 1 gains, the core loses)
    assert three[0, 1].item() == pytest.approx(three_to_four * (3.1 * q + t) / q * share, rel=1e-4)
    assert torch.isfinite(empty).all() and torch.isfinite(three).all()


def test_whole_spots_pass_the_response_gradient_once():
    """The cells' sum is the response: its gradient is the response's, as without spots (the surrogate adds none)."""
    torch.manual_seed(0)
    e = torch.rand(64, 1) * 99.0 + 1.0
    raw = torch.randn(64, 508) * 3.0
    raw[:, 507] = torch.randn(64) * 0.5
    raw.requires_grad_(True)
    for name in ("log1p_threshold", "log1p_threshold_whole_spots"):
        calo = get_domain("calo", name)
        total = calo.from_network(calo.network_output(raw, e), e)[:, :504].sum()
        (grad,) = torch.autograd.grad(total, raw)
        response_slope = torch.sigmoid(raw[:, 507] + math.log(math.e - 1.0)) * 1000.0 * e[:, 0]
        torch.testing.assert_close(grad[:, 507], response_slope.detach(), rtol=1e-3, atol=1e-3)


def test_whole_spots_leave_a_shower_that_rounding_would_empty_unquantised():
    from physics_data.calo.geometry import READOUT_THRESHOLD_MEV

    spots, plain = get_domain("calo", "log1p_threshold_whole_spots"), get_domain("calo", "log1p_threshold")
    e = torch.tensor([[20.0]])
    raw = torch.full((1, 508), -10.0)
    raw[0, :4] = math.log1p(2.0 / READOUT_THRESHOLD_MEV)  # four front cells of a fifth of a spot each
    raw[0, 301] = math.log1p(0.01 / READOUT_THRESHOLD_MEV)  # and 10 keV deeper: not rescaled to hold all 8 MeV
    raw[0, 507] = math.log(math.expm1(8.0 / 20_000.0)) - math.log(math.e - 1.0)  # response: 8 MeV in all
    out = spots.from_network(spots.network_output(raw, e), e)
    torch.testing.assert_close(out, plain.from_network(plain.network_output(raw, e), e), rtol=1e-5, atol=1e-6)
    assert out[0, :4].sum().item() == pytest.approx(8.0, rel=1e-2) and out[0, 301] == 0  # under the threshold
    torch.testing.assert_close(spots.decode(raw.clone(), e), out, rtol=1e-5, atol=1e-6)


def _front_layer_raw(intensity_spots: list[float], n: int, energy_gev: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` identical raw outputs: front-layer cells of the given intensities (spots), the rest of the response
    in one middle-layer cell, response 1."""
    from emulator.domains.calo import FRONT_SPOT_MEV
    from physics_data.calo.geometry import READOUT_THRESHOLD_MEV

    cells_mev = torch.tensor(intensity_spots) * FRONT_SPOT_MEV
    raw = torch.full((n, 508), -10.0)
    raw[:, : len(intensity_spots)] = torch.log1p(cells_mev / READOUT_THRESHOLD_MEV)
    raw[:, 301] = math.log1p((1000.0 * energy_gev - cells_mev.sum().item()) / READOUT_THRESHOLD_MEV)
    raw[:, 507] = 0.0
    return raw, torch.full((n, 1), energy_gev)


def test_poisson_spots_draw_each_front_cell_a_poisson_count_of_whole_spots():
    from emulator.domains.calo import FRONT_SPOT_MEV

    spots = get_domain("calo", "log1p_threshold_poisson_spots")
    assert spots.random_output and "Poisson" in spots.preprocessing["spots"]
    assert not get_domain("calo", "log1p_threshold_whole_spots").random_output
    intensity = [0.3, 1.0, 4.0, 25.0]
    raw, e = _front_layer_raw(intensity, 4000)
    out = spots.from_network(spots.network_output(raw, e, torch.Generator().manual_seed(3)), e)
    torch.testing.assert_close(out[:, :504].sum(dim=1), torch.full((4000,), 20_000.0), rtol=1e-5, atol=0)  # response
    counts = torch.poisson(torch.tensor(intensity).expand(4000, 4), torch.Generator().manual_seed(3))
    spot = out[:, 1:4].sum(dim=1) / counts[:, 1:].sum(dim=1)  # the draw's spot energy, q up to the rescaling
    assert torch.all((spot / FRONT_SPOT_MEV - 1).abs() < 0.02)  # the draw's excess (< 5 sigma: 1.6 %) rescaled away
    torch.testing.assert_close(out[:, :4], counts * spot[:, None], rtol=1e-4, atol=1e-3)
    assert (out[:, 4:288] == 0).all()
    lam = torch.tensor(intensity)
    assert torch.all((counts.mean(dim=0) - lam).abs() < 4 * (lam / 4000).sqrt())  # Poisson: mean = variance = u
    assert torch.all((counts.var(dim=0) / lam - 1).abs() < 0.15)


def test_poisson_spots_are_fixed_by_the_generator_and_match_in_decode():
    spots = get_domain("calo", "log1p_threshold_poisson_spots")
    raw, e = _front_layer_raw([0.5, 2.0, 7.0], 500)
    a = spots.decode(raw.clone(), e, torch.Generator().manual_seed(5))
    b = spots.decode(raw.clone(), e, torch.Generator().manual_seed(5))
    c = spots.decode(raw.clone(), e, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = spots.network_output(raw, e, torch.Generator().manual_seed(5))
    torch.testing.assert_close(spots.from_network(x, e), a, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("energy_gev", [2.0, 5.0 * 8**0.5, 80.0])
def test_middle_layer_spots_ramp_in_with_energy_and_match_in_decode(energy_gev):
    """log1p_threshold_poisson_spots_middle: a middle-layer cell is (1 - g) cell + g n q, g = 0 at <= 5 GeV,
    1/2 at sqrt(5 * 40) GeV, 1 at >= 40 GeV; decode draws the same as network_output."""
    from emulator.domains.calo import FRONT_SPOT_MEV, MIDDLE_SPOT_MEV, READOUT_THRESHOLD_MEV

    domain = get_domain("calo", "log1p_threshold_poisson_spots_middle")
    assert domain.random_output and "middle-layer" in domain.preprocessing["spots"]
    n, cell_mev = 3000, 0.7 * MIDDLE_SPOT_MEV
    raw, e = _front_layer_raw([3.0], n, energy_gev)
    raw[:, 300] = math.log1p(cell_mev / READOUT_THRESHOLD_MEV)  # one middle-layer cell of 0.7 spots
    out = domain.from_network(domain.network_output(raw, e, torch.Generator().manual_seed(1)), e)
    torch.testing.assert_close(out[:, :504].sum(dim=1), torch.full((n,), 1000.0 * energy_gev), rtol=1e-5, atol=0)
    gate = min(max(math.log(energy_gev / 5.0) / math.log(8.0), 0.0), 1.0)
    # each shower is rescaled to its response again, by a factor within ~2 % of 1 (the draws' excess)
    if gate == 0:  # untouched: rescaled like the rest of the middle layer (cell 301)
        rest = 1000.0 * energy_gev - 3.0 * FRONT_SPOT_MEV
        torch.testing.assert_close(out[:, 300] / out[:, 301], torch.full((n,), cell_mev / rest), rtol=1e-4, atol=0)
    else:
        counts = (out[:, 300] - (1 - gate) * cell_mev) / (gate * MIDDLE_SPOT_MEV)
        assert torch.allclose(counts, counts.round(), atol=0.15)  # whole spots
        assert abs(counts.round().mean().item() - 0.7) < 4 * (0.7 / n) ** 0.5  # Poisson(0.7)
    torch.testing.assert_close(
        domain.decode(raw.clone(), e, torch.Generator().manual_seed(1)), out, rtol=1e-4, atol=1e-3
    )


def test_middle_layer_spot_choice_lights_a_cell_as_the_mixture_does():
    """..._middle_choice: at g = 1/2 a middle-layer cell of 0.7 spots is the generator's (lit) or whole spots (lit with
    probability 1 - e^-0.7), each half the time; decode draws the same."""
    from emulator.domains.calo import MIDDLE_SPOT_MEV, READOUT_THRESHOLD_MEV

    domain = get_domain("calo", "log1p_threshold_poisson_spots_middle_choice")
    n = 4000
    raw, e = _front_layer_raw([3.0], n, 5.0 * 8**0.5)
    raw[:, 300] = math.log1p(0.7 * MIDDLE_SPOT_MEV / READOUT_THRESHOLD_MEV)
    out = domain.from_network(domain.network_output(raw, e, torch.Generator().manual_seed(2)), e)
    lit = (out[:, 300] > 0).double().mean().item()
    expected = 0.5 + 0.5 * (1 - math.exp(-0.7))
    assert abs(lit - expected) < 4 * (expected * (1 - expected) / n) ** 0.5
    torch.testing.assert_close(
        domain.decode(raw.clone(), e, torch.Generator().manual_seed(2)), out, rtol=1e-4, atol=1e-3
    )
