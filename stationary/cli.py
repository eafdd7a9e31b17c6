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

    common(sub.add_parser("run", help="solve the stationary density and write a report"))
    common(sub.add_parser("solve", help="solve the stationary density only"))
    sub.add_parser("cases", help="list the bundled cases")
    return p


def _load(args):
    from .cases import DEFAULT_CASE, load_case

    case = load_case(args.case or DEFAULT_CASE)
    shape = args.shape
    if args.quick and shape is None:
        from .pipeline import DEFAULT_SHAPE

        shape = [max(16, DEFAULT_SHAPE[case.model.dim] // 4)] * case.model.dim
    return case.with_overrides(eta=args.eta, batch=args.batch, shape=shape)


def _solve(args, case):
    from .pipeline import solve_case
    from .report import write_solve_outputs

    opts = {}
    if args.scheme:
        opts["scheme"] = args.scheme
    if args.method:
        opts["method"] = args.method
    t0 = time.perf_counter()
    res = solve_case(case, **opts)
    out = args.out or Path("results") / case.name
    block = write_solve_outputs(out, case, res, case.sde())
    print(f"{case.name}: stationary density on {res.grid!r} in {time.perf_counter() - t0:.2f} s: {res.message}")
    print(f"  mean {res.mean.round(6).tolist()}, sd {res.std.round(6).tolist()}")
    return res, block, out


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .cases import CaseError, bundled_cases, load_case

    try:
        if args.command == "cases":
            for name in bundled_cases():
                c = load_case(name)
                print(f"{name:24s} {c.model.dim}-d  {c.description}")
            return 0
        case = _load(args)
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
    except (CaseError, ValueError) as exc:
        print(f"stationary: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
