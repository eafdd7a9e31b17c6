"""Core pipeline benchmark (issue: whole path at 512^2 < 3 s, 1024^2 < 12 s and 2 GiB).

Prints, side by side:
1. the whole path (coefficients + assembly + solve) on the linear-quadratic WGAN with
   N = M = 256 data points, each size in a fresh process (peak RSS), with the L1 error
   against the exact Gaussian;
2. accuracy per second of the schemes (sg, sqra, upwind, central) on exact cases: the
   evidence for the default scheme;
3. SuperLU column ordering, MMD on AᵀA+A against COLAMD;
4. alternatives on the same rotational OU problem (FiPy's own path, fplanck), as ratios of
   time to the same L1 error (needs benchmarks/alternatives.py, fipy, fplanck).

Run: ``python benchmarks/bench_core.py`` (add ``--quick`` for smaller sizes).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stationary import SDE, Grid, assemble, linear_gaussian_reference, solve_stationary  # noqa: E402
from stationary.cases import load_case  # noqa: E402


def gaussian_cells(grid, mean, cov):
    X = grid.points() - mean
    P = np.linalg.inv(cov)
    q = np.exp(-0.5 * np.einsum("ni,ij,nj->n", X, P, X)).reshape(grid.shape)
    return q / (q.sum() * grid.cell_volume)


def l1(grid, p, q):
    return float(np.abs(p - q).sum() * grid.cell_volume)


def lq_setup(update="alt", noise="paper"):
    case = load_case("lq-wgan")
    case = case.with_overrides(update=update, noise=noise)
    sde = case.sde()
    mean, cov, _ = linear_gaussian_reference(sde)
    return sde, mean, cov


def box(mean, cov, width=6.0):
    sd = np.sqrt(np.diag(cov))
    return mean - width * sd, mean + width * sd


def worker(n: int, method: str) -> dict:
    sde, mean, cov = lq_setup()
    grid = Grid(*box(mean, cov), (n, n))
    t0 = time.perf_counter()
    op = assemble(sde, grid)
    res = solve_stationary(op, method)
    total = time.perf_counter() - t0
    return {
        "n": n,
        "method": res.method,
        "coefficients": res.seconds["coefficients"],
        "assembly": res.seconds["assembly"],
        "solve": res.seconds["solve"],
        "total": total,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "l1": l1(grid, res.density, gaussian_cells(grid, mean, cov)),
        "success": res.success,
    }


def run_worker(n, method="auto"):
    out = subprocess.run([sys.executable, __file__, "--worker", str(n), "--method", method], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_whole_path(sizes):
    print("\n== 1. Whole path, LQ WGAN (ALT, eta=0.1, B=4, N=M=256), box mean +- 6 sd ==")
    print(f"{'cells':>10} {'method':>7} {'coeff s':>8} {'assem s':>8} {'solve s':>8} {'total s':>8} {'peak GiB':>9} {'L1 error':>10}  target")
    targets = {512: "< 3 s", 1024: "< 12 s, < 2 GiB"}
    for n in sizes:
        r = run_worker(n)
        print(f"{n:>5}x{n:<4} {r['method']:>7} {r['coefficients']:8.2f} {r['assembly']:8.2f} {r['solve']:8.2f} {r['total']:8.2f} "
              f"{r['peak_gib']:9.2f} {r['l1']:10.2e}  {targets.get(n, '')}")
    if 1024 in sizes:
        r = run_worker(1024, "direct")
        print(f"{'1024x1024':>10} {'direct':>7} {r['coefficients']:8.2f} {r['assembly']:8.2f} {r['solve']:8.2f} {r['total']:8.2f} "
              f"{r['peak_gib']:9.2f} {r['l1']:10.2e}  (direct LU for comparison)")


def rotational_ou():
    A = np.array([[-1.0, 2.0], [-2.0, -0.5]])
    a = np.array([[0.8, 0.3], [0.3, 0.5]])
    sde = SDE(lambda U: U @ A.T, lambda U: np.broadcast_to(a, (len(U), 2, 2)), 2,
              diffusion_divergence=lambda U: np.zeros((len(U), 2)))
    mean, cov, _ = linear_gaussian_reference(sde)
    return sde, mean, cov, A, a


def section_schemes(sizes):
    print("\n== 2. Accuracy per second by scheme (L1 error vs exact Gaussian; time = assembly + solve) ==")
    problems = {
        "LQ ALT (paper noise)": lq_setup("alt", "paper"),
        "LQ SML (shared-batch)": lq_setup("sml", "shared-batch"),
        "rotational OU, full a": rotational_ou()[:3],
    }
    for label, (sde, mean, cov) in problems.items():
        print(f"-- {label}")
        print(f"{'n':>5} " + " ".join(f"{s + ' L1':>11} {s + ' s':>7}" for s in ("sg", "sqra", "upwind", "central")) + "   L1 ratio sg/sqra")
        for n in sizes:
            row, errs = [], {}
            for scheme in ("sg", "sqra", "upwind", "central"):
                grid = Grid(*box(mean, cov), (n, n))
                t0 = time.perf_counter()
                res = solve_stationary(assemble(sde, grid, scheme=scheme))
                dt = time.perf_counter() - t0
                errs[scheme] = l1(grid, res.density, gaussian_cells(grid, mean, cov))
                row.append(f"{errs[scheme]:11.2e} {dt:7.2f}")
            print(f"{n:>5} " + " ".join(row) + f"   {errs['sg'] / errs['sqra']:8.2f}")


def section_ordering(n):
    print(f"\n== 3. SuperLU column ordering on the pinned SG matrix, LQ {n}x{n} ==")
    sde, mean, cov = lq_setup()
    op = assemble(sde, Grid(*box(mean, cov), (n, n)))
    times = {}
    for spec in ("MMD_AT_PLUS_A", "COLAMD"):
        t0 = time.perf_counter()
        solve_stationary(op, "direct", permc_spec=spec)
        times[spec] = time.perf_counter() - t0
        print(f"{spec:>14}: {times[spec]:6.2f} s")
    print(f"  COLAMD / MMD_AT_PLUS_A time ratio: {times['COLAMD'] / times['MMD_AT_PLUS_A']:.2f}")


def _time_at(err_target, errs, secs):
    """Interpolate log(time) against log(error) to the time that reaches ``err_target``."""
    le, lt = np.log(np.asarray(errs)), np.log(np.asarray(secs))
    order = np.argsort(le)
    return float(np.exp(np.interp(np.log(err_target), le[order], lt[order], left=np.nan, right=np.nan)))


def section_alternatives(sizes, fplanck_sizes):
    print("\n== 4. Alternatives on the rotational OU problem (same box, same cells) ==")
    try:
        import alternatives as alt
    except ImportError as exc:
        print(f"  skipped: {exc}")
        return
    sde, mean, cov, A, a = rotational_ou()
    lo, hi = box(mean, cov)
    rows = {"stationary (sg)": ([], []), "FiPy (exponential, LU)": ([], [])}
    for n in sizes:
        grid = Grid(lo, hi, (n, n))
        t0 = time.perf_counter()
        res = solve_stationary(assemble(sde, grid))
        rows["stationary (sg)"][0].append(l1(grid, res.density, gaussian_cells(grid, mean, cov)))
        rows["stationary (sg)"][1].append(time.perf_counter() - t0)
        try:
            f = alt.solve_fipy(A, np.zeros(2), a, lo, hi, n)
            rows["FiPy (exponential, LU)"][0].append(l1(grid, f["density"], gaussian_cells(grid, mean, cov)))
            rows["FiPy (exponential, LU)"][1].append(f["seconds"])
        except Exception as exc:  # report, don't hide
            print(f"  FiPy failed at n={n}: {exc!r}")
    iso = np.eye(2) * 0.6
    sde_iso = SDE(lambda U: U @ A.T, lambda U: np.broadcast_to(iso, (len(U), 2, 2)), 2)
    m_iso, c_iso, _ = linear_gaussian_reference(sde_iso)
    lo_i, hi_i = box(m_iso, c_iso)
    # fplanck's stencil is the square-root approximation: compare it with ours of the same name too.
    rows_iso = {"stationary (sg)": ([], []), "stationary (sqra)": ([], []), "fplanck": ([], [])}
    for n in fplanck_sizes:
        grid = Grid(lo_i, hi_i, (n, n))
        for scheme in ("sg", "sqra"):
            t0 = time.perf_counter()
            res = solve_stationary(assemble(sde_iso, grid, scheme=scheme))
            rows_iso[f"stationary ({scheme})"][0].append(l1(grid, res.density, gaussian_cells(grid, m_iso, c_iso)))
            rows_iso[f"stationary ({scheme})"][1].append(time.perf_counter() - t0)
        try:
            f = alt.solve_fplanck(A, np.zeros(2), iso, lo_i, hi_i, n)
            rows_iso["fplanck"][0].append(l1(grid, f["density"], gaussian_cells(grid, m_iso, c_iso)))
            rows_iso["fplanck"][1].append(f["seconds"])
        except Exception as exc:
            print(f"  fplanck failed at n={n}: {exc!r}")
    for title, table, ns in (("full diffusion a = [[0.8, 0.3], [0.3, 0.5]]", rows, sizes),
                             ("isotropic a = 0.6 I (fplanck is isotropic)", rows_iso, fplanck_sizes)):
        print(f"-- {title}")
        for name, (errs, secs) in table.items():
            print(f"  {name:>24}: " + "  ".join(f"n={n}: L1 {e:.2e} in {s:.2f} s" for n, e, s in zip(ns, errs, secs)))
        for name, (errs, secs) in table.items():
            if name.startswith("stationary") or len(errs) < 2:
                continue
            for ours_name in [k for k in table if k.startswith("stationary")]:
                ours = table[ours_name]
                target = max(min(errs), min(ours[0]))
                t_ours, t_alt = _time_at(target, *ours), _time_at(target, errs, secs)
                print(f"  time to L1 = {target:.2e}: {ours_name} {t_ours:.2f} s, {name} {t_alt:.2f} s -> ratio {t_alt / t_ours:.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", type=int)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--sections", default="1234")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.method)))
        return
    print(f"stationary core benchmark, {os.cpu_count()} cores; timings are wall clock, compare ratios")
    if "1" in args.sections:
        section_whole_path([128, 256] if args.quick else [256, 512, 1024])
    if "2" in args.sections:
        section_schemes([64, 128] if args.quick else [64, 128, 256, 512])
    if "3" in args.sections:
        section_ordering(256 if args.quick else 512)
    if "4" in args.sections:
        section_alternatives([64, 128] if args.quick else [128, 256, 512], [32, 64] if args.quick else [64, 128, 256])


if __name__ == "__main__":
    main()
