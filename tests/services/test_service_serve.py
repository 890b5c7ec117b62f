"""``emulator serve``: the real entry point serves the models; unsafe binding is refused."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from emulator.sampler import default_torch_threads
from pipelines.cli import build_parser, main
from pipelines.serve import _env_overrides
from services.main import create_app

ENTRY_POINT = Path(sys.executable).parent / "emulator"


def test_entry_point_serves_npy(models_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}
    proc = subprocess.Popen(
        [str(ENTRY_POINT), "serve", "--port", str(port), "--models-path", str(models_dir), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        with urllib.request.urlopen(f"{url}/v1/models/calo-tiny/samples?n=1000&energy=1:100&seed=1") as r:
            a = np.load(io.BytesIO(r.read()))
        assert a.shape == (1000, 508)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "serving 1 model(s): calo-tiny on http://127.0.0.1:" in out


def test_refuses_network_bind_without_keys(capsys):
    saved = dict(os.environ)  # run() exports its options as EMULATOR_* variables (for uvicorn workers)
    try:
        for key in [k for k in os.environ if k.startswith("EMULATOR_")]:
            del os.environ[key]
        with pytest.raises(SystemExit) as exc:
            main(["serve", "--host", "0.0.0.0"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert exc.value.code == 2
    assert "refusing to serve on '0.0.0.0' without API keys: set EMULATOR_API_KEYS" in capsys.readouterr().err


def test_options_become_settings_environment(monkeypatch):
    monkeypatch.delenv("EMULATOR_TORCH_THREADS", raising=False)
    args = build_parser().parse_args(["serve", "--port", "9000", "--models-path", "/a", "--models-path", "/b"])
    env = _env_overrides(args)
    assert env["EMULATOR_PORT"] == "9000"
    assert env["EMULATOR_MODELS_PATH"] == os.pathsep.join(["/a", "/b"])
    assert env["EMULATOR_TORCH_THREADS"] == str(default_torch_threads())
    assert "EMULATOR_HOST" not in env
    explicit = build_parser().parse_args(["serve", "--torch-threads", "3"])
    assert _env_overrides(explicit)["EMULATOR_TORCH_THREADS"] == "3"


def test_torch_threads_setting_applies_to_generation_threads(make_settings):
    """Torch's thread count is per calling thread, so it must be set in the generation workers."""
    before = torch.get_num_threads()
    with TestClient(create_app(make_settings(torch_threads=1))) as client:
        assert client.app.state.executor.submit(torch.get_num_threads).result() == 1
    assert torch.get_num_threads() == before  # the test process itself is untouched
