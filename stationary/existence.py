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


@dataclass(frozen=True)
class ExistenceReport:
    r"""Numerical evidence for or against an invariant probability measure (MATH.md section 8).

    Attributes
    ----------
    equilibria : list of Equilibrium
    radii : array
        Sphere radii (around the reference point) where dissipativity was measured.
    dissipativity : array
        :math:`\sup_{|v| = r} v\cdot b(c + v)/|v|` on each sphere (estimated on many directions);
        negative and decreasing means the drift pulls in (Theorem 4.1's condition).
    ellipticity : float
        :math:`\min_u \lambda_{\min}(a(u)) / \max_u \lambda_{\max}(a(u))` over the box.
    verdict : str
        ``"exists"``, ``"no invariant probability measure"`` or ``"uncertain"``.
    evidence : tuple of str
        One line per fact behind the verdict.
    degenerate : bool
        The diffusion is (numerically) degenerate somewhere in the box.
    """

    equilibria: list
    radii: np.ndarray
    dissipativity: np.ndarray
    ellipticity: float
    verdict: str
    evidence: tuple
    degenerate: bool

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "evidence": list(self.evidence),
            "degenerate_diffusion": self.degenerate,
            "ellipticity": self.ellipticity,
            "equilibria": [
                {"point": e.point.tolist(), "stable": e.stable, "eigenvalues_real": e.eigenvalues.real.tolist(),
                 "eigenvalues_imag": e.eigenvalues.imag.tolist()}
                for e in self.equilibria
            ],
            "dissipativity": {"radii": self.radii.tolist(), "sup_u_dot_b_over_r": self.dissipativity.tolist()},
        }


def _is_affine(sde, eq, radius, n: int = 64, seed: int = 1) -> bool:
    """Whether the drift equals its linearisation at ``eq`` on random points within ``radius``."""
    rng = np.random.default_rng(seed)
    U = eq.point + radius * rng.uniform(-1, 1, (n, sde.dim))
    b = sde.drift(U)
    lin = (U - eq.point) @ eq.jacobian.T
    return bool(np.abs(b - lin).max() <= 1e-6 * (1 + np.abs(b).max()))


def dissipativity_profile(sde, centre, radii, directions: int = 512, seed: int = 0) -> np.ndarray:
    r""":math:`\max_v (v \cdot b(c + v))/|v|` over ``directions`` random points on each sphere :math:`|v| = r`."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((directions, sde.dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = []
    for r in radii:
        b = sde.drift(centre + r * v)
        out.append(float(np.max(np.einsum("nd,nd->n", v, b))))
    return np.array(out)


def ellipticity_ratio(sde, grid, points: int = 24) -> float:
    r""":math:`\min \lambda_{\min}(a) / \max \lambda_{\max}(a)` over a coarse tensor sample of the box."""
    n = max(3, int(round(points ** (2 / max(sde.dim, 1)))) if sde.dim > 2 else points)
    coarse = grid.__class__(grid.lower, grid.upper, (n,) * grid.ndim)
    lam = np.linalg.eigvalsh(sde.diffusion(coarse.points()))
    top = lam[:, -1].max()
    return float(lam[:, 0].min() / top) if top > 0 else 0.0


def diagnose(sde, grid=None, radii_factors=(1, 2, 4, 8, 16, 32), degenerate_below: float = 1e-6) -> ExistenceReport:
    """Equilibria, dissipativity on growing spheres and ellipticity on the box, with a verdict.

    The verdict is ``"exists"`` when a stable equilibrium is found and the drift is dissipative on
    the larger spheres; ``"no invariant probability measure"`` when no equilibrium is stable
    and the drift does not pull in on any sphere (noise then pumps mass outwards without bound);
    ``"uncertain"`` otherwise.  This is numerical evidence, not a proof.
    """
    eqs = find_equilibria(sde)
    centre = eqs[0].point if eqs else np.zeros(sde.dim)
    if grid is not None:
        scale = float(np.max(np.array(grid.upper) - np.array(grid.lower))) / 4
    else:
        stable = [e for e in eqs if e.covariance is not None]
        scale = float(np.sqrt(np.max(np.diag(stable[0].covariance)))) if stable else 1.0
    scale = max(scale, 1e-6)
    radii = scale * np.asarray(radii_factors, float)
    diss = dissipativity_profile(sde, centre, radii)
    ell = ellipticity_ratio(sde, grid) if grid is not None else float("nan")
    evidence = []
    any_stable = any(e.stable for e in eqs)
    if eqs:
        for e in eqs:
            evidence.append(
                f"equilibrium at {np.round(e.point, 4).tolist()}: drift Jacobian eigenvalues with real parts "
                f"{np.round(np.sort(e.eigenvalues.real), 4).tolist()} ({'stable' if e.stable else 'not stable'})"
            )
    else:
        evidence.append("no zero of the drift found")
    # Strictly negative on the outer spheres (Theorem 4.1's u.b <= -r|u|), with a little room
    # for round-off: a value of -1e-17 is not evidence of anything.
    tol = 1e-9 * (1 + np.abs(diss).max())
    pulls_in = diss[-3:] < -tol
    never_in = diss >= -tol
    affine = bool(eqs) and _is_affine(sde, eqs[0], radii[-1])
    evidence.append(
        "sup of u.b(u)/|u| on spheres of radius " + ", ".join(f"{r:.3g}" for r in radii) + ": "
        + ", ".join(f"{v:.3g}" for v in diss)
    )
    if any_stable and pulls_in.all():
        verdict = "exists"
    elif affine and eqs[0].stable:
        verdict = "exists"
        evidence.append(
            "the drift is affine with a stable matrix: an Ornstein-Uhlenbeck process, whose Gaussian law with the "
            "Lyapunov covariance is invariant (dissipativity in Theorem 4.1's strict sense is not needed)"
        )
    elif not any_stable and never_in.all():
        verdict = "no invariant probability measure"
        evidence.append("no stable equilibrium and the drift never pulls inwards: the noise drives mass outwards without bound")
    else:
        verdict = "uncertain"
    degenerate = bool(np.isfinite(ell) and ell < degenerate_below)
    if np.isfinite(ell):
        evidence.append(
            f"ellipticity: min eigenvalue of a / max eigenvalue of a on the box = {ell:.3g}"
            + (" (degenerate diffusion: Theorem 4.1's uniform ellipticity fails; hypoellipticity may still give uniqueness)" if degenerate else "")
        )
    return ExistenceReport(eqs, radii, diss, ell, verdict, tuple(evidence), degenerate)
