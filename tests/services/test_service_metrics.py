"""/metrics counts requests, samples, bytes, errors and latency."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def _samples(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_samples_bytes_and_errors(client):
    r1 = client.post("/v1/models/calo-tiny/samples", json={"n": 1234, "seed": 1})
    r2 = client.get("/v1/models/calo-tiny/samples", params={"n": 66, "format": "json"})
    assert client.post("/v1/models/calo-tiny/samples", json={"n": 0}).status_code == 422
    m = _samples(client)
    route = "/v1/models/{name}/samples"
    assert m[("emulator_samples_total", (("format", "npy"), ("model", "calo-tiny")))] == 1234
    assert m[("emulator_samples_total", (("format", "json"), ("model", "calo-tiny")))] == 66
    assert m[("emulator_bytes_total", (("format", "npy"), ("model", "calo-tiny")))] == len(r1.content)
    assert m[("emulator_bytes_total", (("format", "json"), ("model", "calo-tiny")))] == len(r2.content)
    assert m[("emulator_requests_total", (("method", "POST"), ("route", route), ("status", "200")))] == 1
    assert m[("emulator_requests_total", (("method", "POST"), ("route", route), ("status", "422")))] == 1
    assert m[("emulator_errors_total", (("route", route), ("status", "422")))] == 1
    assert m[("emulator_request_duration_seconds_count", (("method", "GET"), ("route", route)))] == 1
    assert m[("emulator_generation_seconds_count", (("model", "calo-tiny"),))] == 2
    assert m[("emulator_generations_active", ())] == 0
