"""Cosmic-web field files: projected density slices with their parameters, validated on read and write.

Layout (``format = "cosmo-fields"``, ``schema_version`` 1.0):

``fields``      (N, H, W) float32 — projected density 1 + δ of each slice (mean ≈ 1, >= 0).
``params``      (N, k) float32 — per-slice parameters; column names in its ``names`` attribute
                (JSON list, e.g. ``["omega_m", "sigma8", "box_size", "redshift"]``).
``sim_index``   (N,) int64 — which simulation each slice comes from (slices of one box are correlated).
``density_3d``  (n_sims, G, G, G) float32, optional — the 3D CIC density 1 + δ of each simulation.

File attributes record whatever the caller passes (cosmology fixed parameters, grid, box size,
slice thickness, n_steps, seed, simulator version, ...) plus ``format``, ``schema_version``,
``n`` and ``created``. Dict/list attributes are stored as JSON strings.

Writes are atomic (``<path>.tmp-XXXX`` renamed over ``path`` only on success). Reading checks
every dataset and raises :class:`InvalidFieldFile` naming the file, the dataset and the problem.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "FieldFileWriter",
    "FieldSet",
    "InvalidFieldFile",
    "read_attrs",
    "read_fields",
    "read_sim_index",
    "write_fields",
]

FORMAT = "cosmo-fields"
SCHEMA_VERSION = "1.0"
_COMPRESSIONS = ("lzf", "gzip", None)


class InvalidFieldFile(ValueError):
    """A cosmo field file is missing a dataset or holds data of the wrong shape, type or range."""


@dataclass(frozen=True)
class FieldSet:
    """Slices and their parameters as stored in a field file."""

    fields: np.ndarray  # (N, H, W) float32, 1 + δ
    params: np.ndarray  # (N, k) float32
    param_names: tuple[str, ...]  # k column names of params
    sim_index: np.ndarray  # (N,) int64
    density_3d: np.ndarray | None = None  # (n_sims, G, G, G) float32 or None
    attrs: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> np.ndarray:
        """Column ``name`` of ``params``."""
        if name not in self.param_names:
            raise KeyError(f"no parameter {name!r}; the file has {list(self.param_names)}")
        return self.params[:, self.param_names.index(name)]


def _attr_value(value: Any) -> Any:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value)
    if value is None:
        return "none"
    return value


class FieldFileWriter:
    """Context manager that appends slices to a new field file and renames it into place on success.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "f.h5"
    >>> with FieldFileWriter(path, ("omega_m", "sigma8"), (8, 8)) as w:
    ...     w.append(np.ones((3, 8, 8)), np.full((3, 2), 0.3), np.zeros(3, dtype=int))
    >>> read_fields(path).fields.shape
    (3, 8, 8)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        param_names: Sequence[str],
        map_shape: tuple[int, int],
        attrs: Mapping[str, Any] | None = None,
        grid_3d: int | None = None,
        compression: str | None = "lzf",
    ) -> None:
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
        if len(param_names) == 0 or len(set(param_names)) != len(param_names):
            raise ValueError(f"param_names must be non-empty and unique, got {list(param_names)}")
        self.path = Path(path)
        self.param_names = tuple(param_names)
        self.map_shape = tuple(map_shape)
        self.attrs = dict(attrs or {})
        self.grid_3d = grid_3d
        self.compression = compression
        self.n = 0
        self.n_3d = 0
        self._file: h5py.File | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> FieldFileWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{self.path.name}.tmp-", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        f = h5py.File(self._tmp, "w")
        self._file = f
        h, w = self.map_shape
        opts = {"compression": self.compression}
        f.create_dataset("fields", (0, h, w), maxshape=(None, h, w), dtype="f4", chunks=(16, h, w), **opts)
        k = len(self.param_names)
        params = f.create_dataset("params", (0, k), maxshape=(None, k), dtype="f4", chunks=(1024, k), **opts)
        params.attrs["names"] = json.dumps(list(self.param_names))
        f.create_dataset("sim_index", (0,), maxshape=(None,), dtype="i8", chunks=(1024,), **opts)
        if self.grid_3d is not None:
            g = self.grid_3d
            f.create_dataset(
                "density_3d", (0, g, g, g), maxshape=(None, g, g, g), dtype="f4", chunks=(1, g, g, g), **opts
            )
        return self

    def append(
        self,
        fields: np.ndarray,
        params: np.ndarray,
        sim_index: np.ndarray,
        density_3d: np.ndarray | None = None,
    ) -> None:
        """Append slices (n, H, W), their params (n, k) and sim indices (n,); optionally 3D boxes."""
        if self._file is None:
            raise RuntimeError("FieldFileWriter.append called outside its 'with' block")
        fields = np.asarray(fields, dtype=np.float32)
        params = np.asarray(params, dtype=np.float32)
        sim_index = np.asarray(sim_index, dtype=np.int64)
        n = fields.shape[0]
        _check_array("fields", fields, (None, *self.map_shape), nonnegative=True)
        _check_array("params", params, (n, len(self.param_names)))
        _check_array("sim_index", sim_index, (n,))
        for name, data in (("fields", fields), ("params", params), ("sim_index", sim_index)):
            ds = self._file[name]
            ds.resize(self.n + n, axis=0)
            ds[self.n :] = data
        self.n += n
        if density_3d is not None:
            if self.grid_3d is None:
                raise ValueError("density_3d given but the writer was opened without grid_3d")
            g = self.grid_3d
            density_3d = np.asarray(density_3d, dtype=np.float32)
            _check_array("density_3d", density_3d, (None, g, g, g), nonnegative=True)
            ds = self._file["density_3d"]
            ds.resize(self.n_3d + len(density_3d), axis=0)
            ds[self.n_3d :] = density_3d
            self.n_3d += len(density_3d)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._file is not None and self._tmp is not None
        try:
            if exc_type is None:
                f = self._file
                for key, value in self.attrs.items():
                    f.attrs[key] = _attr_value(value)
                f.attrs["format"] = FORMAT
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["n"] = self.n
                f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._file.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            self._file = None
            if self._tmp.exists():
                self._tmp.unlink()


