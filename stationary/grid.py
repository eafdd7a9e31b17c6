"""Uniform tensor-product boxes in 1 to 4 dimensions, with cell-centred fields on them.

Cells are stored in C order (last axis fastest); a field is an array of shape ``grid.shape``.
Densities are cell averages, so integrals are midpoint sums (second-order accurate).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["Grid", "GridError"]

MAX_DIM = 4


class GridError(ValueError):
    """The grid specification is invalid."""


@dataclass(frozen=True)
class Grid:
    """A box ``[lower, upper]`` split into ``shape`` equal cells.

    Parameters
    ----------
    lower, upper : sequence of float
        Box corners, one entry per dimension (1 to 4), ``upper > lower``.
    shape : sequence of int
        Number of cells per axis, each at least 3.
    """

    lower: tuple
    upper: tuple
    shape: tuple

    def __post_init__(self):
        try:
            lo = tuple(float(v) for v in np.atleast_1d(self.lower))
            hi = tuple(float(v) for v in np.atleast_1d(self.upper))
            raw_shape = np.atleast_1d(self.shape)
        except (TypeError, ValueError):
            raise GridError(f"grid bounds and shape must be numbers, got {self.lower!r}, {self.upper!r}, {self.shape!r}") from None
        if len(raw_shape) == 1 and len(lo) > 1:
            raw_shape = np.repeat(raw_shape, len(lo))
        if not all(float(n).is_integer() for n in raw_shape):
            raise GridError(f"grid shape must be integers, got {self.shape!r}")
        shape = tuple(int(n) for n in raw_shape)
        if not (len(lo) == len(hi) == len(shape)):
            raise GridError(f"lower, upper and shape disagree in dimension: {len(lo)}, {len(hi)}, {len(shape)}")
        if not 1 <= len(shape) <= MAX_DIM:
            raise GridError(f"grids have 1 to {MAX_DIM} dimensions, got {len(shape)}")
        if not all(np.isfinite(lo + hi)):
            raise GridError(f"grid bounds must be finite, got lower={lo}, upper={hi}")
        for k, (l, h, n) in enumerate(zip(lo, hi, shape)):
            if not h > l:
                raise GridError(f"axis {k}: upper ({h}) must exceed lower ({l}); the box has non-positive extent")
            if n < 3:
                raise GridError(f"axis {k}: need at least 3 cells, got {n}")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        object.__setattr__(self, "shape", shape)

    # ---------------------------------------------------------------- geometry
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of cells."""
        return int(np.prod(self.shape))

    @property
    def spacing(self) -> np.ndarray:
        """Cell widths ``h_k = (upper_k - lower_k) / n_k``."""
        return (np.array(self.upper) - np.array(self.lower)) / np.array(self.shape)

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    @cached_property
    def centres(self) -> tuple:
        """Cell-centre coordinates per axis."""
        return tuple(l + (np.arange(n) + 0.5) * h for l, n, h in zip(self.lower, self.shape, self.spacing))

    @cached_property
    def edges(self) -> tuple:
        """Cell-face coordinates per axis (``n_k + 1`` each)."""
        return tuple(np.linspace(l, u, n + 1) for l, u, n in zip(self.lower, self.upper, self.shape))

    @property
    def strides(self) -> np.ndarray:
        """Flat-index offset of one step along each axis (C order)."""
        return np.array([int(np.prod(self.shape[k + 1 :])) for k in range(self.ndim)])

    def points(self) -> np.ndarray:
        """All cell centres as an ``(size, ndim)`` array, C order."""
        mesh = np.meshgrid(*self.centres, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def boundary_mask(self) -> np.ndarray:
        """Boolean field, true on the outermost layer of cells."""
        mask = np.zeros(self.shape, dtype=bool)
        for k in range(self.ndim):
            idx = [slice(None)] * self.ndim
            idx[k] = 0
            mask[tuple(idx)] = True
            idx[k] = -1
            mask[tuple(idx)] = True
        return mask

    # ---------------------------------------------------------------- fields
    def _field(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.shape != self.shape:
            if values.size == self.size:
                return values.reshape(self.shape)
            raise GridError(f"field has shape {values.shape}, grid has {self.shape}")
        return values

    def integrate(self, values) -> float:
        r""":math:`\int f \approx \sum_c f_c\, |c|` (midpoint rule)."""
        return float(self._field(values).sum() * self.cell_volume)

    def marginal(self, density, axis: int) -> np.ndarray:
        r"""Marginal density along ``axis``: :math:`\int p \, du_{\neq k}`, at the centres of that axis."""
        p = self._field(density)
        others = tuple(k for k in range(self.ndim) if k != axis)
        return p.sum(axis=others) * float(np.prod(self.spacing[list(others)]))

    def mean(self, density) -> np.ndarray:
        """Mean of a normalised density (midpoint rule)."""
        p = self._field(density)
        return np.array([self.marginal(p, k) @ self.centres[k] * self.spacing[k] for k in range(self.ndim)])

    def covariance(self, density) -> np.ndarray:
        """Covariance of a normalised density (midpoint rule; includes no Sheppard correction:
        the density is a cell average, not a histogram of point masses)."""
        p = self._field(density)
        mu = self.mean(p)
        w = p.ravel() * self.cell_volume
        X = self.points() - mu
        return (X * w[:, None]).T @ X

    def transfer(self, values, onto: "Grid", floor: float = 1e-14) -> np.ndarray:
        r"""A positive field on this grid, interpolated to the cell centres of ``onto``.

        Multilinear interpolation of :math:`\log \max(f, \mathrm{floor}\cdot\max f)`, then
        ``exp``: a density's Gaussian-like tails are kept (linear interpolation of ``f`` itself
        would be off by orders of magnitude there), the result is positive, and beyond the
        outermost centres ``log f`` is extrapolated linearly.
        Used for nested iteration: a coarse grid's solution as the fine solve's starting guess.
        """
        from scipy.interpolate import RegularGridInterpolator

        f = self._field(values)
        if onto.ndim != self.ndim:
            raise GridError(f"cannot transfer a {self.ndim}-d field to a {onto.ndim}-d grid")
        peak = f.max()
        if not np.isfinite(peak) or peak <= 0:
            raise GridError("transfer needs a finite field with a positive maximum")
        logf = np.log(np.maximum(f, floor * peak))
        interp = RegularGridInterpolator(self.centres, logf, bounds_error=False, fill_value=None)
        return np.exp(interp(onto.points())).reshape(onto.shape)

    def refined(self, factor: float) -> "Grid":
        """Same box with ``round(n * factor)`` cells per axis."""
        return Grid(self.lower, self.upper, tuple(max(3, int(round(n * factor))) for n in self.shape))

    def __repr__(self) -> str:
        box = " x ".join(f"[{l:g}, {u:g}]" for l, u in zip(self.lower, self.upper))
        return f"Grid({' x '.join(map(str, self.shape))} cells on {box})"
