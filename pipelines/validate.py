"""``emulator validate``: compare generated samples with reference samples; write metrics.json and report.html.

A thin wrapper over :func:`emulator.validation.validate` and
:func:`emulator.validation.html.write_report`. The domain's validation adapter
(:mod:`emulator.validation.adapters`: the model's domain for ``--model``, else the one that
recognises the reference file) turns the files and the model's output into the validator's arrays.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipelines.cli import CLIError

__all__ = ["add_parser", "generate_matching", "run"]

HELP = """\
Validate emulated samples against reference samples from the simulator.

Computes per-observable Wasserstein distances and separation powers, per-condition-bin
observable means (and the response and resolution for calo), sliced Wasserstein and exact
EMD, FPD/KPD (jetnet definitions), classifier AUCs (high- and low-level) and the domain's
binned statistics (cosmo: 2D P(k), pixel PDF, peak counts, Minkowski functionals), checks
them against a thresholds file and writes DIR/metrics.json and a self-contained DIR/report.html.

The generated samples come from a file (--generated) or from a model (--model), which is
then run with the reference file's conditions, one sample per reference sample. The domain
is the model's, or the one whose files look like the reference (calo: CaloGAN or
CaloChallenge showers; cosmo: fields/params slices from `emulator simulate cosmo`).

exit status: 0 when every check passes, 1 when a check fails, 2 on a usage error.

examples:
  emulator validate --generated gen.h5 --reference ref.h5 --out report/
  emulator validate --model calo-eplus --reference ref.h5 --out models/calo-eplus/report
  emulator validate --generated pi.h5 --reference pi_ref.h5 --out r/ --thresholds calo_piplus
  emulator validate --model cosmo-slice64 --reference cosmo_ref.h5 --out r/   # thresholds cosmo_default
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
        "--generated", type=Path, metavar="G.h5", help="generated samples (same file layout as the reference)"
    )
    src.add_argument("--model", metavar="NAME", help="generate with this model at the reference's conditions")
    p.add_argument(
        "--reference", type=Path, required=True, metavar="R.h5", help="reference samples from the simulator"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--thresholds",
        default=None,
        metavar="FILE",
        help="thresholds JSON file or shipped name (calo_default, calo_piplus, cosmo_default); default: "
        "cosmo_default for cosmo, calo_piplus for pi+ references (file attribute 'particle'), else calo_default",
    )
    p.add_argument(
        "--max-samples", type=int, default=None, metavar="N", help="use the first N samples of each file"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice in the validation (default 0)"
    )
    p.add_argument(
        "--no-classifier-low-level", action="store_true", help="skip the low-level (cell, pixel) classifier"
    )
    p.add_argument("--epochs", type=int, default=None, help="classifier epochs (default 20)")
    p.add_argument(
        "--models-path", action="append", default=None, metavar="DIR", help="model search path (repeatable)"
    )
    p.add_argument("--device", default="auto", help="torch device for --model: auto, cpu, cuda, ...")
    p.add_argument(
        "--no-calibration", action="store_true",
        help="with --model: the bare generator, without the model's output calibration (emulator calibrate)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def _log(quiet: bool):
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    return say


def generate_matching(sampler, conditions, seed: int):
    """(conditions (N, k), samples (N, *sample_shape)) from ``sampler``, one per row of ``conditions``."""
    import numpy as np

    from emulator.conditions import parse_conditions

    cond = np.asarray(conditions, dtype=np.float64).reshape(len(conditions), -1)
    names = [c.name for c in sampler.domain.conditions]
    spec = parse_conditions(sampler.domain, {n: cond[:, j].tolist() for j, n in enumerate(names)}, len(cond))
    block = sampler.generate(len(cond), spec, seed)
    return block.conditions, block.samples


def _adapter(args: argparse.Namespace):
    """(adapter, sampler or None): the model's domain for --model, else the reference file's."""
    from emulator.validation.adapters import adapter_for_file, get_adapter

    if not args.model:
        return adapter_for_file(args.reference), None
    from emulator.registry import UnknownModel, load_sampler

    try:
        sampler = load_sampler(args.model, device=args.device, search_paths=args.models_path)
        adapter = get_adapter(sampler.domain.name)
    except (UnknownModel, KeyError) as exc:
        raise CLIError(str(exc.args[0] if exc.args else exc)) from exc
    if not adapter.recognises(args.reference):
        raise CLIError(
            f"{args.reference} is not a {adapter.domain} file, but model {args.model!r} is a {adapter.domain} model"
        )
    return adapter, without_calibration(sampler) if args.no_calibration else sampler


def without_calibration(sampler):
    """A view of ``sampler`` (same generator) that skips its output calibration, for ablations."""
    import copy

    bare = copy.copy(sampler)
    bare.calibration = None
    return bare


def run(args: argparse.Namespace) -> int:
    """Load, validate, write the report; exit status 1 when a check fails."""
    from emulator.validation import ClassifierConfig, ValidationConfig, load_thresholds, validate
    from emulator.validation.html import write_report

    if args.max_samples is not None and args.max_samples < 100:
        raise CLIError(f"--max-samples must be >= 100 for meaningful statistics, got {args.max_samples}")
    if args.epochs is not None and args.epochs < 1:
        raise CLIError(f"--epochs must be >= 1, got {args.epochs}")
    say = _log(args.quiet)
    for path in (args.generated, args.reference):
        if path is not None and not path.exists():
            raise CLIError(f"{path} does not exist")
    adapter, sampler = _adapter(args)
    noun = adapter.noun
    say(f"reading {args.reference} ({adapter.domain})")
    reference, ref_attrs = adapter.load(args.reference, args.max_samples)
    label = adapter.label(ref_attrs)
    sources = {"reference": str(args.reference)}
    if sampler is not None:
        say(
            f"generating {len(reference):,} {noun} with model {args.model} at the reference conditions (seed {args.seed})"
        )
        generated = adapter.from_generated(
            *generate_matching(sampler, adapter.conditions(reference), args.seed)
        )
        sources.update(
            generated=f"model {args.model} version {sampler.card.get('version', '?')}"
            + (" with its output calibration" if sampler.calibration is not None else ""),
            generation_seed=str(args.seed),
        )
        label = label or adapter.label(sampler.card)
    else:
        if not adapter.recognises(args.generated):
            raise CLIError(f"{args.generated} is not a {adapter.domain} file like the reference")
        say(f"reading {args.generated}")
        generated, gen_attrs = adapter.load(args.generated, args.max_samples)
        sources["generated"] = str(args.generated)
        gen_label = adapter.label(gen_attrs)
        if label and gen_label and gen_label != label:
            raise CLIError(f"generated file is {gen_label!r} {noun} but the reference is {label!r}")
    thresholds = load_thresholds(args.thresholds or adapter.default_thresholds(label))
    clf = ClassifierConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    config = ValidationConfig(
        seed=args.seed, classifier_low_level=not args.no_classifier_low_level, classifier=clf
    )
    spec = adapter.spec(label)
    say(f"computing observables of {len(generated):,} generated and {len(reference):,} reference {noun}")
    gen_set, ref_set = adapter.to_sampleset(generated), adapter.to_sampleset(reference)
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
