"""The same FastAPI app as Ray Serve replicas: ``emulator serve --ray --replicas N``.

Each replica builds the app with ``services.main.create_app`` from the ``EMULATOR_*`` settings
of the process that deployed it (so API keys, limits and the models path are the same as with
``emulator serve``), loads the models itself, and gets one GPU (``ray_actor_options``) when the
cluster has GPUs. Ray Serve's HTTP proxy listens on ``--host``/``--port`` and spreads requests
over the replicas; ``/healthz``, ``/metrics``, ``/docs`` and ``/v1`` behave as under uvicorn
(``/metrics`` counts one replica's requests).

Where the bytes should flow. Serve's HTTP proxy relays every chunk of a response from the
replica through Ray, so it is the slower path for large bodies. Measured on the 2-core
development machine (load average 6-7 from other jobs; curl as the client, best and median of
7-9 requests):

=============================================  =====================  =====================
16 MiB response                                 uvicorn (emulator      Ray Serve proxy
                                                serve)                 (emulator serve --ray)
=============================================  =====================  =====================
ready bytes, transport only (minimal app)       2335 / 985 MB/s        293 / 227 MB/s
npy samples of a tiny model (n=8256, includes   242 / 134 MB/s         121 / 82 MB/s
generation on the loaded CPU)
one small request (n=1), median latency         9.3 ms                 22.2 ms
=============================================  =====================  =====================

So large downloads go to plain ``emulator serve`` (several uvicorn processes); the Serve
deployment is for spreading many small and medium requests over (GPU) replicas. The compose
deployment runs both: ``api`` on port 8000 (uvicorn) and Serve on ``ray-head`` port 8001.
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["APP_NAME", "deploy", "serve_forever", "settings_env"]

APP_NAME = "emulator"


def settings_env() -> dict[str, str]:
    """The ``EMULATOR_*`` variables of this process: what every replica's ``Settings()`` reads."""
    return {k: v for k, v in os.environ.items() if k.startswith("EMULATOR_")}


def _deployment(replicas: int, num_gpus: float, num_cpus: float, max_ongoing: int) -> Any:
    """The Serve deployment class (built lazily: importing this module never needs Ray)."""
    from ray import serve

    @serve.deployment(
        name="EmulatorAPI",
        num_replicas=replicas,
        ray_actor_options={"num_gpus": num_gpus, "num_cpus": num_cpus},
        # the app has its own limiter (429 + Retry-After); let requests reach it instead of queueing in Serve
        max_ongoing_requests=max_ongoing,
        health_check_period_s=10,
    )
    @serve.ingress()
    class EmulatorAPI:
        def __init__(self, env: dict[str, str]) -> None:
            os.environ.update(env)

        def __serve_build_asgi_app__(self) -> Any:  # called on the replica after __init__
            from services.core.config import Settings
            from services.main import create_app

            return create_app(Settings())

    return EmulatorAPI


def deploy(
    *,
    replicas: int = 1,
    host: str = "127.0.0.1",
    port: int = 8000,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float = 1.0,
    address: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Start Ray Serve (connecting to ``address`` / ``$RAY_ADDRESS`` or a new local Ray) and deploy the app.

    ``gpus_per_replica=None`` gives each replica one GPU when the cluster has at least
    ``replicas`` GPUs, none otherwise. Returns the base URL; the deployment keeps running until
    ``ray.serve.shutdown()`` (or the Ray cluster stops).
    """
    import ray
    from ray import serve

    from services.core.config import Settings

    env = (settings_env() if env is None else env) | {"EMULATOR_HOST": host, "EMULATOR_PORT": str(port)}
    settings = Settings(host=host, port=port)  # refuses a non-loopback host without API keys
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    if gpus_per_replica is None:
        gpus_per_replica = 1.0 if ray.cluster_resources().get("GPU", 0) >= replicas else 0.0
    serve.start(http_options={"host": host, "port": port})
    deployment = _deployment(
        replicas, gpus_per_replica, cpus_per_replica, settings.max_concurrent + settings.queue_size
    )
    serve.run(deployment.bind(env), name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def serve_forever(**kwargs: Any) -> None:
    """``deploy(**kwargs)``, then wait until interrupted and shut Serve down."""
    from ray import serve

    url = deploy(**kwargs)
    print(f"Ray Serve: {kwargs.get('replicas', 1)} replica(s) on {url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
