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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["THRESHOLDS_DIR", "ThresholdConfig", "evaluate_checks", "load_thresholds"]

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


@dataclass(frozen=True)
class ThresholdConfig:
    """A loaded thresholds file: its name, description, source path and check values."""

    name: str
    description: str
    path: str
    checks: dict[str, float | None]


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
    for key, value in checks.items():
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise ValueError(
                f"thresholds file {p}: {key} must be a non-negative number or null, got {value!r}"
            )
    full = {key: checks.get(key) for key in _KEYS}
    if full["significance_sigma"] is None:
        full["significance_sigma"] = 0.0
    return ThresholdConfig(str(raw.get("name", p.stem)), str(raw.get("description", "")), str(p), full)


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
    return checks
