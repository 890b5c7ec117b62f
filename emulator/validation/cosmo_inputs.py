"""The cosmology adapter: projected density slices 1+δ -> the validator's ``SampleSet``.

This is the only module of the package that knows about density fields. It fixes:

* conditions: (Omega_m, sigma_8) as given; the conditioning table bins Omega_m linearly over
  the domain's range (a reference at one parameter point fills one bin);
* low-level vector: log10(1+δ + 0.01) of the 64x64 pixels (the log tames the high-density
  tail for the sliced Wasserstein distance and the classifier; 0.01 keeps empty pixels finite);
* observables: the domain's per-map summaries (``CosmoDomain.observables``: moments, P(k)
  band powers, peaks, Minkowski functionals at ν = 0, 1, 2);
* binned statistics (compared bin by bin, checked by ``cosmo_default.json``), per map:

  - ``power_spectrum``: 2D P(k) of δ = x/mean - 1 in shells of width k_f = 2π/L up to the
    Nyquist frequency; checks use k <= k_Ny/2 (pixel-scale power is not trusted);
  - ``pixel_pdf``: pixel counts in 30 log-spaced bins of 1+δ over [0.01, 10^2.5] (end bins
    fold under/overflow); checks need >= ``min_ref_counts`` reference pixels in a bin;
  - ``peak_counts``: counts of 5x5 periodic local maxima by height, same bins;
  - ``minkowski_v0``/``_v1``/``_v2``: V0, V1, V2 at ν = -1 .. 3 (step 0.5) of the map smoothed by
    1 pixel and standardised; deviations relative to the largest |V_i| of the reference (V1
    and V2 cross or approach zero); counts are the pixels with |u - ν| < 0.25 (unsmoothed).

:func:`compare_maps` runs just these comparisons and their checks (no classifier), for
``scripts/cosmo_heldout_check.py``. :data:`COSMO_ADAPTER` is the domain's
:class:`~emulator.validation.adapters.ValidationAdapter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emulator.validation.adapters import hdf5_datasets
from emulator.validation.binned import compare_all
from emulator.validation.samples import BinnedStatistic, ImagePanel, SampleSet, ValidationSpec
from emulator.validation.thresholds import ThresholdConfig, load_thresholds, statistic_checks
from physics_data.cosmo.observables import minkowski_functionals, peak_counts, pixel_pdf, power_spectrum_2d

__all__ = [
    "COSMO_ADAPTER",
    "DENSITY_EDGES",
    "MF_THRESHOLDS",
    "CosmoAdapter",
    "Slices",
    "compare_maps",
    "cosmo_binned",
    "cosmo_binned_statistics",
    "cosmo_spec",
    "slices_to_sampleset",
]

DENSITY_EDGES = np.logspace(-2, 2.5, 31)
"""1+δ bin edges of the pixel PDF and the peak-height histogram."""
MF_THRESHOLDS = np.arange(-1.0, 3.01, 0.5)
"""Minkowski thresholds ν in units of the smoothed map's standard deviation."""
MF_SMOOTHING = 1.0  # Gaussian smoothing in pixels before the Minkowski functionals
MF_COUNT_HALF_WIDTH = 0.25  # |u - ν| < this counts a pixel as "in the band" for the count cut
LOW_LEVEL_OFFSET = 0.01  # added to 1+δ before log10 in the low-level vector
N_EXAMPLES = 4  # example slices per set in the report
_DENSITY_CENTRES = tuple(float(c) for c in np.sqrt(DENSITY_EDGES[1:] * DENSITY_EDGES[:-1]))


@dataclass(frozen=True)
class Slices:
    """Native cosmo samples: conditions (N, 2) = (Omega_m, sigma_8), maps (N, n, n) of 1+δ, and
    optionally the simulation each map was cut from (``groups``, (N,); None: independent maps)."""

    conditions: np.ndarray
    maps: np.ndarray
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.maps)


def _domain() -> Any:
    from emulator.domains import get_domain  # lazy: torch only when cosmo samples are validated

    return get_domain("cosmo")


