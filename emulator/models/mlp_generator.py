"""A conditional MLP generator: latent noise + condition features -> a network-space sample.

The condition features are concatenated to the input of every layer, so the energy
(or whatever the domain conditions on) reaches each block directly rather than having
to survive the whole stack. The final ReLU makes outputs non-negative in network space,
with exact zeros — for the calo domain these are exactly the empty cells.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ["MLPGenerator", "MLPGeneratorConfig"]


@dataclass
class MLPGeneratorConfig:
    """Constructor arguments of ``MLPGenerator``; exactly what ``config.json`` stores."""

    sample_dim: int  # flattened size of one sample (calo: 507)
    cond_dim: int  # number of condition features (calo: 1)
    latent_dim: int = 128  # size of the N(0, 1) latent vector
    hidden: tuple[int, ...] = field(default=(512, 512, 512))  # widths of the hidden layers
    negative_slope: float = 0.2  # LeakyReLU slope
    layer_norm: bool = True  # LayerNorm before each activation (per sample, no batch statistics)
    output_activation: str = "relu"  # "relu" (non-negative, exact zeros) or "none"

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.output_activation not in ("relu", "none"):
            raise ValueError(f"output_activation must be 'relu' or 'none', got {self.output_activation!r}")

    def to_dict(self) -> dict:
        """JSON-ready constructor arguments."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class MLPGenerator(nn.Module):
    """z (B, latent_dim), c (B, cond_dim) -> x (B, sample_dim)."""

    config_class = MLPGeneratorConfig

    def __init__(self, config: MLPGeneratorConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.latent_dim, *config.hidden]
        self.linears = nn.ModuleList(nn.Linear(w + config.cond_dim, h) for w, h in itertools.pairwise(widths))
        self.norms = nn.ModuleList(
            nn.LayerNorm(h) if config.layer_norm else nn.Identity() for h in config.hidden
        )
        self.act = nn.LeakyReLU(config.negative_slope)
        self.out = nn.Linear(widths[-1] + config.cond_dim, config.sample_dim)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = z
        for linear, norm in zip(self.linears, self.norms, strict=True):
            h = self.act(norm(linear(torch.cat([h, c], dim=1))))
        x = self.out(torch.cat([h, c], dim=1))
        return torch.relu(x) if self.config.output_activation == "relu" else x

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the linear layers (norms and activations are negligible)."""
        return 2 * sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
