"""Throughput of the sample service and the batch pipeline, as ratios to in-process generation, in one run.

    python benchmarks/bench_service.py                    # (a) in-process, (b) HTTP n=1M, (c) pipeline 2M
    python benchmarks/bench_service.py --pipeline-n 10000000
    python benchmarks/bench_service.py --transport        # also: raw loopback rate per HTTP client library

(a) the sampler's ``iter_blocks`` alone (what the server and the pipeline call);
(b) HTTP end to end, ``emulator serve`` in its own process (httptools + uvloop), fetched with the
    Python client (into numpy arrays) and with curl (to /dev/null), float32 and float16;
(c) ``emulator generate`` to sharded HDF5 with the default compression.
Targets (issue 5): (b) >= 80% of (a) and >= 2M showers/min on a 2-core CPU; (c) >= 70% of (a).
Uses the first shipped calo model, or an untrained tiny test model when none is shipped (the
output says which; the tiny model's speed is similar to a small trained MLP's on CPU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.conditions import parse_conditions  # noqa: E402
from emulator.registry import list_models, load_sampler  # noqa: E402
from emulator.sampler import default_torch_threads  # noqa: E402
from emulator.testing import make_tiny_model  # noqa: E402
from pipelines.generate import DEFAULT_COMPRESSION, GenerateJob, generate  # noqa: E402
from services.client import EmulatorClient  # noqa: E402

CONDITIONS = {"energy": {"uniform": [1.0, 100.0]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_model(workdir: Path, wanted: str | None) -> tuple[str, list[Path] | None, str]:
    """(name, search paths, note): ``wanted``, else a shipped calo model, else a tiny test model in ``workdir``."""
    shipped = [m for m in list_models() if m.domain == "calo" and wanted in (None, m.name)]
    if wanted and wanted != "tiny" and not shipped:
        raise SystemExit(f"no shipped calo model called {wanted!r}")
    if shipped and wanted != "tiny":
        return shipped[0].name, None, f"shipped model {shipped[0].name} {shipped[0].version}"
    make_tiny_model(workdir / "calo-tiny")
    why = "asked for" if wanted == "tiny" else "no shipped calo model found"
    return "calo-tiny", [workdir], f"calo-tiny: UNTRAINED TINY TEST MODEL ({why}; much faster than a trained one)"


def bench_inprocess(name: str, paths: list[Path] | None, n: int, device: str) -> float:
    sampler = load_sampler(name, device=device, search_paths=paths)
    spec = parse_conditions(sampler.domain, CONDITIONS, n)
    for _ in sampler.iter_blocks(min(n, 16384), parse_conditions(sampler.domain, CONDITIONS, min(n, 16384)), 0):
        pass  # warm-up
    t0 = time.perf_counter()
    for _ in sampler.iter_blocks(n, spec, 1):
        pass
    return time.perf_counter() - t0


class Server:
    """``emulator serve`` in a child process."""

    def __init__(self, paths: list[Path] | None, device: str, threads: int) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(self.port), "--device", device,
               "--log-level", "warning", "--torch-threads", str(threads)]  # fmt: skip
        for p in paths or []:
            cmd += ["--models-path", str(p)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("emulator serve did not start") from None
                time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def bench_client(server: Server, name: str, n: int, dtype: str) -> float:
    client = EmulatorClient(server.url)
    t0 = time.perf_counter()
    cond, samples = client.samples(name, n, CONDITIONS, seed=1, dtype=dtype)
    dt = time.perf_counter() - t0
    assert cond.shape[0] == samples.shape[0] == n
    return dt


def bench_curl(server: Server, name: str, n: int, dtype: str) -> float:
    url = f"{server.url}/v1/models/{name}/samples?n={n}&energy=1:100&seed=1&dtype={dtype}"
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if out[0] != "200":
        raise RuntimeError(f"curl got HTTP {out[0]}")
    return float(out[2])


def bench_pipeline(
    name: str, paths: list[Path] | None, n: int, device: str, workdir: Path, threads: int
) -> tuple[float, int, str]:
    from emulator.registry import get_model

    job = GenerateJob(
        model=name, n=n, seed=1, conditions=CONDITIONS, file_format="calogan", compression=DEFAULT_COMPRESSION,
        shard_rows=32 * 8192, model_version=get_model(name, paths).version,
        search_paths=[str(p) for p in paths or []], device=device,
    )  # fmt: skip
    out = workdir / "pipeline" / "out.h5"
    t0 = time.perf_counter()
    generate(job, out, quiet=True, torch_threads=threads)
    dt = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.parent.rglob("*.h5"))
    import h5py

    first = next(out.parent.rglob("shard-00000.h5"), out)
    with h5py.File(first) as f:
        compression = str(f["layer_0"].compression or "none")  # what the domain's writer actually used
    shutil.rmtree(out.parent)
    return dt, size, compression


def bench_transport(total_mb: int = 800) -> list[tuple[str, float]]:
    """GB/s of raw loopback transfer of ``total_mb`` from a separate uvicorn process, per client library."""
    import http.client

    port = free_port()
    block = 16 * 2**20
    nblocks = total_mb * 2**20 // block
    code = f"""
