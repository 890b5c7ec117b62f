"""``emulator simulate cosmo``: particle-mesh simulations over a Latin hypercube, written as 2D slices.

Registered by :mod:`pipelines.simulate` (``DOMAINS["cosmo"]``). The shared option helpers live
there and are imported when the parser is built, so the two modules can import each other.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from physics_data.cosmo.cosmology import BACKENDS
from physics_data.cosmo.io import FieldFileWriter
from physics_data.cosmo.simulate import (
    PARAM_NAMES,
    ParamRange,
    iter_simulations,
    parse_range,
    simulation_attrs,
)
from pipelines.cli_args import check_output, compression, positive_int, progress_bar, seed_int

__all__ = ["add_parser", "run_cosmo"]

COSMO_HELP = """\
Run particle-mesh N-body simulations (2LPT initial conditions at a = 0.1, FastPM kick-drift-kick,
force mesh twice the particle grid) of flat ΛCDM boxes and write projected density slices to HDF5.

parameters:
  --omega-m and --sigma8 take a value (fixed) or LOW:HIGH; ranges are sampled with a Latin
  hypercube over the --n-sims simulations. h = 0.7, Omega_b = 0.05, n_s = 0.96 are fixed.
  The linear P(k) is CAMB's when camb is installed (pip install .[cosmo]), else Eisenstein & Hu.

slices:
  The particles are CIC-painted onto a GRID³ mesh (1 + δ). Each axis is cut into slabs of
  --slice-thickness Mpc/h (default box/16, a whole number of cells) and each slab is averaged
  along its axis: 3 x box/thickness maps of GRID x GRID per simulation (all of them unless
  --slices-per-sim picks fewer, spread over axes and positions).

file (format cosmo-fields):
  fields (N, GRID, GRID) float32 projected density 1+δ; params (N, 4) float32 with columns
  omega_m, sigma8, box_size, redshift (names in params.attrs['names']); sim_index (N,);
  with --save-3d also density_3d (n_sims, GRID, GRID, GRID). Attributes record the cosmology,
  grid, box size, slice thickness, steps, seed and simulator version. Written atomically.

examples:
  emulator simulate cosmo --n-sims 200 --omega-m 0.1:0.5 --sigma8 0.6:1.0 --box-size 256 \\
      --redshift 0 --grid 64 --seed 1 --out cosmo_train.h5
  emulator simulate cosmo --n-sims 4 --omega-m 0.3 --sigma8 0.8 --grid 64 --save-3d --seed 2 --out ref.h5
"""


def _range(name: str):
    def parse(text: str) -> ParamRange:
        try:
            return parse_range(text, name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def _redshift(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 9:
        raise argparse.ArgumentTypeError(f"must be in [0, 9) (simulations start at z = 9), got {value:g}")
    return value


def add_parser(domains: argparse._SubParsersAction) -> None:
    """Register ``emulator simulate cosmo`` on the ``simulate`` domain sub-parsers."""
    parser = domains.add_parser(
        "cosmo",
        help="cosmic-web density slices (particle-mesh N-body)",
        description=COSMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--n-sims", type=positive_int, required=True, metavar="N", help="number of simulations"
    )
    parser.add_argument(
        "--omega-m", type=_range("--omega-m"), default=parse_range("0.1:0.5"), metavar="X|LOW:HIGH",
        help="matter density Omega_m (default 0.1:0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--sigma8", type=_range("--sigma8"), default=parse_range("0.6:1.0"), metavar="X|LOW:HIGH",
        help="amplitude sigma_8 (default 0.6:1.0)",
    )  # fmt: skip
    parser.add_argument(
        "--box-size", type=_positive_float, default=256.0, metavar="L", help="box side in Mpc/h (256)"
    )
    parser.add_argument("--redshift", type=_redshift, default=0.0, metavar="Z", help="output redshift (0)")
    parser.add_argument(
        "--grid", type=positive_int, default=64, metavar="G", help="map/3D mesh cells per side (64)"
    )
    parser.add_argument(
        "--seed", type=seed_int, required=True, metavar="S", help="random seed (non-negative integer)"
    )
    parser.add_argument(
        "--slices-per-sim",
        type=positive_int,
        default=None,
        metavar="K",
        help="maps kept per simulation (all)",
    )
    parser.add_argument(
        "--slice-thickness", type=_positive_float, default=None, metavar="MPC",
        help="slab thickness in Mpc/h, a whole number of cells (default box/16)",
    )  # fmt: skip
    parser.add_argument(
        "--particles",
        type=int,
        choices=(32, 64, 128),
        default=64,
        help="particles per side (64; 128 = 8x the cost)",
    )
    parser.add_argument("--steps", type=positive_int, default=10, help="kick-drift-kick steps (10)")
    parser.add_argument(
        "--linear-power",
        choices=BACKENDS,
        default="auto",
        help="linear P(k) source: auto (CAMB if installed, else Eisenstein & Hu), camb, eh",
    )
    parser.add_argument("--save-3d", action="store_true", help="also store density_3d (n_sims, G, G, G)")
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA if available), cpu, cuda:0"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, metavar="FILE.h5", help="output HDF5 file")
    out.add_argument(
        "--compression",
        type=compression,
        default="lzf",
        metavar="{lzf,gzip,none}",
        help="dataset compression (lzf)",
    )
    out.add_argument("--overwrite", action="store_true", help="replace FILE.h5 if it exists")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_cosmo)


def run_cosmo(args: argparse.Namespace) -> int:
    """Simulate ``args.n_sims`` boxes and write their slices to ``args.out``."""
    check_output(args.out, args.overwrite)
    options = dict(
        box_size=args.box_size, redshift=args.redshift, grid=args.grid, seed=args.seed,
        slices_per_sim=args.slices_per_sim, slice_thickness=args.slice_thickness,
        n_particles=args.particles, n_steps=args.steps, power_backend=args.linear_power,
    )  # fmt: skip
    attrs = simulation_attrs(args.omega_m, args.sigma8, n_sims=args.n_sims, **options)
    t0 = time.perf_counter()
    sims = iter_simulations(
        args.n_sims, args.omega_m, args.sigma8, device=args.device, save_3d=args.save_3d, **options
    )
    with (
        FieldFileWriter(
            args.out, PARAM_NAMES, (args.grid, args.grid), attrs,
            grid_3d=args.grid if args.save_3d else None, compression=args.compression,
        ) as writer,
        progress_bar(args.n_sims, "sims", args.quiet) as bar,
    ):  # fmt: skip
        for chunk in sims:
            writer.append(chunk.fields, chunk.params, chunk.sim_index, chunk.density_3d)
            bar.update(1)
    seconds = time.perf_counter() - t0
    print(
        f"wrote {writer.n} slices from {args.n_sims} simulations (omega_m {args.omega_m}, sigma8 "
        f"{args.sigma8}, seed {args.seed}) to {args.out} [{args.out.stat().st_size / 2**20:.1f} MiB, "
        f"{seconds:.1f} s, {writer.n / seconds:.1f} slices/s]"
    )
    return 0
