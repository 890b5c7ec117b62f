"""``emulator validate`` end to end through the real CLI entry point."""

from __future__ import annotations

import json
import re

import pytest

from emulator.testing import make_tiny_model
from physics_data.calo.io import write_showers
from physics_data.calo.simulate import simulate
from pipelines.cli import main

FAST = ["--epochs", "3", "--no-classifier-low-level"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("validate")
    gen, ref = d / "gen.h5", d / "ref.h5"
    write_showers(gen, simulate("e+", 3000, "1:100", seed=11), attrs={"particle": "e+", "seed": 11})
    write_showers(ref, simulate("e+", 3000, "1:100", seed=12), attrs={"particle": "e+", "seed": 12})
    return gen, ref


def test_validate_two_simulator_files_passes_and_writes_the_report(files, tmp_path, capsys):
    gen, ref = files
    out = tmp_path / "r"
    files_args = ["--generated", str(gen), "--reference", str(ref), "--out", str(out)]
    assert main(["validate", *files_args, "--seed", "5", *FAST]) == 0
    assert "PASSED (calo_default)" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert {"auc_high_level", "auc_low_level", "fpd", "kpd", "passed", "observables", "checks"} <= set(m)
    assert m["passed"] is True and m["auc_low_level"] is None
    assert m["samples"]["n_generated"] == m["samples"]["n_reference"] == 3000
    assert m["samples"]["seed"] == 5 and m["config"]["classifier"]["seed"] == 5
    assert m["thresholds"]["file"].endswith("calo_default.json")
    assert set(m["observables"]["E_tot"]) >= {"w1", "w1_err", "separation_power"}
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # self-contained: no external URLs
    assert "PASSED" in page and "calo_default" in page


def test_validate_model_generates_at_the_reference_energies(files, tmp_path, capsys):
    _, ref = files
    make_tiny_model(tmp_path / "models" / "calo-tiny")
    out = tmp_path / "m"
    model = ["--model", "calo-tiny", "--models-path", str(tmp_path / "models")]
    rc = main(["validate", *model, "--reference", str(ref), "--out", str(out), "--max-samples", "1000",
               "--thresholds", "calo_piplus", *FAST])  # fmt: skip
    assert rc == 1  # an untrained model must fail
    m = json.loads((out / "metrics.json").read_text())
    assert m["passed"] is False and m["auc_high_level"] > 0.9
    assert m["thresholds"]["name"] == "calo_piplus"
    assert m["samples"]["n_generated"] == 1000
    assert "model calo-tiny" in m["samples"]["sources"]["generated"]
    assert "FAILED" in capsys.readouterr().out


def test_validate_usage_errors(files, tmp_path, capsys):
    gen, ref = files
    missing = tmp_path / "missing.h5"
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--generated", str(missing), "--reference", str(ref), "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "missing.h5 does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--generated", str(gen), "--reference", str(ref), "--out", str(tmp_path),
              "--thresholds", "nope"])  # fmt: skip
    assert exc.value.code == 2
    assert "not found" in capsys.readouterr().err
