"""Particle-mesh simulator: CIC, initial conditions, linear growth and a fast halofit check (CPU)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from physics_data.cosmo.cosmology import (
    Cosmology,
    growth_factor,
    growth_rate,
    hubble,
    linear_power,
    linear_power_function,
    nonlinear_power,
)
from physics_data.cosmo.nbody import (
    PMConfig,
    cic_paint,
    cic_readout,
    initial_conditions,
    linear_modes,
    run_pm,
)
from physics_data.cosmo.observables import binned_theory, power_spectrum_3d

FIDUCIAL = Cosmology(omega_m=0.3, sigma8=0.8)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def test_cic_paint_conserves_mass_wraps_and_is_adjoint_to_readout() -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.rand((1000, 3), generator=gen) * 32.0
    mesh = cic_paint(pos, 16, 32.0)
    assert mesh.shape == (16, 16, 16)
    assert float(mesh.mean()) == pytest.approx(1.0, rel=1e-6)
    assert float(mesh.min()) >= 0.0
    # periodic images paint identically
    shifted = pos + torch.tensor([32.0, -64.0, 96.0])
    torch.testing.assert_close(cic_paint(shifted, 16, 32.0), mesh, atol=1e-4, rtol=1e-4)
    # a particle on a node fills one cell; half-way between nodes it splits equally
    node = cic_paint(torch.tensor([[4.0, 6.0, 8.0]]), 16, 32.0)
    assert float(node[2, 3, 4]) == pytest.approx(16**3) and int((node > 0).sum()) == 1
    half = cic_paint(torch.tensor([[5.0, 6.0, 31.0]]), 16, 32.0)  # x between cells 2,3; z between 15 and 0
    assert int((half > 0).sum()) == 4 and float(half[2, 3, 0]) == pytest.approx(16**3 / 4)
    # readout is the transpose of painting: Σ_cells paint·f = Σ_particles readout(f) (up to mass scale)
    f = torch.rand((16, 16, 16), generator=gen)
    lhs = float((mesh * f).sum()) * 1000 / 16**3
    assert lhs == pytest.approx(float(cic_readout(f, pos, 32.0).sum()), rel=1e-5)
    assert torch.allclose(cic_readout(torch.full((16, 16, 16), 2.5), pos, 32.0), torch.tensor(2.5))


def test_linear_modes_are_seeded_fixed_and_paired() -> None:
    config = PMConfig(n_particles=16, box_size=64.0, paired_fixed=True, power_backend="eh")
    modes = linear_modes(FIDUCIAL, config, seed=3, device=CPU)
    torch.testing.assert_close(modes, linear_modes(FIDUCIAL, config, seed=3, device=CPU), rtol=0, atol=0)
    assert not torch.allclose(modes, linear_modes(FIDUCIAL, config, seed=4, device=CPU))
    partner = linear_modes(FIDUCIAL, replace(config, invert_phase=True), seed=3, device=CPU)
    torch.testing.assert_close(partner, -modes)
    # fixed amplitudes: |δ_k|² V / N⁶ is exactly P(k) on every non-Nyquist mode
    k = (
        2
        * np.pi
        / 64.0
        * np.sqrt(
            np.fft.fftfreq(16, 1 / 16)[:, None, None] ** 2
            + np.fft.fftfreq(16, 1 / 16)[None, :, None] ** 2
            + np.fft.rfftfreq(16, 1 / 16)[None, None, :] ** 2
        )
    )
    measured = modes.abs().numpy() ** 2 * 64.0**3 / 16**6
    keep = measured > 0
    assert keep.sum() > 0.75 * keep.size  # all but the zeroed Nyquist planes and k = 0
    np.testing.assert_allclose(measured[keep], linear_power_function(FIDUCIAL, "eh")(k[keep]), rtol=1e-10)


def test_initial_displacements_follow_zeldovich_at_small_amplitude() -> None:
    # at tiny amplitude the 2LPT term is negligible: -∇·Ψ = δ (checked in Fourier space on the lattice)
    config = PMConfig(n_particles=16, box_size=64.0, power_backend="eh")
    disp, mom = initial_conditions(FIDUCIAL, config, seed=1, device=CPU, amplitude=1e-4)
    assert disp.dtype == torch.float32 and disp.shape == (16**3, 3)
    delta_k = linear_modes(FIDUCIAL, config, seed=1, device=CPU) * 1e-4
    psi_k = torch.fft.rfftn(disp.double().reshape(16, 16, 16, 3), dim=(0, 1, 2))
    k1 = torch.fft.fftfreq(16, 1 / 16, dtype=torch.float64) * 2 * np.pi / 64.0
    kz = torch.fft.rfftfreq(16, 1 / 16, dtype=torch.float64) * 2 * np.pi / 64.0
    div = 1j * (
        k1.view(-1, 1, 1) * psi_k[..., 0]
        + k1.view(1, -1, 1) * psi_k[..., 1]
        + kz.view(1, 1, -1) * psi_k[..., 2]
    )
    a0 = config.a_start
    expected = -delta_k * float(growth_factor(a0, 0.3))
    assert float((div - expected).abs().max()) < 1e-3 * float(expected.abs().max())
    # linear momenta: p = a² E f x_displacement
    factor = a0**2 * float(hubble(a0, 0.3)) * float(growth_rate(a0, 0.3))
    torch.testing.assert_close(mom, disp * factor, rtol=1e-3, atol=1e-3 * float(mom.abs().max()))


def _pair_power(config: PMConfig, redshift: float = 0.0, seed: int = 0, amplitude: float = 1.0) -> tuple:
    """Mean P(k) of a paired-fixed (+δ, -δ) pair, measured on the 2N mesh with CIC deconvolution."""
    spectra = []
    for invert in (False, True):
        cfg = replace(config, paired_fixed=True, invert_phase=invert)
        result = run_pm(FIDUCIAL, cfg, redshift=redshift, seed=seed, device=CPU, amplitude=amplitude)
        mesh = cic_paint(result.positions, config.n_mesh, config.box_size).numpy()
        spectra.append(power_spectrum_3d(mesh, config.box_size))
    return spectra[0], np.mean([s.power for s in spectra], axis=0)


@pytest.mark.parametrize("redshift", [0.0, 1.0])
def test_linear_growth_at_tiny_amplitude(redshift: float) -> None:
    # reference §3.4: lattice discreteness adds power above k_Ny/8, so test at k <= k_Ny/8
    config = PMConfig(n_particles=32, box_size=128.0, n_steps=5, power_backend="eh")
    amplitude = 1e-2
    spectrum, power = _pair_power(config, redshift, seed=2, amplitude=amplitude)
    theory = binned_theory(
        lambda k: linear_power(k, FIDUCIAL, z=redshift, backend="eh") * amplitude**2,
        config.n_mesh, config.box_size, 3, spectrum.edges,
    )  # fmt: skip
    ratio = power / theory
    k_ny = config.k_nyquist
    assert np.all(np.abs(ratio[spectrum.k <= k_ny / 8 + 1e-9] - 1) < 0.03), ratio[:4]
    assert np.all(np.abs(ratio[spectrum.k <= k_ny / 16 + 1e-9] - 1) < 0.01), ratio[:4]


def test_nonlinear_power_is_close_to_halofit() -> None:
    # fast version of benchmarks/bench_pm_halofit.py: 32³ particles, 256 Mpc/h, 5 steps, one pair
    config = PMConfig(n_particles=32, box_size=256.0, n_steps=5, power_backend="eh")
    spectrum, power = _pair_power(config, seed=0)
    k = spectrum.k
    halofit_binned = binned_theory(
        lambda q: nonlinear_power(q, FIDUCIAL, backend="eh"),
        config.n_mesh,
        config.box_size,
        3,
        spectrum.edges,
    )
    linear_binned = binned_theory(
        lambda q: linear_power(q, FIDUCIAL, backend="eh"), config.n_mesh, config.box_size, 3, spectrum.edges
    )
    ratio = power / halofit_binned
    k_ny = config.k_nyquist
    assert np.all(np.abs(ratio[k <= k_ny / 8 + 1e-9] - 1) < 0.02), ratio
    assert np.all(np.abs(ratio[k <= k_ny / 2 + 1e-9] - 1) < 0.08), ratio
    assert abs(np.mean(ratio[k <= k_ny / 2 + 1e-9]) - 1) < 0.04, ratio
    # structure formation went nonlinear: above-linear power at k_Ny/2
    at_half = np.argmin(np.abs(k - k_ny / 2))
    assert power[at_half] / linear_binned[at_half] > 1.03


def test_run_is_reproducible_and_positions_are_wrapped() -> None:
    config = PMConfig(n_particles=16, box_size=64.0, n_steps=3, power_backend="eh")
    first = run_pm(FIDUCIAL, config, seed=5, device=CPU)
    second = run_pm(FIDUCIAL, config, seed=5, device=CPU)
    assert torch.equal(first.positions, second.positions) and torch.equal(first.momenta, second.momenta)
    assert first.positions.dtype == torch.float32 and first.positions.shape == (16**3, 3)
    assert float(first.positions.min()) >= 0.0 and float(first.positions.max()) < 64.0
    other = run_pm(FIDUCIAL, config, seed=6, device=CPU)
    assert not torch.equal(first.positions, other.positions)
    assert first.a == 1.0


def test_invalid_settings_are_rejected_with_reasons() -> None:
    with pytest.raises(ValueError, match="redshift must be in"):
        run_pm(FIDUCIAL, PMConfig(n_particles=8, box_size=32.0), redshift=12.0, device=CPU)
    with pytest.raises(ValueError, match="n_particles"):
        PMConfig(n_particles=7)
    with pytest.raises(ValueError, match="mesh_factor"):
        PMConfig(mesh_factor=0)
