"""The FastAPI app: ``create_app(settings)`` wires settings, model store, limiter, metrics and routers.

Run it with ``emulator serve`` (uvicorn, httptools + uvloop), or ``uvicorn --factory services.main:create_app``.
OpenAPI docs at ``/docs``; the API lives under ``/v1``.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI

from services.api.main import api_router
from services.api.routes import utils
from services.core.config import Settings
from services.errors import install_error_handlers
from services.limits import ConcurrencyLimiter
from services.metrics import Metrics, MetricsMiddleware
from services.store import ModelStore

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app serving the models found on ``settings.models_path`` (default: shipped models)."""
    settings = settings or Settings()

    def new_executor() -> concurrent.futures.ThreadPoolExecutor:
        # One worker thread per generation slot, plus one for a generation still finishing after a
        # disconnect. Torch's CPU thread count is per calling thread (OpenMP), so it is set in each worker.
        threads = settings.torch_threads
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.max_concurrent + 1,
            thread_name_prefix="generate",
            initializer=torch.set_num_threads if threads else None,
            initargs=(threads,) if threads else (),
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A fresh pool per server run: an app object may be started and stopped several times (tests).
        app.state.executor = new_executor()
        yield
        app.state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="Simulation emulator service",
        version="1.0.0",
        description="Fast surrogate samples from validated WGAN-GP emulators: calorimeter showers and more. "
        "List models with `GET /v1/models`, stream samples with `GET|POST /v1/models/{name}/samples`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = ModelStore(settings.models_path or None, settings.device)
    app.state.limiter = ConcurrencyLimiter(
        settings.max_concurrent, settings.queue_size, settings.queue_timeout_s, settings.retry_after_s
    )
    app.state.executor = new_executor()  # also usable by servers that skip the lifespan protocol
    app.state.metrics = Metrics()
    app.state.metrics.bind_limiter(lambda: app.state.limiter.active, lambda: app.state.limiter.waiting)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_error_handlers(app)
    app.include_router(api_router, prefix=API_PREFIX)
    app.include_router(utils.router)
    return app
