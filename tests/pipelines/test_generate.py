"""``emulator generate``: HDF5 equal to the sampler and the API, shards + virtual file, kill-and-resume, workers."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastapi.testclient import TestClient

import pipelines.generate as gen
from emulator.conditions import parse_conditions
from emulator.registry import load_sampler
from emulator.testing import make_tiny_model
from physics_data.calo.geometry import N_CELLS
from physics_data.calo.io import read_showers
from pipelines.cli import main
from services.core.config import Settings
from services.main import create_app

MODEL = "calo-tiny"
UNIFORM = {"energy": {"uniform": [1.0, 100.0]}}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_tiny_model(root / MODEL)
    return root


@pytest.fixture(scope="module")
def reference(models_dir: Path):
    sampler = load_sampler(MODEL, device="cpu", search_paths=[models_dir])

    def make(n: int, conditions: object, seed: int) -> tuple[np.ndarray, np.ndarray]:
        block = sampler.generate(n, parse_conditions(sampler.domain, conditions, n), seed)
        return block.conditions, block.samples

    return make


def run_generate(models_dir: Path, out: Path, n: int, *extra: str, seed: int = 3, energy: str = "1:100") -> int:
    return main([
        "generate", MODEL, "--n", str(n), "--energy", energy, "--seed", str(seed), "--out", str(out),
        "--models-path", str(models_dir), "--device", "cpu", "--quiet", *extra,
    ])  # fmt: skip


def read_calogan(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(energy (n, 1), samples (n, 507)) from a CaloGAN file, virtual or not."""
    with h5py.File(path) as f:
        n = f["energy"].shape[0]
        cells = [f[f"layer_{i}"][:].reshape(n, -1) for i in range(3)]
        return f["energy"][:], np.concatenate([*cells, f["overflow"][:]], axis=1)


def all_datasets(path: Path) -> dict[str, bytes]:
    with h5py.File(path) as f:
        return {name: f[name][:].tobytes() for name in f}


def test_unsharded_file_equals_sampler_and_api(models_dir, reference, tmp_path):
    out = tmp_path / "small.h5"
    assert run_generate(models_dir, out, 10_000) == 0
    energy, samples = read_calogan(out)
    ref_cond, ref_samples = reference(10_000, UNIFORM, 3)
    assert energy.tobytes() == ref_cond.tobytes()
    assert samples.tobytes() == ref_samples.tobytes()
    assert not shard_dir_exists(out)
    with h5py.File(out) as f:
        assert (f.attrs["model"], f.attrs["seed"], f.attrs["n"]) == (MODEL, 3, 10_000)
    # The same seed through the HTTP API gives the same bytes.
    with TestClient(create_app(Settings(models_path=[models_dir], device="cpu"))) as client:
        r = client.get(f"/v1/models/{MODEL}/samples", params={"n": 10_000, "energy": "1:100", "seed": 3})
    a = np.load(io.BytesIO(r.content))
    assert a[:, :1].tobytes() == energy.tobytes()
    assert np.ascontiguousarray(a[:, 1:]).tobytes() == samples.tobytes()


def shard_dir_exists(out: Path) -> bool:
    return gen.shard_dir(out).exists()


def test_sharded_output_is_one_virtual_file(models_dir, reference, tmp_path, monkeypatch):
    out = tmp_path / "big.h5"
    assert run_generate(models_dir, out, 20_000, "--shard-size", "8000") == 0  # rounded up to 8192
    shards = sorted(gen.shard_dir(out).glob("shard-*.h5"))
    assert [p.name for p in shards] == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    assert [len(read_showers(p)) for p in shards] == [8192, 8192, 3616]
    monkeypatch.chdir("/")  # virtual sources resolve relative to the file, not the working directory
    with h5py.File(out) as f:
        assert all(f[name].is_virtual for name in ("energy", "layer_0", "layer_1", "layer_2", "overflow"))
        assert f["layer_1"].shape == (20_000, 12, 12)
        assert (f.attrs["n"], f.attrs["n_shards"], f.attrs["format"]) == (20_000, 3, "calogan")
        assert "shard" not in f.attrs
    energy, samples = read_calogan(out)
    ref_cond, ref_samples = reference(20_000, UNIFORM, 3)
    assert energy.tobytes() == ref_cond.tobytes()
    assert samples.tobytes() == ref_samples.tobytes()
    assert read_showers(out).cells.shape == (20_000, N_CELLS)  # the project's own reader accepts it


def test_kill_and_resume_is_byte_identical(models_dir, tmp_path, monkeypatch):
    args = ("--shard-size", "8192")
    clean = tmp_path / "clean" / "run.h5"
    assert run_generate(models_dir, clean, 20_000, *args) == 0

    out = tmp_path / "killed" / "run.h5"
    real_write_shard = gen.write_shard

    def dies_at_shard_2(job, k, out_path, **kw):
        if k == 2:
            raise KeyboardInterrupt  # as if killed while writing shard 2
        return real_write_shard(job, k, out_path, **kw)

    monkeypatch.setattr(gen, "write_shard", dies_at_shard_2)
    assert run_generate(models_dir, out, 20_000, *args) == 130
    monkeypatch.setattr(gen, "write_shard", real_write_shard)
    shards = gen.shard_dir(out)
    assert not out.exists()  # the top-level file only appears when everything is complete
    assert sorted(p.name for p in shards.glob("shard-*.h5")) == ["shard-00000.h5", "shard-00001.h5"]
    (shards / "shard-00002.h5.tmp-abc123").write_bytes(b"half-written")  # what a SIGKILL leaves behind
    (shards / "shard-00001.h5").write_bytes(b"not hdf5")  # and a damaged shard is redone
    before = (shards / "shard-00000.h5").stat().st_mtime_ns

    assert run_generate(models_dir, out, 20_000, *args) == 0
    assert (shards / "shard-00000.h5").stat().st_mtime_ns == before  # complete shards are skipped
    assert not list(shards.glob("*.tmp*"))
    assert all_datasets(out) == all_datasets(clean)
    for k in range(3):
        name = f"shard-{k:05d}.h5"
        assert all_datasets(shards / name) == all_datasets(gen.shard_dir(clean) / name)


