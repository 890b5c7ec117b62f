"""The in-memory container for a batch of calorimeter showers, shared by simulator, files and models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from physics_data.calo.geometry import N_CELLS, N_LAYERS, from_flat

__all__ = ["Showers"]


@dataclass
class Showers:
    """N showers in CaloGAN units.

    Attributes:
        energy: incident kinetic energy, (N,) float32, GeV.
        cells: deposited energy per cell, (N, 504) float32, MeV, flat CaloGAN order.
        overflow: energy outside the +-240 mm window per layer, (N, 3) float32, MeV.
    """

    energy: np.ndarray
    cells: np.ndarray
    overflow: np.ndarray

    def __post_init__(self) -> None:
        n = self.energy.shape[0]
        if self.energy.ndim != 1:
            raise ValueError(f"energy must be (N,), got {self.energy.shape}")
        if self.cells.shape != (n, N_CELLS):
            raise ValueError(f"cells must be ({n}, {N_CELLS}), got {self.cells.shape}")
        if self.overflow.shape != (n, N_LAYERS):
            raise ValueError(f"overflow must be ({n}, {N_LAYERS}), got {self.overflow.shape}")

    def __len__(self) -> int:
        return int(self.energy.shape[0])

    def __getitem__(self, idx: slice | np.ndarray) -> Showers:
        return Showers(self.energy[idx], self.cells[idx], self.overflow[idx])

    @property
    def layers(self) -> list[np.ndarray]:
        """Per-layer views (N,3,96), (N,12,12), (N,12,6)."""
        return from_flat(self.cells)

    @classmethod
    def concatenate(cls, parts: list[Showers]) -> Showers:
        """Join several batches in order."""
        return cls(
            np.concatenate([p.energy for p in parts]),
            np.concatenate([p.cells for p in parts]),
            np.concatenate([p.overflow for p in parts]),
        )
