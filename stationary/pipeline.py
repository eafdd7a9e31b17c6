"""One call per stage for a :class:`~stationary.cases.Case`: solve (with an automatic box)."""
from __future__ import annotations

import logging
import warnings

import numpy as np

from .existence import auto_grid, find_equilibria
from .grid import Grid
from .solve import stationary_density

__all__ = ["case_grid", "solve_case"]

log = logging.getLogger("stationary")

DEFAULT_SHAPE = {1: 512, 2: 256, 3: 48, 4: 24}
QUICK_SHAPE = {1: 128, 2: 64, 3: 24, 4: 20}


def case_grid(case, shape=None, width=None) -> Grid:
    """The case's grid: explicit ``lower/upper`` or an automatic box from the linearisation."""
    sde = case.sde()
    d = sde.dim
    shape = shape if shape is not None else case.grid.get("shape", DEFAULT_SHAPE[d])
    shape = tuple(np.broadcast_to(np.asarray(shape, int), (d,)).tolist())
    if "lower" in case.grid:
        return Grid(case.grid["lower"], case.grid["upper"], shape)
    return auto_grid(sde, shape, width=width or case.grid.get("width", 6.0))


def solve_case(case, shape=None, grow: int = 2, **options):
    """Solve the case's stationary density; an automatic box grows (x1.5 in extent and in cells,
    keeping the cell width, at most ``grow`` times) while the mass in its outermost cells
    exceeds the tolerance.  Keeping h matters: a coarser grid's numerical diffusion would
    itself push mass outwards."""
    sde = case.sde()
    grid = case_grid(case, shape)
    scheme = options.pop("scheme", case.grid.get("scheme", "sg"))
    method = options.pop("method", case.grid.get("method", "auto"))
    cross = options.pop("cross", case.grid.get("cross", "auto"))
    res = stationary_density(sde, grid, scheme=scheme, method=method, cross=cross, **options)
    tries = 0
    while "lower" not in case.grid and res.status == 2 and tries < grow:
        tries += 1
        centre = 0.5 * (np.array(grid.lower) + np.array(grid.upper))
        half = 0.75 * (np.array(grid.upper) - np.array(grid.lower))
        grid = Grid(centre - half, centre + half, tuple(int(np.ceil(1.5 * n)) for n in grid.shape))
        log.info("mass %.2e at the box edge: growing the box to %r", res.mass_at_boundary, grid)
        res = stationary_density(sde, grid, scheme=scheme, method=method, cross=cross, **options)
    return res


# ----------------------------------------------------------------------------- the whole job
from dataclasses import dataclass, field  # noqa: E402


@dataclass(frozen=True, repr=False)
class RunResult:
    """Everything ``stationary run`` computed for one case, with plain verdicts.

    ``verdicts`` is a list of ``(check, verdict, evidence)`` with verdict one of
    ``PASS``, ``FAIL``, ``WARN``, ``INFO``; ``success`` is true when no check failed.
    """

    case: object
    existence: object
    stationary: object | None
    coarse: object | None
    grid_error: dict | None
    montecarlo: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)
    verdicts: list = field(default_factory=list)
    identities: dict = field(default_factory=dict)  # name -> {"grid": IdentityResult, "montecarlo": IdentityResult}

    @property
    def success(self) -> bool:
        return not any(v == "FAIL" for _, v, _ in self.verdicts)

    def __repr__(self) -> str:
        rows = "\n".join(f"  {c:<34} {v:<5} {e}" for c, v, e in self.verdicts)
        return f"RunResult({self.case.name}, success={self.success}\n{rows}\n)"


def _sample_density(result, n: int, rng) -> np.ndarray:
    """Draw ``n`` points from a grid density: a cell by its probability, then uniform inside it."""
    grid = result.grid
    prob = np.clip(result.density.ravel(), 0, None)
    prob = prob / prob.sum()
    cells = rng.choice(prob.size, size=n, p=prob)
    idx = np.stack(np.unravel_index(cells, grid.shape), axis=1)
    lower, h = np.array(grid.lower), grid.spacing
    return lower + (idx + rng.uniform(size=idx.shape)) * h


