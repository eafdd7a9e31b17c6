r"""Stationary solve: the normalised null vector of the Fokker–Planck matrix ``L``.

Because the columns of ``L`` sum to zero its rows are linearly dependent, so any one
equation can be replaced by a normalisation without losing information.  Methods by name:

``direct``    pinned system, SuperLU (row ``r`` replaced by :math:`p_r = 1`, ``r`` at the
              drift's most attracting cell), column ordering MMD on :math:`A^T + A`.
``bordered``  :math:`\begin{pmatrix} L & 1 \\ |c|\,1^T & 0\end{pmatrix}
              \begin{pmatrix} p \\ \lambda\end{pmatrix} = \begin{pmatrix} 0 \\ 1\end{pmatrix}`, SuperLU.
``gmres``     pinned system, GMRES preconditioned by Ruge–Stüben AMG (pyamg) or ILU.
``bicgstab``  the same with BiCGStab.
``eigen``     shift-invert ARPACK for the eigenvalue of ``L`` nearest 0.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sps
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from .grid import Grid
from .operator import FokkerPlanckOperator, assemble
from .results import StationaryResult

log = logging.getLogger("stationary")

__all__ = ["solve_stationary", "stationary_density", "result_from_vector", "METHODS", "irreducibility"]

METHODS = ("auto", "direct", "bordered", "gmres", "bicgstab", "eigen")
PRECONDITIONERS = ("amg", "ilu", "none")
# Largest undershoot (relative to the peak) accepted from a non-monotone stencil.
NONMONOTONE_UNDERSHOOT = 1e-3
# "auto" uses the direct solver for 1-d/2-d grids up to this many cells.
DIRECT_MAX_CELLS_2D = 600_000


def _pin_index(op: FokkerPlanckOperator) -> int:
    # The most negative diagonal entry is the cell the dynamics leaves fastest, i.e. the worst
    # pin; the cell with the largest |L_rr| among interior cells is not what we want either.
    # Pin where the density is expected to be largest: the interior cell of smallest |L_rr|
    # relative scale is a cheap proxy that is always safe because any row may be dropped.
    diag = -op.matrix.diagonal().reshape(op.grid.shape)
    interior = ~op.grid.boundary_mask()
    masked = np.where(interior, diag, np.inf)
    return int(np.argmin(masked))


def _pinned(L: sps.csr_matrix, r: int):
    n = L.shape[0]
    keep = np.ones(n)
    keep[r] = 0.0
    scale = abs(L[r, r]) if L[r, r] != 0 else 1.0
    A = (sps.diags(keep) @ L + sps.csr_matrix(([scale], ([r], [r])), shape=(n, n))).tocsr()
    rhs = np.zeros(n)
    rhs[r] = scale
    return A, rhs


def irreducibility(L: sps.spmatrix) -> tuple[bool, int, int]:
    """Communication structure of the Markov chain with rates ``L[c', c]`` for ``c -> c'``.

    Returns ``(irreducible, n_classes, n_closed_classes)``; a unique stationary law needs
    exactly one closed class.
    """
    off = sps.coo_matrix(L)
    mask = (off.row != off.col) & (off.data > 0)
    rows, cols = off.row[mask], off.col[mask]
    n = L.shape[0]
    # edge c -> c' for a positive rate L[c', c]
    graph = sps.csr_matrix((np.ones(rows.size), (cols, rows)), shape=(n, n))
    ncomp, labels = connected_components(graph, directed=True, connection="strong")
    if ncomp == 1:
        return True, 1, 1
    leaving = labels[cols] != labels[rows]
    open_classes = np.unique(labels[cols[leaving]])
    return False, int(ncomp), int(ncomp - open_classes.size)


def _preconditioner(A, kind: str, info: dict, amg_options: dict | None = None):
    if kind == "none":
        return None
    if kind == "amg":
        try:
            import pyamg
        except ImportError:  # pragma: no cover - pyamg is a dependency
            info["fallback"] = "pyamg not importable; using ILU"
            kind = "ilu"
        else:
            t0 = time.perf_counter()
            ml = pyamg.ruge_stuben_solver(A.tocsr(), **(amg_options or {}))
            info["amg_setup_seconds"] = time.perf_counter() - t0
            info["amg_levels"] = len(ml.levels)
            return ml.aspreconditioner(cycle="V")
    ilu = spla.spilu(A.tocsc(), drop_tol=1e-5, fill_factor=20)
    return spla.LinearOperator(A.shape, ilu.solve)


def _krylov(method, A, rhs, x0, M, rtol, maxiter, callback, history, bnorm):
    if method == "gmres":
        return spla.gmres(A, rhs, x0=x0, M=M, rtol=rtol, restart=50, maxiter=maxiter, callback=callback,
                          callback_type="pr_norm")
    return spla.bicgstab(A, rhs, x0=x0, M=M, rtol=rtol, maxiter=maxiter,
                         callback=lambda xk: history.append(float(np.linalg.norm(rhs - A @ xk) / bnorm)))


def solve_stationary(
    op: FokkerPlanckOperator,
    method: str = "auto",
    *,
    preconditioner: str = "amg",
    rtol: float = 1e-10,
    maxiter: int = 500,
    residual_tol: float = 1e-8,
    boundary_mass_tol: float = 1e-4,
    permc_spec: str = "MMD_AT_PLUS_A",
    amg_options: dict | None = None,
    krylov_blas_threads: int | None = 1,
) -> StationaryResult:
    r"""Solve :math:`L p = 0`, :math:`\sum_c p_c |c| = 1` for an assembled operator.

    Parameters
    ----------
    op : FokkerPlanckOperator
    method : {"auto", "direct", "bordered", "gmres", "bicgstab", "eigen"}
        ``"auto"``: direct for d ≤ 2 and up to 6·10^5 cells, else GMRES with AMG.
    preconditioner : {"amg", "ilu", "none"}
        For the iterative methods.
    rtol, maxiter
        Iterative tolerances (relative residual of the pinned system).
    residual_tol : float
        ``success`` requires :math:`\|Lp\|_\infty / (\|L\|_\infty \|p\|_\infty)` below this.
    boundary_mass_tol : float
        ``success`` requires the mass in the outermost cells below this.
    permc_spec : str
        SuperLU column ordering (MMD on AᵀA+A was measured fastest for these matrices).
    amg_options : dict, optional
        Keyword arguments for ``pyamg.ruge_stuben_solver`` (strength, presmoother, ...).
    krylov_blas_threads : int or None
        BLAS threads during the Krylov iterations (via threadpoolctl when installed; ``None``
        leaves BLAS alone).  GMRES's orthogonalisation is level-1 BLAS on long vectors:
        memory-bound, so threads gain little, and on a busy machine they cost a lot (measured on
        the 3-d GAN case at 50^3 on a loaded 2-core machine: solve 3.6 s with 2 threads, 0.9 s
        with 1).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"unknown preconditioner {preconditioner!r}; choose from {list(PRECONDITIONERS)}")
    grid, L = op.grid, op.matrix
    n = grid.size
    auto = method == "auto"
    if method == "auto":
        # Measured on the LQ case (benchmarks/bench_core.py): SuperLU wins up to ~512^2 in 2-d;
        # beyond, and in 3-d and 4-d where LU fill-in explodes, AMG-preconditioned GMRES wins.
        method = "direct" if (grid.ndim <= 2 and n <= DIRECT_MAX_CELLS_2D) else "gmres"
    info: dict = {"method": method}
    t0 = time.perf_counter()
    history: list[float] = []
    iterations = None
    if method == "direct":
        r = _pin_index(op)
        A, rhs = _pinned(L, r)
        p = spla.splu(A.tocsc(), permc_spec=permc_spec).solve(rhs)
    elif method == "bordered":
        vol = np.full((1, n), grid.cell_volume)
        K = sps.bmat([[L, sps.csr_matrix(np.ones((n, 1)))], [sps.csr_matrix(vol), None]], format="csc")
        rhs = np.zeros(n + 1)
        rhs[-1] = 1.0
        p = spla.splu(K, permc_spec=permc_spec).solve(rhs)[:n]
    elif method in ("gmres", "bicgstab"):
        r = _pin_index(op)
        A, rhs = _pinned(L, r)
        M = _preconditioner(A, preconditioner, info, amg_options)
        bnorm = np.linalg.norm(rhs)
        x0 = np.full(n, rhs[r] / A[r, r])

        def callback(xk_or_res):
            history.append(float(np.linalg.norm(xk_or_res)) if np.ndim(xk_or_res) else float(xk_or_res))

        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            threadpool_limits = None
        limit = (threadpool_limits(limits=krylov_blas_threads, user_api="blas")
                 if threadpool_limits is not None and krylov_blas_threads else None)
        try:
            p, code = _krylov(method, A, rhs, x0, M, rtol, maxiter, callback, history, bnorm)
        finally:
            if limit is not None:
                limit.restore_original_limits()
        iterations = len(history)
        info["converged"] = code == 0
        if code != 0:
            info["fallback_reason"] = f"{method} did not converge in {maxiter} iterations (code {code})"
    else:  # eigen
        shift = 1e-8 * spla.norm(L, np.inf)
        vals, vecs = spla.eigs(L.tocsc(), k=1, sigma=shift, which="LM")
        p = np.real(vecs[:, 0])
        info["eigenvalue"] = complex(vals[0])
    if auto and method in ("gmres", "bicgstab") and not info.get("converged", True) and grid.ndim <= 3:
        # Logged fallback: an unconverged Krylov solve is replaced by a direct one.
        reason = info.pop("fallback_reason")
        log.warning("%s; falling back to the direct solver", reason)
        r = _pin_index(op)
        A, rhs = _pinned(L, r)
        p = spla.splu(A.tocsc(), permc_spec=permc_spec).solve(rhs)
        info["fallback"] = f"{reason}; fell back to the direct solver"
        method = "direct"
    t1 = time.perf_counter()
    return result_from_vector(op, p, method, t1 - t0, info, iterations, history, residual_tol, boundary_mass_tol)


