"""Operational routes outside the API version: ``/healthz`` and Prometheus ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.deps import LimiterDep, MetricsDep, StoreDep
from services.schemas import HealthResponse

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness and readiness")
def healthz(store: StoreDep, limiter: LimiterDep) -> HealthResponse:
    """``ok`` with the number of servable models and the generations running and queued."""
    return HealthResponse(
        status="ok", models=len(store.list()), generations_active=limiter.active, generations_waiting=limiter.waiting
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
def metrics(m: MetricsDep) -> Response:
    """Requests, errors, samples and bytes served, latency histograms, limiter state (text format)."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
