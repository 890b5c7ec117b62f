"""The Python client against a real server: same bytes as the sampler, HDF5 straight from the stream."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from physics_data.calo.geometry import N_CELLS
from services.client import EmulatorAPIError, EmulatorClient

COND = {"energy": {"uniform": [1, 100]}}


def test_samples_identical_to_sampler(make_settings, live_server, reference):
    with live_server(make_settings()) as server:
        client = EmulatorClient(server.url)
        cond, samples = client.samples("calo-tiny", 10_000, COND, seed=11)
        half_cond, half = client.samples("calo-tiny", 10_000, COND, seed=11, dtype="float16")
    ref_cond, ref_samples = reference(10_000, COND, 11)
    assert cond.shape == (10_000, 1) and samples.shape == (10_000, 507)
    assert cond.tobytes() == ref_cond.tobytes()
    assert np.ascontiguousarray(samples).tobytes() == ref_samples.tobytes()
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, ref_samples.astype(np.float16))
    np.testing.assert_array_equal(half_cond, ref_cond.astype(np.float16))


def test_iter_samples_and_hdf5(make_settings, live_server, reference, tmp_path):
    n = 20_000
    with live_server(make_settings()) as server:
        client = EmulatorClient(server.url)
        blocks = list(client.iter_samples("calo-tiny", n, COND, seed=2, block_rows=6000))
        path = client.samples_to_hdf5("calo-tiny", n, tmp_path / "c.h5", COND, seed=2)
        assert [m["name"] for m in client.models()] == ["calo-tiny"]
    ref_cond, ref_samples = reference(n, COND, 2)
    assert [len(c) for c, _ in blocks] == [6000, 6000, 6000, 2000]
    np.testing.assert_array_equal(np.concatenate([s for _, s in blocks]), ref_samples)
    assert not list(tmp_path.glob("*.tmp*"))
    with h5py.File(path) as f:
        assert f.attrs["seed"] == 2 and f.attrs["model"] == "calo-tiny"
        np.testing.assert_array_equal(f["energy"][:, 0], ref_cond[:, 0])
        cells = np.concatenate([f[f"layer_{i}"][:].reshape(n, -1) for i in range(3)], axis=1)
        np.testing.assert_array_equal(cells, ref_samples[:, :N_CELLS])
        np.testing.assert_array_equal(f["overflow"][:], ref_samples[:, N_CELLS:])


def test_errors_and_keys(make_settings, live_server):
    with live_server(make_settings(api_keys=["k1"])) as server:
        with pytest.raises(EmulatorAPIError, match="API key required") as exc:
            EmulatorClient(server.url).models()
        assert exc.value.status == 401
        client = EmulatorClient(server.url, api_key="k1")
        with pytest.raises(EmulatorAPIError, match="unknown model 'nope'; available: calo-tiny") as exc:
            client.samples("nope", 5)
        assert exc.value.status == 404
        with pytest.raises(EmulatorAPIError, match="outside the model's valid range") as exc:
            client.samples("calo-tiny", 5, {"energy": 1000})
        assert exc.value.status == 422
        cond, _ = client.samples("calo-tiny", 5, {"energy": 1000}, seed=1, allow_extrapolation=True)
        assert cond[0, 0] == 1000


def test_rejects_bad_base_url():
    with pytest.raises(ValueError, match="base_url must look like"):
        EmulatorClient("127.0.0.1:8000")
