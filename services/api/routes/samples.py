"""``POST``/``GET /v1/models/{name}/samples``: stream generated samples as npy, HDF5 or JSON."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from emulator.conditions import ConditionError, ConditionSpec, parse_condition_text, parse_conditions
from emulator.domains import Domain
from services.api.deps import LimiterDep, MetricsDep, SettingsDep, StoreDep, require_api_key
from services.core.config import Settings
from services.encoders import DTYPES
from services.limits import ConcurrencyLimiter
from services.metrics import Metrics
from services.responses import MEDIA_TYPES, SampleJob, build_response
from services.schemas import MAX_SEED, DType, ErrorResponse, OutputFormat, SampleRequest, SamplesJSON
from services.store import ModelStore

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["samples"], dependencies=[Depends(require_api_key)])

_DESCRIPTION = """
Generates `n` samples of model `name` and **streams** them as they are generated.

**npy** (default, fastest): a standard `.npy` file (`numpy.load` reads it) of shape `(n, k + D)`,
dtype float32 or float16. Each row is `[conditions..., sample values...]`: the `k` conditions the
sample was generated for (in the order `GET /v1/models` lists them), then the `D` sample values
flattened (calo: `[energy GeV, 504 cells MeV in flat CaloGAN order, 3 overflow MeV]`, so
`a[:, :1]` are the energies and `a[:, 1:]` the showers). The header is correct for the total `n`.

**hdf5**: the domain's file format (calo: `calogan` datasets `energy`, `layer_0/1/2`, `overflow`, or
`calochallenge`), with the model, seed and conditions as attributes. HDF5 needs random access while
writing, so the file is built in a temporary file on the server and streamed once complete (the first
byte arrives after generation); always float32.

**json**: `{"conditions": [[...]], "samples": [[...]], ...}`, only up to the server's `json_max_n`.

The same `seed` gives byte-identical samples through this API, the Python client and
`emulator generate`. Response headers: `X-Emulator-Model`, `X-Emulator-Seed`, `X-Emulator-N`,
`X-Emulator-Layout`, and `X-Emulator-Extrapolated: true` when `allow_extrapolation` let a condition
outside the valid range through.
"""

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The samples, streamed",
        "content": {
            MEDIA_TYPES["npy"]: {"schema": {"type": "string", "format": "binary"}},
            MEDIA_TYPES["hdf5"]: {"schema": {"type": "string", "format": "binary"}},
            MEDIA_TYPES["json"]: {"schema": SamplesJSON.model_json_schema()},
        },
    },
    401: {"model": ErrorResponse, "description": "API key missing or wrong"},
    404: {"model": ErrorResponse, "description": "Unknown model (the message lists the available ones)"},
    413: {"model": ErrorResponse, "description": "n above the server's limit for this format"},
    422: {"model": ErrorResponse, "description": "Invalid parameters or conditions out of range"},
    429: {"model": ErrorResponse, "description": "Too many generations running; retry after Retry-After s"},
}

_QUERY_NAMES = {"n", "seed", "format", "dtype", "file_format", "allow_extrapolation"}


def _default_conditions(domain: Domain, raw: Any) -> Any:
    """Fill conditions the request leaves out with the whole valid range (log-uniform for log-scale ones)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return raw
    filled = dict(raw)
    for c in domain.conditions:
        if c.name not in filled:
            filled[c.name] = {"log_uniform" if c.log_scale else "uniform": [c.low, c.high]}
    return filled


def _check_representable(spec: ConditionSpec, dtype: str) -> None:
    """Conditions are generated as float32 and returned as ``dtype``: refuse values it cannot hold."""
    limit = float(np.finfo(np.float32 if dtype == "float32" else np.float16).max)
    for v in spec.values:
        numbers = [x for x in (v.value, v.low, v.high) if x is not None]
        if v.values is not None and len(v.values):
            numbers.append(float(np.abs(v.values).max()))
        if any(abs(x) > limit for x in numbers):
            raise ConditionError(f"{v.name}: values beyond +-{limit:g} cannot be represented as {dtype}")


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


