"""Constant learning rate vs the paper's FDR schedule (MATH.md section 6), at a fixed budget.

For each case, independent training chains (ALT, the case's eta and batch) run the same number
of steps, i.e. the same number of per-sample gradient evaluations, with

* constant eta,
* the schedule with the paper's per-step ratio (window 1),
* the schedule with a running-average ratio (window W),

from the same start and the same random stream.  Reported after the budget: the distance of
the long-run law to the equilibrium, E|u - u*|^2 over chains (u* the zero of the mean gradient),
the loss gap E[Phi(u)] - Phi(u*), the spread tr Cov(u), the final eta (median over chains) and
the reductions per run.  Figures go to benchmarks/figures/.

Run: ``python benchmarks/bench_schedule.py [--steps 4000] [--chains 512]``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import optimize  # noqa: E402

from stationary.cases import load_case  # noqa: E402
from stationary.schedule import FDRSchedule, simulate_scheduled_training  # noqa: E402

FIG = Path(__file__).resolve().parent / "figures"


def equilibrium(model, guess):
    sol = optimize.root(lambda u: model.gradient(u[None, :])[0], guess)
    assert np.abs(model.gradient(sol.x[None, :])).max() < 1e-9, sol
    return sol.x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--chains", type=int, default=512)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--epsilon", type=float, default=0.1)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--cases", nargs="+", default=["lq-wgan", "scale-generator"])
    args = ap.parse_args()
    FIG.mkdir(parents=True, exist_ok=True)
    arms = {
        "constant": None,
        "FDR, window 1": FDRSchedule(args.epsilon, args.delta, window=1),
        f"FDR, window {args.window}": FDRSchedule(args.epsilon, args.delta, window=args.window),
    }
    rows = []
    for name in args.cases:
        case = load_case(name)
        model = case.model
        batch = max(2, case.batch)  # the unbiased minibatch covariance needs B >= 2
        ustar = equilibrium(model, np.zeros(model.dim) + 0.5)
        phistar = model.objectives(ustar[None, :])[1][0]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        for label, sched in arms.items():
            t = time.perf_counter()
            res = simulate_scheduled_training(model, sched, "alt", case.eta, batch, steps=args.steps, chains=args.chains,
                                              seed=2024, init=ustar, record_every=max(1, args.steps // 200),
                                              equilibrium=ustar)
            U = res.final
            dist = ((U - ustar) ** 2).sum(axis=1)
            phi = model.objectives(U)[1]
            rows.append(dict(case=name, arm=label, evals=res.gradient_evaluations, dist=dist.mean(),
                             dist_se=dist.std(ddof=1) / np.sqrt(len(dist)), gap=phi.mean() - phistar,
                             gap_se=phi.std(ddof=1) / np.sqrt(len(phi)), spread=np.trace(np.cov(U.T)),
                             eta=np.median(res.eta_final), red=res.reductions.mean(), red_sd=res.reductions.std(),
                             ok=res.success, sec=time.perf_counter() - t))
            x = res.record_steps * res.gradient_evaluations / res.steps
            ax[0].plot(x, res.eta_quantiles[:, 1], label=label)
            ax[0].fill_between(x, res.eta_quantiles[:, 0], res.eta_quantiles[:, 2], alpha=0.2)
            ax[1].plot(x, res.distance, label=label)
        ax[0].set(xlabel="per-sample gradient evaluations per run", ylabel="eta (median, 10-90 %)", yscale="log",
                  title=f"{name}: learning rate")
        ax[1].set(xlabel="per-sample gradient evaluations per run", ylabel="E|u - u*|^2", yscale="log",
                  title=f"{name}: distance to equilibrium")
        ax[0].legend()
        fig.tight_layout()
        fig.savefig(FIG / f"schedule_{name}.png", dpi=110)
        plt.close(fig)
    print(f"{args.chains} runs per arm, {args.steps} ALT steps, epsilon={args.epsilon}, delta={args.delta}; "
          "start at u*; +- is one standard error over runs")
    hdr = f"{'case':16s} {'arm':16s} {'grad evals':>10s} {'E|u-u*|^2':>20s} {'E Phi - Phi*':>22s} {'tr Cov':>9s} " \
          f"{'eta med':>8s} {'reductions':>12s} {'ratio vs const':>14s} {'s':>5s}"
    print(hdr)
    base = {}
    for r in rows:
        if r["arm"] == "constant":
            base[r["case"]] = r["dist"]
        print(f"{r['case']:16s} {r['arm']:16s} {r['evals']:10d} {r['dist']:11.4g} +- {r['dist_se']:.2g} "
              f"{r['gap']:12.4g} +- {r['gap_se']:.2g} {r['spread']:9.4g} {r['eta']:8.3g} "
              f"{r['red']:6.1f} +- {r['red_sd']:.1f} {r['dist'] / base[r['case']]:14.3f} {r['sec']:5.1f}"
              + ("" if r["ok"] else "  DIVERGED"))
    print(f"figures: {', '.join(str(FIG / f'schedule_{n}.png') for n in args.cases)}")


if __name__ == "__main__":
    main()
