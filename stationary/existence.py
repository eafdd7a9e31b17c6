r"""Equilibria, linearisation and automatic boxes (MATH.md section 8).

Before a solve the box is sized from the linearised dynamics: at an equilibrium
:math:`u^*` (:math:`b(u^*) = 0`) with drift Jacobian :math:`A` and diffusion :math:`a^*`,
the linear SDE has covariance :math:`S` with :math:`AS + SA^T + a^* = 0` when ``A`` is stable.
The box is :math:`u^* \pm w\,\sqrt{S_{kk}}`; nonlinear tails are caught afterwards by the
mass in the outermost cells, and the box grows until that mass is small.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from .grid import Grid

__all__ = ["Equilibrium", "find_equilibria", "auto_grid", "drift_jacobian"]


@dataclass(frozen=True)
class Equilibrium:
    """A zero of the drift and its linearisation."""

    point: np.ndarray
    jacobian: np.ndarray
    eigenvalues: np.ndarray
    diffusion: np.ndarray
    covariance: np.ndarray | None  # linearised stationary covariance (None if A is not stable)

    @property
    def stable(self) -> bool:
        return bool(np.max(self.eigenvalues.real) < 0)


def drift_jacobian(sde, u, step: float = 1e-6) -> np.ndarray:
    """Central-difference Jacobian of the drift at ``u``."""
    u = np.asarray(u, float)
    d = u.size
    h = step * np.maximum(1.0, np.abs(u))
    pts = np.vstack([u + np.diag(h), u - np.diag(h)])
    b = sde.drift(pts)
    return ((b[:d] - b[d:]) / (2 * h[:, None])).T


def find_equilibria(sde, starts=None, scale: float = 1.0, n_starts: int = 16, seed: int = 0) -> list[Equilibrium]:
    """Zeros of the drift from several starting points (the origin and random ones), deduplicated."""
    d = sde.dim
    rng = np.random.default_rng(seed)
    if starts is None:
        starts = np.vstack([np.zeros(d), scale * rng.standard_normal((n_starts - 1, d))])
    found: list[np.ndarray] = []
    for s in np.atleast_2d(starts):
        sol = optimize.root(lambda u: sde.drift(u[None])[0], s, method="hybr")
        if not sol.success or not np.all(np.isfinite(sol.x)):
            continue
        if np.abs(sde.drift(sol.x[None])[0]).max() > 1e-8 * (1 + np.abs(sol.x).max()):
            continue
        if all(np.abs(sol.x - f).max() > 1e-6 * (1 + np.abs(f).max()) for f in found):
            found.append(sol.x)
    out = []
    for u in found:
        A = drift_jacobian(sde, u)
        a = sde.diffusion(u[None])[0]
        eig = np.linalg.eigvals(A)
        cov = None
        if np.max(eig.real) < 0:
            cov = linalg.solve_continuous_lyapunov(A, -a)
            cov = 0.5 * (cov + cov.T)
        out.append(Equilibrium(u, A, eig, a, cov))
    out.sort(key=lambda e: (not e.stable, np.max(e.eigenvalues.real)))
    return out


def auto_grid(sde, shape, width: float = 6.0, equilibria=None, min_halfwidth: float = 1e-3) -> Grid:
    """Box covering ``u* ± width·sd`` around every stable equilibrium (linearised covariance).

    Where the linearised standard deviation is zero or tiny along an axis (degenerate noise),
    the half-width falls back to the largest one found, scaled by ``0.1``, so that the box keeps
    a positive extent; the post-solve boundary-mass check says if it is too small.
    """
    eqs = find_equilibria(sde) if equilibria is None else equilibria
    stable = [e for e in eqs if e.stable and e.covariance is not None]
    if not stable:
        raise ValueError(
            "no stable equilibrium of the drift found: cannot size the box automatically "
            "(and an invariant probability measure may not exist); give grid.lower/upper explicitly"
        )
    lows, highs = [], []
    for e in stable:
        sd = np.sqrt(np.clip(np.diag(e.covariance), 0, None))
        floor = max(min_halfwidth, 0.1 * sd.max())
        half = width * np.maximum(sd, floor / width)
        lows.append(e.point - half)
        highs.append(e.point + half)
    shape = tuple(np.broadcast_to(np.asarray(shape), (sde.dim,)).tolist())
    return Grid(np.min(lows, axis=0), np.max(highs, axis=0), shape)
