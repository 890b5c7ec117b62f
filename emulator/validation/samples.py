"""What the validator needs from a domain: arrays and dicts, no domain code.

The validator never imports a simulator, a file format or a model. A domain adapter (the
calo one is :mod:`emulator.validation.calo_inputs`) turns its samples into a
:class:`SampleSet` and describes the condition axis, its binned statistics (power spectra,
histograms) and plotting conventions once in a :class:`ValidationSpec`. A new domain plugs
in by writing such an adapter (see :mod:`emulator.validation.adapters`); nothing here
changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["BinnedStatistic", "ImagePanel", "SampleSet", "ValidationSpec"]


@dataclass(frozen=True)
class ImagePanel:
    """One 2D panel of a "mean sample image" plot (a calorimeter layer, a density map).

    Attributes:
        title: panel title, e.g. ``"layer 0 (3x96)"``.
        image: (rows, cols) mean value per pixel.
        unit: unit of ``image`` for the colour bar, e.g. ``"MeV"``.
        extent: (x_min, x_max, y_min, y_max) in physical units for ``imshow`` (or None for pixels).
        axis_labels: (x label, y label).
    """

    title: str
    image: np.ndarray
    unit: str
    extent: tuple[float, float, float, float] | None = None
    axis_labels: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class BinnedStatistic:
    """A per-sample statistic with a fixed binning (a power spectrum, a histogram), compared bin by bin.

    Each sample contributes one vector ``SampleSet.binned[name]`` (N, n_bins); the validator
    compares the per-bin means of generated and reference samples, with errors from the
    sample-to-sample scatter (``emulator.validation.binned``), and a thresholds file can check
    them (``statistics`` section of ``emulator.validation.thresholds``).

    Attributes:
        name: key in ``SampleSet.binned`` and in ``metrics["statistics"]``, e.g. ``"power_spectrum"``.
        title: one line for the report, e.g. ``"2D power spectrum P(k)"``.
        x: (n_bins,) bin positions for plots (bin centres, k values, thresholds).
        x_label, y_label: plot axis labels (with units).
        bin_label: format of one bin in check messages, applied as ``bin_label.format(x)``.
        checked: (n_bins,) bins the checks look at (all when None), e.g. k <= k_Ny / 2.
        checked_description: what ``checked`` selects, for check descriptions ("k <= k_Ny/2").
        relative_to: ``"bin"``: deviation (gen - ref) / |ref| per bin; ``"max"``: (gen - ref) / max |ref|
            over the bins (for statistics that cross zero, such as Minkowski functionals).
        log_x, log_y: logarithmic plot axes.
    """

    name: str
    title: str
    x: tuple[float, ...]
    x_label: str
    y_label: str
    bin_label: str = "{:.3g}"
    checked: tuple[bool, ...] | None = None
    checked_description: str = ""
    relative_to: str = "bin"
    log_x: bool = False
    log_y: bool = False

    def __post_init__(self) -> None:
        if self.relative_to not in ("bin", "max"):
            raise ValueError(f"relative_to must be 'bin' or 'max', got {self.relative_to!r}")
        if self.checked is not None and len(self.checked) != len(self.x):
            raise ValueError(f"{self.name}: checked has {len(self.checked)} entries for {len(self.x)} bins")


@dataclass
class SampleSet:
    """One sample (generated or reference) in the validator's terms.

    Attributes:
        conditions: (N, k) physical condition values (calo: incident energy in GeV, k = 1).
        low_level: (N, D) the full per-sample vector in the domain's comparison
            normalisation (calo: cell and overflow energies divided by the incident energy).
            Used by the sliced Wasserstein distance and the low-level classifier.
        observables: ``{name: (N,) array}`` physics statistics per sample (calo: the CaloGAN
            shower-shape features plus the response E_tot/E_inc).
        images: optional mean-image panels, computed by the domain over the whole sample.
        binned: ``{name: (N, n_bins) array}`` per-sample values of the spec's binned statistics.
        binned_counts: ``{name: (N, n_bins) array}`` entries (pixels, peaks) behind each bin of a
            binned statistic, for "where the reference has at least n counts"; absent: no gating.
        examples: optional panels of a few individual samples shown side by side in the report.
        groups: optional (N,) labels of samples that are correlated with each other (slices cut
            from one simulated box); binned-statistic errors are then block errors over groups.
    """

    conditions: np.ndarray
    low_level: np.ndarray
    observables: dict[str, np.ndarray]
    images: list[ImagePanel] = field(default_factory=list)
    binned: dict[str, np.ndarray] = field(default_factory=dict)
    binned_counts: dict[str, np.ndarray] = field(default_factory=dict)
    examples: list[ImagePanel] = field(default_factory=list)
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.conditions = np.asarray(self.conditions, dtype=np.float64)
        if self.conditions.ndim == 1:
            self.conditions = self.conditions[:, None]
        n = self.conditions.shape[0]
        self.low_level = np.asarray(self.low_level)
        if self.low_level.ndim != 2 or self.low_level.shape[0] != n:
            raise ValueError(f"low_level must be (N={n}, D), got {self.low_level.shape}")
        for name, values in self.observables.items():
            if np.shape(values) != (n,):
                raise ValueError(f"observable {name!r} must have shape ({n},), got {np.shape(values)}")
        if not self.observables:
            raise ValueError("a SampleSet needs at least one observable")
        for kind, table in (("binned", self.binned), ("binned_counts", self.binned_counts)):
            for name, values in table.items():
                if np.ndim(values) != 2 or np.shape(values)[0] != n:
                    raise ValueError(f"{kind} {name!r} must have shape ({n}, n_bins), got {np.shape(values)}")
        if self.groups is not None and np.shape(self.groups) != (n,):
            raise ValueError(f"groups must have shape ({n},), got {np.shape(self.groups)}")

    def __len__(self) -> int:
        return int(self.conditions.shape[0])


@dataclass(frozen=True)
class ValidationSpec:
    """How a domain wants its samples compared; everything else is generic.

    Attributes:
        domain: domain name for the report, e.g. ``"calo"``.
        condition_names: names of the k conditions, e.g. ``("energy",)``.
        condition_units: their units, e.g. ``("GeV",)``.
        binned_condition: index of the condition used for the conditioning checks.
        condition_range: (low, high) of the binned condition; the 10 bins span it.
        condition_binning: ``"linear"`` or ``"log"`` spacing of the condition bins.
        log_conditions: condition features enter the classifier and FPD/KPD as log10.
        response: name of the observable checked as "response" (mean and relative spread
            per condition bin), or None for domains without one.
        log_observables: observables that span decades (energies): log10(x + tiny) in the
            high-level feature vector and logarithmic x axes in the report.
        plot_log_x: observables whose histograms get a logarithmic x axis when they are
            positive (defaults to ``log_observables``).
        observable_labels: optional pretty labels with units for plots.
        low_level_description: what ``SampleSet.low_level`` holds, for the report.
        particle: free-text label of the sample (calo: ``"e+"``), for the report.
        binned_statistics: the domain's binned statistics (``SampleSet.binned``), compared bin by bin.
    """

    domain: str
    condition_names: tuple[str, ...]
    condition_units: tuple[str, ...]
    condition_range: tuple[float, float]
    binned_condition: int = 0
    condition_binning: str = "linear"
    log_conditions: bool = False
    response: str | None = None
    log_observables: frozenset[str] = frozenset()
    plot_log_x: frozenset[str] | None = None
    observable_labels: dict[str, str] = field(default_factory=dict)
    low_level_description: str = ""
    particle: str = ""
    binned_statistics: tuple[BinnedStatistic, ...] = ()

    def __post_init__(self) -> None:
        if self.condition_binning not in ("linear", "log"):
            raise ValueError(f"condition_binning must be 'linear' or 'log', got {self.condition_binning!r}")
        lo, hi = self.condition_range
        if not hi > lo or (self.condition_binning == "log" and lo <= 0):
            raise ValueError(
                f"invalid condition_range {self.condition_range} for {self.condition_binning} bins"
            )

    def log_x(self, name: str) -> bool:
        """Whether ``name`` is plotted on a logarithmic x axis (when its values allow)."""
        return name in (self.log_observables if self.plot_log_x is None else self.plot_log_x)

    def label(self, name: str) -> str:
        """Plot label of observable ``name``."""
        return self.observable_labels.get(name, name)
