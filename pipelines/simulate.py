"""``emulator simulate DOMAIN``: run a reference simulator and write its samples to an HDF5 file.

Each domain is one small ``_add_<domain>(domains)`` function that registers a sub-subparser
and its ``func``; adding a domain means writing that function and listing it in ``DOMAINS``.

Samples are produced and written chunk by chunk, so memory stays bounded for any N. Chunk k
is always drawn from ``numpy.random.default_rng([seed, k])``; with ``--workers`` > 1 chunks are
simulated in parallel processes and written in order, so the file's data do not depend on the
number of workers (they do depend on ``--chunk-size``, which is recorded in the file).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from physics_data.calo.io import FORMATS, ShowerFileWriter
from physics_data.calo.simulate import PARTICLES, SIMULATOR_VERSION, EnergySpec, parse_energy, simulate_chunk
from pipelines.cli_args import check_output, compression, positive_int, progress_bar, seed_int
from pipelines.simulate_cosmo import add_parser as _add_cosmo

__all__ = ["DOMAINS", "add_parser", "ordered_map"]

T = TypeVar("T")

CALO_HELP = """\
Simulate calorimeter showers in the CaloGAN geometry with the parametrised (GFLASH-type)
reference simulator and write them to HDF5.

units:
  --energy is the incident kinetic energy in GeV: a number (fixed, e.g. 50) or LOW:HIGH
  (uniform, e.g. 1:100, the CaloGAN training distribution). Energies must be > 0; values
  outside 1-100 GeV are allowed but extrapolate beyond the range the emulators are trained on.

formats:
  calogan        energy (N,1) GeV; layer_0 (N,3,96), layer_1 (N,12,12), layer_2 (N,12,6) and
                 overflow (N,3) in MeV; float32 (hep-lbdl/CaloGAN layout).
  calochallenge  incident_energies (N,1) MeV; showers (N,504) MeV in the flat CaloGAN cell
                 order (layer 0, 1, 2, each row-major); overflow is not stored.
  Datasets are chunked and compressed (lzf by default; gzip for readers without lzf, such as
  ROOT or plain C/C++ HDF5). File attributes record particle, generator, version, seed,
  energy, chunk size, format, units and creation time. The file appears only when complete.

examples:
  emulator simulate calo --particle e+ --n 100000 --energy 1:100 --seed 1 --out eplus.h5
  emulator simulate calo --particle pi+ --n 1000000 --energy 50 --seed 7 --workers 16 \\
      --format calochallenge --compression gzip --out piplus_50GeV.h5
