"""Wall time of a 24-setting sweep on 1 worker against 2 workers (local Dask cluster).

lq-wgan, eta = 0.01..0.4 (6 log-spaced values) x B in {1, 4} x {ALT, SML}, default grid
(256 x 256, plus the half-resolution re-solve for the error estimate, plus the FDR identities),
with a short Monte Carlo of the training algorithm and of the SDE per setting. Each run starts
its own cluster in a fresh results directory, so cluster start-up is included (as a user pays
it). Prints seconds, the speed-up as a ratio, and whether the two tables are identical.

    python benchmarks/bench_sweep.py [--mc-chains 512] [--mc-duration 50]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stationary.sweep import sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mc-chains", type=int, default=512)
    ap.add_argument("--mc-duration", type=float, default=50.0)
    args = ap.parse_args()
    kw = dict(eta=[0.01, 0.0209128, 0.0437345, 0.0914610, 0.191270, 0.4], batch=[1, 4], updates=["alt", "sml"],
              montecarlo={"chains": args.mc_chains, "duration": args.mc_duration, "burn_in": 10.0}, seed=1,
              progress=False, figures=False)
    print(f"machine: {os.cpu_count()} cores; case lq-wgan; 24 settings (6 eta x 2 B x 2 updates), default grid, "
          f"Monte Carlo {args.mc_chains} chains x {args.mc_duration:g} time units")
    times, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            t0 = time.perf_counter()
            res = sweep("lq-wgan", workers=n, out=Path(tmp) / f"w{n}", **kw)
            times[n] = time.perf_counter() - t0
            results[n] = res
            cpu = sum(r["seconds_total"] for r in res.table)
            print(f"  {n} worker(s): {times[n]:7.1f} s wall ({cpu:.1f} s summed over settings); {res!r}")
    print(f"speed-up 2 vs 1 workers: {times[1] / times[2]:.2f}x (ideal 2.00x)")
    same = results[1].digest() == results[2].digest()
    print(f"tables identical (all columns but seconds_*): {same} (sha256 {results[1].digest()[:16]})")


if __name__ == "__main__":
    main()
