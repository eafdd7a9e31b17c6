"""Command line: ``stationary run|solve|cases``.  Exit code 0 on success, 1 when a check fails,
2 on bad input (one line on stderr naming file, key and cause)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stationary", description="Invariant measures of SDE approximations of GAN training.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, with_case=True):
        if with_case:
            sp.add_argument("case", nargs="?", default=None, help="case file or bundled case name (default: lq-wgan)")
        sp.add_argument("--out", type=Path, default=None, help="output directory (default: results/<case name>)")
        sp.add_argument("--quick", action="store_true", help="coarser grid, shorter Monte Carlo, same pipeline")
        sp.add_argument("--seed", type=int, default=None, help="random seed for Monte Carlo")
        sp.add_argument("--eta", type=float, default=None, help="override the learning rate")
        sp.add_argument("--batch", type=int, default=None, help="override the batch size")
        sp.add_argument("--shape", type=lambda s: [int(v) for v in s.split(",")], default=None, help="grid cells per axis, e.g. 128,128")
        sp.add_argument("--scheme", default=None, help="flux scheme: sg, sqra, upwind, central")
        sp.add_argument("--method", default=None, help="solver: auto, direct, bordered, gmres, bicgstab, eigen")
        sp.add_argument("--backend", default=None, help="assembler: native (default) or fipy (d <= 3)")

    common(sub.add_parser("run", help="everything: existence checks, stationary density, Monte Carlo, report"))
    common(sub.add_parser("solve", help="solve the stationary density only"))
    common(sub.add_parser("simulate", help="long-run Monte Carlo of the training algorithm and the SDE only"))
    common(sub.add_parser("check", help="existence diagnostics (equilibria, dissipativity, ellipticity) only"))
    sub.add_parser("cases", help="list the bundled cases")
    _sweep_parser(sub)
    return p


def _load(args):
    from .cases import DEFAULT_CASE, load_case

    case = load_case(args.case or DEFAULT_CASE)
    shape = args.shape
    if args.quick and shape is None:
        from .pipeline import QUICK_SHAPE

        shape = [QUICK_SHAPE[case.model.dim]] * case.model.dim
    return case.with_overrides(eta=args.eta, batch=args.batch, shape=shape)


def _solve(args, case):
    from .pipeline import solve_case
    from .report import write_solve_outputs

    opts = {}
    if args.scheme:
        opts["scheme"] = args.scheme
    if args.method:
        opts["method"] = args.method
    if args.backend:
        opts["backend"] = args.backend
    t0 = time.perf_counter()
    res = solve_case(case, **opts)
    out = args.out or Path("results") / case.name
    block = write_solve_outputs(out, case, res, case.sde())
    print(f"{case.name}: stationary density on {res.grid!r} in {time.perf_counter() - t0:.2f} s: {res.message}")
    print(f"  mean {res.mean.round(6).tolist()}, sd {res.std.round(6).tolist()}")
    return res, block, out


def _out(args, case) -> Path:
    return args.out or Path("results") / case.name


def _run(args, case) -> int:
    from .pipeline import run_case
    from .report import write_run_report

    if sys.stderr.isatty():  # stage messages for a person watching; stderr stays one line otherwise
        import logging

        logging.basicConfig(level=logging.INFO, format="stationary: %(message)s")
    t0 = time.perf_counter()
    opts = {k: v for k, v in (("scheme", args.scheme), ("method", args.method), ("backend", args.backend)) if v}
    run = run_case(case, quick=args.quick, seed=args.seed, progress=sys.stderr.isatty(),
                   shape=case.grid.get("shape") if args.shape else None, **opts)
    out = _out(args, case)
    write_run_report(out, run)
    for check, verdict, evidence in run.verdicts:
        print(f"  {verdict:<5} {check}: {evidence[:160]}")
    print(f"{case.name}: {'all checks passed' if run.success else 'a check failed'} in {time.perf_counter() - t0:.1f} s; "
          f"report {out / 'report.html'}")
    if not run.success:
        failed = next(e for c, v, e in run.verdicts if v == "FAIL")
        print(f"stationary: {failed.splitlines()[0][:300]}", file=sys.stderr)
        return 1
    return 0


def _check(args, case) -> int:
    from .existence import diagnose
    from .io import atomic_write_json
    from .pipeline import case_grid

    try:
        grid = case_grid(case)
    except ValueError:
        grid = None
    rep = diagnose(case.sde(), grid)
    print(f"{case.name}: {rep.verdict}")
    for line in rep.evidence:
        print(f"  {line}")
    out = _out(args, case)
    atomic_write_json(out / "existence.json", rep.to_dict())
    if rep.verdict == "no invariant probability measure":
        print(f"stationary: no invariant probability measure for {case.name}", file=sys.stderr)
        return 1
    return 0


def _simulate(args, case) -> int:
    from .io import atomic_write_json
    from .pipeline import montecarlo_settings
    from .simulate import simulate_sde, simulate_training

    st = montecarlo_settings(case, args.quick, args.seed)
    out = _out(args, case)
    common = dict(chains=st["chains"], burn_in=st["burn_in"], duration=st["duration"], seed=st["seed"],
                  progress=sys.stderr.isatty())
    results = {
        "sga": simulate_training(case.model, case.update if case.update != "sml2" else "sml", case.eta, case.batch,
                                 case.batches, checkpoint=out / "checkpoint_sga.npz", resume=True, **common),
        "sde": simulate_sde(case.sde(), st["dt"], checkpoint=out / "checkpoint_sde.npz", resume=True, **common),
    }
    payload = {"case": case.name, "montecarlo": {}}
    for proc, mc in results.items():
        print(mc)
        payload["montecarlo"][proc] = mc.to_dict()
    atomic_write_json(out / "result.json", payload)
    bad = [mc for mc in results.values() if not mc.success]
    if bad:
        print(f"stationary: {bad[0].message}", file=sys.stderr)
        return 1
    return 0


def _sweep_parser(sub):
    sp = sub.add_parser("sweep", help="stationary law over a grid of eta, B, update, noise model and regularisation, on Dask")
    sp.add_argument("case", nargs="?", default=None, help="case file or bundled case name (default: lq-wgan)")
    sp.add_argument("--eta", default=None, help="learning rates: start:stop:count (log-spaced) or v1,v2,...")
    sp.add_argument("--batch", default=None, help="batch sizes: b1,b2,...")
    sp.add_argument("--update", default=None, help="update rules: alt,sml,sml2 (default: the case's)")
    sp.add_argument("--noise", default=None, help="noise models: paper,shared-batch (ALT takes paper only)")
    sp.add_argument("--lambda", dest="lam", default=None, help="regularisation strengths: scale factors on the case's regularizer")
    sp.add_argument("--set", dest="constants", action="append", default=[], metavar="NAME=V1,V2",
                    help="sweep a model constant (repeatable); values as for --eta")
    sp.add_argument("--montecarlo", action="store_true", help="also run Monte Carlo of the training algorithm and the SDE")
    sp.add_argument("--chains", type=int, default=None, help="Monte Carlo chains (default: the case's)")
    sp.add_argument("--duration", type=float, default=None, help="Monte Carlo duration in SDE time (default: the case's)")
    sp.add_argument("--burn-in", type=float, default=None, help="Monte Carlo burn-in in SDE time (default: the case's)")
    sp.add_argument("--shape", type=lambda s: [int(v) for v in s.split(",")], default=None, help="grid cells per axis")
    sp.add_argument("--seed", type=int, default=0, help="sweep seed (Monte Carlo seeds derive from it and the setting)")
    sp.add_argument("--workers", type=int, default=None, help="local Dask worker processes (default: all cores)")
    sp.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    sp.add_argument("--out", type=Path, default=None, help="results directory (default: results/<case>/sweep)")
    sp.add_argument("--no-figures", action="store_true", help="skip spread.png")
    sp.add_argument("--quiet", action="store_true", help="no progress lines")


def _sweep(args) -> int:
    from .cases import DEFAULT_CASE, load_case
    from .sweep import parse_values, sweep

    case = load_case(args.case or DEFAULT_CASE)
    constants = {}
    for item in args.constants:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set {item!r}: expected NAME=V1,V2,...")
        constants[name.strip()] = parse_values(values)
    mc = False
    if args.montecarlo:
        mc = {"chains": args.chains, "duration": args.duration, "burn_in": args.burn_in}
    res = sweep(case, eta=None if args.eta is None else parse_values(args.eta),
                batch=None if args.batch is None else parse_values(args.batch, int),
                updates=None if args.update is None else args.update.split(","),
                noise=None if args.noise is None else args.noise.split(","),
                lam=None if args.lam is None else parse_values(args.lam), constants=constants or None,
                montecarlo=mc, shape=args.shape, seed=args.seed, workers=args.workers, scheduler=args.scheduler,
                out=args.out, progress=not args.quiet, figures=not args.no_figures)
    print(res)
    for r in res.table:
        if r["status"] != "ok":
            print(f"  {r['status']:<20} {r['id']}: {r['reason']}")
    if not res.success:
        print(f"stationary: {res.counts.get('failed', 0)} setting(s) failed; rerun to retry them", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .cases import CaseError, bundled_cases, load_case

    try:
        if args.command == "cases":
            for name in bundled_cases():
                c = load_case(name)
                print(f"{name:24s} {c.model.dim}-d  {c.description}")
            return 0
        if args.command == "sweep":
            return _sweep(args)
        case = _load(args)
        if args.command == "run":
            return _run(args, case)
        if args.command == "check":
            return _check(args, case)
        if args.command == "simulate":
            return _simulate(args, case)
        res, block, out = _solve(args, case)
        verdicts = [("stationary solve", "PASS" if res.success else "FAIL", res.message)]
        for w in res.info.get("warnings", []):
            verdicts.append(("discretisation", "WARN", w))
        from .report import write_report

        payload = {"case": case.name, "settings": {"update": case.update, "eta": case.eta, "batch": case.batch, "noise": case.noise},
                   "stationary": block}
        write_report(out, case, payload, ["density.png", "marginals.png"], verdicts)
        print(f"  wrote {out / 'result.json'} and {out / 'report.html'}")
        if not res.success:
            print(f"stationary: {res.message}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        print("stationary: interrupted (checkpoints, if any, are kept; rerun to resume)", file=sys.stderr)
        return 130
    except (CaseError, ValueError) as exc:
        print(f"stationary: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
