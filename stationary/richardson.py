r"""Grid-refinement error estimates for stationary densities (Richardson extrapolation).

A result on a grid of spacing ``h`` is re-solved on the same box with half the cells per axis
(spacing ``2h``) and, when the shapes allow, a quarter (``4h``).  Densities are cell averages,
so a finer density is compared with a coarser one after restriction :math:`R`: the average of
each block of :math:`2^d` fine cells.  With :math:`e_1 = \|R p_h - p_{2h}\|` and
:math:`e_2 = \|R p_{2h} - p_{4h}\|` (L1, both on the ``4h`` grid) the observed order is
:math:`p = \log_2(e_2/e_1)`; with two grids the scheme's nominal order is assumed instead.
For any quantity :math:`Q` with error :math:`C h^p + o(h^p)`,

.. math::  Q - Q_h \approx (Q_h - Q_{2h}) / (2^p - 1),\qquad
           Q_{\rm extrap} = Q_h + (Q_h - Q_{2h}) / (2^p - 1).

The extrapolated density lives on the ``2h`` grid and need not be positive.
"""
from __future__ import annotations

import time

import numpy as np

from .grid import Grid
from .results import ErrorEstimate

__all__ = ["restrict", "estimate_error", "coarse_grids", "nominal_order", "MIN_COARSE_CELLS"]

# A quarter grid coarser than this per axis is far from the asymptotic range.  Measured on the
# LQ WGAN (+-5 sd box, SG, nominal order 2): quarter grid of 6 cells -> observed order 1.20 and
# an estimate 2.2x the true covariance error; of 8 cells -> 1.60 and 1.46x; of 16 -> 1.88, 1.13x.
MIN_COARSE_CELLS = 8
# Observed orders outside this range are not in the asymptotic regime: use the nominal order.
ORDER_RANGE = (0.5, 4.0)


