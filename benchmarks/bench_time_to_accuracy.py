"""Time to reach the same L1 error on the LQ WGAN case (exact Gaussian), side by side.

Methods on the same problem (ALT-SDE of ``cases/lq-wgan.toml``, box mean +- 6 sd):
- stationary: coefficients + assembly (SG) + auto solve, no error estimate;
- plain SuperLU: the same assembled matrix, pinned, default COLAMD ordering;
- FiPy's own path (benchmarks/alternatives.py; the SDE is OU, so its A, c, a are read off);
- Monte Carlo of the SDE (Euler-Maruyama at dt = eta/4, 4096 chains, histogram on 64^2 cells,
  L1 against the exact cell probabilities), run in the same process for ``--mc-budget`` (300)
  times the grid's time to the target: its measured L1 at that time says whether the grid is
  more than that factor faster; the time to the target is also extrapolated with
  L1 ~ time^-1/2 when the run shows its error is sampling noise (stated as such), and not when
  Euler-Maruyama's O(dt) bias dominates.
Each grid method's time to the target is interpolated in log-log between measured grids.

    python benchmarks/bench_time_to_accuracy.py [--target 1e-3] [--mc-budget 100]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stationary import Grid, assemble, linear_gaussian_reference, solve_stationary  # noqa: E402
from stationary.cases import load_case  # noqa: E402
from stationary.simulate import simulate_sde  # noqa: E402


def exact_cells(grid, mean, cov, sub=4):
    """Exact cell averages of the Gaussian density (sub x sub midpoint sub-cells)."""
    P = np.linalg.inv(cov)
    edges = [np.linspace(l, u, n * sub + 1) for l, u, n in zip(grid.lower, grid.upper, grid.shape)]
    mids = [0.5 * (e[1:] + e[:-1]) for e in edges]
    X, Y = np.meshgrid(*mids, indexing="ij")
    D = np.stack([X - mean[0], Y - mean[1]], -1)
    q = np.exp(-0.5 * np.einsum("...i,ij,...j->...", D, P, D)) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
    n0, n1 = grid.shape
    return q.reshape(n0, sub, n1, sub).mean(axis=(1, 3))


def l1(grid, p, q):
    return float(np.abs(p - q).sum() * grid.cell_volume)


def time_at(target, errs, secs):
    le, lt = np.log(errs), np.log(secs)
    o = np.argsort(le)
    if target < np.exp(le.min()) or target > np.exp(le.max()):
        return float("nan")
    return float(np.exp(np.interp(np.log(target), le[o], lt[o])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=1e-3)
    ap.add_argument("--mc-budget", type=float, default=300.0,
                    help="Monte Carlo wall-clock budget, in multiples of the grid's time to the target")
    args = ap.parse_args()
    import alternatives as alt

    sde = load_case("lq-wgan").sde()
    mean, cov, A = linear_gaussian_reference(sde)
    sd = np.sqrt(np.diag(cov))
    lo, hi = mean - 6 * sd, mean + 6 * sd
    c = -A @ mean
    a = sde.diffusion(mean[None])[0]
    rows = {"stationary (SG, auto solve)": ([], []), "plain SuperLU (COLAMD)": ([], []), "FiPy (exponential, LU)": ([], [])}
    for n in (64, 128, 256, 512):
        grid = Grid(lo, hi, (n, n))
        q = exact_cells(grid, mean, cov)
        t0 = time.perf_counter()
        op = assemble(sde, grid)
        res = solve_stationary(op)
        t_ours = time.perf_counter() - t0
        rows["stationary (SG, auto solve)"][0].append(l1(grid, res.density, q))
        rows["stationary (SG, auto solve)"][1].append(t_ours)
        plain = alt.solve_superlu_plain(op.matrix, "COLAMD", shape=grid.shape, cell_volume=grid.cell_volume)
        t_plain = op.seconds["coefficients"] + op.seconds["assembly"] + plain["seconds"]
        rows["plain SuperLU (COLAMD)"][0].append(l1(grid, np.reshape(plain["density"], grid.shape), q))
        rows["plain SuperLU (COLAMD)"][1].append(t_plain)
        if n <= 256:
            f = alt.solve_fipy(A, c, a, lo, hi, n)
            rows["FiPy (exponential, LU)"][0].append(l1(grid, f["density"], q))
            rows["FiPy (exponential, LU)"][1].append(f["seconds"])
        print(f"n = {n}: " + "; ".join(f"{k} L1 {v[0][-1]:.2e} in {v[1][-1]:.2f} s" for k, v in rows.items() if len(v[0]) and len(v[0]) == len(rows['stationary (SG, auto solve)'][0]) or k.startswith('stationary')), flush=True)
    print(f"\ntime to L1 = {args.target:.1e} (ratios to stationary):")
    ours = time_at(args.target, *map(np.array, rows["stationary (SG, auto solve)"]))
    for name, (errs, secs) in rows.items():
        t = time_at(args.target, np.array(errs), np.array(secs))
        print(f"  {name:<30} {t:8.2f} s   x{t / ours:7.1f}")

    # Monte Carlo of the SDE, measured in the same run: given budget x the grid's time to the
    # target.  If it has not reached the target by then, the grid is faster by more than that
    # factor (a measured bound); the time it would need is also extrapolated with L1 ~ t^-1/2.
    grid = Grid(lo, hi, (64, 64))
    q = exact_cells(grid, mean, cov)
    kw = dict(chains=4096, burn_in=10.0, seed=3, init=mean, histogram=grid, progress=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the pilot is short on purpose
        warnings.simplefilter("ignore")
        e_pilot = l1(grid, simulate_sde(sde, sde.eta / 4, duration=10.0, **kw).histogram.density(), q)
    pilot = time.perf_counter() - t0  # burn-in 10 + 10 time units
    budget = args.mc_budget * ours
    duration = max(10.0, 20.0 * budget / pilot - 10.0)
    t0 = time.perf_counter()
    mc = simulate_sde(sde, sde.eta / 4, duration=duration, **kw)
    t_mc = time.perf_counter() - t0
    e_mc = l1(grid, mc.histogram.density(), q)
    reached = e_mc <= args.target
    print(f"  {'Monte Carlo SDE (measured)':<30} {t_mc:8.2f} s   x{t_mc / ours:7.1f}   "
          f"L1 {e_mc:.2e} after {duration:.0f} time units x 4096 chains (dt = eta/4): target "
          + ("reached" if reached else f"NOT reached, so the grid is > {t_mc / ours:.0f}x faster (measured)"))
    # Sampling noise alone would fall by sqrt(duration / 10) from the pilot; if the L1 falls much
    # less, Euler-Maruyama's O(dt) bias dominates and more samples cannot reach the target.
    noise_fall = np.sqrt(duration / 10.0)
    print(f"  pilot (10 time units): L1 {e_pilot:.2e}; full run: {e_mc:.2e}; a noise-dominated error would "
          f"have fallen {noise_fall:.1f}x, it fell {e_pilot / e_mc:.1f}x")
    if e_pilot / e_mc > 0.5 * noise_fall:
        t_mc_target = t_mc * (e_mc / args.target) ** 2  # L1 ~ 1/sqrt(samples): extrapolated, not measured
        print(f"  {'Monte Carlo SDE (extrapolated)':<30} {t_mc_target:8.0f} s   x{t_mc_target / ours:7.0f}"
              "   (L1 ~ time^-1/2; extrapolated, not measured)")
    else:
        print(f"  Monte Carlo at dt = eta/4 is bias-limited near L1 {e_mc:.1e}: reaching {args.target:.0e} needs a "
              f"smaller step (bias ~ dt) as well as more samples; no time is extrapolated")

if __name__ == "__main__":
    main()
