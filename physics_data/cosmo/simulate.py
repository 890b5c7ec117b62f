"""Reference 2D density slices from particle-mesh simulations over a Latin hypercube of (Ω_m, σ8).

For each simulation i, (Ω_m, σ8) come from a Latin hypercube over the requested ranges (a
single value fixes a parameter; the hypercube is drawn from ``seed`` for all ``n_sims`` at once),
the initial white noise from ``SeedSequence([seed, i])``. The particles at redshift z are painted
with CIC onto a G³ mesh (G = ``grid``), giving the 3D density 1 + δ. Slices: each of the three
axes is cut into slabs of ``slice_thickness`` Mpc/h (a whole number of cells, default ≈ L/16), and
each slab is averaged along its axis, giving a G×G map of the projected density 1 + δ (mean ≈ 1,
the CIC density averaged over the slab). Slabs of one simulation are correlated: the file's
``sim_index`` says which simulation each map comes from.

>>> chunk = next(iter_simulations(1, 0.3, 0.8, box_size=64.0, grid=16, seed=0, n_particles=16, n_steps=2,
...                               device="cpu", power_backend="eh"))
>>> chunk.fields.shape, chunk.params.shape   # 3 axes x 16 slabs of 4 Mpc/h
((48, 16, 16), (48, 4))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from physics_data.cosmo.cosmology import Backend, Cosmology
from physics_data.cosmo.cosmology import power_backend as resolve_backend
from physics_data.cosmo.io import FieldSet
from physics_data.cosmo.nbody import SIMULATOR_VERSION, PMConfig, cic_paint, resolve_device, run_pm

__all__ = [
    "PARAM_NAMES",
    "ParamRange",
    "SimulationChunk",
    "iter_simulations",
    "latin_hypercube",
    "parse_range",
    "project_slabs",
    "simulate_slices",
    "simulation_attrs",
    "slab_cells",
]

PARAM_NAMES: tuple[str, ...] = ("omega_m", "sigma8", "box_size", "redshift")
"""Columns of ``params`` in the files written by this module."""


@dataclass(frozen=True)
class ParamRange:
    """A parameter drawn uniformly (Latin hypercube) from [low, high]; fixed when low == high."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high < self.low:
            raise ValueError(f"invalid range {self.low}:{self.high}; need finite LOW <= HIGH")

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def __str__(self) -> str:
        return f"{self.low:g}" if self.fixed else f"{self.low:g}:{self.high:g}"


def parse_range(value: str | float | tuple[float, float] | ParamRange, name: str = "parameter") -> ParamRange:
    """``"0.3"`` / 0.3 -> fixed, ``"0.1:0.5"`` / (0.1, 0.5) -> range; ValueError names the bad value."""
    if isinstance(value, ParamRange):
        return value
    if isinstance(value, tuple):
        return ParamRange(float(value[0]), float(value[1]))
    if isinstance(value, int | float):
        return ParamRange(float(value), float(value))
    parts = str(value).split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a number or LOW:HIGH range") from None
    if len(numbers) == 1:
        return ParamRange(numbers[0], numbers[0])
    if len(numbers) != 2:
        raise ValueError(f"{name}: {value!r} is not a number or LOW:HIGH range")
    try:
        return ParamRange(*numbers)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def latin_hypercube(n: int, ranges: Sequence[ParamRange], rng: np.random.Generator) -> np.ndarray:
    """(n, d) samples: each column has exactly one point in each of n equal strata of its range."""
    out = np.empty((n, len(ranges)))
    for j, r in enumerate(ranges):
        u = (rng.permutation(n) + rng.random(n)) / n
        out[:, j] = r.low + (r.high - r.low) * u
    return out