def cosmo_binned_statistics(box_size: float, grid: int) -> tuple[BinnedStatistic, ...]:
    """The binned statistics of ``grid``² maps of side ``box_size`` Mpc/h (see the module doc)."""
    k = power_spectrum_2d(np.zeros((1, grid, grid)), box_size, density=False).k
    k_half_nyquist = 0.5 * np.pi * grid / box_size
    density = {
        "x": _DENSITY_CENTRES,
        "x_label": "1+δ (bin centre)",
        "bin_label": "1+δ ≈ {:.3g}",
        "log_x": True,
    }
    mf_names = ("area fraction", "boundary length", "Euler characteristic")
    return (
        BinnedStatistic(
            "power_spectrum", "2D power spectrum P(k)", tuple(float(v) for v in k), "k [h/Mpc]", "P(k) [(Mpc/h)²]",
            bin_label="k = {:.3g} h/Mpc", checked=tuple(bool(v) for v in k <= k_half_nyquist),
            checked_description="k <= k_Ny/2", log_x=True, log_y=True,
        ),
        BinnedStatistic("pixel_pdf", "pixel PDF of 1+δ", y_label="pixels per map", log_y=True, **density),
        BinnedStatistic("peak_counts", "peak counts by height (5x5 maxima)", y_label="peaks per map", **density),
        *(
            BinnedStatistic(
                f"minkowski_v{i}", f"Minkowski functional V{i} ({mf_names[i]})",
                tuple(float(v) for v in MF_THRESHOLDS), "threshold ν [σ of the smoothed map]", f"V{i}",
                bin_label="ν = {:g}", relative_to="max",
            )
            for i in range(3)
        ),
    )  # fmt: skip


