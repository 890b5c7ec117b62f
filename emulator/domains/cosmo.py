"""The ``cosmo`` domain: 64x64 projected density slices 1+δ conditioned on (Omega_m, sigma_8).

One sample is a 64x64 float32 map of the projected overdensity 1+δ (dimensionless, >= 0, mean
about 1): one slab of ``SLICE_THICKNESS`` = 16 Mpc/h through a periodic ``BOX_SIZE`` = 256 Mpc/h
particle-mesh box at redshift ``REDSHIFT`` = 0, pixels of 4 Mpc/h: exactly what
``emulator simulate cosmo`` writes with its default box, redshift, grid and slice thickness
(flat ΛCDM, h = 0.7, Omega_b = 0.05, n_s = 0.96 fixed). Conditions: Omega_m in [0.101, 0.487]
and sigma_8 in [0.487, 1.331], the ranges of Perraudin et al. 2021 (arXiv:2004.08139); train on
data simulated over these ranges (``--omega-m 0.101:0.487 --sigma8 0.487:1.331``).

Preprocessing (Rodriguez et al. 2018), per pixel x = 1+δ with a = ``TRANSFORM_A`` = 4::

    s = 2x / (x + a) - 1 = (x - a) / (x + a)       to_network,   x >= 0  ->  s in [-1, 1)
    x = a (1 + s) / (1 - s)                       from_network, s clamped to [-1, S_MAX]

The transform compresses the heavy high-density tail (x = 4 -> s = 0, x = 36 -> s = 0.8) and
maps onto the generator's tanh range. ``from_network`` inverts ``to_network`` exactly (up to
float rounding) for 0 <= x <= ``X_MAX``; the clamp makes every network output physical: 1+δ is
non-negative (exactly 0 at s = -1) and finite (at most ``X_MAX`` = a (2 - 2^-12) / 2^-12, about
3.3e4, far above any slab-averaged density). Its weakness is the voids: 1+δ = 0.01 ... 0.1 all
land within 0.05 of s = -1 (ds/dlog10 x = 0.06 at x = 0.05), so the critic hardly sees them and
cosmo-slice64 1.0.0 makes almost no pixels below 1+δ = 0.05 (0.1 % of the reference's at 0.012).

Variant ``log10_density`` (``CosmoDomain("log10_density")``, chosen by ``--set
preprocessing=log10_density``), with L = ``LOG_SPAN`` = 2.6 decades either side of 1+δ = 1::

    n = log10(x + 10^-L) / L                     to_network,   x >= 0 -> n in [-1, 1)
    x = 10^(L clamp(n, -1, N_MAX)) - 10^-L        from_network

resolves every decade alike (dn/dlog10 x = 1/L = 0.38 from the voids to the peaks; 1+δ = 0
is n = -1 exactly, the tanh's lower end), and reaches 1+δ = 10^(L N_MAX) ≈ 398, above the
densest 4 Mpc/h pixel of the training data.

Condition features: each condition mapped linearly onto [0, 1] over its range.

Critic features (``critic_features``, differentiable, float32): the same five log10 P(k) band
powers, computed with torch's FFT from the network-space maps and shifted by -2 so they are
O(1); the critic sees the spectrum directly, which is what the P(k) thresholds judge. Then
10 log10 of the map's mean 1+δ (the slab's own overdensity: P(k) of x / mean - 1 cannot see it,
and generators without this input made it vary half as much as the simulator, std 0.037 vs 0.083),
and the pixel PDF: log1p of the soft count of pixels per bin of log10(1+δ) (``PDF_CENTRES``),
what the pixel-PDF threshold judges. Last the peak counts, the same histogram of pixels weighted
by how much each is a peak: sigmoid of its height above the rest of its periodic 5x5 window, in
units of 1/80 decade, so the critic sees the peak-count statistic too (1.1.0 made too few low peaks).

Observables (per map, all (N,) arrays, cheap enough for quick validation every few hundred
steps): ``mean``, ``std``, ``skewness`` of 1+δ; ``log_pk_kA_B`` = log10 of the mean 2D power
P(k) in (Mpc/h)² over |k| in [A - 1/2, B + 1/2) k_f, k_f = 2π/L (bands 1-2, 3-4, 5-8, 9-16,
17-32 up to the Nyquist 32 k_f); ``n_peaks`` (5x5 periodic local maxima) and
``log_peak_height`` (mean log10 of their heights); Minkowski functionals ``v0/v1/v2_nuN`` of
the map smoothed by 1 pixel and standardised, at ν = 0, 1, 2 (band 0.5).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from emulator.domains.base import Condition, SampleWriter
from emulator.domains.soft_histogram import soft_histogram

__all__ = [
    "BOX_SIZE",
    "GRID",
    "LOG_SPAN",
    "PDF_CENTRES",
    "PEAK_CENTRES",
    "PK_BANDS",
    "PREPROCESSINGS",
    "REDSHIFT",
    "SLICE_THICKNESS",
    "S_MAX",
    "TRANSFORM_A",
    "X_MAX",
    "CosmoDomain",
    "CosmoWriter",
]

BOX_SIZE = 256.0
"""Box side in Mpc/h (``emulator simulate cosmo --box-size`` default)."""
REDSHIFT = 0.0
"""Output redshift (``--redshift`` default)."""
GRID = 64
"""Map pixels per side (``--grid`` default); pixel size BOX_SIZE / GRID = 4 Mpc/h."""
SLICE_THICKNESS = 16.0
"""Slab thickness in Mpc/h (``--slice-thickness`` default, BOX_SIZE / 16)."""

TRANSFORM_A = 4.0
"""a of s = 2x/(x+a) - 1: the density mapped to s = 0."""
S_MAX = 1.0 - 2.0**-12
"""Largest network value used by ``from_network`` (keeps 1 - s > 0, so the inverse is finite)."""
X_MAX = TRANSFORM_A * (1.0 + S_MAX) / (1.0 - S_MAX)
"""Largest density ``from_network`` can produce (about 3.3e4)."""
LOG_SPAN = 2.6
"""L of the ``log10_density`` variant: n = log10(x + 10^-L) / L, so x = 0 -> n = -1."""
PREPROCESSINGS = ("rodriguez_s", "log10_density")
"""The cosmo preprocessing variants; the first is the default."""

PK_BANDS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 8), (9, 16), (17, 32))
"""Power-spectrum bands in units of the fundamental k_f = 2π/BOX_SIZE (inclusive integer ranges)."""
PDF_CENTRES: tuple[float, ...] = tuple(-2.0 + 0.25 * j for j in range(19))
"""Bin centres in log10(1+δ) of the pixel-PDF critic features: 0.01 to 316, a quarter decade apart."""
_PEAK_WINDOW = 5  # peaks are maxima of their periodic 5x5 window (as ``observables`` and the validation count)
PEAK_CENTRES: tuple[float, ...] = tuple(0.025 + 0.15 * j for j in range(-5, 15))
"""Bin centres in log10(1+δ) of the peak counts matched by ``consistency_statistics``: 0.19 to 133,
0.15 decades apart, the validation's peak-height bins."""
_PEAK_SOFTNESS = 0.0125  # decades: a pixel 0.05 decades (12 % in 1+δ) above its window counts 0.98
_MF_THRESHOLDS = (0.0, 1.0, 2.0)  # Minkowski thresholds ν in units of the map's standard deviation
_MF_BAND = 0.5  # width of the δ(u - ν) band
_MF_SMOOTHING = 1.0  # Gaussian smoothing in pixels before the Minkowski functionals
_PK_FLOOR = 1e-10  # (Mpc/h)²: keeps log10 finite for a constant map
_FEATURE_PK_FLOOR = 1e-2  # (Mpc/h)², far below any real band power (~10-1000): bounded log10 gradients