def _check_array(
    name: str, data: np.ndarray, shape: tuple[int | None, ...], nonnegative: bool = False, where: str = ""
) -> None:
    """Raise InvalidFieldFile if ``data`` has the wrong rank/shape, a non-numeric dtype or bad values."""
    prefix = f"{where}dataset '{name}': "
    if data.ndim != len(shape) or any(
        s is not None and s != d for s, d in zip(shape, data.shape, strict=True)
    ):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise InvalidFieldFile(f"{prefix}expected shape {expected}, got {data.shape}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise InvalidFieldFile(f"{prefix}expected numbers, got dtype {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise InvalidFieldFile(f"{prefix}contains NaN or inf")
    if nonnegative and data.size and float(data.min()) < 0:
        raise InvalidFieldFile(f"{prefix}density 1+δ must be >= 0, found {float(data.min()):g}")


def write_fields(
    path: str | os.PathLike[str],
    fields: np.ndarray,
    params: np.ndarray,
    param_names: Sequence[str],
    sim_index: np.ndarray | None = None,
    density_3d: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    compression: str | None = "lzf",
) -> None:
    """Write a complete field file atomically (see the module docstring for the layout)."""
    fields = np.asarray(fields)
    if fields.ndim != 3:
        raise ValueError(f"fields must have shape (N, H, W), got {fields.shape}")
    sim_index = np.zeros(len(fields), dtype=np.int64) if sim_index is None else sim_index
    grid = None if density_3d is None else int(np.asarray(density_3d).shape[-1])
    with FieldFileWriter(path, param_names, fields.shape[1:], attrs, grid, compression) as writer:
        writer.append(fields, params, sim_index, density_3d)


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """File attributes as a dict (JSON strings decoded back to lists/dicts)."""
    with _open(Path(path)) as f:
        return _decode_attrs(f.attrs)


def _decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InvalidFieldFile(f"{path}: not a readable HDF5 file ({exc})") from None


def _read_sim_index(f: h5py.File, n: int, where: str) -> np.ndarray:
    """The (n,) ``sim_index`` of an open field file (all zeros for files written without one)."""
    sim_index = f["sim_index"][()] if "sim_index" in f else np.zeros(n, dtype=np.int64)
    _check_array("sim_index", sim_index, (n,), where=where)
    return sim_index


def read_sim_index(path: str | os.PathLike[str]) -> np.ndarray:
    """Only the (N,) ``sim_index`` of a field file (all zeros for files written without one)."""
    with _open(Path(path)) as f:
        if "fields" not in f:
            raise InvalidFieldFile(f"{path}: missing dataset 'fields' (is this a cosmo field file?)")
        return _read_sim_index(f, f["fields"].shape[0], f"{path}: ")


def read_fields(path: str | os.PathLike[str], load_3d: bool = True) -> FieldSet:
    """Read and validate a field file; ``load_3d=False`` skips the (large) ``density_3d`` dataset."""
    path = Path(path)
    where = f"{path}: "
    with _open(path) as f:
        for name in ("fields", "params"):
            if name not in f:
                raise InvalidFieldFile(f"{where}missing dataset '{name}' (is this a cosmo field file?)")
        fields = f["fields"][()]
        params = f["params"][()]
        _check_array("fields", fields, (None, None, None), nonnegative=True, where=where)
        n = fields.shape[0]
        _check_array("params", params, (n, None), where=where)
        raw = f["params"].attrs.get("names")
        try:
            names = tuple(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
        except (TypeError, json.JSONDecodeError):
            raise InvalidFieldFile(
                f"{where}dataset 'params': attribute 'names' missing or not a JSON list"
            ) from None
        if len(names) != params.shape[1]:
            raise InvalidFieldFile(
                f"{where}dataset 'params': {params.shape[1]} columns but {len(names)} names {list(names)}"
            )
        sim_index = _read_sim_index(f, n, where)
        density = None
        if load_3d and "density_3d" in f:
            density = f["density_3d"][()]
            _check_array("density_3d", density, (None, None, None, None), nonnegative=True, where=where)
            if len(set(density.shape[1:])) != 1:
                raise InvalidFieldFile(
                    f"{where}dataset 'density_3d': boxes must be cubic, got {density.shape}"
                )
        attrs = _decode_attrs(f.attrs)
    return FieldSet(
        fields=fields.astype(np.float32, copy=False),
        params=params.astype(np.float32, copy=False),
        param_names=names,
        sim_index=sim_index.astype(np.int64, copy=False),
        density_3d=None if density is None else density.astype(np.float32, copy=False),
        attrs=attrs,
    )