def result_from_vector(
    op, p, method, seconds, info=None, iterations=None, history=(), residual_tol=1e-8, boundary_mass_tol=1e-4
):
    """Normalise a solution vector of ``op`` and wrap it, with every check, in a :class:`StationaryResult`.

    Backends other than the native solver (e.g. FiPy) call this so that all results are judged alike.
    """
    info = {} if info is None else info
    grid, L = op.grid, op.matrix
    p = np.asarray(p, dtype=float)
    if p.sum() < 0:
        p = -p
    total = p.sum() * grid.cell_volume
    finite = np.all(np.isfinite(p)) and total > 0
    if finite:
        p = p / total
    Lnorm = spla.norm(L, np.inf)
    residual = float(np.abs(L @ p).max() / (Lnorm * np.abs(p).max())) if finite else np.inf
    density = p.reshape(grid.shape)
    irreducible, ncls, nclosed = irreducibility(L)
    mass_boundary = float(density[grid.boundary_mask()].sum() * grid.cell_volume) if finite else np.nan
    min_density = float(density.min()) if finite else np.nan
    problems = []
    status = 0
    if not finite:
        problems.append("the solve produced a non-finite or zero vector")
        status = 5
    else:
        if residual > residual_tol:
            problems.append(f"residual {residual:.2e} exceeds {residual_tol:.0e}")
            status = status or 1
        if mass_boundary > boundary_mass_tol:
            problems.append(
                f"mass {mass_boundary:.2e} in the outermost cells exceeds {boundary_mass_tol:.0e}: the box is too small, "
                "or no invariant probability measure exists"
            )
            status = status or 2
        # A monotone operator (M-matrix) gives p >= 0 up to round-off; anything else is a bug.
        # A non-monotone stencil may undershoot slightly in the tails: warn, and fail only when
        # the undershoot is a visible fraction (1e-3) of the peak.
        negative_tol = 1e-10 if op.monotone else NONMONOTONE_UNDERSHOOT
        if min_density < -negative_tol * density.max():
            problems.append(f"density has negative values (min {min_density:.3e}, peak {density.max():.3e})")
            status = status or 3
        elif min_density < -1e-10 * density.max():
            why = "solver tolerance" if op.monotone else "non-monotone stencil"
            info.setdefault("warnings", []).append(
                f"small negative density values ({why}): min {min_density:.2e}, peak {density.max():.2e}"
            )
        if nclosed != 1:
            problems.append(f"the discrete chain has {nclosed} closed classes: the stationary law is not unique")
            status = status or 4
    if info.get("fallback_reason"):
        problems.append(info["fallback_reason"])
        status = status or 1
    for axis in op.degenerate_axes:
        how = "central flux there (sg2), not monotone" if op.scheme == "sg2" else "upwind limit, first order there"
        info.setdefault("warnings", []).append(f"diffusion vanishes along axis {axis}: {how}")
    message = "; ".join(problems) if problems else "stationary density found"
    if finite:
        mean = grid.mean(density)
        cov = grid.covariance(density)
        marginals = tuple(grid.marginal(density, k) for k in range(grid.ndim))
    else:
        mean = np.full(grid.ndim, np.nan)
        cov = np.full((grid.ndim, grid.ndim), np.nan)
        marginals = ()
    seconds_all = dict(op.seconds)
    seconds_all["solve"] = seconds
    return StationaryResult(
        density=density,
        grid=grid,
        mean=mean,
        covariance=cov,
        marginals=marginals,
        residual=residual,
        min_density=min_density,
        mass_at_boundary=mass_boundary,
        irreducible=irreducible,
        closed_classes=nclosed,
        scheme=op.scheme,
        method=method,
        monotone=op.monotone,
        cross_stencil=op.cross_stencil,
        degenerate_axes=op.degenerate_axes,
        upwind_fraction=op.upwind_fraction,
        iterations=iterations,
        residual_history=tuple(history),
        seconds=seconds_all,
        success=not problems,
        status=status,
        message=message,
        info=info,
        notes=op.notes,
    )


