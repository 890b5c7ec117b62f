"""A conditional DCGAN-style generator for 2D maps: latent + condition -> coarse grid -> upsampled map.

Structure (``hidden`` = channels per resolution, coarse to fine; ``len(hidden) - 1`` doublings)::

    [z, c] --linear--> hidden[0] x h0 x w0          h0 = H / 2^(len(hidden) - 1)
    per stage: nearest 2x upsample -> conv kxk -> norm -> FiLM(c) -> LeakyReLU   (hidden[i] channels)
               [-> (stage_depth - 1) x (conv kxk -> norm -> FiLM(c) -> LeakyReLU)]
    conv kxk -> 1 channel -> output activation (tanh: the domain's bounded network space) -> flatten

Choices and why:

* resize-then-convolve instead of transposed convolutions: no checkerboard artefacts in the
  power spectrum (Odena et al. 2016, Distill);
* ``stage_depth``: convolutions per stage. With one, each stage is a single 3x3 convolution
  of few channels (cosmo 1.3.0: 24 at 32x32, 12 at 64x64), which must both fill the band the
  upsampling leaves nearly empty (nearest doubling passes a grid's Nyquist-near modes weakly and
  its Nyquist mode not at all: 1.3.0's spectrum is 11 % low at k = 0.196 h/Mpc, the 16x16
  grid's Nyquist, with the bins beside it within 1-7 %) and make the map's texture (its small
  peaks in the voids). A second convolution per stage adds that depth for 65 % more generator
  FLOPs (cosmo: 65 -> 108 MFLOP per map; bilinear upsampling instead was considered and left
  out: it passes those modes even more weakly, 0.39 against 0.73 for the 16x16 grid's mode 7);
* circular padding: the training maps are slices of a periodic box, so the generated maps are
  periodic too and their spectra are measured the same way as the reference's;
* the condition features enter twice: concatenated to the latent vector, and per stage as a
  FiLM scale and shift of the normalised channels (Perez et al. 2018), so (Omega_m, sigma_8)
  can change the amplitude of structure at every scale;
* ``cond_embed > 0``: the raw features first pass through a learned embedding of that width
  (``emulator.models.conditioning``), which then feeds the projection and every FiLM; with two
  raw features a FiLM layer can only be an affine function of (Omega_m, sigma_8), which is too
  rigid for statistics that change non-linearly across the parameter square;
* GroupNorm(1, C) (per-sample layer norm over C, H, W), never BatchNorm: generation must not
  depend on which other samples share the batch;
* ``global_offset``: that per-sample norm also removes each map's overall level at every stage,
  and FiLM only puts back what the condition dictates, so the maps' mean barely varies from sample
  to sample (cosmo: the std of the slice mean was 0.035 against the simulator's 0.083 — the slab's own
  overdensity). With the option, a linear map of [z, c] (zero at the start) adds a per-sample offset to
  the output before its activation: in the ``log10_density`` network space, a factor on the whole map.
* ``stage_noise``: without it all randomness comes from the latent vector (64 numbers for 4096
  pixels), and fine detail that no large-scale feature determines (the discreteness of the
  particles in the voids: the reference's small peaks at 1+δ ~ 0.3-0.5) is hard to make. With
  it, as in StyleGAN (Karras et al. 2019), every stage adds one map of N(0, 1) noise per sample to
  its convolution output, times a learned strength per channel (zero at the start: a warm start
  begins as the generator without it; x ``NOISE_STRENGTH_GAIN``, a learning-rate multiplier, since
  at Adam's lr of 1e-4 a plain strength would take thousands of steps to reach the ~0.5 standard
  deviation of the convolution outputs of the cosmo generator). The noise is part of the input:
  ``noise_dim`` = latent_dim + the pixels of every stage (8², 16², 32², 64² for 64x64 maps),
  drawn by the trainer and the sampler.

The output is flattened to ``(B, H * W)`` because the trainer and the critic work on flat
network-space batches; the sampler reshapes to the domain's ``sample_shape``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from emulator.models.conditioning import ConditionEmbedding

__all__ = ["NOISE_STRENGTH_GAIN", "ConvGenerator", "ConvGeneratorConfig", "count_flops"]

NOISE_STRENGTH_GAIN = 10.0  # stage noise strength = this x its parameter (see the module doc)
_OMITTED_AT_DEFAULT = ("stage_noise", "stage_depth")  # config keys added after models were shipped without them


@dataclass
class ConvGeneratorConfig:
    """Constructor arguments of ``ConvGenerator``; exactly what ``config.json`` stores."""

    sample_shape: tuple[int, int]  # (H, W) of one map (cosmo: 64 x 64)
    cond_dim: int  # number of condition features (cosmo: 2)
    latent_dim: int = 64  # size of the N(0, 1) latent vector
    hidden: tuple[int, ...] = field(default=(64, 32, 16, 8))  # channels per resolution, coarse (8x8) to fine
    kernel_size: int = 3  # odd convolution kernel size
    negative_slope: float = 0.2  # LeakyReLU slope
    layer_norm: bool = True  # GroupNorm(1, C) before FiLM (per sample; no batch statistics)
    output_activation: str = "tanh"  # "tanh" (network space in (-1, 1)), "relu" or "none"
    cond_embed: int = 0  # width of a learned condition embedding feeding projection and FiLM; 0: raw features
    global_offset: bool = False  # a per-sample output offset from [z, c] (see the module doc)
    stage_noise: bool = False  # per-pixel noise with learned per-channel strengths at every stage (module doc)
    stage_depth: int = 1  # convolutions (each with norm, FiLM, activation) per stage, the projected grid included

    def __post_init__(self) -> None:
        self.sample_shape = tuple(int(s) for s in self.sample_shape)
        self.hidden = tuple(int(h) for h in self.hidden)
        if len(self.sample_shape) != 2:
            raise ValueError(
                f"ConvGenerator makes 2D maps; sample_shape must be (H, W), got {self.sample_shape}"
            )
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list at least one positive channel count, got {self.hidden}")
        scale = 2 ** (len(self.hidden) - 1)
        if any(s % scale for s in self.sample_shape):
            raise ValueError(
                f"{len(self.hidden) - 1} doublings (hidden={self.hidden}) need H and W divisible by {scale}; "
                f"got {self.sample_shape}: use fewer hidden entries"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if self.output_activation not in ("tanh", "relu", "none"):
            raise ValueError(
                f"output_activation must be 'tanh', 'relu' or 'none', got {self.output_activation!r}"
            )
        if self.stage_depth < 1:
            raise ValueError(f"stage_depth must be at least 1, got {self.stage_depth}")

    @property
    def base_shape(self) -> tuple[int, int]:
        """(h0, w0): the coarse grid the latent vector is mapped onto."""
        scale = 2 ** (len(self.hidden) - 1)
        return self.sample_shape[0] // scale, self.sample_shape[1] // scale

    @property
    def stage_shapes(self) -> list[tuple[int, int]]:
        """(h, w) of the projected grid and of every upsampled stage, coarse to fine."""
        h0, w0 = self.base_shape
        return [(h0 * 2**i, w0 * 2**i) for i in range(len(self.hidden))]

    def to_dict(self) -> dict:
        """JSON-ready constructor arguments."""
        d = asdict(self)
        for f in fields(self):  # absent at their defaults: configs of models from before these options stay as they were
            if f.name in _OMITTED_AT_DEFAULT and d[f.name] == f.default:
                d.pop(f.name)
        d["sample_shape"], d["hidden"] = list(self.sample_shape), list(self.hidden)
        return d


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="circular")


class ConvGenerator(nn.Module):
    """z (B, latent_dim), c (B, cond_dim) -> x (B, H * W) in network space."""

    config_class = ConvGeneratorConfig
    inference_chunk = 512  # samples per forward pass without autograd: bounds memory for 8192-sample blocks

    def __init__(self, config: ConvGeneratorConfig) -> None:
        super().__init__()
        self.config = config
        h0, w0 = config.base_shape
        k = config.kernel_size
        c_dim = config.cond_embed or config.cond_dim
        self.embed = (
            ConditionEmbedding(config.cond_dim, config.cond_embed, config.negative_slope) if config.cond_embed else None
        )
        self.project = nn.Linear(config.latent_dim + c_dim, config.hidden[0] * h0 * w0)
        self.convs = nn.ModuleList(_conv(a, b, k) for a, b in itertools.pairwise(config.hidden))
        widths = config.hidden  # the projected grid and every stage are normalised and FiLM-modulated
        self.norms = nn.ModuleList(nn.GroupNorm(1, c) if config.layer_norm else nn.Identity() for c in widths)
        self.films = nn.ModuleList(nn.Linear(c_dim, 2 * c) for c in widths)
        for film in self.films:  # start as the identity modulation: scale 1 + 0, shift 0
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
        self.act = nn.LeakyReLU(config.negative_slope)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = _conv(widths[-1], 1, k)
        # registered last, so the parameter order of a generator without it is unchanged (optimizer states)
        self.offset = nn.Linear(config.latent_dim + c_dim, 1) if config.global_offset else None
        if self.offset is not None:  # start as the generator without it
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)
        self.noise_strength = (  # registered last too; zero: starts as the generator without noise
            nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in widths) if config.stage_noise else None
        )
        # the extra convolutions of stage_depth > 1, stage by stage (none at the default depth, so the
        # parameters of other generators are unchanged); their FiLMs start as the identity like the others'
        extra = [c for c in widths for _ in range(config.stage_depth - 1)]
        self.extra_convs = nn.ModuleList(_conv(c, c, k) for c in extra)
        self.extra_norms = nn.ModuleList(nn.GroupNorm(1, c) if config.layer_norm else nn.Identity() for c in extra)
        self.extra_films = nn.ModuleList(nn.Linear(c_dim, 2 * c) for c in extra)
        for film in self.extra_films:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict saved before ``global_offset`` or ``stage_noise`` was switched on -> one that loads
        (the new parameters at their zero start)."""
        for name, module in (("offset", self.offset), ("noise_strength", self.noise_strength)):
            if module is not None and not any(k.startswith(name + ".") for k in state):
                state = {**state, **{f"{name}.{k}": v.detach().clone() for k, v in module.state_dict().items()}}
        return state

    def _add_noise(self, i: int, h: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        if noise is None:
            return h
        strength = NOISE_STRENGTH_GAIN * self.noise_strength[i].to(h.dtype)
        return h + strength[None, :, None, None] * noise[i].to(h.dtype)

    def _modulate(self, i: int, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self._film(self.films[i], self.norms[i], h, c)

    def _film(self, film: nn.Module, norm: nn.Module, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = film(c).chunk(2, dim=1)
        return self.act(norm(h) * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None])

    def _refine(self, i: int, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The extra convolutions of stage ``i`` (stage_depth - 1 of them)."""
        per = self.config.stage_depth - 1
        for j in range(i * per, (i + 1) * per):
            h = self._film(self.extra_films[j], self.extra_norms[j], self.extra_convs[j](h), c)
        return h

    def _forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h0, w0 = self.config.base_shape
        latent = self.config.latent_dim
        noise = None
        if self.noise_strength is not None:  # the rest of z: one noise map per stage
            shapes = self.config.stage_shapes
            flat = z[:, latent:].split([h * w for h, w in shapes], dim=1)
            noise = [n.reshape(len(z), 1, h, w) for n, (h, w) in zip(flat, shapes, strict=True)]
        z = z[:, :latent]
        c = c.to(z.dtype)
        if self.embed is not None:
            c = self.embed(c)
        zc = torch.cat([z, c], dim=1)
        h = self.project(zc).view(len(z), self.config.hidden[0], h0, w0)
        h = self._refine(0, self._modulate(0, self._add_noise(0, h, noise), c), c)
        for i, conv in enumerate(self.convs, start=1):
            h = self._refine(i, self._modulate(i, self._add_noise(i, conv(self.up(h)), noise), c), c)
        x = self.out(h).flatten(1)
        if self.offset is not None:
            x = x + self.offset(zc)
        if self.config.output_activation == "tanh":
            return torch.tanh(x)
        return torch.relu(x) if self.config.output_activation == "relu" else x

    @property
    def noise_dim(self) -> int:
        """N(0, 1) values a forward pass takes per sample: the latent vector, then any stage noise maps."""
        extra = sum(h * w for h, w in self.config.stage_shapes) if self.config.stage_noise else 0
        return self.config.latent_dim + extra

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or len(z) <= self.inference_chunk:
            return self._forward(z, c)
        n = self.inference_chunk
        return torch.cat([self._forward(z[i : i + n], c[i : i + n]) for i in range(0, len(z), n)])

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the convolutions and linear layers for one sample."""
        device = next(self.parameters()).device
        return count_flops(
            self,
            torch.zeros(1, self.noise_dim, device=device),
            torch.zeros(1, self.config.cond_dim, device=device),
        )


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """2 x multiply-adds of every Conv2d and Linear in one forward pass of ``module(*inputs)``."""
    total = 0

    def hook(layer: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            total += 2 * per_output * out.numel()
        else:
            total += 2 * layer.in_features * out.numel()

    handles = [
        m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total
