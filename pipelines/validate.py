"""``emulator validate``: compare generated showers with reference showers; write metrics.json and report.html.

A thin wrapper over :func:`emulator.validation.validate` and
:func:`emulator.validation.html.write_report`; the calorimeter adapter
(:mod:`emulator.validation.calo_inputs`) turns the HDF5 files into the validator's arrays.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipelines.cli import CLIError

__all__ = ["add_parser", "generate_matching", "run"]

HELP = """\
Validate emulated calorimeter showers against reference showers from the simulator.

Computes per-observable Wasserstein distances and separation powers, per-energy-bin response,
resolution and observable means, sliced Wasserstein and exact EMD, FPD/KPD (jetnet
definitions) and classifier AUCs (high- and low-level), checks them against a thresholds
file and writes DIR/metrics.json and a self-contained DIR/report.html.

The generated showers come from a file (--generated) or from a model (--model), which is
then run with the reference file's energies, one per shower.

exit status: 0 when every check passes, 1 when a check fails, 2 on a usage error.

examples:
  emulator validate --generated gen.h5 --reference ref.h5 --out report/
  emulator validate --model calo-eplus --reference ref.h5 --out models/calo-eplus/report
  emulator validate --generated pi.h5 --reference pi_ref.h5 --out r/ --thresholds calo_piplus
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``validate``."""
    p = subparsers.add_parser(
        "validate",
        help="validate generated samples against reference samples (metrics.json + report.html)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--generated", type=Path, metavar="G.h5", help="generated showers (CaloGAN or CaloChallenge HDF5)"
    )
    src.add_argument("--model", metavar="NAME", help="generate with this model at the reference's energies")
    p.add_argument(
        "--reference", type=Path, required=True, metavar="R.h5", help="reference showers from the simulator"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--thresholds",
        default=None,
        metavar="FILE",
        help="thresholds JSON file or shipped name (calo_default, calo_piplus); default: calo_piplus for "
        "pi+ references (file attribute 'particle'), calo_default otherwise",
    )
    p.add_argument(
        "--max-samples", type=int, default=None, metavar="N", help="use the first N showers of each file"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice in the validation (default 0)"
    )
    p.add_argument(
        "--no-classifier-low-level", action="store_true", help="skip the low-level (cell) classifier"
    )
    p.add_argument("--epochs", type=int, default=None, help="classifier epochs (default 20)")
    p.add_argument(
        "--models-path", action="append", default=None, metavar="DIR", help="model search path (repeatable)"
    )
    p.add_argument("--device", default="auto", help="torch device for --model: auto, cpu, cuda, ...")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def _log(quiet: bool):
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    return say


def generate_matching(model: str, reference_energy, seed: int, search_paths=None, device: str = "auto"):
    """Showers from ``model`` at exactly the reference's energies (one per reference shower)."""
    import numpy as np

    from emulator.conditions import parse_conditions
    from emulator.registry import UnknownModel, load_sampler
    from physics_data.calo.geometry import N_CELLS
    from physics_data.calo.showers import Showers

    try:
        sampler = load_sampler(model, device=device, search_paths=search_paths)
    except UnknownModel as exc:
        raise CLIError(str(exc)) from exc
    if sampler.domain.name != "calo":
        raise CLIError(f"model {model!r} is a {sampler.domain.name!r} model; validate compares calo showers")
    energy = np.asarray(reference_energy, dtype=np.float64)
    spec = parse_conditions(sampler.domain, {"energy": energy.tolist()}, len(energy))
    block = sampler.generate(len(energy), spec, seed)
    samples = block.samples.reshape(len(energy), -1)
    return sampler, Showers(
        block.conditions[:, 0].astype(np.float32),
        np.ascontiguousarray(samples[:, :N_CELLS]),
        np.ascontiguousarray(samples[:, N_CELLS : N_CELLS + 3]),
    )


def run(args: argparse.Namespace) -> int:
    """Load, validate, write the report; exit status 1 when a check fails."""
    from emulator.validation import ClassifierConfig, ValidationConfig, load_thresholds, validate
    from emulator.validation.calo_inputs import calo_spec, load_calo_file, showers_to_sampleset
    from emulator.validation.html import write_report

    if args.max_samples is not None and args.max_samples < 100:
        raise CLIError(f"--max-samples must be >= 100 for meaningful statistics, got {args.max_samples}")
    if args.epochs is not None and args.epochs < 1:
        raise CLIError(f"--epochs must be >= 1, got {args.epochs}")
    say = _log(args.quiet)
    for path in (args.generated, args.reference):
        if path is not None and not path.exists():
            raise CLIError(f"{path} does not exist")
    say(f"reading {args.reference}")
    reference, ref_attrs = load_calo_file(args.reference, args.max_samples)
    particle = str(ref_attrs.get("particle", ""))
    sources = {"reference": str(args.reference)}
    if args.model:
        say(
            f"generating {len(reference):,} showers with model {args.model} at the reference energies (seed {args.seed})"
        )
        sampler, generated = generate_matching(
            args.model, reference.energy, args.seed, args.models_path, args.device
        )
        sources.update(
            generated=f"model {args.model} version {sampler.card.get('version', '?')}",
            generation_seed=str(args.seed),
        )
        particle = particle or str(sampler.card.get("particle", ""))
    else:
        say(f"reading {args.generated}")
        generated, gen_attrs = load_calo_file(args.generated, args.max_samples)
        sources["generated"] = str(args.generated)
        gen_particle = str(gen_attrs.get("particle", ""))
        if particle and gen_particle and gen_particle != particle:
            raise CLIError(f"generated file is {gen_particle!r} showers but the reference is {particle!r}")
    thresholds = load_thresholds(args.thresholds or ("calo_piplus" if particle == "pi+" else None))
    clf = ClassifierConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    config = ValidationConfig(
        seed=args.seed, classifier_low_level=not args.no_classifier_low_level, classifier=clf
    )
    spec = calo_spec(particle)
    say(f"computing observables of {len(generated):,} generated and {len(reference):,} reference showers")
    gen_set, ref_set = showers_to_sampleset(generated), showers_to_sampleset(reference)
    metrics = validate(gen_set, ref_set, spec, thresholds, config, progress=say, sources=sources)
    say("writing the report")
    metrics_path, html_path = write_report(args.out, metrics, gen_set, ref_set, spec)
    verdict = "PASSED" if metrics["passed"] else "FAILED"
    aucs = " ".join(
        f"{k}={metrics[k]:.4f}" for k in ("auc_high_level", "auc_low_level") if metrics[k] is not None
    )
    print(f"{verdict} ({thresholds.name}): {aucs} fpd={metrics['fpd']:.3g} kpd={metrics['kpd']:.3g}")
    for check in metrics["checks"]:
        if not check["passed"]:
            print(
                f"  failed {check['name']}: {check['value']} (threshold {check['threshold']}) at {check['where']}"
            )
    print(f"wrote {metrics_path} and {html_path}")
    return 0 if metrics["passed"] else 1
