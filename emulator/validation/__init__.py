"""Validation of emulated samples against the reference simulator (the judge).

Domain-agnostic core: a domain adapter turns its samples into :class:`SampleSet` objects
and describes itself in a :class:`ValidationSpec`; :func:`validate` computes every metric
(POT distances, separation power, FPD/KPD, classifier AUCs, conditioning checks, the
domain's :class:`BinnedStatistic` comparisons) and the pass/fail checks of a thresholds
file; :func:`write_report` writes ``metrics.json`` and a self-contained ``report.html``.
Adapters are looked up by domain name (:mod:`emulator.validation.adapters`): calorimeter
showers in :mod:`emulator.validation.calo_inputs`, cosmology slices in
:mod:`emulator.validation.cosmo_inputs`.
"""

from emulator.validation.classifier import ClassifierConfig
from emulator.validation.report import ValidationConfig, validate, write_metrics
from emulator.validation.samples import BinnedStatistic, ImagePanel, SampleSet, ValidationSpec
from emulator.validation.thresholds import ThresholdConfig, load_thresholds

__all__ = [
    "BinnedStatistic",
    "ClassifierConfig",
    "ImagePanel",
    "SampleSet",
    "ThresholdConfig",
    "ValidationConfig",
    "ValidationSpec",
    "load_thresholds",
    "validate",
    "write_metrics",
]
