"""Emulator vs particle-mesh simulator: 64x64 slices per second, measured in one run (issue 6, item 9).

The simulator baseline is ``iter_simulations`` at the training setting (64³ particles in
256 Mpc/h, 10 kick-drift-kick steps, 48 slices of 16 Mpc/h per box, z = 0) at fixed
Omega_m = 0.3, sigma_8 = 0.8; the emulator is ``Sampler.generate`` of a cosmo model at the same
point, end to end (noise, generator, inverse preprocessing, output calibration when the model has
one, copy out), best of ``--reps``; for a calibrated model also the bare generator, to show what
the calibration costs.
The speed-up column is emulator slices/s over simulator slices/s from this same process,
so it compares across machines where absolute rates do not.

    python benchmarks/bench_cosmo_speed.py                          # models/cosmo-slice64, CPU or CUDA
    python benchmarks/bench_cosmo_speed.py --sims 8 --n 4096 16384 --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from emulator.conditions import parse_conditions
from emulator.sampler import Sampler, resolve_device
from physics_data.cosmo.simulate import iter_simulations
from pipelines.validate import without_calibration

POINT = {"omega_m": 0.3, "sigma8": 0.8}


def simulator_rate(n_sims: int, device: str) -> float:
    """Slices per second of the PM simulator over ``n_sims`` boxes (after one warm-up box)."""

    def boxes(n: int, seed: int):
        return iter_simulations(n, POINT["omega_m"], POINT["sigma8"], seed=seed, device=device, power_backend="eh")

    for _ in boxes(1, seed=1):
        pass
    t = time.perf_counter()
    n = sum(len(c.fields) for c in boxes(n_sims, seed=2))
    return n / (time.perf_counter() - t)


def emulator_rate(sampler: Sampler, n: int, reps: int) -> float:
    """Slices per second of ``Sampler.generate`` for ``n`` slices (best of ``reps``)."""
    sampler.generate(256, parse_conditions(sampler.domain, POINT, 256), seed=0)  # warm-up
    conditions = parse_conditions(sampler.domain, POINT, n)
    best = float("inf")
    for r in range(reps):
        t = time.perf_counter()
        sampler.generate(n, conditions, seed=r)
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/cosmo-slice64"), help="cosmo model directory")
    ap.add_argument("--sims", type=int, default=4, help="simulator boxes timed (48 slices each)")
    ap.add_argument("--n", type=int, nargs="+", default=[1024, 8192], help="emulator slices per call")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args()
    device = str(resolve_device(args.device))
    sampler = Sampler.from_dir(args.model, device=device)
    sim = simulator_rate(args.sims, device)
    print(f"device {device}; model {args.model} {sampler.card.get('version', '?')}")
    print(f"{'what':<40} {'slices/s':>12} {'vs simulator':>13}")
    print(f"{'PM simulator (' + str(args.sims) + ' boxes x 48 slices)':<40} {sim:>12,.1f} {1.0:>12.1f}x")
    variants = [("emulator", sampler)]
    if sampler.calibration is not None:
        variants.append(("bare generator", without_calibration(sampler)))
    for n in args.n:
        for label, s in variants:
            rate = emulator_rate(s, n, args.reps)
            print(f"{label + ', ' + f'{n:,} slices per call':<40} {rate:>12,.1f} {rate / sim:>12.1f}x")


if __name__ == "__main__":
    main()