def test_rerun_with_other_parameters_is_refused(models_dir, tmp_path, capsys):
    out = tmp_path / "run.h5"
    assert run_generate(models_dir, out, 20_000, "--shard-size", "8192") == 0
    with pytest.raises(SystemExit) as exc:
        run_generate(models_dir, out, 20_000, "--shard-size", "8192", seed=4)
    assert exc.value.code == 2
    assert "holds shards of a different run (differs in: seed)" in capsys.readouterr().err


def test_process_workers_give_identical_data(models_dir, tmp_path):
    single, multi = tmp_path / "one.h5", tmp_path / "two.h5"
    assert run_generate(models_dir, single, 17_000, "--shard-size", "8192") == 0
    assert run_generate(models_dir, multi, 17_000, "--shard-size", "8192", "--workers", "2") == 0
    assert all_datasets(multi) == all_datasets(single)


@pytest.mark.parametrize(
    ("extra", "energy", "needle"),
    [
        ((), "500", "outside the model's valid range [1, 100] GeV (extrapolation is not allowed) (pass --allow-extrapolation"),
        ((), "abc", "cannot parse condition 'abc'"),
        (("--format", "root"), "50", "--format 'root' is not one of calogan, calochallenge"),
        (("--workers", "0"), "50", "--workers must be >= 1"),
    ],
)
def test_user_errors(models_dir, tmp_path, capsys, extra, energy, needle):
    with pytest.raises(SystemExit) as exc:
        run_generate(models_dir, tmp_path / "x.h5", 10, *extra, energy=energy)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unknown_model_and_bad_n(models_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "nope", "--n", "5", "--seed", "1", "--out", str(tmp_path / "x.h5"),
              "--models-path", str(models_dir)])  # fmt: skip
    assert "unknown model 'nope'; available: calo-tiny" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_generate(models_dir, tmp_path / "x.h5", 0)
    assert "--n must be >= 1, got 0" in capsys.readouterr().err


def test_extrapolation_allowed_and_recorded(models_dir, tmp_path):
    out = tmp_path / "x.h5"
    assert run_generate(models_dir, out, 10, "--allow-extrapolation", energy="150") == 0
    with h5py.File(out) as f:
        assert bool(f.attrs["extrapolated"]) is True
        np.testing.assert_array_equal(f["energy"][:, 0], np.float32(150))


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed")
def test_ray_backend_without_ray_says_how_to_install(models_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_generate(models_dir, tmp_path / "x.h5", 10, "--workers", "2", "--backend", "ray")
    assert "pip install -e '.[ray]'" in capsys.readouterr().err


def test_compression_choice(models_dir, tmp_path):
    for compression, expected in (("gzip", "gzip"), ("lzf", "lzf"), ("none", None)):
        out = tmp_path / f"{compression}.h5"
        assert run_generate(models_dir, out, 10, "--compression", compression) == 0
        with h5py.File(out) as f:
            assert f["layer_0"].compression == expected


def test_help_has_one_option_per_condition(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    assert "--energy VALUE" in text and "incident kinetic energy" in text


def test_condition_options_come_from_the_domains():
    options = gen._condition_options()
    assert options["energy"][0] == "--energy"
    assert "GeV" in options["energy"][1]
    assert os.path.basename(gen.shard_path(Path("/d/out.h5"), 3)) == "shard-00003.h5"


def test_ray_backend_runs_shards_as_ray_tasks(models_dir, tmp_path, monkeypatch):
    """The Ray path with a minimal in-process stand-in for ``ray`` (Ray itself is an optional extra)."""
    import importlib.machinery
    import sys
    import types

    calls: dict[str, list] = {"remote": [], "init": []}
    fake = types.ModuleType("ray")
    fake.__spec__ = importlib.machinery.ModuleSpec("ray", None)
    fake.is_initialized = lambda: bool(calls["init"])
    fake.init = lambda **kw: calls["init"].append(kw)
    fake.cluster_resources = lambda: {"CPU": 2.0}

    def remote(**options):
        def wrap(fn):
            def submit(*args):
                calls["remote"].append((options, args[1]))
                return fn(*args)  # run eagerly; the "object ref" is the result

            return types.SimpleNamespace(remote=submit)

        return wrap

    fake.remote = remote
    fake.wait = lambda refs, num_returns=1: (refs[:num_returns], refs[num_returns:])
    fake.get = lambda ref: ref
    monkeypatch.setitem(sys.modules, "ray", fake)

    import torch

    out = tmp_path / "ray.h5"
    threads = torch.get_num_threads()
    try:  # the stand-in runs tasks in this process, and tasks set their torch thread count
        assert run_generate(models_dir, out, 17_000, "--shard-size", "8192", "--workers", "2", "--backend", "ray") == 0
    finally:
        torch.set_num_threads(threads)
    assert sorted(k for _, k in calls["remote"]) == [0, 1, 2]
    assert all(opts == {"num_cpus": 1} for opts, _ in calls["remote"])
    single = tmp_path / "single.h5"
    assert run_generate(models_dir, single, 17_000, "--shard-size", "8192") == 0
    assert all_datasets(out) == all_datasets(single)
