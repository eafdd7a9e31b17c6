"""Degenerate diffusion (MATH.md section 4): SG against sg2 (central flux where the cell Péclet
number exceeds 2) on the bundled vanilla and scale-generator cases.

For each case and scheme, on the case's automatic box at n^2 cells (n = 48, 96, 192, 384, same
box for all): the covariance, its observed order from consecutive triples
p = log2(|C_2h - C_4h| / |C_h - C_2h|) (max-norm), the minimum density relative to the peak,
and at the finest grid the difference between the two schemes (the monotone SG answer is the
certified one).  Run: ``python benchmarks/bench_degenerate.py``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stationary import Grid, stationary_density  # noqa: E402
from stationary.cases import load_case  # noqa: E402
from stationary.pipeline import case_grid  # noqa: E402

SIZES = (48, 96, 192, 384)


def main():
    for name in ("vanilla", "scale-generator"):
        case = load_case(name)
        sde = case.sde()
        base = case_grid(case, shape=SIZES[-1])
        # Widen the automatic box (as run_case does) until the mass in the outermost cells is
        # below the tolerance: a box that cuts the density adds its own wall effects.
        for _ in range(3):
            probe = stationary_density(sde, Grid(base.lower, base.upper, (SIZES[1],) * 2), error_estimate=False)
            if probe.status != 2:
                break
            centre = 0.5 * (np.array(base.lower) + np.array(base.upper))
            half = 0.75 * (np.array(base.upper) - np.array(base.lower))
            base = Grid(centre - half, centre + half, base.shape)
        print(f"\n{name}: box {base!r}")
        covs = {}
        for scheme in ("sg", "sg2"):
            covs[scheme] = []
            for n in SIZES:
                t = time.perf_counter()
                r = stationary_density(sde, Grid(base.lower, base.upper, (n, n)), scheme=scheme,
                                       error_estimate=False)
                covs[scheme].append(r.covariance)
                print(f"  {scheme:4} {n:4}^2  cov {np.array2string(r.covariance.ravel()[[0, 1, 3]], precision=6)}  "
                      f"min/peak {r.min_density / r.density.max():+.1e}  monotone {r.monotone}  success {r.success}  "
                      f"defect iterations {r.info.get('defect_iterations', '-')}  "
                      f"{time.perf_counter() - t:.2f} s", flush=True)
            C = covs[scheme]
            diffs = [np.abs(C[i + 1] - C[i]).max() for i in range(len(C) - 1)]
            orders = [np.log2(diffs[i] / diffs[i + 1]) for i in range(len(diffs) - 1)]
            print(f"  {scheme:4} |C_h - C_2h|: " + ", ".join(f"{d:.2e}" for d in diffs)
                  + "; observed covariance order: " + ", ".join(f"{p:.2f}" for p in orders))
        scale = np.abs(covs["sg"][-1]).max()
        print(f"  at {SIZES[-1]}^2: max |cov_sg2 - cov_sg| / max|cov| = {np.abs(covs['sg2'][-1] - covs['sg'][-1]).max() / scale:.2e}")


if __name__ == "__main__":
    main()
