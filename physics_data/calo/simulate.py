"""A parametrised (GFLASH-type) shower simulator in the CaloGAN geometry.

No Geant4 data can be downloaded here, so this module is the project's reference
simulation: training data and the references that validation compares against come
from it. It reproduces the calorimeter physics that matters for emulation (energy
response and resolution, shower maximum moving like ln E, core + tail lateral profiles,
photon conversion depth, pion interaction depth, pass-through pions, fluctuating
electromagnetic fraction, invisible energy, leakage and overflow), vectorised over
showers with numpy and seeded.

Energy counting follows CaloGAN: the total deposit in Pb *and* LAr is recorded (not a
visible, sampling-fraction signal), so the electromagnetic response is ~0.99, short of 1
only by leakage out of the +-240 mm window (overflow) and out of the back.

The medium is treated as one effective material (reference section 1, mixing rules of
section 5.4): X0 = 15.6 mm, Moliere radius R_M = 36 mm, Z_eff = 69.4, critical energy
E_c = 9 MeV, sampling frequency F_S = 2.60 and e/mip ratio e_hat = 0.69. Depths are
tracked in units of X0 with the per-layer depths of ``geometry.LAYERS``.

Known differences from Geant4 (documented rather than hidden):

* showers are axially symmetric around the beam axis; there are no individual
  secondaries, only GFLASH "spots" with equal energy per step;
* cells below the 15 keV readout threshold (``geometry.READOUT_THRESHOLD_MEV``) read zero;
* the pion model is an empirical two-component parametrisation (see ``_PION``), not a
  cascade; its constants come from textbook scaling laws, not from a fit to CaloGAN data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from physics_data.calo.geometry import (
    HALF_WINDOW_MM,
    LAYER_OFFSETS,
    LAYERS,
    N_CELLS,
    N_LAYERS,
    READOUT_THRESHOLD_MEV,
    STACK_X0,
)
from physics_data.calo.showers import Showers

__all__ = [
    "PARTICLES",
    "SIMULATOR_VERSION",
    "EnergySpec",
    "iter_showers",
    "parse_energy",
    "sample_energies",
    "simulate",
    "simulate_chunk",
    "simulate_showers",
]

SIMULATOR_VERSION = "1.1.0"  # 1.1.0: 15 keV cell readout threshold
PARTICLES = ("e+", "gamma", "pi+")

# ---------------------------------------------------------------------------------------------
# Effective medium (reference section 1, "Effective medium"; derived with section 5.4 rules).
X0_MM = 15.6  # effective radiation length of the Pb/LAr stack
MOLIERE_MM = 36.0  # effective Moliere radius (reference: 35-37 mm)
Z_EFF = 69.4  # mass-weighted effective Z
CRITICAL_GEV = 0.009  # effective critical energy, 9 MeV
F_S = 2.60  # sampling frequency X0_eff / (d_Pb + d_LAr)
E_HAT = 0.69  # e/mip = 1 / (1 + 0.007 (Z_Pb - Z_LAr))
LAYER_END_X0 = np.cumsum([layer.depth_X0 for layer in LAYERS])  # 5.77, 28.08, 30.78

STEP_X0 = 0.1  # GFLASH longitudinal step (reference section 5.3)
N_STEPS = int(np.ceil(STACK_X0 / STEP_X0))  # 308; energy beyond the stack leaks out the back

# Residual stochastic term, sqrt(GeV). GFLASH's sampling term (c = 0.11) describes the *visible*
# LAr signal; CaloGAN counts Pb + LAr, where sampling fluctuations cancel. What is left is the
# intrinsic fluctuation of a total-absorption device (escaping albedo and soft photons),
# 1-3 %/sqrt(E) in the PDG calorimetry review; we take 2 %.
INTRINSIC_STOCHASTIC = 0.02
SPOT_RESOLUTION_C = 0.11  # GFLASH sampling-spot normalisation N_spot = (10.3 / c) E^0.959

# Photons convert after an exponential depth with mean 9/7 X0 (pair-production length).
PHOTON_CONVERSION_X0 = 9.0 / 7.0


@dataclass(frozen=True)
class _PionParameters:
    """Constants of the hadronic parametrisation (reference section 6), each justified.

    * ``lambda_X0``: interaction length in X0 units. The stack is 30.78 X0 and 1.28
      lambda_int deep (reference table), i.e. lambda_int = 24.0 X0, so ~28 % of pions pass
      through without interacting.
    * ``mip_mev_per_X0``: minimum-ionising deposit, 51/197/24 MeV in the three layers of
      5.77/22.31/2.70 X0 (reference section 1), i.e. 8.85 MeV per X0 everywhere.
    * ``mip_shape``: Gamma shape of the per-step MIP deposit, a skewed (Landau-like) spread.
    * ``mip_lateral_mm``: lateral spread of the track's deposits (delta rays).
    * ``fem_E0_gev``, ``fem_k``: mean electromagnetic fraction 1 - (E/E0)^(k-1) with E0 = 1 GeV,
      k = 0.82 (Groom's power law for pions, Wigmans "Calorimetry" ch. 2).
    * ``fem_concentration``: Beta concentration of the event-by-event f_em fluctuation;
      8 gives sigma(f_em) ~ 0.17 at f_em = 0.5, the size seen in test beams.
    * ``invisible_mean``, ``invisible_concentration``: fraction of the non-EM energy lost to
      nuclear binding, neutrinos and escaping neutrons (~30 % in lead, Wigmans), Beta spread.
    * ``tmax_a``, ``tmax_b``: mode of the hadronic longitudinal profile measured from the
      interaction point, a + b ln(E/GeV) lambda, chosen so that the combined profile peaks at
      ~0.2 ln E + 0.7 lambda from the front face (PDG hadronic shower maximum).
    * ``att_exponent``: the profile's exponential tail has slope lambda (E/GeV)^0.13 (PDG).
    * ``tmax_log_sigma``: per-event log-normal spread of the hadronic maximum.
    * ``core_radius_lambda``, ``tail_radius_lambda``, ``core_fraction``: core/tail radial
      profile in units of lambda_int (375 mm here); 95 % of the energy falls within ~1 lambda.
    * ``spots_per_gev``, ``spot_exponent``: hadronic energy is deposited in far fewer, more
      fluctuating clusters than EM energy; each cluster's energy is exponentially distributed.
    """

    lambda_X0: float = STACK_X0 / 1.28
    mip_mev_per_X0: float = 8.85
    mip_shape: float = 1.0
    mip_lateral_mm: float = 2.0
    fem_E0_gev: float = 1.0
    fem_k: float = 0.82
    fem_concentration: float = 8.0
    invisible_mean: float = 0.30
    invisible_concentration: float = 20.0
    tmax_a: float = 0.3
    tmax_b: float = 0.2
    att_exponent: float = 0.13
    tmax_log_sigma: float = 0.25
    core_radius_lambda: float = 0.10
    tail_radius_lambda: float = 0.40
    core_fraction: float = 0.6
    spots_per_gev: float = 40.0
    spot_exponent: float = 0.9


_PION = _PionParameters()
_LAMBDA_MM = _PION.lambda_X0 * X0_MM

# Keep the spot arrays of one sub-batch around 2M entries (~100 MB of temporaries).
_MAX_SPOTS_PER_BATCH = 2_000_000


# ---------------------------------------------------------------------------------------------
# Energies
@dataclass(frozen=True)
class EnergySpec:
    """Incident energies in GeV: fixed (``low == high``) or uniform in [low, high]."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.low <= 0 or self.high < self.low:
            raise ValueError(f"energy range {self.low}:{self.high} GeV is invalid: need 0 < low <= high")

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def __str__(self) -> str:
        return f"{self.low:g}" if self.fixed else f"{self.low:g}:{self.high:g}"


def parse_energy(text: str | float | EnergySpec) -> EnergySpec:
    """Parse ``"50"`` (fixed 50 GeV) or ``"1:100"`` (uniform in 1-100 GeV).

    >>> parse_energy("1:100")
    EnergySpec(low=1.0, high=100.0)
    """
    if isinstance(text, EnergySpec):
        return text
    if isinstance(text, (int, float)):
        return EnergySpec(float(text), float(text))
    parts = str(text).split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"energy {text!r} is not a number or LOW:HIGH range in GeV (e.g. 50 or 1:100)") from None
    if len(values) == 1:
        return EnergySpec(values[0], values[0])
    if len(values) == 2:
        return EnergySpec(values[0], values[1])
    raise ValueError(f"energy {text!r} must be a number or LOW:HIGH (e.g. 50 or 1:100)")


