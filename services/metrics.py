"""Prometheus metrics for the service, and the ASGI middleware that records them.

Each app gets its own ``CollectorRegistry`` (so several apps in one process, as in tests, do not
collide). Exposed at ``GET /metrics``:

- ``emulator_requests_total{method,route,status}``: finished HTTP requests;
- ``emulator_request_duration_seconds{method,route}``: time from request to last body byte;
- ``emulator_errors_total{route,status}``: responses with status >= 400;
- ``emulator_samples_total{model,format}``: samples delivered;
- ``emulator_bytes_total{model,format}``: response body bytes of sample requests;
- ``emulator_generation_seconds{model}``: time to generate and send one sample response;
- ``emulator_generations_active`` / ``emulator_generations_waiting``: limiter state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The service's Prometheus collectors, registered in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "emulator_requests", "Finished HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "emulator_request_duration_seconds",
            "Time from request start to the last response byte",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("emulator_errors", "Responses with status >= 400", ["route", "status"], registry=r)
        self.samples = Counter("emulator_samples", "Samples delivered", ["model", "format"], registry=r)
        self.bytes = Counter("emulator_bytes", "Sample response bytes sent", ["model", "format"], registry=r)
        self.generation = Histogram(
            "emulator_generation_seconds",
            "Time to generate and stream one sample response",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.active = Gauge("emulator_generations_active", "Generations running now", registry=r)
        self.waiting = Gauge("emulator_generations_waiting", "Requests queued for a generation slot", registry=r)

    def bind_limiter(self, active: Callable[[], float], waiting: Callable[[], float]) -> None:
        """Read the limiter gauges at scrape time."""
        self.active.set_function(active)
        self.waiting.set_function(waiting)


def _route_label(scope: Scope) -> str:
    """The matched route template (``/v1/models/{name}/samples``), never the raw path (bounded labels).

    Routers included under a prefix keep their own path on the route object, so the static
    prefix is recovered from the request path: the shortest leading part after which the
    route's pattern matches the rest.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if not template:
        return "unmatched"
    path = str(scope.get("path", ""))
    if regex is not None and not regex.match(path):
        for i, char in enumerate(path):
            if char == "/" and i and regex.match(path[i:]):
                return path[:i] + str(template)
    return str(template)


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering, unlike BaseHTTPMiddleware) counting requests and latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before starting a response, the server answers 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_label(scope)
            method = scope.get("method", "")
            m = self.metrics
            m.requests.labels(method, route, str(status)).inc()
            m.latency.labels(method, route).observe(time.perf_counter() - start)
            if status >= 400:
                m.errors.labels(route, str(status)).inc()
