"""Dependencies of the routes, with ``Annotated`` aliases so signatures say what they need.

Everything lives on ``app.state`` (built once by :func:`services.main.create_app`), so tests swap
any of it with ``app.dependency_overrides`` or by passing their own ``Settings``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.core.config import Settings
from services.limits import ConcurrencyLimiter
from services.metrics import Metrics
from services.store import ModelStore

__all__ = [
    "LimiterDep",
    "MetricsDep",
    "SettingsDep",
    "StoreDep",
    "get_limiter",
    "get_metrics",
    "get_settings",
    "get_store",
    "require_api_key",
]


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_store(request: Request) -> ModelStore:
    """The app's model store (registry view with the configured search paths and device)."""
    return request.app.state.store


def get_limiter(request: Request) -> ConcurrencyLimiter:
    """The app's generation limiter."""
    return request.app.state.limiter


def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus collectors."""
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
LimiterDep = Annotated[ConcurrencyLimiter, Depends(get_limiter)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

# auto_error=False: a missing key is only an error when keys are configured (checked below).
_bearer = HTTPBearer(auto_error=False, description="API key as 'Authorization: Bearer KEY'")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key as 'X-API-Key: KEY'")


def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """Reject the request with 401 unless a configured API key is sent (no-op when none are configured)."""
    if not settings.api_keys:
        return
    offered = [k for k in (bearer.credentials if bearer else None, api_key) if k]
    if not offered:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "API key required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Constant-time comparison against every configured key, so timing reveals nothing.
    ok = any(hmac.compare_digest(k.encode(), good.encode()) for k in offered for good in settings.api_keys)
    if not ok:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
