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
{figs}
</body></html>
"""
    atomic_write_bytes(out / "report.html", page.encode())
