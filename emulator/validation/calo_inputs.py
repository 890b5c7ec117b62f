"""The calorimeter adapter: CaloGAN showers -> the validator's ``SampleSet``.

This is the only module of the package that knows about calorimeters. It fixes:

* condition: incident energy in GeV, 10 *linear* bins over 1-100 GeV (the reference
  energies are uniform, so every bin has the same population), log10 E_inc as the
  classifier/FPD condition feature (as CaloChallenge);
* low-level vector: the 504 cell energies and the 3 overflow values divided by the
  incident energy in the same unit (MeV/MeV), the CaloChallenge ``voxels / E_inc``;
* observables: ``physics_data.calo.observables.compute_observables`` (the 20 CaloGAN
  features plus the response E_tot/E_inc); layer energies and ``lateral_depth`` enter
  the high-level vector as log10;
* mean shower images: the mean cell energy (MeV) of each layer on its physical extent;
* binned statistics: the cell-energy spectrum of each layer (lit cells per shower in bins
  of a quarter decade of cell energy from the 15 keV readout threshold), the CaloChallenge
  "voxel energy" histogram per layer; plotted and tabulated, checked only by thresholds that
  name them.

:data:`CALO_ADAPTER` is the domain's :class:`~emulator.validation.adapters.ValidationAdapter`
(CaloGAN or CaloChallenge files; thresholds ``calo_piplus`` for pi+, ``calo_default`` otherwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.validation.adapters import hdf5_datasets
from emulator.validation.samples import BinnedStatistic, ImagePanel, SampleSet, ValidationSpec
from physics_data.calo.geometry import (
    HALF_WINDOW_MM,
    LAYERS,
    N_CELLS,
    READOUT_THRESHOLD_MEV,
    from_flat,
    layer_slices,
)
from physics_data.calo.io import count_showers, read_attrs, read_showers
from physics_data.calo.observables import compute_observables
from physics_data.calo.showers import Showers

__all__ = [
    "CALO_ADAPTER",
    "CALO_LOG_OBSERVABLES",
    "CaloAdapter",
    "calo_spec",
    "cell_spectra",
    "load_calo_file",
    "mean_layer_images",
    "showers_to_sampleset",
]

CELL_SPECTRUM_LOG10_EDGES = np.log10(READOUT_THRESHOLD_MEV) + 0.25 * np.arange(27)
"""Bin edges of the cell-energy spectra in log10(E_cell / MeV): 15 keV to 47 GeV (higher: last bin)."""

CALO_LOG_OBSERVABLES = frozenset({"E_0", "E_1", "E_2", "E_tot", "lateral_depth"})
"""Observables spanning decades over 1-100 GeV: log10 in features, log x axes in plots."""

_LABELS = {
    **{f"E_{d}": f"$E_{d}$ [MeV]" for d in range(3)},
    "E_tot": "$E_{tot}$ [MeV]",
    **{f"f_{d}": f"$f_{d} = E_{d}/E_{{tot}}$" for d in range(3)},
    "depth": "deepest layer with energy",
    **{f"E_ratio_{d}": f"$E_{{ratio,{d}}}$ (two hottest cells)" for d in range(3)},
    "lateral_depth": "lateral depth $E_1 + 2E_2$ [MeV]",
    **{f"sigma_{d}": f"$\\sigma_{d}$ lateral width [mm]" for d in range(3)},
    "shower_depth": "shower depth (layers)",
    **{f"sparsity_{d}": f"sparsity$_{d}$ (fraction of cells > 0)" for d in range(3)},
    "shower_depth_width": "shower depth width (layers)",
    "response": "response $E_{tot}/E_{inc}$",
}


def _cell_spectrum_statistics() -> tuple[BinnedStatistic, ...]:
    centres = 10 ** (0.5 * (CELL_SPECTRUM_LOG10_EDGES[1:] + CELL_SPECTRUM_LOG10_EDGES[:-1]))
    return tuple(
        BinnedStatistic(
            f"cell_spectrum_{layer.index}", f"layer {layer.index} cell-energy spectrum",
            tuple(float(c) for c in centres), "cell energy [MeV] (bin centre)", "lit cells per shower",
            bin_label="E_cell ≈ {:.3g} MeV", log_x=True, log_y=True,
        )
        for layer in LAYERS
    )  # fmt: skip


def cell_spectra(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Per shower and layer, the number of lit cells in each bin of ``CELL_SPECTRUM_LOG10_EDGES``: (N, 26) each."""
    n_bins = len(CELL_SPECTRUM_LOG10_EDGES) - 1
    out = {}
    for layer, sl in zip(LAYERS, layer_slices(), strict=True):
        v = np.asarray(cells[:, sl], dtype=np.float64)
        rows, cols = np.nonzero(v > 0)
        bins = np.searchsorted(CELL_SPECTRUM_LOG10_EDGES, np.log10(v[rows, cols]), side="right") - 1
        flat = rows * n_bins + bins.clip(0, n_bins - 1)
        out[f"cell_spectrum_{layer.index}"] = np.bincount(flat, minlength=len(v) * n_bins).reshape(len(v), n_bins)
    return out