async def _serve(
    name: str,
    req: SampleRequest,
    settings: Settings,
    store: ModelStore,
    request: Request,
    limiter: ConcurrencyLimiter,
    metrics: Metrics,
) -> Response:
    """Validate the request against the model and the limits, take a generation slot, build the response."""
    fmt, dtype = req.format.value, req.dtype.value
    if req.n > settings.max_n:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"n={req.n} exceeds this server's limit of {settings.max_n}; split the request into several "
            "(different seeds) or use `emulator generate` for batch production",
        )
    if fmt == "json" and req.n > settings.json_max_n:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"format=json is limited to n <= {settings.json_max_n} (got {req.n}); use format=npy for large n",
        )
    sampler = await run_in_threadpool(store.sampler, name)  # UnknownModel -> 404
    domain = sampler.domain
    if fmt == "hdf5" and dtype != "float32":
        raise _unprocessable("format=hdf5 always stores float32 (the file format's type); use dtype=float32 or format=npy")
    file_format = req.file_format or domain.file_formats[0]
    if file_format not in domain.file_formats:
        raise _unprocessable(f"file_format={file_format!r} is not one of {', '.join(domain.file_formats)}")
    spec = parse_conditions(
        domain, _default_conditions(domain, req.raw_conditions()), req.n, req.allow_extrapolation
    )  # ConditionError -> 422
    _check_representable(spec, dtype)
    seed = req.seed if req.seed is not None else secrets.randbits(63)
    job = SampleJob(name, sampler, req.n, spec, seed, fmt, DTYPES[dtype], file_format)
    slot = await limiter.acquire()  # Overloaded -> 429
    return await build_response(job, request.app.state.executor, slot, metrics, request, settings.tmp_dir)


@router.post(
    "/{name}/samples",
    summary="Generate samples (JSON body)",
    description=_DESCRIPTION,
    response_class=Response,
    responses=_RESPONSES,
)
async def post_samples(
    name: str, body: SampleRequest, request: Request, settings: SettingsDep, store: StoreDep,
    limiter: LimiterDep, metrics: MetricsDep,
) -> Response:  # fmt: skip
    """Generate ``body.n`` samples of model ``name``."""
    return await _serve(name, body, settings, store, request, limiter, metrics)


@router.get(
    "/{name}/samples",
    summary="Generate samples (query parameters, for curl)",
    description=_DESCRIPTION
    + "\n\nConditions are further query parameters named after the model's conditions: `energy=50` "
    "(fixed), `energy=1:100` (uniform), `energy=1:100:log` (log-uniform); omitted conditions are drawn "
    "uniformly over their valid range. Example: "
    "`curl -o showers.npy 'http://127.0.0.1:8000/v1/models/calo-eplus/samples?n=1000000&energy=1:100&seed=1'`",
    response_class=Response,
    responses=_RESPONSES,
)
async def get_samples(
    name: str,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    metrics: MetricsDep,
    n: Annotated[int, Query(gt=0, description="Number of samples")],
    seed: Annotated[int | None, Query(ge=0, le=MAX_SEED, description="Random seed (default: random)")] = None,
    format: Annotated[OutputFormat, Query(description="npy | hdf5 | json")] = OutputFormat.npy,
    dtype: Annotated[DType, Query(description="float32 | float16")] = DType.float32,
    file_format: Annotated[str | None, Query(description="hdf5 layout, e.g. calogan")] = None,
    allow_extrapolation: Annotated[bool, Query(description="Allow conditions outside the valid range")] = False,
) -> Response:
    """Generate ``n`` samples of model ``name``; conditions are the remaining query parameters."""
    conditions = {
        key: parse_condition_text(value) for key, value in request.query_params.items() if key not in _QUERY_NAMES
    }
    req = SampleRequest(
        n=n, conditions=None, seed=seed, format=format, dtype=dtype, file_format=file_format,
        allow_extrapolation=allow_extrapolation,
    )  # fmt: skip
    req.conditions = conditions or None  # already parsed forms; skip re-validation of the CLI syntax
    return await _serve(name, req, settings, store, request, limiter, metrics)
