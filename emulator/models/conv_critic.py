"""A conditional convolutional critic for WGAN-GP on 2D maps: no batch norm, so the gradient penalty is valid.

Structure (``hidden`` = channels per stride-2 stage; the map shrinks 2x per stage)::

    [x, c broadcast as constant channels] --conv kxk stride 2 -> norm -> LeakyReLU--> ... (len(hidden) stages)
    flatten, concatenate [c, physics features] -> MLP ``head`` -> score

The condition features reach the network twice: as constant input channels (so the first
filters can compare local structure with the cosmology) and again at the head (through a learned
embedding of ``cond_embed`` features when that is > 0). Padding is
circular, matching the periodic maps. ``layer_norm`` uses GroupNorm(1, C), a per-sample layer
norm over (C, H, W), which keeps each sample's score independent of the batch (the WGAN-GP
paper's recommendation; BatchNorm would break the per-sample gradient penalty).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from emulator.models.conditioning import ConditionEmbedding

__all__ = ["ConvCritic", "ConvCriticConfig"]


@dataclass
class ConvCriticConfig:
    """Constructor arguments of ``ConvCritic``."""

    sample_shape: tuple[int, int]  # (H, W) of one map
    cond_dim: int  # number of condition features
    feature_dim: int = 0  # number of physics summary features given at the head (0: none)
    hidden: tuple[int, ...] = field(default=(16, 32, 64, 128))  # channels per stride-2 stage
    head: tuple[int, ...] = field(default=(128,))  # hidden widths of the fully connected head
    kernel_size: int = 3  # odd convolution kernel size
    negative_slope: float = 0.2  # LeakyReLU slope
    layer_norm: bool = False  # GroupNorm(1, C) per sample after each conv (never BatchNorm)
    cond_embed: int = 0  # width of a learned condition embedding given to the head; 0: raw features

    def __post_init__(self) -> None:
        self.sample_shape = tuple(int(s) for s in self.sample_shape)
        self.hidden = tuple(int(h) for h in self.hidden)
        self.head = tuple(int(h) for h in self.head)
        if len(self.sample_shape) != 2:
            raise ValueError(
                f"ConvCritic scores 2D maps; sample_shape must be (H, W), got {self.sample_shape}"
            )
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list at least one positive channel count, got {self.hidden}")
        scale = 2 ** len(self.hidden)
        if any(s % scale for s in self.sample_shape):
            raise ValueError(
                f"{len(self.hidden)} stride-2 stages (hidden={self.hidden}) need H and W divisible by {scale}; "
                f"got {self.sample_shape}: use fewer hidden entries"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")

    def to_dict(self) -> dict:
        """JSON-ready constructor arguments."""
        d = asdict(self)
        for key in ("sample_shape", "hidden", "head"):
            d[key] = list(d[key])
        return d


class ConvCritic(nn.Module):
    """x (B, H * W) or (B, H, W), c (B, cond_dim), features (B, feature_dim) -> score (B,)."""

    config_class = ConvCriticConfig

    def __init__(self, config: ConvCriticConfig) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_size
        channels = [1 + config.cond_dim, *config.hidden]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, k, stride=2, padding=k // 2, padding_mode="circular")
            for a, b in itertools.pairwise(channels)
        )
        self.norms = nn.ModuleList(
            nn.GroupNorm(1, c) if config.layer_norm else nn.Identity() for c in config.hidden
        )
        self.act = nn.LeakyReLU(config.negative_slope)
        scale = 2 ** len(config.hidden)
        flat = config.hidden[-1] * (config.sample_shape[0] // scale) * (config.sample_shape[1] // scale)
        self.embed = (
            ConditionEmbedding(config.cond_dim, config.cond_embed, config.negative_slope) if config.cond_embed else None
        )
        widths = [flat + (config.cond_embed or config.cond_dim) + config.feature_dim, *config.head]
        self.head = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.out = nn.Linear(widths[-1], 1)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Adapt a state dict saved with fewer physics features (appended since) to this critic.

        The features are the last inputs of the first fully connected layer; the weights of the new
        ones start at zero, so the critic scores every sample exactly as before and learns to use
        them from there (as ``MLPCritic.adapt_state_dict``; also for optimizer moments of that weight).
        """
        name = "head.0.weight" if self.head else "out.weight"
        w = state[name]
        first = self.head[0] if self.head else self.out
        n_new = first.in_features - w.shape[1]
        if n_new == 0:
            return state
        if n_new < 0 or n_new > self.config.feature_dim:
            raise ValueError(
                f"cannot adapt a critic with {w.shape[1]} head inputs to one with {first.in_features}: "
                "only appended physics features are supported"
            )
        return {**state, name: torch.cat([w, w.new_zeros(w.shape[0], n_new)], dim=1)}

    def forward(self, x: torch.Tensor, c: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        h = x.reshape(b, 1, *self.config.sample_shape)
        c = c.to(h.dtype)
        h = torch.cat([h, c[:, :, None, None].expand(-1, -1, *self.config.sample_shape)], dim=1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = self.act(norm(conv(h)))
        parts = [h.flatten(1), self.embed(c) if self.embed is not None else c]
        if self.config.feature_dim:
            if features is None:
                raise ValueError(f"this critic expects {self.config.feature_dim} physics features")
            parts.append(features.to(h.dtype))
        h = torch.cat(parts, dim=1)
        for linear in self.head:
            h = self.act(linear(h))
        return self.out(h).squeeze(1)
