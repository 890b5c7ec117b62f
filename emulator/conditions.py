"""Parse user-given conditions (scalars, lists, distributions, CLI strings) into a drawable spec.

Accepted forms for ``parse_conditions(domain, raw, n)``:

* a scalar or a CLI string, for domains with one condition: ``50``, ``"50"``, ``"1:100"``;
* a mapping per condition name: ``{"energy": 50}``, ``{"energy": [..n values..]}``,
  ``{"energy": {"uniform": [1, 100]}}``, ``{"energy": {"log_uniform": [1, 100]}}``, or
  a CLI string ``{"energy": "1:100"}``.

CLI strings (``parse_condition_text``): ``"50"`` fixed, ``"1:100"`` uniform,
``"1:100:log"`` log-uniform, ``"10,20,50"`` a list (one value per sample).

>>> from emulator.domains import get_domain
>>> spec = parse_conditions(get_domain("calo"), "1:100", n=3)
>>> spec.draw(0, 3, np.random.default_rng(0)).shape
(3, 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emulator.domains.base import Domain

__all__ = ["ConditionError", "ConditionSpec", "ConditionValue", "parse_condition_text", "parse_conditions"]

DISTRIBUTIONS = ("uniform", "log_uniform")


class ConditionError(ValueError):
    """A requested condition is malformed or outside the model's valid range."""


