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

Cosmo also fits, before the pixel map, a conditional gain per Fourier shell of the log density
(emulator.spectral_calibration): up to --spectral-iterations (cosmo 3) rounds of generating 16
maps at each training point with the current calibration, fitting the log ratio of their band
powers to the training maps' and refitting the pixel map, until that ratio's rms over the points
is below --spectral-tolerance in every shell; the round whose worst shell measured best is kept
(--spectral-iterations 0 turns it off).

``--remove`` deletes a model's calibration.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    p.add_argument("--spectral-iterations", type=int, help="updates of the spectral filter (default: the domain's, cosmo 3, calo 0 = none)")
    p.add_argument("--spectral-degree", type=int, help="total degree of the spectral gains' polynomials (default: the domain's, 3)")
    p.add_argument("--spectral-offset", type=float, help="the filter acts on log10(x + this) (default: the domain's calibration offset, cosmo 10^-2.6)")
    p.add_argument("--spectral-tolerance", type=float, default=0.01, help="stop updating when the fitted log P ratio's rms is below this in every shell (default 0.01)")
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
        MarginalCalibration,
        calibration_fit,
        calibration_space,
        calibration_values,
        fit_marginal_calibration,
    )
    from emulator.checkpoint import InvalidModelDir
    from emulator.sampler import Sampler
    from emulator.spectral_calibration import SpectralCalibration
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
    iterations = defaults["spectral_iterations"] if args.spectral_iterations is None else args.spectral_iterations
    if iterations < 0:
        raise CLIError(f"need --spectral-iterations >= 0, got {iterations}")
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

        def progress(blocks, desc: str = "fitting the value map"):
            return tqdm(blocks, desc=desc, unit="block")

    def values_of(cond: np.ndarray, batch: np.ndarray) -> np.ndarray:
        return calibration_values(domain, torch.as_tensor(batch), torch.as_tensor(cond)).numpy()

    def features(cond: np.ndarray) -> np.ndarray:
        return domain.condition_features(torch.as_tensor(cond, dtype=torch.float64)).numpy()

    def fit_map(spectral: SpectralCalibration | None) -> MarginalCalibration:
        def generate(cond: np.ndarray, seed: int) -> np.ndarray:
            fields = torch.as_tensor(generate_matching(sampler, cond, seed)[1])
            if spectral is not None:
                fields = spectral.apply(fields, torch.as_tensor(features(cond)))
            return values_of(cond, fields.numpy())

        try:
            fitted = fit_marginal_calibration(
                generate, conditions, values_of(conditions, samples), features,
                degree=degree, per_point=per_point, seed=args.seed, offset=offset, step=step, progress=progress,
            )  # fmt: skip
        except ValueError as exc:
            raise CLIError(f"{args.data}: {exc}") from None
        fitted.spectral = spectral  # the map was fitted to filtered samples: it must be applied after the filter
        return fitted

    settings = _spectral_settings(args, domain, conditions, defaults) if iterations > 0 else {}
    calib = fit_map(None)
    if iterations > 0:
        calib = _fit_spectral(args, sampler, calib, fit_map, conditions, samples, features, iterations, settings, progress)
    calib.info |= {"data": str(args.data), "fit_seconds": round(time.perf_counter() - t0, 1)}
    calib.save(target)
    _record_in_card(args.model_dir, calib.info)
    print(
        f"wrote {target}: {calib.info['thresholds']} thresholds over values in "
        f"[{calib.info['value_range'][0]:.3g}, {calib.info['value_range'][1]:.3g}], degree {degree}, "
        f"{calib.info['points']} points x {per_point} generated, {calib.info['fit_seconds']} s"
    )
    return 0


