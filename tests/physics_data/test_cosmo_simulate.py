"""Slices over a Latin hypercube (library and ``emulator simulate cosmo`` CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physics_data.cosmo.io import read_fields
from physics_data.cosmo.simulate import (
    PARAM_NAMES,
    latin_hypercube,
    parse_range,
    project_slabs,
    simulate_slices,
    slab_cells,
)
from pipelines.cli import main

SMALL = dict(
    box_size=64.0, grid=16, n_particles=16, n_steps=2, device="cpu", power_backend="eh", progress=False
)


def test_parse_range_and_latin_hypercube() -> None:
    assert parse_range("0.3").fixed and parse_range(0.3).low == 0.3
    r = parse_range("0.1:0.5")
    assert (r.low, r.high, str(r)) == (0.1, 0.5, "0.1:0.5")
    for bad in ("0.5:0.1", "a:b", "1:2:3", ""):
        with pytest.raises(ValueError, match="omega_m"):
            parse_range(bad, "omega_m")
    points = latin_hypercube(10, [r, parse_range("0.8")], np.random.default_rng(0))
    strata = np.floor((points[:, 0] - 0.1) / 0.04).astype(int)
    assert sorted(strata) == list(range(10))  # one point per stratum
    np.testing.assert_array_equal(points[:, 1], 0.8)


def test_project_slabs_averages_each_axis() -> None:
    import torch

    density = torch.arange(4**3, dtype=torch.float32).reshape(4, 4, 4)
    maps = project_slabs(density, 2)
    assert maps.shape == (6, 4, 4)
    torch.testing.assert_close(maps[0], density[:2].mean(0))
    torch.testing.assert_close(maps[3], density[:, 2:].mean(1))
    torch.testing.assert_close(maps[5], density[:, :, 2:].mean(2))
    assert slab_cells(64, 256.0, None) == 4 and slab_cells(64, 256.0, 32.0) == 8
    assert slab_cells(50, 100.0, None) == 2  # 50 // 16 = 3 does not divide 50
    with pytest.raises(ValueError, match="whole number of cells"):
        slab_cells(64, 256.0, 10.0)


def test_simulate_slices_shapes_ranges_and_reproducibility() -> None:
    data = simulate_slices(3, "0.2:0.4", 0.8, seed=5, slices_per_sim=6, **SMALL)
    assert data.fields.shape == (18, 16, 16) and data.fields.dtype == np.float32
    assert data.param_names == PARAM_NAMES
    omega_m = data.param("omega_m")
    assert np.all((omega_m >= 0.2) & (omega_m <= 0.4)) and len(np.unique(omega_m)) == 3
    np.testing.assert_allclose(data.param("sigma8"), 0.8)
    np.testing.assert_array_equal(data.sim_index, np.repeat([0, 1, 2], 6))
    # projected 1 + δ: positive, mean 1 over a full set of slabs, clustered (not uniform)
    assert data.fields.min() >= 0
    full = simulate_slices(1, 0.3, 0.8, seed=5, **SMALL)
    assert full.fields.shape == (48, 16, 16)  # 3 axes x 16 slabs of 4 Mpc/h
    assert float(full.fields.mean()) == pytest.approx(1.0, abs=1e-5)
    assert full.fields.std() > 0.1
    again = simulate_slices(3, "0.2:0.4", 0.8, seed=5, slices_per_sim=6, **SMALL)
    np.testing.assert_array_equal(again.fields, data.fields)
    assert full.attrs["slice_thickness"] == 4.0 and full.attrs["cosmology_n_s"] == 0.96


def test_cli_writes_validated_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cosmo.h5"
    args = [
        "simulate", "cosmo", "--n-sims", "2", "--omega-m", "0.25:0.35", "--sigma8", "0.8", "--box-size", "64",
        "--grid", "16", "--particles", "32", "--steps", "2", "--seed", "4", "--slices-per-sim", "5",
        "--linear-power", "eh", "--device", "cpu", "--save-3d", "--quiet", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert "wrote 10 slices from 2 simulations" in capsys.readouterr().out
    data = read_fields(out)
    assert data.fields.shape == (10, 16, 16) and data.density_3d.shape == (2, 16, 16, 16)
    assert data.attrs["seed"] == 4 and data.attrs["n_particles"] == 32 and data.attrs["grid"] == 16
    assert data.attrs["simulator_version"] and data.attrs["cosmology_h"] == 0.7
    # each slice is a slab average of its simulation's stored 3D density
    np.testing.assert_allclose(data.fields[0], data.density_3d[0, :1].mean(0), rtol=1e-5)
    with pytest.raises(SystemExit) as exc:
        main(args)  # exists, no --overwrite
    assert exc.value.code == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--omega-m", "0.5:0.1", "LOW <= HIGH"),
        ("--sigma8", "x", "not a number"),
        ("--redshift", "20", "must be in"),
        ("--slice-thickness", "10", "whole number of cells"),
    ],
)
def test_cli_rejects_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    args = ["simulate", "cosmo", "--n-sims", "1", "--seed", "1", "--out", str(tmp_path / "x.h5"), flag, value]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