import uvicorn
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route
BLOCK = bytes({block})
async def data(request):
    async def gen():
        for _ in range({nblocks}):
            yield BLOCK
    return StreamingResponse(gen(), headers={{"content-length": str({nblocks * block})}})
uvicorn.run(Starlette(routes=[Route("/d", data)]), host="127.0.0.1", port={port}, http="httptools", loop="uvloop",
            log_level="error")
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    url, total = f"http://127.0.0.1:{port}/d", nblocks * block
    try:
        time.sleep(3)

        def with_http_client() -> None:
            out = memoryview(np.empty(total, np.uint8))
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", "/d")
            resp, pos = conn.getresponse(), 0
            while pos < total:
                pos += resp.readinto(out[pos : pos + 4 * 2**20])
            conn.close()

        def with_urllib3() -> None:
            import urllib3

            out = memoryview(np.empty(total, np.uint8))
            resp, pos = urllib3.PoolManager().request("GET", url, preload_content=False), 0
            while chunk := resp.read(4 * 2**20):
                out[pos : pos + len(chunk)] = chunk
                pos += len(chunk)

        def with_httpx() -> None:
            import httpx

            out = memoryview(np.empty(total, np.uint8))
            pos = 0
            with httpx.Client() as c, c.stream("GET", url) as r:
                for chunk in r.iter_raw(4 * 2**20):
                    out[pos : pos + len(chunk)] = chunk
                    pos += len(chunk)

        def with_curl() -> None:
            subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True)

        rows = []
        for label, fn in [("http.client readinto (chosen)", with_http_client), ("urllib3 read+copy", with_urllib3),
                          ("httpx iter_raw+copy", with_httpx), ("curl -> /dev/null", with_curl)]:  # fmt: skip
            try:
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                rows.append((label, total / min(times) / 1e9))
            except ImportError:
                rows.append((label, float("nan")))
        return rows
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inprocess-n", type=int, default=500_000, help="samples for (a)")
    ap.add_argument("--http-n", type=int, default=1_000_000, help="samples per HTTP request for (b)")
    ap.add_argument("--pipeline-n", type=int, default=2_000_000, help="samples for (c); the issue's figure is 10M")
    ap.add_argument("--device", default="auto", help="torch device (auto: CUDA when available)")
    ap.add_argument("--model", default=None, help="shipped model name, or 'tiny' (default: the first shipped calo model)")
    ap.add_argument("--transport", action="store_true", help="also measure raw loopback GB/s per HTTP library")
    ap.add_argument("--torch-threads", type=int, default=default_torch_threads(),
                    help="torch CPU threads everywhere (default, as serve and generate: all cores)")  # fmt: skip
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.torch_threads)  # (a) in this thread; the server and pipeline get the same

    workdir = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        name, paths, note = pick_model(workdir, args.model)
        device = args.device
        print(f"model: {note}")
        print(f"device: {device} (resolved: {load_sampler(name, device=device, search_paths=paths).device}), "
              f"torch {torch.__version__}, {args.torch_threads} torch threads, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f} (other work on the machine skews the ratios)")  # fmt: skip
        # Other work on a shared machine changes the speed from minute to minute, so every (b) and (c)
        # measurement is paired with an (a) measurement taken just before it; ratios are per pair.
        rows: list[tuple[str, int, float, float]] = []  # (what, n, seconds, in-process rate of its pair)

        def inprocess(n: int) -> float:
            t = bench_inprocess(name, paths, n, device)
            rows.append(("(a) in-process iter_blocks", n, t, n / t))
            return n / t

        inprocess(args.inprocess_n)
        server = Server(paths, device, args.torch_threads)
        try:
            bench_client(server, name, 20_000, "float32")  # warm-up: model load, first request
            for dtype in ("float32", "float16"):
                for label, fn in (("client", bench_client), ("curl", bench_curl)):
                    rate_a = inprocess(args.inprocess_n)
                    rows.append((f"(b) HTTP {label} {dtype}", args.http_n, fn(server, name, args.http_n, dtype), rate_a))
        finally:
            server.close()

        rate_a = inprocess(args.inprocess_n)
        t_c, size, compression = bench_pipeline(name, paths, args.pipeline_n, device, workdir, args.torch_threads)
        rows.append((f"(c) pipeline HDF5 ({compression}, {size / args.pipeline_n:.0f} B/shower)",
                     args.pipeline_n, t_c, rate_a))  # fmt: skip

        print(f"\n{'what':<46} {'n':>10} {'seconds':>8} {'showers/s':>11} {'M/min':>7} {'vs (a) just before':>19}")
        for label, n, t, rate_a in rows:
            rate = n / t
            ratio = "" if label.startswith("(a)") else f"{label[1]}/a = {rate / rate_a:5.2f}"
            print(f"{label:<46} {n:>10} {t:>8.2f} {rate:>11.0f} {rate * 60 / 1e6:>7.2f} {ratio:>19}")

        if args.transport:
            print("\nraw loopback transfer into a fresh numpy buffer (GB/s, best of 3):")
            for label, gbs in bench_transport():
                print(f"  {label:<32} {gbs:6.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
