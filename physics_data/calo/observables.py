"""CaloGAN shower-shape observables, vectorised over N showers.

Definitions follow hep-lbdl/CaloGAN ``analysis/feats1d.py`` exactly (reference section 3),
with layer index d in {0, 1, 2} and eps = 1e-6:

* ``E_i``: energy of layer i; ``E_tot`` = E_0 + E_1 + E_2 (overflow excluded);
  ``f_i`` = E_i / E_tot.
* ``lateral_depth`` = sum_d d E_d, ``lateral_depth2`` = sum_d d^2 E_d;
  ``shower_depth`` = lateral_depth / E_tot;
  ``shower_depth_width`` = sqrt(lateral_depth2 / E_tot - shower_depth^2) (no eps).
* ``depth`` = 2 if E_2 != 0, else 1 if E_1 != 0, else 0.
* ``sigma_i``: energy-weighted standard deviation along axis 0 only, x at the centres of
  the cells on [-240, 240] mm, denominator E_i + eps.
* ``E_ratio_i`` = (E_max1 - E_max2) / (E_max1 + E_max2 + eps) of the two largest cells.
* ``sparsity_i``: fraction of cells with E > 0.
* ``response`` = E_tot / E_inc (same energy unit for both), the calorimeter response.

Cells are expected in MeV and the incident energy in GeV (CaloGAN units); ``response``
converts. Empty showers give f_i = shower_depth = 0 rather than NaN, which is what the
CaloGAN notebooks effectively histogram.
"""

from __future__ import annotations

import numpy as np

from physics_data.calo.geometry import LAYERS, N_CELLS, N_LAYERS, layer_slices

__all__ = ["FEATURE_NAMES", "compute_observables"]

EPS = 1e-6

FEATURE_NAMES: tuple[str, ...] = (
    "E_0", "E_1", "E_2", "E_tot", "f_0", "f_1", "f_2", "depth",
    "E_ratio_0", "E_ratio_1", "E_ratio_2", "lateral_depth",
    "sigma_0", "sigma_1", "sigma_2", "shower_depth",
    "sparsity_0", "sparsity_1", "sparsity_2", "shower_depth_width",
    "response",
)  # fmt: skip
"""The 20 CaloGAN features in the paper's Fig. 12 order, plus ``response`` = E_tot/E_inc."""


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def compute_observables(cells: np.ndarray, energy_gev: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Compute the CaloGAN shower-shape features of ``cells`` (N, 504) in MeV.

    Args:
        cells: flat cell energies, (N, 504), MeV, CaloGAN order (see ``geometry``).
        energy_gev: incident energies (N,) or (N, 1) in GeV; needed for ``response``.

    Returns:
        ``{name: (N,) float64 array}`` for every name in ``FEATURE_NAMES`` (``response``
        only when ``energy_gev`` is given).

    >>> x = np.zeros((1, 504)); x[0, 0] = 100.0; x[0, 300] = 300.0
    >>> obs = compute_observables(x, np.array([0.5]))
    >>> round(float(obs["f_1"][0]), 3), round(float(obs["response"][0]), 3)
    (0.75, 0.8)
    """
    cells = np.asarray(cells, dtype=np.float64)
    if cells.ndim != 2 or cells.shape[1] != N_CELLS:
        raise ValueError(f"cells must have shape (N, {N_CELLS}), got {cells.shape}")
    n = cells.shape[0]
    out: dict[str, np.ndarray] = {}
    layer_e = []
    for d, (sl, layer) in enumerate(zip(layer_slices(), LAYERS, strict=True)):
        img = cells[:, sl].reshape(n, *layer.shape)
        e = img.sum(axis=(1, 2))
        layer_e.append(e)
        out[f"E_{d}"] = e
        # lateral width along axis 0 only (feats1d.py), cell centres on [-240, 240] mm
        x = layer.centres_mm(0)
        profile = img.sum(axis=2)  # (N, n_axis0)
        mean_x = (profile @ x) / (e + EPS)
        mean_x2 = (profile @ (x * x)) / (e + EPS)
        out[f"sigma_{d}"] = np.sqrt(np.clip(mean_x2 - mean_x**2, 0.0, None))
        flat = img.reshape(n, -1)
        top2 = np.partition(flat, flat.shape[1] - 2, axis=1)[:, -2:]
        e_max1, e_max2 = top2[:, 1], top2[:, 0]
        out[f"E_ratio_{d}"] = (e_max1 - e_max2) / (e_max1 + e_max2 + EPS)
        out[f"sparsity_{d}"] = (flat > 0).mean(axis=1)
    e_tot = sum(layer_e)
    out["E_tot"] = e_tot
    for d in range(N_LAYERS):
        out[f"f_{d}"] = _safe_div(layer_e[d], e_tot)
    lateral_depth = layer_e[1] + 2.0 * layer_e[2]
    lateral_depth2 = layer_e[1] + 4.0 * layer_e[2]
    out["lateral_depth"] = lateral_depth
    shower_depth = _safe_div(lateral_depth, e_tot)
    out["shower_depth"] = shower_depth
    out["shower_depth_width"] = np.sqrt(np.clip(_safe_div(lateral_depth2, e_tot) - shower_depth**2, 0.0, None))
    out["depth"] = np.where(layer_e[2] != 0, 2.0, np.where(layer_e[1] != 0, 1.0, 0.0))
    if energy_gev is not None:
        e_inc = np.asarray(energy_gev, dtype=np.float64).reshape(-1)
        if e_inc.shape[0] != n:
            raise ValueError(f"energy_gev has {e_inc.shape[0]} entries for {n} showers")
        out["response"] = e_tot / (1000.0 * e_inc)
    return {name: out[name] for name in FEATURE_NAMES if name in out}
