"""Shipped model directories and training checkpoints: safetensors + JSON, atomic, no pickle."""

from __future__ import annotations

import json

import pytest
import torch

from emulator.checkpoint import (
    InvalidModelDir,
    export_model,
    latest_checkpoint,
    load_checkpoint,
    load_model_dir,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from emulator.domains import get_domain
from emulator.models import MLPGenerator, MLPGeneratorConfig
from emulator.testing import make_tiny_model


def test_export_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    gen = MLPGenerator(MLPGeneratorConfig(507, 1, latent_dim=8, hidden=(16,)))
    path = export_model(tmp_path / "m", gen, get_domain("calo"), {"name": "m", "domain": "calo", "version": "1"})
    assert sorted(p.name for p in path.iterdir()) == ["MODEL_CARD.md", "card.json", "config.json", "generator.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["model_class"] == "MLPGenerator" and config["domain"] == "calo"
    assert config["model_args"] == gen.config.to_dict()
    assert config["preprocessing"]["name"] == "log1p_fraction"
    loaded = load_model_dir(path)
    z, c = torch.randn(4, 8), torch.rand(4, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator(z, c), gen(z, c), rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.generator.parameters())
    assert (path / "MODEL_CARD.md").read_text().startswith("---\nname: \"m\"")


def test_invalid_model_dirs_say_what_is_wrong(tmp_path):
    with pytest.raises(InvalidModelDir, match="not a directory"):
        load_model_dir(tmp_path / "missing")
    path = make_tiny_model(tmp_path / "tiny")
    (path / "generator.safetensors").unlink()
    with pytest.raises(InvalidModelDir, match=r"missing generator\.safetensors"):
        load_model_dir(path)
    path = make_tiny_model(tmp_path / "tiny2")
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_args"]["hidden"] = [17]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidModelDir, match="do not match"):
        load_model_dir(path)


def test_optimizer_state_roundtrip():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.9))
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_tensors(opt, "optim")
    json.dumps(meta)  # JSON-serialisable
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=5.0)
    optimizer_from_tensors(opt2, tensors, meta, "optim")
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for name, v in s1["state"][k].items():
            torch.testing.assert_close(s2["state"][k][name], v)


def test_checkpoints_are_rotated_and_latest_is_tracked(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"w": torch.full((2,), float(step))}, {"step": step}, keep=2)
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-00000003"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000003"]
    tensors, state = load_checkpoint(latest)
    assert state["step"] == 3 and torch.equal(tensors["w"], torch.full((2,), 3.0))
    assert not list((tmp_path / "checkpoints").glob(".*")), "no temporary files left behind"


def test_model_trained_with_other_preprocessing_is_refused(tmp_path):
    path = make_tiny_model(tmp_path / "tiny")
    cfg = json.loads((path / "config.json").read_text())
    cfg["preprocessing"]["scale"] *= 100  # any other value than the current one
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidModelDir, match="trained with preprocessing"):
        load_model_dir(path)


def test_card_shows_errors_and_unresolved_checks(tmp_path):
    from emulator.checkpoint import record_validation

    gen = MLPGenerator(MLPGeneratorConfig(507, 1, latent_dim=8, hidden=(16,)))
    path = export_model(tmp_path / "m", gen, get_domain("calo"), {"name": "m", "domain": "calo", "version": "1"})
    checks = [
        {"name": "response_mean", "description": "d", "threshold": 0.01, "value": 0.032, "value_err": 0.011,
         "where": "energy 50-60 GeV", "passed": True, "resolved": False},
        {"name": "separation_power", "description": "d", "threshold": 0.1, "value": 0.06, "where": "E_0",
         "passed": True, "resolved": True},
    ]  # fmt: skip
    (tmp_path / "metrics.json").write_text(json.dumps({"passed": True, "checks": checks}))
    validation = record_validation(path, tmp_path / "metrics.json")
    assert validation["checks"][0]["resolved"] is False
    text = (path / "MODEL_CARD.md").read_text()
    assert "| response_mean | 0.01 | 0.032 ± 0.011 | energy 50-60 GeV | pass (unresolved" in text
    assert "| separation_power | 0.1 | 0.06 | E_0 | pass |" in text
