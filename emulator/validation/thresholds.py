"""Pass/fail thresholds: a JSON config file and the checks it drives.

A thresholds file (``emulator/validation/thresholds/*.json``) has a ``name``, a
``description`` and a ``checks`` object with these keys (null disables a check):

* ``auc_high_level_max`` / ``auc_low_level_max``: classifier AUC must not exceed this.
* ``separation_power_max``: no observable may have a larger separation power.
* ``response_mean_rel_tol``: in every condition bin, |mean_dev| of the response.
* ``response_rel_spread_rel_tol``: in every condition bin, |rel_spread_dev| of the response.
* ``observable_mean_rel_tol`` and ``observable_mean_std_tol``: in every condition bin, the
  mean of every observable must agree with the reference to ``rel_tol`` of the mean *or*
  to ``std_tol`` of the reference's spread in that bin (a bin fails only when both are
  exceeded). This catches mis-modelled shower shapes that leave the response alone (energy
  moved between layers, narrower showers) without failing a model for a 6 % offset in a
  feature whose bin-to-bin spread is 200 % of its mean (E_2 of e+ showers), nor for a
  0.5 %-of-mean offset of a feature measured to 0.3 % (the response has its own check).
* ``significance_sigma``: z used by the per-bin checks (below).

An optional ``statistics`` object checks the domain's binned statistics (power spectra,
histograms; ``ValidationSpec.binned_statistics``, compared by ``emulator.validation.binned``),
one entry per statistic name with the keys (null or absent disables a check):

* ``mean_rel_tol``: the mean |deviation| over the checked bins (check ``<name>_mean``);
* ``bin_rel_tol``: |deviation| in every checked bin (check ``<name>_bins``);
* ``min_ref_counts``: bins count only where the reference has at least this many entries
  (pixels, peaks) in total; statistics without counts are not gated.

The deviation is the statistic's (gen - ref) / |ref| per bin (gen/ref - 1), or / max |ref|
for statistics that cross zero; both checks follow the per-bin rule below.

Per-bin checks compare an estimate with a tolerance, and the estimate has a statistical
error. A bin **fails** when its deviation is both *relevant* (|dev| > tolerance) and
*significant* (|dev| > z * error): a deviation beyond tolerance that statistics alone can
explain is not a failure, so small samples do not cry wolf; the tolerance itself is never
widened. Each check also reports ``resolved``: whether z * error < tolerance in every
bin, i.e. whether the samples were large enough to see a deviation of the tolerance's
size at all. With the >= 100k-shower references used for shipped models, errors are far
below the tolerances and the rule reduces to |dev| > tolerance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["THRESHOLDS_DIR", "ThresholdConfig", "evaluate_checks", "load_thresholds", "statistic_checks"]

THRESHOLDS_DIR = Path(__file__).with_name("thresholds")

_KEYS = (
    "auc_high_level_max",
    "auc_low_level_max",
    "separation_power_max",
    "response_mean_rel_tol",
    "response_rel_spread_rel_tol",
    "observable_mean_rel_tol",
    "observable_mean_std_tol",
    "significance_sigma",
)
_STATISTIC_KEYS = ("mean_rel_tol", "bin_rel_tol", "min_ref_counts")


@dataclass(frozen=True)
class ThresholdConfig:
    """A loaded thresholds file: its name, description, source path, check values and
    per-statistic tolerances (``{statistic: {key: value}}``, see the module doc)."""

    name: str
    description: str
    path: str
    checks: dict[str, float | None]
    statistics: dict[str, dict[str, float | None]] = field(default_factory=dict)


def load_thresholds(path: str | Path | None = None) -> ThresholdConfig:
    """Read a thresholds file (default: ``thresholds/calo_default.json``); unknown keys are errors.

    A bare name such as ``"calo_piplus"`` is looked up in the package's ``thresholds/``.
    """
    if path is None:
        path = THRESHOLDS_DIR / "calo_default.json"
    p = Path(path)
    if not p.exists() and p.suffix == "" and (THRESHOLDS_DIR / f"{p.name}.json").exists():
        p = THRESHOLDS_DIR / f"{p.name}.json"
    if not p.exists():
        shipped = ", ".join(sorted(f.stem for f in THRESHOLDS_DIR.glob("*.json")))
        raise FileNotFoundError(f"thresholds file {str(path)!r} not found (shipped: {shipped})")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"thresholds file {p} is not valid JSON: {exc}") from exc
    checks = raw.get("checks")
    if not isinstance(checks, dict):
        raise ValueError(f"thresholds file {p} needs a 'checks' object with keys {', '.join(_KEYS)}")
    unknown = sorted(set(checks) - set(_KEYS))
    if unknown:
        raise ValueError(f"thresholds file {p}: unknown check(s) {unknown}; known: {', '.join(_KEYS)}")
    _check_values(p, checks)
    stats = raw.get("statistics", {})
    if not isinstance(stats, dict) or not all(isinstance(v, dict) for v in stats.values()):
        raise ValueError(f"thresholds file {p}: 'statistics' must map statistic names to objects")
    for stat, tols in stats.items():
        unknown = sorted(set(tols) - set(_STATISTIC_KEYS))
        if unknown:
            raise ValueError(
                f"thresholds file {p}: statistic {stat!r} has unknown key(s) {unknown}; "
                f"known: {', '.join(_STATISTIC_KEYS)}"
            )
        _check_values(p, tols, f"{stat}.")
    full = {key: checks.get(key) for key in _KEYS}
    if full["significance_sigma"] is None:
        full["significance_sigma"] = 0.0
    return ThresholdConfig(
        str(raw.get("name", p.stem)),
        str(raw.get("description", "")),
        _recorded_path(p),
        full,
        {stat: {key: tols.get(key) for key in _STATISTIC_KEYS} for stat, tols in stats.items()},
    )


def _recorded_path(p: Path) -> str:
    """The path a report records: package-relative for the shipped files, so reports carry no machine paths."""
    shipped_dir = THRESHOLDS_DIR.resolve()
    if p.resolve().is_relative_to(shipped_dir):
        return p.resolve().relative_to(shipped_dir.parents[2]).as_posix()  # from the repository root
    return str(p)


def _check_values(path: Path, values: dict[str, Any], prefix: str = "") -> None:
    for key, value in values.items():
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise ValueError(
                f"thresholds file {path}: {prefix}{key} must be a non-negative number or null, got {value!r}"
            )


def _max_check(
    name: str, description: str, value: float | None, limit: float | None, where: str = ""
) -> dict[str, Any]:
    passed = value is not None and np.isfinite(value) and value <= limit
    return {
        "name": name,
        "description": description,
        "threshold": limit,
        "value": value,
        "where": where,
        "passed": bool(passed),
        "resolved": True,
    }


def _per_bin_check(
    name: str,
    description: str,
    dev: list[float],
    err: list[float],
    tol: float,
    z: float,
    labels: list[str],
    n_gen: list[int],
    n_ref: list[int],
    std_shift: list[float] | None = None,
    std_tol: float | None = None,
    ref_rel_spread: list[float] | None = None,
) -> dict[str, Any]:
    """Fail bins whose |dev| is > tol and > z * err (and |std_shift| > std_tol when given);
    bins empty in both samples are skipped.

    A bin the reference populates but the generated sample does not (or vice versa) fails:
    the emulator did not cover a condition range the reference covers.
    """
    dev_a = np.asarray(dev, dtype=np.float64)
    err_a = np.nan_to_num(np.asarray(err, dtype=np.float64), nan=0.0)
    n_g, n_r = np.asarray(n_gen), np.asarray(n_ref)
    skipped = (n_g < 2) & (n_r < 2)
    absdev = np.where(np.isnan(dev_a), np.inf, np.abs(dev_a))
    failing = ~skipped & (absdev > tol) & (absdev > z * err_a)
    effective_tol = np.full(absdev.shape, tol)
    if std_shift is not None and std_tol is not None:
        failing &= ~(np.abs(np.asarray(std_shift, dtype=np.float64)) <= std_tol)
        if ref_rel_spread is not None:  # the relative deviation a bin tolerates through std_tol
            spread = np.nan_to_num(np.asarray(ref_rel_spread, dtype=np.float64), nan=0.0, posinf=0.0)
            effective_tol = np.maximum(effective_tol, std_tol * spread)
    checked = np.flatnonzero(~skipped)
    worst = int(checked[np.argmax(absdev[checked])]) if checked.size else None
    return {
        "name": name,
        "description": description,
        "threshold": tol,
        "value": float(absdev[worst]) if worst is not None else None,
        "value_err": float(err_a[worst]) if worst is not None else None,
        "where": labels[worst] if worst is not None else "",
        "failing": [labels[i] for i in np.flatnonzero(failing)],
        "failing_index": np.flatnonzero(failing).tolist(),
        "skipped": [labels[i] for i in np.flatnonzero(skipped)],
        "passed": bool(checked.size) and not bool(failing.any()),
        "resolved": bool(np.all(z * err_a[~skipped] < effective_tol[~skipped])),
    }


def evaluate_checks(
    metrics: dict[str, Any], config: ThresholdConfig, response: str | None
) -> list[dict[str, Any]]:
    """The pass/fail checks of ``config`` applied to a metrics dict (see ``report.validate``)."""
    c = config.checks
    z = float(c["significance_sigma"] or 0.0)
    checks: list[dict[str, Any]] = []
    for level in ("high_level", "low_level"):
        limit = c[f"auc_{level}_max"]
        if limit is not None:
            auc = metrics.get(f"auc_{level}")
            checks.append(
                _max_check(
                    f"auc_{level}",
                    f"classifier AUC on {level.replace('_', '-')} features <= {limit}",
                    auc,
                    limit,
                )
            )
    if c["separation_power_max"] is not None:
        seps = {n: o["separation_power"] for n, o in metrics["observables"].items()}
        worst = max(seps, key=lambda n: seps[n])
        checks.append(
            _max_check(
                "separation_power",
                f"separation power of every observable <= {c['separation_power_max']}",
                seps[worst],
                c["separation_power_max"],
                worst,
            )
        )
    cond = metrics["conditioning"]
    edges = cond["edges"]
    bin_labels = [
        f"{cond['condition']} {edges[i]:.3g}-{edges[i + 1]:.3g} {cond['unit']}" for i in range(len(edges) - 1)
    ]
    table = cond["observables"]
    n_g, n_r = cond["n_generated"], cond["n_reference"]
    if response is not None and response in table:
        rows = table[response]
        tol = c["response_mean_rel_tol"]
        if tol is not None:
            checks.append(
                _per_bin_check(
                    "response_mean",
                    f"mean {response} within {tol:.1%} of the reference in every {cond['condition']} bin",
                    rows["mean_dev"],
                    rows["mean_dev_err"],
                    tol,
                    z,
                    bin_labels,
                    n_g,
                    n_r,
                )
            )
        tol = c["response_rel_spread_rel_tol"]
        if tol is not None:
            checks.append(
                _per_bin_check(
                    "response_rel_spread",
                    f"relative spread (std/mean) of {response} within {tol:.0%} of the reference in every {cond['condition']} bin",
                    rows["rel_spread_dev"],
                    rows["rel_spread_dev_err"],
                    tol,
                    z,
                    bin_labels,
                    n_g,
                    n_r,
                )
            )
    tol = c["observable_mean_rel_tol"]
    std_tol = c["observable_mean_std_tol"]
    if tol is not None:
        dev, err, shift, spread, labels = [], [], [], [], []
        for name, rows in table.items():
            dev += rows["mean_dev"]
            err += rows["mean_dev_err"]
            shift += rows["std_shift"]
            spread += rows["rel_spread_ref"]
            labels += [f"{name}, {b}" for b in bin_labels]
        either = f" or {std_tol:g} of its spread" if std_tol is not None else ""
        checks.append(
            _per_bin_check(
                "observable_means",
                f"mean of every observable within {tol:.0%} of the reference{either} in every {cond['condition']} bin",
                dev, err, tol, z, labels, n_g * len(table), n_r * len(table), shift, std_tol, spread,
            )
        )  # fmt: skip
    for name, tols in config.statistics.items():
        checks += statistic_checks(name, metrics["statistics"][name], tols, z)
    return checks


def statistic_checks(
    name: str, stat: dict[str, Any], tols: dict[str, float | None], z: float
) -> list[dict[str, Any]]:
    """The ``<name>_mean`` and ``<name>_bins`` checks of one compared binned statistic.

    ``stat`` is :func:`emulator.validation.binned.compare_binned`'s result; ``tols`` the
    statistic's entry of a thresholds file. Only checked bins with at least ``min_ref_counts``
    reference entries count; when none does, both checks fail (nothing could be judged).
    """
    used = np.asarray(stat["checked"], bool)
    gate = tols.get("min_ref_counts")
    where_used = stat["checked_description"] or "all bins"
    if gate is not None and stat["counts_ref"] is not None:
        used &= np.asarray(stat["counts_ref"]) >= gate
        where_used += f" with >= {gate:g} reference counts"
    idx = np.flatnonzero(used)
    dev = np.asarray(stat["dev"], dtype=np.float64)[idx]
    err = np.asarray(stat["dev_err"], dtype=np.float64)[idx]
    labels = [stat["bins"][i] for i in idx]
    n_g, n_r = stat["n_generated"], stat["n_reference"]
    scale = "max |reference|" if stat["relative_to"] == "max" else "the reference"
    checks = []
    tol = tols.get("mean_rel_tol")
    if tol is not None:
        mean_dev = float(np.mean(np.abs(dev))) if idx.size else float("nan")
        mean_err = float(np.sqrt(np.sum(err**2)) / idx.size) if idx.size else 0.0
        checks.append(
            _per_bin_check(
                f"{name}_mean",
                f"{stat['title']}: mean |deviation| from {scale} <= {tol:.0%} over {where_used}",
                [mean_dev], [mean_err], tol, z, [where_used], [n_g if idx.size else 0], [n_r if idx.size else 0],
            )
        )  # fmt: skip
    tol = tols.get("bin_rel_tol")
    if tol is not None:
        checks.append(
            _per_bin_check(
                f"{name}_bins",
                f"{stat['title']}: deviation from {scale} <= {tol:.0%} in every bin ({where_used})",
                dev.tolist(), err.tolist(), tol, z, labels, [n_g] * idx.size, [n_r] * idx.size,
            )
        )  # fmt: skip
    if not idx.size:
        for check in checks:
            check["where"] = f"no bin qualifies ({where_used})"
    return checks
