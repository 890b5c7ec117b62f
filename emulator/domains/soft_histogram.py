"""Differentiable histograms for critic features: the distribution of a sample's values, as soft counts.

A critic that sees each sample's histogram (calo: cell energies per layer; cosmo: the pixel PDF)
compares the distributions the validation judges directly, instead of having to learn them from
raw values. Triangular kernels of half-width one bin spacing make every value inside the bin
range add exactly 1 over its two nearest bins, with a gradient that moves it between them.
"""

from __future__ import annotations

import torch

__all__ = ["soft_histogram"]


def soft_histogram(
    t: torch.Tensor,
    n_bins: int,
    groups: torch.Tensor | None = None,
    n_groups: int = 1,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft counts (B, n_groups, n_bins) of values ``t`` (B, M) given in bin units (bin j centred at t = j).

    ``groups`` (M,) long assigns each column to one of ``n_groups`` histograms (None: one for all).
    A value at t adds 1 - (t - floor t) to bin floor(t) and t - floor(t) to the next; values below
    bin 0 or above bin n_bins - 1 add nothing (only their part that reaches a bin). ``weights`` (B, M)
    scale each value's contribution (e.g. how much a pixel is a peak; None: 1). The scattering
    touches two bins per value, not all n_bins kernels (calo: a CPU training step 0.58 s instead of 0.77 s).
    """
    t = t.clamp(-1.0, float(n_bins))  # farther out a value reaches no bin (and must not count negatively)
    below = torch.floor(t.detach())
    upper_weight = t - below  # the lower bin gets 1 - this
    # slots 0 and n_bins + 1 of each group collect what falls outside the bins and are dropped
    lower_slot = below.long() + 1
    upper_slot = (lower_slot + 1).clamp_max(n_bins + 1)
    if groups is not None:
        offset = groups.to(t.device) * (n_bins + 2)
        lower_slot, upper_slot = lower_slot + offset, upper_slot + offset
    lower_weight = 1.0 - upper_weight
    if weights is not None:
        lower_weight, upper_weight = lower_weight * weights, upper_weight * weights
    counts = t.new_zeros(t.shape[0], n_groups * (n_bins + 2))
    counts = counts.scatter_add(1, lower_slot, lower_weight)
    counts = counts.scatter_add(1, upper_slot, upper_weight)
    return counts.reshape(-1, n_groups, n_bins + 2)[:, :, 1 : n_bins + 1]
