"""One WGAN-GP training step (Gulrajani et al. 2017, arXiv:1704.00028).

Per step: ``n_critic`` critic updates, each on a fresh real batch and a fresh fake batch
at the same conditions, minimising

    L_D = <D(fake)> - <D(real)> + lambda <(||grad_x D(x_hat)||_2 - 1)^2>,
    x_hat = a x_real + (1 - a) x_fake,  a ~ U(0, 1) per sample,

then one generator update minimising ``L_G = -<D(fake)> + energy_weight * L_E``.

``L_E`` (optional, ``energy_weight > 0``) is a consistency term for domains that define
``consistency_statistics`` (calo: the energy response E_tot/E_inc; cosmo: soft peak counts per
height bin), one per-sample value or K of them: the real and fake batches share their
conditions, samples are grouped into ``n_energy_bins`` equal bins of the first condition
feature, and L_E is the count-weighted mean over bins (and statistics) of |mean_fake -
mean_real| + |std_fake - std_real|, in absolute units (``energy_scale="absolute"``) or
in units of each bin's real spread (``"relative"``). Relative units learn a 0.3 % electron
resolution far better, but their gradients (~300x the critic's for e+) also dominate the
generator's shared layers, and in 8-10k H100 iterations the e+ shower shapes stopped
depending on the energy; absolute units leave the shapes alone but the e+ response
spread off. It pulls each bin's mean response and resolution
toward the data's without tying any single fake sample to a real one (a per-sample MSE
would collapse the spread). (The names ``energy_*`` are the calo case's; the term is the same
for any domain's statistics.)

With ``energy_loss="crps"`` L_E is instead the continuous ranked probability score of the
generator's distribution of the response (of each statistic) at each real sample's own
condition, estimated from two fakes x, x' at that condition:
``CRPS = (|x - y| + |x' - y|) / 2 - |x - x'| / 2`` (unbiased; Gneiting & Raftery 2007). It is a
strictly proper score, so its expectation is minimal only when the generated response
distribution at every condition equals the data's — no bins, no batch moments. The moment
matching needs >= 8 samples per bin, which a 256 batch drawn uniformly in 1-100 GeV never has
below ~6 GeV: there the e+ resolution came out half the data's. In ``"relative"`` units each
sample's score is divided by the real response spread of its condition bin, measured once on
the whole training set (``response_spread``). At the optimum the term is not 0 but the data's
own CRPS (about 0.56 in relative units). ``"moments+crps"`` adds both: the CRPS alone, matching
the whole distribution, let the e+ spread at 60-100 GeV come out 9-17 % wide (the data's
response there is skewed by leakage, which the generator reproduces only in part, and the CRPS
trades width for shape).

The critic may also see differentiable physics summaries (``domain.critic_features``);
the gradient penalty differentiates through them too, so it is the true input gradient.
Mixed precision: on CUDA the forward passes run under bf16 autocast; the gradient penalty
is always computed in float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from emulator.domains import Domain, network_sample

__all__ = [
    "ENERGY_LOSSES",
    "ENERGY_SCALES",
    "GP_SPACES",
    "STAT_NAMES",
    "Batch",
    "GANStep",
    "StepStats",
    "condition_bins",
    "crps_two_sample",
    "energy_consistency",
    "gradient_penalty",
    "response_spread",
]


@dataclass
class Batch:
    """A real training batch: network-space samples, physical conditions and condition features."""

    x: torch.Tensor  # (B, D) network space
    conditions: torch.Tensor  # (B, k) physical units
    features: torch.Tensor  # (B, k) domain.condition_features(conditions)


STAT_NAMES = ("loss_d", "loss_g", "wasserstein", "gp", "energy")


@dataclass
class StepStats:
    """Losses of one step, kept on the device so a step never waits for the GPU; ``as_dict`` syncs.

    loss_d: critic loss of the last critic update; loss_g: generator loss; wasserstein:
    <D(real)> - <D(fake)>, the critic's W1 estimate; gp: gradient penalty (times lambda);
    energy: energy-consistency term (before its weight).
    """

    values: torch.Tensor  # (5,) in STAT_NAMES order

    def as_dict(self) -> dict[str, float]:
        return dict(zip(STAT_NAMES, self.values.float().cpu().tolist(), strict=True))


def gradient_penalty(
    critic_fn: Callable[..., torch.Tensor],
    real: torch.Tensor | tuple[torch.Tensor, ...],
    fake: torch.Tensor | tuple[torch.Tensor, ...],
    gp_lambda: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """lambda <(||grad D(x_hat)||_2 - 1)^2> on random interpolates, in float32.

    ``critic_fn`` maps a batch of samples to scores (B,) with everything else fixed.
    For a linear critic D(x) = w.x + b this is exactly lambda (||w|| - 1)^2. ``real`` and
    ``fake`` may be tuples of tensors (samples and their physics features): each is then
    interpolated with the same per-sample alpha, ``critic_fn`` takes them all, and the norm is
    over the gradient with respect to all of them together.
    """
    reals = tuple(t.detach().float() for t in (real if isinstance(real, tuple) else (real,)))
    fakes = tuple(t.detach().float() for t in (fake if isinstance(fake, tuple) else (fake,)))
    alpha = torch.rand(reals[0].shape[0], device=reals[0].device, generator=generator)

    def interpolate(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        a = alpha.view(-1, *(1,) * (r.dim() - 1))
        return (a * r + (1.0 - a) * f).requires_grad_(True)

    hats = tuple(interpolate(r, f) for r, f in zip(reals, fakes, strict=True))
    device_type = reals[0].device.type
    autocast = torch.autocast(device_type=device_type, enabled=False) if reals[0].is_cuda else nullcontext()
    with autocast:
        scores = critic_fn(*hats).float()
        grads = torch.autograd.grad(scores.sum(), hats, create_graph=True)
    norm = torch.cat([g.flatten(1) for g in grads], dim=1).norm(2, dim=1)
    return gp_lambda * ((norm - 1.0) ** 2).mean()


GP_SPACES = ("input", "joint")


_MIN_BIN_COUNT = 8  # bins with fewer samples in the batch do not contribute to L_E


ENERGY_SCALES = ("absolute", "relative")
ENERGY_LOSSES = ("moments", "crps", "moments+crps")


def condition_bins(cond_feature: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal bins on [0, 1] of a condition feature (values outside are clipped)."""
    return (cond_feature.float().clamp(0.0, 1.0 - 1e-6) * n_bins).long()


