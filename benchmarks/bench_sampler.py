"""Sampler throughput: showers/s in process vs the machine's matmul compute floor, measured in one run.

For each batch size (1k-64k) it times ``Sampler.generate`` end to end (conditions, noise,
generator, preprocessing inverse, copy into the output array) for energies uniform in 1-100 GeV
and for all at 50 GeV, and, separately, the bare generator forward pass. The last column is the
speed-up of the sampler's inference form of the generator (``MLPGenerator.for_sampling``) over
the module as trained, timed in the same run; for a model with an output calibration
(``emulator calibrate``) the column after it is the calibrated rate over the bare generator's. The compute floor is the FLOPs per shower (counted from the layer
shapes) divided by the float32 matmul rate of this machine, measured in the same process
on a square matmul; the ratio says how close the sampler gets to it.

    python benchmarks/bench_sampler.py                      # a shipped model, or a fresh full-size one
    python benchmarks/bench_sampler.py --model models/calo-eplus --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from emulator.checkpoint import export_model
from emulator.conditions import parse_conditions
from emulator.domains import get_domain
from emulator.models import MLPGenerator, MLPGeneratorConfig
from emulator.sampler import Sampler, resolve_device


def matmul_flops(device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """Measured float32 FLOP/s of an n x n x n matmul on ``device``."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(fn, reps: int) -> float:
    """Minimum wall time of ``reps`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def default_model(tmp: Path) -> Path:
    """A randomly initialised generator with the training defaults (same cost as a trained one)."""
    dom = get_domain("calo")
    gen = MLPGenerator(MLPGeneratorConfig(507, 1))
    return export_model(tmp / "bench-model", gen, dom, {"name": "bench-model", "domain": "calo", "version": "bench"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="model directory (default: models/calo-eplus if present)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--batch", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    device = resolve_device(args.device)
    model = args.model or (Path("models/calo-eplus") if Path("models/calo-eplus/config.json").exists() else None)
    with tempfile.TemporaryDirectory() as tmp:
        path = model or default_model(Path(tmp))
        sampler = Sampler.from_dir(path, device=str(device))
        gen = sampler.generator
        flops = gen.flops_per_sample()
        params = sum(p.numel() for p in gen.parameters())
        rate = matmul_flops(device)
        floor = rate / flops
        print(f"model {path} ({params / 1e6:.2f} M params, {flops / 1e6:.2f} MFLOP/shower), device {device}, "
              f"{torch.get_num_threads()} threads")  # fmt: skip
        print(f"measured fp32 matmul rate {rate / 1e9:.1f} GFLOP/s -> compute floor {floor:,.0f} showers/s")
        print(
            f"{'batch':>7} {'generate/s':>12} {'per min':>10} {'forward/s':>11} {'of floor':>9} "
            f"{'50 GeV/s':>10} {'vs training form (uniform / 50 GeV)':>36} {'calibrated / bare':>18}"
        )
        for n in args.batch:
            spec = parse_conditions(sampler.domain, "1:100", n)
            fixed = parse_conditions(sampler.domain, "50", n)  # one energy for all: condition terms computed once
            sampler.generate(min(n, 1024), parse_conditions(sampler.domain, "1:100", min(n, 1024)), 0)  # warm-up

            def time_generate(spec, n=n) -> float:
                def run() -> None:
                    sampler.generate(n, spec, 1)
                    sync(device)

                return best_of(run, args.reps)

            t_gen, t_fixed = time_generate(spec), time_generate(fixed)
            sampling_form, sampler.forward = sampler.forward, sampler.generator  # baseline: the module as trained
            t_gen_base, t_fixed_base = time_generate(spec), time_generate(fixed)
            sampler.forward = sampling_form
            calibration, sampler.calibration = sampler.calibration, None
            t_bare = time_generate(spec) if calibration is not None else t_gen
            sampler.calibration = calibration
            z = torch.randn(min(n, 8192), gen.noise_dim, device=device)
            c = torch.rand(len(z), 1, device=device)

            def fwd(z=z, c=c) -> None:
                with torch.inference_mode():
                    sampler.forward(z, c)
                sync(device)

            t_fwd = best_of(fwd, args.reps) * n / len(z)
            print(
                f"{n:>7} {n / t_gen:>12,.0f} {60 * n / t_gen / 1e6:>9.2f}M {n / t_fwd:>11,.0f} "
                f"{n / t_gen / floor:>8.0%} {n / t_fixed:>10,.0f} {t_gen_base / t_gen:>24.2f}x / {t_fixed_base / t_fixed:.2f}x"
                f" {t_bare / t_gen:>17.2f}x"
            )


if __name__ == "__main__":
    main()