def restrict(density: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average blocks of ``factor**d`` cells (every axis length must divide by ``factor``)."""
    p = np.asarray(density, float)
    shp = []
    for n in p.shape:
        if n % factor:
            raise ValueError(f"cannot restrict shape {p.shape} by {factor}: {n} is not a multiple")
        shp += [n // factor, factor]
    return p.reshape(shp).mean(axis=tuple(range(1, 2 * p.ndim, 2)))


def nominal_order(result) -> float:
    """2 for the second-order schemes, 1 for upwind or where an axis is degenerate (SG's upwind
    limit; ``sg2`` is central there)."""
    if result.scheme == "upwind" or (result.degenerate_axes and result.scheme != "sg2"):
        return 1.0
    return 2.0


def _halvable(shape) -> bool:
    return all(n % 2 == 0 and n // 2 >= MIN_COARSE_CELLS for n in shape)


def coarse_grids(grid: Grid, levels: int = 3) -> list:
    """The grids :func:`estimate_error` solves on, finest first: half the cells per axis and,
    with ``levels=3`` when the shape allows, a quarter; ``[]`` when no coarser grid is possible.
    A shape with an odd axis gets one grid of ``round(n/2)`` cells per axis."""
    if _halvable(grid.shape):
        g2 = Grid(grid.lower, grid.upper, tuple(n // 2 for n in grid.shape))
        if levels >= 3 and _halvable(g2.shape):
            return [g2, Grid(grid.lower, grid.upper, tuple(n // 2 for n in g2.shape))]
        return [g2]
    shape2 = tuple(max(3, int(round(n / 2))) for n in grid.shape)
    if min(shape2) < MIN_COARSE_CELLS // 2:
        return []
    return [Grid(grid.lower, grid.upper, shape2)]


def estimate_error(result, solve, levels: int = 3) -> ErrorEstimate | None:
    """Estimate the discretisation error of ``result`` by solving on coarser grids.

    Parameters
    ----------
    result : StationaryResult
        The fine solution (grid spacing ``h``).
    solve : callable
        ``solve(grid) -> StationaryResult`` with the same SDE, scheme and method, and no error
        estimate of its own.
    levels : {2, 3}
        Number of grids including the fine one: 3 observes the order (when every axis length
        divides by 4 and the quarter grid keeps at least ``MIN_COARSE_CELLS`` cells), 2 assumes
        the nominal one.

    Returns
    -------
    ErrorEstimate or None
        ``None`` when no coarser grid is possible.
    """
    t0 = time.perf_counter()
    g = result.grid
    notes = []
    nominal = nominal_order(result)
    coarse = coarse_grids(g, levels)
    if not coarse:
        return None
    g2 = coarse[0]
    blocks = _halvable(g.shape)
    if blocks:
        ratio = 2.0
    else:
        # An odd axis: no block restriction, so moments only, on round(n/2) cells; the spacing
        # ratio is then not exactly 2 (geometric mean over axes is used).
        ratio = float(np.exp(np.mean(np.log(np.array(g.shape) / np.array(g2.shape)))))
        notes.append(f"shape {g.shape} has an odd axis: no block restriction, density error not estimated; "
                     f"spacing ratio {ratio:.3f}")
    r2 = solve(g2)
    results = [r2]
    grids = [g2]
    r4 = None
    if len(coarse) > 1:
        g4 = coarse[1]
        r4 = solve(g4)
        results.append(r4)
        grids.append(g4)
    elif levels >= 3:
        notes.append("only two grids (shape does not allow a quarter grid with "
                     f"{MIN_COARSE_CELLS}+ cells per axis): the nominal order {nominal:g} is assumed")
    ok = [np.all(np.isfinite(r.density)) for r in results]
    if not ok[0]:
        return None
    if r4 is not None and not ok[1]:
        notes.append("the quarter grid's solve failed: the nominal order is assumed")
        r4 = None

    fine = result.density
    sd = np.sqrt(np.abs(np.diag(result.covariance)))
    diffs = {}
    observed = None
    if blocks:
        Rp = restrict(fine, 2)
        dens_diff = Rp - r2.density
        l1_fine = float(np.abs(dens_diff).sum() * g2.cell_volume)
        diffs["l1"] = [l1_fine]
        if r4 is not None:
            g4 = r4.grid
            e1 = float(np.abs(restrict(dens_diff, 2)).sum() * g4.cell_volume)
            e2 = float(np.abs(restrict(r2.density, 2) - r4.density).sum() * g4.cell_volume)
            diffs["l1"] = [e1, e2]
            if e1 > 0 and e2 > 0:
                observed = float(np.log2(e2 / e1))
    m1 = np.concatenate([(result.mean - r2.mean) / sd, ((result.covariance - r2.covariance) / np.outer(sd, sd)).ravel()])
    diffs["moments"] = [float(np.abs(m1).max())]
    if r4 is not None:
        m2 = np.concatenate([(r2.mean - r4.mean) / sd, ((r2.covariance - r4.covariance) / np.outer(sd, sd)).ravel()])
        diffs["moments"].append(float(np.abs(m2).max()))
        if observed is None and diffs["moments"][0] > 0 and diffs["moments"][1] > 0:
            observed = float(np.log2(diffs["moments"][1] / diffs["moments"][0]))
    if observed is not None and np.isfinite(observed) and ORDER_RANGE[0] <= observed <= ORDER_RANGE[1]:
        order, source = observed, "observed"
    else:
        order, source = nominal, "assumed"
        if observed is not None:
            notes.append(f"observed order {observed:.2f} is outside {ORDER_RANGE}: not asymptotic, "
                         f"the nominal order {nominal:g} is assumed")
    factor = 1.0 / (ratio ** order - 1.0)
    mean_diff = result.mean - r2.mean
    cov_diff = result.covariance - r2.covariance
    l1_error = None
    extrap_density = None
    if blocks:
        l1_error = float(diffs["l1"][0] if r4 is None else np.abs(dens_diff).sum() * g2.cell_volume) * factor
        extrap_density = Rp + factor * dens_diff
    return ErrorEstimate(
        order=float(order),
        order_source=source,
        observed_order=observed,
        mean_error=np.abs(mean_diff) * factor,
        covariance_error=np.abs(cov_diff) * factor,
        l1_error=l1_error,
        extrapolated_mean=result.mean + factor * mean_diff,
        extrapolated_covariance=result.covariance + factor * cov_diff,
        extrapolated_density=extrap_density,
        coarse_grids=tuple(grids),
        coarse_results=tuple(results),
        differences=diffs,
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )
