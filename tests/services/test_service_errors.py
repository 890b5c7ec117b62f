"""Bad input always gets a 4xx JSON error that says what is wrong; never a 500."""

from __future__ import annotations

import pytest

URL = "/v1/models/calo-tiny/samples"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"n": 0}, 422, "n: Input should be greater than 0"),
        ({"n": -5}, 422, "greater than 0"),
        ({"n": 100_001}, 413, "exceeds this server's limit of 100000"),
        ({"n": "many"}, 422, "n: Input should be a valid integer"),
        ({"n": 1.5}, 422, "n: Input should be a valid integer"),
        ({}, 422, "n: Field required"),
        ({"n": 5, "conditions": {"energy": 500}}, 422, "outside the model's valid range [1, 100] GeV"),
        ({"n": 5, "conditions": {"energy": 0.5}}, 422, "energy = 0.5 GeV is outside"),
        ({"n": 5, "conditions": {"energy": {"uniform": [1, 200]}}}, 422, "energy = 200 GeV is outside"),
        ({"n": 5, "conditions": {"energy": {"uniform": [50, 10]}}}, 422, "lo > hi"),
        ({"n": 5, "conditions": {"energy": {"normal": [1, 2]}}}, 422, "a distribution must be"),
        ({"n": 5, "conditions": {"energy": [1, 2]}}, 422, "got 2 values for 5 samples"),
        ({"n": 5, "conditions": {"omega_m": 0.3}}, 422, "unknown condition(s) ['omega_m']"),
        ({"n": 5, "conditions": "lots"}, 422, "conditions"),
        ({"n": 5, "seed": -1}, 422, "seed: Input should be greater than or equal to 0"),
        ({"n": 5, "seed": 2**64}, 422, "seed"),
        ({"n": 5, "format": "csv"}, 422, "format: Input should be 'npy', 'hdf5' or 'json'"),
        ({"n": 5, "dtype": "float64"}, 422, "dtype"),
        ({"n": 5, "format": "hdf5", "dtype": "float16"}, 422, "format=hdf5 always stores float32"),
        ({"n": 5, "format": "hdf5", "file_format": "root"}, 422, "file_format='root' is not one of calogan"),
        ({"n": 1001, "format": "json"}, 413, "format=json is limited to n <= 1000"),
        ({"n": 5, "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
        ({"n": 5, "conditions": 3.5e38, "allow_extrapolation": True}, 422, "cannot be represented as float32"),
        ({"n": 5, "conditions": 7e4, "allow_extrapolation": True, "dtype": "float16"}, 422, "beyond +-65504"),
    ],
)
def test_bad_body(client, body, status, needle):
    r = client.post(URL, json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_unknown_model_lists_available(client):
    r = client.post("/v1/models/calo-nope/samples", json={"n": 5})
    assert r.status_code == 404
    assert r.json()["detail"] == "unknown model 'calo-nope'; available: calo-tiny"


@pytest.mark.parametrize(
    ("raw", "content_type", "needle"),
    [
        (b"{not json", "application/json", "malformed JSON body"),
        (b"", "application/json", "Field required"),
        (b"[1, 2]", "application/json", "valid dictionary"),
        (b"n=5", "application/x-www-form-urlencoded", "invalid request"),
    ],
)
def test_malformed_bodies(client, raw, content_type, needle):
    r = client.post(URL, content=raw, headers={"content-type": content_type})
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"n": 5, "energy": "abc"}, 422, "cannot parse condition 'abc'"),
        ({"n": 5, "energi": "50"}, 422, "unknown condition(s) ['energi']"),
        ({"n": 0}, 422, "n: Input should be greater than 0"),
        ({"energy": 50}, 422, "n: Field required"),
        ({"n": "x"}, 422, "valid integer"),
        ({"n": 5, "energy": "500"}, 422, "outside the model's valid range"),
        ({"n": 5, "allow_extrapolation": "maybe"}, 422, "allow_extrapolation"),
    ],
)
def test_bad_query(client, params, status, needle):
    r = client.get(URL, params=params)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_extrapolation_allowed_is_flagged(client):
    ok = client.post(URL, json={"n": 5, "conditions": {"energy": 150}, "allow_extrapolation": True, "seed": 1})
    assert ok.status_code == 200
    assert ok.headers["x-emulator-extrapolated"] == "true"
    inside = client.post(URL, json={"n": 5, "conditions": {"energy": 50}, "allow_extrapolation": True})
    assert "x-emulator-extrapolated" not in inside.headers
    via_get = client.get(URL, params={"n": 5, "energy": "120", "allow_extrapolation": "true"})
    assert via_get.headers["x-emulator-extrapolated"] == "true"


def test_unstorable_output_from_extreme_extrapolation_is_422(client, monkeypatch):
    """A writer refusing the model's output (e.g. non-finite values) for extrapolated conditions is the
    request's fault: 422 before any byte is sent, the slot freed and the temporary file removed."""
    from emulator.domains import get_domain

    def refuse(*_args, **_kwargs):
        raise ValueError("dataset 'layer_0': value inf at row 0 is not finite")

    monkeypatch.setattr(get_domain("calo"), "open_writer", refuse)
    body = {"n": 5, "conditions": {"energy": 1e30}, "allow_extrapolation": True, "format": "hdf5"}
    r = client.post(URL, json=body)
    assert r.status_code == 422
    assert "too far outside the valid range" in r.json()["detail"]
    assert "is not finite" in r.json()["detail"]
    assert client.app.state.limiter.active == 0


def test_broken_model_directory_is_503_not_500(tmp_path):
    """A model whose files do not load is the server's problem: 503 naming the model and the reason."""
    import json

    from fastapi.testclient import TestClient

    from emulator.testing import make_tiny_model
    from services.core.config import Settings
    from services.main import create_app

    model = make_tiny_model(tmp_path / "calo-broken")
    config = json.loads((model / "config.json").read_text())
    config["preprocessing"] = {"name": "something-else"}
    (model / "config.json").write_text(json.dumps(config))
    with TestClient(create_app(Settings(models_path=[tmp_path], device="cpu"))) as c:
        r = c.post("/v1/models/calo-broken/samples", json={"n": 5})
    assert r.status_code == 503
    assert "this model cannot be loaded on the server" in r.json()["detail"]
    assert "calo-broken" in r.json()["detail"]
