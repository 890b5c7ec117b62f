"""Optimal-transport distances between generated and reference samples (POT).

Three distances, each with a statistical-noise estimate, because every distance between
two finite samples is positive even when both come from the same distribution:

* :func:`observable_w1`: per observable, the 1D Wasserstein-1 distance
  (``ot.wasserstein_1d``) divided by the reference's standard deviation, so a pure shift
  of a Gaussian by ``delta`` gives ``delta / sigma``. ``w1_err`` is the RMS of W1 over
  random re-splits of the pooled samples into groups of the same sizes (a permutation
  null): the value that statistics alone produce. ``w1_p_value`` is the permutation
  p-value. "Consistent with zero" means ``w1`` is within a few ``w1_err``.
* :func:`sliced_wasserstein`: ``ot.sliced_wasserstein_distance`` (p = 2, fixed random
  projections from ``seed``) on the full low-level vectors, each feature standardised by
  the reference's mean and standard deviation; same permutation-null error.
* :func:`exact_emd`: ``ot.emd2`` (exact earth mover's distance, Euclidean ground cost)
  between random subsamples (default 2000 vs 2000) of the standardised high-level
  features, averaged over a few draws (``emd_err`` = standard error of that mean), with
  the same quantity between two disjoint reference subsamples as the noise floor
  (``emd_ref_ref``).
"""

from __future__ import annotations

import numpy as np
import ot

from emulator.validation.features import Standardizer

__all__ = ["exact_emd", "observable_w1", "sliced_wasserstein"]


def _spread(reference: np.ndarray) -> np.ndarray:
    std = np.asarray(reference, dtype=np.float64).std(axis=0)
    return np.where(std > 0, std, 1.0)


def observable_w1(
    generated: np.ndarray, reference: np.ndarray, n_null: int = 20, seed: int = 0
) -> dict[str, np.ndarray]:
    """Normalised W1 of each column of (N_g, F) ``generated`` vs (N_r, F) ``reference``.

    Returns arrays of shape (F,): ``w1`` (W1 / std_ref), ``w1_err`` (RMS of the permutation
    null, same normalisation), ``w1_p_value`` and ``ref_std`` (the normaliser).

    >>> rng = np.random.default_rng(1)
    >>> out = observable_w1(rng.normal(0.5, 2.0, (40000, 1)), rng.normal(0.0, 2.0, (40000, 1)))
    >>> round(float(out["w1"][0]), 2)
    0.25
    """
    gen = np.asarray(generated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if gen.ndim == 1:
        gen, ref = gen[:, None], ref[:, None]
    scale = _spread(ref)
    w1 = np.atleast_1d(ot.wasserstein_1d(gen, ref)) / scale
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([gen, ref])
    n_g = gen.shape[0]
    null = np.empty((n_null, gen.shape[1]))
    for i in range(n_null):
        perm = rng.permutation(pooled.shape[0])
        null[i] = np.atleast_1d(ot.wasserstein_1d(pooled[perm[:n_g]], pooled[perm[n_g:]])) / scale
    err = np.sqrt(np.mean(null**2, axis=0))
    p_value = (1.0 + (null >= w1).sum(axis=0)) / (1.0 + n_null)
    return {"w1": w1, "w1_err": err, "w1_p_value": p_value, "ref_std": scale}


def sliced_wasserstein(
    generated: np.ndarray,
    reference: np.ndarray,
    n_projections: int = 128,
    n_null: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Sliced W2 between standardised full sample vectors, with its permutation-null RMS.

    Both inputs are (N, D); each feature is standardised by the reference. The same
    projections (from ``seed``) are used for the value and every null draw.
    """
    std = Standardizer.fit(reference)
    x = std(np.asarray(generated, dtype=np.float32))
    y = std(np.asarray(reference, dtype=np.float32))
    d = x.shape[1]
    proj = np.random.default_rng(seed).normal(size=(d, n_projections))
    proj /= np.linalg.norm(proj, axis=0, keepdims=True)
    proj = proj.astype(x.dtype)
    value = float(ot.sliced_wasserstein_distance(x, y, projections=proj))
    rng = np.random.default_rng(seed + 1)
    pooled = np.concatenate([x, y])
    null = []
    for _ in range(n_null):
        perm = rng.permutation(pooled.shape[0])
        null.append(
            float(
                ot.sliced_wasserstein_distance(
                    pooled[perm[: len(x)]], pooled[perm[len(x) :]], projections=proj
                )
            )
        )
    null_arr = np.asarray(null)
    return {
        "value": value,
        "err": float(np.sqrt(np.mean(null_arr**2))) if n_null else float("nan"),
        "n_projections": n_projections,
        "n_null": n_null,
    }


def _emd(x: np.ndarray, y: np.ndarray) -> float:
    m = ot.dist(x, y, metric="euclidean")
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    return float(ot.emd2(a, b, m, numItermax=50_000_000))


def exact_emd(
    generated: np.ndarray, reference: np.ndarray, n_sub: int = 2000, repeats: int = 3, seed: int = 0
) -> dict[str, float]:
    """Exact EMD between ``n_sub``-sized subsamples of the standardised (N, F) features.

    ``emd`` is the mean over ``repeats`` draws and ``emd_err`` its standard error;
    ``emd_ref_ref`` is the EMD between two disjoint reference subsamples of the same size
    (smaller if the reference has fewer than ``2 * n_sub`` samples), the noise floor.
    """
    std = Standardizer.fit(reference)
    x = std(np.asarray(generated, dtype=np.float64))
    y = std(np.asarray(reference, dtype=np.float64))
    rng = np.random.default_rng(seed)
    n = min(n_sub, len(x), len(y))
    values = [
        _emd(x[rng.choice(len(x), n, replace=False)], y[rng.choice(len(y), n, replace=False)])
        for _ in range(repeats)
    ]
    n_rr = min(n_sub, len(y) // 2)
    perm = rng.permutation(len(y))
    ref_ref = _emd(y[perm[:n_rr]], y[perm[n_rr : 2 * n_rr]])
    vals = np.asarray(values)
    return {
        "emd": float(vals.mean()),
        "emd_err": float(vals.std(ddof=1) / np.sqrt(repeats)) if repeats > 1 else float("nan"),
        "emd_ref_ref": ref_ref,
        "n_sub": n,
        "n_sub_ref_ref": n_rr,
        "repeats": repeats,
    }
