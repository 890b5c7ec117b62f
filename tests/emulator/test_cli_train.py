"""`emulator train` and `emulator models` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "gamma.h5"
    assert main(["simulate", "calo", "--particle", "gamma", "--n", "200", "--energy", "1:100", "--seed", "3",
                 "--out", str(path)]) == 0  # fmt: skip
    return path


def test_train_then_models_lists_it(tiny_file, tmp_path, capsys):
    out = tmp_path / "models" / "calo-test"
    args = [
        "train", "calo", "--particle", "gamma", "--data", str(tiny_file), "--out", str(out),
        "--run-dir", str(tmp_path / "run"), "--steps", "2", "--batch-size", "16", "--device", "cpu",
        "--no-progress", "--set", "g_hidden=16", "--set", "d_hidden=16", "--set", "latent_dim=8",
        "--set", "n_critic=1", "--set", "val_every=2", "--set", "val_samples=40",
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["out"] == str(out)
    assert (out / "generator.safetensors").exists()

    assert main(["models", "--path", str(tmp_path / "models")]) == 0
    table = capsys.readouterr().out
    assert "calo-test" in table and "gamma" in table and "energy 1-100 GeV" in table
    assert main(["models", "--path", str(tmp_path / "models"), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["calo-test"] and listed[0]["card"]["particle"] == "gamma"


def test_train_rejects_unknown_setting(tiny_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "calo", "--data", str(tiny_file), "--out", str(tmp_path / "m"), "--set", "nope=1"])
    assert exc.value.code == 2
    assert "unknown config key(s) ['nope']" in capsys.readouterr().err


def test_train_requires_data_and_out(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "calo", "--steps", "1"])
    assert exc.value.code == 2 and "--data and --out are required" in capsys.readouterr().err
