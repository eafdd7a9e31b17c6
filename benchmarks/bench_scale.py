"""Scale benchmark for d = 3 and 4 (issue targets: 3-d at 100^3 under 30 s; 4-d at 32^4 under
60 s and 4 GiB; AMG iterations <= 40, growing <= 25 % per refinement).

For each problem and size, in a fresh process (so ``ru_maxrss`` is that size's peak), two starts:
``cold``: ``assemble`` + ``solve_stationary`` (method "auto": GMRES on the singular system with
Ruge–Stüben AMG for d >= 3) from a uniform guess, no error estimate; ``nested``: the default user
path ``stationary_density`` with its Richardson error estimate, whose coarse grids (n/4, n/2) are
solved first and start the fine solve (nested iteration); its "total" includes the coarse solves
and "iters" counts the fine solve's.  Reported: coefficient, assembly, AMG setup, solve and total
seconds, peak RSS, GMRES iterations and their growth per refinement, AMG levels, the residual.
Problems: the bundled 3-d GAN case ``location-quadratic-critic-3d``, a 3-d Ornstein–Uhlenbeck
process with full diffusion (with its exact covariance error), and the bundled 4-d case
``location-scale-4d``.

Run: ``python benchmarks/bench_scale.py`` (``--quick``: the two smaller sizes only; ``--start cold|nested``;
``--amg KEY=VALUE`` passes options to the AMG setup, e.g. ``--amg strength=classical``).
Timings are wall clock on whatever machine runs it; on a shared machine they are noisy.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"lqc-3d": (50, 75, 100), "ou-3d": (50, 75, 100), "ls-4d": (16, 24, 32)}
TARGETS = {3: (100, 30.0, None), 4: (32, 60.0, 4.0)}  # (size, seconds, GiB)

A3 = [[-1.0, 0.4, 0.0], [-0.4, -0.8, 0.3], [0.0, -0.2, -1.2]]
a3 = [[1.0, 0.3, 0.1], [0.3, 0.8, 0.2], [0.1, 0.2, 1.2]]


def problem(name, n):
    import stationary as st
    from stationary.cases import load_case
    from stationary.pipeline import case_grid

    if name == "ou-3d":
        A, a = np.array(A3), np.array(a3)
        sde = st.SDE(lambda U: U @ A.T, lambda U: np.broadcast_to(a, (len(U), 3, 3)), 3,
                     diffusion_divergence=lambda U: np.zeros((len(U), 3)), constant_diffusion=True)
        mean, cov, _ = st.linear_gaussian_reference(sde)
        sd = np.sqrt(np.diag(cov))
        return sde, st.Grid(mean - 5 * sd, mean + 5 * sd, (n,) * 3), cov
    case = load_case({"lqc-3d": "location-quadratic-critic-3d", "ls-4d": "location-scale-4d"}[name])
    return case.sde(), case_grid(case, shape=n), None


def worker(name, n, amg_options, nested):
    from stationary import assemble, solve_stationary, stationary_density

    t0 = time.perf_counter()
    sde, grid, cov = problem(name, n)
    t_setup = time.perf_counter() - t0
    opts = {"amg_options": amg_options} if amg_options else {}
    t0 = time.perf_counter()
    if nested:
        # The default user path: error estimate on, so the coarse grids are solved first and
        # start the fine solve (nested iteration); "total" includes the coarse solves.
        res = stationary_density(sde, grid, **opts)
        op = None
    else:
        op = assemble(sde, grid)
        res = solve_stationary(op, **opts)
    t_total = time.perf_counter() - t0
    out = {
        "problem": name, "n": n, "cells": grid.size, "method": res.method, "start": "nested" if nested else "cold",
        "sde": t_setup, "coefficients": res.seconds["coefficients"], "assembly": res.seconds["assembly"],
        "solve": res.seconds["solve"], "amg_setup": res.info.get("amg_setup_seconds"),
        "total": t_total,
        "estimate_l1": None if res.error is None else res.error.l1_error,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "iterations": res.iterations, "amg_levels": res.info.get("amg_levels"), "residual": res.residual,
        "success": res.success,
    }
    if cov is not None:
        out["cov_error"] = float(np.abs(res.covariance - cov).max() / np.abs(cov).max())
    return out


def run(name, n, amg_options, timeout, nested):
    cmd = ([sys.executable, __file__, "--worker", name, str(n)] + sum((["--amg", o] for o in amg_options), [])
           + (["--nested"] if nested else []))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"problem": name, "n": n, "error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        return {"problem": name, "n": n, "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"rc {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def parse_amg(items):
    out = {}
    for it in items:
        k, v = it.split("=", 1)
        try:
            v = json.loads(v)
            v = tuple(v) if isinstance(v, list) else v  # pyamg takes (name, options) tuples
        except json.JSONDecodeError:
            pass
        out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--problems", default=",".join(SIZES))
    ap.add_argument("--amg", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--start", choices=("cold", "nested", "both"), default="both",
                    help="cold: solve_stationary from a uniform guess; nested: stationary_density with its "
                         "error estimate, coarse grids first (the default user path)")
    ap.add_argument("--nested", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), parse_amg(args.amg), args.nested)))
        return
    print(f"AMG options: {parse_amg(args.amg) or 'defaults'}")
    hdr = (f"{'problem':8} {'start':6} {'n':>4} {'cells':>9} {'coef s':>7} {'asm s':>6} {'amg s':>6} {'solve s':>7} {'total s':>7} "
           f"{'peak GiB':>8} {'iters':>5} {'growth':>7} {'levels':>6} {'residual':>9}  target")
    print(hdr)
    starts = ("cold", "nested") if args.start == "both" else (args.start,)
    for name, start in ((nm, st) for nm in args.problems.split(",") for st in starts):
        sizes = SIZES[name][:2] if args.quick else SIZES[name]
        prev = None
        for n in sizes:
            r = run(name, n, args.amg, args.timeout, start == "nested")
            if "error" in r:
                print(f"{name:8} {start:6} {n:>4}  FAILED: {r['error']}", flush=True)
                prev = None
                continue
            growth = "" if not prev or not prev.get("iterations") else f"{100 * (r['iterations'] / prev['iterations'] - 1):+.0f}%"
            d = 4 if name.endswith("4d") else 3
            tn, ts, tg = TARGETS[d]
            target = ""
            if n == tn:
                ok = r["total"] < ts and (tg is None or r["peak_gib"] < tg)
                target = f"{'met' if ok else 'MISSED'} (< {ts:g} s" + (f", < {tg:g} GiB)" if tg else ")")
            it_ok = r["iterations"] is None or r["iterations"] <= 40
            target += "" if it_ok else " iterations > 40"
            amg = "" if r.get("amg_setup") is None else f"{r['amg_setup']:.2f}"
            extra = f" cov err {r['cov_error']:.1e}" if "cov_error" in r else ""
            print(f"{name:8} {start:6} {n:>4} {r['cells']:>9} {r['coefficients']:>7.2f} {r['assembly']:>6.2f} {amg:>6} {r['solve']:>7.2f} "
                  f"{r['total']:>7.2f} {r['peak_gib']:>8.2f} {str(r['iterations']):>5} {growth:>7} {str(r['amg_levels']):>6} "
                  f"{r['residual']:>9.1e}  {target}{extra}", flush=True)
            prev = r


if __name__ == "__main__":
    main()
