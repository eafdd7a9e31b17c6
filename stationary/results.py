"""Result objects: frozen dataclasses with ``success``, ``status``, ``message`` and the numbers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .grid import Grid

__all__ = ["StationaryResult"]


@dataclass(frozen=True, repr=False)
class StationaryResult:
    """The stationary density on a grid and an account of how trustworthy it is.

    Attributes
    ----------
    density : ndarray, shape ``grid.shape``
        Cell averages of the normalised stationary density (``grid.integrate(density) == 1``).
    grid : Grid
    mean, covariance : ndarray
        Moments of ``density`` (midpoint rule).
    marginals : tuple of ndarray
        One-dimensional marginal densities at each axis's centres.
    residual : float
        :math:`\\|Lp\\|_\\infty / (\\|L\\|_\\infty \\|p\\|_\\infty)`.
    min_density : float
        Smallest cell value (negative only for non-monotone schemes).
    mass_at_boundary : float
        Probability in the outermost layer of cells; large means the box is too small or no
        invariant probability measure exists.
    irreducible : bool
        Whether the discrete chain is irreducible; ``closed_classes`` counts its closed classes.
    scheme, method, cross_stencil : str
    monotone : bool
        Whether the operator is an M-matrix by construction.
    degenerate_axes : tuple of int
        Axes with vanishing diffusion (upwind limit, first order there).
    upwind_fraction : tuple of float
        Per axis, fraction of faces with cell Péclet number above 2.
    iterations : int or None
        Iterative solver iterations; ``residual_history`` their residual norms.
    seconds : dict
        Wall time per stage: ``coefficients``, ``assembly``, ``solve``.
    success : bool
    status : int
        0 success, 1 large residual or no convergence, 2 mass at the boundary,
        3 negative density, 4 non-unique stationary law, 5 non-finite solution.
    message : str
    info : dict
        Method-specific details (eigenvalue, AMG levels, warnings).
    notes : tuple of str
        What the assembly had to do (stencil fallbacks).
    """

    density: np.ndarray
    grid: Grid
    mean: np.ndarray
    covariance: np.ndarray
    marginals: tuple
    residual: float
    min_density: float
    mass_at_boundary: float
    irreducible: bool
    closed_classes: int
    scheme: str
    method: str
    monotone: bool
    cross_stencil: str
    degenerate_axes: tuple
    upwind_fraction: tuple
    iterations: int | None
    residual_history: tuple
    seconds: dict
    success: bool
    status: int
    message: str
    info: dict = field(default_factory=dict)
    notes: tuple = ()

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    def to_dict(self) -> dict:
        """JSON-ready summary (no density array)."""
        return {
            "success": bool(self.success),
            "status": int(self.status),
            "message": self.message,
            "mean": self.mean.tolist(),
            "covariance": self.covariance.tolist(),
            "mass_at_boundary": self.mass_at_boundary,
            "residual": self.residual,
            "min_density": self.min_density,
            "irreducible": bool(self.irreducible),
            "closed_classes": int(self.closed_classes),
            "scheme": self.scheme,
            "method": self.method,
            "monotone": bool(self.monotone),
            "cross_stencil": self.cross_stencil,
            "degenerate_axes": list(self.degenerate_axes),
            "upwind_fraction": list(self.upwind_fraction),
            "iterations": self.iterations,
            "grid": {"lower": list(self.grid.lower), "upper": list(self.grid.upper), "shape": list(self.grid.shape)},
            "seconds": {k: float(v) for k, v in self.seconds.items()},
            "seconds_total": float(sum(self.seconds.values())),
            "notes": list(self.notes),
            "warnings": list(self.info.get("warnings", [])),
        }

    def __repr__(self) -> str:
        with np.printoptions(precision=5, suppress=False):
            lines = [
                f"  success: {self.success}",
                f"   status: {self.status}",
                f"  message: {self.message!r}",
                f"     grid: {self.grid!r}",
                f"   scheme: {self.scheme} (cross: {self.cross_stencil}, monotone: {self.monotone}), method: {self.method}",
                f"     mean: {self.mean}",
                f"      std: {self.std}",
                f" residual: {self.residual:.3e}",
                f"boundary mass: {self.mass_at_boundary:.3e}, min density: {self.min_density:.3e}",
                f"  seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in self.seconds.items()),
            ]
        if self.degenerate_axes:
            lines.append(f"degenerate axes (upwind limit): {self.degenerate_axes}")
        for n in self.notes:
            lines.append(f"     note: {n}")
        return "StationaryResult(\n" + "\n".join(lines) + "\n)"
