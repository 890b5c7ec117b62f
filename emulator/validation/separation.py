"""Histogram separation power (CaloChallenge ``evaluate.py`` mode "hist-chi").

S = 1/2 * sum_i (h1_i - h2_i)^2 / (h1_i + h2_i), with h1, h2 the two histograms
normalised to unit sum (density times bin width); S = 0 for identical and 1 for disjoint
histograms (eq. 15 of arXiv:2009.03796).

Binning is fixed by the reference alone: ``n_bins`` equal-population bins between the
reference's minimum and maximum (quantile edges; the CaloGAN notebooks used
equal-population bins too), plus an underflow and an overflow bin for generated values
outside the reference's range, so disjoint samples give exactly 1. Discrete observables
get fewer bins because coinciding quantile edges are merged.

The noise floor is the separation power between two random halves of the reference; for
two samples of sizes n1, n2 and B populated bins, S from statistics alone is about
B (1/n1 + 1/n2) / 4.
"""

from __future__ import annotations

import numpy as np

__all__ = ["reference_edges", "separation_power", "separation_power_with_floor"]


def reference_edges(reference: np.ndarray, n_bins: int = 30) -> np.ndarray:
    """Bin edges from the reference: equal-population bins plus under- and overflow bins.

    >>> reference_edges(np.arange(5.0), n_bins=2).tolist()
    [-inf, 0.0, 2.0, 4.0, inf]
    """
    ref = np.asarray(reference, dtype=np.float64)
    inner = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, n_bins + 1)))
    if inner.size == 1:  # constant reference: one bin around its value
        inner = np.array([inner[0], np.nextafter(inner[0], np.inf)])
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _normalised_hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # np.histogram bins are [a, b) except the last inner one, which is closed: the
    # reference maximum stays inside; only values beyond the reference go to over/underflow
    v = np.asarray(values, dtype=np.float64)
    inner = edges[1:-1]
    counts = np.empty(len(edges) - 1)
    counts[1:-1] = np.histogram(v, bins=inner)[0]
    counts[0] = np.count_nonzero(v < inner[0])
    counts[-1] = np.count_nonzero(v > inner[-1])
    return counts / max(counts.sum(), 1.0)


def separation_power(generated: np.ndarray, reference: np.ndarray, edges: np.ndarray) -> float:
    """Separation power of two 1D samples on fixed ``edges`` (0 identical, 1 disjoint).

    >>> edges = reference_edges(np.arange(100.0), 10)
    >>> separation_power(np.arange(100.0) + 1000.0, np.arange(100.0), edges)
    1.0
    """
    h1 = _normalised_hist(generated, edges)
    h2 = _normalised_hist(reference, edges)
    den = h1 + h2
    mask = den > 0
    return float(0.5 * np.sum((h1[mask] - h2[mask]) ** 2 / den[mask]))


def separation_power_with_floor(
    generated: np.ndarray, reference: np.ndarray, n_bins: int = 30, seed: int = 0
) -> dict[str, float]:
    """Separation power on reference-fixed bins, and the reference-half-vs-half floor."""
    edges = reference_edges(reference, n_bins)
    ref = np.asarray(reference)
    perm = np.random.default_rng(seed).permutation(len(ref))
    half = len(ref) // 2
    return {
        "separation_power": separation_power(generated, reference, edges),
        "separation_power_ref_halves": separation_power(ref[perm[:half]], ref[perm[half : 2 * half]], edges),
        "n_bins": int(len(edges) - 1),
    }
