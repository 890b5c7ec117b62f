"""Ray Serve: the FastAPI app deployed as a Serve replica answers on 127.0.0.1 like under uvicorn."""

from __future__ import annotations

import io
import socket

import httpx
import numpy as np
import pytest

MODEL = "calo-tiny"  # the tiny model of conftest.models_dir

ray = pytest.importorskip("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_url(models_dir):
    from ray import serve

    from services.ray_serve import deploy

    ray.init(num_cpus=2, object_store_memory=80 * 1024**2, include_dashboard=False, log_to_driver=False)
    try:
        env = {"EMULATOR_MODELS_PATH": str(models_dir), "EMULATOR_DEVICE": "cpu", "EMULATOR_TORCH_THREADS": "1"}
        yield deploy(replicas=1, port=_free_port(), env=env)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # Serve warns about defaults it will change
def test_serve_replica_answers_like_uvicorn(serve_url, reference):
    with httpx.Client(base_url=serve_url, timeout=60) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["models"] == 1
        r = client.get(f"/v1/models/{MODEL}/samples", params={"n": 300, "energy": "1:100", "seed": 3})
        assert r.status_code == 200, r.text
        arr = np.load(io.BytesIO(r.content))
        conditions, samples = reference(300, "1:100", 3)
        np.testing.assert_array_equal(arr[:, :1], conditions)  # same seed, same samples as in process
        np.testing.assert_array_equal(arr[:, 1:], samples)
        assert client.get("/v1/models/nope/samples", params={"n": 1}).status_code == 404
