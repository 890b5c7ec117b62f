"""scripts/ship_model.py: replaces a shipped model directory with an export, its version, history and report."""

from __future__ import annotations

import json

from emulator.checkpoint import load_model_dir
from emulator.testing import load_script, make_tiny_model

ship_model = load_script("ship_model")


def _report(path):
    path.mkdir()
    checks = [{"name": "auc_high_level", "threshold": 0.7, "value": 0.9, "passed": False}]
    (path / "metrics.json").write_text(json.dumps({"passed": False, "auc_high_level": 0.9, "checks": checks}))
    (path / "report.html").write_text("<html></html>")
    return path


def test_ship_replaces_the_model_and_records_the_report(tmp_path, capsys):
    export = make_tiny_model(tmp_path / "export" / "calo-x", seed=1)
    target = make_tiny_model(tmp_path / "models" / "calo-x", seed=2)
    report = _report(tmp_path / "val")
    rc = ship_model.main([str(export), str(target), "--version", "2.0.0", "--history", "from scratch", "--report", str(report)])
    assert rc == 0 and "failed: auc_high_level" in capsys.readouterr().out
    card = json.loads((target / "card.json").read_text())
    assert card["version"] == "2.0.0" and card["training"]["history"] == "from scratch"
    assert card["validation"]["auc_high_level"] == 0.9 and card["report"] == "report/report.html"
    assert (target / "report" / "report.html").is_file() and "2.0.0" in (target / "MODEL_CARD.md").read_text()
    assert (target / "generator.safetensors").read_bytes() == (export / "generator.safetensors").read_bytes()
    assert load_model_dir(target).card["version"] == "2.0.0"
    assert sorted(p.name for p in target.parent.iterdir()) == ["calo-x"]  # no staging or retired copies left


def test_ship_refuses_a_missing_report_and_keeps_the_old_model(tmp_path, capsys):
    export = make_tiny_model(tmp_path / "export" / "calo-x", seed=1)
    target = make_tiny_model(tmp_path / "models" / "calo-x", seed=2)
    before = (target / "generator.safetensors").read_bytes()
    rc = ship_model.main([str(export), str(target), "--version", "2", "--history", "h", "--report", str(tmp_path / "nope")])
    assert rc == 2 and "run `emulator validate" in capsys.readouterr().err
    assert (target / "generator.safetensors").read_bytes() == before
