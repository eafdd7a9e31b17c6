r"""Second-order fluxes along degenerate directions: scheme ``"sg2"`` (MATH.md section 4).

Where the diffusion vanishes, Scharfetter–Gummel becomes first-order upwind: its numerical
diffusion is :math:`D((P/2)\coth(P/2) - 1) \to |\beta| h/2` as the cell Péclet number
:math:`P = |\beta| h / D'` grows.  ``sg2`` adds to every SG face flux the MUSCL correction

.. math::  G = \tfrac12\, w(P)\,\bigl(\beta^+ \sigma_c + \beta^- \sigma_{c+1}\bigr),\qquad
           w(P) = \max(0, 1 - 2/P),\quad \beta^\pm = \max(\pm\beta, 0),

with :math:`\sigma` the van Leer limited slope of the upwind cell
(:math:`\sigma = 2ab/(a+b)` if :math:`ab > 0` else 0, :math:`a, b` the one-sided differences;
zero on the outermost cells).  For large ``P`` the corrected flux is the limited second-order
upwind flux; for :math:`P \le 2` it is SG unchanged; in between ``w`` removes
:math:`|\beta|h/2 - D'`, SG's excess diffusion to leading order.  The corrections are face fluxes,
so mass is conserved.

The limiter makes the discrete equation :math:`L_{SG}\,p + C(p) = 0` nonlinear.  It is solved by
defect correction, :math:`L_{SG}\,p^{k+1} = -C(p^k)` from the SG solution (one factorisation or
one AMG hierarchy for all iterations).  The result reports the operator frozen at the solution
(:math:`L_{SG} + J` with :math:`J p = C(p)`; not an M-matrix), the number of defect-correction
iterations, and, in ``info["certified"]``, the monotone SG answer and the differences: the SG
result stays the certified one.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import scipy.sparse.linalg as spla

from .operator import _Bands, assemble
from .solve import _pin_index, _pinned, _preconditioner, result_from_vector, resolve_method

__all__ = ["solve_sg2", "correction"]


def _slopes_ratio(p: np.ndarray, k: int):
    """Van Leer slopes along axis ``k`` as ``sigma = psi * (p_c - p_{c-1})``: returns psi (zero on the end cells)."""
    a = np.diff(p, axis=k)
    lo = [slice(None)] * p.ndim
    hi = [slice(None)] * p.ndim
    lo[k], hi[k] = slice(None, -1), slice(1, None)
    al, ar = a[tuple(lo)], a[tuple(hi)]  # p_c - p_{c-1}, p_{c+1} - p_c for interior c
    with np.errstate(divide="ignore", invalid="ignore"):
        psi_int = np.where(al * ar > 0, 2.0 * ar / (al + ar), 0.0)
    psi = np.zeros(p.shape)
    inner = [slice(None)] * p.ndim
    inner[k] = slice(1, -1)
    psi[tuple(inner)] = psi_int
    back = np.zeros(p.shape)
    back[tuple(hi)] = a  # back[c] = p_c - p_{c-1}
    return psi, back


def _weights(op):
    # w = max(0, 1 - 2/P) leaves SG unchanged where it is monotone-safe.  The weight that removes
    # SG's excess diffusion exactly at every P, coth(P/2) - 2/P, was measured as an alternative
    # (benchmarks/bench_degenerate.py, 48^2..384^2): covariance differences 5-8x smaller on the
    # scale-generator case but 1.5x larger on vanilla, and the scale generator's last observed
    # order stayed ~1.0 (0.90 -> 1.01), so the cause of that is elsewhere; not adopted.  Nor is
    # it the limiter (unlimited central slopes give the same 384^2 covariance to 6 digits) or
    # the cross stencil (auto and central identical there).
    h = op.grid.spacing
    out = []
    for k, (beta_f, D_f) in enumerate(op.faces):
        with np.errstate(divide="ignore", invalid="ignore"):
            P = np.where(D_f > 0, np.abs(beta_f) * h[k] / D_f, np.inf)
            w = np.clip(1.0 - 2.0 / P, 0.0, 1.0)
        out.append((0.5 * w * np.maximum(beta_f, 0.0), 0.5 * w * np.maximum(-beta_f, 0.0)))
    return out


def correction(op, p: np.ndarray, weights=None) -> np.ndarray:
    """:math:`C(p)`: the divergence of the limited correction fluxes, flat like ``p``."""
    grid = op.grid
    h = grid.spacing
    P = p.reshape(grid.shape)
    weights = _weights(op) if weights is None else weights
    out = np.zeros(grid.shape)
    for k, (wp, wm) in enumerate(weights):
        psi, back = _slopes_ratio(P, k)
        sigma = psi * back
        lo = [slice(None)] * grid.ndim
        hi = [slice(None)] * grid.ndim
        lo[k], hi[k] = slice(None, -1), slice(1, None)
        G = wp * sigma[tuple(lo)] + wm * sigma[tuple(hi)]
        out[tuple(lo)] -= G / h[k]
        out[tuple(hi)] += G / h[k]
    return out.ravel()


def _frozen(op, p: np.ndarray, weights):
    """``L_SG + J`` with the limiter frozen at ``p``, so that ``J p = C(p)`` exactly."""
    grid = op.grid
    h, strides = grid.spacing, grid.strides
    P = p.reshape(grid.shape)
    bands = _Bands(grid.size)
    for k, (wp, wm) in enumerate(weights):
        psi, _ = _slopes_ratio(P, k)
        lo = [slice(None)] * grid.ndim
        hi = [slice(None)] * grid.ndim
        lo[k], hi[k] = slice(None, -1), slice(1, None)
        o = int(strides[k])
        # F1 = g1 (p_c - p_{c-o}) with g1 = wp psi_c, anchored at the face's lower cell c
        g1 = np.zeros(grid.shape)
        g1[tuple(lo)] = wp * psi[tuple(lo)] / h[k]
        bands.add(-g1, 0, 0)
        bands.add(g1, 0, -o)
        bands.add(g1, o, 0)
        bands.add(-g1, o, -o)
        # F2 = g2 (p_{c+o} - p_c) with g2 = wm psi_{c+1}
        g2 = np.zeros(grid.shape)
        g2[tuple(lo)] = wm * psi[tuple(hi)] / h[k]
        bands.add(-g2, 0, o)
        bands.add(g2, 0, 0)
        bands.add(g2, o, o)
        bands.add(-g2, o, 0)
    J = bands.matrix()
    L = (op.matrix + J).tocsr()
    L.eliminate_zeros()
    return L


# Defect correction stops when the update (relative to max p) is below DEFECT_TOL, or when it
# has been below DEFECT_STALL for STALL_WINDOW iterations without a new minimum: van Leer's
# switch then makes the iteration cycle (measured on the vanilla case: updates 1e-11..2e-10 at
# 96^2, 1e-7..8e-7 at 384^2, with or without under-relaxation, while the covariance agrees to 8
# digits across the cycle; van Albada's smooth limiter did not converge at all there).  The
# level reached is reported in info["defect_update"].
DEFECT_TOL = 1e-12
DEFECT_STALL = 1e-6
STALL_WINDOW = 20


def solve_sg2(sde, grid, method: str = "auto", cross: str = "auto", *, tol: float = DEFECT_TOL, max_defect: int = 300,
              rtol: float = 1e-10, maxiter: int = 500, residual_tol: float = 1e-8, boundary_mass_tol: float = 1e-4,
              preconditioner: str = "amg", amg_options: dict | None = None, **ignored):
    """Stationary density with the ``sg2`` fluxes (see the module docstring).

    ``method``: ``"direct"`` (one SuperLU factorisation), ``"gmres"`` (AMG built once, warm
    starts), or ``"auto"`` (direct for d ≤ 2 up to 6·10^5 cells).  Stops when the update is
    below ``tol`` relative to ``max |p|`` or after ``max_defect`` iterations (then ``success``
    is false).
    """
    op = assemble(sde, grid, scheme="sg", cross=cross, keep_faces=True)
    t0 = time.perf_counter()
    n = grid.size
    method = resolve_method(method, grid)
    if method not in ("direct", "gmres"):
        raise ValueError(f"sg2 supports methods 'auto', 'direct', 'gmres', got {method!r}")
    r = _pin_index(op)
    A, e = _pinned(op.matrix, r)
    scale = e[r]
    info: dict = {"method": method}
    if method == "direct":
        lu = spla.splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A")

        def lin(rhs, x0):
            return lu.solve(rhs)
    else:
        M = _preconditioner(A, preconditioner, info, amg_options)

        def lin(rhs, x0):
            x, code = spla.gmres(A, rhs, x0=x0, M=M, rtol=rtol, restart=50, maxiter=maxiter)
            if code != 0:
                info["inner_unconverged"] = info.get("inner_unconverged", 0) + 1
            return x

    p = lin(e, np.full(n, 1.0 / grid.size))
    p_sg = p / (p.sum() * grid.cell_volume)
    p = p_sg.copy()
    weights = _weights(op)
    history = []
    converged = False
    for it in range(1, max_defect + 1):
        rhs = -correction(op, p, weights)
        rhs[r] = scale * p[r]
        q = lin(rhs, p)
        step = float(np.abs(q - p).max() / np.abs(q).max())
        history.append(step)
        p = q
        if step < tol:
            converged = True
            break
        best = min(history)
        if best < DEFECT_STALL and len(history) - 1 - history.index(best) >= STALL_WINDOW and max(history[-STALL_WINDOW:]) < DEFECT_STALL:
            converged = True
            info["defect_stalled"] = f"limiter cycling: updates stayed in [{best:.1e}, {max(history[-STALL_WINDOW:]):.1e}] for {STALL_WINDOW} iterations"
            break
    info["defect_iterations"] = len(history)
    info["defect_converged"] = converged
    info["defect_update"] = history[-1]
    if not converged:
        info["fallback_reason"] = (f"sg2 defect correction did not converge in {max_defect} iterations "
                                   f"(last update {history[-1]:.1e})")
    L = _frozen(op, p, weights)
    notes = op.notes + ("sg2: SG plus van Leer-limited second-order correction where the cell Péclet number exceeds 2 "
                        f"(defect correction, {len(history)} iterations); not monotone, SG is the certified answer",)
    op2 = replace(op, matrix=L, scheme="sg2", monotone=False, notes=notes, faces=())
    seconds = time.perf_counter() - t0
    res = result_from_vector(op2, p, method, seconds, info, len(history), history, residual_tol, boundary_mass_tol)
    sg_density = p_sg.reshape(grid.shape)
    sg_mean, sg_cov = grid.mean(sg_density), grid.covariance(sg_density)
    res.info["certified"] = {
        "scheme": "sg", "mean": sg_mean.tolist(), "covariance": sg_cov.tolist(),
        "mean_difference": (res.mean - sg_mean).tolist(),
        "covariance_difference": (res.covariance - sg_cov).tolist(),
        "l1_difference": float(np.abs(res.density - sg_density).sum() * grid.cell_volume),
    }
    return res
