"""A conditional MLP generator: latent noise + condition features -> a network-space sample.

The condition features are concatenated to the input of every layer, so the energy
(or whatever the domain conditions on) reaches each block directly rather than having
to survive the whole stack. With ``cond_embed > 0`` they are first embedded into that many
learned features, which are concatenated instead and also scale and shift every hidden layer
(FiLM; see ``emulator.models.conditioning``). The final ReLU makes outputs non-negative in network space,
with exact zeros — for the calo domain these are exactly the empty cells.

With ``output_noise > 0`` every main output gets its own N(0, 1) noise before the ReLU, scaled
by a learned, condition-dependent sigma per output (started at ``output_noise``), as StyleGAN
injects per-pixel noise. The reason is the ReLU: an output that is below zero for every latent
vector has no gradient, so a cell the generator has switched off can never learn to light
sometimes (calo: the scattered faint cells of the back layer at low energy). With the noise, a
cell below zero lights with a probability that moves smoothly with its pre-activation, and the
critic's verdict on those lit samples reaches it. The noise is part of the input: a forward
pass takes ``noise_dim`` = ``latent_dim`` + (number of main outputs) N(0, 1) values per sample.

With ``output_noise_max > 0`` the sigma is bounded: ``output_noise_max`` x sigmoid instead of exp.
Why: in units where a lit cell is far from zero (calo ``log1p_threshold``) the unbounded sigma grew
to 2.5 in the e+ middle layer (the generator lit cells with noise alone), which also multiplied the
far cells' energies by e^+-2.5 and made the showers 35 % too wide.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from emulator.models.conditioning import ConditionEmbedding, FiLM

__all__ = ["NOISE_SIGMA_GAIN", "MLPGenerator", "MLPGeneratorConfig", "noise_sigma"]

NOISE_SIGMA_GAIN = 20.0
"""log sigma of the output noise = NOISE_SIGMA_GAIN x (a linear map of the condition): a learning-rate
multiplier, as StyleGAN's noise strengths have. At Adam's lr 1e-4 a plain parameter moved sigma from
0.100 to at most 0.109 in 500 steps (calo e+), far too slow to follow what the critic asks of it."""


def noise_sigma(pre: torch.Tensor, sigma_max: float, inplace: bool = False) -> torch.Tensor:
    """The output noise's sigma from its pre-activation ``pre`` (already x NOISE_SIGMA_GAIN): exp(pre), or
    ``sigma_max`` x sigmoid(pre) when bounded (``sigma_max > 0``); ``inplace`` only where nothing is traced."""
    if not inplace:
        return torch.sigmoid(pre) * sigma_max if sigma_max else torch.exp(pre)
    return pre.sigmoid_().mul_(sigma_max) if sigma_max else pre.exp_()


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
    head_outputs: int = 0  # last outputs made by a separate head (only when head_hidden is set)
    head_hidden: tuple[int, ...] = field(default=())  # widths of that head; () = main output layer
    cond_embed: int = 0  # width of a learned condition embedding with FiLM per hidden layer; 0: raw features
    output_noise: float = 0.0  # initial sigma of the per-output noise before the ReLU (see module doc); 0: none
    output_noise_max: float = 0.0  # upper bound of that sigma (max x sigmoid); 0: unbounded (exp)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.head_hidden = tuple(int(h) for h in self.head_hidden)
        if self.head_hidden and not 0 < self.head_outputs < self.sample_dim:
            raise ValueError(f"head_hidden needs 0 < head_outputs < sample_dim, got {self.head_outputs}")
        if self.output_noise < 0:
            raise ValueError(f"output_noise must be >= 0, got {self.output_noise}")
        if self.output_noise_max and not 0 < self.output_noise < self.output_noise_max:
            raise ValueError(
                f"output_noise_max needs 0 < output_noise < output_noise_max, got {self.output_noise}"
                f" and {self.output_noise_max}"
            )
        if self.output_activation not in ("relu", "none"):
            raise ValueError(f"output_activation must be 'relu' or 'none', got {self.output_activation!r}")

    def to_dict(self) -> dict:
        """JSON-ready constructor arguments."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["head_hidden"] = list(self.head_hidden)
        return d


