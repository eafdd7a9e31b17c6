"""One call per stage for a :class:`~stationary.cases.Case`: solve (with an automatic box)."""
from __future__ import annotations

import logging

import numpy as np

from .existence import auto_grid, find_equilibria
from .grid import Grid
from .solve import stationary_density

__all__ = ["case_grid", "solve_case"]

log = logging.getLogger("stationary")

DEFAULT_SHAPE = {1: 512, 2: 256, 3: 48, 4: 24}


def case_grid(case, shape=None, width=None) -> Grid:
    """The case's grid: explicit ``lower/upper`` or an automatic box from the linearisation."""
    sde = case.sde()
    d = sde.dim
    shape = shape if shape is not None else case.grid.get("shape", DEFAULT_SHAPE[d])
    shape = tuple(np.broadcast_to(np.asarray(shape, int), (d,)).tolist())
    if "lower" in case.grid:
        return Grid(case.grid["lower"], case.grid["upper"], shape)
    return auto_grid(sde, shape, width=width or case.grid.get("width", 6.0))


def solve_case(case, shape=None, grow: int = 3, **options):
    """Solve the case's stationary density; an automatic box grows (x1.5, at most ``grow`` times)
    while the mass in its outermost cells exceeds the tolerance."""
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
        grid = Grid(centre - half, centre + half, grid.shape)
        log.info("mass %.2e at the box edge: growing the box to %r", res.mass_at_boundary, grid)
        res = stationary_density(sde, grid, scheme=scheme, method=method, cross=cross, **options)
    return res
