"""Conditional marginal calibration: a monotone map of a trained generator's values, fitted on its training data.

A GAN can get the structure of a sample right and still be off in a one-point distribution (the
cosmo emulator: too few dense pixels at low Omega_m and high sigma_8; the calo emulators: a
response E_tot/E_inc too narrow at low energy). Quantile mapping corrects that after training:
every calibrated value v of a generated sample at conditions c is replaced by

    v' = F_ref,c^-1( F_gen,c(v) ),

where F_gen,c and F_ref,c are the cumulative distributions of that value in generated and in
training samples at c. The map is monotone, so it moves values but never reorders them.

Which values are calibrated is the domain's choice (``calibration_values`` and
``with_calibration_values``, see ``emulator.domains.base``; by default every value of a sample,
pooled): cosmo maps its pixels, so where the maxima of a map are, its topology at a given
quantile and its number of peaks stay the generator's while their heights, the pixel PDF and
with them the power spectrum follow the training data; calo maps one value per shower, the
response, and scales the whole shower with it, so its shape stays the generator's.

Both distributions are fitted on the training data alone (never on held-out references), as
functions of the conditions:

* values live in y = log10(v + offset); v <= 0 (an empty value) counts as 0, the lowest value,
  and stays as it is. Where the training data have more empty values than the generator, its
  lowest positive values map to (nearly) 0; where fewer, the generator's excess stays. The
  thresholds t_j are a grid in y, ``step`` apart, spanning the values seen (thinned to at most 200
  points near evenly spaced quantiles of the values when it is longer), one grid for the
  generated and one for the training values (so the two need not overlap; the domain's
  ``calibration_space`` gives offset and step);
* for each threshold, logit P(y < t_j | c) is a polynomial of total degree ``degree`` in the
  domain's condition features (``condition_features``, in [0, 1] over the valid ranges, scaled to
  [-1, 1]: cosmo linear in Omega_m and sigma_8, calo linear in log E), fitted by binomial maximum
  likelihood to the counts of every training point (all samples sharing one condition vector;
  a point may hold a single sample, as each calo shower has its own energy) and of ``per_point``
  generated samples there. A small ridge keeps fits finite where a tail count is zero everywhere;
* at a condition, both curves are made increasing in t (running maximum), a value's logit is
  read off the generated curve by linear interpolation and mapped back through the reference
  curve (continued linearly past its ends when the generator's tail is the longer one). Beyond
  the generated grid the map continues as a shift by its value at the grid's end. Guards keep a
  polynomial extrapolated to where a tail has no counts from flinging values: logits are clipped
  at +-(ln n + 3) for n fitted values, and no result lies beyond the training values' grid by
  more than a tenth of its span.

``emulator calibrate`` builds it for a model directory, and ``Sampler`` applies it
(``calibrate_samples``) when the directory holds ``calibration.safetensors``. A domain of periodic
fields may add a conditional filter of the Fourier bands applied before the map and stored in the
same file (``emulator.spectral_calibration``; cosmo: ``calibration_fit["spectral_iterations"]``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from emulator.checkpoint import atomic_save_tensors
from emulator.spectral_calibration import SpectralCalibration

__all__ = [
    "CALIBRATION_FILE",
    "MarginalCalibration",
    "calibrate_samples",
    "calibration_fit",
    "calibration_space",
    "calibration_values",
    "condition_points",
    "condition_terms",
    "fit_marginal_calibration",
]

CALIBRATION_FILE = "calibration.safetensors"
DEFAULT_OFFSET = 10.0**-2.6  # values below ~0.0025 are one value (a domain may set its own: calibration_space)
DEFAULT_STEP = 0.05  # threshold spacing in log10: 20 per decade
# polynomial degree, generated samples per training point (cosmo); spectral stage: off (emulator.spectral_calibration)
DEFAULT_FIT = {"degree": 4, "per_point": 24, "spectral_iterations": 0, "spectral_degree": 3, "spectral_per_point": 16}
_RIDGE = 1e-3  # on the logit coefficients: finite fits where a tail is empty at every training point
_MONOTONE_EPS = 1e-6  # added after the running maximum: the logit curves are strictly increasing, so invertible
_TAIL_SEGMENTS = 4  # a logit beyond the reference curve's ends continues its last 4 segments' slope ...
_MAX_TAIL_SLOPE = 1.0  # ... of at most one decade per unit of logit ...
_OUTPUT_MARGIN = 0.1  # ... and no result beyond the reference grid by more than this fraction of its span
_LOGIT_HEADROOM = 3.0  # logits are clipped at +-(ln of the values fitted + this): the fit knows nothing rarer


def _basis(u: torch.Tensor, degree: int) -> torch.Tensor:
    """Monomials of total degree <= ``degree`` of the scaled conditions u (B, d) -> (B, n_terms)."""
    terms = [torch.ones(len(u), dtype=u.dtype, device=u.device)]
    powers: list[tuple[int, ...]] = [()]
    for _ in range(degree):  # every multiset of variable indices, each once
        powers = [(*p, j) for p in powers for j in range(u.shape[1]) if not p or j >= p[-1]]
        terms += [torch.prod(u[:, list(p)], dim=1) for p in powers]
    return torch.stack(terms, dim=1)


def condition_terms(features: torch.Tensor | np.ndarray, degree: int) -> torch.Tensor:
    """Condition features (B, f) in [0, 1] (``domain.condition_features``) -> their monomials on [-1, 1], float64."""
    u = torch.as_tensor(features, dtype=torch.float64)
    return _basis(2.0 * u.reshape(len(u), -1) - 1.0, degree)


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
            slope = ((fp[:, inner] - fp[:, end]) / (xp[:, inner] - xp[:, end])).clamp(0.0, _MAX_TAIL_SLOPE)
            out = torch.where(beyond, fp[:, end, None] + (x - xp[:, end, None]) * slope[:, None], out)
    return out


@dataclass
class MarginalCalibration:
    """A fitted conditional quantile map (see the module docstring); ``apply`` it to generated values.

    Attributes:
        thresholds_generated, thresholds_reference: (T_g,), (T_r,) increasing grids t_j in y = log10(v + offset).
        coef_generated, coef_reference: (n_terms, T_g), (n_terms, T_r) polynomial coefficients of
            logit P(y < t_j | c) of the generated and of the training values.
        degree: total degree of the polynomials in the condition features.
        offset: the value offset of y.
        logit_limit: the curves are clipped to +-this (files written before it existed: no clipping).
        info: how it was fitted (data, points, samples per point), for the model card.
        spectral: an optional filter applied to whole samples before the map (``emulator.spectral_calibration``).
    """

    thresholds_generated: torch.Tensor
    thresholds_reference: torch.Tensor
    coef_generated: torch.Tensor
    coef_reference: torch.Tensor
    degree: int
    offset: float = DEFAULT_OFFSET
    logit_limit: float = math.inf
    info: dict[str, Any] = field(default_factory=dict)
    spectral: SpectralCalibration | None = None

    def logit_curves(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(generated, reference) increasing logit P(y < t_j | c) curves, (B, T_g) and (B, T_r), float64,
        at condition features (B, f) (``domain.condition_features``)."""
        x = condition_terms(features.detach().cpu(), self.degree)

        def increasing(coef: torch.Tensor) -> torch.Tensor:
            ramp = _MONOTONE_EPS * torch.arange(coef.shape[1], dtype=torch.float64)
            logit = (x @ coef.to(x)).clamp(-self.logit_limit, self.logit_limit)
            return torch.cummax(logit, dim=1).values + ramp

        return increasing(self.coef_generated), increasing(self.coef_reference)

    def apply(self, values: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Generated values (B, ...) at condition features (B, f) -> calibrated values, same shape and dtype.

        Values <= 0 stay as they are; every other value moves monotonically (possibly to 0), so
        its rank within the sample is kept.
        """
        if len(values) == 0:
            return values
        flat = values.reshape(len(values), -1)
        lg, lr = (curve.to(flat.device) for curve in self.logit_curves(features))
        t, t_r = (grid.to(device=flat.device, dtype=torch.float64) for grid in (self.thresholds_generated, self.thresholds_reference))
        t_gen, t_ref = (grid.expand(len(flat), -1).contiguous() for grid in (t, t_r))
        y = torch.log10(flat.double().clamp_min(0.0) + self.offset)

        def quantile_map(v: torch.Tensor) -> torch.Tensor:
            return _interp(_interp(v, t_gen, lg), lr, t_ref, tail=_TAIL_SEGMENTS)

        mapped = quantile_map(y)
        # beyond the generated grid: a shift by the map's value at the grid's end (continuous, monotone)
        shift_lo, shift_hi = quantile_map(t_gen[:, :1]) - t[0], quantile_map(t_gen[:, -1:]) - t[-1]
        mapped = torch.where(y < t[0], y + shift_lo, torch.where(y > t[-1], y + shift_hi, mapped))
        margin = _OUTPUT_MARGIN * float(t_r[-1] - t_r[0])
        mapped = mapped.clamp(float(t_r[0]) - margin, float(t_r[-1]) + margin)
        out = (10.0**mapped - self.offset).clamp_min(0.0)
        out = torch.where(flat > 0, out, flat.double())
        return out.to(values.dtype).reshape(values.shape)

    # -- storage ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (safetensors, the settings in its metadata) atomically."""
        path = Path(path)
        tensors = {
            "thresholds_generated": self.thresholds_generated, "thresholds_reference": self.thresholds_reference,
            "coef_generated": self.coef_generated, "coef_reference": self.coef_reference,
        }  # fmt: skip
        meta = {
            "degree": str(self.degree), "offset": repr(self.offset), "logit_limit": repr(self.logit_limit),
            "info": json.dumps(self.info),
        }  # fmt: skip
        tensors = {k: v.double().clone() for k, v in tensors.items()}
        if self.spectral is not None:
            extra, extra_meta = self.spectral.to_tensors()
            tensors, meta = tensors | extra, meta | extra_meta
        atomic_save_tensors(tensors, path, meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MarginalCalibration:
        """Read a calibration written by ``save`` (no pickle: safetensors and JSON only)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        t = load_file(str(path))
        if "thresholds" in t:  # written before the two curves had grids of their own (cosmo-slice64 1.3.0)
            t["thresholds_generated"] = t["thresholds_reference"] = t["thresholds"]
        try:
            return cls(
                thresholds_generated=t["thresholds_generated"], thresholds_reference=t["thresholds_reference"],
                coef_generated=t["coef_generated"], coef_reference=t["coef_reference"],
                degree=int(meta["degree"]), offset=float(meta["offset"]),
                logit_limit=float(meta.get("logit_limit", "inf")), info=json.loads(meta.get("info", "{}")),
                spectral=SpectralCalibration.from_tensors(t, meta),
            )  # fmt: skip
        except KeyError as exc:
            raise ValueError(f"{path}: not a calibration file (missing {exc})") from None


# -- the domain's side ----------------------------------------------------------------------------


def calibration_values(domain: Any, samples: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """The values of physical ``samples`` (B, ...) the calibration maps: the domain's
    ``calibration_values`` when it has one, else every value of each sample, (B, M)."""
    hook = getattr(domain, "calibration_values", None)
    if (hook is None) != (getattr(domain, "with_calibration_values", None) is None):
        raise TypeError(
            f"domain {getattr(domain, 'name', domain)!r} defines only one of calibration_values and "
            "with_calibration_values; a calibration needs both (which values it maps, and how they go back) or neither"
        )
    return hook(samples, conditions) if hook is not None else samples.reshape(len(samples), -1)


def calibration_space(domain: Any) -> tuple[float, float]:
    """(offset, step) of the domain's calibration: y = log10(v + offset), thresholds ``step`` apart."""
    return tuple(getattr(domain, "calibration_space", (DEFAULT_OFFSET, DEFAULT_STEP)))  # type: ignore[return-value]


def calibration_fit(domain: Any) -> dict[str, int]:
    """``emulator calibrate``'s defaults for the domain: {"degree": polynomial degree in the condition
    features, "per_point": generated samples per training point, "spectral_iterations": updates of the
    spectral filter (0: none), "spectral_degree", "spectral_per_point": its polynomial degree and
    generated fields per point} (a domain's ``calibration_fit``)."""
    return {**DEFAULT_FIT, **getattr(domain, "calibration_fit", {})}


def calibrate_samples(
    domain: Any, calibration: MarginalCalibration, samples: torch.Tensor, conditions: torch.Tensor,
    features: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """Physical generated ``samples`` at ``conditions`` (their ``features``) -> calibrated samples
    (the spectral filter first when the calibration has one, then the quantile map)."""
    if calibration.spectral is not None:
        samples = calibration.spectral.apply(samples, features)
    values = calibration_values(domain, samples, conditions)
    mapped = calibration.apply(values, features)
    put_back = getattr(domain, "with_calibration_values", None)
    return put_back(samples, conditions, values, mapped) if put_back is not None else mapped.reshape(samples.shape)


# -- fitting ------------------------------------------------------------------------------------


def condition_points(conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique condition vectors (P, k), index (N,) of each row's point) of training conditions (N, k)."""
    points, index = np.unique(np.asarray(conditions, dtype=np.float64), axis=0, return_inverse=True)
    return points, index.reshape(-1)


def _counts_below(
    values: np.ndarray, point: np.ndarray, n_points: int, thresholds: np.ndarray, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per point, (counts (P, T) float32 of its values with y < t_j, number of its values (P,)); values
    (N, M) of the samples whose points are ``point`` (N,); v <= 0 counts as 0. Works through the rows in
    chunks of about 2^24 values."""
    values = np.asarray(values).reshape(len(values), -1)
    width = len(thresholds) + 1
    hist = np.zeros(n_points * width, dtype=np.int64)
    rows = max(1, 2**24 // max(1, values.shape[1]))
    for i in range(0, len(values), rows):
        y = np.log10(np.maximum(values[i : i + rows].astype(np.float64), 0.0) + offset)
        first = np.searchsorted(thresholds, y, side="right")  # y < t_j for every j >= this
        hist += np.bincount((np.asarray(point[i : i + rows])[:, None] * width + first).ravel(), minlength=len(hist))
    hist = hist.reshape(n_points, width)
    return np.cumsum(hist, axis=1)[:, :-1].astype(np.float32), hist.sum(axis=1).astype(np.float64)


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
    values: np.ndarray,
    features: Callable[[np.ndarray], np.ndarray],
    *,
    degree: int = 4,
    per_point: int = 24,
    seed: int = 0,
    offset: float = DEFAULT_OFFSET,
    step: float = DEFAULT_STEP,
    min_tail: int = 5,
    max_thresholds: int = 200,
    block: int = 4096,
    progress: Callable | None = None,
) -> MarginalCalibration:
    """Fit the calibration of a generator on training data.

    Args:
        generate: ``generate(conditions (m, k), seed) -> values (m, M)`` of the uncalibrated generator
            (the values ``calibration_values`` picks).
        conditions, values: the training data's, (N, k) and (N, M); rows sharing a condition vector
            form one point (a point may hold one sample).
        features: ``features(conditions (P, k)) -> (P, f)`` in [0, 1] (``domain.condition_features``).
        degree: total degree of the polynomials in the features.
        per_point: generated samples per training point.
        seed: the generated samples are drawn in blocks of about ``block`` samples; block b uses ``seed + b``.
        offset, step: the value space y = log10(v + offset) and the threshold spacing in it.
        min_tail: thresholds need at least this many values below and above them (in the training
            data for the reference curve, in the generated samples for the generated one), pooled
            over all points.
        max_thresholds: at most this many thresholds: where the step grid has more (a response spread
            over decades, as pi+'s), the grid points nearest to evenly spaced quantiles of all values (half of
            them) and to evenly spaced values (the other half).
        block: samples per generation call (bounds memory).
        progress: optional wrapper of the block iterator, e.g. ``tqdm``.
    """
    if degree < 0 or per_point < 1 or step <= 0 or offset <= 0:
        raise ValueError(
            f"need degree >= 0, per_point >= 1, step > 0 and offset > 0; got {degree}, {per_point}, {step}, {offset}"
        )
    values = np.asarray(values).reshape(len(values), -1)
    points, index = condition_points(conditions)
    terms = condition_terms(np.asarray(features(points), dtype=np.float64), degree).numpy()
    if len(points) < 2 * terms.shape[1]:
        raise ValueError(
            f"{len(points)} distinct condition points cannot fix {terms.shape[1]} polynomial terms per threshold "
            f"(degree {degree}); lower the degree or use training data with more points"
        )
    per_block = max(1, block // per_point)
    starts = range(0, len(points), per_block)
    generated = []
    for b, start in enumerate(starts if progress is None else progress(starts)):
        batch = np.repeat(points[start : start + per_block], per_point, axis=0)  # each point's samples together
        generated.append(np.asarray(generate(batch, seed + b), np.float32).reshape(len(batch), -1))
    generated = np.concatenate(generated)
    extremes = [float(f(v)) for v in (values, generated) for f in (np.min, np.max)]
    lowest = np.floor(np.log10(max(min(extremes), 0.0) + offset) / step) * step
    grid = np.arange(lowest, np.log10(max(extremes) + offset) + step, step)
    if len(grid) > max_thresholds:  # keep the grid points nearest to evenly spaced quantiles and values
        rng = np.random.default_rng(seed)
        pooled = np.concatenate([rng.choice(v.ravel(), min(v.size, 10**6)) for v in (values, generated)])
        # of the positive ones: empty values are one value (the lowest grid point, always kept); counted, a
        # majority of them (most calorimeter cells) would pull every quantile onto that one point
        pooled = pooled[pooled > 0] if (pooled > 0).any() else pooled
        quantiles = np.quantile(np.log10(np.maximum(pooled, 0.0) + offset), np.linspace(0.0, 1.0, max_thresholds // 2))
        # half at quantiles of the values pooled over all conditions, half evenly over their span: pooled quantiles
        # crowd where most conditions put their values and leave a tail that one condition lives in (the low
        # responses of low-energy showers) with a few thresholds
        targets = np.concatenate([quantiles, np.linspace(grid[0], grid[-1], max_thresholds - max_thresholds // 2)])
        keep = np.abs(grid[:, None] - targets[None, :]).argmin(axis=0)
        grid = grid[np.unique(np.concatenate([[0], keep]))]
    k_ref, n_ref = _counts_below(values, index, len(points), grid, offset)
    k_gen, n_gen = _counts_below(generated, np.repeat(np.arange(len(points)), per_point), len(points), grid, offset)
    cols, coef = {}, {}
    for name, k, n in (("gen", k_gen, n_gen), ("ref", k_ref, n_ref)):
        cols[name] = np.flatnonzero((k.sum(0) >= min_tail) & ((n[:, None] - k).sum(0) >= min_tail))
        if len(cols[name]) < 2:
            which = "generated" if name == "gen" else "training"
            raise ValueError(f"fewer than two thresholds have {which} values on both sides; are they constant?")
        coef[name] = torch.from_numpy(
            np.stack([_fit_logit(terms, k[:, j].astype(np.float64), n) for j in cols[name]], axis=1)
        )
    info = {
        "method": "conditional quantile mapping (emulator.calibration)",
        "points": len(points), "training_samples": len(values), "generated_per_point": per_point,
        "seed": seed, "degree": degree, "thresholds": len(cols["ref"]), "step": step, "offset": offset,
        "value_range": [float(10 ** grid[cols["ref"][0]] - offset), float(10 ** grid[cols["ref"][-1]] - offset)],
    }  # fmt: skip
    return MarginalCalibration(
        torch.from_numpy(grid[cols["gen"]]), torch.from_numpy(grid[cols["ref"]]), coef["gen"], coef["ref"], degree, offset,
        math.log(min(values.size, generated.size)) + _LOGIT_HEADROOM, info,
    )