def _window_neighbour_max(maps: torch.Tensor, size: int = _PEAK_WINDOW) -> torch.Tensor:
    """Per pixel of ``maps`` (B, H, W), the largest other pixel of its periodic size x size window."""
    r = size // 2
    shifts = [(i, j) for i in range(-r, r + 1) for j in range(-r, r + 1) if (i, j) != (0, 0)]
    return torch.stack([torch.roll(maps, shift, dims=(1, 2)) for shift in shifts]).amax(dim=0)


def _bin_units(maps: torch.Tensor, centres: tuple[float, ...]) -> torch.Tensor:
    """log10(1+δ) of ``maps`` (B, H, W) in units of the bin spacing of ``centres`` from the first, (B, H*W)."""
    spacing = centres[1] - centres[0]
    return (torch.log10(maps.flatten(1) + 10.0**-LOG_SPAN) - centres[0]) / spacing  # empty pixels below bin 0


def _soft_peak_counts(maps: torch.Tensor, centres: tuple[float, ...], t: torch.Tensor | None = None) -> torch.Tensor:
    """Soft counts (B, len(centres)) of the peaks of ``maps`` (B, H, W) per bin of log10 height (``centres``);
    ``t``: ``_bin_units(maps, centres)`` when the caller already has it.

    Each pixel adds sigmoid(its height above the rest of its periodic 5x5 window / ``_PEAK_SOFTNESS``
    decades) to the bins of its height: about 1 for a clear maximum, 0 elsewhere, with a gradient that
    can raise or lower a pixel against its neighbours.
    """
    t = _bin_units(maps, centres) if t is None else t
    spacing = centres[1] - centres[0]
    height_above_window = t - _window_neighbour_max(t.reshape(maps.shape)).flatten(1)
    peakness = torch.sigmoid(height_above_window * spacing / _PEAK_SOFTNESS)
    return soft_histogram(t, len(centres), weights=peakness)[:, 0]


