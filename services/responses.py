"""Build the HTTP response of one validated sample request, in its format (npy, hdf5 or json).

Each builder owns the generation slot it is given and releases it exactly once: when the
stream has been sent, when generation fails, or as soon as the worker thread has stopped
after a client disconnect. Encodings are described in :mod:`services.encoders`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from emulator.conditions import ConditionSpec
from emulator.sampler import Sampler
from services.encoders import encode_npy_block, iter_file, json_payload, npy_header, sample_width
from services.limits import Slot
from services.metrics import Metrics
from services.streaming import BlockStream, GenerationResponse, run_blocking

__all__ = ["GenerationFailed", "SampleJob", "build_response", "npy_columns"]

MEDIA_TYPES = {"npy": "application/x-npy", "hdf5": "application/x-hdf5", "json": "application/json"}


class _Cancelled(Exception):
    """The client went away while an HDF5 response was being generated."""


@dataclass
class SampleJob:
    """A validated request: what to generate and how to encode it."""

    model: str
    sampler: Sampler
    n: int
    spec: ConditionSpec
    seed: int
    fmt: str  # npy | hdf5 | json
    dtype: np.dtype
    file_format: str  # hdf5 only: one of the domain's file formats

    @property
    def blocks(self) -> Iterator[Any]:
        """The sampler's blocks for this request (a fresh generator)."""
        return self.sampler.iter_blocks(self.n, self.spec, self.seed)


def npy_columns(domain: Any) -> str:
    """Human description of the npy column layout of ``domain`` (headers, /v1/models, docs)."""
    k = len(domain.conditions)
    d = sample_width(tuple(domain.sample_shape))
    conds = ", ".join(f"{c.name} [{c.unit}]" for c in domain.conditions)
    return (
        f"shape (n, {k + d}): columns 0..{k - 1} = conditions ({conds}); "
        f"columns {k}..{k + d - 1} = sample values, sample_shape {tuple(domain.sample_shape)}"
    )


def _ascii(text: str) -> str:
    """Header values must be latin-1; keep them plain ASCII."""
    return text.encode("ascii", "replace").decode()


def _layout(job: SampleJob) -> str:
    """One line for the X-Emulator-Layout header: how to find conditions and samples in this body."""
    if job.fmt == "npy":
        return npy_columns(job.sampler.domain)
    if job.fmt == "hdf5":
        return f"hdf5 file, {job.file_format} layout (conditions and samples as datasets)"
    return "json: conditions [n][k], samples [n][D] (flattened sample_shape)"


def _headers(job: SampleJob, extension: str) -> dict[str, str]:
    domain = job.sampler.domain
    headers = {
        "X-Emulator-Model": job.model,
        "X-Emulator-Seed": str(job.seed),
        "X-Emulator-N": str(job.n),
        "X-Emulator-Layout": _ascii(_layout(job)),
        "X-Emulator-Conditions": ",".join(c.name for c in domain.conditions),
        "Content-Disposition": f'attachment; filename="{job.model}_seed{job.seed}_n{job.n}.{extension}"',
    }
    if job.spec.extrapolated:
        headers["X-Emulator-Extrapolated"] = "true"
    return headers


def _file_attrs(job: SampleJob) -> dict[str, Any]:
    card = job.sampler.card or {}
    return {
        "model": job.model,
        "model_version": str(card.get("version", "")),
        "domain": job.sampler.domain.name,
        "seed": job.seed,
        "conditions": json.dumps(job.spec.describe()),
        "extrapolated": bool(job.spec.extrapolated),
        "generator": "emulator sample service",
    }


def _npy_response(job: SampleJob, executor: concurrent.futures.Executor, slot: Slot, metrics: Metrics) -> Response:
    domain = job.sampler.domain
    width = len(domain.conditions) + sample_width(tuple(domain.sample_shape))
    header = npy_header(job.n, width, job.dtype)
    metrics.bytes.labels(job.model, "npy").inc(len(header))
    start = time.perf_counter()

    def on_chunk(block: Any, chunk: bytes) -> None:
        metrics.samples.labels(job.model, "npy").inc(len(block.conditions))
        metrics.bytes.labels(job.model, "npy").inc(len(chunk))

    def on_close() -> None:
        slot.release()
        metrics.generation.labels(job.model).observe(time.perf_counter() - start)

    stream = BlockStream(
        executor, job.blocks, lambda b: encode_npy_block(b, job.dtype), on_close, on_chunk, prefix=header
    )
    headers = _headers(job, "npy")
    # The size is known up front: clients and curl can show progress and detect a cut stream.
    headers["Content-Length"] = str(len(header) + job.n * width * job.dtype.itemsize)
    return GenerationResponse(stream, media_type=MEDIA_TYPES["npy"], headers=headers)


