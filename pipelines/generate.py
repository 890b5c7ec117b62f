"""``emulator generate MODEL``: batch-generate samples from a model into HDF5, resumably, for any N.

Layout for N above one shard (``--shard-size``, default 262,144 rows)::

    OUT.h5                      one file h5py reads as a whole: HDF5 virtual datasets (same names as
                                the domain's format, e.g. CaloGAN energy/layer_0/1/2/overflow) over ...
    OUT.h5.shards/manifest.json the run's parameters (a rerun with other parameters is refused)
    OUT.h5.shards/shard-00000.h5 complete files in the domain's format, each written atomically
    ...                         (temporary name, renamed when complete)

Keep ``OUT.h5`` and ``OUT.h5.shards/`` together (the virtual datasets use relative paths). N up
to one shard is written straight to ``OUT.h5``.

Reproducibility and resume: the sampler generates fixed blocks of 8,192 samples, block b from
seeds (seed, b) only, and shard boundaries are multiples of the block size. So a shard's data do
not depend on which process wrote it or when: after a kill, rerunning the same command skips the
complete shards, regenerates the rest and gives data byte-identical to an uninterrupted run (and
to the HTTP API and Python client with the same seed). ``OUT.h5`` is written last, atomically.

Parallelism: ``--workers N`` writes shards in N local processes (each with cpu_count/N torch
threads), or as Ray tasks with ``--backend ray`` (``pip install -e .[ray]``; connects to the
cluster in ``RAY_ADDRESS`` or starts a local one). In a single process, generation (torch,
which releases the GIL) runs in a background thread with all cores (``--torch-threads``)
while the main thread writes HDF5.

Compression (``--compression``), measured on the 2-core development machine writing reference
e+ showers (82% zero cells) through the calo writer: ``none`` 257k showers/s (522 MB/s), any
HDF5 tool reads it; ``lzf`` 33k showers/s, 3.2x smaller, needs h5py's LZF filter (h5py, PyTables);
``gzip`` (level 4 + shuffle) 17k showers/s, 4.0x smaller, readable by every HDF5 tool (ROOT,
C/C++, Julia). A generator makes ~35-57k showers/s on this CPU, so only ``none`` keeps the
pipeline generation-bound: it is the default (fast and universal, but large); choose ``gzip``
for compact files that any tool reads, ``lzf`` for compact files read with h5py.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from emulator.sampler import default_torch_threads
from pipelines.cli import CLIError

__all__ = ["GenerateJob", "add_parser", "generate", "shard_dir", "write_shard"]

DEFAULT_SHARD_ROWS = 32 * 8192  # 262,144 rows: about 0.5 GB of calo showers before compression
COMPRESSIONS = ("none", "lzf", "gzip")
DEFAULT_COMPRESSION = "none"  # the only one faster than generation on a 2-core CPU (see module docstring)

HELP = """\
Generate N samples from a model into HDF5 (CaloGAN or CaloChallenge for calo models).

Conditions: one option per condition of the model's domain, e.g. --energy 50 (fixed),
--energy 1:100 (uniform), --energy 1:100:log (log-uniform), --energy 10,20,50 (one per sample);
omitted conditions are drawn uniformly over the model's valid range.

Large N is written as shards under OUT.h5.shards/ plus OUT.h5, one file with virtual datasets
over them that h5py reads as a whole. Rerunning the same command after an interruption resumes
and gives byte-identical data; the same seed gives the same samples as the HTTP API.

compression: none (default; fastest, any HDF5 tool reads it, largest), lzf (3x smaller, fast
to read, needs h5py/PyTables), gzip (4x smaller, readable by every HDF5 tool, slowest to write).

examples:
  emulator generate calo-eplus --n 1000000 --energy 1:100 --seed 1 --out eplus.h5
  emulator generate calo-eplus --n 50000000 --energy 50 --seed 7 --workers 2 --out eplus_50GeV.h5
