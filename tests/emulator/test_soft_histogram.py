"""The differentiable histogram behind the calo cell spectrum and the cosmo pixel-PDF critic features."""

from __future__ import annotations

import torch

from emulator.domains.soft_histogram import soft_histogram


def test_values_split_between_their_two_nearest_bins():
    t = torch.tensor([[0.0, 1.25, 2.5, 3.0]])
    counts = soft_histogram(t, 4)[0, 0]
    torch.testing.assert_close(counts, torch.tensor([1.0, 0.75, 0.75, 1.5]))


def test_values_outside_the_bins_count_only_where_they_reach_one():
    """-0.5 reaches bin 0 with half its weight; -1 (its edge), -7 and +9 reach no bin and add exactly nothing."""
    t = torch.tensor([[-7.0, -1.0, -0.5, 9.0, 3.5]], requires_grad=True)
    counts = soft_histogram(t, 4)
    torch.testing.assert_close(counts[0, 0], torch.tensor([0.5, 0.0, 0.0, 0.5]))
    (grad,) = torch.autograd.grad(counts[0, 0, 0], t)
    assert grad[0, 2] > 0 and torch.all(grad[0, [0, 3]] == 0)  # far out: no pull into the bins


def test_groups_fill_their_own_histograms():
    t = torch.tensor([[0.0, 1.0, 1.0, 2.9]])
    groups = torch.tensor([0, 0, 1, 1])
    counts = soft_histogram(t, 3, groups, 2)
    torch.testing.assert_close(counts[0], torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.1]]))


def test_weights_scale_each_values_counts():
    t = torch.tensor([[0.0, 1.25, 1.25]])
    w = torch.tensor([[0.5, 1.0, 0.0]])
    torch.testing.assert_close(soft_histogram(t, 3, weights=w)[0, 0], torch.tensor([0.5, 0.75, 0.25]))
