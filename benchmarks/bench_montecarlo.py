"""Monte Carlo throughput and time-to-accuracy against the grid solve.

Run: ``python benchmarks/bench_montecarlo.py [--chains 10000] [--batch 8] [--quick]``

1. Chain-steps per second of the training simulator (ALT, SML shared, SML independent) and of
   the Euler–Maruyama SDE simulator on the 2-d separable linear-quadratic WGAN (MATH.md
   section 7), B = 8, 10^4 chains. Measured on the simulation loop only (``result.seconds``).
2. Time-to-accuracy: the binned L1 error the grid solve reaches in about one second (against
   the exact Gaussian law of the OU SDE, cell probabilities by midpoint rule on a 4x finer
   sub-grid), and the time Monte Carlo of the same SDE needs for its *sampling noise alone*
   (the multinomial noise floor, which only shrinks as 1/sqrt(n_eff)) to reach that L1 on the
   same cells: ``n_needed = n_eff * (floor / L1_grid)^2``, time = n_needed / (ESS per second).
   This ignores the EM time-step bias, so it is the best case for Monte Carlo.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from stationary import GAN, Grid, gan_sde, linear_gaussian_reference, stationary_density  # noqa: E402
from stationary.compare import l1_noise_floor  # noqa: E402
from stationary.diagnostics import ShortRunWarning  # noqa: E402
from stationary.simulate import simulate_sde, simulate_training  # noqa: E402


def lq(n=256, seed=1):
    rng = np.random.default_rng(seed)
    return GAN(["theta"], ["omega"], "theta + z", "omega*x - c/2*x**2",
               regularizer="0.05*theta**2 - 0.05*omega**2", constants={"c": 1.0},
               z=rng.normal(size=n), x=rng.normal(1.0, 0.5, size=n), name="lq")


def gaussian_cell_probabilities(grid, mean, cov, sub=4):
    """Exact-law cell probabilities by a sub x sub midpoint rule inside every cell."""
    fine = grid.refined(sub)
    P = fine.points() - mean
    inv = np.linalg.inv(cov)
    dens = np.exp(-0.5 * np.einsum("ni,ij,nj->n", P, inv, P)) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
    q = (dens * fine.cell_volume).reshape(grid.shape[0], sub, grid.shape[1], sub).sum(axis=(1, 3))
    return q / q.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eta", type=float, default=0.1)
    ap.add_argument("--duration", type=float, default=100.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ShortRunWarning)
    model = lq()
    eta, B, C = args.eta, args.batch, args.chains
    dur = 20.0 if args.quick else args.duration
    print(f"2-d separable LQ WGAN, N = M = 256, eta = {eta}, B = {B}, chains = {C}, {os.cpu_count()} CPUs\n")
    print(f"{'process':<28}{'chain-steps/s':>16}{'steps':>8}{'seconds':>10}   target 1e7")
    rates = {}
    for label, kw in [("ALT", dict(update="alt")), ("SML shared", dict(update="sml", batches="shared")),
                      ("SML independent", dict(update="sml", batches="independent"))]:
        r = simulate_training(model, eta=eta, batch=B, chains=C, burn_in=0.0, duration=dur, seed=1, progress=False, **kw)
        rates[label] = r.steps * C / r.seconds
        print(f"{label:<28}{rates[label]:>16.3g}{r.steps:>8}{r.seconds:>10.2f}   {rates[label] / 1e7:.2f}x")
    sde = gan_sde(model, "sml", eta, B, "shared-batch")
    r = simulate_sde(sde, eta, chains=C, burn_in=0.0, duration=dur / 4, seed=1, progress=False)
    rates["SDE (EM)"] = r.steps * C / r.seconds
    print(f"{'SDE Euler-Maruyama':<28}{rates['SDE (EM)']:>16.3g}{r.steps:>8}{r.seconds:>10.2f}   "
          f"{rates['SDE (EM)'] / 1e7:.2f}x  (diffusion: {r.settings['diffusion']})")

    # ------------------------------------------------------------------ time to accuracy
    mean, cov, _ = linear_gaussian_reference(sde)
    sd = np.sqrt(np.diag(cov))
    lo, hi = mean - 6 * sd, mean + 6 * sd
    print("\nGrid solve (sg scheme) on the OU SDE: binned L1 error vs the exact Gaussian law")
    print(f"{'cells':>10}{'seconds':>10}{'L1 error':>12}")
    best = None
    for n in ([64, 128] if args.quick else [64, 128, 192, 256, 384]):
        grid = Grid(tuple(lo), tuple(hi), (n, n))
        t = time.perf_counter()
        res = stationary_density(sde, grid)
        sec = time.perf_counter() - t
        q = np.clip(res.density, 0, None) * grid.cell_volume
        l1 = float(np.abs(q / q.sum() - gaussian_cell_probabilities(grid, mean, cov)).sum())
        print(f"{n:>7}^2{sec:>10.3f}{l1:>12.3e}")
        if best is None or abs(np.log(sec)) < abs(np.log(best[1])):
            best = (grid, sec, l1)
        if sec > 2.0:
            break
    grid, gsec, gl1 = best
    # MC of the same SDE: effective samples per second (from the run's own ESS), noise floor on the same cells.
    r = simulate_sde(sde, eta, chains=min(C, 4096), burn_in=10.0, duration=dur, seed=2, progress=False)
    ess_rate = float(np.min(r.ess)) / r.seconds
    q_exact = gaussian_cell_probabilities(grid, mean, cov)
    n0 = 1e5
    floor, _ = l1_noise_floor(q_exact, n0, draws=4)
    n_needed = n0 * (floor / gl1) ** 2
    t_mc = n_needed / ess_rate
    rt = simulate_training(model, "sml", eta, B, "shared", chains=C, burn_in=10.0, duration=dur, seed=3, progress=False)
    ess_rate_t = float(np.min(rt.ess)) / rt.seconds
    print(f"\nTime to the grid's ~1 s accuracy (L1 = {gl1:.3e} on {grid.shape[0]}^2 cells, grid solve {gsec:.2f} s):")
    print(f"{'method':<40}{'ESS/s':>12}{'n_eff needed':>14}{'seconds':>12}{'ratio MC/grid':>15}")
    print(f"{'grid solve':<40}{'':>12}{'':>14}{gsec:>12.3g}{1.0:>15.3g}")
    print(f"{'MC of the SDE (noise floor only)':<40}{ess_rate:>12.3g}{n_needed:>14.3g}{t_mc:>12.3g}{t_mc / gsec:>15.3g}")
    t_tr = n_needed / ess_rate_t
    print(f"{'MC of SML training (different law, O(eta))':<40}{ess_rate_t:>12.3g}{n_needed:>14.3g}{t_tr:>12.3g}{t_tr / gsec:>15.3g}")


if __name__ == "__main__":
    main()
