"""Physics of the reference shower simulator: response, resolution, depth, lateral spread, pions."""

from __future__ import annotations

import numpy as np
import pytest

from physics_data.calo.geometry import LAYERS, STACK_X0, from_flat
from physics_data.calo.observables import compute_observables
from physics_data.calo.simulate import (
    PARTICLES,
    _em_profile,
    iter_showers,
    parse_energy,
    simulate,
    simulate_showers,
)


def _fixed(particle: str, energy: float, n: int, seed: int = 0):
    showers = simulate_showers(particle, np.full(n, energy), np.random.default_rng(seed))
    return showers, compute_observables(showers.cells, showers.energy)


@pytest.fixture(scope="module")
def em_scan():
    """Positron response at several energies (GeV -> observables)."""
    return {e: _fixed("e+", e, 1500, seed=int(e))[1] for e in (2.0, 8.0, 32.0, 100.0)}


def test_em_response_is_total_deposit_minus_leakage(em_scan):
    for energy, obs in em_scan.items():
        mean = obs["response"].mean()
        assert 0.98 < mean < 1.0, f"{energy} GeV: mean E_tot/E_inc {mean:.4f}"


def test_em_resolution_has_stochastic_term(em_scan):
    energies = np.array(sorted(em_scan))
    rel = np.array([em_scan[e]["response"].std() / em_scan[e]["response"].mean() for e in energies])
    assert np.all(np.diff(rel) < 0), f"resolution must improve with energy: {rel}"
    # fit sigma/E = a / sqrt(E) (+) b; the stochastic term dominates below 30 GeV
    design = np.stack([1.0 / energies, np.ones_like(energies)], axis=1)
    (a2, b2), *_ = np.linalg.lstsq(design, rel**2, rcond=None)
    assert 0.012 < np.sqrt(a2) < 0.035, f"stochastic term {np.sqrt(a2):.4f} /sqrt(GeV)"
    assert b2 < (0.01) ** 2


def test_longitudinal_maximum_moves_like_log_energy():
    rng = np.random.default_rng(3)
    t_max = {e: np.median(_em_profile(np.full(4000, e), np.zeros(4000), rng).T) for e in (5.0, 50.0)}
    # T = ln(E/Ec) - const: one X0 per e-fold of energy
    assert t_max[50.0] - t_max[5.0] == pytest.approx(np.log(10.0), abs=0.15)
    depth = {e: _fixed("e+", e, 800, seed=1)[1]["shower_depth"].mean() for e in (2.0, 10.0, 50.0)}
    slope1 = (depth[10.0] - depth[2.0]) / np.log(5.0)
    slope2 = (depth[50.0] - depth[10.0]) / np.log(5.0)
    assert slope1 > 0 and slope2 > 0


def test_photons_start_deeper_than_positrons():
    for energy in (10.0, 50.0):
        e_obs = _fixed("e+", energy, 1500, seed=5)[1]
        g_obs = _fixed("gamma", energy, 1500, seed=6)[1]
        assert g_obs["f_0"].mean() < e_obs["f_0"].mean() - 0.05
        assert g_obs["shower_depth"].mean() > e_obs["shower_depth"].mean()


def test_em_lateral_containment():
    showers, obs = _fixed("e+", 50.0, 1000, seed=7)
    layer1 = from_flat(showers.cells)[1]
    core = layer1[:, 4:8, 4:8].sum(axis=(1, 2))  # +-80 mm around the axis, ~2.2 Moliere radii
    assert (core / layer1.sum(axis=(1, 2))).mean() > 0.9
    assert (showers.overflow.sum(axis=1) / 50_000.0).mean() < 0.01
    # widths along axis 0 are a fraction of a 40 mm cell, not the whole window
    assert 15.0 < obs["sigma_1"].mean() < 45.0


def test_pions_respond_less_and_fluctuate_more():
    _, pi = _fixed("pi+", 50.0, 3000, seed=8)
    _, ep = _fixed("e+", 50.0, 1000, seed=9)
    assert pi["response"].mean() < 0.7 * ep["response"].mean()
    rel_pi = pi["response"].std() / pi["response"].mean()
    rel_e = ep["response"].std() / ep["response"].mean()
    assert rel_pi > 10 * rel_e
    # the stack is 1.28 interaction lengths deep: exp(-1.28) = 28 % pass through as MIPs (~0.27 GeV)
    pass_through = (pi["E_tot"] < 500.0).mean()
    assert 0.22 < pass_through < 0.34
    # pions deposit deeper than positrons
    assert pi["shower_depth"].mean() > ep["shower_depth"].mean()


def test_pass_through_pion_deposits_mip_energy():
    _, obs = _fixed("pi+", 20.0, 3000, seed=10)
    mip = obs["E_tot"][obs["E_tot"] < 500.0]
    assert 200.0 < np.median(mip) < 320.0  # ~270 MeV over 30.8 X0 (reference section 1)
    assert STACK_X0 == pytest.approx(30.78, abs=0.01)


@pytest.mark.parametrize("particle", PARTICLES)
def test_outputs_are_physical(particle):
    showers = simulate(particle, 300, "1:100", seed=11)
    assert showers.cells.dtype == np.float32
    assert np.all(np.isfinite(showers.cells)) and np.all(showers.cells >= 0)
    assert np.all(showers.overflow >= 0)
    assert np.all((showers.energy >= 1) & (showers.energy <= 100))
    total = showers.cells.sum(axis=1) + showers.overflow.sum(axis=1)
    assert np.all(total <= 1000.0 * showers.energy * 1.05)  # no energy created (5 % fluctuation slack)
    assert [layer.shape for layer in LAYERS] == [s.shape[1:] for s in showers.layers]


def test_seeds_reproduce_and_chunks_are_independent():
    a = simulate("e+", 250, "1:100", seed=42, chunk_size=100)
    b = simulate("e+", 250, "1:100", seed=42, chunk_size=100)
    c = simulate("e+", 250, "1:100", seed=43, chunk_size=100)
    np.testing.assert_array_equal(a.cells, b.cells)
    assert not np.array_equal(a.cells, c.cells)
    last = next(iter_showers("e+", 250, "1:100", seed=42, chunk_size=100, start_chunk=2))
    np.testing.assert_array_equal(last.cells, a.cells[200:])


def test_energy_spec_parsing_names_bad_values():
    assert parse_energy("50").fixed
    assert (parse_energy("1:100").low, parse_energy("1:100").high) == (1.0, 100.0)
    for bad in ("abc", "1:2:3", "-5", "100:1"):
        with pytest.raises(ValueError, match="energy"):
            parse_energy(bad)
    with pytest.raises(ValueError, match="muon"):
        simulate_showers("muon", np.ones(2), np.random.default_rng(0))