def _spectral_settings(args: argparse.Namespace, domain: Any, conditions: Any, defaults: dict[str, int]) -> dict:
    """{"degree", "offset", "per_point"} of the spectral stage, checked before anything is fitted."""
    import numpy as np

    from emulator.calibration import calibration_space, condition_points, condition_terms
    from emulator.spectral_calibration import band_index
    from pipelines.cli import CLIError

    try:
        band_index(tuple(domain.sample_shape))
    except ValueError as exc:
        raise CLIError(f"domain {domain.name!r}: {exc}; use --spectral-iterations 0") from None
    degree = defaults["spectral_degree"] if args.spectral_degree is None else args.spectral_degree
    n_points = len(condition_points(conditions)[0])
    n_terms = condition_terms(np.zeros((1, len(domain.conditions))), max(degree, 0)).shape[1]
    if degree < 0 or n_points < 2 * n_terms:
        raise CLIError(
            f"--spectral-degree {degree}: {n_points} training points cannot fix {n_terms} terms per shell; "
            "lower it (>= 0) or use training data with more points"
        )
    offset = calibration_space(domain)[0] if args.spectral_offset is None else args.spectral_offset
    if not offset > 0:
        raise CLIError(f"need --spectral-offset > 0, got {offset}")
    return {"degree": degree, "offset": offset, "per_point": defaults["spectral_per_point"]}


def _fit_spectral(
    args: argparse.Namespace, sampler: Any, calib: Any, fit_map: Callable[[Any], Any], conditions: Any, samples: Any,
    features: Callable[[Any], Any], iterations: int, settings: dict, progress: Callable | None,
) -> Any:  # fmt: skip
    """Alternate updates of the spectral filter and refits of the quantile map (module docstring);
    returns the quantile map of the round whose worst shell measured best, with its filter attached
    (none when that is round 0) and the fit history in ``info``."""
    import copy
    import functools
    import math

    import numpy as np
    import torch

    from emulator.calibration import condition_points, condition_terms
    from emulator.spectral_calibration import SpectralCalibration, band_power, fit_gain_update
    from pipelines.validate import generate_matching

    domain = sampler.domain
    degree, offset, per_point = settings["degree"], settings["offset"], settings["per_point"]
    points, index = condition_points(conditions)
    power = np.concatenate([band_power(samples[i : i + 4096], len(domain.sample_shape)) for i in range(0, len(samples), 4096)])
    reference = np.stack([power[index == i].mean(axis=0) for i in range(len(points))])
    point_features = features(points)
    terms = condition_terms(point_features, degree).numpy()
    coef = np.zeros((terms.shape[1], reference.shape[1]))
    history, best = [], (math.inf, -1, calib)  # (worst shell's rms, round, calibration) of the best round
    calibrated = copy.copy(sampler)
    for step in range(iterations + 1):
        calibrated.calibration = calib
        fitted = fit_gain_update(
            lambda cond, seed: generate_matching(calibrated, cond, seed)[1], points, reference, point_features,
            degree=degree, per_point=per_point, seed=args.seed + 10_000 * (step + 1),
            progress=None if progress is None else functools.partial(progress, desc=f"spectral round {step}: P(k)"),
        )  # fmt: skip
        per_shell = np.sqrt(np.mean((terms @ fitted) ** 2, axis=0))
        rms = float(per_shell.max())
        history.append(round(rms, 5))
        print(
            f"spectral calibration, round {step}: rms log P ratio over training points {rms:.4f} in the worst shell "
            f"(|k| = {int(per_shell.argmax()) + 1} k_f), {float(np.median(per_shell)):.4f} median"
        )
        if rms < best[0]:
            best = (rms, step, calib)
        if rms < args.spectral_tolerance or step == iterations:
            break
        coef = coef - 0.5 * fitted  # amplitude gain: half the log power ratio
        calib = fit_map(SpectralCalibration(torch.from_numpy(coef), degree, offset))
    # an update that made the worst shell worse (a generator far off, where the log-space gain acts
    # nonlinearly) is not kept: the round that measured best is
    calib = best[2]
    if calib.spectral is not None:
        calib.spectral.info = {
            "method": "conditional gain per Fourier shell of log10(x + offset) (emulator.spectral_calibration)",
            "degree": degree, "offset": offset, "generated_per_point": per_point, "updates": best[1],
            "rms_log_power_ratio_per_round": history, "tolerance": args.spectral_tolerance,
        }  # fmt: skip
        calib.info["spectral"] = calib.spectral.info
    else:
        print("spectral calibration: no update improved the worst shell; none kept")
    return calib
