"""Binned statistics compared bin by bin: per-bin means of generated vs reference samples.

A domain describes a statistic once (:class:`~emulator.validation.samples.BinnedStatistic`:
a power spectrum, a pixel histogram, Minkowski functionals at several thresholds) and gives
each sample's vector of values. :func:`compare_binned` reduces both sets to per-bin means with
errors from the sample-to-sample scatter (std / sqrt(N), so correlations between the bins
or pixels of one sample are accounted for) and the deviation. Samples that are not independent
of each other (the 48 slices cut from one simulated box share its large-scale modes) carry a
group label; their error is then the scatter of the group means / sqrt(number of groups), a
block estimate that stays honest however strongly the members of a group are correlated.

    dev = (mean_gen - mean_ref) / |mean_ref|          (relative_to = "bin"; ratio - 1)
    dev = (mean_gen - mean_ref) / max_bins |mean_ref|  (relative_to = "max")

with the generated and reference errors added in quadrature. The thresholds file decides
which bins count (``checked`` bins with at least ``min_ref_counts`` reference entries) and
how large a deviation may be (``emulator.validation.thresholds``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.validation.samples import BinnedStatistic

__all__ = ["compare_all", "compare_binned"]


def _mean_and_error(values: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and its standard error (0 for a single sample: no scatter to estimate from).

    With ``groups`` (N,) labels and at least two groups, the error is the standard error of the
    group means (a block estimate: correlations inside a group are accounted for); one group
    alone gives no block scatter, so the per-sample estimate is used.
    """
    n = len(values)
    mean = values.mean(axis=0)
    if groups is not None:
        labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
        if len(labels) > 1:
            sums = np.zeros((len(labels), values.shape[1]))
            np.add.at(sums, inverse, values)
            block_means = sums / np.bincount(inverse)[:, None]
            return mean, block_means.std(axis=0, ddof=1) / np.sqrt(len(labels))
    err = values.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, err


def compare_binned(
    stat: BinnedStatistic,
    generated: np.ndarray,
    reference: np.ndarray,
    generated_counts: np.ndarray | None = None,
    reference_counts: np.ndarray | None = None,
    generated_groups: np.ndarray | None = None,
    reference_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-bin means, errors, gen/ref ratio and deviation of one binned statistic (lists, JSON-ready).

    Args:
        stat: the statistic's description (binning, which bins are checked, deviation scale).
        generated, reference: (N, n_bins) per-sample values.
        generated_counts, reference_counts: optional (N, n_bins) entries behind each value;
            their totals per bin are reported as ``counts_gen`` / ``counts_ref``.
        generated_groups, reference_groups: optional (N,) labels of correlated samples (the
            simulation each slice was cut from); errors are then block errors over the groups.
    """
    gen = np.asarray(generated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    n_bins = len(stat.x)
    for label, values in (("generated", gen), ("reference", ref)):
        if values.ndim != 2 or values.shape[1] != n_bins or len(values) == 0:
            raise ValueError(f"{stat.name}: {label} values must be (N >= 1, {n_bins}), got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError(f"{stat.name}: {label} values contain NaN or inf")
    mean_g, err_g = _mean_and_error(gen, generated_groups)
    mean_r, err_r = _mean_and_error(ref, reference_groups)
    abs_r = np.abs(mean_r)
    scale = abs_r if stat.relative_to == "bin" else np.full(n_bins, abs_r.max())
    with np.errstate(divide="ignore", invalid="ignore"):
        # a bin empty in the reference: no deviation when also empty in gen, else infinitely off
        dev = np.where(scale > 0, (mean_g - mean_r) / scale, np.where(mean_g == mean_r, 0.0, np.inf))
        if stat.relative_to == "bin":  # error of the ratio gen/ref
            dev_err = np.hypot(err_g, err_r * mean_g / mean_r) / scale
        else:
            dev_err = np.hypot(err_g, err_r) / scale
        ratio = np.where(abs_r > 0, mean_g / mean_r, np.nan)
    dev_err = np.where(np.isfinite(dev_err), dev_err, 0.0)
    checked = np.ones(n_bins, bool) if stat.checked is None else np.asarray(stat.checked, bool)
    out: dict[str, Any] = {
        "title": stat.title,
        "x": list(stat.x),
        "x_label": stat.x_label,
        "y_label": stat.y_label,
        "bins": [stat.bin_label.format(x) for x in stat.x],
        "checked": checked.tolist(),
        "checked_description": stat.checked_description,
        "relative_to": stat.relative_to,
        "n_generated": len(gen),
        "n_reference": len(ref),
        "mean_gen": mean_g.tolist(),
        "mean_gen_err": err_g.tolist(),
        "mean_ref": mean_r.tolist(),
        "mean_ref_err": err_r.tolist(),
        "ratio": ratio.tolist(),
        "dev": dev.tolist(),
        "dev_err": dev_err.tolist(),
        "counts_gen": None,
        "counts_ref": None,
    }
    for key, counts in (("counts_gen", generated_counts), ("counts_ref", reference_counts)):
        if counts is not None:
            out[key] = np.asarray(counts, dtype=np.float64).sum(axis=0).tolist()
    return out


def compare_all(
    stats: tuple[BinnedStatistic, ...],
    generated: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    generated_counts: dict[str, np.ndarray] | None = None,
    reference_counts: dict[str, np.ndarray] | None = None,
    generated_groups: np.ndarray | None = None,
    reference_groups: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`compare_binned` for every statistic of ``stats`` (values and counts keyed by name; groups shared)."""
    gen_counts, ref_counts = generated_counts or {}, reference_counts or {}
    return {
        s.name: compare_binned(
            s,
            generated[s.name],
            reference[s.name],
            gen_counts.get(s.name),
            ref_counts.get(s.name),
            generated_groups,
            reference_groups,
        )
        for s in stats
    }