"""

TRAINED_RANGE_GEV = (1.0, 100.0)


# --------------------------------------------------------------------------- shared helpers


def _add_output_options(parser: argparse.ArgumentParser, formats: Iterable[str]) -> None:
    """Options every domain shares: output file, format, compression, chunking, workers."""
    formats = tuple(formats)
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, metavar="FILE.h5", help="output HDF5 file")
    out.add_argument(
        "--format", choices=formats, default=formats[0], help=f"file layout (default {formats[0]})"
    )
    out.add_argument(
        "--compression",
        type=compression,
        default="lzf",
        metavar="{lzf,gzip,none}",
        help="dataset compression (default lzf: fast; gzip: readable by every HDF5 tool)",
    )
    out.add_argument("--overwrite", action="store_true", help="replace FILE.h5 if it exists")
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--chunk-size",
        type=positive_int,
        default=10_000,
        metavar="K",
        help="samples per chunk; chunk k uses seed [SEED, k] (default 10000)",
    )
    run.add_argument(
        "--workers", type=positive_int, default=1, metavar="W", help="parallel processes (default 1)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")


def ordered_map(fn: Callable[..., T], tasks: Iterable[tuple[Any, ...]], workers: int) -> Iterator[T]:
    """``fn(*task)`` for each task, in order; with ``workers`` > 1 in a process pool.

    At most ``2 * workers`` results are pending at a time, so memory stays bounded even
    when the consumer (e.g. an HDF5 writer) is slower than the workers.
    """
    if workers == 1:
        for task in tasks:
            yield fn(*task)
        return
    # spawn, not fork: the parent holds an open HDF5 file and tqdm's monitor thread
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        pending: deque[Future[T]] = deque()
        for task in tasks:
            pending.append(pool.submit(fn, *task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- calo


def _add_calo(domains: argparse._SubParsersAction) -> None:
    parser = domains.add_parser(
        "calo",
        help="calorimeter showers (CaloGAN geometry)",
        description=CALO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--particle", required=True, choices=PARTICLES, help="incident particle")
    parser.add_argument("--n", type=positive_int, required=True, metavar="N", help="number of showers")
    parser.add_argument(
        "--energy",
        type=_energy,
        default="1:100",
        metavar="E|LOW:HIGH",
        help="incident energy in GeV: fixed (50) or uniform (1:100, the default)",
    )
    parser.add_argument(
        "--seed", type=seed_int, required=True, metavar="S", help="random seed (non-negative integer)"
    )
    _add_output_options(parser, FORMATS)
    parser.set_defaults(func=run_calo)


def _energy(text: str) -> EnergySpec:
    try:
        return parse_energy(text)
    except ValueError as exc:
        message = str(exc)
        raise argparse.ArgumentTypeError(
            message if repr(text) in message else f"{text!r}: {message}"
        ) from None


def run_calo(args: argparse.Namespace) -> int:
    """Simulate ``args.n`` calorimeter showers and write them to ``args.out``."""
    energy = args.energy
    low, high = TRAINED_RANGE_GEV
    if energy.low < low or energy.high > high:
        print(
            f"warning: --energy {energy} GeV extends outside {low:g}-{high:g} GeV, the range the "
            "reference data and emulators cover; the simulator extrapolates there",
            file=sys.stderr,
        )
    check_output(args.out, args.overwrite)
    attrs = {
        "particle": args.particle,
        "generator": "physics_data.calo.simulate",
        "version": SIMULATOR_VERSION,
        "seed": args.seed,
        "energy": str(energy),
        "energy_unit": "GeV",
        "chunk_size": args.chunk_size,
    }
    sizes = [min(args.chunk_size, args.n - lo) for lo in range(0, args.n, args.chunk_size)]
    tasks = [(args.particle, str(energy), args.seed, k, size) for k, size in enumerate(sizes)]
    t0 = time.perf_counter()
    with (
        ShowerFileWriter(args.out, fmt=args.format, attrs=attrs, compression=args.compression) as writer,
        progress_bar(args.n, "showers", args.quiet) as bar,
        closing(ordered_map(simulate_chunk, tasks, args.workers)) as chunks,
    ):
        for chunk in chunks:
            writer.append(chunk)
            bar.update(len(chunk))
    seconds = time.perf_counter() - t0
    print(
        f"wrote {args.n} {args.particle} showers (energy {energy} GeV, seed {args.seed}) to {args.out} "
        f"[{args.format}, {args.out.stat().st_size / 2**20:.1f} MiB, {seconds:.1f} s, "
        f"{args.n / seconds:.0f} showers/s]"
    )
    return 0


# --------------------------------------------------------------------------- registration

DOMAINS: dict[str, Callable[[argparse._SubParsersAction], None]] = {"calo": _add_calo, "cosmo": _add_cosmo}
"""Domain name -> function that registers ``emulator simulate <name>``."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``emulator simulate`` and one sub-command per domain."""
    parser = subparsers.add_parser(
        "simulate",
        help="run a reference simulator and write HDF5 training/reference data",
        description="Run a domain's reference simulator and write the samples to an HDF5 file, "
        "chunk by chunk (bounded memory), reproducibly from --seed. "
        "See 'emulator simulate DOMAIN --help' for units, formats and options.",
    )
    domains = parser.add_subparsers(dest="domain", metavar="DOMAIN", required=True)
    for add in DOMAINS.values():
        add(domains)