def calo_spec(particle: str = "") -> ValidationSpec:
    """The calorimeter ``ValidationSpec`` (energy 1-100 GeV, response ``E_tot/E_inc``)."""
    return ValidationSpec(
        domain="calo",
        condition_names=("energy",),
        condition_units=("GeV",),
        condition_range=(1.0, 100.0),
        condition_binning="linear",
        log_conditions=True,
        response="response",
        log_observables=CALO_LOG_OBSERVABLES,
        plot_log_x=CALO_LOG_OBSERVABLES | {"sigma_0", "sigma_1", "sigma_2"},
        observable_labels=dict(_LABELS),
        low_level_description="504 cell energies then 3 overflow energies, each / E_inc (MeV/MeV)",
        particle=particle,
        binned_statistics=_cell_spectrum_statistics(),
    )


def mean_layer_images(cells_sum: np.ndarray, n: int) -> list[ImagePanel]:
    """Mean image per layer from the (504,) sum of cell energies over ``n`` showers."""
    layers = from_flat(np.asarray(cells_sum, dtype=np.float64)[None, :] / max(n, 1))
    w = HALF_WINDOW_MM
    return [
        ImagePanel(
            title=f"layer {layer.index} ({layer.shape[0]}x{layer.shape[1]} cells of {layer.cell_mm[0]:g}x{layer.cell_mm[1]:g} mm)",
            image=img[0],
            unit="mean energy per cell [MeV]",
            extent=(-w, w, -w, w),
            axis_labels=("axis 1 [mm]", "axis 0 [mm]"),
        )
        for layer, img in zip(LAYERS, layers, strict=True)
    ]


def showers_to_sampleset(showers: Showers) -> SampleSet:
    """The validator's view of ``showers``: energies, cells/E_inc, observables, mean images."""
    e_mev = 1000.0 * showers.energy.astype(np.float64)
    if np.any(e_mev <= 0):
        raise ValueError("incident energies must be positive to normalise cells by them")
    low = np.concatenate([showers.cells, showers.overflow], axis=1).astype(np.float32)
    low /= e_mev[:, None].astype(np.float32)
    return SampleSet(
        conditions=showers.energy.astype(np.float64)[:, None],
        low_level=low,
        observables=compute_observables(showers.cells, showers.energy),
        images=mean_layer_images(showers.cells.sum(axis=0, dtype=np.float64), len(showers)),
        binned=cell_spectra(showers.cells),
    )


def load_calo_file(path: str | Path, max_samples: int | None = None) -> tuple[Showers, dict]:
    """The first ``max_samples`` showers (all if None or more than the file holds) and the file attributes."""
    total = count_showers(path)
    n = total if max_samples is None else min(max_samples, total)
    return read_showers(path, n=n), read_attrs(path)


class CaloAdapter:
    """The calorimeter :class:`~emulator.validation.adapters.ValidationAdapter` (native samples: ``Showers``)."""

    domain = "calo"
    noun = "showers"

    def recognises(self, path: Path) -> bool:
        """A CaloGAN (``energy``, ``layer_0``, ...) or CaloChallenge (``incident_energies``, ``showers``) file."""
        names = hdf5_datasets(path)
        return {"energy", "layer_0"} <= names or {"incident_energies", "showers"} <= names

    def load(self, path: Path, max_samples: int | None) -> tuple[Showers, dict]:
        """The first ``max_samples`` showers and the file attributes."""
        return load_calo_file(path, max_samples)

    def conditions(self, samples: Showers) -> np.ndarray:
        """(N, 1) incident energies in GeV."""
        return samples.energy.astype(np.float64)[:, None]

    def from_generated(self, conditions: np.ndarray, samples: np.ndarray) -> Showers:
        """A calo model's flat output (504 cells then 3 overflow values, MeV) as ``Showers``."""
        flat = samples.reshape(len(samples), -1)
        return Showers(
            np.asarray(conditions, dtype=np.float32)[:, 0],
            np.ascontiguousarray(flat[:, :N_CELLS]),
            np.ascontiguousarray(flat[:, N_CELLS : N_CELLS + 3]),
        )

    def label(self, attrs: dict) -> str:
        """The particle (``"e+"``, ``"gamma"``, ``"pi+"``) or ``""``."""
        return str(attrs.get("particle") or "")

    def default_thresholds(self, label: str) -> str:
        """``calo_piplus`` for pi+ showers (wider hadronic tolerances), ``calo_default`` otherwise."""
        return "calo_piplus" if label == "pi+" else "calo_default"

    def spec(self, label: str) -> ValidationSpec:
        """:func:`calo_spec` for this particle."""
        return calo_spec(label)

    def to_sampleset(self, samples: Showers) -> SampleSet:
        """:func:`showers_to_sampleset`."""
        return showers_to_sampleset(samples)


CALO_ADAPTER = CaloAdapter()
"""The calorimeter adapter registered for domain ``"calo"``."""
