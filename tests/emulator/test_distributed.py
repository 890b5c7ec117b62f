"""Data-parallel training: train_func's rank hooks (no Ray), and 2 Ray Train workers with a killed worker."""

from __future__ import annotations

import json

import pytest

from emulator.train import ConfigError, train_func


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from physics_data.calo.io import write_showers
    from physics_data.calo.simulate import simulate

    path = tmp_path_factory.mktemp("data") / "eplus.h5"
    write_showers(path, simulate("e+", 300, "1:100", seed=5), attrs={"particle": "e+"})
    return path


def tiny_config(data, tmp_path, **kw):
    cfg = {
        "data": str(data), "out": str(tmp_path / "model"), "run_dir": str(tmp_path / "run"), "particle": "e+",
        "steps": 6, "batch_size": 16, "n_critic": 2, "latent_dim": 8, "g_hidden": [16], "d_hidden": [16],
        "val_every": 3, "checkpoint_every": 2, "log_every": 1, "val_samples": 40, "progress": False,
    }  # fmt: skip
    cfg.update(kw)
    return cfg


def test_non_zero_rank_writes_nothing_and_keeps_lockstep(tiny_data, tmp_path):
    calls = []
    summary = train_func(
        tiny_config(tiny_data, tmp_path, steps=5),
        checkpoint_hook=lambda path, m: calls.append((path, m["step"])),
        rank=1,
        world_size=2,
    )
    assert summary["steps"] == 5
    assert calls == [(None, 2), (None, 4), (None, 5)]  # same steps as rank 0, no checkpoint of its own
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    with pytest.raises(ConfigError, match="multiple of the 3 workers"):
        train_func(tiny_config(tiny_data, tmp_path), rank=0, world_size=3)


def test_ranks_draw_different_batches(tiny_data, tmp_path):
    """Rank 0 repeats the single-process run exactly; rank 1 trains on other batches and noise."""
    runs = {}
    for rank in (0, 1):
        seen = []
        train_func(
            tiny_config(tiny_data, tmp_path / f"r{rank}", steps=2, val_samples=0, checkpoint_every=100),
            report=seen.append,
            rank=rank,
            world_size=2,
        )
        runs[rank] = [r["loss_d"] for r in seen]
    single = []
    train_func(tiny_config(tiny_data, tmp_path / "single", steps=2, val_samples=0, batch_size=8,
                           checkpoint_every=100), report=single.append)  # fmt: skip
    assert runs[0] == [r["loss_d"] for r in single]
    assert runs[1] != runs[0]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=80 * 1024**2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_two_ray_workers_recover_from_a_killed_worker(ray_local, tiny_data, tmp_path):
    from emulator.distributed import train_distributed

    marker = tmp_path / "killed.txt"
    summary = train_distributed(
        tiny_config(tiny_data, tmp_path),
        workers=2,
        max_failures=1,
        fault={"rank": 1, "step": 3, "marker": str(marker)},
    )
    assert marker.read_text().startswith("killed rank 1 at step 3")  # the failure did happen
    assert summary["steps"] == 6 and summary["workers"] == 2 and summary["per_worker_batch_size"] == 8
    # restarted from the step-2 checkpoint: the log holds each step once, in order, up to the end
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_d" in r] == [1, 2, 3, 4, 5, 6]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert state["step"] == 6
    assert (tmp_path / "model" / "generator.safetensors").exists()
    assert summary["checkpoint"] and summary["checkpoint"].endswith("step-00000006")


def test_cli_workers_refuses_a_batch_that_does_not_split(tiny_data, tmp_path, capsys):
    """`emulator train --workers N` reaches the Ray launcher, which checks the batch before starting Ray."""
    pytest.importorskip("ray")
    from pipelines.cli import main

    argv = ["train", "calo", "--data", str(tiny_data), "--out", str(tmp_path / "m"), "--batch-size", "15",
            "--workers", "2"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "batch_size=15 (the effective batch) must be a multiple of workers=2" in capsys.readouterr().err