def sample_energies(spec: EnergySpec | str | float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` incident energies (GeV, float64) from ``spec``."""
    spec = parse_energy(spec)
    if spec.fixed:
        return np.full(n, spec.low)
    return rng.uniform(spec.low, spec.high, size=n)


# ---------------------------------------------------------------------------------------------
# GFLASH electromagnetic parametrisation (reference section 5, sampling-calorimeter columns)
@dataclass
class _EMProfile:
    """Per-shower GFLASH parameters for one batch (all arrays of shape (N,))."""

    energy: np.ndarray  # GeV in this EM component
    start: np.ndarray  # X0, depth where the shower starts
    T: np.ndarray  # X0, longitudinal maximum
    alpha: np.ndarray
    T_spot: np.ndarray
    alpha_spot: np.ndarray
    alpha_mean: np.ndarray  # exp<ln alpha>, used in the Geant4 tau correction
    n_spots: np.ndarray


def _gflash_sigma(denominator: np.ndarray) -> np.ndarray:
    # sigma = 1/denominator, capped at 0.5 as in Geant4 (also where the fit formula turns negative)
    return np.where(denominator > 2.0, 1.0 / np.maximum(denominator, 2.0), 0.5)


def _em_profile(energy_gev: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> _EMProfile:
    """Draw correlated longitudinal parameters (section 5.1) for each shower."""
    ln_y = np.log(np.maximum(energy_gev, 1e-3) / CRITICAL_GEV)
    # homogeneous means (logarithm arguments floored at 0.1, Geant4), then sampling corrections
    t_hom = np.maximum(ln_y - 0.812, 0.1)
    a_hom = np.maximum(0.81 + (0.458 + 2.26 / Z_EFF) * ln_y, 0.1)
    ln_t_mean = np.log(np.maximum(t_hom - 0.55 / F_S - 0.69 * (1 - E_HAT), 0.1))
    ln_a_mean = np.log(np.maximum(a_hom - 0.476 / F_S, 0.1))
    sigma_t = _gflash_sigma(-2.5 + 1.25 * ln_y)
    sigma_a = _gflash_sigma(-0.82 + 0.79 * ln_y)
    rho = 0.784 - 0.023 * ln_y
    z1, z2 = rng.standard_normal((2, energy_gev.shape[0]))
    plus, minus = np.sqrt((1 + rho) / 2), np.sqrt((1 - rho) / 2)
    T = np.maximum(np.exp(ln_t_mean + sigma_t * (plus * z1 + minus * z2)), 1.0)
    alpha = np.maximum(np.exp(ln_a_mean + sigma_a * (plus * z1 - minus * z2)), 1.1)
    # spot profile: sampling-calorimeter factors of the GFLASH paper (section 5.3)
    T_spot = T * (0.813 + 0.0019 * Z_EFF)
    alpha_spot = alpha * (0.844 + 0.0026 * Z_EFF)
    n_spots = (10.3 / SPOT_RESOLUTION_C) * np.maximum(energy_gev, 0.0) ** 0.959
    return _EMProfile(energy_gev, start, T, alpha, T_spot, alpha_spot, np.exp(ln_a_mean), n_spots)


def _gamma_step_fractions(start: np.ndarray, alpha: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Fraction of a Gamma(alpha, beta = (alpha-1)/T) profile in each 0.1 X0 stack step, (N, N_STEPS)."""
    edges = np.minimum(np.arange(N_STEPS + 1) * STEP_X0, STACK_X0)
    local = np.clip(edges[None, :] - start[:, None], 0.0, None)
    beta = (alpha - 1.0) / T
    cdf = gammainc(alpha[:, None], beta[:, None] * local)
    return np.diff(cdf, axis=1)


def _em_radial(profile: _EMProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core radius, tail radius (units of R_M) and core probability per (shower, step), section 5.2."""
    mid = (np.arange(N_STEPS) + 0.5) * STEP_X0
    local = np.clip(mid[None, :] - profile.start[:, None], 0.0, None)
    a, am = profile.alpha[:, None], profile.alpha_mean[:, None]
    # tau is clipped: far behind a low-energy shower the formulas overflow, and nothing is deposited there
    tau = np.minimum(local / profile.T[:, None] * (a - 1) / a * am / np.maximum(am - 1, 1e-3), 30.0)
    ln_e = np.log(np.maximum(profile.energy, 1e-3))[:, None]
    z1 = 0.0251 + 0.00319 * ln_e
    z2 = 0.1162 - 0.000381 * Z_EFF
    r_core = z1 + z2 * tau - 0.0203 * (1 - E_HAT) + 0.0397 * np.exp(-tau) / F_S
    k1, k2, k3 = 0.659 - 0.00309 * Z_EFF, 0.645, -2.59
    k4 = 0.3585 + 0.0412 * ln_e  # Geant4's ParRT6 (CMS has 0.0421); we follow Geant4
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    r_tail = r_tail - 0.14 * (1 - E_HAT) - 0.495 * np.exp(-tau) / F_S
    p1, p2, p3 = 2.632 - 0.00094 * Z_EFF, 0.401 + 0.00187 * Z_EFF, 1.313 - 0.0686 * ln_e
    arg = (p2 - tau) / p3
    p = p1 * np.exp(arg - np.exp(arg)) + (1 - E_HAT) * (0.348 - 0.642 * np.exp(-((tau - 1) ** 2)) / F_S)
    return np.maximum(r_core, 0.01), np.maximum(r_tail, r_core + 0.01), np.clip(p, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Spot deposition
@dataclass
class _Spots:
    """A flat list of energy deposits: shower index, depth (X0), position (mm), energy (MeV)."""

    shower: np.ndarray
    depth: np.ndarray
    x: np.ndarray
    y: np.ndarray
    energy_mev: np.ndarray


def _deposit(spots: _Spots, n_showers: int) -> tuple[np.ndarray, np.ndarray]:
    """Histogram spots into (N, 504) cells and (N, 3) overflow, in MeV."""
    layer = np.searchsorted(LAYER_END_X0, spots.depth, side="right")
    layer = np.minimum(layer, N_LAYERS - 1)
    inside = (np.abs(spots.x) < HALF_WINDOW_MM) & (np.abs(spots.y) < HALF_WINDOW_MM)
    slot = N_CELLS + layer  # overflow slots 504..506 by default
    for li, geo in enumerate(LAYERS):
        sel = inside & (layer == li)
        ix = ((spots.x[sel] + HALF_WINDOW_MM) // geo.cell_mm[0]).astype(np.int64)
        iy = ((spots.y[sel] + HALF_WINDOW_MM) // geo.cell_mm[1]).astype(np.int64)
        ix = np.clip(ix, 0, geo.shape[0] - 1)
        iy = np.clip(iy, 0, geo.shape[1] - 1)
        slot[sel] = LAYER_OFFSETS[li] + ix * geo.shape[1] + iy
    width = N_CELLS + N_LAYERS
    flat = np.bincount(spots.shower * width + slot, weights=spots.energy_mev, minlength=n_showers * width)
    flat = flat.reshape(n_showers, width)
    return flat[:, :N_CELLS], flat[:, N_CELLS:]


def _lateral(radius_mm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions with radial density 2 r R^2 / (r^2 + R^2)^2 around the axis: r = R sqrt(u / (1 - u))."""
    u = rng.random(radius_mm.shape[0])
    r = radius_mm * np.sqrt(u / (1.0 - u))
    phi = rng.uniform(0.0, 2 * np.pi, size=radius_mm.shape[0])
    return r * np.cos(phi), r * np.sin(phi)


def _profile_spots(
    step_energy_gev: np.ndarray,
    step_spots: np.ndarray,
    r_core_mm: np.ndarray,
    r_tail_mm: np.ndarray,
    p_core: np.ndarray,
    rng: np.random.Generator,
    exponential_weights: bool = False,
) -> _Spots:
    """Turn per-(shower, step) energies and spot counts into individual spots.

    Each step's energy is shared equally among its spots (GFLASH), or with exponential
    weights (hadronic clusters); spots sit at a uniform depth inside the step and at a
    radius drawn from the core (probability ``p_core``) or the tail component.
    """
    counts = np.where(step_energy_gev > 0, step_spots, 0).astype(np.int64).ravel()
    cell = np.repeat(np.arange(counts.shape[0]), counts)
    n_steps = step_energy_gev.shape[1]
    shower, step = np.divmod(cell, n_steps)
    energy = (step_energy_gev.ravel() / np.maximum(counts, 1))[cell] * 1000.0
    if exponential_weights:
        energy = energy * rng.exponential(1.0, size=energy.shape[0])
    depth = (step + rng.random(cell.shape[0])) * STEP_X0
    use_core = rng.random(cell.shape[0]) < p_core.ravel()[cell]
    radius = np.where(use_core, r_core_mm.ravel()[cell], r_tail_mm.ravel()[cell])
    x, y = _lateral(radius, rng)
    return _Spots(shower, np.minimum(depth, STACK_X0 - 1e-9), x, y, energy)


def _em_spots(profile: _EMProfile, rng: np.random.Generator) -> _Spots:
    """GFLASH shower: fluctuated step energies (section 5.3) shared among spots."""
    frac = _gamma_step_fractions(profile.start, profile.alpha, profile.T)
    step_e = profile.energy[:, None] * frac
    # intrinsic fluctuation: Gamma with mean dE and variance c^2 dE (GFLASH's form of the term)
    var = INTRINSIC_STOCHASTIC**2
    positive = step_e > 0
    step_e[positive] = rng.gamma(step_e[positive] / var, var)
    spot_frac = _gamma_step_fractions(profile.start, profile.alpha_spot, profile.T_spot)
    step_spots = np.maximum(1, np.floor(spot_frac * profile.n_spots[:, None]))
    r_core, r_tail, p = _em_radial(profile)
    return _profile_spots(step_e, step_spots, r_core * MOLIERE_MM, r_tail * MOLIERE_MM, p, rng)


# ---------------------------------------------------------------------------------------------
# Particles
def _em_showers(energy_gev: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> _Spots:
    return _em_spots(_em_profile(energy_gev, start, rng), rng)


def _mip_track(length_X0: np.ndarray, rng: np.random.Generator) -> tuple[_Spots, np.ndarray]:
    """Ionisation of the charged pion before it interacts (or through the whole stack).

    Returns the spots and the energy deposited per shower (GeV).
    """
    n_steps = np.ceil(np.minimum(length_X0, STACK_X0) / STEP_X0).astype(np.int64)
    shower = np.repeat(np.arange(length_X0.shape[0]), n_steps)
    first = np.cumsum(n_steps) - n_steps
    step = np.arange(shower.shape[0]) - np.repeat(first, n_steps)
    seg_end = np.minimum((step + 1) * STEP_X0, np.minimum(length_X0, STACK_X0)[shower])
    seg = np.maximum(seg_end - step * STEP_X0, 0.0)
    shape = _PION.mip_shape
    energy = _PION.mip_mev_per_X0 * seg * rng.gamma(shape, 1.0 / shape, size=shower.shape[0])
    depth = step * STEP_X0 + rng.random(shower.shape[0]) * seg
    x, y = rng.normal(0.0, _PION.mip_lateral_mm, size=(2, shower.shape[0]))
    deposited = np.bincount(shower, weights=energy, minlength=length_X0.shape[0]) / 1000.0
    return _Spots(shower, np.minimum(depth, STACK_X0 - 1e-9), x, y, energy), deposited


def _hadronic_spots(energy_gev: np.ndarray, start: np.ndarray, rng: np.random.Generator) -> _Spots:
    """The non-EM part of a pion shower: a long, broad Gamma profile in units of lambda_int."""
    p = _PION
    e = np.maximum(energy_gev, 1e-3)
    att = e**p.att_exponent  # lambda units
    tmax = np.maximum(p.tmax_a + p.tmax_b * np.log(e), 0.05)
    tmax = tmax * np.exp(p.tmax_log_sigma * rng.standard_normal(e.shape[0]))
    alpha = 1.0 + tmax / att
    T = tmax * p.lambda_X0  # mode in X0; _gamma_step_fractions uses beta = (alpha-1)/T
    frac = _gamma_step_fractions(start, alpha, T)
    step_e = energy_gev[:, None] * frac
    n_spots = p.spots_per_gev * e**p.spot_exponent
    step_spots = np.maximum(1, np.floor(frac * n_spots[:, None]))
    ones = np.ones_like(step_e)
    return _profile_spots(
        step_e,
        step_spots,
        ones * p.core_radius_lambda * _LAMBDA_MM,
        ones * p.tail_radius_lambda * _LAMBDA_MM,
        ones * p.core_fraction,
        rng,
        exponential_weights=True,
    )


def _pion_spots(energy_gev: np.ndarray, rng: np.random.Generator) -> list[_Spots]:
    p = _PION
    n = energy_gev.shape[0]
    t_int = rng.exponential(p.lambda_X0, size=n)
    track, mip_gev = _mip_track(t_int, rng)
    interacting = t_int < STACK_X0
    available = np.where(interacting, np.maximum(energy_gev - mip_gev, 0.0), 0.0)
    mean_fem = np.clip(1.0 - (np.maximum(available, p.fem_E0_gev) / p.fem_E0_gev) ** (p.fem_k - 1.0), 0.05, 0.95)
    kappa = p.fem_concentration
    f_em = rng.beta(mean_fem * kappa, (1 - mean_fem) * kappa)
    kappa_inv = p.invisible_concentration
    f_inv = rng.beta(p.invisible_mean * kappa_inv, (1 - p.invisible_mean) * kappa_inv, size=n)
    e_em = available * f_em
    e_had = available * (1 - f_em) * (1 - f_inv)
    spots = [track]
    idx = np.flatnonzero(interacting)
    if idx.size:
        start = t_int[idx]
        em = _em_showers(e_em[idx], start, rng)
        had = _hadronic_spots(e_had[idx], start, rng)
        for s in (em, had):
            s.shower = idx[s.shower]
        spots += [em, had]
    return spots


def _batch(particle: str, energy_gev: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = energy_gev.shape[0]
    if particle == "e+":
        parts = [_em_showers(energy_gev, np.zeros(n), rng)]
    elif particle == "gamma":
        parts = [_em_showers(energy_gev, rng.exponential(PHOTON_CONVERSION_X0, size=n), rng)]
    else:
        parts = _pion_spots(energy_gev, rng)
    spots = _Spots(*(np.concatenate([getattr(s, f) for s in parts]) for f in _Spots.__dataclass_fields__))
    return _deposit(spots, n)


def _spots_per_shower(particle: str, energy_gev: np.ndarray) -> np.ndarray:
    base = (10.3 / SPOT_RESOLUTION_C) * energy_gev**0.959 + N_STEPS
    return base if particle != "pi+" else base + _PION.spots_per_gev * energy_gev**_PION.spot_exponent + N_STEPS


def simulate_showers(particle: str, energy_gev: np.ndarray | float, rng: np.random.Generator) -> Showers:
    """Simulate one shower per incident energy.

    Args:
        particle: ``"e+"``, ``"gamma"`` or ``"pi+"``.
        energy_gev: incident kinetic energies in GeV (scalar or (N,) array).
        rng: the random generator; the same generator state gives identical showers.

    Returns:
        ``Showers`` with float32 cells and overflow in MeV.
    """
    if particle not in PARTICLES:
        raise ValueError(f"unknown particle {particle!r}; choose one of {', '.join(PARTICLES)}")
    energy = np.atleast_1d(np.asarray(energy_gev, dtype=np.float64))
    if energy.ndim != 1 or not np.all(np.isfinite(energy)) or np.any(energy <= 0):
        raise ValueError("incident energies must be a 1-D array of finite values > 0 GeV")
    cells = np.empty((energy.shape[0], N_CELLS), dtype=np.float32)
    overflow = np.empty((energy.shape[0], N_LAYERS), dtype=np.float32)
    # sub-batches bound the size of the spot arrays
    cost = np.concatenate([[0.0], np.cumsum(_spots_per_shower(particle, energy))])
    start = 0
    while start < energy.shape[0]:
        stop = max(int(np.searchsorted(cost, cost[start] + _MAX_SPOTS_PER_BATCH, side="right")) - 1, start + 1)
        cells[start:stop], overflow[start:stop] = _batch(particle, energy[start:stop], rng)
        start = stop
    cells[cells < READOUT_THRESHOLD_MEV] = 0.0  # readout threshold (overflow is a sum, not a cell)
    return Showers(energy.astype(np.float32), cells, overflow)


def iter_showers(
    particle: str,
    n: int,
    energy: EnergySpec | float | str,
    seed: int,
    chunk_size: int = 10_000,
    start_chunk: int = 0,
) -> Iterator[Showers]:
    """Yield ``n`` showers in chunks; chunk k is drawn from ``default_rng([seed, k])``.

    Any chunk can therefore be regenerated on its own (resumed runs, parallel shards) and the
    concatenated output does not depend on how the chunks were scheduled.
    """
    if n < 0:
        raise ValueError(f"number of showers must be >= 0, got {n}")
    if chunk_size <= 0:
        raise ValueError(f"chunk size must be > 0, got {chunk_size}")
    spec = parse_energy(energy)
    n_chunks = -(-n // chunk_size)
    for k in range(start_chunk, n_chunks):
        m = min(chunk_size, n - k * chunk_size)
        yield simulate_chunk(particle, spec, seed, k, m)


def simulate_chunk(particle: str, energy: EnergySpec | float | str, seed: int, chunk: int, size: int) -> Showers:
    """Chunk ``chunk`` of a seeded run: ``size`` showers from ``default_rng([seed, chunk])``."""
    rng = np.random.default_rng([seed, chunk])
    return simulate_showers(particle, sample_energies(energy, size, rng), rng)


def simulate(particle: str, n: int, energy: EnergySpec | float | str, seed: int, chunk_size: int = 10_000) -> Showers:
    """Simulate ``n`` showers in memory (see ``iter_showers`` for the seeding)."""
    parts = list(iter_showers(particle, n, energy, seed, chunk_size))
    if not parts:
        raise ValueError("n must be > 0")
    return Showers.concatenate(parts)
