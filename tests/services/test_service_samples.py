"""Sample responses: npy/hdf5/json content equals the sampler's output for the same seed."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from physics_data.calo.geometry import N_CELLS

URL = "/v1/models/calo-tiny/samples"
N = 10_000  # spans two sampler blocks, the second one partial


def load_npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def test_npy_stream_is_byte_identical_to_sampler(client, reference):
    r = client.post(URL, json={"n": N, "conditions": {"energy": {"uniform": [1, 100]}}, "seed": 7})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-npy"
    assert int(r.headers["content-length"]) == len(r.content)
    assert (r.headers["x-emulator-model"], r.headers["x-emulator-seed"], r.headers["x-emulator-n"]) == (
        "calo-tiny", "7", str(N),
    )  # fmt: skip
    assert "(n, 508)" in r.headers["x-emulator-layout"]
    assert "x-emulator-extrapolated" not in r.headers
    a = load_npy(r.content)
    assert a.shape == (N, 508) and a.dtype == np.float32
    cond, samples = reference(N, {"energy": {"uniform": [1, 100]}}, 7)
    assert a[:, :1].tobytes() == cond.tobytes()
    assert np.ascontiguousarray(a[:, 1:]).tobytes() == samples.tobytes()
    assert 1 <= a[:, 0].min() and a[:, 0].max() <= 100


def test_different_seeds_differ(client):
    a = load_npy(client.post(URL, json={"n": 100, "seed": 1}).content)
    b = load_npy(client.post(URL, json={"n": 100, "seed": 2}).content)
    assert not np.array_equal(a, b)


def test_float16(client, reference):
    r = client.post(URL, json={"n": 500, "conditions": {"energy": 50}, "seed": 3, "dtype": "float16"})
    a = load_npy(r.content)
    assert a.dtype == np.float16 and a.shape == (500, 508)
    _, samples = reference(500, {"energy": 50}, 3)
    np.testing.assert_array_equal(a[:, 1:], samples.astype(np.float16))
    np.testing.assert_array_equal(a[:, 0], np.float16(50))


def test_get_form_equals_post(client):
    g = client.get(URL, params={"n": 300, "energy": "1:100", "seed": 5})
    p = client.post(URL, json={"n": 300, "conditions": {"energy": {"uniform": [1, 100]}}, "seed": 5})
    assert g.status_code == p.status_code == 200
    assert g.content == p.content
    g_log = client.get(URL, params={"n": 300, "energy": "1:100:log", "seed": 5})
    p_log = client.post(URL, json={"n": 300, "conditions": {"energy": {"log_uniform": [1, 100]}}, "seed": 5})
    assert g_log.content == p_log.content != g.content


def test_per_sample_conditions_and_scalar_form(client):
    energies = [1.0, 2.5, 99.0, 50.0]
    a = load_npy(client.post(URL, json={"n": 4, "conditions": {"energy": energies}, "seed": 1}).content)
    np.testing.assert_array_equal(a[:, 0], np.float32(energies))
    b = load_npy(client.post(URL, json={"n": 4, "conditions": 20, "seed": 1}).content)
    np.testing.assert_array_equal(b[:, 0], np.float32(20))


def test_omitted_conditions_cover_the_valid_range(client):
    a = load_npy(client.post(URL, json={"n": 2000, "seed": 1}).content)
    assert 1 <= a[:, 0].min() < 10 and 90 < a[:, 0].max() <= 100


def test_omitted_seed_is_reported_and_reproduces(client):
    r = client.post(URL, json={"n": 50})
    seed = int(r.headers["x-emulator-seed"])
    again = client.post(URL, json={"n": 50, "seed": seed})
    assert again.content == r.content


def test_json_format(client, reference):
    r = client.post(URL, json={"n": 20, "conditions": {"energy": 10}, "seed": 4, "format": "json"})
    assert r.status_code == 200
    body = r.json()
    assert (body["model"], body["seed"], body["n"], body["condition_names"]) == ("calo-tiny", 4, 20, ["energy"])
    cond, samples = reference(20, {"energy": 10}, 4)
    np.testing.assert_array_equal(np.float32(body["conditions"]), cond)
    np.testing.assert_array_equal(np.float32(body["samples"]), samples)


@pytest.mark.parametrize("file_format", ["calogan", "calochallenge"])
def test_hdf5_format(client, reference, tmp_path, file_format):
    r = client.post(
        URL, json={"n": N, "conditions": {"energy": {"uniform": [1, 100]}}, "seed": 9, "format": "hdf5",
                   "file_format": file_format},
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-hdf5"
    path = tmp_path / "s.h5"
    path.write_bytes(r.content)
    cond, samples = reference(N, {"energy": {"uniform": [1, 100]}}, 9)
    with h5py.File(path) as f:
        assert f.attrs["seed"] == 9 and f.attrs["model"] == "calo-tiny"
        if file_format == "calogan":
            np.testing.assert_array_equal(f["energy"][:, 0], cond[:, 0])
            cells = np.concatenate([f[f"layer_{i}"][:].reshape(N, -1) for i in range(3)], axis=1)
            np.testing.assert_array_equal(cells, samples[:, :N_CELLS])
            np.testing.assert_array_equal(f["overflow"][:], samples[:, N_CELLS:])
        else:
            np.testing.assert_array_equal(f["showers"][:], samples[:, :N_CELLS])
            np.testing.assert_allclose(f["incident_energies"][:, 0], cond[:, 0] * 1000.0, rtol=1e-6)
