"""Stronger condition pathways for the MLPs: a learned condition embedding and FiLM modulation.

Concatenating the raw condition features (calo: one number, log10(E)/2) to every layer gives
them one input weight per unit among hundreds; Adam moves each weight by at most about the
learning rate per step, so the networks learn to depend on the condition slowly (in the
v1.1.0 calo models the shower shapes barely followed the energy). A learned embedding turns
the condition into ``width`` piecewise-linear features, and FiLM (Perez et al. 2018,
arXiv:1709.07871) lets it scale and shift every hidden unit, which is the multiplicative
dependence a resolution sigma/E ~ 1/sqrt(E) needs.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConditionEmbedding", "FiLM"]


class ConditionEmbedding(nn.Module):
    """c (B, cond_dim) -> LeakyReLU(W c + b) (B, width)."""

    def __init__(self, cond_dim: int, width: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, width)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(c))


class FiLM(nn.Module):
    """h (B, n), e (B, k) -> h (1 + gamma(e)) + beta(e); zero-initialised, so it starts as the identity."""

    def __init__(self, embed_dim: int, n: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embed_dim, 2 * n)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gamma_beta = self.linear(e)
        gamma, beta = gamma_beta[:, : h.shape[1]], gamma_beta[:, h.shape[1] :]
        if not torch.is_grad_enabled():  # sampling: one fused multiply-add, no temporaries (~12 % faster on CPU)
            return torch.addcmul(beta, h, gamma.add_(1.0))
        return h * (1.0 + gamma) + beta
