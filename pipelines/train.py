"""``emulator train DOMAIN``: train a conditional WGAN-GP emulator on a simulated HDF5 file.

A thin wrapper over ``emulator.train.train_func``: settings come from the defaults of
``TrainConfig``, then ``--config FILE`` (JSON), then the flags below, then ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emulator.domains import available_domains
from pipelines.cli import CLIError

__all__ = ["add_parser", "run"]

EPILOG = """\
outputs:
  OUT (--out)        the model directory (config.json, generator.safetensors, card.json,
                     MODEL_CARD.md): the EMA generator with the best quick-validation score.
  RUN_DIR            checkpoints/ (resume with --resume), metrics.jsonl, loss_curve.png;
                     default runs/<basename of OUT>.

every setting (see `python -c "import emulator.train as t; help(t.TrainConfig)"`) can be given in a
JSON --config file or with --set KEY=VALUE; unknown keys are an error.

examples:
  emulator simulate calo --particle e+ --n 200000 --energy 1:100 --seed 1 --out data/eplus.h5
  emulator train calo --particle e+ --data data/eplus.h5 --out models/calo-eplus --steps 20000
  emulator train calo --particle e+ --data data/eplus.h5 --out models/calo-eplus --resume
  emulator train calo --config runs/calo-eplus/config.json --steps 12500 --out models/calo-eplus-ft \
      --run-dir runs/calo-eplus-ft --init-from runs/calo-eplus/checkpoints/step-00011500
  emulator train cosmo --config models/cosmo-slice64/card.json --init-from models/cosmo-slice64 \
      --set critic_warmup=200 --energy-weight 1 --set energy_loss=crps --out runs/ft/cosmo --run-dir runs/ft/run
  emulator train calo --data tiny.h5 --out /tmp/m --steps 10 --set g_hidden=32,32 --set val_every=5
  emulator simulate cosmo --n-sims 200 --omega-m 0.101:0.487 --sigma8 0.487:1.331 --seed 1 --out data/cosmo.h5
  emulator train cosmo --data data/cosmo.h5 --out models/cosmo-slice64 --batch-size 64 \
      --set g_hidden=256,128,64,32 --set d_hidden=32,64,128,256 --set val_samples=2000

architectures: each domain names its own (calo: MLPs; cosmo: a conv generator and critic, where
g_hidden are the generator's channels per resolution from 8x8 up to 64x64 and d_hidden the
critic's channels per stride-2 stage; small CPU-sized widths unless set).

on a Ray cluster (pip install -e '.[ray]'; see emulator/distributed.py): --workers N runs N
data-parallel Ray Train workers; --batch-size stays the effective batch (each worker draws
batch-size/N), so results mean the same as in one process. A killed worker is recovered from
the last checkpoint (--set checkpoint_every=... sets how often; up to --max-failures times).
  emulator train calo --data data/eplus.h5 --out models/calo-eplus --workers 2
  emulator train calo --data /shared/eplus.h5 --out /shared/m --workers 8 --gpus-per-worker 1 --address auto
"""

# flag dest -> config key (only flags the user actually gave override the config)
FLAG_KEYS = {
    "particle": "particle", "data": "data", "out": "out", "run_dir": "run_dir", "name": "name",
    "steps": "steps", "batch_size": "batch_size", "device": "device", "seed": "seed", "resume": "resume",
    "init_from": "init_from", "energy_weight": "energy_weight", "max_samples": "max_samples",
}  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``emulator train``."""
    p = subparsers.add_parser(
        "train",
        help="train a WGAN-GP emulator on simulated data",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("domain", choices=available_domains(), help="what to emulate")
    p.add_argument("--particle", help="calo only: particle of the training data (recorded in the model card)")
    p.add_argument("--data", help="training file written by `emulator simulate`")
    p.add_argument("--out", help="model directory to write (e.g. models/calo-eplus)")
    p.add_argument("--run-dir", help="checkpoints and logs (default runs/<name>)")
    p.add_argument("--name", help="model name (default: basename of --out)")
    p.add_argument("--steps", type=int, help="generator updates in total")
    p.add_argument("--batch-size", type=int, help="samples per batch")
    p.add_argument(
        "--energy-weight", type=float,
        help="weight of the consistency term matching the domain's statistics (calo: energy response; "
        "cosmo: peak counts by height and P(k) band powers) per condition (0: off)",
    )  # fmt: skip
    p.add_argument("--max-samples", type=int, help="read at most this many samples (0: all)")
    p.add_argument("--device", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, help="seed of the whole run")
    p.add_argument("--resume", action="store_true", default=None, help="continue from the newest checkpoint")
    p.add_argument(
        "--init-from", metavar="DIR",
        help="warm start a new run from another run's checkpoint (e.g. runs/calo-eplus/checkpoints/step-00011500): "
        "weights, optimizers and step carry over, physics features added since start at zero critic weight; "
        "or from a shipped model directory (e.g. models/cosmo-slice64): its generator, a fresh critic (give it "
        "--set critic_warmup=N critic-only iterations first) and fresh optimizers, from step 0",
    )  # fmt: skip
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)"
    )
    ray = p.add_argument_group("Ray Train (distributed)")
    ray.add_argument("--workers", type=int, default=0, help="Ray Train workers (default 0: train in this process)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (default 0: CPU)")
    ray.add_argument("--cpus-per-worker", type=int, default=1, help="CPU cores (torch threads) per worker")
    ray.add_argument("--address", help="Ray cluster: auto, ray://HOST:10001 (default $RAY_ADDRESS or a local one)")
    ray.add_argument("--max-failures", type=int, default=2, help="worker failures to recover from")
    p.add_argument(
        "--config", type=Path,
        help="JSON file of settings (applied before the flags), or a model's card.json: the settings "
        "it was trained with",
    )  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting; repeatable")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train; prints a JSON summary."""
    from emulator.train import ConfigError, load_config, train_func

    overrides: dict = {"domain": args.domain}
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest)
        if value is not None:
            overrides[key] = value
    if args.no_progress:
        overrides["progress"] = False
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    if args.config is not None and not args.config.exists():
        raise CLIError(f"config file {args.config} does not exist")
    try:
        cfg = load_config(None, args.config, overrides)
        if not cfg.data or not cfg.out:
            raise CLIError("both --data and --out are required (or set them in --config)")
        if args.workers:
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise CLIError("--workers needs Ray: pip install -e '.[ray]' (or train without --workers)")
            from emulator.distributed import train_distributed

            summary = train_distributed(
                cfg, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                cpus_per_worker=args.cpus_per_worker, address=args.address, max_failures=args.max_failures,
            )  # fmt: skip
        else:
            summary = train_func(cfg)
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    print(json.dumps(summary, default=str))
    return 0
