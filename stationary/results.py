"""Result objects: frozen dataclasses with ``success``, ``status``, ``message`` and the numbers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .grid import Grid

__all__ = ["StationaryResult", "ErrorEstimate"]


@dataclass(frozen=True, repr=False)
class ErrorEstimate:
    r"""Discretisation error of a :class:`StationaryResult`, from solves on coarser grids.

    With :math:`Q_h, Q_{2h}, Q_{4h}` a quantity on the result's grid and on grids with half
    and a quarter of the cells per axis (same box), the observed order is
    :math:`p = \log_2 (\|Q_{2h} - Q_{4h}\| / \|Q_h - Q_{2h}\|)` and the error of the fine
    value is estimated as :math:`|Q_h - Q_{2h}| / (2^p - 1)` (Richardson).  Densities are cell
    averages: a finer density is restricted to a coarser grid by averaging blocks of
    :math:`2^d` cells, and the L1 differences are taken there.

    Attributes
    ----------
    order : float
        The order used in the estimate.
    order_source : {"observed", "assumed"}
        ``"observed"`` from three grids; ``"assumed"``: the scheme's nominal order (2, or 1
        with degenerate axes or the upwind scheme), used with two grids or when the observed
        order is outside the asymptotic range (then ``observed_order`` says what was seen).
    observed_order : float or None
        The order measured from three grids, if they were solved.
    mean_error : ndarray, shape (d,)
    covariance_error : ndarray, shape (d, d)
        Estimated absolute errors of the fine ``mean`` and ``covariance``.
    l1_error : float or None
        Estimated L1 error of the fine density (``None`` when block restriction is impossible:
        an odd number of cells on some axis).
    extrapolated_mean, extrapolated_covariance : ndarray
        Richardson-extrapolated moments :math:`Q_h + (Q_h - Q_{2h})/(2^p - 1)`.
    extrapolated_density : ndarray or None
        Richardson-extrapolated density on the half-resolution grid (``coarse_grids[0]``):
        :math:`R p_h + (R p_h - p_{2h})/(2^p - 1)`.  Extrapolated: it need not be positive.
    coarse_grids : tuple of Grid
        The grids solved for the estimate, finest first.
    coarse_results : tuple of StationaryResult
        Their results (without error estimates of their own).
    differences : dict
        The raw differences: ``l1`` (fine-vs-half, half-vs-quarter, on the coarsest grid
        used), ``moments`` (max-norm of moment differences, scaled by the fine sd's).
    seconds : float
        Wall time of the coarse solves and the arithmetic.
    notes : tuple of str
    """

    order: float
    order_source: str
    observed_order: float | None
    mean_error: np.ndarray
    covariance_error: np.ndarray
    l1_error: float | None
    extrapolated_mean: np.ndarray
    extrapolated_covariance: np.ndarray
    extrapolated_density: np.ndarray | None
    coarse_grids: tuple
    coarse_results: tuple = ()
    differences: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: tuple = ()

    def to_dict(self) -> dict:
        """JSON-ready summary (no density array)."""
        return {
            "order": float(self.order),
            "order_source": self.order_source,
            "observed_order": None if self.observed_order is None else float(self.observed_order),
            "mean_error": np.asarray(self.mean_error).tolist(),
            "covariance_error": np.asarray(self.covariance_error).tolist(),
            "l1_error": None if self.l1_error is None else float(self.l1_error),
            "extrapolated_mean": np.asarray(self.extrapolated_mean).tolist(),
            "extrapolated_covariance": np.asarray(self.extrapolated_covariance).tolist(),
            "extrapolated_density_grid": list(self.coarse_grids[0].shape) if self.extrapolated_density is not None else None,
            "coarse_shapes": [list(g.shape) for g in self.coarse_grids],
            "differences": {k: (list(map(float, v)) if np.ndim(v) else float(v)) for k, v in self.differences.items()},
            "seconds": float(self.seconds),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        l1 = "n/a" if self.l1_error is None else f"{self.l1_error:.2e}"
        return (f"order {self.order:.2f} ({self.order_source}), L1 {l1}, |mean| up to {np.max(self.mean_error):.2e}, "
                f"|cov| up to {np.max(self.covariance_error):.2e} (grids {', '.join('x'.join(map(str, g.shape)) for g in self.coarse_grids)})")

    def __repr__(self) -> str:
        return f"ErrorEstimate({self.summary()})"


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
    error : ErrorEstimate or None
        Discretisation error from coarser grids (``stationary_density(..., error_estimate=True)``).
    spectral : SpectralGap or None
        Spectral gap and relaxation time of ``L`` (``stationary_density(..., spectral_gap=True)``),
        see :func:`stationary.spectral.relaxation_time`.
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
    error: ErrorEstimate | None = None
    spectral: object | None = None

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
            "error": None if self.error is None else self.error.to_dict(),
            "spectral": None if self.spectral is None else self.spectral.to_dict(),
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
        if self.error is not None:
            lines.append(f"grid error: {self.error.summary()}")
        if self.spectral is not None:
            lines.append(f"spectral gap: {self.spectral.gap:.4g} (relaxation time {self.spectral.relaxation_time:.4g})")
        if self.degenerate_axes:
            lines.append(f"degenerate axes (upwind limit): {self.degenerate_axes}")
        for n in self.notes:
            lines.append(f"     note: {n}")
        return "StationaryResult(\n" + "\n".join(lines) + "\n)"