class GenerationFailed(Exception):
    """Generation or encoding failed before any byte was sent; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _input_caused(job: SampleJob, exc: Exception) -> GenerationFailed | None:
    """Unstorable output caused by the request itself (a 422, not a server error): float16 overflow
    (values above 65504) or conditions so far outside the valid range that the output is not finite."""
    if not isinstance(exc, ValueError):
        return None
    if job.dtype == np.float16:
        return GenerationFailed(f"values exceed the float16 range (max 65504) ({exc}); use dtype=float32")
    if job.spec.extrapolated:
        return GenerationFailed(
            f"the model produced values that cannot be stored ({exc}); the requested conditions are too far "
            "outside the valid range even with allow_extrapolation"
        )
    return None


async def _hdf5_response(
    job: SampleJob,
    executor: concurrent.futures.Executor,
    slot: Slot,
    metrics: Metrics,
    tmp_dir: Path | None,
    request: Request,
) -> Response:
    """Generate into a temporary HDF5 file (HDF5 needs seeks), then stream it and delete it.

    The file is complete before the response starts, so generation errors are proper HTTP errors
    and the Content-Length is known. A client that disconnects meanwhile stops the generation.
    """
    workdir = Path(tempfile.mkdtemp(prefix="emulator-hdf5-", dir=tmp_dir))
    path = workdir / f"{job.model}.h5"
    cancel = threading.Event()
    start = time.perf_counter()
    loop = asyncio.get_running_loop()

    def build() -> None:
        with job.sampler.domain.open_writer(path, job.file_format, _file_attrs(job)) as writer:
            for block in job.blocks:
                if cancel.is_set():
                    raise _Cancelled  # the writer removes its temporary file
                writer.append(block.conditions, block.samples)

    def cleanup() -> None:  # in the event loop
        slot.release()
        shutil.rmtree(workdir, ignore_errors=True)

    built = executor.submit(build)
    waiting = asyncio.wrap_future(built)
    waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody awaits it
    try:
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(waiting), timeout=0.25)
                break
            except TimeoutError:
                if await request.is_disconnected():
                    raise _Cancelled from None
    except BaseException as exc:
        cancel.set()
        # The worker may still be inside a block: clean up once it has stopped.
        built.add_done_callback(lambda _f: loop.call_soon_threadsafe(cleanup))
        if isinstance(exc, _Cancelled):
            return Response(status_code=499)  # nobody is listening any more
        if isinstance(exc, Exception) and (failed := _input_caused(job, exc)):
            raise failed from exc
        raise
    metrics.samples.labels(job.model, "hdf5").inc(job.n)
    metrics.generation.labels(job.model).observe(time.perf_counter() - start)

    def on_chunk(chunk: bytes, _same: bytes) -> None:
        metrics.bytes.labels(job.model, "hdf5").inc(len(chunk))

    size = path.stat().st_size
    stream = BlockStream(executor, iter_file(path), lambda c: c, cleanup, on_chunk)
    headers = _headers(job, "h5") | {"Content-Length": str(size)}
    return GenerationResponse(stream, media_type=MEDIA_TYPES["hdf5"], headers=headers)


async def _json_response(job: SampleJob, executor: concurrent.futures.Executor, slot: Slot, metrics: Metrics) -> Response:
    names = [c.name for c in job.sampler.domain.conditions]
    start = time.perf_counter()
    try:
        payload = await run_blocking(executor, lambda: json_payload(job.model, job.seed, names, job.blocks, job.dtype))
    except ValueError as exc:
        if failed := _input_caused(job, exc):
            raise failed from exc
        raise
    finally:
        slot.release()
    metrics.generation.labels(job.model).observe(time.perf_counter() - start)
    metrics.samples.labels(job.model, "json").inc(job.n)
    metrics.bytes.labels(job.model, "json").inc(len(payload))
    return Response(payload, media_type=MEDIA_TYPES["json"], headers=_headers(job, "json"))


async def build_response(
    job: SampleJob,
    executor: concurrent.futures.Executor,
    slot: Slot,
    metrics: Metrics,
    request: Request,
    tmp_dir: Path | None = None,
) -> Response:
    """The response for ``job``; the caller has acquired ``slot``, which this releases when done.

    Raises :class:`GenerationFailed` when conditions far outside the valid range make the model's
    output unstorable (non-finite) in a format that checks it (hdf5, json).
    """
    if job.fmt == "hdf5":
        return await _hdf5_response(job, executor, slot, metrics, tmp_dir, request)  # releases the slot itself
    try:
        if job.fmt == "npy":
            return _npy_response(job, executor, slot, metrics)
        return await _json_response(job, executor, slot, metrics)
    except BaseException:
        slot.release()
        raise
