"""Request and response schemas of the HTTP API (inputs and outputs are separate models)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    "CONDITIONS_SCHEMA",
    "ConditionInfo",
    "DType",
    "ErrorResponse",
    "HealthResponse",
    "ModelInfoPublic",
    "ModelList",
    "OutputFormat",
    "SampleRequest",
    "SamplesJSON",
]

MAX_SEED = 2**63 - 1


class OutputFormat(str, Enum):
    """Response encoding: ``npy`` streams (fast), ``hdf5`` is the domain's file format, ``json`` small n only."""

    npy = "npy"
    hdf5 = "hdf5"
    json = "json"


class DType(str, Enum):
    """Floating-point type of the returned values (``npy`` and ``json``); float16 holds values up to 65504."""

    float32 = "float32"
    float16 = "float16"


_NUMBERS = {"type": "array", "items": {"type": "number"}}
_RANGE = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_ONE_CONDITION = {
    "anyOf": [
        {"type": "number"},
        _NUMBERS,
        {"type": "object", "properties": {"uniform": _RANGE}, "required": ["uniform"], "additionalProperties": False},
        {
            "type": "object",
            "properties": {"log_uniform": _RANGE},
            "required": ["log_uniform"],
            "additionalProperties": False,
        },
    ]
}
# Validated by emulator.conditions.parse_conditions (whose errors name the condition, value and
# valid range); this schema documents the accepted forms for OpenAPI clients.
CONDITIONS_SCHEMA = {
    "anyOf": [{"type": "number"}, _NUMBERS, {"type": "object", "additionalProperties": _ONE_CONDITION}, {"type": "null"}]
}


class SampleRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/samples``."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(gt=0, description="Number of samples (at most the server's max_n).", examples=[1000])
    conditions: Annotated[Any, WithJsonSchema(CONDITIONS_SCHEMA)] = Field(
        default=None,
        description=(
            "Conditions per name, e.g. {\"energy\": 50}, {\"energy\": [..one value per sample..]} or "
            "{\"energy\": {\"uniform\": [1, 100]}} / {\"log_uniform\": [1, 100]}. A bare scalar or list is "
            "allowed for single-condition domains. Omitted: the model's default (see GET /v1/models)."
        ),
        examples=[{"energy": {"uniform": [1, 100]}}],
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Random seed; the same seed gives byte-identical samples. Omitted: a random seed, "
        "returned in the X-Emulator-Seed header.",
    )
    format: OutputFormat = OutputFormat.npy
    dtype: DType = DType.float32
    file_format: str | None = Field(
        default=None,
        description="For format=hdf5: the domain's file layout (calo: calogan or calochallenge); default the first.",
    )
    allow_extrapolation: bool = Field(
        default=False,
        description="Allow conditions outside the model's valid range; flagged by X-Emulator-Extrapolated: true.",
    )

    def raw_conditions(self) -> Any:
        """The conditions as given (what ``parse_conditions`` accepts)."""
        return self.conditions


class ConditionInfo(BaseModel):
    """One condition of a model: name, unit and valid range."""

    name: str
    unit: str
    low: float
    high: float
    description: str
    log_scale: bool


class ModelInfoPublic(BaseModel):
    """A servable model as listed by ``GET /v1/models``."""

    name: str
    domain: str
    version: str
    conditions: list[ConditionInfo]
    sample_shape: list[int]
    layout: str = Field(description="What one sample's values are, in which units.")
    npy_columns: str = Field(description="Column layout of the npy response.")
    file_formats: list[str]
    validation: dict[str, Any] = Field(description="Validation summary from the model card.")
    card: dict[str, Any] = Field(description="Selected model-card fields (training, description).")


class ModelList(BaseModel):
    """Response of ``GET /v1/models``."""

    models: list[ModelInfoPublic]


class SamplesJSON(BaseModel):
    """Response of a ``format=json`` sample request."""

    model: str
    seed: int
    n: int
    dtype: str
    condition_names: list[str]
    conditions: list[list[float]]
    samples: list[list[float]]


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: ``detail`` says what is wrong and what to do."""

    detail: str | list[Any]


class HealthResponse(BaseModel):
    """Response of ``GET /healthz``."""

    status: str
    models: int
    generations_active: int
    generations_waiting: int
