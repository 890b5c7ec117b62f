"""Collects the versioned routers (``/v1``); the health and metrics routes live outside the version."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.routes import models, samples

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(models.router)
api_router.include_router(samples.router)
