"""Result files: ``result.json``, ``density.npz``, figures and ``report.html`` (all written atomically)."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from .io import atomic_savez, atomic_write_bytes, atomic_write_json
from .plotting import plot_density, plot_marginals

__all__ = ["write_solve_outputs", "write_report"]


def write_solve_outputs(out: Path, case, result, sde) -> dict:
    """Write ``density.npz`` and the figures of a stationary solve; return the ``stationary`` block."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = result.grid
    atomic_savez(
        out / "density.npz",
        density=result.density,
        lower=np.array(grid.lower),
        upper=np.array(grid.upper),
        shape=np.array(grid.shape),
        names=np.array(case.model.names),
        **{f"centres_{k}": c for k, c in enumerate(grid.centres)},
    )
    names = case.model.names
    plot_density(result, sde, out / "density.png", names=names, title=f"{case.name}: stationary density")
    plot_marginals(result, out / "marginals.png", names=names)
    block = result.to_dict()
    block["seconds"] = float(sum(result.seconds.values()))
    block["seconds_by_stage"] = {k: float(v) for k, v in result.seconds.items()}
    return block


def write_report(out: Path, case, payload: dict, figures: list[str], verdicts: list[tuple[str, str, str]]) -> None:
    """``result.json`` and a self-contained HTML page (figures referenced next to it)."""
    out = Path(out)
    atomic_write_json(out / "result.json", payload)
    rows = "\n".join(
        f"<tr><td>{html.escape(a)}</td><td class='{html.escape(b.lower())}'>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in verdicts
    )
    st = payload.get("stationary", {})
    names = case.model.names
    mean = st.get("mean") or []
    cov = st.get("covariance") or []
    mrows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{m:.6g}</td><td>{np.sqrt(max(cov[i][i], 0)):.4g}</td></tr>"
        for i, (n, m) in enumerate(zip(names, mean))
    )
    ident_rows = ""
    for name, r in (payload.get("identities") or {}).items():
        g = r.get("grid", {})
        fmt = lambda v: "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.4g}"  # noqa: E731
        ident_rows += (
            f"<tr><td>{html.escape(name)}</td><td>{fmt(r.get('lhs'))} ± {fmt(r.get('stderr_lhs'))}</td>"
            f"<td>{fmt(r.get('rhs'))} ± {fmt(r.get('stderr_rhs'))}</td><td>{fmt(r.get('difference'))} ± {fmt(r.get('stderr'))}</td>"
            f"<td>{fmt(r.get('zscore'))}</td><td>{fmt(g.get('difference'))}</td><td>{html.escape(str(r.get('source', '')))}</td></tr>"
        )
    ident_table = (
        "<h2>Stationarity identities E[A f] = 0</h2><table><tr><th>identity</th><th>lhs</th><th>rhs</th>"
        "<th>rhs - lhs</th><th>z</th><th>rhs - lhs on the grid</th><th>samples</th></tr>" + ident_rows + "</table>"
        if ident_rows else ""
    )
    comp_rows = ""
    for proc, c in (payload.get("comparisons") or {}).items():
        label = "SDE (Euler-Maruyama, dt-extrapolated)" if proc == "sde" else "training algorithm"
        zm = np.abs(np.asarray(c.get("z_mean") or [np.nan])).max()
        zc = np.abs(np.asarray(c.get("z_covariance") or [[np.nan]])).max()
        w1 = np.asarray(c.get("wasserstein1_relative") or [np.nan]).max()
        l1, floor = c.get("l1"), c.get("l1_floor")
        comp_rows += (f"<tr><td>{label}</td><td>{zm:.2f}</td><td>{zc:.2f}</td><td>{w1:.3g}</td>"
                      f"<td>{'' if l1 is None else f'{l1:.3g}'}</td><td>{'' if floor is None else f'{floor:.3g}'}</td></tr>")
    comp_table = (
        "<h2>Grid density against Monte Carlo</h2><table><tr><th>samples</th><th>max |z| mean</th><th>max |z| covariance</th>"
        "<th>max W1 / sd</th><th>binned L1</th><th>its noise floor</th></tr>" + comp_rows + "</table>"
        if comp_rows else ""
    )
    figs = "\n".join(f"<figure><img src='{html.escape(f)}' alt='{html.escape(f)}'></figure>" for f in figures)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(case.name)} - stationary</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}} td,th{{padding:2px 10px;border-bottom:1px solid #ddd}}
.pass{{color:#070}} .fail{{color:#b00}} .warn{{color:#b60}} img{{max-width:100%}} figure{{display:inline-block;margin:4px}}</style></head><body>
<h1>{html.escape(case.name)}</h1><p>{html.escape(case.description)}</p>
<p>update {case.update.upper()}, &eta; = {case.eta}, B = {case.batch}, noise model {html.escape(case.noise)}</p>
<h2>Verdicts</h2><table><tr><th>check</th><th>verdict</th><th>evidence</th></tr>{rows}</table>
<h2>Stationary density</h2><table><tr><th>parameter</th><th>mean</th><th>sd</th></tr>{mrows}</table>
<p>grid {html.escape(str(st.get('grid')))}, scheme {html.escape(str(st.get('scheme')))}, residual {st.get('residual', float('nan')):.2e},
mass at boundary {st.get('mass_at_boundary', float('nan')):.2e}, {st.get('seconds', 0):.2f} s</p>
{comp_table}
{ident_table}
{figs}
</body></html>
"""
    atomic_write_bytes(out / "report.html", page.encode())


def _mc_block(mc) -> dict:
    out = mc.to_dict() if hasattr(mc, "to_dict") else {}
    for key in ("mean", "covariance", "stderr_mean", "stderr_covariance"):
        v = getattr(mc, key, None)
        out[key] = None if v is None else np.asarray(v).tolist()
    return out


def write_run_report(out: Path, run) -> dict:
    """All outputs of :func:`stationary.pipeline.run_case`: ``result.json`` (DESIGN.md fields),
    ``density.npz``, figures and ``report.html``.  Returns the JSON payload."""
    from .plotting import plot_convergence, plot_density, plot_identities, plot_marginals

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    case = run.case
    sde = case.sde()
    payload = {
        "case": case.name,
        "settings": {"update": case.update, "eta": case.eta, "batch": case.batch, "noise": case.noise, "batches": case.batches},
        "success": run.success,
        "verdicts": [{"check": c, "verdict": v, "evidence": e} for c, v, e in run.verdicts],
        "existence": run.existence.to_dict(),
    }
    figures = []
    if run.stationary is not None:
        res = run.stationary
        payload["stationary"] = write_solve_outputs(out, case, res, sde)
        payload["stationary"]["grid_error"] = {k: np.asarray(v).tolist() for k, v in (run.grid_error or {}).items()}
        figures += ["density.png", "marginals.png"]
        hist = None
        if "sde" in run.montecarlo and run.montecarlo["sde"].histogram is not None and res.grid.ndim >= 2:
            h = run.montecarlo["sde"].histogram
            dens = h.density()
            others = tuple(range(2, dens.ndim))
            if others:
                widths = [np.diff(h.edges[k]) for k in others]
                dens = dens.sum(axis=others) * float(np.prod([w[0] for w in widths]))
            hist = (dens, h.edges[0], h.edges[1])
        if hist is not None:
            plot_density(res, sde, out / "density_mc.png", names=case.model.names, samples_hist=hist,
                         title=f"{case.name}: grid density, SDE Monte Carlo contours (red)")
            figures.insert(0, "density_mc.png")
        series = {}
        for proc, mc in run.montecarlo.items():
            if mc.histogram is None:
                continue
            h = mc.histogram
            p = h.probabilities()
            per_axis = []
            for k in range(res.grid.ndim):
                others = tuple(j for j in range(res.grid.ndim) if j != k)
                c = 0.5 * (h.edges[k][1:] + h.edges[k][:-1])
                per_axis.append((c, p.sum(axis=others) / np.diff(h.edges[k])))
            series["training (" + case.update.upper() + ")" if proc == "sga" else "SDE (Euler-Maruyama)"] = per_axis
        if series:
            plot_marginals(res, out / "marginals.png", names=case.model.names, others=series)
        if run.coarse is not None:
            hs = [float(run.coarse.grid.spacing.max()), float(res.grid.spacing.max())]
            ref = run.references.get("gaussian", {})
            if "covariance" in ref:
                cov = np.asarray(ref["covariance"])
                errs = [np.abs(r.covariance - cov).max() / np.abs(cov).max() for r in (run.coarse, res)]
                label = "covariance error vs exact (relative)"
            else:
                diff = np.abs(res.covariance - run.coarse.covariance).max() / np.abs(res.covariance).max()
                errs = [diff, diff / 4]
                label = "covariance change under refinement (fine point: order-2 guess)"
            plot_convergence(hs, errs, out / "convergence.png", label=label)
            figures.append("convergence.png")
    if run.montecarlo:
        payload["montecarlo"] = {proc: _mc_block(mc) for proc, mc in run.montecarlo.items()}
    if run.comparisons:
        payload["comparisons"] = {proc: c.to_dict() for proc, c in run.comparisons.items()}
    if run.references:
        payload["references"] = run.references
    if run.identities:
        # identities.<name>.lhs/.rhs/.stderr from the SDE Monte Carlo (error bars), else the grid.
        payload["identities"] = {}
        for name, parts in run.identities.items():
            main = parts.get("montecarlo") or parts.get("grid")
            block = main.to_dict()
            if "grid" in parts:
                block["grid"] = parts["grid"].to_dict()
            payload["identities"][name] = block
        plot_identities(run.identities, out / "identities.png")
        figures.append("identities.png")
    write_report(out, case, payload, figures, run.verdicts)
    return payload
