"""``emulator simulate calo``: files plain h5py can read, help, argument errors, worker invariance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from physics_data.calo.geometry import LAYERS
from physics_data.calo.io import read_attrs, read_showers
from physics_data.calo.simulate import SIMULATOR_VERSION, simulate
from pipelines.cli import main

ENTRY_POINT = Path(sys.executable).parent / "emulator"


def simulate_args(out: Path, *extra: str, particle: str = "e+", n: int = 12, energy: str = "50") -> list[str]:
    return [
        "simulate", "calo", "--particle", particle, "--n", str(n), "--energy", energy,
        "--seed", "7", "--chunk-size", "5", "--out", str(out), *extra,
    ]  # fmt: skip


def test_writes_calogan_file_that_plain_h5py_reads(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "eplus.h5"  # parent directory is created
    assert main(simulate_args(out, "--quiet")) == 0
    with h5py.File(out, "r") as f:
        assert f["energy"].shape == (12, 1)
        assert f["energy"].dtype == np.float32
        np.testing.assert_array_equal(f["energy"][:], 50.0)
        for layer in LAYERS:
            ds = f[f"layer_{layer.index}"]
            assert (ds.shape, ds.dtype) == ((12, *layer.shape), np.float32)
        assert (f["overflow"].shape, f["overflow"].dtype) == ((12, 3), np.float32)
        assert f["layer_1"][:].sum() > 0
    # the file holds exactly what the library simulates for the same seed and chunking
    expected = simulate("e+", 12, "50", seed=7, chunk_size=5)
    np.testing.assert_array_equal(read_showers(out).cells, expected.cells)
    attrs = read_attrs(out)
    assert attrs["particle"] == "e+"
    assert attrs["seed"] == 7
    assert attrs["energy"] == "50"
    assert attrs["chunk_size"] == 5
    assert attrs["version"] == SIMULATOR_VERSION
    assert attrs["generator"] == "physics_data.calo.simulate"
    assert attrs["n"] == 12


def test_real_entry_point_writes_calochallenge_file(tmp_path: Path) -> None:
    out = tmp_path / "gamma.h5"
    args = simulate_args(
        out, "--format", "calochallenge", "--compression", "gzip", particle="gamma", energy="10:20"
    )
    result = subprocess.run([str(ENTRY_POINT), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 12 gamma showers" in result.stdout
    with h5py.File(out, "r") as f:
        assert set(f) == {"incident_energies", "showers"}
        assert f["showers"].shape == (12, 504)
        assert f["showers"].compression == "gzip"
        incident = f["incident_energies"][:, 0]
    assert np.all((incident >= 10_000.0) & (incident <= 20_000.0))  # MeV


@pytest.mark.parametrize("argv", [["simulate", "--help"], ["simulate", "calo", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "calo" in text
    if argv[-2] == "calo":
        for word in ("GeV", "MeV", "calochallenge", "--workers", "--seed", "1:100"):
            assert word in text, word


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"particle": "mu-"}, "invalid choice: 'mu-'"),
        ({"energy": "fifty"}, "energy 'fifty'"),
        ({"energy": "0"}, "'0'"),
        ({"energy": "20:10"}, "20"),
        ({"n": 0}, "--n: must be >= 1, got 0"),
    ],
)
def test_bad_values_exit_2_naming_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: dict, message: str
) -> None:
    out = tmp_path / "bad.h5"
    with pytest.raises(SystemExit) as info:
        main(simulate_args(out, **override))
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_existing_output_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(SystemExit) as info:
        main(simulate_args(out, "--quiet"))
    assert info.value.code == 2
    assert f"{out} exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(simulate_args(out, "--quiet", "--overwrite", n=3)) == 0
    assert len(read_showers(out)) == 3


def test_energy_outside_trained_range_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(simulate_args(tmp_path / "low.h5", "--quiet", n=2, energy="0.5:3")) == 0
    assert "warning: --energy 0.5:3 GeV extends outside 1-100 GeV" in capsys.readouterr().err


def test_worker_count_does_not_change_the_data(tmp_path: Path) -> None:
    one, two = tmp_path / "w1.h5", tmp_path / "w2.h5"
    assert main(simulate_args(one, "--quiet", "--workers", "1", particle="pi+", n=23, energy="1:100")) == 0
    assert main(simulate_args(two, "--quiet", "--workers", "2", particle="pi+", n=23, energy="1:100")) == 0
    a, b = read_showers(one), read_showers(two)
    np.testing.assert_array_equal(a.energy, b.energy)
    np.testing.assert_array_equal(a.cells, b.cells)
    np.testing.assert_array_equal(a.overflow, b.overflow)
    assert len(np.unique(a.energy)) == 23  # a real uniform draw, not a constant
