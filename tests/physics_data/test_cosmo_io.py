"""Cosmo field files: round trip, atomic writes, validation errors that name file, dataset and problem."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from physics_data.cosmo.io import FieldFileWriter, InvalidFieldFile, read_attrs, read_fields, write_fields

NAMES = ("omega_m", "sigma8", "box_size", "redshift")


def _data(n: int = 6, g: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    fields = rng.gamma(2.0, 0.5, size=(n, g, g)).astype(np.float32)
    params = np.column_stack(
        [rng.uniform(0.1, 0.5, n), rng.uniform(0.6, 1.0, n), np.full(n, 256.0), np.zeros(n)]
    )
    return fields, params


def test_round_trip_with_3d_density_and_attrs(tmp_path: Path) -> None:
    fields, params = _data()
    density = np.ones((2, 8, 8, 8), dtype=np.float32)
    out = tmp_path / "sub" / "cosmo.h5"
    attrs = {"seed": 3, "cosmology_h": 0.7, "omega_m_range": "0.1:0.5", "notes": {"a": 1}}
    write_fields(out, fields, params, NAMES, sim_index=np.repeat([0, 1], 3), density_3d=density, attrs=attrs)
    data = read_fields(out)
    np.testing.assert_array_equal(data.fields, fields)
    np.testing.assert_allclose(data.params, params.astype(np.float32))
    assert data.param_names == NAMES
    np.testing.assert_array_equal(data.sim_index, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(data.density_3d, density)
    np.testing.assert_allclose(data.param("sigma8"), params[:, 1].astype(np.float32))
    meta = read_attrs(out)
    assert meta["seed"] == 3 and meta["cosmology_h"] == 0.7 and meta["notes"] == {"a": 1}
    assert meta["format"] == "cosmo-fields" and meta["n"] == 6
    assert read_fields(out, load_3d=False).density_3d is None
    with h5py.File(out, "r") as f:  # plain h5py sees the documented layout
        assert f["fields"].dtype == np.float32 and f["params"].shape == (6, 4)
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no temporary left behind


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    fields, params = _data()
    out = tmp_path / "cosmo.h5"
    write_fields(out, fields, params, NAMES)
    with pytest.raises(RuntimeError, match="boom"), FieldFileWriter(out, NAMES, (8, 8)) as writer:
        writer.append(fields[:2], params[:2], np.zeros(2))
        raise RuntimeError("boom")
    assert read_fields(out).fields.shape == (6, 8, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["cosmo.h5"]
    with (
        pytest.raises(InvalidFieldFile, match=r"'params'.*shape"),
        FieldFileWriter(tmp_path / "x.h5", NAMES, (8, 8)) as w,
    ):
        w.append(fields, params[:, :2], np.zeros(6))
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda f: f.__delitem__("params"), "missing dataset 'params'"),
        (lambda f: f["fields"].__setitem__((0, 0, 0), np.nan), "'fields': contains NaN"),
        (lambda f: f["fields"].__setitem__((1, 2, 3), -1.0), "'fields': density 1\\+δ must be >= 0"),
        (lambda f: f["params"].attrs.__setitem__("names", '["omega_m"]'), "'params': 4 columns but 1 names"),
        (lambda f: f["params"].attrs.__delitem__("names"), "attribute 'names' missing"),
    ],
)
def test_invalid_files_name_file_dataset_and_problem(tmp_path: Path, corrupt, message: str) -> None:
    fields, params = _data()
    out = tmp_path / "bad.h5"
    write_fields(out, fields, params, NAMES)
    with h5py.File(out, "a") as f:
        corrupt(f)
    with pytest.raises(InvalidFieldFile, match=message) as info:
        read_fields(out)
    assert str(out) in str(info.value)


def test_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_fields(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(InvalidFieldFile, match="not a readable HDF5 file"):
        read_fields(junk)
