"""Calorimeter shower files: the CaloGAN and CaloChallenge HDF5 layouts, validated on read and write.

Two layouts (reference section 2), both written by :class:`ShowerFileWriter`:

``calogan`` (hep-lbdl/CaloGAN ``generation/convert.py``)
    ``energy`` (N, 1) GeV incident kinetic energy; ``layer_0`` (N, 3, 96), ``layer_1`` (N, 12, 12),
    ``layer_2`` (N, 12, 6) and ``overflow`` (N, 3), all MeV. Written as float32.

``calochallenge`` (CaloChallenge ``README.md``)
    ``incident_energies`` (N, 1) MeV and ``showers`` (N, 504) MeV. Project convention, since the
    challenge has no CaloGAN dataset: the 504 voxels are in the flat CaloGAN order of
    :mod:`physics_data.calo.geometry` (layer 0 then 1 then 2, each row-major), incident energies
    are converted GeV -> MeV, and the overflow is **not stored** (the file says so in its
    ``overflow`` attribute; reading such a file gives zero overflow). ``incident_energies`` is
    float64 so that float32 GeV -> MeV -> GeV round-trips exactly; ``showers`` is float32.

Every dataset is chunked by about 1024 rows and compressed: ``"lzf"`` (default; fast, built
into h5py) or ``"gzip"`` (readable by any HDF5 tool, e.g. ROOT or C++ readers), or ``None``.
Each dataset carries a ``units`` attribute; the file carries ``format``, ``schema_version``,
``units``, ``n``, ``created`` (ISO 8601, UTC) and whatever provenance the caller passes
(particle, generator, version, seed, energy spec, ...).

Writes are atomic: data go to ``<path>.tmp-XXXX`` beside the target, which is renamed over
``path`` only when the writer closes without an exception; on failure the temporary file is
removed and an existing file at ``path`` is left untouched.

Reading is streamed in row chunks (:func:`iter_showers_file`), so files larger than memory
can be processed. Foreign files (float64, energy stored as (N,)) are accepted and returned as
float32 :class:`~physics_data.calo.showers.Showers`. A missing dataset, wrong shape,
non-numeric dtype, NaN/inf, negative deposit or non-positive incident energy raises
:class:`InvalidShowerFile`, whose message names the file, the dataset and the problem.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np

from physics_data.calo.geometry import LAYERS, N_CELLS, N_LAYERS, from_flat
from physics_data.calo.showers import Showers

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "SCHEMA_VERSION",
    "InvalidShowerFile",
    "ShowerFileWriter",
    "count_showers",
    "iter_showers_file",
    "read_attrs",
    "read_showers",
    "write_showers",
]

Format = Literal["calogan", "calochallenge"]
FORMATS: tuple[str, ...] = ("calogan", "calochallenge")
COMPRESSIONS: tuple[str | None, ...] = ("lzf", "gzip", None)
SCHEMA_VERSION = "1.0"
"""Version of this module's layouts; bump when datasets or attributes change meaning."""

CHUNK_ROWS = 1024
_CACHE_BYTES = 64 * 2**20  # chunk cache: several (1024, 504) float32 chunks, so appends never re-read
_GZIP_LEVEL = 4


@dataclass(frozen=True)
class _Dataset:
    """One dataset of a layout: name, per-row shape, unit, on-disk dtype, and value rule."""

    name: str
    row_shape: tuple[int, ...]
    unit: str
    dtype: type
    positive: bool = False  # incident energies must be > 0; deposits only >= 0


_LAYOUTS: dict[str, tuple[_Dataset, ...]] = {
    "calogan": (
        _Dataset("energy", (1,), "GeV", np.float32, positive=True),
        *(_Dataset(f"layer_{layer.index}", layer.shape, "MeV", np.float32) for layer in LAYERS),
        _Dataset("overflow", (N_LAYERS,), "MeV", np.float32),
    ),
    "calochallenge": (
        _Dataset("incident_energies", (1,), "MeV", np.float64, positive=True),
        _Dataset("showers", (N_CELLS,), "MeV", np.float32),
    ),
}
_MEV_PER_GEV = 1000.0
_OVERFLOW_NOTE = {
    "calogan": "stored in dataset 'overflow' (MeV per layer)",
    "calochallenge": "not stored (CaloChallenge layout has no overflow); reads as zeros",
}
_WRITER_KEYS = ("format", "schema_version", "units", "n", "overflow", "created")


