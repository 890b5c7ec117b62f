"""Held-out check of a cosmo emulator against reference slices at fixed (Omega_m, sigma_8) points.

Interim tool until ``emulator validate`` has a cosmo adapter (issue 6 item 7). Each reference
file holds slices of ONE parameter point (``emulator simulate cosmo --omega-m X --sigma8 Y``
with seeds never used for training). For each, the model generates as many maps at that point
and the issue's thresholds are checked:

* 2D P(k) (shells of width k_f up to k_Ny/2): mean |relative error| <= 5 %, every bin <= 10 %;
* pixel PDF and peak-height histogram (log-spaced bins of 1+δ): <= 10 % in every bin where the
  reference has >= 100 counts;
* Minkowski functionals V0, V1, V2 (1-pixel smoothing, ν = -1 .. 3 step 0.5): mean per ν within
  10 % of the reference's largest |V_i| wherever the reference band holds >= 100 pixels.

    python scripts/cosmo_heldout_check.py --model cosmo-slice64 --reference ref_*.h5 --out heldout.json

Exit status 0 when every point passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from emulator.conditions import parse_conditions
from emulator.registry import load_sampler
from physics_data.cosmo.io import read_fields
from physics_data.cosmo.observables import minkowski_functionals, peak_counts, pixel_pdf, power_spectrum_2d

DENSITY_EDGES = np.logspace(-2, 2.5, 31)  # 1+δ bins for the pixel PDF and peak heights
NU = np.arange(-1.0, 3.01, 0.5)
MIN_COUNTS = 100


def _rel(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(gen - ref) / np.abs(ref)


def compare(gen: np.ndarray, ref: np.ndarray, box_size: float) -> dict:
    """The issue-6 statistics of generated vs reference maps (N, n, n) at one parameter point."""
    n = ref.shape[-1]
    pk_g = np.nanmean(power_spectrum_2d(gen, box_size).power, axis=0)
    ps_r = power_spectrum_2d(ref, box_size)
    pk_r = np.nanmean(ps_r.power, axis=0)
    low = ps_r.k <= (np.pi * n / box_size) / 2  # k <= k_Ny / 2
    pk_err = _rel(pk_g[low], pk_r[low])
    out = {
        "pk_k": ps_r.k[low].tolist(),
        "pk_rel_err": pk_err.tolist(),
        "pk_mean_rel_err": float(pk_err.mean()),
        "pk_max_rel_err": float(pk_err.max()),
        "pk_pass": bool(pk_err.mean() <= 0.05 and pk_err.max() <= 0.10),
    }
    for name, stat in (
        ("pixel_pdf", lambda m: pixel_pdf(m, DENSITY_EDGES, normalise=False)),
        ("peaks", lambda m: peak_counts(m, DENSITY_EDGES)),
    ):
        g, r = stat(gen).sum(axis=0), stat(ref).sum(axis=0)
        used = r >= MIN_COUNTS
        err = _rel(g[used] * len(ref) / len(gen), r[used])
        out[f"{name}_max_rel_err"] = float(err.max()) if used.any() else None
        out[f"{name}_pass"] = bool(not used.any() or err.max() <= 0.10)
    mf_g = minkowski_functionals(gen, NU, smoothing=1.0).mean(axis=0)
    mf_r = minkowski_functionals(ref, NU, smoothing=1.0).mean(axis=0)
    u = ref - ref.mean(axis=(1, 2), keepdims=True)
    u = u / u.std(axis=(1, 2), keepdims=True)  # band occupancy, unsmoothed: a conservative count
    band = np.array([(np.abs(u - nu) < 0.25).sum() for nu in NU]) >= MIN_COUNTS
    mf_err = np.abs(mf_g - mf_r)[:, band] / np.abs(mf_r).max(axis=1, keepdims=True)
    out["mf_max_rel_err"] = mf_err.max(axis=1).tolist()  # V0, V1, V2
    out["mf_pass"] = bool(mf_err.max() <= 0.10)
    out["passed"] = all(out[k] for k in ("pk_pass", "pixel_pdf_pass", "peaks_pass", "mf_pass"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model name (or use --models-path for a directory)")
    p.add_argument("--reference", type=Path, nargs="+", required=True, help="one file per parameter point")
    p.add_argument("--models-path", type=Path, action="append", default=None)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True, help="JSON summary")
    args = p.parse_args(argv)
    sampler = load_sampler(args.model, device=args.device, search_paths=args.models_path)
    results = []
    for i, path in enumerate(args.reference):
        fs = read_fields(path, load_3d=False)
        om, s8 = float(fs.param("omega_m")[0]), float(fs.param("sigma8")[0])
        if np.ptp(fs.param("omega_m")) or np.ptp(fs.param("sigma8")):
            raise SystemExit(f"{path}: holds several parameter points; simulate one fixed point per file")
        spec = parse_conditions(sampler.domain, {"omega_m": om, "sigma8": s8}, len(fs.fields))
        gen = sampler.generate(len(fs.fields), spec, args.seed + i).samples
        res = {"reference": str(path), "omega_m": om, "sigma8": s8, "n": len(fs.fields)}
        res |= compare(gen.astype(np.float64), fs.fields.astype(np.float64), float(fs.param("box_size")[0]))
        results.append(res)
        print(
            f"omega_m={om:.3f} sigma8={s8:.3f}: P(k) mean {res['pk_mean_rel_err']:.3f} max {res['pk_max_rel_err']:.3f}, "
            f"PDF {res['pixel_pdf_max_rel_err']}, peaks {res['peaks_max_rel_err']}, MF {res['mf_max_rel_err']} "
            f"-> {'PASS' if res['passed'] else 'FAIL'}"
        )
    summary = {"model": args.model, "points": results, "passed": all(r["passed"] for r in results)}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
