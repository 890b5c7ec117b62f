"""The training loop: ``train_func(config)`` trains one conditional WGAN-GP emulator.

Run it from the CLI (``emulator train calo --particle e+ --data train.h5 --out models/calo-eplus``)
or call it directly; it touches the outside world only through two optional hooks,
``report(metrics)`` and ``checkpoint_hook(path, metrics)``, so a Ray Train launcher can wrap
it unchanged (``ray.train.report(metrics, checkpoint=Checkpoint.from_directory(path))``).

What one run does:

1. reads the training file through the domain (``domain.read_samples``) into float32 tensors
   on the training device, holding out ``val_samples`` samples for quick validation;
2. maps samples to network space once (``domain.to_network``);
3. runs ``steps`` WGAN-GP iterations (``emulator.wgan_gp.GANStep``) with an EMA copy of the
   generator (decay ``ema_decay``, warmed up as min(decay, (1 + t) / (10 + t)));
4. every ``log_every`` steps: a JSONL record in ``<run_dir>/metrics.jsonl`` and the progress bar;
5. every ``val_every`` steps: generates the held-out set's conditions with the EMA weights,
   computes the mean over ``domain.quick_val_observables`` of W1(gen, ref) / std(ref) (POT
   ``wasserstein_1d``) and of their conditional-mean deviations (``val_conditional``, see
   ``conditional_mean_deviation``) and, when it is the best so far, exports the EMA generator to ``out``;
6. every ``checkpoint_every`` steps: an atomic training checkpoint (weights, optimizer states,
   RNG states, config; see ``emulator.checkpoint``); ``resume=True`` continues bit-exactly,
   ``init_from=DIR`` starts a new run from another run's checkpoint (same continuation, its own
   best-checkpoint choice; critic inputs for physics features appended since start at zero).

Seeds fix everything: the data split, initial weights, batches, noise and interpolates.

Data parallelism (``emulator.distributed`` runs this function on N Ray Train workers): with
``rank``/``world_size`` every rank builds the same initial weights and the same data split,
draws ``batch_size / world_size`` samples per batch from its own streams (rank 0 keeps the
single-process streams; rank r > 0 seeds from (seed, rank, start step)), and ``setup_hook(gan)``
makes the ranks average their gradients before every optimizer step. So ``batch_size`` is the
effective batch and the learning rates mean what they mean in one process. Only rank 0
validates, exports and writes logs and checkpoints; the other ranks call ``checkpoint_hook``
with ``None`` at the same steps, so a launcher can keep them in lockstep.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emulator.checkpoint import (
    CONFIG_FILE,
    InvalidModelDir,
    atomic_write_text,
    export_model,
    latest_checkpoint,
    load_checkpoint,
    load_model_dir,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from emulator.domains import Domain, decode_samples, get_domain
from emulator.models import build_for_training
from emulator.sampler import resolve_device
from emulator.wgan_gp import Batch, GANStep, condition_bins, response_spread

__all__ = [
    "ConfigError",
    "TrainConfig",
    "conditional_mean_deviation",
    "ema_update",
    "load_config",
    "lr_scale_at",
    "quick_validation_score",
    "train_func",
]


class ConfigError(ValueError):
    """A training config key is unknown or its value has the wrong type."""


@dataclass
class TrainConfig:
    """Every setting of a training run; stored resolved in each checkpoint and the model card."""

    # -- what to train -------------------------------------------------------------------------
    domain: str = "calo"  # registered domain name
    preprocessing: str = ""  # the domain's preprocessing variant (calo: log1p_fraction, log1p_threshold); "": its default
    particle: str = ""  # calo: particle of the training data (e+, gamma, pi+); recorded in the card
    data: str = ""  # training file (calo: CaloGAN HDF5 from `emulator simulate`)
    out: str = ""  # model directory the best EMA generator is exported to
    name: str = ""  # model name in the card (default: the basename of `out`)
    version: str = "1.0.0"  # model version in the card
    run_dir: str = ""  # checkpoints, metrics.jsonl, loss_curve.png (default: runs/<name>)
    # -- optimisation --------------------------------------------------------------------------
    steps: int = 20_000  # generator updates in total (a resumed run continues up to this)
    batch_size: int = 512  # samples per critic and generator batch
    n_critic: int = 5  # critic updates per generator update
    gp_lambda: float = 10.0  # gradient-penalty weight
    gp_space: str = "joint"  # "joint": GP on interpolated (samples, critic features); "input": on samples only
    lr_g: float = 1e-4  # generator Adam learning rate
    lr_d: float = 1e-4  # critic Adam learning rate
    beta1: float = 0.5  # Adam beta1 (WGAN-GP: 0.5)
    beta2: float = 0.9  # Adam beta2 (WGAN-GP: 0.9)
    lr_decay: str = "none"  # "linear": both learning rates fall linearly towards 0 from step lr_decay_start to
    # `steps` (the schedule of the WGAN-GP paper's CIFAR-10 runs); "none": constant
    lr_decay_start: int = 0  # the step the decay starts from (a warm start's steps count: init_from keeps its step)
    energy_weight: float = 0.0  # weight of the consistency term in the generator loss (0: off); it matches the
    # domain's consistency_statistics (calo: the energy response E_tot/E_inc; cosmo: peak counts by height, P(k) bands)
    n_energy_bins: int = 10  # condition bins of the consistency term
    energy_scale: str = "absolute"  # "absolute" or "relative" (in units of each bin's real spread)
    energy_loss: str = "moments"  # "moments" (per-bin mean and spread), "crps" (per-sample proper score), or both:
    # "moments+crps"
    ema_decay: float = 0.999  # EMA decay of the exported generator weights
    balance_bins: int = 0  # > 0: draw a share of each batch evenly over this many equal bins of the first
    # condition feature (calo: bins of log E, so 1-10 GeV gets as many showers as 10-100 GeV); 0: uniform
    balance_fraction: float = 0.5  # that share (the rest is drawn uniformly over the samples)
    # -- architecture --------------------------------------------------------------------------
    latent_dim: int = 128  # generator latent size
    g_hidden: tuple[int, ...] = field(default=(512, 1024, 1024))  # generator hidden widths (2.2M params)
    g_layer_norm: bool = True  # LayerNorm in the generator
    g_head_hidden: tuple[int, ...] = field(default=())  # separate head for the domain's extra outputs; (): none
    g_output_noise: float = 0.0  # initial sigma of learned per-output noise before the generator's ReLU; 0: none
    g_output_noise_max: float = 0.0  # upper bound of that sigma (> g_output_noise); 0: unbounded
    g_global_offset: bool = False  # conv generator: a per-sample output offset from [z, c] (ConvGenerator doc)
    g_stage_noise: bool = False  # conv generator: per-pixel noise at every stage, learned strengths (ConvGenerator doc)
    g_stage_depth: int = 1  # conv generator: convolutions per stage
    d_hidden: tuple[int, ...] = field(default=(1024, 512, 256))  # critic hidden widths
    d_layer_norm: bool = False  # LayerNorm in the critic (never BatchNorm)
    cond_embed: int = 0  # learned condition embedding of this width in generator and critic; 0: raw features
    critic_features: bool = True  # give the critic the domain's physics summaries (when it has them)
    # -- runtime -------------------------------------------------------------------------------
    seed: int = 0  # seeds the split, weights, batches and noise
    device: str = "auto"  # auto (CUDA if available), cpu, cuda, cuda:1, ...
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU); the gradient penalty stays float32
    cuda_graph: bool = True  # on CUDA, capture the whole iteration in a CUDA graph (much faster for small nets)
    max_samples: int = 0  # read at most this many samples from `data` (0: all)
    val_samples: int = 10_000  # held-out samples for quick validation (never trained on)
    val_every: int = 1000  # quick validation (and best-model export) every this many steps
    val_conditional: bool = True  # the quick-validation score also judges each observable's conditional mean
    # (quadratic in the condition features), not only its distribution pooled over all conditions
    checkpoint_every: int = 1000  # training checkpoint every this many steps
    keep_checkpoints: int = 2  # how many training checkpoints to keep
    log_every: int = 50  # metrics record and progress update every this many steps
    progress: bool = True  # show a tqdm progress bar
    resume: bool = False  # continue from the newest checkpoint in run_dir when there is one
    init_from: str = ""  # warm start (a new run): weights, optimizers, RNG and step of this checkpoint directory of
    # another run; the best-checkpoint score starts afresh, physics features appended since get zero critic weight.
    # Or a shipped model directory: its generator weights (generator and EMA), a fresh critic and optimizers, step 0
    critic_warmup: int = 0  # critic-only iterations (n_critic updates each) before a new run's first generator
    # update, so that a fresh critic does not steer a trained generator (init_from a model directory) at random
    time_limit_s: float = 0.0  # stop (with a final validation and checkpoint) after this much training time; 0: none

    def __post_init__(self) -> None:
        self.g_hidden = tuple(int(h) for h in self.g_hidden)
        self.g_head_hidden = tuple(int(h) for h in self.g_head_hidden)
        self.d_hidden = tuple(int(h) for h in self.d_hidden)
        if not self.name and self.out:
            self.name = Path(self.out).name
        if not self.run_dir and self.name:
            self.run_dir = str(Path("runs") / self.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        d = dataclasses.asdict(self)
        d["g_hidden"], d["d_hidden"] = list(self.g_hidden), list(self.d_hidden)
        d["g_head_hidden"] = list(self.g_head_hidden)
        return d


def _coerce(name: str, typ: Any, value: Any) -> Any:
    """Convert ``value`` (possibly a CLI string) to the type of field ``name``."""
    typ = str(typ)
    try:
        if typ.startswith("tuple"):
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            return tuple(int(v) for v in value)
        if typ == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if typ == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {name!r} expects {typ}, got {value!r}") from None


def load_config(
    config: TrainConfig | Mapping[str, Any] | None = None,
    file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Resolve a config: defaults <- ``config`` <- JSON ``file`` <- ``overrides``; unknown keys fail.

    ``file`` holds the settings as a JSON object, or is a model's ``card.json`` (its training settings).
    """
    types = {f.name: f.type for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    layers: list[Mapping[str, Any]] = []
    if isinstance(config, TrainConfig):
        layers.append(config.to_dict())
    elif config:
        layers.append(config)
    if file:
        try:
            loaded = json.loads(Path(file).read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {file}: not valid JSON ({exc})") from None
        if isinstance(loaded, dict) and isinstance(loaded.get("hyperparameters"), dict):
            loaded = loaded["hyperparameters"].get("train")  # a model card: the settings it was trained with
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: expected a JSON object of settings (or a model's card.json)")
        layers.append(loaded)
    if overrides:
        layers.append(overrides)
    for layer in layers:
        unknown = sorted(set(layer) - set(types))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(sorted(types))}")
        for key, value in layer.items():
            values[key] = _coerce(key, types[key], value)
    cfg = TrainConfig(**values)
    for key in (
        "steps",
        "batch_size",
        "n_critic",
        "val_every",
        "checkpoint_every",
        "log_every",
        "keep_checkpoints",
    ):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.lr_decay not in LR_DECAYS:
        raise ConfigError(f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {cfg.lr_decay!r}")
    if cfg.lr_decay != "none" and not 0 <= cfg.lr_decay_start < cfg.steps:
        raise ConfigError(
            f"lr_decay_start={cfg.lr_decay_start} must be >= 0 and below steps={cfg.steps} (the decay ends at `steps`)"
        )
    return cfg


LR_DECAYS = ("none", "linear")


def lr_scale_at(step: int, cfg: TrainConfig) -> float:
    """The learning-rate factor of update ``step`` (1-based): 1 before ``lr_decay_start``, then falling linearly so
    that the last update (``steps``) gets 1 / (steps - lr_decay_start) of the initial rate."""
    if cfg.lr_decay == "none" or step <= cfg.lr_decay_start:
        return 1.0
    return max(0.0, (cfg.steps - step + 1) / (cfg.steps - cfg.lr_decay_start))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (buffers are copied)."""
    e_params = list(ema.parameters())
    m_params = list(model.parameters())
    torch._foreach_lerp_(e_params, m_params, 1.0 - decay)
    for eb, mb in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(mb)


def ema_decay_at(step: int, decay: float) -> float:
    """Warmed-up EMA decay: early steps average over fewer updates, so a short run's EMA is not stuck at init."""
    return min(decay, (1.0 + step) / (10.0 + step))


# -- data --------------------------------------------------------------------------------------


@dataclass
class _Data:
    x: torch.Tensor  # (N, D) network space, training device
    conditions: torch.Tensor  # (N, k)
    features: torch.Tensor  # (N, k)
    val_conditions: np.ndarray  # (M, k) held-out
    val_features: np.ndarray  # (M, k') their condition features (float64)
    val_observables: dict[str, np.ndarray]
    attrs: dict
    n_total: int


def _load_data(cfg: TrainConfig, domain: Domain, device: torch.device) -> _Data:
    if not cfg.data:
        raise ConfigError("no training data: set `data` (--data FILE)")
    if not hasattr(domain, "read_samples"):
        raise ConfigError(f"domain {domain.name!r} cannot read training files (no read_samples)")
    if not Path(cfg.data).exists():
        raise FileNotFoundError(
            f"training data {cfg.data} does not exist; create it with `emulator simulate`"
        )
    conditions, samples, attrs = domain.read_samples(cfg.data, cfg.max_samples or None)
    n = len(samples)
    n_val = min(cfg.val_samples, n // 5)
    if n - n_val < cfg.batch_size:
        raise ConfigError(
            f"{cfg.data} has {n} samples; need more than batch_size={cfg.batch_size} + validation"
        )
    perm = np.random.default_rng([cfg.seed, 0]).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    val_obs = domain.observables(samples[val_idx], conditions[val_idx]) if n_val else {}
    cond_t = torch.from_numpy(np.ascontiguousarray(conditions[train_idx])).to(device)
    flat = torch.from_numpy(np.ascontiguousarray(samples[train_idx])).to(device)
    x = domain.to_network(flat.view(len(train_idx), *domain.sample_shape), cond_t).reshape(len(train_idx), -1)
    del flat
    if not torch.isfinite(x).all():
        raise ValueError(f"{cfg.data}: samples map to non-finite network values (negative energies?)")
    return _Data(
        x=x.float().contiguous(),
        conditions=cond_t,
        features=domain.condition_features(cond_t).float(),
        val_conditions=conditions[val_idx],
        val_features=domain.condition_features(torch.from_numpy(conditions[val_idx])).double().numpy(),
        val_observables=val_obs,
        attrs=attrs,
        n_total=n,
    )


def balanced_index_cdf(cond_feature: torch.Tensor, n_bins: int, fraction: float) -> torch.Tensor:
    """Cumulative sampling weights (N,) of training samples: ``fraction`` of the probability spread
    evenly over the non-empty equal bins of ``cond_feature`` on [0, 1], the rest uniform over samples.

    A batch index is ``searchsorted(cdf, u)`` with u ~ U(0, 1), which (unlike ``multinomial``)
    can be captured in a CUDA graph. The conditional distribution within each bin is unchanged,
    so the emulator still learns p(sample | condition); only the share of training each bin gets moves.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"balance_fraction must be in [0, 1], got {fraction}")
    idx = condition_bins(cond_feature, n_bins)
    counts = torch.bincount(idx, minlength=n_bins).double()
    per_bin = fraction / (counts > 0).sum() / counts.clamp_min(1.0)
    weights = (1.0 - fraction) / len(idx) + per_bin[idx]
    cdf = torch.cumsum(weights, 0)
    return (cdf / cdf[-1]).float()


@torch.no_grad()
def _response_scale(cfg: TrainConfig, domain: Domain, data: _Data) -> torch.Tensor | None:
    """The training set's spread of the domain's consistency statistics per condition bin, for a
    relative CRPS term; else None."""
    if not (cfg.energy_weight > 0 and "crps" in cfg.energy_loss and cfg.energy_scale == "relative"):
        return None
    chunk = 32768  # bounded memory: the response needs expm1 of every value
    response = torch.cat(
        [
            domain.consistency_statistics(data.x[i : i + chunk], data.conditions[i : i + chunk])
            for i in range(0, data.x.shape[0], chunk)
        ]
    )
    return response_spread(response, data.features[:, 0], cfg.n_energy_bins)


# -- quick validation ----------------------------------------------------------------------------


@torch.no_grad()
def _generate(
    generator: nn.Module, domain: Domain, conditions: np.ndarray, seed: int, device: torch.device
) -> np.ndarray:
    """Physical samples for ``conditions`` with fixed noise (so scores are comparable across steps)."""
    generator.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    draws = torch.Generator(device=device).manual_seed(seed + 1)  # a domain's own output draws, on its device
    out = []
    for start in range(0, len(conditions), 8192):
        c = torch.from_numpy(np.ascontiguousarray(conditions[start : start + 8192])).to(device)
        z = torch.randn(len(c), generator.noise_dim, generator=g).to(device)
        raw = generator(z, domain.condition_features(c))
        out.append(decode_samples(domain, raw, c, draws).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *domain.sample_shape), np.float32)


def _quadratic_design(features: np.ndarray) -> np.ndarray:
    """(N, 1 + k + k(k+1)/2): 1, each condition feature and each product of two, for least squares."""
    f = np.asarray(features, np.float64).reshape(len(features), -1)
    pairs = [f[:, i] * f[:, j] for i in range(f.shape[1]) for j in range(i, f.shape[1])]
    return np.column_stack([np.ones(len(f)), f, *pairs])


def conditional_mean_deviation(gen: np.ndarray, ref: np.ndarray, features: np.ndarray) -> float:
    """RMS over the held-out conditions of the conditional mean of gen - ref, in units of ref's scatter.

    ``gen[i]`` and ``ref[i]`` are one observable of samples at the same condition (``features[i]``).
    The conditional means are least-squares quadratics in the condition features; the unit is the
    scatter of ``ref`` about its own fitted conditional mean. The pooled W1 cannot see a model that is
    too high at some conditions and too low at others; this can. Its floor for a perfect model is
    about sqrt(2 n_coefficients / N) (the fit's noise): 0.08 for two conditions and 2000 samples.
    """
    design = _quadratic_design(features)
    fitted = design @ np.linalg.lstsq(design, np.column_stack([gen - ref, ref]), rcond=None)[0]  # one solve, both
    scale = (ref - fitted[:, 1]).std() or 1.0
    return float(np.sqrt(np.mean(fitted[:, 0] ** 2)) / scale)


def quick_validation_score(
    domain: Domain,
    gen_obs: dict[str, np.ndarray],
    ref_obs: dict[str, np.ndarray],
    features: np.ndarray | None = None,
) -> tuple[float, dict[str, float]]:
    """Mean over the domain's quick-validation observables of W1(gen, ref) / std(ref) (lower is better).

    With ``features`` (N, k), the condition features of the held-out samples, at which ``gen_obs`` was
    generated one for one, each observable also adds ``"<name>|cond"``: its
    ``conditional_mean_deviation``, and the score is the mean over all entries.
    """
    import ot

    names = getattr(domain, "quick_val_observables", None) or sorted(ref_obs)
    per: dict[str, float] = {}
    for name in names:
        ref, gen = np.asarray(ref_obs[name], np.float64), np.asarray(gen_obs[name], np.float64)
        scale = ref.std() or 1.0
        per[name] = float(ot.wasserstein_1d(gen, ref, p=1)) / scale
        if features is not None:
            per[f"{name}|cond"] = conditional_mean_deviation(gen, ref, features)
    return float(np.mean(list(per.values()))), per


# -- the loop ------------------------------------------------------------------------------------


def _apply_domain_defaults(cfg: TrainConfig, domain: Domain) -> None:
    """Replace settings ``cfg`` leaves at the trainer defaults with the domain's ``train_defaults``.

    The trainer's architecture defaults size the MLPs; a domain with other architectures (cosmo:
    conv nets) states its own widths there. A value equal to the trainer default counts as not
    given. ``cfg`` is updated in place so the card and checkpoints record what was built.
    """
    defaults = {f.name: f for f in fields(TrainConfig)}
    for key, value in getattr(domain, "train_defaults", {}).items():
        f = defaults[key]
        trainer_default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if getattr(cfg, key) == trainer_default:
            setattr(cfg, key, _coerce(key, f.type, value))


def _build(cfg: TrainConfig, domain: Domain) -> tuple[nn.Module, nn.Module]:
    """The generator and critic for ``domain``, sized by ``cfg``.

    A domain names its architectures with ``generator_class`` / ``critic_class`` (registered in
    ``emulator.models.MODEL_CLASSES``; default the MLPs) and may give ``train_defaults``.
    """
    _apply_domain_defaults(cfg, domain)
    k = len(domain.conditions)
    out_act = getattr(domain, "output_activation", "none")  # cosmo: "tanh" (network space is bounded)
    n_extra = int(getattr(domain, "generator_extra_outputs", 0))
    head = {"head_outputs": n_extra, "head_hidden": cfg.g_head_hidden} if cfg.g_head_hidden else {}
    embed = {"cond_embed": cfg.cond_embed} if cfg.cond_embed else {}  # absent: old configs load unchanged
    noise = {"output_noise": cfg.g_output_noise} if cfg.g_output_noise else {}
    if cfg.g_output_noise and cfg.g_output_noise_max:  # without noise the bound is moot
        noise["output_noise_max"] = cfg.g_output_noise_max
    conv = {k: True for k, on in (("global_offset", cfg.g_global_offset), ("stage_noise", cfg.g_stage_noise)) if on}
    conv |= {"stage_depth": cfg.g_stage_depth} if cfg.g_stage_depth != 1 else {}  # absent: old configs unchanged
    gen = build_for_training(
        getattr(domain, "generator_class", "MLPGenerator"), domain.sample_shape, k, extra_outputs=n_extra,
        latent_dim=cfg.latent_dim, hidden=cfg.g_hidden, layer_norm=cfg.g_layer_norm, output_activation=out_act,
        **head, **embed, **noise, **conv,
    )  # fmt: skip
    feat_dim = int(getattr(domain, "critic_feature_dim", 0)) if cfg.critic_features else 0
    critic = build_for_training(
        getattr(domain, "critic_class", "MLPCritic"), domain.sample_shape, k,
        feature_dim=feat_dim, hidden=cfg.d_hidden, layer_norm=cfg.d_layer_norm, **embed,
    )  # fmt: skip
    return gen, critic


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), {os.cpu_count()} CPU cores"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _card(cfg: TrainConfig, domain: Domain, gen: nn.Module, data: _Data, info: dict) -> dict:
    return {
        "name": cfg.name,
        "domain": domain.name,
        "version": cfg.version,
        "particle": cfg.particle or None,
        "description": (
            f"Conditional WGAN-GP emulator of {domain.name} samples"
            + (f" for {cfg.particle}" if cfg.particle else "")
            + "; EMA generator weights selected by quick validation."
        ),
        "conditions": [
            {"name": c.name, "unit": c.unit, "low": c.low, "high": c.high, "description": c.description}
            for c in domain.conditions
        ],
        "sample_shape": list(domain.sample_shape),
        "layout": domain.layout,
        "preprocessing": getattr(domain, "preprocessing", {}),
        "training_data": {
            "file": Path(cfg.data).name,
            "n_samples": data.n_total,
            "n_held_out": len(data.val_conditions),
            "attrs": {k: v for k, v in data.attrs.items() if isinstance(v, (str, int, float, bool))},
        },
        "hyperparameters": {"train": cfg.to_dict(), "generator": gen.config.to_dict()},
        "parameters": sum(p.numel() for p in gen.parameters()),
        "flops_per_sample": gen.flops_per_sample(),
        "training": info,
        "validation": None,
    }


def _write_loss_curve(metrics_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [r for r in recs if "loss_d" in r]
    val = [r for r in recs if "val_score" in r]
    if not train:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in train]
    for key in ("loss_d", "loss_g", "wasserstein", "gp"):
        ax1.plot(steps, [r[key] for r in train], label=key, lw=1)
    ax1.set_xlabel("generator step")
    ax1.set_title("WGAN-GP losses")
    ax1.legend()
    if val:
        ax2.plot([r["step"] for r in val], [r["val_score"] for r in val], "o-")
        ax2.set_yscale("log")
    ax2.set_xlabel("generator step")
    ax2.set_title("quick validation: mean W1 / std and conditional-mean terms (lower is better)")
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)


def _adapt_tensors(
    module: nn.Module, prefix: str, optim_prefix: str | None, tensors: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Checkpoint tensors of an older form of ``module`` (saved under ``prefix.``) -> ones that load.

    The module's ``adapt_state_dict`` says how (critic: zero input weights for physics features
    appended since; generator: output noise added since, at its initial sigma); a module without
    it must match. The Adam moments "<optim_prefix>.<param index>.<name>" of a reshaped weight go
    through the same map (``optim_prefix`` None: weights only, as for the EMA copy); a new
    parameter, registered last, starts with fresh moments.
    """
    adapt = getattr(module, "adapt_state_dict", None)
    if adapt is None:
        return tensors
    weights = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    adapted = adapt(weights)
    changed = {name for name, w in adapted.items() if name not in weights or w.shape != weights[name].shape}
    out = {**tensors, **{f"{prefix}.{name}": adapted[name] for name in changed}}
    names = [n for n, _ in module.named_parameters()]
    for key, val in tensors.items() if optim_prefix else ():
        if key.startswith(optim_prefix + ".") and val.ndim:
            name = names[int(key.split(".")[1])]
            if name in changed and name in weights:
                out[key] = adapt({**weights, name: val})[name]
    return out


def _load_generator_weights(model_dir: Path, domain: Domain, generators: tuple[nn.Module, ...]) -> None:
    """Load the generator weights of the shipped model directory ``model_dir`` into each of ``generators``."""
    try:
        loaded = load_model_dir(model_dir)
    except InvalidModelDir as exc:
        raise ConfigError(f"init_from={str(model_dir)!r}: {exc}") from None
    # the same units (the transform's formula, else its name) suffice: a variant that only changes the output stage
    # (calo: spots) warm-starts from its base
    units = [getattr(d, "preprocessing", {}) for d in (domain, loaded.domain)]
    want, have = ((d.name, u.get("formula", u.get("name"))) for d, u in zip((domain, loaded.domain), units, strict=True))
    if have != want:
        raise ConfigError(
            f"init_from={str(model_dir)!r} is a {have[0]} model with preprocessing {have[1]!r}; this run trains "
            f"{want[0]} with {want[1]!r}: a warm start needs the same domain and units"
        )
    for module in generators:
        if module.config.to_dict() != loaded.generator.config.to_dict():
            raise ConfigError(
                f"init_from={str(model_dir)!r}: its generator is {loaded.generator.config.to_dict()}, this run's "
                f"{module.config.to_dict()}; set the same architecture (--set latent_dim=..., g_hidden=..., ...)"
            )
        module.load_state_dict(loaded.generator.state_dict())


def _adapt_optimizer_meta(meta: dict, opt: torch.optim.Optimizer) -> dict:
    """Saved optimizer metadata whose parameter list is ``opt``'s (grown by parameters registered last)."""
    groups = [{**saved, "params": own["params"]} for saved, own in zip(
        meta["param_groups"], opt.state_dict()["param_groups"], strict=True
    )]  # fmt: skip
    return {**meta, "param_groups": groups}


def _rng_tensors(index_gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    t = {"rng.torch_cpu": torch.get_rng_state(), "rng.index": index_gen.get_state()}
    if device.type == "cuda":
        t["rng.torch_cuda"] = torch.cuda.get_rng_state(device)
    return t


def _rank_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def train_func(
    config: TrainConfig | Mapping[str, Any],
    *,
    report: Callable[[dict], None] | None = None,
    checkpoint_hook: Callable[[Path | None, dict], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    setup_hook: Callable[[GANStep], None] | None = None,
    resume_from: Path | None = None,
) -> dict:
    """Train one emulator; returns a summary (best score and step, steps, seconds, paths).

    ``report(metrics)`` is called at every log step and ``checkpoint_hook(path, metrics)``
    after every checkpoint; both are optional (Ray Train's only touch points). ``rank``,
    ``world_size`` and ``setup_hook`` are for data-parallel launchers (see the module
    docstring); ``resume_from`` resumes from that checkpoint directory instead of run_dir's newest.
    """
    cfg = load_config(config)
    if not cfg.out:
        raise ConfigError("no output model directory: set `out` (--out DIR)")
    if cfg.batch_size % world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} must be a multiple of the {world_size} workers")
    main = rank == 0  # only rank 0 validates, exports and writes logs and checkpoints
    rank_batch = cfg.batch_size // world_size
    try:
        domain = get_domain(cfg.domain, cfg.preprocessing or None)
    except ValueError as exc:
        raise ConfigError(f"preprocessing={cfg.preprocessing!r}: {exc}") from None
    device = resolve_device(cfg.device)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.jsonl"
    if main:  # the run's settings, for `emulator train --config` (continue, vary, reproduce)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")

    torch.manual_seed(cfg.seed)
    data = _load_data(cfg, domain, device)
    gen, critic = _build(cfg, domain)
    gen.to(device)
    critic.to(device)
    ema = copy.deepcopy(gen).requires_grad_(False)
    gan = GANStep(
        gen, critic, domain,
        lr_g=cfg.lr_g, lr_d=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), n_critic=cfg.n_critic,
        gp_lambda=cfg.gp_lambda, energy_weight=cfg.energy_weight, n_energy_bins=cfg.n_energy_bins,
        energy_scale=cfg.energy_scale, energy_loss=cfg.energy_loss, response_scale=_response_scale(cfg, domain, data),
        gp_space=cfg.gp_space, use_critic_features=cfg.critic_features, amp=cfg.amp, cuda_graph=cfg.cuda_graph and world_size == 1,
        variable_lr=cfg.lr_decay != "none",
    )  # fmt: skip
    index_gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
    n_train = data.x.shape[0]

    start_step, best_score, best_step, elapsed_before = 0, math.inf, 0, 0.0
    ckpt = resume_from or (latest_checkpoint(run_dir) if cfg.resume else None)
    resumed = ckpt is not None
    warm_start = not resumed and bool(cfg.init_from)
    if warm_start and (Path(cfg.init_from) / CONFIG_FILE).is_file():  # a shipped model: its generator only
        _load_generator_weights(Path(cfg.init_from), domain, (gen, ema))
        warm_start = False
    if warm_start:
        ckpt = Path(cfg.init_from)
        if not (ckpt / "state.json").is_file():
            raise ConfigError(f"init_from={cfg.init_from!r} is not a training checkpoint directory (no state.json)")
    if ckpt is not None:
        tensors, state = load_checkpoint(ckpt, device="cpu")
        if warm_start:  # architecture grown since the checkpoint: adapt weights and optimizer state
            for module, prefix, optim_prefix in ((critic, "critic", "optim_d"), (gen, "generator", "optim_g"), (gen, "ema", None)):
                tensors = _adapt_tensors(module, prefix, optim_prefix, tensors)
            state = {
                **state,
                "optim_g": _adapt_optimizer_meta(state["optim_g"], gan.opt_g),
                "optim_d": _adapt_optimizer_meta(state["optim_d"], gan.opt_d),
            }
        for prefix, module in (("generator", gen), ("ema", ema), ("critic", critic)):
            try:
                module.load_state_dict(
                    {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
                )
            except RuntimeError as err:  # e.g. the domain's critic features grew since the checkpoint
                raise ConfigError(
                    f"the {prefix} in checkpoint {ckpt} does not fit this code's {prefix} ({err}). If the model "
                    f"grew since (new critic features, output noise), start a new run from it with "
                    f"--init-from {ckpt} instead of resuming"
                ) from None
        optimizer_from_tensors(gan.opt_g, tensors, state["optim_g"], "optim_g")
        optimizer_from_tensors(gan.opt_d, tensors, state["optim_d"], "optim_d")
        torch.set_rng_state(tensors["rng.torch_cpu"])
        index_gen.set_state(tensors["rng.index"])
        if device.type == "cuda" and "rng.torch_cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.torch_cuda"], device)
        start_step, best_score, best_step = state["step"], state["best_score"], state["best_step"]
        # a new run chooses its best checkpoint among its own validations; so does a run whose score
        # changed meaning (checkpoints from before the conditional term record no val_conditional)
        if warm_start or state.get("config", {}).get("val_conditional", False) != cfg.val_conditional:
            best_score, best_step = math.inf, start_step
        elapsed_before = state["elapsed_s"]
        if main and metrics_path.exists():  # drop records written after the checkpoint
            keep = [
                ln
                for ln in metrics_path.read_text().splitlines()
                if ln and json.loads(ln)["step"] <= start_step
            ]
            metrics_path.write_text("".join(ln + "\n" for ln in keep))
    elif main and metrics_path.exists():
        metrics_path.unlink()
    if rank > 0:  # own batches and noise (rank 0 keeps the single-process streams)
        torch.manual_seed(_rank_seed(cfg.seed, rank, start_step))
        index_gen.manual_seed(_rank_seed(cfg.seed + 1, rank, start_step))
    if setup_hook:
        setup_hook(gan)

    cdf = balanced_index_cdf(data.features[:, 0], cfg.balance_bins, cfg.balance_fraction) if cfg.balance_bins else None

    def next_batch() -> Batch:
        if cdf is not None:
            u = (
                torch.rand(rank_batch, device=device)  # in a CUDA graph: the device RNG
                if gan.cuda_graph
                else torch.rand(rank_batch, generator=index_gen).to(device)
            )
            idx = torch.searchsorted(cdf, u).clamp_max(n_train - 1)
        elif gan.cuda_graph:  # captured into the graph: indices must come from the device RNG
            idx = torch.randint(n_train, (rank_batch,), device=device)
        else:
            idx = torch.randint(n_train, (rank_batch,), generator=index_gen).to(device)
        return Batch(data.x[idx], data.conditions[idx], data.features[idx])

    from tqdm import tqdm

    t0 = time.perf_counter()
    if not resumed:
        for _ in tqdm(range(cfg.critic_warmup), disable=not (cfg.progress and main), desc="critic warm-up"):
            gan.train_critic(next_batch)
    pbar = tqdm(
        total=cfg.steps, initial=start_step, disable=not (cfg.progress and main), desc=cfg.name, dynamic_ncols=True
    )
    log = metrics_path.open("a") if main else open(os.devnull, "w")
    last: dict[str, Any] = {}

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    step = start_step
    try:
        for step in range(start_step + 1, cfg.steps + 1):
            lr_scale = lr_scale_at(step, cfg)
            if cfg.lr_decay != "none":
                gan.set_lr_scale(lr_scale)
            stats = gan.step(next_batch)
            ema_update(ema, gen, ema_decay_at(step, cfg.ema_decay))
            final = step == cfg.steps or (cfg.time_limit_s > 0 and elapsed() >= cfg.time_limit_s)
            if step % cfg.log_every == 0 or final:
                last = {"step": step, **stats.as_dict(), "elapsed_s": round(elapsed(), 2)}
                if cfg.lr_decay != "none":
                    last["lr_scale"] = round(lr_scale, 6)
                log.write(json.dumps(last) + "\n")
                log.flush()
                pbar.set_postfix(
                    W=f"{last['wasserstein']:.3f}", D=f"{last['loss_d']:.3f}", G=f"{last['loss_g']:.3f}"
                )
                if report:
                    report(last)
            if (step % cfg.val_every == 0 or final) and len(data.val_conditions) and main:
                gen_samples = _generate(ema, domain, data.val_conditions, cfg.seed + 12345, device)
                score, per = quick_validation_score(
                    domain,
                    domain.observables(gen_samples, data.val_conditions),
                    data.val_observables,
                    data.val_features if cfg.val_conditional else None,
                )
                rec = {"step": step, "val_score": score, "val": per, "elapsed_s": round(elapsed(), 2)}
                if score < best_score:
                    best_score, best_step = score, step
                    info = {
                        "step": step, "quick_val_score": score, "quick_val": per, "hardware": _hardware(device),
                        "training_time_s": round(elapsed(), 1),
                    }  # fmt: skip
                    export_model(cfg.out, ema, domain, _card(cfg, domain, ema, data, info))
                    rec["best"] = True
                log.write(json.dumps(rec) + "\n")
                log.flush()
                _write_loss_curve(metrics_path, run_dir / "loss_curve.png")
                pbar.write(f"step {step}: quick-val score {score:.4f} (best {best_score:.4f} at {best_step})")
                if report:
                    report(rec)
            if (step % cfg.checkpoint_every == 0 or final) and not main:
                if checkpoint_hook:
                    checkpoint_hook(None, {"step": step, "best_score": best_score})
            elif step % cfg.checkpoint_every == 0 or final:
                tensors: dict[str, torch.Tensor] = {}
                for prefix, module in (("generator", gen), ("ema", ema), ("critic", critic)):
                    tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
                tg, meta_g = optimizer_to_tensors(gan.opt_g, "optim_g")
                td, meta_d = optimizer_to_tensors(gan.opt_d, "optim_d")
                tensors.update(tg | td | _rng_tensors(index_gen, device))
                state = {
                    "step": step, "best_score": best_score, "best_step": best_step, "elapsed_s": elapsed(),
                    "config": cfg.to_dict(), "optim_g": meta_g, "optim_d": meta_d,
                }  # fmt: skip
                path = save_checkpoint(run_dir, step, tensors, state, keep=cfg.keep_checkpoints)
                if checkpoint_hook:
                    checkpoint_hook(path, {"step": step, "best_score": best_score})
            pbar.update(1)
            if final:
                break
    finally:
        pbar.close()
        log.close()
    if main and not len(data.val_conditions) and start_step < cfg.steps:
        export_model(
            cfg.out,
            ema,
            domain,
            _card(cfg, domain, ema, data, {"step": cfg.steps, "hardware": _hardware(device)}),
        )
    if main and metrics_path.exists() and metrics_path.stat().st_size:
        _write_loss_curve(metrics_path, run_dir / "loss_curve.png")
    return {
        "best_score": best_score,
        "best_step": best_step,
        "steps": step,
        "elapsed_s": round(elapsed(), 2),
        "out": cfg.out,
        "run_dir": str(run_dir),
        "last": last,
    }
