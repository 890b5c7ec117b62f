"""``GET /v1/models``: what can be sampled, with condition ranges, layouts and validation summaries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from emulator.domains import get_domain
from emulator.registry import ModelInfo
from services.api.deps import StoreDep, require_api_key
from services.responses import npy_columns
from services.schemas import ConditionInfo, ModelInfoPublic, ModelList

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["models"], dependencies=[Depends(require_api_key)])

# Card fields worth showing in a listing (the full card is in the model directory).
_CARD_FIELDS = ("description", "particle", "training_data", "training", "training_time", "hardware", "created")


def to_public(info: ModelInfo) -> ModelInfoPublic:
    """The public description of one model directory."""
    domain = get_domain(info.domain)
    card: dict[str, Any] = info.card or {}
    return ModelInfoPublic(
        name=info.name,
        domain=domain.name,
        version=info.version,
        conditions=[
            ConditionInfo(
                name=c.name, unit=c.unit, low=c.low, high=c.high, description=c.description, log_scale=c.log_scale
            )
            for c in domain.conditions
        ],
        sample_shape=list(domain.sample_shape),
        layout=domain.layout,
        npy_columns=npy_columns(domain),
        file_formats=list(domain.file_formats),
        validation=card.get("validation") or {},
        card={k: card[k] for k in _CARD_FIELDS if card.get(k) is not None},
    )


@router.get("", response_model=ModelList, summary="List the servable models")
def list_models(store: StoreDep) -> ModelList:
    """Every model this server can sample, with its conditions' valid ranges and units, the layout of
    one sample, the npy column layout, the HDF5 file formats, its version and validation summary."""
    return ModelList(models=[to_public(m) for m in store.list()])


@router.get("/{name}", response_model=ModelInfoPublic, summary="Describe one model",
            responses={404: {"description": "Unknown model; the message lists the available ones"}})
def get_model(name: str, store: StoreDep) -> ModelInfoPublic:
    """One model's description (same fields as in the listing)."""
    return to_public(store.info(name))
