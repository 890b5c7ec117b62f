"""``validate``: every metric of generated vs reference samples in one metrics dict.

The stages (each timed in ``metrics["timing_s"]``):

1. per-observable normalised W1 and separation power (``distances``, ``separation``);
2. conditioning table per condition bin (``conditioning``);
3. sliced Wasserstein on the low-level vectors and exact EMD on high-level features;
4. FPD and KPD on the high-level feature vector (``fpd_kpd``);
5. classifier AUCs on high-level and low-level features (``classifier``), and per observable at
   given conditions (``attribution``: which observables give the model away);
6. the domain's binned statistics bin by bin, when it has any (``binned``);
7. pass/fail checks against a thresholds file (``thresholds``).

The top-level keys ``auc_high_level``, ``auc_low_level``, ``fpd``, ``kpd`` and ``passed``
are what model cards and CI read; everything else is for the report and for debugging.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emulator.validation.attribution import per_observable_auc
from emulator.validation.binned import compare_all
from emulator.validation.classifier import ClassifierConfig, classifier_auc
from emulator.validation.conditioning import conditioning_table
from emulator.validation.distances import exact_emd, observable_w1, sliced_wasserstein
from emulator.validation.features import high_level_matrix, low_level_matrix
from emulator.validation.fpd_kpd import fpd, kpd
from emulator.validation.samples import SampleSet, ValidationSpec
from emulator.validation.separation import separation_power_with_floor
from emulator.validation.thresholds import ThresholdConfig, evaluate_checks, load_thresholds

__all__ = ["DEFINITIONS", "ValidationConfig", "to_json", "validate", "write_metrics"]

METRICS_SCHEMA = "emulator.validation.metrics/1"

DEFINITIONS: dict[str, str] = {
    "auc_high_level": "ROC AUC of an MLP classifier (generated vs reference) on held-out data, "
    "inputs [condition features, observables] (energies as log10(x+1e-8)); 0.5 = indistinguishable.",
    "auc_low_level": "As auc_high_level on [condition features, full low-level sample vector].",
    "fpd": "Frechet physics distance (jetnet 0.2.5 definition) on the high-level feature vector, "
    "extrapolated to infinite sample size; CaloChallenge quotes fpd x 1e3.",
    "kpd": "Kernel physics distance (jetnet 0.2.5): median unbiased MMD^2 with kernel (x.y/d+1)^4 "
    "over batches; CaloChallenge quotes kpd x 1e3.",
    "w1": "1D Wasserstein-1 distance of the observable divided by the reference's standard deviation.",
    "w1_err": "RMS of w1 over random re-splits of the pooled samples (permutation null): the value "
    "statistics alone produce at these sample sizes.",
    "separation_power": "1/2 sum (h1-h2)^2/(h1+h2) of unit-sum histograms on reference-quantile bins "
    "plus under/overflow (0 identical, 1 disjoint).",
    "separation_power_ref_halves": "Separation power between two random halves of the reference: the noise floor.",
    "auc_given_conditions": "ROC AUC of a gradient-boosted tree classifier (sklearn HistGradientBoosting) on "
    "[condition features, this observable], trained on one half of the samples, AUC on the other: how well the "
    "observable at a fixed condition tells generated from reference (0.5 = not at all). Diagnostic, no threshold.",
    "sliced_wasserstein": "ot.sliced_wasserstein_distance (p=2) on low-level vectors standardised by "
    "the reference; err = permutation-null RMS.",
    "emd": "ot.emd2 exact EMD between subsamples of standardised high-level features; emd_ref_ref = "
    "same between two reference subsamples.",
    "conditioning": "Per condition bin: mean and relative spread (std/mean) of every observable, "
    "generated vs reference, their errors and relative deviations.",
    "statistics": "Per binned statistic of the domain: per-bin means over samples (errors std/sqrt(N)), "
    "ratio gen/ref and dev = (gen - ref)/|ref| per bin (relative_to 'bin') or /max|ref| ('max'), "
    "with its error; counts_* are the entries (pixels, peaks) behind each bin.",
    "passed": "True when every check of the thresholds file passes.",
}


@dataclass(frozen=True)
class ValidationConfig:
    """Settings of every stage; all of it is recorded in metrics.json."""

    seed: int = 0
    n_condition_bins: int = 10
    separation_bins: int = 30  # equal-population reference bins (+ under/overflow)
    w1_null_draws: int = 20
    sliced_projections: int = 128
    sliced_null_draws: int = 3
    sliced_max_samples: int = 20_000  # per sample, to bound the cost of the projections
    emd_subsample: int = 2000
    emd_repeats: int = 3
    fpd_min_samples: int = 10_000  # CaloChallenge's fpd(ref, gen, min_samples=10000)
    fpd_max_samples: int = 50_000
    fpd_num_batches: int = 20
    fpd_num_points: int = 10
    kpd_batch_size: int = 10_000  # CaloChallenge's kpd(ref, gen, batch_size=10000)
    kpd_num_batches: int = 10
    classifier_high_level: bool = True
    classifier_low_level: bool = True
    classifier_per_observable: bool = True  # auc_given_conditions of every observable
    per_observable_max_samples: int = 100_000  # per class
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


def _check_finite(samples: SampleSet, label: str) -> None:
    for name, values in samples.observables.items():
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"{label} observable {name!r} has {int(bad.sum())} non-finite values; fix the samples first"
            )
    if not np.isfinite(samples.low_level).all():
        raise ValueError(f"{label} samples contain NaN or inf values; fix the samples first")
    if not np.isfinite(samples.conditions).all():
        raise ValueError(f"{label} conditions contain NaN or inf values")
    for name, values in samples.binned.items():
        if not np.isfinite(values).all():
            raise ValueError(
                f"{label} binned statistic {name!r} has non-finite values; fix the samples first"
            )


def _check_statistics(
    generated: SampleSet, reference: SampleSet, spec: ValidationSpec, thr: ThresholdConfig
) -> None:
    """Fail early when the thresholds judge statistics the domain or the samples do not provide."""
    known = {s.name for s in spec.binned_statistics}
    unknown = sorted(set(thr.statistics) - known)
    if unknown:
        raise ValueError(
            f"thresholds {thr.name!r} check statistic(s) {unknown} that the {spec.domain} domain does not "
            f"compute (it has {sorted(known) or 'none'}); choose thresholds made for {spec.domain}"
        )
    for stat in spec.binned_statistics:
        for label, samples in (("generated", generated), ("reference", reference)):
            if stat.name not in samples.binned:
                raise ValueError(f"{label} samples lack the binned statistic {stat.name!r}")


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= n else x[rng.choice(len(x), n, replace=False)]


def validate(
    generated: SampleSet,
    reference: SampleSet,
    spec: ValidationSpec,
    thresholds: ThresholdConfig | str | Path | None = None,
    config: ValidationConfig | None = None,
    progress: Callable[[str], None] | None = None,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Compare ``generated`` with ``reference``; returns the metrics dict (see module doc).

    Args:
        generated, reference: the two samples in the validator's terms (``SampleSet``).
        spec: the domain's description of conditions, response and observables.
        thresholds: a loaded config, a path or shipped name, or None for calo_default.
        config: stage settings and seeds (``ValidationConfig()`` by default).
        progress: called with a short message at the start of every stage.
        sources: free-form provenance (file names, model name) copied into the metrics.
    """
    cfg = config or ValidationConfig()
    thr = thresholds if isinstance(thresholds, ThresholdConfig) else load_thresholds(thresholds)
    say = progress or (lambda _msg: None)
    _check_finite(generated, "generated")
    _check_finite(reference, "reference")
    _check_statistics(generated, reference, spec, thr)
    if generated.low_level.shape[1] != reference.low_level.shape[1]:
        raise ValueError(
            f"generated samples have {generated.low_level.shape[1]} values each, reference {reference.low_level.shape[1]}"
        )
    names = [n for n in reference.observables if n in generated.observables]
    missing = sorted(set(reference.observables) ^ set(generated.observables))
    if missing:
        raise ValueError(f"observables present in only one sample: {missing}")
    timing: dict[str, float] = {}
    rng = np.random.default_rng(cfg.seed)
    t_all = time.perf_counter()

    def stage(message: str) -> float:
        say(message)
        return time.perf_counter()

    t = stage(f"1D distances and separation power of {len(names)} observables")
    gen_obs = np.stack([np.asarray(generated.observables[n], dtype=np.float64) for n in names], axis=1)
    ref_obs = np.stack([np.asarray(reference.observables[n], dtype=np.float64) for n in names], axis=1)
    w1 = observable_w1(gen_obs, ref_obs, n_null=cfg.w1_null_draws, seed=cfg.seed)
    observables: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        sep = separation_power_with_floor(gen_obs[:, j], ref_obs[:, j], cfg.separation_bins, seed=cfg.seed)
        observables[name] = {
            "w1": float(w1["w1"][j]),
            "w1_err": float(w1["w1_err"][j]),
            "w1_p_value": float(w1["w1_p_value"][j]),
            "separation_power": sep["separation_power"],
            "separation_power_ref_halves": sep["separation_power_ref_halves"],
            "n_bins": sep["n_bins"],
            "mean_gen": float(gen_obs[:, j].mean()),
            "mean_ref": float(ref_obs[:, j].mean()),
            "std_gen": float(gen_obs[:, j].std()),
            "std_ref": float(ref_obs[:, j].std()),
        }
    timing["observables"] = time.perf_counter() - t

    t = stage(
        f"conditioning checks in {cfg.n_condition_bins} bins of {spec.condition_names[spec.binned_condition]}"
    )
    conditioning = conditioning_table(generated, reference, spec, cfg.n_condition_bins)
    timing["conditioning"] = time.perf_counter() - t

    hl_gen, hl_names = high_level_matrix(generated, spec, names)
    hl_ref, _ = high_level_matrix(reference, spec, names)

    t = stage("sliced Wasserstein (low level) and exact EMD (high level)")
    ll_gen_sub = _subsample(generated.low_level, cfg.sliced_max_samples, rng)
    ll_ref_sub = _subsample(reference.low_level, cfg.sliced_max_samples, rng)
    swd = sliced_wasserstein(ll_gen_sub, ll_ref_sub, cfg.sliced_projections, cfg.sliced_null_draws, cfg.seed)
    swd["n_generated"], swd["n_reference"] = len(ll_gen_sub), len(ll_ref_sub)
    emd = exact_emd(hl_gen, hl_ref, cfg.emd_subsample, cfg.emd_repeats, cfg.seed)
    timing["distances"] = time.perf_counter() - t

    t = stage("FPD")
    n_min = min(len(hl_gen), len(hl_ref))
    fpd_min = min(cfg.fpd_min_samples, n_min)
    fpd_max = max(min(cfg.fpd_max_samples, n_min), fpd_min)
    fpd_val, fpd_err = fpd(
        hl_ref, hl_gen, fpd_min, fpd_max, cfg.fpd_num_batches, cfg.fpd_num_points, seed=42 + cfg.seed
    )
    timing["fpd"] = time.perf_counter() - t
    t = stage("KPD")
    kpd_bs = min(cfg.kpd_batch_size, n_min)
    kpd_val, kpd_err = kpd(hl_ref, hl_gen, cfg.kpd_num_batches, kpd_bs, seed=42 + cfg.seed)
    timing["kpd"] = time.perf_counter() - t

    classifiers: dict[str, Any] = {}
    if cfg.classifier_high_level:
        t = stage(f"classifier on {hl_gen.shape[1]} high-level features")
        classifiers["high_level"] = classifier_auc(hl_gen, hl_ref, cfg.classifier)
        classifiers["high_level"]["features"] = hl_names
        timing["classifier_high_level"] = time.perf_counter() - t
    if cfg.classifier_per_observable:
        t = stage(f"classifier per observable ({len(names)}) at given conditions")
        aucs = per_observable_auc(
            hl_gen, hl_ref, hl_gen.shape[1] - len(names), names, cfg.per_observable_max_samples, cfg.seed
        )
        for name, auc in aucs.items():
            observables[name]["auc_given_conditions"] = auc
        timing["classifier_per_observable"] = time.perf_counter() - t
    if cfg.classifier_low_level:
        t = stage(f"classifier on {generated.low_level.shape[1]} low-level values")
        classifiers["low_level"] = classifier_auc(
            low_level_matrix(generated, spec), low_level_matrix(reference, spec), cfg.classifier
        )
        timing["classifier_low_level"] = time.perf_counter() - t

    statistics: dict[str, Any] = {}
    if spec.binned_statistics:
        t = stage(f"{len(spec.binned_statistics)} binned statistics")
        statistics = compare_all(
            spec.binned_statistics,
            generated.binned,
            reference.binned,
            generated.binned_counts,
            reference.binned_counts,
            generated.groups,
            reference.groups,
        )
        timing["statistics"] = time.perf_counter() - t

    metrics: dict[str, Any] = {
        "schema": METRICS_SCHEMA,
        "passed": False,
        "auc_high_level": classifiers.get("high_level", {}).get("auc"),
        "auc_high_level_err": classifiers.get("high_level", {}).get("auc_err"),
        "auc_low_level": classifiers.get("low_level", {}).get("auc"),
        "auc_low_level_err": classifiers.get("low_level", {}).get("auc_err"),
        "fpd": fpd_val,
        "fpd_err": fpd_err,
        "kpd": kpd_val,
        "kpd_err": kpd_err,
        "fpd_x1e3": fpd_val * 1e3,
        "kpd_x1e3": kpd_val * 1e3,
        "samples": {
            "n_generated": len(generated),
            "n_reference": len(reference),
            "seed": cfg.seed,
            "sources": dict(sources or {}),
        },
        "observables": observables,
        "conditioning": conditioning,
        "distances": {"sliced_wasserstein": swd, "emd": emd},
        "fpd_kpd": {
            "features": hl_names,
            "fpd": {
                "value": fpd_val,
                "err": fpd_err,
                "min_samples": fpd_min,
                "max_samples": fpd_max,
                "num_batches": cfg.fpd_num_batches,
                "num_points": cfg.fpd_num_points,
                "seed": 42 + cfg.seed,
            },
            "kpd": {
                "value": kpd_val,
                "err": kpd_err,
                "batch_size": kpd_bs,
                "num_batches": cfg.kpd_num_batches,
                "seed": 42 + cfg.seed,
            },
        },
        "classifier": classifiers,
        "statistics": statistics,
        "spec": {
            "domain": spec.domain,
            "particle": spec.particle,
            "conditions": list(spec.condition_names),
            "condition_units": list(spec.condition_units),
            "condition_range": list(spec.condition_range),
            "response": spec.response,
            "low_level": spec.low_level_description,
            "low_level_size": int(generated.low_level.shape[1]),
            "binned_statistics": [s.name for s in spec.binned_statistics],
        },
        "config": asdict(cfg),
        "definitions": DEFINITIONS,
        "software": {"python": platform.python_version(), "numpy": np.__version__},
    }
    t = time.perf_counter()
    checks = evaluate_checks(metrics, thr, spec.response)
    metrics["checks"] = checks
    metrics["passed"] = bool(checks) and all(c["passed"] for c in checks)
    metrics["thresholds"] = {
        "name": thr.name,
        "file": thr.path,
        "description": thr.description,
        "values": thr.checks,
        "statistics": thr.statistics,
    }
    timing["checks"] = time.perf_counter() - t
    timing["total"] = time.perf_counter() - t_all
    metrics["timing_s"] = timing
    return metrics


def to_json(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars/arrays to Python, NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(metrics: dict[str, Any], path: str | Path) -> Path:
    """Write ``metrics`` as indented, strictly valid JSON (NaN/inf become null)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_json(metrics), indent=1, allow_nan=False) + "\n")
    return p
