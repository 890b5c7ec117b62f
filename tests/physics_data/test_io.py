"""Shower HDF5 files: exact round trips, chunked reads, attributes, atomic writes, bad-file errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from physics_data.calo.geometry import LAYERS, N_CELLS
from physics_data.calo.io import (
    FORMATS,
    InvalidShowerFile,
    ShowerFileWriter,
    count_showers,
    iter_showers_file,
    read_attrs,
    read_showers,
    write_showers,
)
from physics_data.calo.showers import Showers


def make_showers(n: int = 50, seed: int = 0) -> Showers:
    """Sparse, non-negative synthetic showers with awkward float32 values (not round numbers)."""
    rng = np.random.default_rng(seed)
    cells = rng.lognormal(0.0, 2.0, (n, N_CELLS)) * (rng.random((n, N_CELLS)) < 0.4)
    return Showers(
        energy=rng.uniform(1.0, 100.0, n).astype(np.float32),
        cells=cells.astype(np.float32),
        overflow=rng.exponential(5.0, (n, 3)).astype(np.float32),
    )


def assert_same(a: Showers, b: Showers) -> None:
    for field in ("energy", "cells", "overflow"):
        x, y = getattr(a, field), getattr(b, field)
        assert y.dtype == np.float32, field
        np.testing.assert_array_equal(x, y, err_msg=field)


@pytest.fixture
def showers() -> Showers:
    return make_showers()


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compression", ["lzf", "gzip", None])
def test_calogan_round_trip_is_exact(tmp_path: Path, showers: Showers, compression: str | None) -> None:
    path = tmp_path / "s.h5"
    write_showers(path, showers, fmt="calogan", compression=compression)
    assert_same(showers, read_showers(path))


def test_calochallenge_round_trip_is_exact_and_has_zero_overflow(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    write_showers(path, showers, fmt="calochallenge")
    back = read_showers(path)
    np.testing.assert_array_equal(back.energy, showers.energy)
    np.testing.assert_array_equal(back.cells, showers.cells)
    np.testing.assert_array_equal(back.overflow, np.zeros_like(showers.overflow))
    assert "not stored" in read_attrs(path)["overflow"]


def test_calogan_file_as_plain_h5py_sees_it(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    write_showers(path, showers, fmt="calogan", compression="gzip")
    n = len(showers)
    with h5py.File(path, "r") as f:
        assert f["energy"].shape == (n, 1)
        np.testing.assert_array_equal(f["energy"][:, 0], showers.energy)
        for layer in LAYERS:
            ds = f[f"layer_{layer.index}"]
            assert ds.shape == (n, *layer.shape)
            assert ds.dtype == np.float32
            assert ds.compression == "gzip"
            assert ds.chunks is not None
            assert ds.attrs["units"] == "MeV"
        # layer 1 cell (i, j) is flat index 288 + 12 i + j (geometry docstring)
        np.testing.assert_array_equal(f["layer_1"][:, 2, 5], showers.cells[:, 288 + 2 * 12 + 5])
        np.testing.assert_array_equal(f["overflow"][:], showers.overflow)
        assert f["energy"].attrs["units"] == "GeV"


def test_calochallenge_file_is_mev_in_flat_calogan_order(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    write_showers(path, showers, fmt="calochallenge")
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"incident_energies", "showers"}
        np.testing.assert_allclose(f["incident_energies"][:, 0], showers.energy.astype(np.float64) * 1000.0)
        assert f["showers"].shape == (len(showers), N_CELLS)
        np.testing.assert_array_equal(f["showers"][:], showers.cells)


def test_empty_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with ShowerFileWriter(path):
        pass
    assert len(read_showers(path)) == 0
    assert list(iter_showers_file(path)) == []
    assert read_attrs(path)["n"] == 0


def test_foreign_float64_file_with_1d_energy_is_read_as_float32(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:  # like the original CaloGAN sample: float64, uncompressed
        f["energy"] = showers.energy.astype(np.float64)
        for i, arr in enumerate(showers.layers):
            f[f"layer_{i}"] = arr.astype(np.float64)
        f["overflow"] = showers.overflow.astype(np.float64)
    assert_same(showers, read_showers(path))
    assert read_attrs(path) == {}


# --------------------------------------------------------------------------- chunked reading


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunked_reading_equals_whole_reading(tmp_path: Path, showers: Showers, fmt: str) -> None:
    path = tmp_path / "s.h5"
    with ShowerFileWriter(path, fmt=fmt, chunk_rows=8) as writer:
        for lo in range(0, len(showers), 13):  # appends that straddle HDF5 chunk boundaries
            writer.append(showers[lo : lo + 13])
    chunks = list(iter_showers_file(path, chunk_size=7))
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    assert_same(read_showers(path), Showers.concatenate(chunks))
    assert count_showers(path) == len(showers)


def test_iter_rows_window_and_read_first_n(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    write_showers(path, showers)
    window = Showers.concatenate(list(iter_showers_file(path, chunk_size=4, start=10, stop=21)))
    assert_same(showers[10:21], window)
    assert_same(showers[:5], read_showers(path, n=5))
    with pytest.raises(ValueError, match=r"holds 50 showers; cannot read n=51"):
        read_showers(path, n=51)


# --------------------------------------------------------------------------- attributes


def test_attrs_round_trip_with_writer_provenance(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    given = {
        "particle": "pi+",
        "generator": "physics_data.calo.simulate",
        "version": "0.3",
        "seed": 12345,
        "energy": "1:100",
        "temperature": 0.5,
        "flag": True,
        "config": {"chunk_size": 10, "layers": [1, 2]},
    }
    write_showers(path, showers, fmt="calogan", attrs=given)
    attrs = read_attrs(path)
    for key, value in given.items():
        expected = '{"chunk_size": 10, "layers": [1, 2]}' if key == "config" else value
        assert attrs[key] == expected, key
        assert type(attrs[key]) is type(expected), key
    assert attrs["format"] == "calogan"
    assert attrs["n"] == len(showers)
    assert "GeV" in attrs["units"] and "MeV" in attrs["units"]
    assert datetime.fromisoformat(attrs["created"]).tzinfo is not None
    # attributes read from one file can be passed to the next; writer keys are refreshed
    write_showers(tmp_path / "copy.h5", showers[:3], fmt="calochallenge", attrs=attrs)
    copied = read_attrs(tmp_path / "copy.h5")
    assert (copied["format"], copied["n"], copied["particle"]) == ("calochallenge", 3, "pi+")


def test_unstorable_attr_is_rejected_by_name(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"'seed'.*NoneType"):
        ShowerFileWriter(tmp_path / "s.h5", attrs={"seed": None})


# --------------------------------------------------------------------------- atomic writes


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_file_appears_only_when_the_writer_closes(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    with ShowerFileWriter(path) as writer:
        writer.append(showers)
        assert not path.exists()
        (tmp,) = leftovers(tmp_path)
        assert tmp.startswith("s.h5.tmp-")
    assert leftovers(tmp_path) == ["s.h5"]


def test_exception_inside_writer_leaves_nothing(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="boom"), ShowerFileWriter(path) as writer:
        writer.append(showers)
        raise RuntimeError("boom")
    assert leftovers(tmp_path) == []


def test_existing_file_survives_a_failed_write(tmp_path: Path, showers: Showers) -> None:
    path = tmp_path / "s.h5"
    write_showers(path, showers[:5], attrs={"seed": 1})
    with pytest.raises(KeyboardInterrupt), ShowerFileWriter(path, attrs={"seed": 2}) as writer:
        writer.append(showers)
        raise KeyboardInterrupt
    assert leftovers(tmp_path) == ["s.h5"]
    assert_same(showers[:5], read_showers(path))
    assert read_attrs(path)["seed"] == 1


def test_writer_refuses_nan_and_leaves_no_file(tmp_path: Path, showers: Showers) -> None:
    showers.cells[3, 400] = np.nan
    path = tmp_path / "s.h5"
    with pytest.raises(ValueError, match=r"dataset 'layer_1': NaN or infinite value nan in row 3"):
        write_showers(path, showers)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "root"}, "unknown shower file format 'root'"),
        ({"compression": "zstd"}, "unknown compression 'zstd'"),
    ],
)
def test_writer_rejects_bad_options(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShowerFileWriter(tmp_path / "s.h5", **kwargs)


# --------------------------------------------------------------------------- bad files


def _delete(name: str):
    def edit(f: h5py.File) -> None:
        del f[name]

    return edit


def _replace(name: str, make):
    def edit(f: h5py.File) -> None:
        data = make(f[name][:])
        del f[name]
        f[name] = data

    return edit


def _set(name: str, index: tuple, value: float):
    def edit(f: h5py.File) -> None:
        f[name][index] = value

    return edit


BAD_FILES = [
    ("calogan", _delete("layer_2"), "layer_2", "missing"),
    (
        "calogan",
        _replace("layer_1", lambda a: a[:, :, :11]),
        "layer_1",
        r"has shape \(50, 12, 11\), expected \(N, 12, 12\)",
    ),
    ("calogan", _replace("overflow", lambda a: a[:40]), "overflow", "has 40 rows but 'energy' has 50"),
    ("calogan", _set("layer_0", (17, 1, 3), np.nan), "layer_0", "NaN or infinite value nan in row 17"),
    ("calogan", _set("overflow", (42, 2), -1.5), "overflow", r"negative energy -1.5 in row 42"),
    ("calogan", _set("energy", (8, 0), -50.0), "energy", r"non-positive energy -50.0 in row 8"),
    ("calochallenge", _delete("incident_energies"), "incident_energies", "missing"),
    ("calochallenge", _set("showers", (30, 100), np.inf), "showers", "NaN or infinite value inf in row 30"),
    ("calochallenge", _set("showers", (0, 0), -0.25), "showers", r"negative energy -0.25 in row 0"),
]


@pytest.mark.parametrize(("fmt", "edit", "dataset", "problem"), BAD_FILES)
def test_bad_file_error_names_file_dataset_and_problem(
    tmp_path: Path, showers: Showers, fmt: str, edit, dataset: str, problem: str
) -> None:
    path = tmp_path / "bad.h5"
    write_showers(path, showers, fmt=fmt)
    with h5py.File(path, "r+") as f:
        edit(f)
    for read in (read_showers, lambda p: list(iter_showers_file(p, chunk_size=16))):
        with pytest.raises(InvalidShowerFile, match=problem) as info:
            read(path)
        assert info.value.path == str(path)
        assert info.value.dataset == dataset
        assert str(info.value).startswith(f"{path}: dataset '{dataset}': ")


def test_not_hdf5_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(InvalidShowerFile, match=r"junk\.h5: not a readable HDF5 file"):
        read_showers(junk)
    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        read_attrs(tmp_path / "nope.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["images"] = np.zeros((2, 3))
    with pytest.raises(InvalidShowerFile, match=r"no shower datasets \(found \['images'\]\)"):
        read_showers(tmp_path / "other.h5")
