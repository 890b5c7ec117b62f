"""Field statistics against analytic Gaussian-random-field expectations."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.special import erfc

from physics_data.cosmo.nbody import cic_paint
from physics_data.cosmo.observables import (
    binned_theory,
    minkowski_functionals,
    peak_counts,
    peak_mask,
    pixel_pdf,
    power_spectrum_2d,
    power_spectrum_3d,
)


def gaussian_field(
    n: int,
    dims: int,
    box: float,
    power: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator,
    batch: int = 1,
) -> np.ndarray:
    """Real Gaussian random fields (batch, n, ..., n) with ⟨|δ_k|²⟩ = V P(k) (numpy DFT convention)."""
    axes = tuple(range(1, dims + 1))
    noise = np.fft.rfftn(rng.standard_normal((batch,) + (n,) * dims), axes=axes)
    freqs = [np.fft.fftfreq(n, 1 / n)] * (dims - 1) + [np.fft.rfftfreq(n, 1 / n)]
    grids = np.meshgrid(*freqs, indexing="ij")
    k = 2 * np.pi / box * np.sqrt(sum(g**2 for g in grids))
    amp = np.sqrt(np.where(k > 0, power(np.where(k > 0, k, 1.0)), 0.0) * n**dims / box**dims)
    return np.fft.irfftn(noise * amp, s=(n,) * dims, axes=axes)


def smooth_power(k: np.ndarray) -> np.ndarray:
    return 50.0 * k**-1.5 * np.exp(-((k / 0.6) ** 2))


def test_power_spectrum_3d_recovers_the_input_spectrum() -> None:
    rng = np.random.default_rng(1)
    n, box = 48, 200.0
    field = gaussian_field(n, 3, box, smooth_power, rng)[0]
    spectrum = power_spectrum_3d(field, box, window=None, density=False)
    theory = binned_theory(smooth_power, n, box, 3, spectrum.edges)
    sigma = theory / np.sqrt(spectrum.n_modes)  # Gaussian field: var(P̂) = P² / N_modes
    pull = (spectrum.power - theory) / sigma
    assert np.all(np.abs(pull) < 5), pull
    chi2 = float(np.mean(pull**2))
    assert 0.5 < chi2 < 1.6, chi2  # a mis-scaled estimator (e.g. wrong half-space weights) fails this
    k_f = 2 * np.pi / box
    assert k_f < spectrum.k[0] < 1.5 * k_f  # first shell: |k| = k_f and √2 k_f modes
    # a density 1 + δ gives the same spectrum as δ
    again = power_spectrum_3d(1.0 + field, box, window=None)
    np.testing.assert_allclose(again.power, spectrum.power, rtol=1e-9)


def test_cic_deconvolution_and_shot_noise_of_poisson_particles() -> None:
    gen = torch.Generator().manual_seed(3)
    box, n, n_part = 100.0, 64, 200_000
    pos = torch.rand((n_part, 3), generator=gen, dtype=torch.float64) * box
    mesh = cic_paint(pos, n, box).numpy()
    shot = box**3 / n_part
    raw = power_spectrum_3d(mesh, box, window=None)
    deconvolved = power_spectrum_3d(mesh, box, window="cic")
    low = raw.k < np.pi * n / box / 2  # k < k_Ny/2, where aliased images add < 2% after deconvolution

    def mean(ps: np.ndarray) -> float:  # mode-weighted, ~8000 modes: 1% noise
        return float(np.sum(ps[low] * raw.n_modes[low]) / np.sum(raw.n_modes[low]))

    # deconvolution restores the white shot noise V/N; the raw CIC spectrum is suppressed
    assert mean(deconvolved.power) / shot == pytest.approx(1.0, abs=0.04)
    assert mean(raw.power) / shot < 0.92
    subtracted = power_spectrum_3d(mesh, box, window="cic", shot_noise=shot)
    assert abs(mean(subtracted.power)) < 0.04 * shot


def test_power_spectrum_2d_is_batched_and_unbiased() -> None:
    rng = np.random.default_rng(2)
    n, box, batch = 64, 128.0, 12
    maps = gaussian_field(n, 2, box, smooth_power, rng, batch)
    spectrum = power_spectrum_2d(maps, box, density=False)
    assert spectrum.power.shape == (batch, len(spectrum.k))
    theory = binned_theory(smooth_power, n, box, 2, spectrum.edges)
    mean = spectrum.power.mean(axis=0)
    sigma = theory / np.sqrt(spectrum.n_modes * batch)
    pull = (mean - theory) / sigma
    assert np.all(np.abs(pull) < 5) and 0.4 < float(np.mean(pull**2)) < 1.8, pull
    # each map is measured on its own: the spectrum of one map does not depend on the batch
    single = power_spectrum_2d(maps[3:4], box, density=False)
    np.testing.assert_allclose(single.power[0], spectrum.power[3])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        power_spectrum_2d(maps[0], box)


def test_pixel_pdf_uses_fixed_edges_and_folds_outliers() -> None:
    maps = np.array([[[0.5, 1.5], [2.5, 9.0]], [[-3.0, 0.1], [0.2, 0.3]]])
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    pdf = pixel_pdf(maps, edges)
    np.testing.assert_allclose(pdf, [[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]])
    counts = pixel_pdf(maps, edges, normalise=False)
    assert counts.sum() == maps.size
    with pytest.raises(ValueError, match="increasing"):
        pixel_pdf(maps, np.array([1.0, 0.0]))


def test_peaks_are_5x5_maxima_on_a_periodic_map() -> None:
    maps = np.zeros((2, 16, 16))
    maps[0, 5, 5] = 3.0
    maps[0, 5, 7] = 2.0  # inside the 5x5 window of the higher peak: not a peak
    maps[0, 12, 12] = 1.0
    maps[0, 0, 15] = 4.0  # corner: its window wraps around to rows 14..2 and columns 13..1
    maps[0, 15, 1] = 3.5  # within the wrapped window of (0, 15): not a peak
    assert sorted(zip(*np.nonzero(peak_mask(maps)[0]), strict=True)) == [(0, 15), (5, 5), (12, 12)]
    assert not peak_mask(maps)[1].any()  # constant map: max - min = 0 is not above the threshold
    counts = peak_counts(maps, np.array([0.0, 2.0, 5.0]))
    np.testing.assert_allclose(counts, [[1, 2], [0, 0]])
    assert peak_counts(maps, np.array([0.0, 2.0, 5.0]), threshold=3.5).sum() == 1


def test_minkowski_functionals_match_gaussian_field_predictions() -> None:
    rng = np.random.default_rng(4)
    n, batch = 128, 16
    # smooth spectrum (correlation length ~4 pixels) so finite differences resolve the gradients
    maps = gaussian_field(n, 2, float(n), lambda k: np.exp(-((k * 4.0) ** 2)), rng, batch)
    thresholds = np.linspace(-2.5, 2.5, 21)
    mf = minkowski_functionals(maps, thresholds).mean(axis=0)
    # λ = σ1 / (√2 σ0) from the same periodic central differences as the estimator
    gx = 0.5 * (np.roll(maps, -1, 2) - np.roll(maps, 1, 2))
    gy = 0.5 * (np.roll(maps, -1, 1) - np.roll(maps, 1, 1))
    lam = np.sqrt(np.mean(gx**2 + gy**2) / np.mean(maps**2) / 2.0)
    g = np.exp(-(thresholds**2) / 2)
    v0 = 0.5 * erfc(thresholds / np.sqrt(2))
    v1 = lam / 8 * g
    v2 = lam**2 * thresholds * g / (2 * np.pi) ** 1.5
    np.testing.assert_allclose(mf[0], v0, atol=0.01)
    np.testing.assert_allclose(mf[1], v1, atol=0.06 * v1.max())
    np.testing.assert_allclose(mf[2], v2, atol=0.12 * np.abs(v2).max())
    # the Euler characteristic changes sign at ν = 0 (more holes below, more islands above)
    assert mf[2][thresholds < -0.5].max() < 0 < mf[2][thresholds > 0.5].min()


def test_minkowski_functionals_reject_bad_input() -> None:
    maps = np.random.default_rng(0).standard_normal((2, 16, 16))
    with pytest.raises(ValueError, match="evenly spaced"):
        minkowski_functionals(maps, np.array([0.0, 1.0, 3.0]))
    with pytest.raises(ValueError, match="constant"):
        minkowski_functionals(np.ones((1, 8, 8)), np.array([0.0, 1.0]))
    assert minkowski_functionals(maps, np.array([0.5]), bin_width=0.2).shape == (2, 3, 1)
