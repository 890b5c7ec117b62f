"""Linear theory: growth factors, FastPM factors, EH98 and halofit against the reference CAMB numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import hyp2f1

from physics_data.cosmo.cosmology import (
    Cosmology,
    eisenstein_hu_transfer,
    fastpm_factors,
    growth_factor,
    growth_rate,
    halofit,
    linear_power,
    linear_power_function,
    nonlinear_power,
    omega_m_of_a,
    power_backend,
    second_order_growth,
    sigma_r,
)

# reference cosmology.md §4.3: CAMB 2.0.5, Omega_m = 0.3, sigma8 = 0.8, z = 0 (Takahashi halofit)
REF_K = np.array([0.01, 0.1, 0.5, 1.0, 2.0])
REF_P_LIN = np.array([2.245e4, 5299.0, 300.3, 64.28, 12.39])
REF_HF_RATIO = np.array([0.994, 1.014, 2.475, 5.963, 13.93])
FIDUCIAL = Cosmology(omega_m=0.3, sigma8=0.8)


@pytest.mark.parametrize("omega_m", [0.1, 0.3, 0.5])
def test_growth_factor_matches_closed_form(omega_m: float) -> None:
    # flat ΛCDM growing mode: D ∝ a 2F1(1/3, 1; 11/6; -a³ Ω_Λ/Ω_m)
    a = np.array([0.05, 0.1, 0.3, 0.7, 1.0])
    closed = a * hyp2f1(1 / 3, 1, 11 / 6, -(a**3) * (1 - omega_m) / omega_m)
    closed /= hyp2f1(1 / 3, 1, 11 / 6, -(1 - omega_m) / omega_m)
    np.testing.assert_allclose(growth_factor(a, omega_m), closed, rtol=1e-8)


def test_growth_rate_and_fastpm_factors_are_consistent_derivatives() -> None:
    a, eps, om = np.array([0.1, 0.4, 0.9]), 1e-5, 0.27
    numeric_f = a * (np.log(growth_factor(a + eps, om)) - np.log(growth_factor(a - eps, om))) / (2 * eps)
    np.testing.assert_allclose(growth_rate(a, om), numeric_f, rtol=1e-6)
    f = fastpm_factors(a, om)
    numeric_gf = (fastpm_factors(a + eps, om).G_f - fastpm_factors(a - eps, om).G_f) / (2 * eps)
    np.testing.assert_allclose(f.g_f, numeric_gf, rtol=1e-6)  # g_f = 1.5 Ω_m D/(a²E) is dG_f/da
    np.testing.assert_allclose(f.G_p, growth_factor(a, om))
    # deep in matter domination: D ∝ a, f = 1, D2 = -3/7 D1²
    assert growth_rate(0.01, om) == pytest.approx(1.0, abs=1e-4)
    ratio = second_order_growth(0.01, om) / growth_factor(0.01, om) ** 2
    assert ratio == pytest.approx(-3 / 7, rel=1e-3)
    assert omega_m_of_a(1.0, om) == pytest.approx(om)


def test_eisenstein_hu_is_sigma8_normalised_and_close_to_camb() -> None:
    power = linear_power_function(FIDUCIAL, backend="eh")
    assert sigma_r(power, 8.0) == pytest.approx(0.8, rel=1e-6)
    # EH98 with wiggles is within 4% of CAMB over 0.005 < k < 2 h/Mpc (reference §4.4)
    np.testing.assert_allclose(power(REF_K), REF_P_LIN, rtol=0.04)
    # large scales: P ∝ k^n_s T², T → 1
    k = np.array([1e-5, 2e-5])
    assert np.log(power(k)[1] / power(k)[0]) / np.log(2) == pytest.approx(0.96, abs=0.01)
    # the wiggle and no-wiggle forms differ only by the baryon oscillations (few %)
    k = np.geomspace(0.01, 0.5, 200)
    ratio = eisenstein_hu_transfer(k, FIDUCIAL, wiggles=True) / eisenstein_hu_transfer(
        k, FIDUCIAL, wiggles=False
    )
    assert 0.005 < np.ptp(ratio) < 0.15
    assert np.all(np.abs(ratio - 1) < 0.08)


def test_sigma8_scales_the_amplitude_and_redshift_the_growth() -> None:
    low = Cosmology(omega_m=0.3, sigma8=0.6)
    np.testing.assert_allclose(
        linear_power(REF_K, low, backend="eh"), linear_power(REF_K, FIDUCIAL, backend="eh") * (0.6 / 0.8) ** 2
    )
    d = growth_factor(0.5, 0.3)
    np.testing.assert_allclose(
        linear_power(REF_K, FIDUCIAL, z=1.0, backend="eh"), linear_power(REF_K, FIDUCIAL, backend="eh") * d**2
    )


def test_numpy_halofit_matches_camb_boosts() -> None:
    lin = linear_power(REF_K, FIDUCIAL, backend="eh")
    boost = nonlinear_power(REF_K, FIDUCIAL, backend="eh") / lin
    # CAMB's boost on the CAMB spectrum vs ours on EH: within a few % (EH's own shape error)
    np.testing.assert_allclose(boost, REF_HF_RATIO, rtol=0.03)
    # nonlinear power is less nonlinear at high redshift
    boost_z1 = nonlinear_power(REF_K, FIDUCIAL, z=1.0, backend="eh") / linear_power(
        REF_K, FIDUCIAL, 1.0, "eh"
    )
    assert np.all(boost_z1[2:] < boost[2:])
    # a linear field far below σ = 1 everywhere has no nonlinear correction
    tiny = halofit(REF_K, lambda k: 1e-8 * linear_power_function(FIDUCIAL, "eh")(k), 0.3)
    np.testing.assert_allclose(tiny, 1e-8 * lin)


def test_camb_backend_reproduces_reference_table() -> None:
    pytest.importorskip("camb")
    assert power_backend("auto") == "camb"
    np.testing.assert_allclose(linear_power(REF_K, FIDUCIAL, backend="camb"), REF_P_LIN, rtol=0.01)
    boost = nonlinear_power(REF_K, FIDUCIAL, backend="camb") / linear_power(REF_K, FIDUCIAL, backend="camb")
    np.testing.assert_allclose(boost, REF_HF_RATIO, rtol=0.005)


def test_cosmology_validates_and_records_fixed_parameters() -> None:
    attrs = FIDUCIAL.to_attrs()
    assert attrs == {
        "cosmology_omega_m": 0.3,
        "cosmology_sigma8": 0.8,
        "cosmology_h": 0.7,
        "cosmology_omega_b": 0.05,
        "cosmology_n_s": 0.96,
    }
    with pytest.raises(ValueError, match="omega_b < omega_m"):
        Cosmology(omega_m=0.04, sigma8=0.8)
    with pytest.raises(ValueError, match="sigma8"):
        Cosmology(omega_m=0.3, sigma8=0.0)
    with pytest.raises(ValueError, match="unknown power-spectrum backend"):
        power_backend("class")  # type: ignore[arg-type]