"""


@dataclass
class GenerateJob:
    """Everything that determines the output; stored as the shard directory's manifest."""

    model: str
    n: int
    seed: int
    conditions: dict[str, Any]  # raw condition values as given (parse_conditions input)
    file_format: str
    compression: str  # lzf | gzip | none
    shard_rows: int
    allow_extrapolation: bool = False
    model_version: str = ""
    search_paths: list[str] = field(default_factory=list)  # not part of the identity of the run
    device: str = "cpu"

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the original one."""
        d = asdict(self)
        for key in ("search_paths", "device"):
            d.pop(key)
        return d

    @property
    def n_shards(self) -> int:
        return -(-self.n // self.shard_rows)

    def shard_range(self, k: int) -> tuple[int, int]:
        """Rows [start, stop) of shard ``k``."""
        return k * self.shard_rows, min(self.n, (k + 1) * self.shard_rows)


def shard_dir(out: Path) -> Path:
    """Where the shards of ``out`` live."""
    return out.with_name(out.name + ".shards")


def shard_path(out: Path, k: int) -> Path:
    """Shard ``k`` of ``out``."""
    return shard_dir(out) / f"shard-{k:05d}.h5"


# --------------------------------------------------------------------------- workers


def _load(job: GenerateJob) -> tuple[Any, Any]:
    """(sampler, condition spec) for ``job`` (in whichever process runs it)."""
    from emulator.conditions import parse_conditions
    from emulator.registry import load_sampler

    sampler = load_sampler(job.model, device=job.device, search_paths=[Path(p) for p in job.search_paths] or None)
    spec = parse_conditions(sampler.domain, job.conditions, job.n, job.allow_extrapolation)
    return sampler, spec


def _open_writer(domain: Any, path: Path, fmt: str, attrs: dict, compression: str) -> Any:
    """The domain's atomic writer with ``compression`` ("none" -> no filter)."""
    return domain.open_writer(path, fmt, attrs, compression=None if compression == "none" else compression)