def crps_two_sample(fake: torch.Tensor, fake2: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-sample unbiased CRPS estimate (B,) of the distribution of ``fake``/``fake2`` at ``real``.

    ``fake[i]`` and ``fake2[i]`` are independent draws at ``real[i]``'s condition. For a point
    mass at y the score is |x - y|; for N(mu, s) it averages s/sqrt(pi) at the optimum.
    """
    f, f2, y = fake.float(), fake2.float(), real.float()
    return 0.5 * ((f - y).abs() + (f2 - y).abs()) - 0.5 * (f - f2).abs()


@torch.no_grad()
def response_spread(response: torch.Tensor, cond_feature: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Standard deviation (n_bins,) of a per-sample response (B,) in equal bins of ``cond_feature``;
    (n_bins, K) for K statistics per sample (B, K).

    Bins with fewer than 2 samples get the overall standard deviation.
    """
    idx = condition_bins(cond_feature, n_bins)
    r = response.double().reshape(response.shape[0], -1)
    counts = torch.zeros(n_bins, dtype=torch.float64, device=r.device).index_add_(0, idx, torch.ones_like(r[:, 0]))
    counts = counts[:, None]
    sums = torch.zeros(n_bins, r.shape[1], dtype=torch.float64, device=r.device).index_add_(0, idx, r)
    mean = sums / counts.clamp_min(1.0)
    var = torch.zeros_like(mean).index_add_(0, idx, (r - mean[idx]) ** 2) / (counts - 1.0).clamp_min(1.0)
    spread = torch.where(counts >= 2, var.sqrt(), r.std(dim=0))
    return spread.clamp_min(1e-12).float().reshape(n_bins, *response.shape[1:])


def energy_consistency(
    resp_fake: torch.Tensor,
    resp_real: torch.Tensor,
    cond_feature: torch.Tensor,
    n_bins: int,
    scale: str = "absolute",
) -> torch.Tensor:
    """Count-weighted mean over condition bins of |Δmean| + |Δstd| of a per-sample response (B,),
    or of K statistics per sample (B, K), averaged over them.

    With ``scale="relative"`` each bin's term is divided by the real spread of that bin.

    ``cond_feature`` (B,) is binned into ``n_bins`` equal bins on [0, 1] (values outside are clipped);
    bins with fewer than 8 samples are skipped.
    """
    idx = condition_bins(cond_feature, n_bins)
    fake = resp_fake.float().reshape(resp_fake.shape[0], -1)
    real = resp_real.float().reshape(resp_real.shape[0], -1)
    counts = torch.zeros(n_bins, device=idx.device).index_add_(0, idx, torch.ones_like(fake[:, 0]))
    safe = counts.clamp_min(1.0)[:, None]

    def moments(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.zeros(n_bins, r.shape[1], device=r.device).index_add_(0, idx, r) / safe
        sq = torch.zeros(n_bins, r.shape[1], device=r.device).index_add_(0, idx, r * r) / safe
        return mean, (sq - mean * mean).clamp_min(1e-12).sqrt()

    mf, sf = moments(fake)
    mr, sr = moments(real)
    per_bin = (mf - mr).abs() + (sf - sr).abs()
    if scale == "relative":
        per_bin = per_bin / (sr.detach() + 1e-6)
    weights = counts * (counts >= _MIN_BIN_COUNT)  # a spread from a handful of samples is noise
    return (per_bin.mean(dim=1) * weights).sum() / weights.sum().clamp_min(1.0)


class GANStep:
    """Owns the generator, critic and their Adam optimizers; ``step(next_batch)`` does one WGAN-GP iteration.

    With ``cuda_graph=True`` (CUDA only) the whole iteration — batch sampling, the critic
    updates with their double backward, the generator update and both Adam steps — is
    captured once into a CUDA graph and replayed, removing the Python and kernel-launch
    overhead that otherwise dominates for networks this small. ``next_batch`` must then
    draw its indices on the device (it is captured too), and the first call runs three
    eager warm-up iterations before capturing. ``variable_lr=True`` (a learning-rate schedule,
    ``set_lr_scale``) keeps the rates in device tensors there, which the replays read (not yet
    run on a GPU).
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        domain: Domain,
        *,
        lr_g: float = 1e-4,
        lr_d: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        n_critic: int = 5,
        gp_lambda: float = 10.0,
        energy_weight: float = 0.0,
        n_energy_bins: int = 10,
        energy_scale: str = "absolute",
        energy_loss: str = "moments",
        response_scale: torch.Tensor | None = None,
        gp_space: str = "input",
        use_critic_features: bool = True,
        amp: bool = True,
        cuda_graph: bool = False,
        variable_lr: bool = False,
    ) -> None:
        self.generator, self.critic, self.domain = generator, critic, domain
        self.device = next(generator.parameters()).device
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        # capturable Adam keeps its step counter on the GPU so the update can live in a CUDA graph
        self.opt_g = torch.optim.Adam(
            generator.parameters(), lr=lr_g, betas=betas, capturable=self.cuda_graph
        )
        self.opt_d = torch.optim.Adam(critic.parameters(), lr=lr_d, betas=betas, capturable=self.cuda_graph)
        self.base_lr = (lr_g, lr_d)
        # a CUDA graph bakes a float learning rate into its kernels; a schedule needs it in a device tensor
        self.variable_lr = variable_lr
        self.n_critic, self.gp_lambda = n_critic, gp_lambda
        self.energy_weight, self.n_energy_bins = energy_weight, n_energy_bins
        if energy_scale not in ENERGY_SCALES:
            raise ValueError(f"energy_scale must be one of {', '.join(ENERGY_SCALES)}, got {energy_scale!r}")
        self.energy_scale = energy_scale
        if energy_loss not in ENERGY_LOSSES:
            raise ValueError(f"energy_loss must be one of {', '.join(ENERGY_LOSSES)}, got {energy_loss!r}")
        self.energy_loss = energy_loss
        if energy_weight > 0 and "crps" in energy_loss and energy_scale == "relative" and response_scale is None:
            raise ValueError("energy_loss='crps' in relative units needs response_scale (see response_spread)")
        self.response_scale = None if response_scale is None else response_scale.to(self.device).float()
        if gp_space not in GP_SPACES:
            raise ValueError(f"gp_space must be one of {', '.join(GP_SPACES)}, got {gp_space!r}")
        self.gp_space = gp_space
        self.use_features = use_critic_features and getattr(critic.config, "feature_dim", 0) > 0
        if energy_weight > 0 and not hasattr(domain, "consistency_statistics"):
            raise ValueError(f"energy_weight > 0 but domain {domain.name!r} defines no consistency_statistics")
        self.noise_dim = int(generator.noise_dim)
        self.amp = amp and self.device.type == "cuda"
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_out: torch.Tensor | None = None

    def _autocast(self):
        # no autocast weight cache: cached casts would go stale between CUDA-graph replays
        return (
            torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if self.amp else nullcontext()
        )

    def critic_score(
        self, x: torch.Tensor, conditions: torch.Tensor, cond_features: torch.Tensor
    ) -> torch.Tensor:
        """D(x | conditions), feeding the domain's physics summaries (computed in float32) when enabled."""
        feats = self._features(x, conditions) if self.use_features else None
        return self.critic(x, cond_features, feats).float()

    def _features(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=False) if self.amp else nullcontext():
            return self.domain.critic_features(x.float(), conditions)

    def _gradient_penalty(self, batch: Batch, fake: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """GP on interpolated samples ("input") or on interpolated (samples, features) pairs ("joint").

        ``features``: the critic features of ``cat([batch.x, fake])`` already computed for the scores.
        """
        if self.gp_space == "joint" and features is not None:
            # The features are steep functions of the samples (calo: of expm1(x)); penalising the
            # gradient in the joint space gives them their own Lipschitz scale instead of making the
            # critic all but ignore them.
            b = batch.x.shape[0]
            return gradient_penalty(
                lambda x, f, bt=batch: self.critic(x, bt.features, f).float(),
                (batch.x, features[:b]), (fake, features[b:]), self.gp_lambda,
            )  # fmt: skip
        return gradient_penalty(
            lambda x, bt=batch: self.critic_score(x, bt.conditions, bt.features),
            batch.x,
            fake,
            self.gp_lambda,
        )

    def _fake(self, batch: Batch) -> torch.Tensor:
        z = torch.randn(batch.x.shape[0], self.noise_dim, device=self.device)
        return network_sample(self.domain, self.generator(z, batch.features), batch.conditions)

    def _energy_term(self, batch: Batch, fake: torch.Tensor) -> torch.Tensor:
        """L_E of the module docstring for one generator batch (``fake`` at ``batch``'s conditions)."""
        statistics = self.domain.consistency_statistics
        resp_fake, resp_real = statistics(fake, batch.conditions), statistics(batch.x, batch.conditions)
        term = torch.zeros((), device=self.device)
        if "moments" in self.energy_loss:
            term = term + energy_consistency(
                resp_fake, resp_real, batch.features[:, 0], self.n_energy_bins, self.energy_scale
            )
        if "crps" in self.energy_loss:
            with self._autocast():
                fake2 = self._fake(batch).float()
            score = crps_two_sample(resp_fake, statistics(fake2, batch.conditions), resp_real)
            if self.energy_scale == "relative":  # (B,) or (B, K), as the statistics
                score = score / self.response_scale[condition_bins(batch.features[:, 0], len(self.response_scale))]
            term = term + score.mean()
        return term

    def train_critic(self, next_batch: Callable[[], Batch]) -> tuple[torch.Tensor, ...]:
        """``n_critic`` critic updates (eager) with the generator fixed; returns the last one's
        (loss_d, <D(real)>, <D(fake)>, gp). Alone, it lets a fresh critic catch up with a trained
        generator before the generator follows its gradients."""
        self.generator.train()
        self.critic.train()
        for _ in range(self.n_critic):
            batch = next_batch()
            b = batch.x.shape[0]
            with torch.no_grad(), self._autocast():
                fake = self._fake(batch).float()
            # real and fake in one pass (half the kernel launches); their physics features once,
            # shared with a joint-space gradient penalty (the samples are detached here)
            x_both = torch.cat([batch.x, fake])
            feats = self._features(x_both, torch.cat([batch.conditions, batch.conditions])) if self.use_features else None
            with self._autocast():
                scores = self.critic(x_both, torch.cat([batch.features, batch.features]), feats).float()
            d_real, d_fake = scores[:b].mean(), scores[b:].mean()
            gp = self._gradient_penalty(batch, fake, feats)
            loss_d = d_fake - d_real + gp
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        return loss_d, d_real, d_fake, gp

    def _iteration(self, next_batch: Callable[[], Batch]) -> torch.Tensor:
        """The eager iteration; returns the (5,) stats tensor (see ``STAT_NAMES``)."""
        loss_d, d_real, d_fake, gp = self.train_critic(next_batch)
        batch = next_batch()
        self.critic.requires_grad_(False)
        with self._autocast():
            fake = self._fake(batch).float()
            loss_g = -self.critic_score(fake, batch.conditions, batch.features).mean()
        energy = torch.zeros((), device=self.device)
        if self.energy_weight > 0:
            energy = self._energy_term(batch, fake)
            loss_g = loss_g + self.energy_weight * energy
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.critic.requires_grad_(True)
        w = (d_real - d_fake).detach()
        return torch.stack([loss_d.detach(), loss_g.detach(), w, gp.detach(), energy.detach()]).float()

    def set_lr_scale(self, scale: float) -> None:
        """Set both learning rates to ``scale`` times their initial values (a schedule's factor, from the next
        update on)."""
        for opt, base in zip((self.opt_g, self.opt_d), self.base_lr, strict=True):
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(base * scale)
                else:
                    group["lr"] = base * scale

    def step(self, next_batch: Callable[[], Batch]) -> StepStats:
        """``n_critic`` critic updates then one generator update; ``next_batch()`` yields real batches."""
        if not self.cuda_graph:
            return StepStats(self._iteration(next_batch))
        if self._graph is None:
            if self.variable_lr:  # capturable Adam reads a tensor learning rate at every replay
                for opt in (self.opt_g, self.opt_d):
                    for group in opt.param_groups:
                        group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up allocates optimizer state and autograd buffers
                for _ in range(3):
                    self._iteration(next_batch)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self._graph_out = self._iteration(next_batch)
            except RuntimeError as exc:  # an op that cannot be captured: stay correct, just slower
                warnings.warn(
                    f"CUDA graph capture failed ({exc}); training eagerly", RuntimeWarning, stacklevel=2
                )
                self.cuda_graph = False
                return StepStats(self._iteration(next_batch))
            self._graph = graph
        self._graph.replay()
        return StepStats(self._graph_out.clone())