class InvalidShowerFile(ValueError):
    """A shower file that does not match its layout; the message names file, dataset and problem."""

    def __init__(self, path: str | os.PathLike[str], dataset: str | None, problem: str) -> None:
        self.path = str(path)
        self.dataset = dataset
        self.problem = problem
        where = f"{self.path}: dataset '{dataset}'" if dataset else self.path
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------- layout conversion


def _to_arrays(showers: Showers, fmt: str) -> dict[str, np.ndarray]:
    """Showers -> {dataset name: array} in the on-disk units and dtypes of ``fmt``."""
    energy = np.asarray(showers.energy, dtype=np.float32).reshape(-1, 1)
    cells = np.asarray(showers.cells, dtype=np.float32)
    if fmt == "calogan":
        arrays = {"energy": energy, "overflow": np.asarray(showers.overflow, dtype=np.float32)}
        arrays.update({f"layer_{i}": a for i, a in enumerate(from_flat(cells))})
        return arrays
    # float64 so that GeV -> MeV is exact (float32 * 1000 needs at most 31 mantissa bits)
    return {"incident_energies": energy.astype(np.float64) * _MEV_PER_GEV, "showers": cells}


def _from_arrays(arrays: dict[str, np.ndarray], fmt: str) -> Showers:
    """{dataset name: array} as read from ``fmt`` -> float32 Showers in CaloGAN units."""
    if fmt == "calogan":
        energy = arrays["energy"].reshape(-1)
        n = arrays["energy"].shape[0]  # explicit sizes: reshape(0, -1) is ambiguous for empty files
        cells = np.concatenate([arrays[f"layer_{ly.index}"].reshape(n, ly.n_cells) for ly in LAYERS], axis=1)
        overflow = arrays["overflow"]
    else:
        energy = arrays["incident_energies"].astype(np.float64).reshape(-1) / _MEV_PER_GEV
        cells = arrays["showers"]
        overflow = np.zeros((cells.shape[0], N_LAYERS), dtype=np.float32)
    return Showers(
        energy=np.asarray(energy, dtype=np.float32),
        cells=np.ascontiguousarray(cells, dtype=np.float32),
        overflow=np.asarray(overflow, dtype=np.float32),
    )


def _value_problem(data: np.ndarray, spec: _Dataset, first_row: int) -> str | None:
    """Describe the first bad value in ``data`` (rows counted from ``first_row``), or None."""
    flat = data.reshape(data.shape[0], int(np.prod(data.shape[1:])))  # not -1: N may be 0
    checks = (
        (~np.isfinite(flat), "NaN or infinite value"),
        ((flat <= 0, "non-positive energy") if spec.positive else (flat < 0, "negative energy")),
    )
    for bad, what in checks:
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size:
            value = float(flat[rows[0]][bad[rows[0]]][0])
            row = first_row + int(rows[0])
            return f"{what} {value!r} in row {row} ({rows.size} bad rows among rows {first_row}-{first_row + len(flat) - 1})"
    return None


# --------------------------------------------------------------------------- attributes


def _to_attr(key: str, value: Any) -> Any:
    """A Python value as an HDF5 attribute; containers are stored as JSON text."""
    if isinstance(value, (str, bool, int, float, np.generic)):
        return value
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    raise TypeError(
        f"attribute {key!r} has type {type(value).__name__}; use str, int, float, bool, "
        "a numpy array, or a list/tuple/dict (stored as JSON text)"
    )