def slab_cells(grid: int, box_size: float, slice_thickness: float | None) -> int:
    """Cells per slab for ``slice_thickness`` Mpc/h; must be a whole number of cells dividing G.

    The default is G/16 cells (L/16), or the nearest smaller divisor of G when 16 does not divide G.
    """
    if slice_thickness is None:
        cells = max(grid // 16, 1)
        while grid % cells:
            cells -= 1
        return cells
    cells = slice_thickness * grid / box_size
    rounded = round(cells)
    if rounded < 1 or abs(cells - rounded) > 1e-6 * max(cells, 1.0) or grid % rounded:
        cell = box_size / grid
        raise ValueError(
            f"slice_thickness {slice_thickness:g} Mpc/h must be a whole number of cells ({cell:g} Mpc/h each) "
            f"that divides the grid of {grid} cells, e.g. {cell * max(grid // 16, 1):g}"
        )
    return rounded


def project_slabs(density: torch.Tensor, cells: int) -> torch.Tensor:
    """Slab-averaged maps (3 G / cells, G, G) from a 3D density (G, G, G): slabs along x, then y, then z."""
    g = density.shape[0]
    n = g // cells
    along_x = density.reshape(n, cells, g, g).mean(dim=1)
    along_y = density.reshape(g, n, cells, g).mean(dim=2).permute(1, 0, 2)
    along_z = density.reshape(g, g, n, cells).mean(dim=3).permute(2, 0, 1)
    return torch.cat([along_x, along_y, along_z])


def _slice_choice(total: int, k: int | None) -> np.ndarray:
    """Indices of ``k`` slabs spread evenly over the 3 axes and positions (all when ``k`` is None)."""
    if k is None or k >= total:
        return np.arange(total)
    if k < 1:
        raise ValueError(f"slices_per_sim must be >= 1, got {k}")
    per_axis = total // 3
    # interleave axes so that any k picks from all three: x0, y0, z0, x1, ...
    order = np.arange(total).reshape(3, per_axis).T.reshape(-1)
    return np.sort(order[np.floor(np.arange(k) * total / k).astype(int)])


@dataclass(frozen=True)
class SimulationChunk:
    """The output of one simulation."""

    fields: np.ndarray  # (K, G, G) float32 projected 1 + δ
    params: np.ndarray  # (K, len(PARAM_NAMES)) float32
    sim_index: np.ndarray  # (K,) int64
    density_3d: np.ndarray | None  # (1, G, G, G) float32 when requested


def _sim_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def iter_simulations(
    n_sims: int,
    omega_m: str | float | tuple[float, float] | ParamRange,
    sigma8: str | float | tuple[float, float] | ParamRange,
    box_size: float = 256.0,
    redshift: float = 0.0,
    grid: int = 64,
    seed: int = 0,
    slices_per_sim: int | None = None,
    slice_thickness: float | None = None,
    n_particles: int = 64,
    n_steps: int = 10,
    device: str | torch.device = "auto",
    save_3d: bool = False,
    power_backend: Backend = "auto",
    start: int = 0,
) -> Iterator[SimulationChunk]:
    """Run simulations ``start`` .. ``n_sims - 1`` and yield their slices one simulation at a time."""
    if n_sims < 1:
        raise ValueError(f"n_sims must be >= 1, got {n_sims}")
    ranges = [parse_range(omega_m, "omega_m"), parse_range(sigma8, "sigma8")]
    cells = slab_cells(grid, box_size, slice_thickness)
    config = PMConfig(
        n_particles=n_particles, box_size=box_size, n_steps=n_steps, power_backend=power_backend
    )
    dev = resolve_device(device)
    points = latin_hypercube(n_sims, ranges, np.random.default_rng(seed))
    choice = _slice_choice(3 * (grid // cells), slices_per_sim)
    for i in range(start, n_sims):
        cosmo = Cosmology(omega_m=float(points[i, 0]), sigma8=float(points[i, 1]))
        result = run_pm(cosmo, config, redshift=redshift, seed=_sim_seed(seed, i), device=dev)
        density = cic_paint(result.positions, grid, box_size)
        maps = project_slabs(density, cells)[torch.as_tensor(choice, device=density.device)]
        k = len(choice)
        params = np.tile(
            np.array([cosmo.omega_m, cosmo.sigma8, box_size, redshift], dtype=np.float32), (k, 1)
        )
        yield SimulationChunk(
            fields=maps.cpu().numpy().astype(np.float32),
            params=params,
            sim_index=np.full(k, i, dtype=np.int64),
            density_3d=density.cpu().numpy()[None].astype(np.float32) if save_3d else None,
        )


def simulation_attrs(
    omega_m: str | float | ParamRange,
    sigma8: str | float | ParamRange,
    box_size: float,
    redshift: float,
    grid: int,
    seed: int,
    slices_per_sim: int | None,
    slice_thickness: float | None,
    n_particles: int,
    n_steps: int,
    n_sims: int,
    power_backend: Backend = "auto",
) -> dict[str, object]:
    """Provenance attributes for a field file written from :func:`iter_simulations` with these arguments."""
    cells = slab_cells(grid, box_size, slice_thickness)
    # the fixed parameters (h, Omega_b, n_s) as cosmology_* attributes; Omega_m and sigma8 vary per slice
    fixed = {
        key: value
        for key, value in Cosmology(omega_m=0.3, sigma8=0.8).to_attrs().items()
        if key not in ("cosmology_omega_m", "cosmology_sigma8")
    }
    total = 3 * (grid // cells)
    return fixed | {
        "generator": "physics_data.cosmo.simulate",
        "simulator_version": SIMULATOR_VERSION,
        "seed": seed,
        "n_sims": n_sims,
        "omega_m_range": str(parse_range(omega_m, "omega_m")),
        "sigma8_range": str(parse_range(sigma8, "sigma8")),
        "sampling": "latin hypercube over the ranges (fixed when a single value)",
        "box_size": box_size,
        "box_size_unit": "Mpc/h",
        "redshift": redshift,
        "grid": grid,
        "pixel_size": box_size / grid,
        "slice_thickness": cells * box_size / grid,
        "slice_thickness_unit": "Mpc/h",
        "slices_per_sim": len(_slice_choice(total, slices_per_sim)),
        "slicing": "each axis cut into slabs of slice_thickness; 3D CIC density 1+delta averaged over each slab",
        "n_particles": n_particles,
        "n_mesh": 2 * n_particles,
        "n_steps": n_steps,
        "a_start": PMConfig().a_start,
        "initial_conditions": "2LPT, Gaussian random amplitudes",
        "power_spectrum": _backend_name(power_backend),
        "fields_unit": "projected density 1+delta (dimensionless)",
    }


def _backend_name(backend: Backend) -> str:
    """Human-readable name of the linear P(k) source actually used."""
    names = {"camb": "CAMB (sigma8-normalised)", "eh": "Eisenstein & Hu 1998 (sigma8-normalised)"}
    return names[resolve_backend(backend)]


def simulate_slices(
    n_sims: int,
    omega_m: str | float | tuple[float, float] | ParamRange,
    sigma8: str | float | tuple[float, float] | ParamRange,
    box_size: float = 256.0,
    redshift: float = 0.0,
    grid: int = 64,
    seed: int = 0,
    slices_per_sim: int | None = None,
    slice_thickness: float | None = None,
    n_particles: int = 64,
    n_steps: int = 10,
    device: str | torch.device = "auto",
    save_3d: bool = False,
    power_backend: Backend = "auto",
    progress: bool = True,
) -> FieldSet:
    """Run ``n_sims`` simulations and return all their slices in memory (see :func:`iter_simulations`).

    For large runs prefer ``emulator simulate cosmo``, which streams to HDF5.
    """
    kwargs = dict(
        box_size=box_size, redshift=redshift, grid=grid, seed=seed, slices_per_sim=slices_per_sim,
        slice_thickness=slice_thickness, n_particles=n_particles, n_steps=n_steps, power_backend=power_backend,
    )  # fmt: skip
    chunks = list(
        tqdm(
            iter_simulations(n_sims, omega_m, sigma8, device=device, save_3d=save_3d, **kwargs),
            total=n_sims,
            unit=" sims",
            disable=not progress,
        )
    )
    return FieldSet(
        fields=np.concatenate([c.fields for c in chunks]),
        params=np.concatenate([c.params for c in chunks]),
        param_names=PARAM_NAMES,
        sim_index=np.concatenate([c.sim_index for c in chunks]),
        density_3d=np.concatenate([c.density_3d for c in chunks]) if save_3d else None,
        attrs=simulation_attrs(omega_m, sigma8, n_sims=n_sims, **kwargs),
    )
