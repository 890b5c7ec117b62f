"""Validation cost: ``emulator validate`` stages on N generated vs N reference showers.

Two modes:

    .venv/bin/python benchmarks/bench_validate.py                  # 100k vs 100k, time per stage
    .venv/bin/python benchmarks/bench_validate.py --n 20000 --calibration
        # the calibration table: AUC / FPD / KPD / failing checks for reference-vs-reference
        # and each distortion of emulator.validation.distortions (default settings)

The two samples are e+ showers from the reference simulator (uniform 1-100 GeV, seeds 1
and 2), written once to ``--cache`` (default /tmp/bench_validate) and read back, so
repeated runs time the validation and not the simulator. Every stage is printed with its
share of the total, measured in the same run, so the ratios compare across machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from emulator.validation import ValidationConfig, validate
from emulator.validation.calo_inputs import calo_spec, load_calo_file, showers_to_sampleset
from emulator.validation.distortions import DISTORTIONS
from emulator.validation.html import write_report
from physics_data.calo.io import ShowerFileWriter
from physics_data.calo.simulate import SIMULATOR_VERSION, iter_showers


def reference_file(cache: Path, n: int, seed: int) -> Path:
    """An e+ reference file of n showers with ``seed`` (simulated once, then reused)."""
    path = cache / f"eplus_{n}_seed{seed}_v{SIMULATOR_VERSION}.h5"
    if not path.exists():
        t = time.perf_counter()
        cache.mkdir(parents=True, exist_ok=True)
        with ShowerFileWriter(
            path, fmt="calogan", attrs={"particle": "e+", "seed": seed}, compression=None
        ) as w:
            for chunk in iter_showers("e+", n, "1:100", seed):
                w.append(chunk)
        print(f"  simulated {path.name} in {time.perf_counter() - t:.0f} s (not part of the timing)")
    return path


def timing_table(timing: dict[str, float]) -> str:
    """Stage times with their share of the total, largest first."""
    total = timing["total"]
    rows = sorted(((k, v) for k, v in timing.items() if k != "total"), key=lambda kv: -kv[1])
    lines = [f"  {'stage':<30}{'seconds':>9}{'share':>8}"]
    lines += [f"  {k:<30}{v:>9.1f}{v / total:>8.1%}" for k, v in rows]
    lines.append(f"  {'total':<30}{total:>9.1f}{1:>8.0%}")
    return "\n".join(lines)


def bench(n: int, cache: Path, out: Path) -> None:
    """Time every stage of a full validation of n vs n showers, report included."""
    timing: dict[str, float] = {}
    gen_path, ref_path = reference_file(cache, n, 1), reference_file(cache, n, 2)
    t_all = time.perf_counter()
    t = time.perf_counter()
    gen, _ = load_calo_file(gen_path)
    ref, _ = load_calo_file(ref_path)
    timing["read HDF5"] = time.perf_counter() - t
    t = time.perf_counter()
    gen_set, ref_set = showers_to_sampleset(gen), showers_to_sampleset(ref)
    timing["observables (calo adapter)"] = time.perf_counter() - t
    spec = calo_spec("e+")
    metrics = validate(gen_set, ref_set, spec, progress=lambda m: print(f"  ... {m}", flush=True))
    for key, value in metrics["timing_s"].items():
        if key != "total":
            timing[key] = value
    t = time.perf_counter()
    write_report(out, metrics, gen_set, ref_set, spec)
    timing["report (metrics.json + html)"] = time.perf_counter() - t
    timing["total"] = time.perf_counter() - t_all
    print(f"\nvalidate {n:,} vs {n:,} e+ showers (default settings, both classifiers):")
    print(timing_table(timing))
    top = max((k for k in timing if k != "total"), key=lambda k: timing[k])
    print(f"dominant stage: {top} ({timing[top] / timing['total']:.0%} of the total)")
    print(f"AUC high {metrics['auc_high_level']:.4f}, low {metrics['auc_low_level']:.4f}, FPD x1e3 "
          f"{metrics['fpd_x1e3']:.3f}, KPD x1e3 {metrics['kpd_x1e3']:.4f}, passed {metrics['passed']}")  # fmt: skip
    print(f"report: {out}/report.html")


def calibration(n: int, cache: Path) -> None:
    """AUC/FPD/KPD and failing checks for reference-vs-reference and each distortion."""
    gen, _ = load_calo_file(reference_file(cache, n, 1))
    ref_set = showers_to_sampleset(load_calo_file(reference_file(cache, n, 2))[0])
    print(f"\ncalibration, {n:,} vs {n:,} e+ showers, default settings:")
    print(
        f"  {'case':<28}{'AUC high':>10}{'AUC low':>10}{'FPD x1e3':>11}{'KPD x1e3':>11}  passed  failing checks"
    )
    cases = {"reference vs reference": lambda s: s, **DISTORTIONS}
    for name, distort in cases.items():
        m = validate(showers_to_sampleset(distort(gen)), ref_set, calo_spec("e+"), config=ValidationConfig())
        failing = ", ".join(c["name"] for c in m["checks"] if not c["passed"]) or "-"
        print(f"  {name:<28}{m['auc_high_level']:>10.4f}{m['auc_low_level']:>10.4f}{m['fpd_x1e3']:>11.3f}"
              f"{m['kpd_x1e3']:>11.4f}  {m['passed']!s:<6}  {failing}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="showers per sample (default 100,000)")
    parser.add_argument(
        "--cache", type=Path, default=Path("/tmp/bench_validate"), help="where simulated files are kept"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/bench_validate/report"), help="report directory"
    )
    parser.add_argument("--calibration", action="store_true", help="print the calibration table instead")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    if args.calibration:
        calibration(args.n, args.cache)
    else:
        bench(args.n, args.cache, args.out)


if __name__ == "__main__":
    main()
