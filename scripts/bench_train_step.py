"""Time one WGAN-GP iteration (n_critic critic updates + one generator update) on synthetic data.

Sizes the training recipe: ``python scripts/bench_train_step.py --batch 512 1024 --iters 50``.
"""

from __future__ import annotations

import argparse
import time

import torch

from emulator.domains import get_domain
from emulator.models import MLPCritic, MLPCriticConfig, MLPGenerator, MLPGeneratorConfig
from emulator.sampler import resolve_device
from emulator.wgan_gp import Batch, GANStep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", action="store_true")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    dom = get_domain("calo")
    for graph, features in ((True, True), (False, True), (True, False)):
        for b in args.batch:
            torch.manual_seed(0)
            g = MLPGenerator(MLPGeneratorConfig(507, 1)).to(dev)
            c = MLPCritic(MLPCriticConfig(507, 1, dom.critic_feature_dim if features else 0)).to(dev)
            gan = GANStep(g, c, dom, energy_weight=1.0, amp=not args.no_amp, cuda_graph=graph)
            n = 100_000
            data_c = torch.rand(n, 1, device=dev) * 99 + 1
            data_x, data_f = torch.rand(n, 507, device=dev) * 3, dom.condition_features(data_c)

            def batch(b=b, data_x=data_x, data_c=data_c, data_f=data_f) -> Batch:
                idx = torch.randint(data_x.shape[0], (b,), device=dev)
                return Batch(data_x[idx], data_c[idx], data_f[idx])

            for _ in range(3):
                gan.step(batch)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(args.iters):
                stats = gan.step(batch)
            stats.as_dict()
            dt = (time.perf_counter() - t) / args.iters
            print(f"{dev.type} batch {b:5d} cuda_graph={graph} critic_features={features}: {dt * 1e3:.2f} ms/iteration")


if __name__ == "__main__":
    main()