@dataclass(frozen=True)
class ConditionValue:
    """How one condition is set: ``kind`` is "fixed", "array", "uniform" or "log_uniform"."""

    name: str
    kind: str
    value: float | None = None  # fixed
    values: np.ndarray | None = None  # array, one per sample
    low: float | None = None  # distributions
    high: float | None = None

    def draw(self, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
        """Values for samples [start, stop) as float64."""
        m = stop - start
        if self.kind == "fixed":
            return np.full(m, self.value, dtype=np.float64)
        if self.kind == "array":
            return np.asarray(self.values[start:stop], dtype=np.float64)
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, size=m)
        return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=m))

    def describe(self) -> Any:
        """JSON-ready description (for file attributes and model metadata)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "array":
            return {
                "array": {
                    "n": len(self.values),
                    "min": float(self.values.min()),
                    "max": float(self.values.max()),
                }
            }
        return {self.kind: [self.low, self.high]}


@dataclass
class ConditionSpec:
    """The conditions of an n-sample request, one ``ConditionValue`` per domain condition (domain order)."""

    values: tuple[ConditionValue, ...]
    n: int
    extrapolated: bool = False
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(v.name for v in self.values)

    def draw(self, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
        """(stop - start, k) float32 conditions for samples [start, stop); conditions are drawn in order."""
        if not 0 <= start <= stop <= self.n:
            raise ValueError(f"sample range [{start}, {stop}) is outside [0, {self.n})")
        cols = [v.draw(start, stop, rng) for v in self.values]
        return np.stack(cols, axis=1).astype(np.float32)

    def describe(self) -> dict:
        """``{name: description}`` for file attributes and logs."""
        return {v.name: v.describe() for v in self.values}


def parse_condition_text(text: str) -> Any:
    """Turn a CLI string into a raw value: ``"50"`` -> 50.0, ``"1:100"`` -> uniform, ``"1:100:log"`` -> log-uniform,
    ``"10,20"`` -> [10.0, 20.0].

    >>> parse_condition_text("1:100:log")
    {'log_uniform': [1.0, 100.0]}
    """
    s = text.strip()
    try:
        if "," in s:
            return [float(p) for p in s.split(",")]
        parts = s.split(":")
        if len(parts) == 1:
            return float(s)
        if len(parts) == 2:
            return {"uniform": [float(parts[0]), float(parts[1])]}
        if len(parts) == 3 and parts[2].strip() in ("log", "log_uniform"):
            return {"log_uniform": [float(parts[0]), float(parts[1])]}
    except ValueError:
        pass
    raise ConditionError(
        f"cannot parse condition {text!r}: use a number (50), a range LO:HI (1:100), LO:HI:log, or a list 10,20,50"
    )


def _check_value(cond, v: float, allow: bool, what: str) -> bool:
    """Validate one number; returns True when it lies outside the valid range."""
    if not math.isfinite(v):
        raise ConditionError(f"{cond.name}: {what} {v} is not a finite number")
    if cond.contains(v):
        return False
    if not allow:
        raise ConditionError(
            f"{cond.name} = {v:g} {cond.unit} is outside the model's valid range "
            f"[{cond.low:g}, {cond.high:g}] {cond.unit} (extrapolation is not allowed)"
        )
    return True


def _parse_one(cond, raw: Any, n: int, allow: bool) -> tuple[ConditionValue, bool]:
    if isinstance(raw, str):
        raw = parse_condition_text(raw)
    if isinstance(raw, bool):
        raise ConditionError(f"{cond.name}: expected a number, list or distribution, got {raw!r}")
    if isinstance(raw, (int, float, np.integer, np.floating)):
        v = float(raw)
        return ConditionValue(cond.name, "fixed", value=v), _check_value(cond, v, allow, "value")
    if isinstance(raw, Mapping):
        if len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
            raise ConditionError(
                f"{cond.name}: a distribution must be {{'uniform': [lo, hi]}} or {{'log_uniform': [lo, hi]}}, got {raw!r}"
            )
        kind, bounds = next(iter(raw.items()))
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ConditionError(f"{cond.name}: {kind} needs two numbers [lo, hi], got {bounds!r}") from None
        if not lo <= hi:
            raise ConditionError(f"{cond.name}: {kind} range [{lo:g}, {hi:g}] has lo > hi")
        if kind == "log_uniform" and lo <= 0:
            raise ConditionError(f"{cond.name}: log_uniform needs lo > 0, got {lo:g}")
        out = _check_value(cond, lo, allow, "lower bound") | _check_value(cond, hi, allow, "upper bound")
        if lo == hi:
            return ConditionValue(cond.name, "fixed", value=lo), out
        return ConditionValue(cond.name, kind, low=lo, high=hi), out
    if isinstance(raw, (Sequence, np.ndarray)):
        try:
            arr = np.asarray(raw, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ConditionError(f"{cond.name}: list values must be numbers") from None
        if arr.shape[0] != n:
            raise ConditionError(
                f"{cond.name}: got {arr.shape[0]} values for {n} samples; give one per sample"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ConditionError(
                f"{cond.name}: value {arr[bad][0]} at index {int(np.argmax(bad))} is not finite"
            )
        outside = (arr < cond.low) | (arr > cond.high)
        if outside.any() and not allow:
            i = int(np.argmax(outside))
            _check_value(cond, float(arr[i]), False, "value")
        return ConditionValue(cond.name, "array", values=arr), bool(outside.any())
    raise ConditionError(f"{cond.name}: expected a number, list or distribution, got {type(raw).__name__}")


def parse_conditions(domain: Domain, raw: Any, n: int, allow_extrapolation: bool = False) -> ConditionSpec:
    """Validate ``raw`` against ``domain.conditions`` for an ``n``-sample request.

    Raises ``ConditionError`` naming the condition, the bad value and the valid range.
    """
    if n < 0:
        raise ConditionError(f"number of samples must be >= 0, got {n}")
    names = [c.name for c in domain.conditions]
    if not isinstance(raw, Mapping):
        if len(names) != 1:
            raise ConditionError(
                f"domain {domain.name!r} has conditions {names}; give a mapping name -> value"
            )
        raw = {names[0]: raw}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConditionError(f"unknown condition(s) {unknown} for domain {domain.name!r}; expected {names}")
    missing = [name for name in names if name not in raw]
    if missing:
        raise ConditionError(f"missing condition(s) {missing} for domain {domain.name!r}")
    values, extrapolated = [], False
    for cond in domain.conditions:
        value, out = _parse_one(cond, raw[cond.name], n, allow_extrapolation)
        values.append(value)
        extrapolated |= out
    return ConditionSpec(tuple(values), n=n, extrapolated=extrapolated)