def _coarsen_factor(shape, target: int = 32) -> int:
    f = max(1, min(shape) // target)
    while f > 1 and any(n % f for n in shape):
        f -= 1
    return f


def montecarlo_settings(case, quick: bool = False, seed=None) -> dict:
    mc = dict(case.montecarlo)
    settings = {
        "chains": int(mc.get("chains", 2048)),
        "burn_in": float(mc.get("burn_in", 50.0)),
        "duration": float(mc.get("duration", 200.0)),
        "seed": int(seed if seed is not None else mc.get("seed", 0)),
        # Euler-Maruyama's stationary law is O(dt) off the SDE's: a quarter of eta, at most 0.02.
        "dt": float(mc.get("dt", min(case.eta / 4, 0.02))),
    }
    if quick:
        settings["chains"] = min(settings["chains"], 256)
        settings["duration"] = min(settings["duration"], 40.0)
        settings["burn_in"] = min(settings["burn_in"], 10.0)
    return settings


def run_case(case, quick: bool = False, seed=None, montecarlo: bool = True, progress: bool = False, shape=None,
             **solve_options) -> RunResult:
    """Existence diagnostics -> stationary density (with its Richardson grid error estimate) ->
    Monte Carlo of the training algorithm and of the SDE -> comparisons and verdicts."""
    from .existence import diagnose
    from .simulate import simulate_sde, simulate_training
    from .compare import compare
    from .identities import ChainAverager, IdentityError, extrapolate_identity, identities_for, identity_convergence
    from .simulate import extrapolate_time_step

    sde = case.sde()
    verdicts = []
    grid = case_grid(case, shape)
    log.info("[%s] existence diagnostics (equilibria, dissipativity, ellipticity)", case.name)
    existence = diagnose(sde, grid)
    ev = "; ".join(existence.evidence)
    if existence.verdict == "no invariant probability measure":
        # More evidence: the mass at the box edge does not fall as the box grows.
        masses = []
        centre = 0.5 * (np.array(grid.lower) + np.array(grid.upper))
        half = 0.5 * (np.array(grid.upper) - np.array(grid.lower))
        for f in (1.0, 2.0, 4.0):
            g = Grid(centre - f * half, centre + f * half, grid.shape)
            masses.append(stationary_density(sde, g).mass_at_boundary)
        ev += "; mass in the outermost cells for boxes 1x, 2x, 4x as wide: " + ", ".join(f"{m:.3g}" for m in masses)
        verdicts.append(("invariant measure", "FAIL", "no invariant probability measure: " + ev))
        return RunResult(case, existence, None, None, None, verdicts=verdicts)
    verdicts.append(("invariant measure", "PASS" if existence.verdict == "exists" else "INFO", f"{existence.verdict}: {ev}"))
    if existence.degenerate:
        verdicts.append(("ellipticity", "WARN", f"diffusion is degenerate (min/max eigenvalue {existence.ellipticity:.2g}): "
                         "uniform ellipticity fails; the flux is upwind (first order) along degenerate directions"))
    if shape is None and quick:
        shape = [QUICK_SHAPE[sde.dim]] * sde.dim
    log.info("[%s] stationary density on %r (+ coarser grids for the error estimate)", case.name, grid)
    res = solve_case(case, shape=shape, **solve_options)
    if existence.verdict != "exists":
        verdicts.append(("invariant measure (after solve)", "PASS" if res.status != 2 else "FAIL",
                         f"mass in the outermost cells {res.mass_at_boundary:.2e} on {res.grid!r}"))
    verdicts.append(("stationary solve", "PASS" if res.success else "FAIL", res.message))
    for w in res.info.get("warnings", []):
        verdicts.append(("discretisation", "WARN", w))
    for n in res.notes:
        verdicts.append(("discretisation", "INFO", n))
    # Grid error estimate from the result itself (Richardson on h, 2h and, shapes allowing, 4h:
    # stationary.richardson); the half-resolution solve doubles as the coarse grid below.
    if res.error is not None:
        err = res.error
        coarse = err.coarse_results[0]
        grid_error = {"mean": np.asarray(err.mean_error), "covariance": np.asarray(err.covariance_error)}
        verdicts.append(("grid error estimate", "INFO",
                         f"Richardson, order {err.order:.2f} ({err.order_source}); |mean error| up to {grid_error['mean'].max():.2e}, "
                         f"|cov error| up to {grid_error['covariance'].max():.2e}"
                         + ("" if err.l1_error is None else f", L1 error {err.l1_error:.2e}")
                         + "".join(f"; {n}" for n in err.notes)))
    else:
        coarse, grid_error = None, None
        why = "; ".join(w for w in res.info.get("warnings", []) if "error estimate" in w) or "no coarser grid possible"
        verdicts.append(("grid error estimate", "WARN", f"not available: {why}"))
    mcs, comps, refs, identities = {}, {}, {}, {}
    try:
        identity_names = identities_for(sde)
    except Exception:
        identity_names = []
    for name in identity_names if coarse is not None else []:
        try:
            r = identity_convergence(name, sde, [coarse.grid, res.grid], results=[coarse, res])
        except IdentityError as exc:
            verdicts.append((f"identity {name}", "INFO", f"not applicable: {exc}"))
            continue
        identities.setdefault(name, {})["grid"] = r
        verdicts.append((f"identity {name} (grid)", "INFO",
                         f"rhs - lhs = {r.difference:.3g} (relative {r.relative:.2g}); under refinement h -> h/2 "
                         f"{abs(r.trend['difference'][0]):.2g} -> {abs(r.trend['difference'][1]):.2g}"))
    if montecarlo and res.success:
        st = montecarlo_settings(case, quick, seed)
        rng = np.random.default_rng(st["seed"])
        init = _sample_density(res, st["chains"], rng)
        common = dict(chains=st["chains"], burn_in=st["burn_in"], duration=st["duration"], seed=st["seed"],
                      init=init, histogram=res.grid, progress=progress)
        # Euler-Maruyama's stationary law is O(dt) off the SDE's; long runs resolve that bias.
        # Run at dt and dt/2 and extrapolate (2 Q(dt/2) - Q(dt)) so the check is of the density,
        # not of the time step; the identities ride along both runs.
        averagers = {}
        log.info("[%s] Monte Carlo: %d chains x %g time units of training, and of the SDE at dt = %g and dt/2",
                 case.name, st["chains"], st["duration"], st["dt"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mcs["sga"] = simulate_training(case.model, case.update if case.update != "sml2" else "sml", case.eta,
                                           case.batch, case.batches, **common)
            sde_runs = {}
            for label, dt, seed_shift in (("dt", st["dt"], 0), ("dt/2", st["dt"] / 2, 1)):
                averagers[label] = ChainAverager(identity_names, sde, int(round(st["burn_in"] / dt))) if identity_names else None
                run_opts = dict(common, seed=st["seed"] + seed_shift)
                sde_runs[label] = simulate_sde(sde, dt, callback=averagers[label], block_steps=32, **run_opts)
        mcs["sde"] = extrapolate_time_step(sde_runs["dt"], sde_runs["dt/2"])
        mcs["sde_dt"], mcs["sde_dt2"] = sde_runs["dt"], sde_runs["dt/2"]
        if identity_names and all(r.success and averagers[k].count for k, r in sde_runs.items()):
            for r_full, r_half in zip(averagers["dt"].result(), averagers["dt/2"].result()):
                r = extrapolate_identity(r_full, r_half)
                identities.setdefault(r.name, {})["montecarlo"] = r
                ok = abs(r.zscore) < 4
                verdicts.append((f"identity {r.name} (SDE samples)", "PASS" if ok else "FAIL",
                                 f"rhs - lhs = {r.difference:.3g} +- {r.stderr:.2g} (z = {r.zscore:.2f}; cancelling terms of size "
                                 f"{r.scale:.3g}; Euler-Maruyama extrapolated from dt = {st['dt']:g} and dt/2; "
                                 f"at dt alone z = {r_full.zscore:.2f})"))
        for w in caught:
            verdicts.append(("Monte Carlo", "WARN", str(w.message)))
        coarsen = _coarsen_factor(res.grid.shape)
        for proc, mc in mcs.items():
            if proc in ("sde_dt", "sde_dt2"):
                continue
            if not mc.success:
                verdicts.append((f"Monte Carlo ({proc})", "FAIL", mc.message))
                continue
            comps[proc] = compare(mc, res, grid_error=grid_error, coarsen=coarsen)
        if "sde" in comps:
            c = comps["sde"]
            ok = c.max_abs_z < 4 and (c.l1_ratio is None or c.l1_ratio < 3)
            verdicts.append(("grid density vs SDE samples", "PASS" if ok else "FAIL",
                             f"max |z| = {c.max_abs_z:.2f} (mean, covariance; grid error included), binned L1 {c.l1:.3g} = "
                             f"{c.l1_ratio:.2f} x its noise floor; Euler-Maruyama moments extrapolated from dt = {st['dt']:g} "
                             f"and dt/2 (at dt alone max |z| = {compare(mcs['sde_dt'], res, grid_error=grid_error, coarsen=coarsen).max_abs_z:.2f})"))
        if "sga" in comps:
            c = comps["sga"]
            verdicts.append(("grid density vs training algorithm", "INFO",
                             f"max |z| = {c.max_abs_z:.2f}, W1/sd up to {np.max(c.wasserstein1_relative):.3f}: the SDE is an "
                             f"O(eta) approximation of {case.update.upper()} training, so a difference of order eta = {case.eta} is expected"))
            try:
                from .discrete import discrete_reference

                ref = discrete_reference(case.model, case.update if case.update != "sml2" else "sml", case.eta, case.batch, case.batches)
                mc = mcs["sga"]
                z_mean = (mc.mean - ref.mean) / mc.stderr_mean
                z_cov = (mc.covariance - ref.covariance) / mc.stderr_covariance
                zmax = float(max(np.abs(z_mean).max(), np.abs(z_cov).max()))
                refs["sga"] = {"mean": ref.mean, "covariance": ref.covariance, "z_mean": z_mean, "z_covariance": z_cov}
                verdicts.append(("training vs exact discrete reference", "PASS" if zmax < 4 else "FAIL",
                                 f"max |z| = {zmax:.2f} against the exact stationary moments of the affine recursion"))
            except Exception as exc:  # not affine: no exact reference, say so
                refs["sga"] = {"unavailable": str(exc).splitlines()[0]}
    try:
        from .exact import linear_gaussian_reference

        mean, cov, _ = linear_gaussian_reference(sde)
        sd = np.sqrt(np.diag(cov))
        m_err = float(np.abs(res.mean - mean).max() / sd.max())
        c_err = float(np.abs(res.covariance - cov).max() / np.abs(cov).max())
        refs["gaussian"] = {"mean": mean, "covariance": cov, "mean_error": m_err, "covariance_error": c_err}
        if grid_error is None:
            verdicts.append(("grid vs exact Gaussian", "INFO",
                             f"mean error {m_err:.2e} sd, covariance error {c_err:.2e} relative (no grid error estimate)"))
        else:
            est = float(grid_error["covariance"].max() / np.abs(cov).max())
            # The Richardson estimate claims the error to within a factor 2 (tests/test_error_estimate.py).
            verdicts.append(("grid vs exact Gaussian", "PASS" if c_err <= 2 * est + 1e-12 else "FAIL",
                             f"mean error {m_err:.2e} sd, covariance error {c_err:.2e} relative (Richardson estimate {est:.2e}, "
                             f"ratio {c_err / max(est, 1e-300):.2f}; within a factor 2 claimed)"))
    except Exception as exc:
        refs["gaussian"] = {"unavailable": str(exc).splitlines()[0]}
    return RunResult(case, existence, res, coarse, grid_error, mcs, comps, refs, verdicts, identities)
