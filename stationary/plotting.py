"""Figures (matplotlib, Agg): density heat map with drift streamlines, marginals, convergence."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_density", "plot_marginals", "plot_convergence", "plot_identities"]


def _save(fig, path):
    """Lay out, write to ``path`` (if given) and release the figure; return it."""
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def _pair_density(result, i=0, j=1):
    grid = result.grid
    p = result.density
    others = tuple(k for k in range(grid.ndim) if k not in (i, j))
    if others:
        p = p.sum(axis=others) * float(np.prod(grid.spacing[list(others)]))
    return p


def plot_density(result, sde=None, path=None, names=None, samples_hist=None, title=None):
    """Heat map of the (2-d marginal of the) density, with the drift's streamlines and, if given,
    a Monte Carlo histogram ``(H, edges0, edges1)`` as contours."""
    grid = result.grid
    names = names or [f"u{k}" for k in range(grid.ndim)]
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    if grid.ndim == 1:
        ax.plot(grid.centres[0], result.density, lw=2)
        ax.set_xlabel(names[0])
        ax.set_ylabel("density")
    else:
        p = _pair_density(result)
        x, y = grid.centres[0], grid.centres[1]
        im = ax.pcolormesh(grid.edges[0], grid.edges[1], p.T, shading="flat", cmap="viridis")
        fig.colorbar(im, ax=ax, label="stationary density")
        if sde is not None:
            m = 40
            xs = np.linspace(grid.lower[0], grid.upper[0], m)
            ys = np.linspace(grid.lower[1], grid.upper[1], m)
            X, Y = np.meshgrid(xs, ys, indexing="xy")
            pts = np.tile(result.mean, (X.size, 1))
            pts[:, 0], pts[:, 1] = X.ravel(), Y.ravel()
            b = sde.drift(pts)
            ax.streamplot(xs, ys, b[:, 0].reshape(X.shape), b[:, 1].reshape(X.shape), color="w", density=0.8, linewidth=0.6, arrowsize=0.7)
        if samples_hist is not None:
            H, e0, e1 = samples_hist
            c0, c1 = 0.5 * (e0[1:] + e0[:-1]), 0.5 * (e1[1:] + e1[:-1])
            # Levels at fixed fractions of the peak: the lowest empty-bin level only traces noise.
            ax.contour(c0, c1, H.T, levels=H.max() * np.array([0.1, 0.3, 0.5, 0.7, 0.9]), colors="r", linewidths=0.8)
        ax.set_xlim(grid.lower[0], grid.upper[0])
        ax.set_ylim(grid.lower[1], grid.upper[1])
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    ax.set_title(title or "stationary density" + (" (2-d marginal)" if grid.ndim > 2 else ""))
    return _save(fig, path)


def plot_marginals(result, path=None, names=None, others=None):
    """Marginal densities of the grid solution; ``others`` maps a label to a list of
    ``(centres, density)`` per axis (e.g. Monte Carlo histograms) overlaid as steps."""
    grid = result.grid
    names = names or [f"u{k}" for k in range(grid.ndim)]
    fig, axes = plt.subplots(1, grid.ndim, figsize=(3.6 * grid.ndim, 3.2), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.plot(grid.centres[k], result.marginals[k], "k-", lw=2, label="grid")
        for label, series in (others or {}).items():
            c, dens = series[k]
            ax.step(c, dens, where="mid", lw=1, label=label)
        ax.set_xlabel(names[k])
        ax.set_ylabel("marginal density")
        if k == 0:
            ax.legend(fontsize=8)
    return _save(fig, path)


def plot_convergence(h, errors, path=None, label="error", order_lines=(1, 2)):
    """Log-log error against cell width with reference slopes."""
    h, errors = np.asarray(h, float), np.asarray(errors, float)
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    ax.loglog(h, errors, "o-", label=label)
    for p in order_lines:
        ax.loglog(h, errors[-1] * (h / h[-1]) ** p, "--", lw=0.8, label=f"order {p}")
    ax.set_xlabel("cell width h (largest axis)")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_identities(identities: dict, path=None):
    """Each identity's ``rhs - lhs`` divided by the size of its cancelling terms: Monte Carlo
    with 2-standard-error bars, grid values at h and h/2 as markers; zero is stationarity."""
    names = list(identities)
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.55 * max(1, len(names))))
    for i, name in enumerate(names):
        parts = identities[name]
        mc, grid = parts.get("montecarlo"), parts.get("grid")
        if mc is not None and np.isfinite(mc.scale) and mc.scale > 0:
            ax.errorbar(mc.difference / mc.scale, i, xerr=2 * mc.stderr / mc.scale, fmt="o", color="C0",
                        capsize=3, label="SDE Monte Carlo (±2 SE)" if i == 0 else None)
        if grid is not None and grid.scale > 0:
            diffs = np.asarray(grid.trend.get("difference", [grid.difference]))
            ax.plot(diffs / grid.scale, [i] * len(diffs), "s", mfc="none", color="C1",
                    label="grid at 2h and h" if i == 0 else None)
            ax.plot(diffs[-1:] / grid.scale, [i], "s", color="C1")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("(rhs - lhs) / size of the cancelling terms")
    ax.set_title("stationarity identities E[A f] = 0")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