def stationary_density(sde, grid: Grid, scheme: str = "sg", method: str = "auto", cross: str = "auto",
                       backend: str = "native", *, error_estimate: bool = True, spectral_gap: bool = False,
                       **solve_options) -> StationaryResult:
    """Assemble and solve in one call: ``solve_stationary(assemble(sde, grid, scheme, cross), method)``.

    ``backend="fipy"`` (d ≤ 3) assembles and solves with FiPy instead
    (:func:`stationary.backends.fipy.solve_fipy`; ``scheme`` "sg" means FiPy's exponential
    scheme; ``method`` and ``cross`` do not apply; ``solve_options`` go to ``solve_fipy``).

    ``error_estimate`` (default on) solves again on the same box with half, and when the
    shape allows a quarter, of the cells per axis and attaches a Richardson
    :class:`~stationary.results.ErrorEstimate` as ``result.error``
    (:func:`stationary.richardson.estimate_error`; about 1/2^d + 1/4^d of the fine cost).
    ``spectral_gap`` (native backend) attaches the gap and relaxation time of ``L`` as
    ``result.spectral`` (:func:`stationary.spectral.relaxation_time`).

    ``scheme="sg2"`` (native backend; second order where the diffusion vanishes, not monotone,
    :func:`stationary.highres.solve_sg2`) is answered next to the monotone SG one:
    ``result.info["certified"]`` holds the SG moments and the differences (mean, covariance, L1).
    """
    from dataclasses import replace

    if backend == "fipy":
        from .backends.fipy import solve_fipy

        res = solve_fipy(sde, grid, scheme=scheme, **solve_options)
        op = None
    elif backend != "native":
        raise ValueError(f"unknown backend {backend!r}; choose from ['native', 'fipy']")
    elif scheme == "sg2":
        from .highres import solve_sg2

        res = solve_sg2(sde, grid, method=method, cross=cross, **solve_options)
        op = None
    else:
        op = assemble(sde, grid, scheme=scheme, cross=cross)
        res = solve_stationary(op, method=method, **solve_options)
    changes = {}
    if spectral_gap:
        if op is None:
            res.info.setdefault("warnings", []).append("spectral_gap needs the native linear operator: not computed")
        else:
            from .spectral import relaxation_time

            changes["spectral"] = relaxation_time(op)
    del op  # the coarse solves need not keep the fine matrix alive
    if error_estimate:
        from .richardson import estimate_error

        def coarse(g):
            return stationary_density(sde, g, scheme=scheme, method=method, cross=cross, backend=backend,
                                      error_estimate=False, **solve_options)

        try:
            changes["error"] = estimate_error(res, coarse)
        except Exception as exc:  # an estimate must never cost the answer: say why it is missing
            log.warning("grid error estimate failed: %s", exc)
            res.info.setdefault("warnings", []).append(f"grid error estimate failed: {exc}")
    return replace(res, **changes) if changes else res
