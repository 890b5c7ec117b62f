"""Known distortions of calorimeter showers, to calibrate the validator against.

Each function returns a new :class:`~physics_data.calo.showers.Showers`; the validator
must flag every one of them while passing two independent reference samples
(``tests/emulator/test_validation_calibration.py``):

* :func:`scale_energy`: every cell and overflow energy times ``factor`` (0.98: a 2 %
  energy-scale error);
* :func:`move_layer_energy`: a fraction (10 %) of each shower's layer-0 energy moved to
  layer 1, added in proportion to the layer-1 cell energies (layer-1 shape kept; showers
  with an empty layer 1 get it in the four central cells);
* :func:`narrow_laterally`: every layer image shrunk about the beam axis by ``scale``
  (0.9 = 10 % narrower) along both axes: each cell's interval [a, b] is mapped to
  [scale a, scale b] and its energy shared among the cells that interval overlaps, in
  proportion to the overlap, so energy is conserved exactly;
* :func:`shuffle_conditions`: the incident energies of a random ``fraction`` (5 %) of the
  showers permuted among themselves (cells untouched).
"""

from __future__ import annotations

import numpy as np

from physics_data.calo.geometry import LAYERS, from_flat, to_flat
from physics_data.calo.showers import Showers

__all__ = ["DISTORTIONS", "move_layer_energy", "narrow_laterally", "scale_energy", "shuffle_conditions"]


def scale_energy(showers: Showers, factor: float = 0.98) -> Showers:
    """All deposited energies (cells and overflow) times ``factor``."""
    return Showers(
        showers.energy.copy(), showers.cells * np.float32(factor), showers.overflow * np.float32(factor)
    )


def move_layer_energy(showers: Showers, fraction: float = 0.10) -> Showers:
    """Move ``fraction`` of layer-0 energy into layer 1 (shape of layer 1 kept)."""
    l0, l1, l2 = (np.array(x, dtype=np.float64) for x in from_flat(showers.cells))
    moved = fraction * l0.sum(axis=(1, 2))
    l0 *= 1.0 - fraction
    e1 = l1.sum(axis=(1, 2))
    empty = e1 <= 0
    weights = np.divide(l1, e1[:, None, None], out=np.zeros_like(l1), where=~empty[:, None, None])
    weights[empty, 5:7, 5:7] = 0.25
    l1 += moved[:, None, None] * weights
    cells = to_flat([l0, l1, l2]).astype(np.float32)
    return Showers(showers.energy.copy(), cells, showers.overflow.copy())


def _shrink_matrix(edges: np.ndarray, scale: float) -> np.ndarray:
    """R[i, j]: share of old cell j's energy landing in cell i after x -> scale x."""
    lo, hi = scale * edges[:-1], scale * edges[1:]
    overlap = np.clip(
        np.minimum(hi[None, :], edges[1:, None]) - np.maximum(lo[None, :], edges[:-1, None]), 0.0, None
    )
    return overlap / (hi - lo)[None, :]


def narrow_laterally(showers: Showers, scale: float = 0.9) -> Showers:
    """Every layer image shrunk by ``scale`` about the axis, energy conserving (see module doc)."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1] so the shower stays inside the window, got {scale}")
    out = []
    for layer, img in zip(LAYERS, from_flat(showers.cells), strict=True):
        r0 = _shrink_matrix(layer.edges_mm(0), scale)
        r1 = _shrink_matrix(layer.edges_mm(1), scale)
        out.append(np.einsum("ia,nab,jb->nij", r0, img.astype(np.float64), r1, optimize=True))
    return Showers(showers.energy.copy(), to_flat(out).astype(np.float32), showers.overflow.copy())


def shuffle_conditions(showers: Showers, fraction: float = 0.05, seed: int = 0) -> Showers:
    """Permute the incident energies of a random ``fraction`` of showers among themselves."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(showers), round(fraction * len(showers)), replace=False)
    energy = showers.energy.copy()
    energy[idx] = energy[rng.permutation(idx)]
    return Showers(energy, showers.cells.copy(), showers.overflow.copy())


DISTORTIONS = {
    "scale_0.98": scale_energy,
    "layer0_to_layer1_10pct": move_layer_energy,
    "narrower_10pct": narrow_laterally,
    "shuffled_conditions_5pct": shuffle_conditions,
}
"""The four calibration distortions with their default strengths."""
