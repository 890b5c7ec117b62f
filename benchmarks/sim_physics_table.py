"""Summary physics table of the reference simulator (per particle, fixed energies).

Prints mean and relative spread of E_tot/E_inc, mean layer fractions, shower depth,
per-layer sparsity and overflow fraction, the numbers to compare with the CaloGAN facts
(reference section 2.1: e+ layer fractions 0.193/0.806/0.0017 averaged over 1-100 GeV,
E_layers/E_inc = 0.994, zero-cell fractions 55/21/72 %).

    python benchmarks/sim_physics_table.py [--n 5000] [--energies 10 50]
"""

from __future__ import annotations

import argparse

import numpy as np

from physics_data.calo.observables import compute_observables
from physics_data.calo.simulate import PARTICLES, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="showers per (particle, energy)")
    parser.add_argument("--energies", type=str, nargs="+", default=["10", "50", "1:100"], help="GeV or LOW:HIGH")
    args = parser.parse_args()
    cols = "particle  E(GeV)  <Etot/E>  rms/mean  f_0    f_1    f_2     depth  spars0 spars1 spars2 overflow"
    print(cols)
    for particle in PARTICLES:
        for energy in args.energies:
            s = simulate(particle, args.n, energy, seed=2024)
            o = compute_observables(s.cells, s.energy)
            r = o["response"]
            ovf = (s.overflow.sum(axis=1) / (1000.0 * s.energy)).mean()
            print(
                f"{particle:8s}  {energy:>6s}  {r.mean():8.4f}  {r.std() / r.mean():8.4f}  "
                f"{o['f_0'].mean():.3f}  {o['f_1'].mean():.3f}  {o['f_2'].mean():.4f}  "
                f"{o['shower_depth'].mean():.3f}  {o['sparsity_0'].mean():.3f}  {o['sparsity_1'].mean():.3f}  "
                f"{o['sparsity_2'].mean():.3f}  {ovf:.4f}"
            )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
