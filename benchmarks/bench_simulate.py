"""Reference calorimeter simulator throughput and memory, plus HDF5 write/read throughput.

Times the hot loops alone: ``iter_showers`` chunks (nothing kept) per particle and energy,
and ``ShowerFileWriter.append`` / ``iter_showers_file`` per compression. Every rate is also
printed as a ratio to a baseline measured in the same run (simulation: e+ at 10 GeV; files:
uncompressed write), so numbers from different machines compare through the ratios.

    .venv/bin/python benchmarks/bench_simulate.py                 # N = 100,000 per row (minutes)
    .venv/bin/python benchmarks/bench_simulate.py --n 5000        # quick look
    .venv/bin/python benchmarks/bench_simulate.py --workers 1 2 4 # + parallel scaling (CLI path)

Peak memory is the tracemalloc peak of the row above what was allocated before it: numpy
buffers are included, HDF5's own C buffers (chunk cache, filters) are not; the process max RSS
is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np

from physics_data.calo.io import ShowerFileWriter, iter_showers_file
from physics_data.calo.showers import Showers
from physics_data.calo.simulate import PARTICLES, SIMULATOR_VERSION, iter_showers, simulate_chunk
from pipelines.simulate import ordered_map


def measure(fn: Callable[[], int]) -> tuple[float, float]:
    """Run ``fn`` (returns the number of showers processed); -> (showers/s, peak MiB)."""
    tracemalloc.reset_peak()
    start_bytes = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    n = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - start_bytes
    return n / seconds, peak / 2**20


def consume(chunks: Iterable[Showers]) -> int:
    return sum(len(c) for c in chunks)


def bench_simulator(n: int, energies: list[float], chunk_size: int, seed: int) -> None:
    print(f"\n## simulator: {n} showers per row, chunk {chunk_size}")
    ratio = f"x {PARTICLES[0]} {energies[0]:g}GeV"  # the first row is the baseline
    print(f"{'particle':>8} {'E (GeV)':>8} {'showers/s':>10} {'ms/shower':>10} {'peak MiB':>9} {ratio:>11}")
    baseline = None
    for particle in PARTICLES:
        for energy in energies:
            rate, peak = measure(
                lambda p=particle, e=energy: consume(iter_showers(p, n, e, seed, chunk_size))
            )
            baseline = baseline or rate
            print(
                f"{particle:>8} {energy:>8g} {rate:>10.0f} {1e3 / rate:>10.3f} {peak:>9.1f} {rate / baseline:>11.2f}"
            )


def bench_files(n: int, chunk_size: int, seed: int) -> None:
    chunk = simulate_chunk("e+", "1:100", seed, 0, chunk_size)
    repeats = max(1, n // chunk_size)
    total = repeats * chunk_size
    raw_mib = total * (chunk.cells.shape[1] + chunk.overflow.shape[1] + 1) * 4 / 2**20
    print(
        f"\n## HDF5 files: {total} e+ 1-100 GeV showers ({raw_mib:.0f} MiB raw float32), appends of {chunk_size}"
    )
    print(
        f"{'format':>13} {'compression':>11} {'write/s':>9} {'read/s':>9} {'MiB':>7} "
        f"{'size ratio':>10} {'write x none':>12} {'peak MiB':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("calogan", "calochallenge"):
            baseline = None
            for compression in (None, "lzf", "gzip"):
                path = Path(tmp) / f"{fmt}-{compression}.h5"

                def write(path: Path = path, fmt: str = fmt, compression: str | None = compression) -> int:
                    with ShowerFileWriter(path, fmt=fmt, compression=compression) as writer:
                        for _ in range(repeats):
                            writer.append(chunk)
                    return total

                write_rate, peak = measure(write)
                read_rate, _ = measure(lambda path=path: consume(iter_showers_file(path, chunk_size)))
                baseline = baseline or write_rate
                mib = path.stat().st_size / 2**20
                print(
                    f"{fmt:>13} {compression or 'none':>11} {write_rate:>9.0f} {read_rate:>9.0f} {mib:>7.1f} "
                    f"{mib / raw_mib:>10.2f} {write_rate / baseline:>12.2f} {peak:>9.1f}"
                )


def bench_workers(n: int, chunk_size: int, seed: int, workers: list[int]) -> None:
    energy = "1:100"
    tasks = [("e+", energy, seed, k, min(chunk_size, n - lo)) for k, lo in enumerate(range(0, n, chunk_size))]
    print(f"\n## parallel chunks (the 'emulator simulate --workers' path): {n} e+ {energy} GeV showers")
    print(f"{'workers':>8} {'showers/s':>10} {'x 1 worker':>11}")
    baseline = None
    for w in workers:
        rate, _ = measure(lambda w=w: consume(ordered_map(simulate_chunk, tasks, w)))
        baseline = baseline or rate
        print(f"{w:>8} {rate:>10.0f} {rate / baseline:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="showers per row (default 100000)")
    parser.add_argument("--energies", type=float, nargs="+", default=[10.0, 50.0, 100.0], help="GeV")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[], help="worker counts to compare, e.g. 1 4 16"
    )
    parser.add_argument("--skip-files", action="store_true", help="only the simulator")
    args = parser.parse_args()

    print(
        f"# bench_simulate: simulator {SIMULATOR_VERSION}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, python {platform.python_version()}, numpy {np.__version__}, h5py {h5py.__version__}"
    )
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    bench_simulator(args.n, args.energies, args.chunk_size, args.seed)
    if not args.skip_files:
        bench_files(args.n, args.chunk_size, args.seed)
    if args.workers:
        bench_workers(args.n, args.chunk_size, args.seed, args.workers)
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\nprocess max RSS {rss1 / 1024:.0f} MiB (+{(rss1 - rss0) / 1024:.0f} MiB during the benchmark)")


if __name__ == "__main__":
    main()
