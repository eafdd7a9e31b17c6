r"""Grid density vs Monte Carlo: is the distance more than Monte Carlo noise?

For a :class:`~stationary.results.StationaryResult` ``p`` on a grid and a
:class:`~stationary.simulate.MonteCarloResult` whose histogram was taken on that grid's cells:

* mean z-scores :math:`z_k = (\hat m_k - m_k)/\sqrt{\mathrm{se}_k^2 + e_k^2}` and covariance
  z-scores likewise (``e`` the grid's own error estimate when given, else 0);
* per-marginal Wasserstein-1 :math:`W_1 = \int |F_\mathrm{grid}(t) - F_\mathrm{MC}(t)|\,dt`, both CDFs
  piecewise linear between the cell faces (cell averages integrate exactly to the faces);
* binned L1 :math:`\sum_i |\hat q_i - q_i|` between the histogram's cell probabilities
  :math:`\hat q_i` and the grid's :math:`q_i = p_i |c_i|` (optionally on cells coarsened by an
  integer factor), with its pure-sampling noise floor: the expected L1 of a multinomial sample
  of the effective size :math:`n_\mathrm{eff}` drawn from :math:`q` itself, by simulation, and its
  normal approximation :math:`\sum_i \sqrt{2 q_i(1-q_i)/(\pi n_\mathrm{eff})}`.

:math:`n_\mathrm{eff}` for the histogram is the smallest per-coordinate ESS of the run: cell
indicators of a smooth density decorrelate no slower than the slowest coordinate in
practice, and a smaller ``n_eff`` gives a larger (more forgiving) floor, so the ratio
``l1 / l1_floor`` is reported rather than hidden behind a pass/fail.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["compare", "Comparison", "l1_noise_floor"]


@dataclass(frozen=True, repr=False)
class Comparison:
    """Distances between a grid density and Monte Carlo samples, with their noise scales.

    Attributes
    ----------
    z_mean : (d,) array
    z_covariance : (d, d) array
    max_abs_z : float
        Largest |z| over mean and covariance entries.
    mean_mc, mean_grid, stderr_mean, covariance_mc, covariance_grid, stderr_covariance : arrays
    wasserstein1 : (d,) array
        Per-marginal :math:`W_1`; ``wasserstein1_relative`` divides by the grid's standard deviations.
    l1 : float or None
        Binned L1 distance (None without a histogram).
    l1_floor : float or None
        Expected L1 of a multinomial sample of size ``n_eff`` from the grid's probabilities.
    l1_floor_normal : float or None
        Normal approximation of the same.
    l1_ratio : float or None
        ``l1 / l1_floor``.
    n_eff : float
    coarsen : int
    mass_outside_mc : float
        Fraction of MC samples outside the grid box.
    grid_error : dict or None
    """

    z_mean: np.ndarray
    z_covariance: np.ndarray
    max_abs_z: float
    mean_mc: np.ndarray
    mean_grid: np.ndarray
    stderr_mean: np.ndarray
    covariance_mc: np.ndarray
    covariance_grid: np.ndarray
    stderr_covariance: np.ndarray
    wasserstein1: np.ndarray
    wasserstein1_relative: np.ndarray
    l1: float | None
    l1_floor: float | None
    l1_floor_normal: float | None
    l1_ratio: float | None
    n_eff: float
    coarsen: int
    mass_outside_mc: float
    grid_error: dict | None = None
    names: tuple = ()

    def to_dict(self) -> dict:
        f = lambda a: None if a is None else np.asarray(a).tolist()  # noqa: E731
        return {k: f(getattr(self, k)) if isinstance(getattr(self, k), np.ndarray) else getattr(self, k)
                for k in self.__dataclass_fields__}

    def __str__(self) -> str:
        d = self.mean_mc.size
        names = list(self.names) or [f"u{k}" for k in range(d)]
        rows = [f"{'quantity':<22}{'Monte Carlo':>14}{'grid':>14}{'stderr':>12}{'z':>8}"]
        for k in range(d):
            rows.append(f"{'mean ' + names[k]:<22}{self.mean_mc[k]:>14.6g}{self.mean_grid[k]:>14.6g}"
                        f"{self.stderr_mean[k]:>12.3g}{self.z_mean[k]:>8.2f}")
        for i in range(d):
            for j in range(i, d):
                rows.append(f"{'cov ' + names[i] + ',' + names[j]:<22}{self.covariance_mc[i, j]:>14.6g}"
                            f"{self.covariance_grid[i, j]:>14.6g}{self.stderr_covariance[i, j]:>12.3g}"
                            f"{self.z_covariance[i, j]:>8.2f}")
        for k in range(d):
            rows.append(f"{'W1 ' + names[k]:<22}{self.wasserstein1[k]:>14.4g}  ({self.wasserstein1_relative[k]:.3g} std)")
        if self.l1 is not None:
            rows.append(f"{'binned L1':<22}{self.l1:>14.4g}  noise floor {self.l1_floor:.4g} "
                        f"(normal approx {self.l1_floor_normal:.4g}), ratio {self.l1_ratio:.2f}, "
                        f"n_eff {self.n_eff:.3g}, coarsen x{self.coarsen}")
        rows.append(f"max |z| = {self.max_abs_z:.2f}; MC mass outside the box = {self.mass_outside_mc:.2e}")
        return "\n".join(rows)

    __repr__ = __str__


def l1_noise_floor(q: np.ndarray, n_eff: float, draws: int = 8, seed: int = 0) -> tuple[float, float]:
    r"""Expected :math:`\sum_i |\hat q_i - q_i|` for :math:`n\hat q \sim \mathrm{Multinomial}(n, q)`.

    Returns ``(simulated, normal_approximation)``; the simulation averages ``draws`` multinomial
    samples of size ``round(n_eff)``; the approximation is
    :math:`\sum_i \sqrt{2 q_i(1-q_i)/(\pi n)}` (too large where :math:`n q_i \lesssim 1`).
    """
    q = np.clip(np.asarray(q, float).ravel(), 0, None)
    tot = q.sum()
    n = max(1, int(round(n_eff)))
    approx = float(np.sum(np.sqrt(2 * q * (1 - q) / (np.pi * n))))
    rng = np.random.default_rng(seed)
    qn = q / tot if tot > 0 else q
    sims = [np.abs(rng.multinomial(n, qn) / n - qn).sum() for _ in range(draws)]
    return float(np.mean(sims)), approx


def _coarsen(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    for ax in range(a.ndim):
        n = a.shape[ax] - a.shape[ax] % f
        a = np.take(a, np.arange(n), axis=ax)
        a = a.reshape(a.shape[:ax] + (n // f, f) + a.shape[ax + 1 :]).sum(axis=ax + 1)
    return a


def compare(mc, stationary, grid_error=None, coarsen: int = 1, floor_draws: int = 8) -> Comparison:
    """Compare a Monte Carlo result with a grid density.

    Parameters
    ----------
    mc : MonteCarloResult
        Ideally simulated with ``histogram=stationary.grid`` (needed for L1 and the MC CDFs).
    stationary : StationaryResult
    grid_error : dict, optional
        ``{"mean": (d,), "covariance": (d, d)}`` absolute error estimates of the grid's moments
        (e.g. the change under grid refinement); added in quadrature to the standard errors.
    coarsen : int
        Merge ``coarsen`` cells per axis before the L1 distance (fewer, fuller bins).
    floor_draws : int
        Multinomial draws for the noise floor.
    """
    if mc.mean is None:
        raise ValueError(f"the Monte Carlo run has no statistics: {mc.message}")
    grid = stationary.grid
    d = grid.ndim
    em = np.zeros(d) if grid_error is None else np.asarray(grid_error.get("mean", np.zeros(d)), float)
    ec = np.zeros((d, d)) if grid_error is None else np.asarray(grid_error.get("covariance", np.zeros((d, d))), float)
    z_mean = (mc.mean - stationary.mean) / np.sqrt(mc.stderr_mean**2 + em**2)
    z_cov = (mc.covariance - stationary.covariance) / np.sqrt(mc.stderr_covariance**2 + ec**2)
    max_z = float(max(np.abs(z_mean).max(), np.abs(z_cov).max()))
    std = np.sqrt(np.diag(stationary.covariance))

    q = np.clip(stationary.density, 0, None) * grid.cell_volume
    q = q / q.sum()
    hist = mc.histogram
    same_bins = hist is not None and len(hist.edges) == d and all(
        e.size == g.size and np.allclose(e, g, rtol=0, atol=1e-12 * max(1.0, np.abs(g).max())) for e, g in zip(hist.edges, grid.edges)
    )
    n_eff = float(np.min(mc.ess)) if mc.ess is not None else float(mc.chains * mc.recorded)
    w1 = np.full(d, np.nan)
    l1 = floor = floor_n = ratio = None
    outside = 0.0
    if same_bins:
        qhat = hist.probabilities()  # fractions of all samples; mass outside the box is missing
        outside = hist.outside / max(hist.total, 1)
        for k in range(d):
            others = tuple(i for i in range(d) if i != k)
            Fg = np.concatenate([[0.0], np.cumsum(q.sum(axis=others))])
            Fm = np.concatenate([[0.0], np.cumsum(qhat.sum(axis=others))])
            # MC mass below the box starts the empirical CDF above zero; assume none below
            # (reported as mass_outside) — W1 is then a lower bound when samples leave the box.
            diff = np.abs(Fg - Fm)
            w1[k] = float(np.sum(0.5 * (diff[1:] + diff[:-1]) * np.diff(grid.edges[k])))
        qc, qhc = _coarsen(q, coarsen), _coarsen(qhat, coarsen)
        l1 = float(np.abs(qhc - qc).sum() + outside)
        floor, floor_n = l1_noise_floor(qc, n_eff, draws=floor_draws)
        ratio = l1 / floor if floor > 0 else np.inf
    return Comparison(
        z_mean=z_mean, z_covariance=z_cov, max_abs_z=max_z, mean_mc=mc.mean, mean_grid=stationary.mean,
        stderr_mean=mc.stderr_mean, covariance_mc=mc.covariance, covariance_grid=stationary.covariance,
        stderr_covariance=mc.stderr_covariance, wasserstein1=w1, wasserstein1_relative=w1 / std, l1=l1,
        l1_floor=floor, l1_floor_normal=floor_n, l1_ratio=ratio, n_eff=n_eff, coarsen=int(coarsen),
        mass_outside_mc=outside, grid_error=grid_error, names=tuple(getattr(mc, "names", ()) or ()),
    )
