"""Flat ΛCDM linear theory: background, growth factors, FastPM factors and the matter power spectrum.

Conventions (reference ``cosmology.md`` §1): comoving Mpc/h, k in h/Mpc, P(k) in (Mpc/h)³, H0 = 1
in code units, no radiation. D1 is the linear growth factor normalised to D1(a=1) = 1.

The linear spectrum comes from CAMB when ``camb`` is importable (``pip install .[cosmo]``) and
from the Eisenstein & Hu (1998) fitting formula with baryon wiggles otherwise; both are normalised
to ``sigma8`` with the top-hat integral. The nonlinear spectrum (for validation only) is CAMB's
Takahashi halofit, or the same halofit (Takahashi et al. 2012) implemented here on the EH spectrum.

>>> c = Cosmology(omega_m=0.3, sigma8=0.8)
>>> round(float(growth_factor(0.5, c.omega_m)), 4)
0.6118
>>> round(float(sigma_r(linear_power_function(c, backend="eh"), 8.0)), 4)
0.8
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import integrate, optimize

__all__ = [
    "BACKENDS",
    "T_CMB",
    "Cosmology",
    "FastPMFactors",
    "eisenstein_hu_transfer",
    "fastpm_factors",
    "growth_derivative",
    "growth_factor",
    "growth_rate",
    "halofit",
    "hubble",
    "linear_power",
    "linear_power_function",
    "nonlinear_power",
    "omega_m_of_a",
    "power_backend",
    "second_order_growth",
    "second_order_growth_rate",
    "sigma_r",
]

T_CMB = 2.7255
"""CMB temperature in K (EH98 input)."""

Backend = Literal["auto", "camb", "eh"]
BACKENDS: tuple[str, ...] = ("auto", "camb", "eh")

# Tabulation range of P(k); beyond it P is extrapolated as a power law in log-log.
_K_MIN, _K_MAX, _N_K = 1e-5, 1e3, 4000
_CAMB_KMAX = 50.0


@dataclass(frozen=True)
class Cosmology:
    """Flat ΛCDM parameters. Only ``omega_m`` and ``sigma8`` vary; h, Omega_b and n_s are fixed."""

    omega_m: float  # total matter density today, Omega_cdm + Omega_b
    sigma8: float  # rms linear density in 8 Mpc/h top-hat spheres at z = 0
    h: float = 0.7  # H0 / (100 km/s/Mpc)
    omega_b: float = 0.05  # baryon density today
    n_s: float = 0.96  # primordial spectral index

    def __post_init__(self) -> None:
        if not 0.0 < self.omega_b < self.omega_m < 1.0:
            raise ValueError(
                f"need 0 < omega_b < omega_m < 1, got omega_b={self.omega_b}, omega_m={self.omega_m}"
            )
        if not self.sigma8 > 0.0:
            raise ValueError(f"sigma8 must be > 0, got {self.sigma8}")
        if not self.h > 0.0:
            raise ValueError(f"h must be > 0, got {self.h}")

    @property
    def omega_l(self) -> float:
        """Dark-energy density today (flatness)."""
        return 1.0 - self.omega_m

    def to_attrs(self) -> dict[str, float]:
        """Parameters as flat HDF5 attributes (``cosmology_<name>``)."""
        return {f"cosmology_{key}": float(value) for key, value in asdict(self).items()}


# --------------------------------------------------------------------------- background and growth


def hubble(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """E(a) = H(a)/H0 = sqrt(Omega_m a^-3 + Omega_Lambda)."""
    a = np.asarray(a, dtype=np.float64)
    return np.sqrt(omega_m * a**-3 + (1.0 - omega_m))


def omega_m_of_a(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """Omega_m(a) = Omega_m a^-3 / E(a)²."""
    a = np.asarray(a, dtype=np.float64)
    return omega_m * a**-3 / hubble(a, omega_m) ** 2


def _growth_integral(a: float, omega_m: float) -> float:
    """∫_0^a da' / (a' E(a'))³ (finite: the integrand goes as a'^1.5 near 0)."""
    value, _ = integrate.quad(lambda x: (x * hubble(x, omega_m)) ** -3, 0.0, a, epsabs=0.0, epsrel=1e-11)
    return value


def _growth_unnormalised(a: np.ndarray, omega_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(D, dD/da) with D = (5Ω_m/2) E(a) ∫_0^a da'/(a'E)³, which tends to a at early times."""
    a = np.asarray(a, dtype=np.float64)
    integral = np.vectorize(_growth_integral, otypes=[np.float64])(a, omega_m)
    e = hubble(a, omega_m)
    de_da = -1.5 * omega_m * a**-4 / e
    d = 2.5 * omega_m * e * integral
    dd_da = 2.5 * omega_m * (de_da * integral + e / (a * e) ** 3)
    return d, dd_da


