"""A conditional MLP critic for WGAN-GP: no batch norm, so the per-sample gradient penalty is valid.

Inputs are the network-space sample, the condition features (concatenated again at every
layer) and, optionally, a vector of differentiable physics summaries from the domain
(calo: response, layer energies and fractions, centres and widths, lit-cell counts), the
global inputs that CaloGAN and FastCaloGAN critics also get. With ``cond_embed > 0`` the
condition is first embedded into that many learned features (``emulator.models.conditioning``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from emulator.models.conditioning import ConditionEmbedding

__all__ = ["MLPCritic", "MLPCriticConfig"]


@dataclass
class MLPCriticConfig:
    """Constructor arguments of ``MLPCritic``."""

    sample_dim: int  # flattened size of one sample
    cond_dim: int  # number of condition features
    feature_dim: int = 0  # number of physics summary features (0: none)
    hidden: tuple[int, ...] = field(default=(1024, 512, 256))  # widths of the hidden layers
    negative_slope: float = 0.2  # LeakyReLU slope
    layer_norm: bool = False  # LayerNorm per sample (never BatchNorm: it breaks the gradient penalty)
    cond_embed: int = 0  # width of a learned condition embedding concatenated to each layer; 0: raw features

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)

    def to_dict(self) -> dict:
        """JSON-ready constructor arguments."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class MLPCritic(nn.Module):
    """x (B, sample_dim), c (B, cond_dim), features (B, feature_dim) -> score (B,)."""

    config_class = MLPCriticConfig

    def __init__(self, config: MLPCriticConfig) -> None:
        super().__init__()
        self.config = config
        first = config.sample_dim + config.feature_dim
        widths = [first, *config.hidden]
        k = config.cond_embed or config.cond_dim
        self.embed = ConditionEmbedding(config.cond_dim, k, config.negative_slope) if config.cond_embed else None
        self.linears = nn.ModuleList(nn.Linear(w + k, h) for w, h in itertools.pairwise(widths))
        self.norms = nn.ModuleList(
            nn.LayerNorm(h) if config.layer_norm else nn.Identity() for h in config.hidden
        )
        self.act = nn.LeakyReLU(config.negative_slope)
        self.out = nn.Linear(widths[-1] + k, 1)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Adapt a state dict saved with fewer physics features (appended since) to this critic.

        The input weights of the new features start at zero, so the critic scores every
        sample exactly as before and learns to use the new features from there. Also
        applies to optimizer moments of the first layer stored under ``linears.0.weight``.
        """
        w = state["linears.0.weight"]
        n_new = self.linears[0].in_features - w.shape[1]
        if n_new == 0:
            return state
        if n_new < 0 or n_new > self.config.feature_dim:
            raise ValueError(
                f"cannot adapt a critic with {w.shape[1]} first-layer inputs to one with "
                f"{self.linears[0].in_features}: only appended physics features are supported"
            )
        at = self.config.sample_dim + self.config.feature_dim - n_new  # end of the old feature block
        grown = torch.cat([w[:, :at], w.new_zeros(w.shape[0], n_new), w[:, at:]], dim=1)
        return {**state, "linears.0.weight": grown}

    def forward(self, x: torch.Tensor, c: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.config.feature_dim:
            if features is None:
                raise ValueError(f"this critic expects {self.config.feature_dim} physics features")
            h = torch.cat([h, features.to(h.dtype)], dim=1)
        e = c.to(h.dtype) if self.embed is None else self.embed(c.to(h.dtype))
        for linear, norm in zip(self.linears, self.norms, strict=True):
            h = self.act(norm(linear(torch.cat([h, e], dim=1))))
        return self.out(torch.cat([h, e], dim=1)).squeeze(1)