def _from_attr(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_from_attr(v) for v in value.tolist()] if value.dtype.kind in "OS" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file-level attributes of a shower file as plain Python values.

    Files written here have ``format``, ``schema_version``, ``units``, ``n``, ``overflow`` and
    ``created`` plus the caller's provenance (e.g. ``particle``, ``generator``, ``version``,
    ``seed``); lists and dicts come back as the JSON text they were stored as.
    """
    with _open(path) as f:
        return {key: _from_attr(value) for key, value in f.attrs.items()}


# --------------------------------------------------------------------------- writing


class ShowerFileWriter:
    """Append showers to a new HDF5 file in chunks; the file appears at ``path`` only on success.

    Use as a context manager::

        with ShowerFileWriter("e+.h5", attrs={"particle": "e+", "seed": 1}) as w:
            for batch in batches:
                w.append(batch)

    Args:
        path: target file; an existing file is replaced only when the writer exits cleanly.
        fmt: ``"calogan"`` or ``"calochallenge"`` (see the module docstring for units and order).
        attrs: provenance stored as file attributes. ``format``, ``schema_version``, ``units``,
            ``n``, ``overflow`` and ``created`` are set by the writer and override the same
            keys here, so attributes read from another file can be passed straight through.
        compression: ``"lzf"`` (fast), ``"gzip"`` (readable by every HDF5 tool) or ``None``.
        chunk_rows: rows per HDF5 chunk.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: Format | str = "calogan",
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = "lzf",
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        if fmt not in _LAYOUTS:
            raise ValueError(f"unknown shower file format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}; choose one of 'lzf', 'gzip' or None")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.path = Path(path)
        self.fmt = fmt
        self.compression = compression
        self.chunk_rows = chunk_rows
        self.n = 0
        self._attrs = {key: _to_attr(key, value) for key, value in (attrs or {}).items()}
        self._tmp: Path | None = None
        self._file: h5py.File | None = None

    def __enter__(self) -> ShowerFileWriter:
        fd, tmp = tempfile.mkstemp(prefix=f"{self.path.name}.tmp-", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            _chmod_like_new_file(self._tmp)  # mkstemp makes 0600; the result should be a normal file
            self._file = h5py.File(self._tmp, "w", rdcc_nbytes=_CACHE_BYTES)
            self._create_datasets(self._file)
        except BaseException:
            self._discard()
            raise
        return self

    def _create_datasets(self, f: h5py.File) -> None:
        options: dict[str, Any] = {"compression": self.compression, "shuffle": self.compression is not None}
        if self.compression == "gzip":
            options["compression_opts"] = _GZIP_LEVEL
        for spec in _LAYOUTS[self.fmt]:
            ds = f.create_dataset(
                spec.name,
                shape=(0, *spec.row_shape),
                maxshape=(None, *spec.row_shape),
                chunks=(self.chunk_rows, *spec.row_shape),
                dtype=spec.dtype,
                **options,
            )
            ds.attrs["units"] = spec.unit

    def append(self, showers: Showers) -> None:
        """Write ``showers`` after the rows already written; rejects NaN/inf and negative energies."""
        if self._file is None:
            raise RuntimeError("ShowerFileWriter.append called outside its 'with' block")
        arrays = _to_arrays(showers, self.fmt)
        for spec in _LAYOUTS[self.fmt]:
            problem = _value_problem(arrays[spec.name], spec, self.n)
            if problem:
                raise ValueError(f"refusing to write {self.path}: dataset '{spec.name}': {problem}")
        m = len(showers)
        for name, data in arrays.items():
            ds = self._file[name]
            ds.resize(self.n + m, axis=0)
            ds[self.n : self.n + m] = data
        self.n += m

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            assert self._file is not None and self._tmp is not None
            units = ", ".join(f"{s.name}: {s.unit}" for s in _LAYOUTS[self.fmt])
            self._file.attrs.update(self._attrs)
            self._file.attrs.update(
                {
                    "format": self.fmt,
                    "schema_version": SCHEMA_VERSION,
                    "units": units,
                    "n": self.n,
                    "overflow": _OVERFLOW_NOTE[self.fmt],
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            )
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        """Close and delete the temporary file (the target path is never touched)."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _chmod_like_new_file(path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_showers(
    path: str | os.PathLike[str],
    showers: Showers,
    fmt: Format | str = "calogan",
    attrs: Mapping[str, Any] | None = None,
    compression: str | None = "lzf",
) -> None:
    """Write ``showers`` to ``path`` atomically in one go (see :class:`ShowerFileWriter`)."""
    with ShowerFileWriter(path, fmt=fmt, attrs=attrs, compression=compression) as writer:
        writer.append(showers)


# --------------------------------------------------------------------------- reading


def _open(path: str | os.PathLike[str]) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shower file not found: {path}")
    try:
        return h5py.File(path, "r", rdcc_nbytes=_CACHE_BYTES)
    except OSError as exc:
        raise InvalidShowerFile(path, None, f"not a readable HDF5 file ({exc})") from exc


def _detect_layout(f: h5py.File, path: str | os.PathLike[str]) -> tuple[str, int]:
    """Which layout ``f`` uses and its number of rows, after checking names, shapes and dtypes."""
    if "layer_0" in f or "energy" in f:
        fmt = "calogan"
    elif "showers" in f or "incident_energies" in f:
        fmt = "calochallenge"
    else:
        raise InvalidShowerFile(
            path,
            None,
            f"no shower datasets (found {sorted(f.keys()) or 'none'}); expected CaloGAN "
            "'energy', 'layer_0..2', 'overflow' or CaloChallenge 'incident_energies', 'showers'",
        )
    n: int | None = None
    for spec in _LAYOUTS[fmt]:
        if spec.name not in f or not isinstance(f[spec.name], h5py.Dataset):
            raise InvalidShowerFile(path, spec.name, f"missing; a {fmt} file needs {_names(fmt)}")
        ds = f[spec.name]
        shape = ds.shape
        ok = shape[1:] == spec.row_shape or (spec.row_shape == (1,) and len(shape) == 1)
        if not ok:
            raise InvalidShowerFile(
                path, spec.name, f"has shape {shape}, expected (N, {_dims(spec.row_shape)})"
            )
        if ds.dtype.kind not in "fiu":
            raise InvalidShowerFile(path, spec.name, f"has dtype {ds.dtype}, expected a real number type")
        if n is None:
            n = shape[0]
        elif shape[0] != n:
            first = _LAYOUTS[fmt][0].name
            raise InvalidShowerFile(path, spec.name, f"has {shape[0]} rows but '{first}' has {n}")
    assert n is not None
    return fmt, n


def _names(fmt: str) -> str:
    return ", ".join(f"'{s.name}'" for s in _LAYOUTS[fmt])


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


def _read_rows(f: h5py.File, path: str | os.PathLike[str], fmt: str, start: int, stop: int) -> Showers:
    arrays = {}
    for spec in _LAYOUTS[fmt]:
        data = f[spec.name][start:stop]
        problem = _value_problem(data, spec, start)
        if problem:
            raise InvalidShowerFile(path, spec.name, problem)
        arrays[spec.name] = data
    return _from_arrays(arrays, fmt)


def count_showers(path: str | os.PathLike[str]) -> int:
    """Number of showers in a file (checks the layout, not the values)."""
    with _open(path) as f:
        return _detect_layout(f, path)[1]


def iter_showers_file(
    path: str | os.PathLike[str], chunk_size: int = 10_000, start: int = 0, stop: int | None = None
) -> Iterator[Showers]:
    """Yield the showers of a CaloGAN or CaloChallenge file (auto-detected) in chunks.

    Only one chunk is in memory at a time, so files larger than memory can be processed.
    Every chunk is validated; the first bad value raises :class:`InvalidShowerFile`.

    Args:
        path: an HDF5 file in either layout.
        chunk_size: showers per yielded batch (the last one may be shorter).
        start, stop: read only rows ``start:stop`` (``stop=None`` means to the end).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with _open(path) as f:
        fmt, n = _detect_layout(f, path)
        stop = n if stop is None else min(stop, n)
        for lo in range(start, stop, chunk_size):
            yield _read_rows(f, path, fmt, lo, min(lo + chunk_size, stop))


def read_showers(path: str | os.PathLike[str], n: int | None = None) -> Showers:
    """Read the first ``n`` showers (all when ``None``) of a file into memory.

    Raises:
        InvalidShowerFile: the layout or a value is wrong (message names file and dataset).
        ValueError: the file holds fewer than ``n`` showers.
    """
    with _open(path) as f:
        fmt, total = _detect_layout(f, path)
        if n is None:
            n = total
        if not 0 <= n <= total:
            raise ValueError(f"{path} holds {total} showers; cannot read n={n}")
        return _read_rows(f, path, fmt, 0, n)