def growth_factor(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """Linear growth factor D1(a), normalised to D1(1) = 1."""
    d, _ = _growth_unnormalised(np.asarray(a, dtype=np.float64), omega_m)
    return d / _growth_unnormalised(np.array(1.0), omega_m)[0]


def growth_derivative(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """dD1/da (same normalisation as :func:`growth_factor`)."""
    _, dd_da = _growth_unnormalised(np.asarray(a, dtype=np.float64), omega_m)
    return dd_da / _growth_unnormalised(np.array(1.0), omega_m)[0]


def growth_rate(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """f1 = dln D1 / dln a."""
    d, dd_da = _growth_unnormalised(np.asarray(a, dtype=np.float64), omega_m)
    return np.asarray(a) * dd_da / d


def second_order_growth(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """D2 ≈ -(3/7) D1² Omega_m(a)^(-1/143) (Bouchet et al. 1995 fit, Crocce et al. 2006 sign)."""
    return -3.0 / 7.0 * growth_factor(a, omega_m) ** 2 * omega_m_of_a(a, omega_m) ** (-1.0 / 143.0)


def second_order_growth_rate(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """f2 = dln D2 / dln a ≈ 2 Omega_m(a)^(6/11)."""
    return 2.0 * omega_m_of_a(a, omega_m) ** (6.0 / 11.0)


@dataclass(frozen=True)
class FastPMFactors:
    """FastPM time factors at scale factors ``a`` (Feng et al. 2016; fastpm ``libfastpm/factors.c``)."""

    a: np.ndarray
    G_p: np.ndarray  # D1: drift growth
    g_p: np.ndarray  # dD1/da
    G_f: np.ndarray  # a³ E dD1/da: kick growth (linear momentum is G_f Ψ)
    g_f: np.ndarray  # dG_f/da = 1.5 Omega_m D1 / (a² E) by the growth equation


def fastpm_factors(a: np.ndarray | float, omega_m: float) -> FastPMFactors:
    """G_p, g_p, G_f and g_f of the FastPM kick/drift operators at ``a``."""
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    d, dd_da = _growth_unnormalised(a, omega_m)
    norm = _growth_unnormalised(np.array(1.0), omega_m)[0]
    d, dd_da = d / norm, dd_da / norm
    e = hubble(a, omega_m)
    return FastPMFactors(a=a, G_p=d, g_p=dd_da, G_f=a**3 * e * dd_da, g_f=1.5 * omega_m * d / (a**2 * e))


# --------------------------------------------------------------------------- linear power


def power_backend(backend: Backend = "auto") -> Literal["camb", "eh"]:
    """Resolve ``"auto"`` to ``"camb"`` when the camb package is importable, else ``"eh"``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown power-spectrum backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "camb" if importlib.util.find_spec("camb") is not None else "eh"
    if backend == "camb" and importlib.util.find_spec("camb") is None:
        raise ValueError("backend 'camb' needs the camb package: pip install 'calo-cosmo-emulator[cosmo]'")
    return backend


def eisenstein_hu_transfer(k: np.ndarray, cosmo: Cosmology, wiggles: bool = True) -> np.ndarray:
    """Eisenstein & Hu (1998) matter transfer function T(k), k in h/Mpc (reference §4.4)."""
    h = cosmo.h
    om, ob = cosmo.omega_m * h * h, cosmo.omega_b * h * h
    fb = cosmo.omega_b / cosmo.omega_m
    fc = 1.0 - fb
    theta = T_CMB / 2.7
    k_h = np.asarray(k, dtype=np.float64)
    kk = k_h * h  # 1/Mpc inside the formulas
    if not wiggles:
        s = 44.5 * np.log(9.83 / om) / np.sqrt(1.0 + 10.0 * ob**0.75)
        alpha_g = 1.0 - 0.328 * np.log(431.0 * om) * fb + 0.38 * np.log(22.3 * om) * fb**2
        gamma = cosmo.omega_m * h * (alpha_g + (1.0 - alpha_g) / (1.0 + (0.43 * kk * s) ** 4))
        q = k_h * theta**2 / gamma
        l0 = np.log(2.0 * np.e + 1.8 * q)
        return l0 / (l0 + (14.2 + 731.0 / (1.0 + 62.5 * q)) * q**2)

    z_eq = 2.50e4 * om * theta**-4
    k_eq = 7.46e-2 * om * theta**-2
    b1 = 0.313 * om**-0.419 * (1.0 + 0.607 * om**0.674)
    b2 = 0.238 * om**0.223
    z_d = 1291.0 * om**0.251 / (1.0 + 0.659 * om**0.828) * (1.0 + b1 * ob**b2)

    def baryon_ratio(z: float) -> float:
        return 31.5 * ob * theta**-4 * (z / 1e3) ** -1

    r_eq, r_d = baryon_ratio(z_eq), baryon_ratio(z_d)
    s = (
        2.0
        / (3.0 * k_eq)
        * np.sqrt(6.0 / r_eq)
        * np.log((np.sqrt(1.0 + r_d) + np.sqrt(r_d + r_eq)) / (1.0 + np.sqrt(r_eq)))
    )
    k_silk = 1.6 * ob**0.52 * om**0.73 * (1.0 + (10.4 * om) ** -0.95)
    q = kk / (13.41 * k_eq)

    def t0(alpha: float, beta: float) -> np.ndarray:
        ln = np.log(np.e + 1.8 * beta * q)
        c = 14.2 / alpha + 386.0 / (1.0 + 69.9 * q**1.08)
        return ln / (ln + c * q**2)

    a1 = (46.9 * om) ** 0.670 * (1.0 + (32.1 * om) ** -0.532)
    a2 = (12.0 * om) ** 0.424 * (1.0 + (45.0 * om) ** -0.582)
    alpha_c = a1**-fb * a2 ** (-(fb**3))
    bb1 = 0.944 / (1.0 + (458.0 * om) ** -0.708)
    bb2 = (0.395 * om) ** -0.0266
    beta_c = 1.0 / (1.0 + bb1 * (fc**bb2 - 1.0))
    ks = kk * s
    f = 1.0 / (1.0 + (ks / 5.4) ** 4)
    t_c = f * t0(1.0, beta_c) + (1.0 - f) * t0(alpha_c, beta_c)

    y = (1.0 + z_eq) / (1.0 + z_d)
    sy = np.sqrt(1.0 + y)
    g = y * (-6.0 * sy + (2.0 + 3.0 * y) * np.log((sy + 1.0) / (sy - 1.0)))
    alpha_b = 2.07 * k_eq * s * (1.0 + r_d) ** -0.75 * g
    beta_node = 8.41 * om**0.435
    beta_b = 0.5 + fb + (3.0 - 2.0 * fb) * np.sqrt((17.2 * om) ** 2 + 1.0)
    s_tilde = s / (1.0 + (beta_node / ks) ** 3) ** (1.0 / 3.0)
    t_b = (
        t0(1.0, 1.0) / (1.0 + (ks / 5.2) ** 2)
        + alpha_b / (1.0 + (beta_b / ks) ** 3) * np.exp(-((kk / k_silk) ** 1.4))
    ) * np.sinc(kk * s_tilde / np.pi)
    return fb * t_b + fc * t_c


def _top_hat(x: np.ndarray) -> np.ndarray:
    """W(x) = 3 (sin x - x cos x) / x³, with its series near 0."""
    x = np.asarray(x, dtype=np.float64)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    return np.where(small, 1.0 - x**2 / 10.0, 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3)


def sigma_r(power: Callable[[np.ndarray], np.ndarray], radius: float) -> float:
    """rms of the linear density in top-hat spheres of ``radius`` Mpc/h: σ² = ∫ k³P W²(kR) dlnk / 2π²."""
    lnk = np.linspace(np.log(_K_MIN), np.log(_K_MAX), 20_000)
    k = np.exp(lnk)
    integrand = k**3 * power(k) * _top_hat(k * radius) ** 2 / (2.0 * np.pi**2)
    return float(np.sqrt(integrate.trapezoid(integrand, lnk)))


class _LogLogTable:
    """P(k) tabulated on a log grid, interpolated (and power-law extrapolated) in log-log."""

    def __init__(self, k: np.ndarray, pk: np.ndarray) -> None:
        self.lnk = np.log(k)
        self.lnp = np.log(pk)
        self.slope_lo = (self.lnp[1] - self.lnp[0]) / (self.lnk[1] - self.lnk[0])
        self.slope_hi = (self.lnp[-1] - self.lnp[-2]) / (self.lnk[-1] - self.lnk[-2])

    def __call__(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=np.float64)
        positive = k > 0
        lnk = np.log(np.where(positive, k, 1.0))
        lnp = np.interp(lnk, self.lnk, self.lnp)
        lnp = np.where(lnk < self.lnk[0], self.lnp[0] + self.slope_lo * (lnk - self.lnk[0]), lnp)
        lnp = np.where(lnk > self.lnk[-1], self.lnp[-1] + self.slope_hi * (lnk - self.lnk[-1]), lnp)
        return np.where(positive, np.exp(lnp), 0.0)


def _camb_params(cosmo: Cosmology, a_s: float, redshifts: list[float], nonlinear: bool):
    import camb

    h = cosmo.h
    return camb.set_params(
        H0=100.0 * h,
        ombh2=cosmo.omega_b * h * h,
        omch2=(cosmo.omega_m - cosmo.omega_b) * h * h,
        mnu=0.0,
        omk=0.0,
        As=a_s,
        ns=cosmo.n_s,
        WantCls=False,
        WantTransfer=True,
        redshifts=redshifts,
        kmax=_CAMB_KMAX * h * 1.1,
        NonLinear=camb.model.NonLinear_both if nonlinear else camb.model.NonLinear_none,
        halofit_version="takahashi",
    )


@lru_cache(maxsize=64)
def _camb_amplitude(cosmo: Cosmology) -> float:
    """A_s giving ``cosmo.sigma8`` (σ8 ∝ sqrt(A_s) exactly in linear theory)."""
    import camb

    a_s = 2.1e-9
    results = camb.get_results(_camb_params(cosmo, a_s, [0.0], nonlinear=False))
    return a_s * (cosmo.sigma8 / float(results.get_sigma8_0())) ** 2


def _camb_power(results, z: float) -> tuple[np.ndarray, np.ndarray]:  # results: camb.CAMBdata
    kh, zs, pk = results.get_matter_power_spectrum(minkh=1e-4, maxkh=_CAMB_KMAX, npoints=800)
    row = int(np.argmin(np.abs(np.asarray(zs) - z)))  # CAMB re-sorts redshifts
    return np.asarray(kh), np.asarray(pk[row])


@lru_cache(maxsize=64)
def _camb_table(cosmo: Cosmology, z: float, nonlinear: bool) -> _LogLogTable:
    import camb

    if nonlinear:  # halofit is not linear in A_s: rerun at the sigma8-matched amplitude
        results = camb.get_results(_camb_params(cosmo, _camb_amplitude(cosmo), [z], nonlinear=True))
        return _LogLogTable(*_camb_power(results, z))
    # linear P is proportional to A_s: one CAMB run at z = 0, rescaled to sigma8
    if z != 0.0:
        raise ValueError("the CAMB linear table is tabulated at z = 0; scale it with growth_factor")
    results = camb.get_results(_camb_params(cosmo, 2.1e-9, [0.0], nonlinear=False))
    kh, pk = _camb_power(results, 0.0)
    return _LogLogTable(kh, pk * (cosmo.sigma8 / float(results.get_sigma8_0())) ** 2)


@lru_cache(maxsize=64)
def _eh_table(cosmo: Cosmology) -> _LogLogTable:
    k = np.geomspace(_K_MIN, _K_MAX, _N_K)
    shape = k**cosmo.n_s * eisenstein_hu_transfer(k, cosmo, wiggles=True) ** 2
    unit = _LogLogTable(k, shape)
    return _LogLogTable(k, shape * (cosmo.sigma8 / sigma_r(unit, 8.0)) ** 2)


def linear_power_function(cosmo: Cosmology, backend: Backend = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """P_lin(k) at z = 0 as a vectorised callable of k in h/Mpc, normalised to ``cosmo.sigma8``."""
    if power_backend(backend) == "camb":
        return _camb_table(cosmo, 0.0, False)
    return _eh_table(cosmo)


def linear_power(k: np.ndarray, cosmo: Cosmology, z: float = 0.0, backend: Backend = "auto") -> np.ndarray:
    """Linear P(k) in (Mpc/h)³ at redshift ``z``: P(k, 0) D1(z)² with this module's growth factor."""
    d = growth_factor(1.0 / (1.0 + z), cosmo.omega_m)
    return linear_power_function(cosmo, backend)(k) * d**2


def nonlinear_power(k: np.ndarray, cosmo: Cosmology, z: float = 0.0, backend: Backend = "auto") -> np.ndarray:
    """Nonlinear P(k) (Takahashi 2012 halofit): CAMB's, or :func:`halofit` on the EH spectrum."""
    k = np.asarray(k, dtype=np.float64)
    if power_backend(backend) == "camb":
        return _camb_table(cosmo, float(z), True)(k)
    d = float(growth_factor(1.0 / (1.0 + z), cosmo.omega_m))
    return halofit(
        k, lambda q: _eh_table(cosmo)(q) * d**2, float(omega_m_of_a(1.0 / (1.0 + z), cosmo.omega_m))
    )


def halofit(k: np.ndarray, linear: Callable[[np.ndarray], np.ndarray], omega_m_z: float) -> np.ndarray:
    """Takahashi et al. (2012) halofit for flat ΛCDM (w = -1).

    ``linear`` is P_lin(k) at the target redshift and ``omega_m_z`` is Omega_m at that redshift.
    Where the linear field never reaches σ = 1 (very high z) the linear spectrum is returned.
    """
    k = np.asarray(k, dtype=np.float64)
    lnq = np.linspace(np.log(1e-5), np.log(1e3), 8000)
    q = np.exp(lnq)
    delta_q = q**3 * linear(q) / (2.0 * np.pi**2)

    def moments(ln_r: float) -> tuple[float, float, float]:
        y2 = (q * np.exp(ln_r)) ** 2
        weight = delta_q * np.exp(-y2)
        s0 = integrate.trapezoid(weight, lnq)
        s1 = integrate.trapezoid(weight * y2, lnq)
        s2 = integrate.trapezoid(weight * y2**2, lnq)
        return s0, s1, s2

    def ln_sigma2(ln_r: float) -> float:
        return float(np.log(moments(ln_r)[0]))

    lo, hi = np.log(1e-4), np.log(1e2)
    if ln_sigma2(lo) < 0.0 or ln_sigma2(hi) > 0.0:
        return linear(k)
    ln_r = optimize.brentq(ln_sigma2, lo, hi, xtol=1e-10)
    k_sigma = np.exp(-ln_r)
    s0, s1, s2 = moments(ln_r)
    # dlnσ²/dlnR = -2 s1/s0 and its derivative, for the Gaussian filter.
    n = -3.0 + 2.0 * s1 / s0
    c = 4.0 * (s1 - s2) / s0 + 4.0 * s1**2 / s0**2

    a_n = 10 ** (1.5222 + 2.8553 * n + 2.3706 * n**2 + 0.9903 * n**3 + 0.2250 * n**4 - 0.6038 * c)
    b_n = 10 ** (-0.5642 + 0.5864 * n + 0.5716 * n**2 - 1.5474 * c)
    c_n = 10 ** (0.3698 + 2.0404 * n + 0.8161 * n**2 + 0.5869 * c)
    gamma_n = 0.1971 - 0.0843 * n + 0.8460 * c
    alpha_n = abs(6.0835 + 1.3373 * n - 0.1959 * n**2 - 5.5274 * c)
    beta_n = 2.0379 - 0.7354 * n + 0.3157 * n**2 + 1.2490 * n**3 + 0.3980 * n**4 - 0.1682 * c
    nu_n = 10 ** (5.2105 + 3.6902 * n)
    f1, f2, f3 = omega_m_z**-0.0307, omega_m_z**-0.0585, omega_m_z**0.0743

    p_lin = linear(k)
    d2_lin = k**3 * p_lin / (2.0 * np.pi**2)
    y = k / k_sigma
    d2_quasi = d2_lin * (1.0 + d2_lin) ** beta_n / (1.0 + alpha_n * d2_lin) * np.exp(-(y / 4.0 + y**2 / 8.0))
    d2_halo = a_n * y ** (3.0 * f1) / (1.0 + b_n * y**f2 + (c_n * f3 * y) ** (3.0 - gamma_n))
    d2_halo = d2_halo / (1.0 + nu_n / y**2)
    return (d2_quasi + d2_halo) * 2.0 * np.pi**2 / k**3
