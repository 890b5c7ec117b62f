"""Fast, reproducible batched generation from a shipped model directory.

Generation runs in fixed blocks of ``BLOCK_SIZE`` samples. Block b draws its conditions
from ``numpy.random.default_rng([seed, b])`` and its latent noise from a ``torch.Generator``
on the sampling device seeded from ``(seed, b)``, so a block's output depends only on
(model, conditions, seed, b): the same bytes whatever the transport chunking, the number
of workers sharing the blocks, or where a resumed run restarts. Bytes are identical on one
device type and thread setting. CPU and CUDA draw different noise streams (torch's CPU and
CUDA generators differ), so the same seed gives the same conditions but other showers on a
GPU: drawn on the CPU, the noise alone would cap a GPU at what one CPU core draws (the calo
models' 635 values per shower: ~20M showers/min on the development CPU).

Speed: one matrix-multiply chain per block under ``torch.inference_mode`` in float32, no
per-sample Python, and ``generate`` writes every block straight into one preallocated array.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emulator.calibration import CALIBRATION_FILE, MarginalCalibration, calibrate_samples
from emulator.conditions import ConditionSpec
from emulator.domains import Domain, decode_samples

__all__ = ["BLOCK_SIZE", "SampleBlock", "Sampler", "block_seed", "default_torch_threads", "resolve_device"]

BLOCK_SIZE = 8192
CPU_FORWARD_ROWS = 1024  # CPU forward passes in fixed slices of a block: the activations stay in cache


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def block_seed(seed: int, block: int) -> int:
    """A 63-bit torch seed for block ``block`` of a run seeded ``seed`` (independent streams per block)."""
    if seed < 0 or block < 0:
        raise ValueError(f"seed and block index must be non-negative, got seed={seed}, block={block}")
    lo, hi = np.random.SeedSequence([seed, block]).generate_state(2, dtype=np.uint32)
    return int(lo) | (int(hi) & 0x7FFFFFFF) << 32


def default_torch_threads() -> int:
    """Torch CPU threads for generation in the service and the pipeline: all cores.

    Measured on the 2-core development machine, quiet, with the shipped calo-eplus generator
    (``benchmarks/bench_service.py``): 2 threads served 2.1-2.7M showers/min over HTTP and wrote
    2.1M/min to HDF5; 1 thread (leaving a core to the transport) 1.7-1.9M/min and 1.8M/min. On a
    machine loaded by other jobs the OpenMP threads spin against the transport and 1 thread can
    be several times faster (a tiny MLP: 210k vs 60-76k samples/s); set ``--torch-threads 1`` there.
    """
    return max(1, os.cpu_count() or 1)


@dataclass
class SampleBlock:
    """Samples [index*BLOCK_SIZE, ...) of a run, in physical units."""

    index: int
    conditions: np.ndarray  # (m, k) float32
    samples: np.ndarray  # (m, *sample_shape) float32


class Sampler:
    """A generator, its domain and card, ready to produce samples for given conditions and seed."""

    def __init__(
        self,
        generator: nn.Module,
        domain: Domain,
        card: dict,
        name: str,
        device: torch.device,
        calibration: MarginalCalibration | None = None,
    ) -> None:
        self.calibration = calibration  # applied to every decoded sample (see emulator.calibration)
        self.generator = generator.to(device).eval().requires_grad_(False)
        # a model may offer a faster inference form of the same function (MLPGenerator does)
        self.forward = generator.for_sampling() if hasattr(generator, "for_sampling") else self.generator
        self.domain = domain
        self.card = card
        self.name = name
        self.device = device
        self.noise_dim = int(generator.noise_dim)

    @classmethod
    def from_dir(cls, path: str | Path, device: str = "auto", calibrated: bool = True) -> Sampler:
        """Load a shipped model directory (config.json + generator.safetensors + card.json).

        Its ``calibration.safetensors``, when present, is applied unless ``calibrated`` is False
        (how ``emulator calibrate`` sees the bare generator).
        """
        from emulator.checkpoint import load_model_dir

        dev = resolve_device(device)
        loaded = load_model_dir(path, device=dev)
        name = loaded.card.get("name") or Path(path).name
        calibration_file = Path(path) / CALIBRATION_FILE
        calibration = MarginalCalibration.load(calibration_file) if calibrated and calibration_file.is_file() else None
        return cls(loaded.generator, loaded.domain, loaded.card, name, dev, calibration)

    def _decode(
        self, z: torch.Tensor, features: torch.Tensor, cond: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        samples = decode_samples(self.domain, self.forward(z, features), cond, g)  # g: a domain's own draws
        if self.calibration is None:
            return samples
        return calibrate_samples(self.domain, self.calibration, samples, cond, features)

    def n_blocks(self, n: int) -> int:
        """Number of blocks an ``n``-sample run is split into."""
        return math.ceil(n / BLOCK_SIZE)

    @torch.inference_mode()
    def _block_tensors(
        self, b: int, n: int, conditions: ConditionSpec, seed: int
    ) -> tuple[np.ndarray, torch.Tensor]:
        start, stop = b * BLOCK_SIZE, min(n, (b + 1) * BLOCK_SIZE)
        cond = conditions.draw(start, stop, np.random.default_rng([seed, b]))
        cond_t = torch.from_numpy(cond).to(self.device)
        features = self.domain.condition_features(cond_t)
        g = torch.Generator(device=self.device).manual_seed(block_seed(seed, b))
        z = torch.randn(stop - start, self.noise_dim, generator=g, device=self.device)  # on the device: see top
        if self.device.type != "cpu":
            return cond, self._decode(z, features, cond_t, g)
        # fixed slices, so the bytes depend on nothing but the block; each slice is decoded while
        # its activations are in cache (decoding whole blocks was 12 % of the CPU time)
        samples = torch.empty(stop - start, *self.domain.sample_shape)
        for i in range(0, stop - start, CPU_FORWARD_ROWS):
            rows = slice(i, i + CPU_FORWARD_ROWS)
            samples[rows] = self._decode(z[rows], features[rows], cond_t[rows], g)
        return cond, samples

    def _check(self, n: int, conditions: ConditionSpec, start_block: int, stop_block: int | None) -> int:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if conditions.n != n:
            raise ValueError(f"conditions were parsed for {conditions.n} samples but n={n}")
        total = self.n_blocks(n)
        stop = total if stop_block is None else stop_block
        if not 0 <= start_block <= stop <= total:
            raise ValueError(f"block range [{start_block}, {stop}) is outside [0, {total}] for n={n}")
        return stop

    def iter_blocks(
        self,
        n: int,
        conditions: ConditionSpec,
        seed: int,
        start_block: int = 0,
        stop_block: int | None = None,
    ) -> Iterator[SampleBlock]:
        """Yield blocks ``start_block`` .. ``stop_block - 1`` of an ``n``-sample run seeded ``seed``."""
        stop = self._check(n, conditions, start_block, stop_block)
        for b in range(start_block, stop):
            cond, samples = self._block_tensors(b, n, conditions, seed)
            yield SampleBlock(index=b, conditions=cond, samples=samples.cpu().numpy())

    def generate(self, n: int, conditions: ConditionSpec, seed: int) -> SampleBlock:
        """All ``n`` samples at once (index 0), written block by block into preallocated arrays."""
        self._check(n, conditions, 0, None)
        k = len(self.domain.conditions)
        out = np.empty((n, *self.domain.sample_shape), dtype=np.float32)
        cond_out = np.empty((n, k), dtype=np.float32)
        for b in range(self.n_blocks(n)):
            start = b * BLOCK_SIZE
            cond, samples = self._block_tensors(b, n, conditions, seed)
            stop = start + len(cond)
            cond_out[start:stop] = cond
            torch.from_numpy(out[start:stop]).copy_(samples)
        return SampleBlock(index=0, conditions=cond_out, samples=out)
