r"""Stationary solve: the normalised null vector of the Fokker–Planck matrix ``L``.

Because the columns of ``L`` sum to zero its rows are linearly dependent, so any one
equation can be replaced by a normalisation without losing information.  Methods by name:

``direct``    pinned system, SuperLU (row ``r`` replaced by :math:`p_r = 1`, ``r`` at the
              drift's most attracting cell), column ordering MMD on :math:`A^T + A`.
``bordered``  :math:`\begin{pmatrix} L & 1 \\ |c|\,1^T & 0\end{pmatrix}
              \begin{pmatrix} p \\ \lambda\end{pmatrix} = \begin{pmatrix} 0 \\ 1\end{pmatrix}`, SuperLU.
``gmres``     the singular system itself: :math:`p = \hat p + z` with :math:`L z = -L\hat p`
              from an initial guess :math:`\hat p` (uniform, or a coarser grid's solution:
              nested iteration), GMRES preconditioned by Ruge–Stüben AMG built on ``L`` (pyamg)
              or by ILU of the pinned matrix.
``bicgstab``  the same with BiCGStab.

Why the Krylov methods work on ``L`` and not on the pinned matrix: pinning one cell is a point
Dirichlet condition, whose capacity vanishes as the grid is refined in d ≥ 2, so the pinned
matrix grows ill-conditioned and the AMG hierarchy built on it inherits the defect.  ``L`` is a
singular M-matrix with a one-dimensional kernel (index 1: GMRES converges on the consistent
system), and AMG's coarsest level is solved by pseudo-inverse.  Measured on the 4-d case
``location-scale-4d`` (iterations to :math:`\|Lp\|_2 \le 10^{-13}\|L\|_\infty\|p\|_2`) at
16^4, 24^4, 32^4: pinned 19, 25, -; singular 14, 19, 22; singular from the coarser grid's solution
12, 15, 17.
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

__all__ = ["solve_stationary", "stationary_density", "result_from_vector", "resolve_method", "METHODS",
           "irreducibility"]

METHODS = ("auto", "direct", "bordered", "gmres", "bicgstab", "eigen")
PRECONDITIONERS = ("amg", "ilu", "none")
# Largest undershoot (relative to the peak) accepted from a non-monotone stencil.
NONMONOTONE_UNDERSHOOT = 1e-3
# "auto" uses the direct solver for 1-d/2-d grids up to this many cells.
DIRECT_MAX_CELLS_2D = 600_000


def resolve_method(method: str, grid: Grid) -> str:
    """The method ``"auto"`` stands for on ``grid``; other names are returned unchanged."""
    if method != "auto":
        return method
    # Measured on the LQ case (benchmarks/bench_core.py): SuperLU wins up to ~512^2 in 2-d;
    # beyond, and in 3-d and 4-d where LU fill-in explodes, AMG-preconditioned GMRES wins.
    return "direct" if (grid.ndim <= 2 and grid.size <= DIRECT_MAX_CELLS_2D) else "gmres"


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


def _krylov_singular(op, method, preconditioner, info, amg_options, initial_guess, rtol, maxiter, history,
                     blas_threads):
    r"""Solve :math:`L(\hat p + z) = 0` for ``z`` by preconditioned GMRES or BiCGStab.

    Stops when :math:`\|Lp\|_2 \le \mathrm{rtol}\,\|L\|_\infty \|p\|_2` for :math:`p = \hat p + z`
    (independent of the guess, so a better guess means fewer iterations, not another target).  Returns
    ``(p, code, iterations)``; ``history`` receives the residual norms :math:`\|Lp_k\|_2` in units of
    :math:`\|L\|_\infty\|p\|_2` (so the target is ``rtol``).
    """
    L = op.matrix.tocsr()
    n = L.shape[0]
    p_hat = np.ones(n) if initial_guess is None else np.asarray(initial_guess, dtype=float).ravel().copy()
    if p_hat.shape != (n,) or not np.all(np.isfinite(p_hat)) or p_hat.max() <= 0:
        raise ValueError(f"initial_guess must be a finite field of {n} cells with a positive maximum")
    p_hat /= p_hat.max()
    info["initial_guess"] = "uniform" if initial_guess is None else "given"
    if preconditioner == "ilu":
        # ILU needs a nonsingular matrix: factor the pinned one (a rank-one change of L).
        M = _preconditioner(_pinned(L, _pin_index(op))[0], "ilu", info)
    else:
        M = _preconditioner(L, preconditioner, info, amg_options)
    b = -(L @ p_hat)
    Lnorm = spla.norm(L, np.inf)
    z = np.zeros(n)
    code = 0

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    limit = (threadpool_limits(limits=blas_threads, user_api="blas")
             if threadpool_limits is not None and blas_threads else None)
    try:
        # The target scales with the solution's norm, which is known only as the iterate
        # approaches it (a uniform guess has a larger 2-norm than the peaked density of the same
        # maximum): solve against the current estimate, re-measure, continue if short.
        for attempt in range(5):
            scale = Lnorm * np.linalg.norm(p_hat + z)
            atol = rtol * scale
            if np.linalg.norm(b - L @ z) <= atol:
                code = 0
                break
            left = maxiter - len(history)
            if left <= 0 or attempt == 4:
                code = max(left, 1)
                break
            if method == "gmres":
                # Flexible (right-preconditioned) GMRES: the norm it monitors is the true
                # residual, so it stops at the target rather than at a preconditioned proxy.
                from pyamg.krylov import fgmres

                residuals: list = []
                z, code = fgmres(L, b, x0=z, M=M, tol=atol / np.linalg.norm(b), restart=50,
                                 maxiter=-(-left // 50), residuals=residuals)
                history.extend(float(r) / scale for r in residuals[1:])
            else:
                z, code = spla.bicgstab(L, b, x0=z, M=M, rtol=0.0, atol=atol, maxiter=left,
                                        callback=lambda zk: history.append(float(np.linalg.norm(b - L @ zk) / scale)))
            if code != 0:
                break
    finally:
        if limit is not None:
            limit.restore_original_limits()
    return p_hat + z, code, len(history)


def solve_stationary(
    op: FokkerPlanckOperator,
    method: str = "auto",
    *,
    preconditioner: str = "amg",
    rtol: float = 1e-13,
    maxiter: int = 500,
    residual_tol: float = 1e-8,
    boundary_mass_tol: float = 1e-4,
    permc_spec: str = "MMD_AT_PLUS_A",
    amg_options: dict | None = None,
    krylov_blas_threads: int | None = 1,
    initial_guess: np.ndarray | None = None,
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
        Iterative methods stop when :math:`\|Lp\|_2 \le \mathrm{rtol}\,\|L\|_\infty\|p\|_2`, or
        after ``maxiter`` iterations.
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
    initial_guess : array, optional
        Starting density for the iterative methods (any positive scale), e.g. a coarser grid's
        solution transferred by :meth:`Grid.transfer`; uniform when omitted.  Ignored by the
        direct methods.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"unknown preconditioner {preconditioner!r}; choose from {list(PRECONDITIONERS)}")
    grid, L = op.grid, op.matrix
    n = grid.size
    auto = method == "auto"
    method = resolve_method(method, grid)
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
        p, code, iterations = _krylov_singular(op, method, preconditioner, info, amg_options, initial_guess,
                                               rtol, maxiter, history, krylov_blas_threads)
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
                       nested: bool = True, **solve_options) -> StationaryResult:
    """Assemble and solve in one call: ``solve_stationary(assemble(sde, grid, scheme, cross), method)``.

    ``backend="fipy"`` (d ≤ 3) assembles and solves with FiPy instead
    (:func:`stationary.backends.fipy.solve_fipy`; ``scheme`` "sg" means FiPy's exponential
    scheme; ``method`` and ``cross`` do not apply; ``solve_options`` go to ``solve_fipy``).

    ``error_estimate`` (default on) solves again on the same box with half, and when the
    shape allows a quarter, of the cells per axis and attaches a Richardson
    :class:`~stationary.results.ErrorEstimate` as ``result.error``
    (:func:`stationary.richardson.estimate_error`; about 1/2^d + 1/4^d of the fine cost).
    ``nested`` (default on): when the solve is iterative those coarse grids are solved first,
    with or without the estimate, and each solution starts the next finer solve (nested
    iteration; ``result.info["nested_iteration"]`` lists the shapes, coarsest first).
    ``spectral_gap`` (native backend) attaches the gap and relaxation time of ``L`` as
    ``result.spectral`` (:func:`stationary.spectral.relaxation_time`).

    ``scheme="sg2"`` (native backend; second order where the diffusion vanishes, not monotone,
    :func:`stationary.highres.solve_sg2`) is answered next to the monotone SG one:
    ``result.info["certified"]`` holds the SG moments and the differences (mean, covariance, L1).
    """
    from dataclasses import replace

    from .richardson import coarse_grids

    coarse_cache: dict = {}
    coarse_seconds = 0.0
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
        if nested and resolve_method(method, grid) in ("gmres", "bicgstab") and "initial_guess" not in solve_options:
            # Nested iteration: the estimate's coarse grids are solved first, coarsest first, and
            # each solution, transferred, starts the next finer solve: fewer Krylov iterations
            # (4-d case at 32^4: 17 instead of 25) for 1/2^d + 1/4^d of the work, and the
            # estimate below reuses these solves.
            t_coarse = time.perf_counter()
            prev = None
            for g in reversed(coarse_grids(grid)):
                start = None if prev is None else prev.grid.transfer(prev.density, g)
                prev = coarse_cache[g.shape] = stationary_density(
                    sde, g, scheme=scheme, method=method, cross=cross, error_estimate=False, nested=False,
                    initial_guess=start, **solve_options)
            coarse_seconds = time.perf_counter() - t_coarse
            if prev is not None:
                solve_options = dict(solve_options, initial_guess=prev.grid.transfer(prev.density, grid))
        op = assemble(sde, grid, scheme=scheme, cross=cross)
        res = solve_stationary(op, method=method, **solve_options)
        if coarse_cache:
            res.info["nested_iteration"] = [list(shape) for shape in coarse_cache]  # coarsest first
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

        solve_options.pop("initial_guess", None)

        def coarse(g):
            if g.shape in coarse_cache:
                return coarse_cache[g.shape]
            return stationary_density(sde, g, scheme=scheme, method=method, cross=cross, backend=backend,
                                      error_estimate=False, nested=nested, **solve_options)

        try:
            est = estimate_error(res, coarse)
            changes["error"] = est if est is None else replace(est, seconds=est.seconds + coarse_seconds)
        except Exception as exc:  # an estimate must never cost the answer: say why it is missing
            log.warning("grid error estimate failed: %s", exc)
            res.info.setdefault("warnings", []).append(f"grid error estimate failed: {exc}")
    return replace(res, **changes) if changes else res
