"""``emulator serve``: run the HTTP sample service (FastAPI under uvicorn) for the shipped models.

Uses uvicorn's httptools parser and uvloop event loop when they are installed (both come with
``uvicorn[standard]``; about 20% more throughput than the pure-Python defaults). Every option
also has an ``EMULATOR_*`` environment variable (see ``services/core/config.py``); options win.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

from emulator.sampler import default_torch_threads
from pipelines.cli import CLIError

__all__ = ["add_parser", "run"]

HELP = """\
Serve generated samples over HTTP (OpenAPI docs at http://HOST:PORT/docs).

Binds to 127.0.0.1 by default. Binding to another address requires API keys
(EMULATOR_API_KEYS=key1,key2; clients send 'Authorization: Bearer KEY' or 'X-API-Key: KEY').

example (a million 1-100 GeV positron showers as .npy):
  emulator serve --port 8000 &
  curl -o showers.npy 'http://127.0.0.1:8000/v1/models/calo-eplus/samples?n=1000000&energy=1:100&seed=1'

on Ray Serve (pip install -e '.[ray]'; see services/ray_serve.py): --ray --replicas N runs the
same app as N Serve replicas behind Serve's HTTP proxy (one GPU each when the cluster has them);
--address auto or ray://HOST:10001 joins a running cluster. Serve's proxy moves large responses
several times slower than uvicorn: prefer plain `emulator serve` for bulk sample downloads.
  emulator serve --ray --replicas 2 --port 8000
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``serve``."""
    p = subparsers.add_parser(
        "serve",
        help="serve samples over HTTP",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or $EMULATOR_HOST)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000, or $EMULATOR_PORT)")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes (default 1; each loads the models)"
    )
    p.add_argument(
        "--models-path", action="append", default=None, metavar="DIR",
        help="directory of model folders (repeatable; default: the shipped models/ plus $EMULATOR_MODELS_PATH)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="torch device: auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--max-concurrent", type=int, default=None, help="generations at once (default 2)")
    p.add_argument(
        "--torch-threads", type=int, default=None,
        help="torch CPU threads (default: all cores; 1 can be faster on a machine busy with other jobs)",
    )  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    ray = p.add_argument_group("Ray Serve")
    ray.add_argument("--ray", action="store_true", help="deploy on Ray Serve instead of uvicorn")
    ray.add_argument(
        "--replicas", type=int, default=1, help="Serve replicas (default 1; each loads the models)"
    )
    ray.add_argument(
        "--gpus-per-replica", type=float, default=None,
        help="GPUs per replica (default: 1 if the cluster has a GPU per replica now, else 0)",
    )  # fmt: skip
    ray.add_argument(
        "--address", default=None, help="Ray cluster: auto, ray://HOST:10001 (default: $RAY_ADDRESS or local)"
    )
    p.set_defaults(func=run)


def _env_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The CLI options as EMULATOR_* variables, so every worker process builds the same Settings."""
    env: dict[str, str] = {}
    if args.host is not None:
        env["EMULATOR_HOST"] = args.host
    if args.port is not None:
        env["EMULATOR_PORT"] = str(args.port)
    if args.models_path:
        env["EMULATOR_MODELS_PATH"] = os.pathsep.join(args.models_path)
    if args.device is not None:
        env["EMULATOR_DEVICE"] = args.device
    if args.max_concurrent is not None:
        env["EMULATOR_MAX_CONCURRENT"] = str(args.max_concurrent)
    if args.torch_threads is not None:
        env["EMULATOR_TORCH_THREADS"] = str(args.torch_threads)
    elif "EMULATOR_TORCH_THREADS" not in os.environ:
        env["EMULATOR_TORCH_THREADS"] = str(default_torch_threads())
    return env


def run(args: argparse.Namespace) -> int:
    """Validate the settings, then run uvicorn until interrupted."""
    import uvicorn
    from pydantic import ValidationError

    from services.core.config import Settings

    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    os.environ.update(_env_overrides(args))
    try:
        settings = Settings()
    except ValidationError as exc:
        raise CLIError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    from services.main import create_app

    names = create_app(settings).state.store.names()  # fail early on a broken models path
    if args.ray:
        if args.replicas < 1:
            raise CLIError(f"--replicas must be >= 1, got {args.replicas}")
        if importlib.util.find_spec("ray") is None:
            raise CLIError("--ray needs Ray: pip install -e '.[ray]' (or serve without --ray)")
        from services.ray_serve import serve_forever

        serve_forever(
            replicas=args.replicas, host=settings.host, port=settings.port, address=args.address,
            gpus_per_replica=args.gpus_per_replica,
        )  # fmt: skip
        return 0
    print(
        f"serving {len(names)} model(s): {', '.join(names) or 'none'} on http://{settings.host}:{settings.port}"
    )
    uvicorn.run(
        "services.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        http="httptools" if importlib.util.find_spec("httptools") else "auto",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "auto",
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )
    return 0