def cosmo_binned(maps: np.ndarray, box_size: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-map values and counts ``(binned, binned_counts)`` of :func:`cosmo_binned_statistics`."""
    maps = np.asarray(maps, dtype=np.float64)
    mean = maps.mean(axis=(1, 2), keepdims=True)
    delta = np.where(mean > 0, maps / np.where(mean > 0, mean, 1.0) - 1.0, 0.0)  # all-zero map: δ = 0
    pdf = pixel_pdf(maps, DENSITY_EDGES, normalise=False)
    peaks = peak_counts(maps, DENSITY_EDGES)
    binned = {"power_spectrum": power_spectrum_2d(delta, box_size, density=False).power, "pixel_pdf": pdf,
              "peak_counts": peaks}  # fmt: skip
    counts = {"pixel_pdf": pdf, "peak_counts": peaks}
    std = maps.std(axis=(1, 2), keepdims=True)
    fluct = std[:, 0, 0] > 0
    mf = np.zeros((len(maps), 3, len(MF_THRESHOLDS)))
    if fluct.any():  # a constant map has no contours: its functionals are 0, as in CosmoDomain.observables
        mf[fluct] = minkowski_functionals(maps[fluct], MF_THRESHOLDS, smoothing=MF_SMOOTHING)
    u = (maps - mean) / np.where(std > 0, std, 1.0)
    band = np.stack([(np.abs(u - nu) < MF_COUNT_HALF_WIDTH).sum(axis=(1, 2)) for nu in MF_THRESHOLDS], axis=1)
    for i in range(3):
        binned[f"minkowski_v{i}"] = mf[:, i]
        counts[f"minkowski_v{i}"] = band
    return binned, counts


def cosmo_spec(label: str = "") -> ValidationSpec:
    """The cosmology ``ValidationSpec`` of the cosmo domain's maps (64x64, 256 Mpc/h)."""
    from emulator.domains.cosmo import BOX_SIZE, GRID

    om = _domain().conditions[0]
    return ValidationSpec(
        domain="cosmo",
        condition_names=("omega_m", "sigma8"),
        condition_units=("dimensionless", "dimensionless"),
        condition_range=(om.low, om.high),
        condition_binning="linear",
        log_conditions=False,
        response=None,
        observable_labels={
            "mean": "mean 1+δ",
            "std": "std of 1+δ",
            "skewness": "skewness of 1+δ",
            "n_peaks": "peaks per map (5x5 maxima)",
        },
        low_level_description=f"log10(1+δ + {LOW_LEVEL_OFFSET:g}) of the {GRID}x{GRID} pixels, row-major",
        particle=label,
        binned_statistics=cosmo_binned_statistics(BOX_SIZE, GRID),
    )


def _panel(image: np.ndarray, title: str, box_size: float) -> ImagePanel:
    return ImagePanel(title, image, "1+δ", (0.0, box_size, 0.0, box_size), ("x [Mpc/h]", "y [Mpc/h]"))


def slices_to_sampleset(slices: Slices) -> SampleSet:
    """The validator's view of ``slices``: observables, binned statistics, mean map and examples."""
    from emulator.domains.cosmo import BOX_SIZE

    maps = np.asarray(slices.maps, dtype=np.float32)
    cond = np.asarray(slices.conditions, dtype=np.float64)
    binned, counts = cosmo_binned(maps, BOX_SIZE)
    examples = [
        _panel(maps[i], f"Ωm {cond[i, 0]:.3f}, σ8 {cond[i, 1]:.3f}", BOX_SIZE) for i in range(min(N_EXAMPLES, len(maps)))
    ]  # fmt: skip
    return SampleSet(
        conditions=cond,
        low_level=np.log10(maps.reshape(len(maps), -1) + np.float32(LOW_LEVEL_OFFSET)),
        observables=_domain().observables(maps, cond),
        images=[_panel(maps.mean(axis=0, dtype=np.float64), f"mean over {len(maps):,} maps", BOX_SIZE)],
        binned=binned,
        binned_counts=counts,
        examples=examples,
        groups=slices.groups,
    )


def compare_maps(
    generated: np.ndarray,
    reference: np.ndarray,
    box_size: float,
    thresholds: ThresholdConfig | str | Path | None = "cosmo_default",
    reference_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Only the binned statistics of generated vs reference maps (N, n, n) and their checks.

    ``reference_groups`` (N,) labels the simulation each reference map was cut from, so the
    reference's errors are block errors over simulations (slices of one box are correlated).
    Returns ``{"statistics": {name: comparison}, "checks": [...], "passed": bool}`` with the
    thresholds' ``statistics`` checks (``cosmo_default``: the issue's P(k), PDF, peak and
    Minkowski tolerances) and its ``significance_sigma``; no classifier or distances.
    """
    thr = thresholds if isinstance(thresholds, ThresholdConfig) else load_thresholds(thresholds)
    stats = cosmo_binned_statistics(box_size, np.shape(reference)[-1])
    (gen, gen_counts), (ref, ref_counts) = (
        cosmo_binned(generated, box_size),
        cosmo_binned(reference, box_size),
    )
    statistics = compare_all(stats, gen, ref, gen_counts, ref_counts, reference_groups=reference_groups)
    z = float(thr.checks["significance_sigma"] or 0.0)
    checks = [
        c for name, tols in thr.statistics.items() for c in statistic_checks(name, statistics[name], tols, z)
    ]
    return {
        "statistics": statistics,
        "checks": checks,
        "passed": bool(checks) and all(c["passed"] for c in checks),
    }


class CosmoAdapter:
    """The cosmology :class:`~emulator.validation.adapters.ValidationAdapter` (native samples: :class:`Slices`)."""

    domain = "cosmo"
    noun = "slices"

    def recognises(self, path: Path) -> bool:
        """A cosmo field file (``fields`` and ``params`` datasets, as ``emulator simulate cosmo`` writes)."""
        return {"fields", "params"} <= hdf5_datasets(path)

    def load(self, path: Path, max_samples: int | None) -> tuple[Slices, dict]:
        """The first ``max_samples`` slices and their simulation index; files of another box, grid or
        redshift are refused."""
        from physics_data.cosmo.io import read_sim_index

        conditions, maps, attrs = _domain().read_samples(path, max_samples)
        return Slices(conditions, maps, read_sim_index(path)[: len(maps)]), attrs

    def conditions(self, samples: Slices) -> np.ndarray:
        """(N, 2) = (Omega_m, sigma_8) of each slice."""
        return np.asarray(samples.conditions, dtype=np.float64)

    def from_generated(self, conditions: np.ndarray, samples: np.ndarray) -> Slices:
        """A cosmo model's output as :class:`Slices`."""
        return Slices(
            np.asarray(conditions), np.asarray(samples).reshape(len(samples), *_domain().sample_shape)
        )

    def label(self, attrs: dict) -> str:
        """No label: cosmo files differ only in their parameters, which the report lists."""
        return ""

    def default_thresholds(self, label: str) -> str:
        """``cosmo_default`` (the issue's P(k), PDF, peak and Minkowski tolerances)."""
        return "cosmo_default"

    def spec(self, label: str) -> ValidationSpec:
        """:func:`cosmo_spec`."""
        return cosmo_spec(label)

    def to_sampleset(self, samples: Slices) -> SampleSet:
        """:func:`slices_to_sampleset`."""
        return slices_to_sampleset(samples)


COSMO_ADAPTER = CosmoAdapter()
"""The cosmology adapter registered for domain ``"cosmo"``."""