class MLPGenerator(nn.Module):
    """z (B, noise_dim), c (B, cond_dim) -> x (B, sample_dim)."""

    config_class = MLPGeneratorConfig

    def __init__(self, config: MLPGeneratorConfig) -> None:
        super().__init__()
        self.config = config
        k = config.cond_embed or config.cond_dim  # width of what is concatenated to each layer
        widths = [config.latent_dim, *config.hidden]
        self.embed = ConditionEmbedding(config.cond_dim, k, config.negative_slope) if config.cond_embed else None
        self.linears = nn.ModuleList(nn.Linear(w + k, h) for w, h in itertools.pairwise(widths))
        self.norms = nn.ModuleList(
            nn.LayerNorm(h) if config.layer_norm else nn.Identity() for h in config.hidden
        )
        self.films = nn.ModuleList(FiLM(k, h) for h in config.hidden) if config.cond_embed else None
        self.act = nn.LeakyReLU(config.negative_slope)
        n_extra = config.head_outputs if config.head_hidden else 0
        self.out = nn.Linear(widths[-1] + k, config.sample_dim - n_extra)
        # A separate head for the last outputs (calo: the response), so a loss on them alone (the
        # energy-consistency term) trains only this head, not the layers that shape the samples;
        # it has its own condition embedding for the same reason.
        extra_widths = [config.latent_dim, *config.head_hidden]
        self.extra_embed = (
            ConditionEmbedding(config.cond_dim, k, config.negative_slope) if n_extra and config.cond_embed else None
        )
        self.extra_linears = nn.ModuleList(nn.Linear(w + k, h) for w, h in itertools.pairwise(extra_widths))
        self.extra_norms = nn.ModuleList(nn.Identity() for _ in config.head_hidden)  # the head has no LayerNorm
        self.extra_films = (
            nn.ModuleList(FiLM(k, h) for h in config.head_hidden) if self.extra_embed is not None else None
        )
        self.extra_out = nn.Linear(extra_widths[-1] + k, n_extra) if n_extra else None
        # pre-activation of the output noise's sigma (log sigma when unbounded), linear in the (embedded)
        # condition; registered last, so the parameter order of a generator without it is unchanged
        # (checkpoints and optimizer states)
        self.noise_log_sigma = nn.Linear(k, self.out.out_features) if config.output_noise else None
        if self.noise_log_sigma is not None:
            nn.init.zeros_(self.noise_log_sigma.weight)
            s0, s_max = config.output_noise, config.output_noise_max
            pre = math.log(s0 / (s_max - s0)) if s_max else math.log(s0)  # sigma(pre) = s0
            nn.init.constant_(self.noise_log_sigma.bias, pre / NOISE_SIGMA_GAIN)

    @property
    def noise_dim(self) -> int:
        """N(0, 1) values a forward pass takes per sample: the latent vector, then the output noise."""
        n_noise = self.noise_log_sigma.out_features if self.noise_log_sigma is not None else 0
        return self.config.latent_dim + n_noise

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        latent = z[:, : self.config.latent_dim]
        e = self.embed(c) if self.embed is not None else c
        x = self._stack(latent, e, self.linears, self.norms, self.films, self.out)
        if self.noise_log_sigma is not None:
            sigma = noise_sigma(NOISE_SIGMA_GAIN * self.noise_log_sigma(e), self.config.output_noise_max)
            x = x + sigma * z[:, self.config.latent_dim :]
        if self.extra_out is not None:
            e_extra = self.extra_embed(c) if self.extra_embed is not None else c
            extra = self._stack(
                latent, e_extra, self.extra_linears, self.extra_norms, self.extra_films, self.extra_out
            )
            x = torch.cat([x, extra], dim=1)
        return torch.relu(x) if self.config.output_activation == "relu" else x

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict of an older form of this generator -> one that loads.

        Output noise added since: at its initial sigma. Head outputs appended since (the domain's
        extra outputs grew): their weights and biases start at zero, so the old outputs are
        unchanged and the new ones start at the domain's raw value 0. Also applies to optimizer
        moments stored under the same names (zero moments for the new rows).
        """
        if self.noise_log_sigma is not None and "noise_log_sigma.weight" not in state:
            fresh = {f"noise_log_sigma.{k}": v.detach().clone() for k, v in self.noise_log_sigma.state_dict().items()}
            state = {**state, **fresh}
        if self.extra_out is not None:
            for name in ("extra_out.weight", "extra_out.bias"):
                old, rows = state.get(name), self.extra_out.out_features
                if old is not None and old.shape[0] < rows:
                    state = {**state, name: torch.cat([old, old.new_zeros(rows - old.shape[0], *old.shape[1:])])}
        return state

    def _stack(
        self,
        z: torch.Tensor,
        e: torch.Tensor,
        linears: nn.ModuleList,
        norms: nn.ModuleList,
        films: nn.ModuleList | None,
        out: nn.Linear,
    ) -> torch.Tensor:
        """z -> [linear(h, e) -> norm -> FiLM(e) -> activation]* -> out(h, e), with e the (embedded) condition."""
        h = z
        for i, (linear, norm) in enumerate(zip(linears, norms, strict=True)):
            h = norm(linear(torch.cat([h, e], dim=1)))
            if films is not None:
                h = films[i](h, e)
            h = self.act(h)
        return out(torch.cat([h, e], dim=1))

    def for_sampling(self) -> nn.Module:
        """The same function rearranged for fast inference (a snapshot of the current weights)."""
        from emulator.models.fused_mlp import FusedMLPGenerator

        return FusedMLPGenerator(self)

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the linear layers (norms and activations are negligible)."""
        return 2 * sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
