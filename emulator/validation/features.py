"""Feature matrices shared by the classifier, FPD/KPD and the distances.

* **high-level**: [condition features, observables], with ``log10(x + 1e-8)`` for the
  observables the domain marks as spanning decades (CaloChallenge uses
  ``log10(E + 1e-8)`` for layer energies) and the condition as log10 when the domain
  asks for it (CaloChallenge: ``log10 E_inc``).
* **low-level**: [condition features, ``SampleSet.low_level``] (CaloChallenge:
  ``[log10 E_inc, voxels / E_inc]``).

:class:`Standardizer` centres and scales by the *reference's* mean and standard
deviation (features constant in the reference are only centred), so the scale of every
comparison is fixed by the reference and never by the sample under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.validation.samples import SampleSet, ValidationSpec

__all__ = ["LOG_OFFSET", "Standardizer", "condition_features", "high_level_matrix", "low_level_matrix"]

LOG_OFFSET = 1e-8
"""Added before log10, as in CaloChallenge's high-level classifier input."""


def condition_features(samples: SampleSet, spec: ValidationSpec) -> tuple[np.ndarray, list[str]]:
    """The conditions as classifier inputs: log10 when ``spec.log_conditions``, else as is."""
    cond = samples.conditions
    if spec.log_conditions:
        if np.any(cond <= 0):
            raise ValueError("log_conditions needs positive condition values")
        return np.log10(cond), [f"log10 {n}" for n in spec.condition_names]
    return cond.copy(), list(spec.condition_names)


def high_level_matrix(
    samples: SampleSet, spec: ValidationSpec, names: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """(N, k + F) float64 matrix [conditions, observables] and its column names."""
    names = list(samples.observables) if names is None else names
    cond, cond_names = condition_features(samples, spec)
    cols = [cond]
    labels = list(cond_names)
    for name in names:
        values = np.asarray(samples.observables[name], dtype=np.float64)
        if name in spec.log_observables:
            values = np.log10(np.clip(values, 0.0, None) + LOG_OFFSET)
            labels.append(f"log10 {name}")
        else:
            labels.append(name)
        cols.append(values[:, None])
    return np.concatenate(cols, axis=1), labels


def low_level_matrix(samples: SampleSet, spec: ValidationSpec) -> np.ndarray:
    """(N, k + D) float32 matrix [conditions, low_level]."""
    cond, _ = condition_features(samples, spec)
    return np.concatenate([cond.astype(np.float32), samples.low_level.astype(np.float32)], axis=1)


@dataclass(frozen=True)
class Standardizer:
    """x -> (x - mean) / scale with mean and scale of the reference (scale 1 where constant)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, reference: np.ndarray) -> Standardizer:
        """Per-column mean and standard deviation of ``reference`` (N, F)."""
        ref = np.asarray(reference, dtype=np.float64)
        mean = ref.mean(axis=0)
        std = ref.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        return cls(mean, scale)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Standardised copy of ``x``, in x's float precision (float64 for non-float input)."""
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return (x.astype(dtype, copy=False) - self.mean.astype(dtype)) / self.scale.astype(dtype)
