r"""FiPy backend vs the native operator on the same grids: time, peak memory, L1 error.

Case: the bundled LQ WGAN (ALT-SDE, Ornstein–Uhlenbeck, exact Gaussian invariant law), on its
automatic box at 64², 128², 256².  Each (backend, grid) runs in a fresh subprocess so that
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is that solve's peak resident memory (it
includes the interpreter, numpy/scipy and, for FiPy, FiPy's own import; the baseline of a
process that only imports is printed too).  Time is the whole path of one call
(``stationary_density(..., backend=...)``: coefficients, assembly, solve, checks), imports
excluded, best of ``--repeat`` runs.  L1 error: :math:`\sum_c |p_c - g_c|\,|c|` against the
exact Gaussian at cell centres, normalised on the grid.

Run: ``python benchmarks/bench_fipy.py [--shapes 64,128,256] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import stationary as st
from stationary.cases import load_case
from stationary.pipeline import case_grid
backend, n, repeat = {backend!r}, {n}, {repeat}
case = load_case("lq-wgan"); sde = case.sde(); grid = case_grid(case, (n, n))
if backend == "fipy":
    from stationary.backends.fipy import import_fipy
    import_fipy()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best = np.inf
for _ in range(repeat):
    t0 = time.perf_counter()
    res = st.stationary_density(sde, grid, backend=backend) if n else None
    best = min(best, time.perf_counter() - t0)
mean, cov, _ = st.linear_gaussian_reference(sde)
X = grid.points() - mean
q = np.exp(-0.5 * np.einsum("ni,ij,nj->n", X, np.linalg.inv(cov), X)).reshape(grid.shape)
q /= q.sum() * grid.cell_volume
print(json.dumps({{"seconds": best, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "import_rss_mb": base / 1024, "l1": float(np.abs(res.density - q).sum() * grid.cell_volume),
                  "success": bool(res.success), "residual": res.residual,
                  "parts": {{k: round(v, 4) for k, v in res.seconds.items()}}}}))
"""


def run(backend: str, n: int, repeat: int) -> dict:
    code = CHILD.format(root=str(ROOT), backend=backend, n=n, repeat=repeat)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="64,128,256", help="cells per axis, comma separated")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    shapes = [int(s) for s in args.shapes.split(",")]
    print("LQ WGAN (ALT-SDE), automatic box; one fresh process per row; time = best of", args.repeat)
    head = (f"{'grid':>9} | {'native s':>9} {'fipy s':>9} {'ratio':>6} | {'native MB':>9} {'fipy MB':>9} {'ratio':>6} | "
            f"{'native L1':>10} {'fipy L1':>10} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for n in shapes:
        r = {b: run(b, n, args.repeat) for b in ("native", "fipy")}
        rn, rf = r["native"], r["fipy"]
        print(f"{f'{n}x{n}':>9} | {rn['seconds']:9.3f} {rf['seconds']:9.3f} {rf['seconds'] / rn['seconds']:6.2f} | "
              f"{rn['maxrss_mb']:9.1f} {rf['maxrss_mb']:9.1f} {rf['maxrss_mb'] / rn['maxrss_mb']:6.2f} | "
              f"{rn['l1']:10.3e} {rf['l1']:10.3e} {rf['l1'] / rn['l1']:6.3f}"
              + ("" if rn["success"] and rf["success"] else "  (a solve reported failure)"))
        print(f"{'':>9}   native parts {rn['parts']}\n{'':>9}   fipy parts   {rf['parts']}")
    print(f"(import-only RSS: native {rn['import_rss_mb']:.0f} MB, with FiPy {rf['import_rss_mb']:.0f} MB)")
    print("Why: for this case (affine drift, constant diagonal a) both build the same SG matrix, so the L1 errors agree;\n"
          "FiPy is slower because it evaluates the SDE at the ~2n face centres instead of the n cell centres (the\n"
          "'coefficients' part) and its sweep (lazy Variable graph on an unstructured face list, COO->CSR assembly, LU with\n"
          "iterative refinement) costs more than the native band assembly + one SuperLU solve; the extra memory is FiPy's\n"
          "per-face arrays (rank-2 D, geometric coefficients, cached variables).  With a full (anisotropic) a, FiPy also\n"
          "needs ~25 Picard sweeps (off-diagonal diffusion is explicit), each re-assembling and re-factorising.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
