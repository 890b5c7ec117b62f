"""Validation adapters: what ``emulator validate`` needs from each domain, found by domain name.

An adapter turns one domain's files and generated arrays into the validator's
:class:`~emulator.validation.samples.SampleSet` and :class:`~emulator.validation.samples.ValidationSpec`.
The command never names a domain: with ``--model`` it takes the adapter of the model's domain
(:func:`get_adapter`), with ``--generated`` the one that recognises the reference file
(:func:`adapter_for_file`). Adding a domain to validation is one adapter module plus one
:func:`register_adapter` call; the core and the command do not change.

Adapters are registered as ``"module:attribute"`` strings and imported on first use, so that
validating one domain never imports another's simulator code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from emulator.validation.samples import SampleSet, ValidationSpec

__all__ = [
    "ValidationAdapter",
    "adapter_for_file",
    "adapter_names",
    "get_adapter",
    "hdf5_datasets",
    "register_adapter",
]


@runtime_checkable
class ValidationAdapter(Protocol):
    """One domain's bridge to the validator. ``samples`` are whatever the adapter loads natively.

    Attributes:
        domain: the domain name (``Domain.name``) this adapter serves.
        noun: what one sample is called in messages, e.g. ``"showers"``.
    """

    domain: str
    noun: str

    def recognises(self, path: Path) -> bool:
        """Whether ``path`` is a sample file of this domain (cheap: reads the layout, not the data)."""
        ...

    def load(self, path: Path, max_samples: int | None) -> tuple[Any, dict]:
        """The first ``max_samples`` samples of ``path`` (all if None) and the file's attributes."""
        ...

    def conditions(self, samples: Any) -> np.ndarray:
        """(N, k) conditions of ``samples`` in the order of the domain's conditions."""
        ...

    def from_generated(self, conditions: np.ndarray, samples: np.ndarray) -> Any:
        """A model's output (conditions (N, k), samples (N, *sample_shape)) as native samples."""
        ...

    def label(self, attrs: dict) -> str:
        """Free-text label of samples from file attributes or a model card (calo: the particle)."""
        ...

    def default_thresholds(self, label: str) -> str:
        """Name of the shipped thresholds file for samples with this label."""
        ...

    def spec(self, label: str) -> ValidationSpec:
        """The domain's ``ValidationSpec``."""
        ...

    def to_sampleset(self, samples: Any) -> SampleSet:
        """The validator's view of native samples (observables, binned statistics, images)."""
        ...


_ADAPTERS: dict[str, str | ValidationAdapter] = {
    "calo": "emulator.validation.calo_inputs:CALO_ADAPTER",
    "cosmo": "emulator.validation.cosmo_inputs:COSMO_ADAPTER",
}


def register_adapter(domain: str, adapter: str | ValidationAdapter) -> None:
    """Register ``adapter`` (an object or a lazy ``"module:attribute"`` string) for ``domain``."""
    _ADAPTERS[domain] = adapter


def adapter_names() -> tuple[str, ...]:
    """Domains that have a validation adapter."""
    return tuple(_ADAPTERS)


def get_adapter(domain: str) -> ValidationAdapter:
    """The adapter of ``domain``; ``KeyError`` naming the domains that have one."""
    try:
        entry = _ADAPTERS[domain]
    except KeyError:
        raise KeyError(
            f"no validation adapter for domain {domain!r}; adapters exist for {', '.join(_ADAPTERS)}"
        ) from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = _ADAPTERS[domain] = getattr(importlib.import_module(module), attr)
    return entry


def adapter_for_file(path: str | Path) -> ValidationAdapter:
    """The adapter of the first domain that recognises the file at ``path``; ``ValueError`` if none does."""
    for domain in _ADAPTERS:
        adapter = get_adapter(domain)
        if adapter.recognises(Path(path)):
            return adapter
    raise ValueError(f"{path} is not a sample file of any validated domain ({', '.join(_ADAPTERS)})")


def hdf5_datasets(path: str | Path) -> frozenset[str]:
    """Names of the top-level datasets of an HDF5 file; empty when ``path`` is not readable HDF5."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return frozenset(k for k, v in f.items() if isinstance(v, h5py.Dataset))
    except OSError:
        return frozenset()