def _band_matrix(n: int, box_size: float) -> torch.Tensor:
    """(n * (n // 2 + 1), len(PK_BANDS)) float32: the mode-weighted mean over each band of an rfft2 power map.

    Same modes and weights as ``physics_data.cosmo.observables.power_spectrum_2d`` (|k| in
    [lo - 1/2, hi + 1/2) k_f; rfft columns other than k_x = 0 and Nyquist count twice).
    """
    ky = np.fft.fftfreq(n, 1.0 / n)[:, None]
    kx = np.fft.rfftfreq(n, 1.0 / n)[None, :]
    kmag = np.sqrt(ky**2 + kx**2).ravel()  # units of k_f
    weight = np.broadcast_to(np.where((kx == 0) | (kx == n // 2), 1.0, 2.0), (n, n // 2 + 1)).ravel()
    m = np.zeros((kmag.size, len(PK_BANDS)))
    for j, (lo, hi) in enumerate(PK_BANDS):
        inside = (kmag >= lo - 0.5) & (kmag < hi + 0.5)
        m[inside, j] = weight[inside] / weight[inside].sum()
    return torch.from_numpy(m).float()


class CosmoWriter:
    """Writes (conditions, maps) batches as a cosmo field file (``fields``/``params``/``sim_index``).

    ``params`` has the columns of ``emulator simulate cosmo`` (omega_m, sigma8, box_size,
    redshift). Every generated map is independent, so ``sim_index`` is the map's row in the whole
    run (``attrs["first_row"]`` + its row in this file, for the shards of large runs).
    """

    def __init__(self, path: str | Path, attrs: dict, compression: str | None, domain: CosmoDomain) -> None:
        from physics_data.cosmo.io import FieldFileWriter  # lazy: h5py only when writing
        from physics_data.cosmo.simulate import PARAM_NAMES

        self._names = PARAM_NAMES
        self._row = int(attrs.get("first_row", 0))
        self._shape = domain.sample_shape
        self._writer = FieldFileWriter(
            path, PARAM_NAMES, domain.sample_shape, domain.file_attrs() | dict(attrs), compression=compression
        )

    def __enter__(self) -> CosmoWriter:
        self._writer.__enter__()
        return self

    def __exit__(self, *exc: object) -> object:
        return self._writer.__exit__(*exc)

    def append(self, conditions: np.ndarray, samples: np.ndarray) -> None:
        """Append maps: ``conditions`` (m, 2) = (omega_m, sigma8), ``samples`` (m, 64, 64) 1+δ."""
        samples = np.asarray(samples, dtype=np.float32)
        m = len(samples)
        conditions = np.asarray(conditions, dtype=np.float32).reshape(m, -1)
        fixed = {"box_size": BOX_SIZE, "redshift": REDSHIFT}
        params = np.empty((m, len(self._names)), dtype=np.float32)
        for j, name in enumerate(self._names):
            params[:, j] = fixed[name] if name in fixed else conditions[:, ("omega_m", "sigma8").index(name)]
        rows = np.arange(self._row, self._row + m, dtype=np.int64)
        self._writer.append(samples.reshape(m, *self._shape), params, rows)
        self._row += m


class CosmoDomain:
    """Projected density slices 1+δ (64x64) of a 256 Mpc/h box at z = 0, conditioned on (Omega_m, sigma_8)."""

    name = "cosmo"
    sample_shape: tuple[int, ...] = (GRID, GRID)
    conditions: tuple[Condition, ...] = (
        Condition("omega_m", "dimensionless", 0.101, 0.487, "matter density parameter Omega_m (flat LCDM)"),
        Condition("sigma8", "dimensionless", 0.487, 1.331, "rms linear density fluctuation in 8 Mpc/h spheres, sigma_8"),
    )  # fmt: skip
    layout = (
        f"{GRID}x{GRID} float32 projected density 1+delta (dimensionless, >= 0, mean ~1), row-major: "
        f"one {SLICE_THICKNESS:g} Mpc/h slab through a periodic {BOX_SIZE:g} Mpc/h particle-mesh box at "
        f"z = {REDSHIFT:g}, pixel {BOX_SIZE / GRID:g} Mpc/h; flat LCDM with h = 0.7, Omega_b = 0.05, n_s = 0.96"
    )
    file_formats: tuple[str, ...] = ("cosmo",)
    box_size = BOX_SIZE
    redshift = REDSHIFT
    slice_thickness = SLICE_THICKNESS
    quick_val_observables: tuple[str, ...] = (
        "std", "skewness", "log_pk_k1_2", "log_pk_k5_8", "log_pk_k17_32", "n_peaks", "v0_nu1", "v1_nu1", "v2_nu1",
    )  # fmt: skip
    output_activation = "tanh"  # network space is [-1, 1)
    generator_class = "ConvGenerator"
    critic_class = "ConvCritic"
    train_defaults: ClassVar[dict] = {"g_hidden": (64, 32, 16, 8), "d_hidden": (16, 32, 64, 128)}
    """Conv channel widths used when the training config leaves the (MLP-sized) defaults; CPU-sized."""
    critic_feature_dim = len(PK_BANDS) + 1 + 2 * len(PDF_CENTRES)

    def __init__(self, preprocessing: str = PREPROCESSINGS[0]) -> None:
        if preprocessing not in PREPROCESSINGS:
            raise ValueError(
                f"unknown cosmo preprocessing {preprocessing!r}; choose one of {', '.join(PREPROCESSINGS)}"
            )
        self._log = preprocessing == "log10_density"
        if self._log:
            transform = {
                "formula": "n = log10(x + 10^-L) / L; x = 10^(L clamp(n, -1, n_max)) - 10^-L",
                "L": LOG_SPAN,
                "n_max": S_MAX,
            }
        else:
            transform = {
                "formula": "s = 2 x / (x + a) - 1; x = a (1 + s) / (1 - clamp(s, -1, s_max))",
                "a": TRANSFORM_A,
                "s_max": S_MAX,
            }
        self.preprocessing: dict = {
            "name": preprocessing,
            **transform,
            "condition_features": "(c - low) / (high - low) per condition",
        }
        self._bands: dict[str, torch.Tensor] = {}

    def with_preprocessing(self, name: str) -> CosmoDomain:
        """This domain with the preprocessing variant ``name`` (one of ``PREPROCESSINGS``)."""
        return CosmoDomain(name)

    # -- transforms ---------------------------------------------------------------------------
    def to_network(self, samples: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """1+δ (B, 64, 64), >= 0 -> network values in [-1, 1); exact inverse of ``from_network``.

        Default s = (x - a) / (x + a); ``log10_density``: n = log10(x + 10^-L) / L.
        """
        if self._log:  # empty pixels exactly at the lower end, so that they come back exactly empty
            return torch.where(samples > 0, torch.log10(samples + 10.0**-LOG_SPAN) / LOG_SPAN, -1.0)
        return (samples - TRANSFORM_A) / (samples + TRANSFORM_A)

    def from_network(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Network values (B, 64, 64) -> 1+δ, non-negative and finite by construction.

        Default a (1 + s) / (1 - s); ``log10_density``: 10^(L n) - 10^-L (0 at n = -1).
        """
        s = x.clamp(-1.0, S_MAX)
        if self._log:
            return torch.where(s > -1.0, torch.pow(10.0, LOG_SPAN * s) - 10.0**-LOG_SPAN, 0.0).clamp_min(0.0)
        return TRANSFORM_A * (1.0 + s) / (1.0 - s)

    def condition_features(self, conditions: torch.Tensor) -> torch.Tensor:
        """(Omega_m, sigma_8) (B, 2) -> each linearly onto [0, 1] over its valid range."""
        low = torch.tensor([c.low for c in self.conditions], dtype=conditions.dtype, device=conditions.device)
        high = torch.tensor(
            [c.high for c in self.conditions], dtype=conditions.dtype, device=conditions.device
        )
        return (conditions - low) / (high - low)

    calibration_space: tuple[float, float] = (10.0**-LOG_SPAN, 0.05)
    """Output calibration (emulator.calibration) of the pixels in y = log10(1+δ + 10^-2.6), 20 thresholds a decade."""
    calibration_fit: ClassVar[dict[str, int]] = {"spectral_iterations": 3}
    """Before the pixel map, a conditional gain per P(k) shell in the same y (emulator.spectral_calibration)."""

    # -- training extras ----------------------------------------------------------------------
    def critic_features(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Of network-space maps ``x`` (B, 64*64), differentiable, float32: log10 P(k) - 2 in the
        ``PK_BANDS``, 10 log10 of the mean 1+δ, log1p of the soft pixel counts per ``PDF_CENTRES`` bin / 4,
        and log1p of the soft peak counts per ``PDF_CENTRES`` bin of peak height / 2."""
        maps = self.from_network(x.float().reshape(-1, *self.sample_shape), conditions)
        level = maps.mean(dim=(1, 2)).clamp_min(1e-3)  # the map's mean 1+δ
        log_pk = torch.log10(self._band_powers(maps, level)) - 2.0
        mean = 10.0 * torch.log10(level)[:, None]
        t = _bin_units(maps, PDF_CENTRES)  # shared by the pixel PDF and the peak counts
        pdf = torch.log1p(soft_histogram(t, len(PDF_CENTRES))[:, 0]) * 0.25
        peaks = torch.log1p(_soft_peak_counts(maps, PDF_CENTRES, t)) * 0.5  # pixels <= 4096 -> <= 2.1; peaks <~ 50
        return torch.cat([log_pk, mean, pdf, peaks], dim=1)

    def _band_powers(self, maps: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Mean 2D power (B, len(PK_BANDS)) in (Mpc/h)² of δ = ``maps`` / ``level`` - 1 in the ``PK_BANDS``,
        differentiable, floored at ``_FEATURE_PK_FLOOR`` so that its log has bounded gradients."""
        key = str(maps.device)
        if key not in self._bands:
            self._bands[key] = _band_matrix(GRID, BOX_SIZE).to(maps.device)
        delta = maps / level[:, None, None] - 1.0
        modes = torch.view_as_real(torch.fft.rfft2(delta))  # |δ_k|² as re² + im²: smooth at 0
        power = modes.square().sum(-1).flatten(1) * (BOX_SIZE**2 / GRID**4)  # P = (V/n²)² |DFT|² / V
        return power @ self._bands[key] + _FEATURE_PK_FLOOR

    def consistency_statistics(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Of network-space maps ``x`` (B, 64*64), differentiable, (B, 20 + 5): log1p of the soft peak counts
        (5x5 maxima) per bin of peak height, bins ``PEAK_CENTRES``, then ln of the band powers P(k) in the
        ``PK_BANDS`` times ``len(PEAK_CENTRES) / len(PK_BANDS)`` = 4: what the peak-count and power-spectrum
        checks judge, per map, for the trainer's optional consistency term (``energy_weight``), which
        averages over the 25 columns. Natural logs, so a unit is the same relative change in both, and
        the factor gives the five bands as much weight as the twenty peak bins: they hold the large
        scales of each (Omega_m, sigma_8) while the term moves the peaks (a peak-only term let the
        large scales drift, README)."""
        maps = self.from_network(x.float().reshape(-1, *self.sample_shape), conditions)
        level = maps.mean(dim=(1, 2)).clamp_min(1e-3)
        peaks = torch.log1p(_soft_peak_counts(maps, PEAK_CENTRES))
        band_weight = len(PEAK_CENTRES) / len(PK_BANDS)
        return torch.cat([peaks, band_weight * torch.log(self._band_powers(maps, level))], dim=1)

    # -- physics and files --------------------------------------------------------------------
    def observables(self, samples: np.ndarray, conditions: np.ndarray) -> dict[str, np.ndarray]:
        """Per-map summary statistics (see the module docstring); maps (N, 64, 64) or (N, 4096)."""
        from physics_data.cosmo.observables import minkowski_functionals, peak_mask, power_spectrum_2d

        maps = np.asarray(samples, dtype=np.float64).reshape(-1, *self.sample_shape)
        n = len(maps)
        mean = maps.mean(axis=(1, 2))
        std = maps.std(axis=(1, 2))
        fluct = std > 0
        safe_std = np.where(fluct, std, 1.0)
        out = {
            "mean": mean,
            "std": std,
            "skewness": (((maps - mean[:, None, None]) / safe_std[:, None, None]) ** 3).mean(axis=(1, 2))
            * fluct,
        }
        # δ = x / mean - 1 (0 for an all-zero map), binned in the PK_BANDS shells
        delta = np.where(
            mean[:, None, None] > 0, maps / np.where(mean > 0, mean, 1.0)[:, None, None] - 1.0, 0.0
        )
        k_f = 2.0 * np.pi / BOX_SIZE
        edges = k_f * np.array([PK_BANDS[0][0] - 0.5, *(hi + 0.5 for _, hi in PK_BANDS)])
        power = power_spectrum_2d(delta, BOX_SIZE, edges=edges, density=False).power
        for j, (lo, hi) in enumerate(PK_BANDS):
            out[f"log_pk_k{lo}_{hi}"] = np.log10(power[:, j] + _PK_FLOOR)
        peaks = peak_mask(maps, threshold=0.0, size=5)
        n_peaks = peaks.sum(axis=(1, 2))
        log_heights = np.where(peaks, np.log10(np.maximum(maps, 1e-6)), 0.0).sum(axis=(1, 2))
        out["n_peaks"] = n_peaks.astype(np.float64)
        out["log_peak_height"] = log_heights / np.maximum(n_peaks, 1)
        mf = np.zeros((n, 3, len(_MF_THRESHOLDS)))
        if fluct.any():  # a constant map has no contours: its functionals are reported as 0
            mf[fluct] = minkowski_functionals(
                maps[fluct], np.array(_MF_THRESHOLDS), smoothing=_MF_SMOOTHING, bin_width=_MF_BAND
            )
        for i in range(3):
            for j, nu in enumerate(_MF_THRESHOLDS):
                out[f"v{i}_nu{nu:g}"] = mf[:, i, j]
        return out

    def file_attrs(self) -> dict[str, object]:
        """The fixed setup every file of this domain records (box, redshift, grid, slab, cosmology)."""
        return {
            "box_size": BOX_SIZE, "box_size_unit": "Mpc/h", "redshift": REDSHIFT, "grid": GRID,
            "pixel_size": BOX_SIZE / GRID, "slice_thickness": SLICE_THICKNESS, "slice_thickness_unit": "Mpc/h",
            "fields_unit": "projected density 1+delta (dimensionless)",
            "cosmology_h": 0.7, "cosmology_omega_b": 0.05, "cosmology_n_s": 0.96,
        }  # fmt: skip

    def read_samples(self, path: str | Path, n: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """Training data from a cosmo field file: (conditions (N, 2) = (Omega_m, sigma_8), maps (N, 64, 64), attrs).

        The file must hold maps of this domain's setup (64x64, 256 Mpc/h box, z = 0, 16 Mpc/h
        slabs); anything else is refused, since the model would be labelled with the wrong box.
        """
        from physics_data.cosmo.io import InvalidFieldFile, read_fields

        fs = read_fields(path, load_3d=False)
        if fs.fields.shape[1:] != self.sample_shape:
            raise InvalidFieldFile(
                f"{path}: maps are {fs.fields.shape[1]}x{fs.fields.shape[2]}, the cosmo domain needs "
                f"{GRID}x{GRID}; simulate with --grid {GRID}"
            )
        missing = [c.name for c in self.conditions if c.name not in fs.param_names]
        if missing:
            raise InvalidFieldFile(
                f"{path}: params has no column(s) {missing}; it has {list(fs.param_names)}"
            )
        fixed = (("box_size", BOX_SIZE, "--box-size"), ("redshift", REDSHIFT, "--redshift"),
                 ("slice_thickness", SLICE_THICKNESS, "--slice-thickness"))  # fmt: skip
        for name, want, flag in fixed:
            values = (
                fs.param(name) if name in fs.param_names else np.asarray([fs.attrs.get(name, want)], float)
            )
            if not np.allclose(values, want, rtol=1e-5, atol=1e-6):
                raise InvalidFieldFile(
                    f"{path}: {name} {float(np.asarray(values).flat[0]):g} differs from the cosmo domain's "
                    f"{want:g}; simulate with {flag} {want:g}"
                )
        stop = len(fs.fields) if n is None else min(n, len(fs.fields))
        conditions = np.stack([fs.param(c.name) for c in self.conditions], axis=1)[:stop]
        return conditions.astype(np.float32), np.ascontiguousarray(fs.fields[:stop]), fs.attrs

    def open_writer(
        self, path: str | Path, fmt: str, attrs: dict, compression: str | None = "lzf"
    ) -> SampleWriter:
        """Atomic cosmo field-file writer (the ``emulator simulate cosmo`` layout) with the given compression."""
        if fmt not in self.file_formats:
            raise ValueError(
                f"unknown cosmo file format {fmt!r}; choose one of {', '.join(self.file_formats)}"
            )
        return CosmoWriter(path, attrs, compression, self)
