"""Data-parallel training on a Ray cluster: the same ``emulator.train.train_func`` under Ray Train.

    emulator train calo --data d.h5 --out models/x --workers 2                   # local Ray, 2 CPU workers
    emulator train calo --data d.h5 --out models/x --workers 8 --gpus-per-worker 1 --address auto

Needs ``pip install -e '.[ray]'``; Ray is imported only inside the functions below, so
``import emulator`` never needs it. Ray touches the loop at three points (train_func's hooks):

1. ``setup_hook``: after an optimizer computed its gradients and before it steps, the ranks
   average them (one flat ``all_reduce`` on the process group Ray Train set up: gloo on CPU,
   NCCL on GPU); rank 0's weights are broadcast once at the start, as DDP does.
2. ``checkpoint_hook``: every ``checkpoint_every`` steps (and at the end) every rank calls
   ``ray.train.report(metrics, checkpoint=...)``; rank 0 passes its checkpoint directory, the
   others pass none. ``report`` is a barrier that costs about 2 s on the 2-core development
   machine, so ``checkpoint_every`` sets the reporting cadence (never every step); the
   per-step losses are in ``<run_dir>/metrics.jsonl`` as in one process.
3. resume: on a (re)start each worker takes ``ray.train.get_checkpoint()`` (the last reported
   checkpoint) and continues from it. With ``FailureConfig(max_failures)`` a killed worker
   makes Ray restart the whole worker group, which resumes there: at most ``checkpoint_every``
   steps are redone.

Why not ``ray.train.torch.prepare_model`` (DDP): a WGAN-GP iteration runs the critic twice
per backward pass (the scores, then the gradient penalty with ``create_graph=True``, a double
backward) and alternates two models and two optimizers. DDP's reducer expects one forward per
backward and does not support that double backward; averaging the gradients in an optimizer
step pre-hook computes exactly what DDP computes (the mean of the ranks' gradients) without
those constraints, at one all_reduce per optimizer step (``n_critic + 1`` per iteration).

Semantics, chosen so a run means the same whatever the number of workers:

* batch: ``batch_size`` is the effective batch; each of N workers draws ``batch_size / N``
  samples (it must divide). Averaged gradients of N equal parts are the gradient of the whole
  batch, so no learning-rate scaling: ``lr_g``/``lr_d`` keep their single-process meaning.
  To use N GPUs for a bigger batch instead, raise ``--batch-size`` (and, if you want, the
  learning rates) yourself. Per-batch statistics (the energy-consistency term's per-bin
  moments) are computed per worker, on ``batch_size / N`` samples.
* seeds: every rank builds the same initial weights and the same train/validation split;
  rank 0 draws batches and noise from the single-process streams, rank r > 0 from streams
  seeded by (seed, r, start step). One worker is exactly the single-process run (CUDA graphs
  included); with several, GPU iterations run eagerly (the collectives would have to be captured
  in the graph too). A resumed multi-worker run restores rank 0's streams exactly and reseeds
  the others, so it is statistically, not bitwise, the same.
* output: only rank 0 validates, exports the model to ``out`` and writes ``run_dir``; ``out``,
  ``run_dir`` and ``data`` must be on storage that every node sees (one machine: any path).
  ``time_limit_s`` is refused with several workers (ranks would stop at different steps).

Ray also copies every reported checkpoint to ``storage_path`` (default ``<run_dir>/ray``,
keeping ``keep_checkpoints``); on a multi-node cluster use shared storage or a bucket URI.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.checkpoint import latest_checkpoint
from emulator.train import ConfigError, TrainConfig, load_config

__all__ = ["average_gradients_hook", "train_distributed"]


def average_gradients_hook(gan: Any) -> None:
    """Make every optimizer of ``gan`` (a ``GANStep``) average gradients over the ranks before stepping.

    Also broadcasts rank 0's generator and critic weights once, so the ranks start identical.
    Uses the default ``torch.distributed`` process group (Ray Train creates it).
    """
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    for module in (gan.generator, gan.critic):
        for t in module.state_dict().values():
            dist.broadcast(t, src=0)

    def average(opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        params = [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
        for p in params:  # every rank must contribute the same flat layout
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    for opt in (gan.opt_d, gan.opt_g):
        opt.register_step_pre_hook(average)


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: ``train_func`` with the Ray hooks."""
    import ray.train
    import torch

    from emulator.train import train_func

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(loop_config["threads"]))
    fault = loop_config.get("fault")  # tests only: {"rank", "step", "marker"} kills one worker once
    latest: dict[str, float] = {}

    def report(metrics: dict) -> None:  # no Ray call here: reports go with the checkpoints
        latest.update({k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        if fault and rank == fault["rank"] and metrics["step"] >= fault["step"]:
            marker = Path(fault["marker"])
            if not marker.exists():
                marker.write_text(f"killed rank {rank} at step {metrics['step']}\n")
                os.kill(os.getpid(), signal.SIGKILL)

    def checkpoint_hook(path: Path | None, metrics: dict) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(path)) if path is not None else None
        name = f"step-{int(metrics['step']):08d}"
        ray.train.report({**latest, **metrics, "world_size": world}, checkpoint=checkpoint, checkpoint_dir_name=name)

    resume = ray.train.get_checkpoint()
    with tempfile.TemporaryDirectory(prefix="emulator-resume-") as tmp:
        resume_from = None
        if resume is not None:  # a restart after a failure: continue from the last reported checkpoint
            resume_from = Path(resume.to_directory(tmp))
        elif loop_config.get("resume_path"):  # --resume: the newest checkpoint in run_dir
            resume_from = Path(loop_config["resume_path"])
        train_func(
            loop_config["train"],
            report=report,
            checkpoint_hook=checkpoint_hook,
            rank=rank,
            world_size=world,
            setup_hook=average_gradients_hook if world > 1 else None,
            resume_from=resume_from,
        )


def train_distributed(
    config: TrainConfig | Mapping[str, Any],
    *,
    workers: int,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: int = 1,
    address: str | None = None,
    storage_path: str | Path | None = None,
    max_failures: int = 2,
    fault: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train with ``workers`` Ray Train workers; returns a summary like ``train_func``'s.

    ``address``: ``None`` uses the cluster this process is already connected to, else
    ``$RAY_ADDRESS``, else starts a local one; ``"auto"`` or ``"ray://host:10001"`` connects to a
    running cluster. ``gpus_per_worker > 0`` places each worker on GPUs (NCCL).
    ``max_failures``: how many worker-group failures to recover from (from the last checkpoint).
    ``fault`` is for tests only: ``{"rank": r, "step": s, "marker": path}`` SIGKILLs rank r once,
    at its first log step >= s (the marker file records that it happened).
    """
    cfg = load_config(config)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if not cfg.data or not cfg.out:
        raise ConfigError("both `data` and `out` are required")
    if cfg.batch_size % workers:
        raise ConfigError(
            f"batch_size={cfg.batch_size} (the effective batch) must be a multiple of workers={workers}"
        )
    if workers > 1 and cfg.time_limit_s > 0:
        raise ConfigError("time_limit_s is not supported with several workers; set `steps` instead")
    # workers may run in another directory (or on another node): absolute paths only
    for key in ("data", "out", "run_dir"):
        setattr(cfg, key, str(Path(getattr(cfg, key)).resolve()))
    resume_path = latest_checkpoint(cfg.run_dir) if cfg.resume else None
    storage = Path(storage_path).resolve() if storage_path else Path(cfg.run_dir) / "ray"

    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=True)
    use_gpu = gpus_per_worker > 0
    resources = {"CPU": float(cpus_per_worker)} | ({"GPU": float(gpus_per_worker)} if use_gpu else {})
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "train": cfg.to_dict(),
            "threads": cpus_per_worker,
            "resume_path": str(resume_path) if resume_path else None,
            "fault": fault,
        },
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            # a fresh Ray run name per call: Ray would otherwise restore an old run of the same name;
            # resuming is train_func's business (--resume, or get_checkpoint after a failure)
            name=f"{cfg.name or 'train'}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        ),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    metrics = dict(result.metrics or {})
    return {
        "steps": metrics.get("step"),
        "best_score": metrics.get("best_score"),
        "workers": workers,
        "effective_batch_size": cfg.batch_size,
        "per_worker_batch_size": cfg.batch_size // workers,
        "wall_s": round(time.perf_counter() - t0, 2),
        "out": cfg.out,
        "run_dir": cfg.run_dir,
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "last": metrics,
    }