def _prefetched(blocks: Iterator[Any], depth: int = 2, threads: int | None = None) -> Iterator[Any]:
    """Run ``blocks`` in a background thread, ``depth`` items ahead (generation overlaps writing).

    ``threads`` sets torch's CPU threads in that thread (the setting is per calling thread).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            for item in blocks:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(end)
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(exc)

    thread = threading.Thread(target=produce, name="generate-blocks", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
        blocks.close()  # type: ignore[attr-defined]


def _file_attrs(job: GenerateJob, sampler: Any, spec: Any) -> dict[str, Any]:
    return {
        "model": job.model,
        "model_version": job.model_version,
        "domain": sampler.domain.name,
        "seed": job.seed,
        "conditions": json.dumps(spec.describe()),
        "extrapolated": bool(spec.extrapolated),
        "n_total": job.n,
        "generator": "emulator generate",
    }


def write_shard(
    job: GenerateJob, k: int, out: Path, progress: Callable[[int], None] | None = None, threads: int | None = None
) -> int:
    """Write shard ``k`` of ``job`` atomically (or the whole output when unsharded); returns its rows."""
    from emulator.sampler import BLOCK_SIZE

    sampler, spec = _load(job)
    start, stop = job.shard_range(k)
    target = out if job.n_shards == 1 else shard_path(out, k)
    attrs = _file_attrs(job, sampler, spec)
    if job.n_shards > 1:
        attrs |= {"shard": k, "first_row": start}
    blocks = sampler.iter_blocks(job.n, spec, job.seed, start // BLOCK_SIZE, -(-stop // BLOCK_SIZE))
    with _open_writer(sampler.domain, target, job.file_format, attrs, job.compression) as w:
        for block in _prefetched(blocks, threads=threads):
            w.append(block.conditions, block.samples)
            if progress is not None:
                progress(len(block.conditions))
    return stop - start


def _write_shard_task(job_dict: dict[str, Any], k: int, out: str, threads: int) -> int:
    """Picklable entry point for process pools and Ray."""
    return write_shard(GenerateJob(**job_dict), k, Path(out), threads=threads)


# --------------------------------------------------------------------------- the run


def _rows_in(path: Path) -> int | None:
    """Rows of a finished shard (every per-sample dataset has the same length); None if unreadable.

    Shards are renamed into place only when complete, so a readable file with consistent
    lengths is a finished one; this also catches files damaged after the fact.
    """
    import h5py

    lengths: set[int] = set()
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _n, obj: lengths.add(obj.shape[0]) if isinstance(obj, h5py.Dataset) and obj.ndim else None)
    except (OSError, KeyError, ValueError):
        return None
    return lengths.pop() if len(lengths) == 1 else None


def _prepare_shard_dir(job: GenerateJob, out: Path) -> list[int]:
    """Create or check the shard directory; return the shards still to write."""
    d = shard_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    manifest = d / "manifest.json"
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old != job.identity():
            diff = sorted(k for k in set(old) | set(job.identity()) if old.get(k) != job.identity().get(k))
            raise CLIError(
                f"{d} holds shards of a different run (differs in: {', '.join(diff)}); "
                "delete it or choose another --out"
            )
    else:
        tmp = manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(job.identity(), indent=2))
        os.replace(tmp, manifest)
    for stale in d.glob("*.tmp*"):  # temporary files of a killed run
        stale.unlink(missing_ok=True)
    todo = []
    for k in range(job.n_shards):
        path = shard_path(out, k)
        start, stop = job.shard_range(k)
        if _rows_in(path) != stop - start:
            path.unlink(missing_ok=True)
            todo.append(k)
    return todo


def write_virtual_file(job: GenerateJob, out: Path) -> None:
    """Write ``out`` atomically: one virtual dataset per shard dataset, rows concatenated in shard order."""
    import h5py

    first = shard_path(out, 0)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(first, "r") as f0, h5py.File(tmp, "w", libver=("v110", "latest")) as dst:
            rows0 = job.shard_range(0)[1]
            names: list[str] = []
            f0.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for name in names:
                ds = f0[name]
                if ds.ndim == 0 or ds.shape[0] != rows0:
                    f0.copy(ds, dst, name=name)  # not per-sample: copy as is
                    continue
                layout = h5py.VirtualLayout(shape=(job.n, *ds.shape[1:]), dtype=ds.dtype)
                for k in range(job.n_shards):
                    start, stop = job.shard_range(k)
                    rel = os.path.relpath(shard_path(out, k), out.parent)
                    layout[start:stop] = h5py.VirtualSource(rel, name, shape=(stop - start, *ds.shape[1:]))
                vds = dst.create_virtual_dataset(name, layout)
                vds.attrs.update(dict(ds.attrs))
            dst.attrs.update(dict(f0.attrs))
            for key in ("shard", "first_row"):
                if key in dst.attrs:
                    del dst.attrs[key]
            dst.attrs.update({"n": job.n, "n_shards": job.n_shards, "shards": shard_dir(out).name})
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _run_local(job: GenerateJob, out: Path, todo: list[int], bar: Any, threads: int | None) -> None:
    for k in todo:
        write_shard(job, k, out, progress=bar.update, threads=threads)


def _run_pool(job: GenerateJob, out: Path, todo: list[int], bar: Any, workers: int) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_write_shard_task, asdict(job), k, str(out), threads): k for k in todo}
        for fut in as_completed(futures):
            bar.update(fut.result())


def _run_ray(job: GenerateJob, out: Path, todo: list[int], bar: Any, workers: int) -> None:
    try:
        import ray
    except ImportError:
        raise CLIError("--backend ray needs Ray: pip install -e '.[ray]' (or use --backend process)") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
    task = ray.remote(num_cpus=threads)(_write_shard_task)
    pending = [task.remote(asdict(job), k, str(out.resolve()), threads) for k in todo]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        bar.update(ray.get(done[0]))


def generate(
    job: GenerateJob,
    out: Path,
    workers: int = 1,
    backend: str = "process",
    quiet: bool = False,
    torch_threads: int | None = None,
) -> Path:
    """Write ``job`` to ``out`` (sharded with a virtual top-level file when N exceeds one shard).

    ``torch_threads`` applies to single-process runs (None: leave torch's setting); parallel
    workers split the cores between them.
    """
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if job.n_shards == 1:
        todo, done_rows = [0], 0
    else:
        todo = _prepare_shard_dir(job, out)
        done_rows = job.n - sum(job.shard_range(k)[1] - job.shard_range(k)[0] for k in todo)
    with tqdm(
        total=job.n, initial=done_rows, unit="sample", unit_scale=True, desc=job.model, disable=quiet, smoothing=0.1
    ) as bar:
        if done_rows and not quiet:
            bar.write(f"resuming: {job.n_shards - len(todo)} of {job.n_shards} shards already complete")
        if workers <= 1 or len(todo) <= 1:
            _run_local(job, out, todo, bar, torch_threads)
        elif backend == "ray":
            _run_ray(job, out, todo, bar, workers)
        else:
            _run_pool(job, out, todo, bar, workers)
    if job.n_shards > 1:
        write_virtual_file(job, out)
    return out


# --------------------------------------------------------------------------- CLI


def _condition_options() -> dict[str, tuple[str, str]]:
    """``{dest: (--option, help)}`` for every condition of every registered domain."""
    from emulator.domains import available_domains, get_domain

    options: dict[str, tuple[str, str]] = {}
    for dname in available_domains():
        for c in get_domain(dname).conditions:
            dest = c.name.replace("-", "_")
            options.setdefault(
                dest, (f"--{c.name.replace('_', '-')}", f"{c.description} [{c.unit}], valid {c.low:g}-{c.high:g} ({dname})")
            )
    return options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``generate``."""
    p = subparsers.add_parser(
        "generate", help="generate samples from a model into HDF5", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="model name (see `GET /v1/models` or the models/ directory)")
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--seed", type=int, required=True, help="random seed (same seed, same samples)")
    p.add_argument("--out", type=Path, required=True, help="output HDF5 file")
    conds = p.add_argument_group("conditions (one per condition of the model's domain)")
    for dest, (flag, text) in _condition_options().items():
        conds.add_argument(flag, dest=f"cond_{dest}", metavar="VALUE", default=None, help=text)
    p.add_argument("--allow-extrapolation", action="store_true", help="allow conditions outside the valid range")
    p.add_argument("--format", dest="file_format", default=None, help="file format (calo: calogan (default), calochallenge)")
    p.add_argument(
        "--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
        help=f"HDF5 compression: none (default: fastest, any tool reads it), lzf (~3x smaller, h5py/PyTables "
        f"only, ~2x slower than generation), gzip (~4x smaller, any tool, slowest); default {DEFAULT_COMPRESSION}",
    )  # fmt: skip
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_ROWS, help="rows per shard (rounded up to 8192)")
    p.add_argument("--workers", type=int, default=1, help="parallel shard writers (default 1)")
    p.add_argument("--backend", choices=("process", "ray"), default="process", help="how --workers run")
    p.add_argument("--models-path", action="append", default=None, metavar="DIR", help="model search path (repeatable)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ...")
    p.add_argument(
        "--torch-threads", type=int, default=None,
        help="torch CPU threads with --workers 1 (default: all cores; 1 can be faster on a machine busy with other jobs)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def job_from_args(args: argparse.Namespace) -> GenerateJob:
    """Validate the options against the model and build the job (errors name the bad option)."""
    from emulator.conditions import ConditionError, parse_condition_text, parse_conditions
    from emulator.registry import UnknownModel, get_model
    from emulator.sampler import BLOCK_SIZE

    if args.n < 1:
        raise CLIError(f"--n must be >= 1, got {args.n}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.shard_size < 1:
        raise CLIError(f"--shard-size must be >= 1, got {args.shard_size}")
    search = [Path(p) for p in args.models_path] if args.models_path else None
    try:
        info = get_model(args.model, search)
    except UnknownModel as exc:
        raise CLIError(str(exc)) from None
    from emulator.domains import get_domain

    domain = get_domain(info.domain)
    names = {c.name.replace("-", "_"): c for c in domain.conditions}
    given = {k[len("cond_"):]: v for k, v in vars(args).items() if k.startswith("cond_") and v is not None}
    foreign = sorted(set(given) - set(names))
    if foreign:
        raise CLIError(
            f"model {info.name!r} ({domain.name}) has no condition(s) {foreign}; its conditions: {sorted(names)}"
        )
    raw: dict[str, Any] = {}
    for dest, c in names.items():
        if dest in given:
            raw[c.name] = parse_condition_text(given[dest])
        else:
            raw[c.name] = {"log_uniform" if c.log_scale else "uniform": [c.low, c.high]}
    try:
        parse_conditions(domain, raw, args.n, args.allow_extrapolation)
    except ConditionError as exc:
        raise CLIError(f"{exc} (pass --allow-extrapolation to allow it)" if "outside" in str(exc) else str(exc)) from None
    fmt = args.file_format or domain.file_formats[0]
    if fmt not in domain.file_formats:
        raise CLIError(f"--format {fmt!r} is not one of {', '.join(domain.file_formats)}")
    return GenerateJob(
        model=info.name,
        n=args.n,
        seed=args.seed,
        conditions=raw,
        file_format=fmt,
        compression=args.compression,
        shard_rows=-(-args.shard_size // BLOCK_SIZE) * BLOCK_SIZE,  # shards start on block boundaries
        allow_extrapolation=args.allow_extrapolation,
        model_version=info.version,
        search_paths=[str(p) for p in search or []],
        device=args.device,
    )


def run(args: argparse.Namespace) -> int:
    """The ``generate`` subcommand."""
    if args.backend == "ray" and args.workers > 1:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise CLIError("--backend ray needs Ray: pip install -e '.[ray]' (or use --backend process)")
    job = job_from_args(args)
    t0 = time.perf_counter()
    threads = args.torch_threads or default_torch_threads()
    out = generate(job, args.out, workers=args.workers, backend=args.backend, quiet=args.quiet, torch_threads=threads)
    dt = time.perf_counter() - t0
    print(f"wrote {job.n} samples of {job.model} (seed {job.seed}) to {out} in {dt:.1f} s")
    return 0
