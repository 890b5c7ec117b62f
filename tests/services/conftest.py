"""Fixtures for the service tests: a tiny model directory, an app over it, and a live uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from emulator.conditions import parse_conditions
from emulator.registry import load_sampler
from emulator.sampler import Sampler
from emulator.testing import make_tiny_model
from services.core.config import Settings
from services.main import create_app

MODEL = "calo-tiny"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search path holding one tiny calo model called ``calo-tiny``."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_model(root / MODEL)
    return root


@pytest.fixture(scope="session")
def sampler(models_dir: Path) -> Sampler:
    """The tiny model's sampler (the reference the service output is compared with)."""
    return load_sampler(MODEL, device="cpu", search_paths=[models_dir])


@pytest.fixture(scope="session")
def reference(sampler: Sampler) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``reference(n, conditions, seed) -> (conditions (n, k), flat samples (n, D))`` generated in process."""

    def make(n: int, conditions: object, seed: int) -> tuple[np.ndarray, np.ndarray]:
        block = sampler.generate(n, parse_conditions(sampler.domain, conditions, n), seed)
        return block.conditions, block.samples.reshape(n, -1)

    return make


@pytest.fixture(scope="session")
def make_settings(models_dir: Path) -> Callable[..., Settings]:
    """``make_settings(**overrides)``: CPU, the tiny model only, small limits."""

    def make(**overrides: object) -> Settings:
        base: dict = {"models_path": [models_dir], "device": "cpu", "max_n": 100_000, "json_max_n": 1000}
        return Settings(**(base | overrides))

    return make


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """An in-process client of a fresh app."""
    with TestClient(create_app(make_settings())) as c:
        yield c


@pytest.fixture
def live_server() -> Callable[[Settings], LiveServer]:
    """``live_server(settings)``: a context manager running a real uvicorn on a free port."""
    return LiveServer


class LiveServer:
    """A real uvicorn server on a free 127.0.0.1 port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """``wait_until(predicate, timeout_s=20)``: poll until true; returns the last value."""

    def wait(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return bool(predicate())

    return wait
