"""The Domain protocol: everything the trainer, sampler and service need to know about one kind of simulation.

A domain is a plain object (usually a module-level singleton) that says what one sample
looks like, which conditions it depends on and their valid ranges, how samples map to
and from the space the networks work in, which physics statistics describe a sample,
and how samples are written to files. Adding a domain is one file plus one
``register_domain`` call; nothing in the trainer, sampler or service changes.

Optional extras a domain may define (the trainer uses them when present):

* ``critic_feature_dim: int`` and ``critic_features(x, conditions) -> (B, critic_feature_dim)``:
  differentiable physics summaries of network-space samples given to the critic.
* ``consistency_statistics(x, conditions) -> (B,) or (B, K)``: differentiable per-sample
  statistics of network-space samples whose distribution per condition the trainer's optional
  consistency term matches (``energy_weight``; calo: E_tot / E_inc; cosmo: peak counts by height and P(k) band powers).
* ``read_samples(path, n=None) -> (conditions (N, k), samples (N, *sample_shape), attrs)``:
  training data from a file (needed by ``emulator train``).
* ``output_activation: str``: the generator's final activation, e.g. "tanh" when network space
  is bounded (cosmo); "none" (the default) otherwise.
* ``generator_extra_outputs: int`` and ``network_output(raw, conditions) -> x``: the generator
  emits ``generator_extra_outputs`` values beyond the sample, and ``network_output`` maps that
  raw output to a network-space sample (calo: an explicit response that normalises the cells).
  Use ``generator_output_size`` and ``network_sample`` rather than calling them directly.
* ``decode(raw, conditions) -> physical``: ``from_network(network_sample(raw))`` fused, for
  sampling speed (no autograd); ``decode_samples`` uses it when present.
* ``random_output: bool``: ``network_output`` and ``decode`` draw random numbers of their own (calo's
  Poisson spots); they then take ``generator=`` (a ``torch.Generator`` on the samples' device, or
  None for torch's global one), which the sampler passes so that a seed still fixes every sample.
* ``calibration_values(samples, conditions) -> (B, M)``, ``with_calibration_values(samples,
  conditions, values, calibrated) -> samples`` and ``calibration_space: (offset, step)``: which
  values of physical samples ``emulator calibrate`` maps and how they go back (calo: the
  response, scaling the shower); default: every value, pooled (cosmo: the pixels). See
  ``emulator.calibration``. ``calibration_fit: dict`` overrides ``emulator calibrate``'s defaults
  {"degree": 4, "per_point": 24} (calo: 6 and 1, one shower per training energy) and turns on
  the spectral stage for square periodic fields (``"spectral_iterations"``, cosmo: 3; see
  ``emulator.spectral_calibration``).
* ``quick_val_observables: tuple[str, ...]``: the observables used for checkpoint selection.
* ``preprocessing: dict``: a JSON description of the transform, saved in ``config.json``; its
  ``"name"`` identifies the variant.
* ``with_preprocessing(name) -> Domain``: the same domain with another named preprocessing
  variant (ValueError for an unknown one). Training selects one by name (``preprocessing`` in the
  config) and loading a model picks the one recorded in its ``config.json``, via ``get_domain``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["Condition", "Domain", "SampleWriter", "decode_samples", "generator_output_size", "network_sample"]


@dataclass(frozen=True)
class Condition:
    """One conditioning variable of a domain and its valid (trained) range.

    Attributes:
        name: key used in requests and files, e.g. ``"energy"``.
        unit: physical unit of the values, e.g. ``"GeV"``.
        low, high: inclusive valid range; values outside are extrapolation.
        description: one line for users (API listing, docs).
        log_scale: True when the natural way to spread values over the range is logarithmic.
    """

    name: str
    unit: str
    low: float
    high: float
    description: str
    log_scale: bool = False

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the valid range (inclusive)."""
        return self.low <= value <= self.high


@runtime_checkable
class SampleWriter(Protocol):
    """A context manager that appends (conditions, samples) batches to one file, atomically."""

    def __enter__(self) -> SampleWriter: ...

    def __exit__(self, *exc: object) -> Any: ...

    def append(self, conditions: np.ndarray, samples: np.ndarray) -> None:
        """Append ``conditions`` (m, k) and ``samples`` (m, *sample_shape) in physical units."""
        ...


@runtime_checkable
class Domain(Protocol):
    """What a kind of simulation must provide to be trained, sampled, validated and served."""

    name: str
    sample_shape: tuple[int, ...]
    conditions: tuple[Condition, ...]
    layout: str
    file_formats: tuple[str, ...]

    def to_network(self, samples: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Physical samples (B, *sample_shape) -> network space; exactly inverted by ``from_network``."""
        ...

    def from_network(self, x: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Network space -> physical samples; physical by construction."""
        ...

    def condition_features(self, conditions: torch.Tensor) -> torch.Tensor:
        """Conditions (B, k) in physical units -> normalised network inputs (B, k)."""
        ...

    def observables(self, samples: np.ndarray, conditions: np.ndarray) -> dict[str, np.ndarray]:
        """Physics statistics of each sample: ``{name: (N,) array}``."""
        ...

    def open_writer(self, path: str | Path, fmt: str, attrs: dict, compression: str | None = "lzf") -> SampleWriter:
        """Open an atomic writer for ``path`` in file format ``fmt`` (one of ``file_formats``).

        ``compression`` is an HDF5 filter: ``None`` (fastest, readable everywhere), ``"lzf"``
        (fast, h5py/PyTables only) or ``"gzip"`` (smallest, readable everywhere, slow).
        """
        ...


def generator_output_size(domain: Domain) -> int:
    """Values a flat generator emits per sample: the sample's size plus the domain's extras."""
    return math.prod(domain.sample_shape) + int(getattr(domain, "generator_extra_outputs", 0))


def _draws(domain: Domain, generator: torch.Generator | None) -> dict:
    """Keyword arguments for a domain's output mapping: its random generator if it draws (``random_output``)."""
    return {"generator": generator} if getattr(domain, "random_output", False) else {}


def network_sample(
    domain: Domain, raw: torch.Tensor, conditions: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A generator's raw output -> the network-space sample (the identity unless the domain maps it).

    ``generator`` feeds the mapping's own draws, if it makes any (``random_output``); None: torch's global one.
    """
    mapping = getattr(domain, "network_output", None)
    return raw if mapping is None else mapping(raw, conditions, **_draws(domain, generator))


def decode_samples(
    domain: Domain, raw: torch.Tensor, conditions: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A generator's raw output -> physical samples (B, *sample_shape), via the domain's fused ``decode`` if any.

    ``generator``: as in ``network_sample``.
    """
    fused = getattr(domain, "decode", None)
    if fused is not None:
        return fused(raw, conditions, **_draws(domain, generator))
    x = network_sample(domain, raw, conditions, generator)
    return domain.from_network(x.view(len(x), *domain.sample_shape), conditions)
