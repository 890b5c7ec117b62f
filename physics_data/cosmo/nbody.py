"""Particle-mesh N-body simulation in torch: 2LPT initial conditions and FastPM kick-drift-kick.

Scheme (reference ``cosmology.md`` §3, Feng et al. 2016): N³ particles start on a lattice with
2LPT displacements at ``a_start`` (Crocce et al. 2006 conventions) and are advanced with
kick-drift-kick steps linear in a to a = 1/(1+z), using the FastPM factors in the equivalent form

    kick:  Δp = F [G_f(a_f) - G_f(a_i)] / D(a_c),   drift:  Δx = p [D(a_f) - D(a_i)] / G_f(a_c),

where F = -∇φ, ∇²φ = δ (no other constants) and p = a³E dx/da. In linear theory this gives
x = q + DΨ and p = G_f Ψ exactly for any step size, so ten steps keep large-scale growth right.

Forces come from a mesh ``mesh_factor`` (B = 2) times finer than the particle grid: CIC painting,
φ_k = -δ_k/k², the 4-point finite-difference gradient i(8 sin kH - sin 2kH)/(6H) (which vanishes
at the mesh Nyquist frequency and so suppresses lattice aliasing), and CIC readout. The force is
deliberately *not* deconvolved by the CIC window (it blows up for particles on mesh nodes at B = 2).

Particles are stored as float32 displacements from their Lagrangian lattice site, so periodic
wrapping only happens in grid index arithmetic (integers), never by float ``remainder``.
The white noise is drawn on the CPU from ``seed``, so a seed gives the same initial field on any
device; a run is bit-reproducible on the same device (CPU painting uses a serial bincount, CUDA
painting torch's deterministic sort-based accumulate).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from physics_data.cosmo.cosmology import Backend, Cosmology, fastpm_factors, hubble, linear_power_function
from physics_data.cosmo.cosmology import growth_rate as _growth_rate
from physics_data.cosmo.cosmology import second_order_growth as _second_order_growth
from physics_data.cosmo.cosmology import second_order_growth_rate as _second_order_growth_rate

__all__ = [
    "SIMULATOR_VERSION",
    "PMConfig",
    "PMResult",
    "cic_paint",
    "cic_readout",
    "initial_conditions",
    "linear_modes",
    "resolve_device",
    "run_pm",
]

SIMULATOR_VERSION = "cosmo-pm-1.0"
"""Bumped whenever a change alters the fields produced for a given seed."""


@dataclass(frozen=True)
class PMConfig:
    """Numerical settings of a particle-mesh run (physical parameters live in :class:`Cosmology`)."""

    n_particles: int = 64  # particles per side (64³ default, 128³ for higher resolution)
    box_size: float = 256.0  # comoving side length L in Mpc/h
    mesh_factor: int = 2  # force mesh per side = mesh_factor * n_particles; B = 1 loses ~15% power
    n_steps: int = 10  # kick-drift-kick steps, linear in a
    a_start: float = 0.1  # scale factor of the 2LPT initial conditions
    paired_fixed: bool = False  # fix |W_k| = sqrt(N³) (Angulo & Pontzen 2016): no amplitude scatter
    invert_phase: bool = False  # use -δ: the partner of a paired run
    power_backend: Backend = "auto"  # linear P(k): "camb" if importable, else Eisenstein & Hu

    def __post_init__(self) -> None:
        if self.n_particles < 4 or self.n_particles % 2:
            raise ValueError(f"n_particles must be an even number >= 4, got {self.n_particles}")
        if not self.box_size > 0:
            raise ValueError(f"box_size must be > 0 Mpc/h, got {self.box_size}")
        if self.mesh_factor < 1:
            raise ValueError(f"mesh_factor must be >= 1, got {self.mesh_factor}")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {self.n_steps}")
        if not 0.0 < self.a_start < 1.0:
            raise ValueError(f"a_start must be in (0, 1), got {self.a_start}")

    @property
    def n_mesh(self) -> int:
        """Force-mesh cells per side."""
        return self.mesh_factor * self.n_particles

    @property
    def k_nyquist(self) -> float:
        """Particle-grid Nyquist wavenumber π N / L in h/Mpc."""
        return float(np.pi * self.n_particles / self.box_size)

    def to_attrs(self) -> dict[str, float | int | str | bool]:
        """Settings as flat HDF5 attributes (``pm_<name>``)."""
        return {f"pm_{key}": value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class PMResult:
    """Particles at the end of a run."""

    positions: torch.Tensor  # (N³, 3) float32 comoving positions in [0, L) Mpc/h
    momenta: torch.Tensor  # (N³, 3) float32 p = a³ E dx/da in Mpc/h (H0 = 1)
    a: float  # final scale factor
    cosmology: Cosmology
    config: PMConfig
    seed: int


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return resolved


# --------------------------------------------------------------------------- mesh operations


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Use torch's deterministic (sort-based) accumulate on CUDA, where atomics reorder float sums."""
    if device.type != "cuda":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def _cic_stencil(grid_coords: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat cell indices (8N,) and weights (8N,) of the CIC stencil; coordinates (N, 3) in cell units.

    Coordinates may lie anywhere (negative or >= n): wrapping is done on the integer indices.
    """
    floor = torch.floor(grid_coords)
    frac = (grid_coords - floor).T  # (3, N), contiguous rows
    i0 = torch.remainder(floor.to(torch.int64), n).T
    corners = torch.stack([i0, torch.remainder(i0 + 1, n)])  # (2, 3, N): lower/upper cell per axis
    weights = torch.stack([1.0 - frac, frac])  # (2, 3, N)
    strides = (n * n, n, 1)
    idx = sum(
        (corners[:, axis] * strides[axis]).view(*([1] * axis), 2, *([1] * (2 - axis)), -1)
        for axis in range(3)
    )
    wts = weights[:, 0].view(2, 1, 1, -1) * weights[:, 1].view(1, 2, 1, -1) * weights[:, 2].view(1, 1, 2, -1)
    return idx.reshape(-1), wts.reshape(-1)


def _paint_stencil(idx: torch.Tensor, wts: torch.Tensor, n: int, n_particles: int) -> torch.Tensor:
    if wts.device.type == "cpu":
        # bincount sums serially in index order: bit-reproducible whatever the thread count
        mesh = torch.bincount(idx, weights=wts, minlength=n**3).to(wts.dtype)
    else:
        mesh = torch.zeros(n**3, dtype=wts.dtype, device=wts.device)
        with _deterministic(wts.device):
            mesh.index_put_((idx,), wts, accumulate=True)
    return (mesh * (n**3 / n_particles)).view(n, n, n)


def _readout_stencil(mesh: torch.Tensor, idx: torch.Tensor, wts: torch.Tensor) -> torch.Tensor:
    return (mesh.reshape(-1)[idx] * wts).view(8, -1).sum(dim=0)


def _paint(grid_coords: torch.Tensor, n: int) -> torch.Tensor:
    """CIC density on an n³ mesh in units of the mean (1 + δ), from coordinates in cell units."""
    idx, wts = _cic_stencil(grid_coords, n)
    return _paint_stencil(idx, wts, n, grid_coords.shape[0])


def _readout(mesh: torch.Tensor, grid_coords: torch.Tensor) -> torch.Tensor:
    idx, wts = _cic_stencil(grid_coords, mesh.shape[0])
    return _readout_stencil(mesh, idx, wts)


def cic_paint(positions: torch.Tensor, n_mesh: int, box_size: float) -> torch.Tensor:
    """Cloud-in-cell density 1 + δ on an ``n_mesh``³ periodic mesh from positions (N, 3) in Mpc/h.

    Cell (i, j, l) covers [i, i+1) H along each axis, H = L / n_mesh; positions outside [0, L)
    are wrapped periodically.
    """
    return _paint(positions * (n_mesh / box_size), n_mesh)


def cic_readout(mesh: torch.Tensor, positions: torch.Tensor, box_size: float) -> torch.Tensor:
    """Values of a periodic mesh (n, n, n) interpolated at positions (N, 3) in Mpc/h with CIC weights."""
    return _readout(mesh, positions * (mesh.shape[0] / box_size))


def _frequencies(
    n: int, box_size: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """Wavenumbers (h/Mpc) of an rfftn layout, broadcastable: kx (n,1,1), ky (1,n,1), kz (1,1,n/2+1)."""
    k = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=dtype) * (2 * np.pi / box_size)
    kz = torch.fft.rfftfreq(n, d=1.0 / n, device=device, dtype=dtype) * (2 * np.pi / box_size)
    return k.view(n, 1, 1), k.view(1, n, 1), kz.view(1, 1, -1)


def _force_kernels(n: int, box_size: float, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """Per-axis Fourier kernels F_k,i = K_i δ_k with K_i = i d_i(k_i) / k², (n, n, n/2+1) complex.

    d_i is the 4-point finite difference (8 sin kH - sin 2kH)/(6H), which vanishes at the mesh
    Nyquist frequency and so kills the aliased lattice modes; K = 0 at k = 0 (no mean force).
    """
    kx, ky, kz = _frequencies(n, box_size, device, dtype)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    inv_k2 = 1.0 / k2
    inv_k2[0, 0, 0] = 0.0
    cell = box_size / n
    kernels = []
    for k in (kx, ky, kz):
        d = (8.0 * torch.sin(k * cell) - torch.sin(2.0 * k * cell)) / (6.0 * cell)
        kernels.append(torch.complex(torch.zeros_like(inv_k2), d * inv_k2))
    return kernels


def _forces(grid_coords: torch.Tensor, n: int, kernels: list[torch.Tensor]) -> torch.Tensor:
    """F = -∇φ with ∇²φ = δ at the particles (N, 3), from coordinates in mesh-cell units."""
    idx, wts = _cic_stencil(grid_coords, n)
    delta_k = torch.fft.rfftn(_paint_stencil(idx, wts, n, grid_coords.shape[0]) - 1.0)
    force = torch.empty((n, n, n, 3), dtype=grid_coords.dtype, device=grid_coords.device)
    for axis, kernel in enumerate(kernels):
        force[..., axis] = torch.fft.irfftn(kernel * delta_k, s=(n, n, n))
    # one gather of (x, y, z) triples: better memory locality than three scalar gathers
    return (force.view(-1, 3)[idx] * wts[:, None]).view(8, -1, 3).sum(dim=0)


# --------------------------------------------------------------------------- initial conditions


def linear_modes(cosmo: Cosmology, config: PMConfig, seed: int, device: torch.device) -> torch.Tensor:
    """Linear density modes δ_k at z = 0 on the particle grid (rfftn layout, numpy DFT convention).

    δ_k = W_k sqrt(P(k) N³ / V), W_k the DFT of unit white noise drawn on the CPU from ``seed``;
    the Nyquist planes and k = 0 are zeroed. Float64.
    """
    n, box = config.n_particles, config.box_size
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn((n, n, n), generator=generator, dtype=torch.float64)
    w_k = torch.fft.rfftn(noise.to(device))
    if config.paired_fixed:
        w_k = w_k / w_k.abs().clamp_min(1e-300) * np.sqrt(n**3)
    if config.invert_phase:
        w_k = -w_k
    kx, ky, kz = _frequencies(n, box, device, torch.float64)
    kmag = torch.sqrt(kx**2 + ky**2 + kz**2).cpu().numpy()
    power = torch.from_numpy(linear_power_function(cosmo, config.power_backend)(kmag)).to(device)
    delta_k = w_k * torch.sqrt(power * n**3 / box**3)
    delta_k[0, 0, 0] = 0.0
    delta_k[n // 2, :, :] = 0.0
    delta_k[:, n // 2, :] = 0.0
    delta_k[:, :, n // 2] = 0.0
    return delta_k


def _lpt_fields(delta_k: torch.Tensor, n: int, box_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order Ψ1 = -∇φ1 and second-order ∇φ2 on the lattice, each (N³, 3), for unit growth."""
    kx, ky, kz = _frequencies(n, box_size, delta_k.device, torch.float64)
    ks = (kx, ky, kz)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    inv_k2 = 1.0 / k2
    inv_k2[0, 0, 0] = 0.0
    shape = (n, n, n)
    psi1 = torch.stack([torch.fft.irfftn(1j * k * delta_k * inv_k2, s=shape) for k in ks], dim=-1)

    def hessian(i: int, j: int) -> torch.Tensor:  # φ1,ij with ∇²φ1 = δ
        return torch.fft.irfftn(ks[i] * ks[j] * delta_k * inv_k2, s=shape)

    diag = [hessian(i, i) for i in range(3)]
    source = diag[0] * diag[1] + diag[0] * diag[2] + diag[1] * diag[2]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        source -= hessian(i, j) ** 2
    del diag
    source_k = torch.fft.rfftn(source)
    # ∇²φ2 = source  ->  ∇φ2 = -i k source_k / k²
    grad_phi2 = torch.stack([torch.fft.irfftn(-1j * k * source_k * inv_k2, s=shape) for k in ks], dim=-1)
    return psi1.reshape(-1, 3), grad_phi2.reshape(-1, 3)


def initial_conditions(
    cosmo: Cosmology, config: PMConfig, seed: int, device: torch.device, amplitude: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """2LPT displacements from the lattice and momenta at ``config.a_start``, both (N³, 3) float32.

    x = q + D1 Ψ1 + D2 ∇φ2 and p = a²E (f1 D1 Ψ1 + f2 D2 ∇φ2). ``amplitude`` scales the linear
    density (δ -> amplitude δ), e.g. 1e-2 for a linear-growth test.
    """
    a0, om = config.a_start, cosmo.omega_m
    delta_k = linear_modes(cosmo, config, seed, device) * amplitude
    psi1, grad_phi2 = _lpt_fields(delta_k, config.n_particles, config.box_size)
    d1 = float(fastpm_factors(a0, om).G_p[0])
    d2 = float(_second_order_growth(a0, om))
    f1, f2 = float(_growth_rate(a0, om)), float(_second_order_growth_rate(a0, om))
    displacement = d1 * psi1 + d2 * grad_phi2
    momentum = a0**2 * float(hubble(a0, om)) * (f1 * d1 * psi1 + f2 * d2 * grad_phi2)
    return displacement.to(torch.float32), momentum.to(torch.float32)


# --------------------------------------------------------------------------- time stepping


def _lattice(n: int, device: torch.device) -> torch.Tensor:
    """Lagrangian lattice sites (N³, 3) in particle-grid units, same ordering as ``reshape(-1, 3)``."""
    r = torch.arange(n, device=device, dtype=torch.float32)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)


def run_pm(
    cosmo: Cosmology,
    config: PMConfig | None = None,
    redshift: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    amplitude: float = 1.0,
) -> PMResult:
    """Run 2LPT + FastPM from ``config.a_start`` to a = 1/(1 + ``redshift``); returns the particles.

    ``amplitude`` scales the initial linear density (1 for physical runs).
    """
    config = config or PMConfig()
    dev = resolve_device(device)
    a_end = 1.0 / (1.0 + redshift)
    if not config.a_start < a_end <= 1.0 + 1e-12:
        raise ValueError(
            f"redshift must be in [0, {1.0 / config.a_start - 1.0:g}) so that a_start={config.a_start} "
            f"< a_end <= 1; got redshift={redshift}"
        )
    n, n_mesh, box = config.n_particles, config.n_mesh, config.box_size
    to_mesh = n_mesh / box
    lattice = _lattice(n, dev) * config.mesh_factor  # mesh-cell units, exact integers
    disp, mom = initial_conditions(cosmo, config, seed, dev, amplitude)

    steps = np.linspace(config.a_start, a_end, config.n_steps + 1)
    halves = 0.5 * (steps[:-1] + steps[1:])
    factors = fastpm_factors(np.concatenate([steps, halves]), cosmo.omega_m)
    count = len(steps)
    grow, gf = factors.G_p, factors.G_f  # indices 0..n_steps: step edges; count + i: midpoints

    kernels = _force_kernels(n_mesh, box, dev, torch.float32)
    force = _forces(lattice + disp * to_mesh, n_mesh, kernels)
    for i in range(config.n_steps):
        ai, ah, af = i, count + i, i + 1  # indices into the factor arrays
        mom += force * float((gf[ah] - gf[ai]) / grow[ai])
        disp += mom * float((grow[af] - grow[ai]) / gf[ah])
        force = _forces(lattice + disp * to_mesh, n_mesh, kernels)
        mom += force * float((gf[af] - gf[ah]) / grow[af])

    positions = torch.remainder(lattice / to_mesh + disp, box)
    positions = torch.where(positions >= box, positions - box, positions)  # float rounding at L
    return PMResult(
        positions=positions, momenta=mom, a=float(a_end), cosmology=cosmo, config=config, seed=seed
    )
