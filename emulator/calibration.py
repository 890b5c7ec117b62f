"""Conditional marginal calibration: a monotone map of a trained generator's values, fitted on its training data.

A GAN can get the structure of a sample right and still be off in the tails of its one-point
distribution (the cosmo emulator: too few dense pixels at low Omega_m and high sigma_8, too many
at high Omega_m and low sigma_8). Quantile mapping corrects that after training: every value x of
a generated sample at conditions c is replaced by

    x' = F_ref,c^-1( F_gen,c(x) ),

where F_gen,c and F_ref,c are the cumulative distributions of the values of generated and of
training samples at c. The map is monotone, so it moves values but never reorders them within a
sample: where the maxima of a map are, its topology at a given quantile and its number of peaks
are the generator's; their heights, the pixel PDF and with them the power spectrum follow the
training data.

Both distributions are fitted on the training data alone (never on held-out references), as
functions of the conditions:

* values live in y = log10(x + offset); x <= 0 (an empty pixel) counts as 0, the lowest value,
  and stays as it is. Where the training data have more empty values than the generator, its
  lowest positive values map to (nearly) 0; where fewer, the generator's excess stays. The
  thresholds t_j are a grid in y, ``step`` apart, spanning the values seen;
* for each threshold, logit P(y < t_j | c) is a polynomial of total degree ``degree`` in the
  conditions scaled to [-1, 1] over the domain's ranges (conditions the domain fixes are left
  out), fitted by binomial maximum likelihood to the counts of every training point (all samples
  sharing one condition vector) and of ``per_point`` generated samples there. A small ridge
  keeps fits finite where a tail count is zero everywhere;
* at a condition, both curves are made increasing in t (running maximum), a value's logit is
  read off the generated curve by linear interpolation and mapped back through the reference
  curve (continued linearly past its ends when the generator's tail is the longer one). Beyond
  the grid the map continues as a shift by its value at the grid's end.

The fit needs many samples per condition point (the cosmo training file: 48 maps per box);
``emulator calibrate`` builds it for a model directory, and ``Sampler`` applies it when the
directory holds ``calibration.safetensors``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from emulator.checkpoint import atomic_save_tensors

__all__ = ["CALIBRATION_FILE", "MarginalCalibration", "condition_points", "fit_marginal_calibration"]

CALIBRATION_FILE = "calibration.safetensors"
DEFAULT_OFFSET = 10.0**-2.6  # the cosmo domain's log10 preprocessing floor: 1+delta below ~0.0025 is one value
_RIDGE = 1e-3  # on the logit coefficients: finite fits where a tail is empty at every training point
_MONOTONE_EPS = 1e-6  # keeps the logit curves strictly increasing, so the inverse is defined
_TAIL_SEGMENTS = 4  # a logit beyond the reference curve's ends continues its last 0.2 decades' slope ...
_MAX_TAIL_SLOPE = 1.0  # ... of at most one decade per unit of logit


def _basis(u: torch.Tensor, degree: int) -> torch.Tensor:
    """Monomials of total degree <= ``degree`` of the scaled conditions u (B, d) -> (B, n_terms)."""
    terms = [torch.ones(len(u), dtype=u.dtype, device=u.device)]
    powers: list[tuple[int, ...]] = [()]
    for _ in range(degree):  # every multiset of variable indices, each once
        powers = [(*p, j) for p in powers for j in range(u.shape[1]) if not p or j >= p[-1]]
        terms += [torch.prod(u[:, list(p)], dim=1) for p in powers]
    return torch.stack(terms, dim=1)


def _condition_terms(conditions: torch.Tensor, low: torch.Tensor, high: torch.Tensor, degree: int) -> torch.Tensor:
    """Conditions (B, k) scaled to [-1, 1] over [low, high] (fixed ones left out) -> their monomials, float64."""
    c = torch.as_tensor(conditions, dtype=torch.float64).reshape(len(conditions), -1)
    low, high = low.to(c), high.to(c)
    varying = high > low
    return _basis(2.0 * (c[:, varying] - low[varying]) / (high[varying] - low[varying]) - 1.0, degree)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor, tail: int = 0) -> torch.Tensor:
    """Row-wise linear interpolation of x (B, P) on increasing xp (B, T) -> fp (B, T).

    Clamped at the ends when ``tail`` is 0; else continued linearly beyond them with the mean slope
    of the ``tail`` end segments, at most ``_MAX_TAIL_SLOPE`` (a flat fitted tail must not fling values).
    """
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.shape[1] - 1)
    x0, x1 = xp.gather(1, idx - 1), xp.gather(1, idx)
    f0, f1 = fp.gather(1, idx - 1), fp.gather(1, idx)
    out = f0 + ((x - x0) / (x1 - x0)).clamp(0.0, 1.0) * (f1 - f0)
    if tail:
        tail = min(tail, xp.shape[1] - 1)
        for end, inner, beyond in ((0, tail, x < xp[:, :1]), (-1, -1 - tail, x > xp[:, -1:])):
            slope = ((fp[:, end] - fp[:, inner]) / (xp[:, end] - xp[:, inner])).clamp(max=_MAX_TAIL_SLOPE)
            out = torch.where(beyond, fp[:, end, None] + (x - xp[:, end, None]) * slope[:, None], out)
    return out


@dataclass
class MarginalCalibration:
    """A fitted conditional quantile map (see the module docstring); ``apply`` it to generated samples.

    Attributes:
        thresholds: (T,) increasing grid t_j in y = log10(x + offset).
        coef_generated, coef_reference: (n_terms, T) polynomial coefficients of logit P(y < t_j | c).
        degree: total degree of the polynomials.
        low, high: (k,) the domain's condition ranges (scaling to [-1, 1]); conditions with
            low == high are fixed and left out of the polynomials.
        offset: the value offset of y.
        info: how it was fitted (data, points, samples per point), for the model card.
    """

    thresholds: torch.Tensor
    coef_generated: torch.Tensor
    coef_reference: torch.Tensor
    degree: int
    low: torch.Tensor
    high: torch.Tensor
    offset: float = DEFAULT_OFFSET
    info: dict[str, Any] = field(default_factory=dict)

    def features(self, conditions: torch.Tensor) -> torch.Tensor:
        """Conditions (B, k) in physical units -> polynomial terms (B, n_terms), float64."""
        return _condition_terms(conditions, self.low, self.high, self.degree)

    def logit_curves(self, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(generated, reference) increasing logit P(y < t_j | c) curves, each (B, T), float64."""
        x = self.features(conditions)
        ramp = _MONOTONE_EPS * torch.arange(len(self.thresholds), dtype=torch.float64, device=x.device)
        return tuple(  # type: ignore[return-value]
            torch.cummax(x @ coef.to(x) + ramp, dim=1).values for coef in (self.coef_generated, self.coef_reference)
        )

    def apply(self, samples: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Generated samples (B, ...) at ``conditions`` (B, k) -> calibrated samples, same shape and dtype.

        Values <= 0 stay as they are; every other value moves monotonically (possibly to 0), so
        its rank within the sample is kept.
        """
        if len(samples) == 0:
            return samples
        flat = samples.reshape(len(samples), -1)
        lg, lr = (curve.to(flat.device) for curve in self.logit_curves(conditions.cpu()))
        t = self.thresholds.to(device=flat.device, dtype=torch.float64)
        t_rows = t.expand(len(flat), -1).contiguous()
        y = torch.log10(flat.double().clamp_min(0.0) + self.offset)

        def quantile_map(v: torch.Tensor) -> torch.Tensor:
            return _interp(_interp(v, t_rows, lg), lr, t_rows, tail=_TAIL_SEGMENTS)

        mapped = quantile_map(y)
        # beyond the grid: a shift by the map's value at the grid's end (continuous, monotone)
        shift_lo, shift_hi = quantile_map(t_rows[:, :1]) - t[0], quantile_map(t_rows[:, -1:]) - t[-1]
        mapped = torch.where(y < t[0], y + shift_lo, torch.where(y > t[-1], y + shift_hi, mapped))
        out = (10.0**mapped - self.offset).clamp_min(0.0)
        out = torch.where(flat > 0, out, flat.double())
        return out.to(samples.dtype).reshape(samples.shape)

    # -- storage ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (safetensors, the settings in its metadata) atomically."""
        path = Path(path)
        tensors = {
            "thresholds": self.thresholds, "coef_generated": self.coef_generated,
            "coef_reference": self.coef_reference, "low": self.low, "high": self.high,
        }  # fmt: skip
        meta = {"degree": str(self.degree), "offset": repr(self.offset), "info": json.dumps(self.info)}
        atomic_save_tensors({k: v.double() for k, v in tensors.items()}, path, meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MarginalCalibration:
        """Read a calibration written by ``save`` (no pickle: safetensors and JSON only)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
        try:
            return cls(
                thresholds=t["thresholds"], coef_generated=t["coef_generated"], coef_reference=t["coef_reference"],
                degree=int(meta["degree"]), low=t["low"], high=t["high"], offset=float(meta["offset"]),
                info=json.loads(meta.get("info", "{}")),
            )  # fmt: skip
        except KeyError as exc:
            raise ValueError(f"{path}: not a calibration file (missing {exc})") from None


# -- fitting ------------------------------------------------------------------------------------


def condition_points(conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique condition vectors (P, k), index (N,) of each row's point) of training conditions (N, k)."""
    points, index = np.unique(np.asarray(conditions, dtype=np.float64), axis=0, return_inverse=True)
    return points, index.reshape(-1)


def _counts_below(samples: np.ndarray, thresholds: np.ndarray, offset: float) -> tuple[np.ndarray, int]:
    """(counts of values with y < t_j per threshold, number of values) of one point's samples (x <= 0 as 0)."""
    y = np.sort(np.log10(np.maximum(np.asarray(samples, dtype=np.float64).ravel(), 0.0) + offset))
    return np.searchsorted(y, thresholds, side="left").astype(np.float64), y.size


def _fit_logit(features: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Ridge-penalised binomial maximum likelihood of logit p = features @ beta (Newton, step halving)."""

    def loss(beta: np.ndarray) -> float:
        z = features @ beta
        return float(np.sum(n * np.logaddexp(0.0, z) - k * z) + 0.5 * _RIDGE * beta @ beta)

    beta = np.zeros(features.shape[1])
    p0 = np.clip(k.sum() / n.sum(), 1e-12, 1 - 1e-12)
    beta[0] = np.log(p0 / (1 - p0))
    f = loss(beta)
    for _ in range(200):
        p = 1.0 / (1.0 + np.exp(-np.clip(features @ beta, -60, 60)))
        grad = features.T @ (k - n * p) - _RIDGE * beta
        hess = (features * (n * p * (1 - p))[:, None]).T @ features + _RIDGE * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        a, f_new = 1.0, f
        while a > 1e-8:
            f_new = loss(beta + a * step)
            if f_new <= f:
                break
            a /= 2
        beta = beta + a * step
        if f - f_new <= 1e-10 * max(1.0, abs(f)):
            break
        f = f_new
    return beta


def fit_marginal_calibration(
    generate: Callable[[np.ndarray, int], np.ndarray],
    conditions: np.ndarray,
    samples: np.ndarray,
    low: Sequence[float],
    high: Sequence[float],
    *,
    degree: int = 4,
    per_point: int = 24,
    seed: int = 0,
    offset: float = DEFAULT_OFFSET,
    step: float = 0.05,
    min_tail: int = 5,
    progress: Callable | None = None,
) -> MarginalCalibration:
    """Fit the calibration of a generator on training data.

    Args:
        generate: ``generate(conditions (m, k), seed) -> samples (m, ...)`` of the uncalibrated generator.
        conditions, samples: the training data, (N, k) and (N, ...); rows sharing a condition vector
            form one point.
        low, high: the domain's condition ranges (k,).
        degree: total degree of the polynomials in the conditions.
        per_point: generated samples per training point.
        seed: generation seed of point p is ``seed + p``.
        offset, step: the value space y = log10(x + offset) and the threshold spacing in it.
        min_tail: thresholds need at least this many values below and above them, in the
            training data and in the generated samples, pooled over all points.
        progress: optional wrapper of the point iterator, e.g. ``tqdm``.
    """
    if degree < 0 or per_point < 1 or step <= 0 or offset <= 0:
        raise ValueError(
            f"need degree >= 0, per_point >= 1, step > 0 and offset > 0; got {degree}, {per_point}, {step}, {offset}"
        )
    points, index = condition_points(conditions)
    if len(samples) < 2 * len(points):
        raise ValueError(
            f"{len(samples)} training samples at {len(points)} condition points: the calibration needs several "
            "samples per point (e.g. the 48 maps of each simulated box), so that each point has a distribution"
        )
    low_t, high_t = torch.as_tensor(low, dtype=torch.float64), torch.as_tensor(high, dtype=torch.float64)
    features = _condition_terms(torch.from_numpy(points), low_t, high_t, degree).numpy()
    if len(points) < 2 * features.shape[1]:
        raise ValueError(
            f"{len(points)} distinct condition points cannot fix {features.shape[1]} polynomial terms per threshold "
            f"(degree {degree}); lower the degree or use training data with more points"
        )
    grid = np.arange(np.log10(offset), np.log10(float(np.max(samples)) + offset) + step, step)
    k_ref, k_gen = np.zeros((len(points), len(grid))), np.zeros((len(points), len(grid)))
    n_ref, n_gen = np.zeros(len(points)), np.zeros(len(points))
    order = range(len(points)) if progress is None else progress(range(len(points)))
    for p in order:
        k_ref[p], n_ref[p] = _counts_below(samples[index == p], grid, offset)
        generated = generate(np.repeat(points[p : p + 1], per_point, axis=0), seed + p)
        k_gen[p], n_gen[p] = _counts_below(generated, grid, offset)
    keep = np.ones(len(grid), bool)
    for k, n in ((k_ref, n_ref), (k_gen, n_gen)):
        keep &= (k.sum(0) >= min_tail) & ((n[:, None] - k).sum(0) >= min_tail)
    if keep.sum() < 2:
        raise ValueError("fewer than two thresholds have values on both sides; is the training data constant?")
    cols = np.flatnonzero(keep)
    coef = {
        name: torch.from_numpy(np.stack([_fit_logit(features, k[:, j], n) for j in cols], axis=1))
        for name, k, n in (("gen", k_gen, n_gen), ("ref", k_ref, n_ref))
    }
    info = {
        "method": "conditional quantile mapping (emulator.calibration)",
        "points": len(points), "training_samples": len(samples), "generated_per_point": per_point,
        "seed": seed, "degree": degree, "thresholds": len(cols), "step": step, "offset": offset,
        "value_range": [float(10 ** grid[cols[0]] - offset), float(10 ** grid[cols[-1]] - offset)],
    }  # fmt: skip
    return MarginalCalibration(
        torch.from_numpy(grid[cols]), coef["gen"], coef["ref"], degree, low_t, high_t, offset, info
    )
