"""API keys: required when configured, as Bearer or X-API-Key; refused network binding without keys."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.core.config import Settings, is_loopback
from services.main import create_app


@pytest.fixture
def keyed(make_settings):
    with TestClient(create_app(make_settings(api_keys=["s3cret", "other"]))) as c:
        yield c


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/calo-tiny/samples?n=3"])
def test_key_required(keyed, path):
    r = keyed.get(path)
    assert r.status_code == 401
    assert "API key required" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert keyed.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert keyed.get(path, headers={"X-API-Key": "wrong"}).json()["detail"] == "invalid API key"
    assert keyed.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert keyed.get(path, headers={"X-API-Key": "other"}).status_code == 200


def test_health_and_metrics_stay_open(keyed):
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/metrics").status_code == 200


def test_no_keys_means_open_on_loopback(client):
    assert client.get("/v1/models").status_code == 200


def test_refuses_network_bind_without_keys():
    with pytest.raises(ValidationError, match=r"refusing to serve on .0\.0\.0\.0. without API keys"):
        Settings(host="0.0.0.0")
    assert Settings(host="0.0.0.0", api_keys=["k"]).host == "0.0.0.0"


def test_keys_and_paths_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMULATOR_API_KEYS", "a, b ,")
    monkeypatch.setenv("EMULATOR_MODELS_PATH", f"{tmp_path}:{tmp_path / 'x'}")
    s = Settings()
    assert s.api_keys == ["a", "b"]
    assert s.models_path == [tmp_path, tmp_path / "x"]


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                 ("0.0.0.0", False), ("10.0.0.5", False), ("example.org", False)])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected
