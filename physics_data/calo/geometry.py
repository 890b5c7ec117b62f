"""The CaloGAN calorimeter geometry (arXiv:1705.02355, hep-lbdl/CaloGAN ``DetectorConstruction.cc``).

A sampling calorimeter of 80 cells of 2 mm Pb + 4 mm LAr (480 mm, z from -240 to +240 mm),
read out in three longitudinal layers with different granularity inside the transverse
window |x|, |y| < 240 mm. Energy outside the window goes to one overflow value per layer.

Every number here is from ``shared/reference/calorimeter.md`` section 1; radiation and
interaction lengths per layer are derived there from PDG values (Pb X0 = 5.612 mm,
LAr X0 = 140.6 mm; Pb lambda_int = 175.9 mm, LAr lambda_int ~ 861 mm).

Flat layout (the CaloGAN ``cell_0 ... cell_503`` order): layer 0 first, each layer
row-major over (axis 0, axis 1), so layer 0 -> x*96 + y, layer 1 -> 288 + x*12 + y,
layer 2 -> 432 + x*6 + y. The three overflow values are kept separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "HALF_WINDOW_MM",
    "LAYERS",
    "MATERIALS",
    "N_CELLS",
    "N_LAYERS",
    "READOUT_THRESHOLD_MEV",
    "STACK_X0",
    "Layer",
    "Material",
    "cell_index",
    "from_flat",
    "layer_slices",
    "to_flat",
]

HALF_WINDOW_MM = 240.0
"""Half-width of the transverse readout window (mm); outside it energy goes to overflow."""

READOUT_THRESHOLD_MEV = 0.015
"""Cell readout threshold (MeV): cells below it read zero. 15 keV, as in the CaloChallenge
datasets (15.15 keV); it also removes the numerically tiny deposits (down to 1e-45 MeV)
that a continuous energy-sharing model otherwise leaves in cells no particle reached."""


@dataclass(frozen=True)
class Material:
    """A material of the stack with its PDG constants (lengths in mm, density in g/cm^3)."""

    name: str
    Z: float
    A: float
    density: float
    X0_mm: float
    lambda_int_mm: float


MATERIALS = {
    "Pb": Material("G4_Pb", Z=82.0, A=207.2, density=11.35, X0_mm=5.612, lambda_int_mm=175.9),
    "LAr": Material("G4_lAr", Z=18.0, A=39.95, density=1.390, X0_mm=140.6, lambda_int_mm=861.0),
}
"""Absorber (2 mm Pb per cell) and active medium (4 mm LAr per cell)."""


@dataclass(frozen=True)
class Layer:
    """One readout layer: z extent, cell grid and derived depth in X0 and lambda_int."""

    index: int
    z_min_mm: float
    z_max_mm: float
    shape: tuple[int, int]
    cell_mm: tuple[float, float]
    depth_X0: float
    depth_lambda: float

    @property
    def n_cells(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def thickness_mm(self) -> float:
        return self.z_max_mm - self.z_min_mm

    def edges_mm(self, axis: int) -> np.ndarray:
        """Cell edges along ``axis`` (0 or 1), spanning the +-240 mm window."""
        return np.linspace(-HALF_WINDOW_MM, HALF_WINDOW_MM, self.shape[axis] + 1)

    def centres_mm(self, axis: int) -> np.ndarray:
        """Cell centres along ``axis``; these are the x values of the CaloGAN lateral widths."""
        e = self.edges_mm(axis)
        return 0.5 * (e[1:] + e[:-1])


LAYERS: tuple[Layer, ...] = (
    Layer(0, -240.0, -150.0, (3, 96), (160.0, 5.0), depth_X0=5.77, depth_lambda=0.24),
    Layer(1, -150.0, 197.0, (12, 12), (40.0, 40.0), depth_X0=22.31, depth_lambda=0.93),
    Layer(2, 197.0, 240.0, (12, 6), (40.0, 80.0), depth_X0=2.70, depth_lambda=0.11),
)
N_LAYERS = len(LAYERS)
N_CELLS = sum(layer.n_cells for layer in LAYERS)  # 504
STACK_X0 = sum(layer.depth_X0 for layer in LAYERS)  # 30.78
LAYER_OFFSETS = np.cumsum([0] + [layer.n_cells for layer in LAYERS])  # 0, 288, 432, 504


def layer_slices() -> list[slice]:
    """Slices of the flat 504-vector belonging to each layer."""
    return [slice(int(LAYER_OFFSETS[i]), int(LAYER_OFFSETS[i + 1])) for i in range(N_LAYERS)]


def cell_index(layer: int, i: np.ndarray | int, j: np.ndarray | int) -> np.ndarray | int:
    """Flat index of cell (i, j) (axis 0, axis 1) in ``layer``.

    >>> cell_index(1, 0, 0), cell_index(2, 11, 5)
    (288, 503)
    """
    return LAYER_OFFSETS[layer] + i * LAYERS[layer].shape[1] + j


def to_flat(layers: list[np.ndarray] | tuple[np.ndarray, ...]) -> np.ndarray:
    """Concatenate per-layer arrays (N, *shape_i) into the flat (N, 504) CaloGAN order."""
    n = layers[0].shape[0]
    for layer, arr in zip(LAYERS, layers, strict=True):
        if arr.shape[1:] != layer.shape:
            raise ValueError(f"layer_{layer.index} has shape {arr.shape[1:]}, expected {layer.shape}")
    return np.concatenate([np.asarray(a).reshape(n, -1) for a in layers], axis=1)


def from_flat(flat: np.ndarray) -> list[np.ndarray]:
    """Split (N, 504) into per-layer views of shapes (N,3,96), (N,12,12), (N,12,6)."""
    if flat.shape[-1] != N_CELLS:
        raise ValueError(f"expected {N_CELLS} cells in the last axis, got {flat.shape[-1]}")
    n = flat.shape[0]
    return [flat[:, s].reshape(n, *layer.shape) for s, layer in zip(layer_slices(), LAYERS, strict=True)]
