"""Against a real uvicorn server: concurrent clients, 429 under load, disconnects free the slot."""

from __future__ import annotations

import http.client
import io
import threading

import numpy as np

from services.client import EmulatorClient

URL = "/v1/models/calo-tiny/samples"


def _open_stream(port: int, n: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"{URL}?n={n}&energy=50&seed=1")
    return conn, conn.getresponse()


def test_eight_concurrent_clients_get_complete_correct_data(make_settings, live_server, reference, wait_until):
    n = 9000
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    errors: list[BaseException] = []
    with live_server(make_settings(max_concurrent=2, queue_size=8)) as server:
        client = EmulatorClient(server.url)

        def fetch(seed: int) -> None:
            try:
                results[seed] = client.samples("calo-tiny", n, {"energy": {"uniform": [1, 100]}}, seed=seed)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(seed,)) for seed in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        # Slots are released just after the last byte is sent.
        assert wait_until(lambda: server.app.state.limiter.active == 0)
    assert sorted(results) == list(range(8))
    for seed, (cond, samples) in results.items():
        ref_cond, ref_samples = reference(n, {"energy": {"uniform": [1, 100]}}, seed)
        assert cond.tobytes() == ref_cond.tobytes()
        assert samples.reshape(n, -1).tobytes() == ref_samples.tobytes()


def test_busy_server_answers_429_and_disconnect_frees_the_slot(make_settings, live_server, wait_until):
    n = 100_000  # far more than the socket buffers hold: the server must be mid-stream
    with live_server(make_settings(max_concurrent=1, queue_size=0, retry_after_s=7)) as server:
        limiter = server.app.state.limiter
        conn, resp = _open_stream(server.port, n)
        assert resp.status == 200
        assert resp.read(1000)  # header and the first rows arrived; generation is running
        assert limiter.active == 1
        busy = EmulatorClient(server.url)
        rejected = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        rejected.request("GET", f"{URL}?n=10&energy=50")
        r = rejected.getresponse()
        assert r.status == 429
        assert r.getheader("Retry-After") == "7"
        assert b"server busy" in r.read()
        # Disconnect mid-stream: the slot must come back and generation must stop early.
        conn.sock.close()
        conn.close()
        assert wait_until(lambda: limiter.active == 0), "slot not released after client disconnect"
        sent = server.app.state.metrics.registry.get_sample_value(
            "emulator_samples_total", {"model": "calo-tiny", "format": "npy"}
        )
        assert 0 < sent < n
        # The server is usable again.
        cond, _ = busy.samples("calo-tiny", 10, {"energy": 50}, seed=1)
        assert cond.shape == (10, 1)
        assert wait_until(lambda: limiter.active == 0)


def test_hdf5_disconnect_during_generation_cleans_up(make_settings, live_server, wait_until, tmp_path):
    settings = make_settings(max_concurrent=1, queue_size=0, tmp_dir=tmp_path)
    with live_server(settings) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"{URL}?n=100000&energy=50&seed=1&format=hdf5")
        assert wait_until(lambda: any(tmp_path.iterdir()), 10)  # generation started
        conn.sock.close()
        conn.close()
        assert wait_until(lambda: server.app.state.limiter.active == 0 and not any(tmp_path.iterdir()), 30)


def test_curl_style_get_is_loadable(make_settings, live_server):
    with live_server(make_settings()) as server:
        conn, resp = _open_stream(server.port, 2000)
        a = np.load(io.BytesIO(resp.read()))
        conn.close()
    assert a.shape == (2000, 508)
