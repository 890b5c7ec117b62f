"""``emulator calibrate``: fit a model's conditional quantile map on its training data (emulator.calibration).

The domain says which values are mapped: cosmo the pixels (the pixel PDF), calo each shower's
response E_tot/E_inc (the whole shower is scaled with it). Writes ``calibration.safetensors`` into
the model directory (atomically) and records how it was fitted in the card; from then on the
sampler, the service, ``emulator generate`` and ``emulator validate`` apply it. The fit sees only
the training file, never a held-out reference: run ``emulator validate`` (or
scripts/cosmo_heldout_check.py) afterwards to judge it.

    emulator calibrate runs/cp/models/cosmo-slice64 --data data/cosmo/train-800.h5
    emulator calibrate models/calo-eplus --data data/calo/eplus-train.h5

--degree and --per-point default to the domain's settings: calo 6 and 1 (each training shower has
its own energy, so one generated shower per training shower), cosmo 4 and 24.

``--remove`` deletes a model's calibration.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``emulator calibrate``."""
    p = subparsers.add_parser(
        "calibrate",
        help="fit a model's conditional quantile map (cosmo pixel PDF, calo response) on its training data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", type=Path, help="model directory (config.json, card.json, generator.safetensors)")
    p.add_argument("--data", type=Path, help="the training file the model was trained on (required unless --remove)")
    p.add_argument("--degree", type=int, help="total degree of the polynomials in the condition features (default: the domain's, calo 6, cosmo 4)")
    p.add_argument("--per-point", type=int, help="generated samples per training point (default: the domain's, calo 1, cosmo 24)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (block b of generated samples uses seed + b)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--remove", action="store_true", help="delete the model's calibration instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _record_in_card(model_dir: Path, info: dict | None) -> None:
    from emulator.checkpoint import CARD_FILE, write_card

    card = json.loads((model_dir / CARD_FILE).read_text())
    if info is None:
        card.pop("calibration", None)
    else:
        card["calibration"] = info
    write_card(model_dir, card)


def run(args: argparse.Namespace) -> int:
    """Fit and write the calibration (or remove it)."""
    import numpy as np
    import torch

    from emulator.calibration import (
        CALIBRATION_FILE,
        calibration_fit,
        calibration_space,
        calibration_values,
        fit_marginal_calibration,
    )
    from emulator.checkpoint import InvalidModelDir
    from emulator.sampler import Sampler
    from pipelines.cli import CLIError
    from pipelines.validate import generate_matching

    target = args.model_dir / CALIBRATION_FILE
    if args.remove:
        target.unlink(missing_ok=True)
        _record_in_card(args.model_dir, None)
        print(f"removed the calibration of {args.model_dir}")
        return 0
    if args.data is None:
        raise CLIError("--data is required: the training file the model was trained on")
    if args.degree is not None and args.degree < 0:
        raise CLIError(f"need --degree >= 0, got {args.degree}")
    if args.per_point is not None and args.per_point < 1:
        raise CLIError(f"need --per-point >= 1, got {args.per_point}")
    try:
        sampler = Sampler.from_dir(args.model_dir, device=args.device, calibrated=False)
    except InvalidModelDir as exc:
        raise CLIError(str(exc)) from None
    defaults = calibration_fit(sampler.domain)
    degree = defaults["degree"] if args.degree is None else args.degree
    per_point = defaults["per_point"] if args.per_point is None else args.per_point
    reader = getattr(sampler.domain, "read_samples", None)
    if reader is None:
        raise CLIError(f"domain {sampler.domain.name!r} cannot read training files")
    conditions, samples, _ = reader(args.data)
    domain = sampler.domain
    offset, step = calibration_space(domain)
    t0 = time.perf_counter()
    progress = None
    if not args.quiet:
        from tqdm import tqdm

        def progress(blocks):
            return tqdm(blocks, desc="calibrating", unit="block")

    def values_of(cond: np.ndarray, batch: np.ndarray) -> np.ndarray:
        return calibration_values(domain, torch.as_tensor(batch), torch.as_tensor(cond)).numpy()

    def features(cond: np.ndarray) -> np.ndarray:
        return domain.condition_features(torch.as_tensor(cond, dtype=torch.float64)).numpy()

    def generate(cond: np.ndarray, seed: int) -> np.ndarray:
        return values_of(cond, generate_matching(sampler, cond, seed)[1])

    try:
        calib = fit_marginal_calibration(
            generate, conditions, values_of(conditions, samples), features,
            degree=degree, per_point=per_point, seed=args.seed, offset=offset, step=step, progress=progress,
        )  # fmt: skip
    except ValueError as exc:
        raise CLIError(f"{args.data}: {exc}") from None
    calib.info |= {"data": str(args.data), "fit_seconds": round(time.perf_counter() - t0, 1)}
    calib.save(target)
    _record_in_card(args.model_dir, calib.info)
    print(
        f"wrote {target}: {calib.info['thresholds']} thresholds over values in "
        f"[{calib.info['value_range'][0]:.3g}, {calib.info['value_range'][1]:.3g}], degree {degree}, "
        f"{calib.info['points']} points x {per_point} generated, {calib.info['fit_seconds']} s"
    )
    return 0
