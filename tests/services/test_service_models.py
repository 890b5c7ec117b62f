"""GET /v1/models and /healthz."""

from __future__ import annotations

from emulator.domains import get_domain


def test_models_lists_tiny_model_with_ranges_units_and_layout(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    models = r.json()["models"]
    assert [m["name"] for m in models] == ["calo-tiny"]
    m = models[0]
    calo = get_domain("calo")
    assert m["domain"] == "calo"
    assert m["version"] == "0.0.0-test"
    assert m["sample_shape"] == list(calo.sample_shape)
    assert m["layout"] == calo.layout
    assert m["file_formats"] == list(calo.file_formats)
    (energy,) = m["conditions"]
    assert (energy["name"], energy["unit"], energy["low"], energy["high"]) == ("energy", "GeV", 1.0, 100.0)
    assert "(n, 508)" in m["npy_columns"]
    assert isinstance(m["validation"], dict)
    assert "description" in m["card"]


def test_one_model_and_unknown_model_lists_available(client):
    assert client.get("/v1/models/calo-tiny").json()["name"] == "calo-tiny"
    r = client.get("/v1/models/nope")
    assert r.status_code == 404
    assert "calo-tiny" in r.json()["detail"] and "nope" in r.json()["detail"]


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "models": 1, "generations_active": 0, "generations_waiting": 0}


def test_openapi_documents_npy_layout(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/models/{name}/samples"]["post"]
    assert "(n, k + D)" in post["description"]
    assert "application/x-npy" in post["responses"]["200"]["content"]
