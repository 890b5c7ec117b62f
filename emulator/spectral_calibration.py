"""Conditional spectral calibration: a gain per Fourier band of a periodic field, fitted on training data.

The cosmo emulator's power spectrum is off by a few per cent in a pattern that is smooth in the
conditions (at the training conditions the generator's P(k) of one band is too high or too low by
about the same amount as at nearby held-out points). A linear filter corrects that after
training, before the pixel quantile map of ``emulator.calibration``:

    y = log10(x + offset),   y_k -> y_k * exp(g_b(c)) for every Fourier mode k in band b,   x = 10^y - offset,

where the bands are shells |k| in [b - 1/2, b + 1/2) fundamental frequencies (b = 1 .. n/2, the
shells of ``physics_data.cosmo.observables.default_k_edges``; the mean and the modes beyond the
last shell are kept) and each log gain g_b is a polynomial of total degree ``degree`` in the
domain's condition features, as the quantile map's curves are. The filter acts on log density so
that the result stays non-negative and so that the quantile map applied after it sets the pixel
PDF again (a filter on the density itself rings voids below zero).

Fitting (``fit_gain_update``, driven by ``emulator calibrate``) iterates, on the training data
alone: generate at every training point with the current filter and quantile map, take the log
ratio of the mean band powers of δ = x / mean - 1 (generated over training), fit it with the
polynomial, lower the log gains by half of it (power is amplitude squared), refit the quantile
map; until the fitted ratio's rms over the training points is below a tolerance in every band,
keeping the round whose worst band measured best.

A domain opts in with ``calibration_fit = {"spectral_iterations": N, "spectral_degree": d}``;
its samples must be square periodic fields.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["SpectralCalibration", "band_index", "band_power", "fit_gain_update"]


@functools.lru_cache(maxsize=8)
def band_index(shape: tuple[int, ...]) -> torch.Tensor:
    """Band of every mode of ``torch.fft.rfftn`` of a square field of ``shape``: b - 1 for the shell
    |k| in [b - 1/2, b + 1/2) fundamental frequencies (b = 1 .. n // 2), -1 for the mean and the
    modes beyond the last shell. LongTensor of the rfftn output's shape, cached per shape (the
    sampler filters every chunk it decodes): do not modify it."""
    n = shape[0]
    if any(s != n for s in shape):
        raise ValueError(f"spectral calibration needs a square field, got shape {tuple(shape)}")
    freqs = [torch.fft.fftfreq(n, 1.0 / n)] * (len(shape) - 1) + [torch.fft.rfftfreq(n, 1.0 / n)]
    grids = torch.meshgrid(*freqs, indexing="ij")
    k = torch.sqrt(sum(g.double() ** 2 for g in grids))
    shell = torch.floor(k + 0.5).long()
    return torch.where((shell >= 1) & (shell <= n // 2), shell - 1, -1)


def band_power(samples: torch.Tensor | np.ndarray, n_dims: int) -> np.ndarray:
    """Mean |δ_k|^2 per band of each field (B, n, ..., n), δ = x / mean(x) - 1, in arbitrary units
    (only ratios are used): (B, n // 2) float64. A field with a non-positive mean counts as δ = 0."""
    x = torch.as_tensor(samples, dtype=torch.float64)
    dims = tuple(range(-n_dims, 0))
    mean = x.mean(dim=dims, keepdim=True)
    delta = torch.where(mean > 0, x / torch.where(mean > 0, mean, 1.0) - 1.0, 0.0)
    power = torch.fft.rfftn(delta, dim=dims).abs().square().reshape(len(x), -1)
    bands = band_index(tuple(x.shape[-n_dims:])).reshape(-1)
    keep = bands >= 0
    n_bands = x.shape[-1] // 2
    sums = torch.zeros(len(x), n_bands, dtype=torch.float64).index_add_(1, bands[keep], power[:, keep])
    counts = torch.bincount(bands[keep], minlength=n_bands).double()
    return (sums / counts).numpy()


@dataclass
class SpectralCalibration:
    """Log gains per band as polynomials in the condition features (see the module docstring).

    Attributes:
        coef: (n_terms, n_bands) polynomial coefficients of the log amplitude gain of each band.
        degree: total degree of the polynomials (the terms of ``emulator.calibration``'s basis).
        offset: the field is filtered in y = log10(x + offset).
        info: how it was fitted, for the model card.
    """

    coef: torch.Tensor
    degree: int
    offset: float
    info: dict[str, Any] = field(default_factory=dict)

    def log_gains(self, features: torch.Tensor) -> torch.Tensor:
        """(B, n_bands) float64 log amplitude gains at condition features (B, f)."""
        from emulator.calibration import condition_terms

        return condition_terms(features.detach().cpu(), self.degree) @ self.coef.double()

    def apply(self, samples: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Physical fields (B, n, ..., n) at condition features (B, f) -> filtered fields, same shape and dtype."""
        if len(samples) == 0:
            return samples
        n_dims = samples.dim() - 1
        dims = tuple(range(1, n_dims + 1))
        bands = band_index(tuple(samples.shape[1:])).to(samples.device)
        gains = torch.exp(self.log_gains(features).to(samples.device))  # (B, n_bands)
        per_mode = torch.where(bands >= 0, gains[:, bands.clamp_min(0)], torch.ones((), dtype=torch.float64))
        y = torch.log10(samples.double().clamp_min(0.0) + self.offset)
        y = torch.fft.irfftn(torch.fft.rfftn(y, dim=dims) * per_mode, s=samples.shape[1:], dim=dims)
        return (10.0**y - self.offset).clamp_min(0.0).to(samples.dtype)

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(tensors, metadata) to store beside the quantile map in one safetensors file."""
        return {"spectral_coef": self.coef.double().clone()}, {
            "spectral_degree": str(self.degree), "spectral_offset": repr(self.offset),
            "spectral_info": json.dumps(self.info),
        }  # fmt: skip

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> SpectralCalibration | None:
        """The stage stored by ``to_tensors``, or None when the file has none."""
        if "spectral_coef" not in tensors:
            return None
        return cls(
            tensors["spectral_coef"], int(meta["spectral_degree"]), float(meta["spectral_offset"]),
            json.loads(meta.get("spectral_info", "{}")),
        )  # fmt: skip


def fit_gain_update(
    generate: Callable[[np.ndarray, int], np.ndarray],
    points: np.ndarray,
    reference_power: np.ndarray,
    features: np.ndarray,
    *,
    degree: int,
    per_point: int,
    seed: int,
    block: int = 2048,
    progress: Callable | None = None,
) -> np.ndarray:
    """Polynomial coefficients (n_terms, n_bands) of log(P_generated / P_training) per band over the
    training points.

    Args:
        generate: ``generate(conditions (m, k), seed) -> fields (m, n, ..., n)`` with the current
            calibration (filter and quantile map).
        points: the training condition points (P, k); ``reference_power`` (P, n_bands) their mean
            ``band_power`` over the training fields; ``features`` (P, f) their condition features.
        degree: total degree of the polynomial; per_point: generated fields per point.
        seed: block b of about ``block`` fields uses ``seed + b``.
    """
    from emulator.calibration import condition_terms

    per_block = max(1, block // per_point)
    starts = range(0, len(points), per_block)
    powers = []
    for b, start in enumerate(starts if progress is None else progress(starts)):
        batch = np.repeat(points[start : start + per_block], per_point, axis=0)
        fields = np.asarray(generate(batch, seed + b))
        powers.append(band_power(fields, fields.ndim - 1).reshape(-1, per_point, reference_power.shape[1]).mean(1))
    log_ratio = np.log(np.concatenate(powers) / reference_power)
    terms = condition_terms(features, degree).numpy()
    return np.linalg.lstsq(terms, log_ratio, rcond=None)[0]
