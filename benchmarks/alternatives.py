r"""Other tools solving the same stationary Fokker–Planck problem, for benchmarking `stationary`.

Problem (all functions): the 2-d Ornstein–Uhlenbeck SDE :math:`du = (A u + c)\,dt + \sigma dW`
with constant :math:`a = \sigma\sigma^T` on the box ``[lo, hi]`` (scalars or one value per
axis) with ``n x n`` equal cells and zero-flux walls; the stationary density solves

.. math::  \nabla\cdot(b p) - \tfrac12 \sum_{ij} \partial_i\partial_j (a_{ij} p) = 0,
           \qquad b = A u + c,\quad \int p = 1.

Every solver returns a dict with

* ``density``: ``(n, n)`` array of cell-centre values, C order, axis 0 = first coordinate,
  normalised so ``density.sum() * dx * dy == 1``;
* ``seconds``: wall time of the tool's solve path including its own assembly (imports
  excluded);
* tool-specific extras (sweeps, residuals, grids, ...).

Tools
-----
:func:`solve_fipy`
    FiPy 4's own finite-volume path (``Grid2D``, ``DiffusionTerm`` with the rank-2 tensor
    coefficient :math:`D = a/2`, ``ExponentialConvectionTerm`` with the drift at face
    centres, SciPy ``LinearLUSolver``).  FiPy treats the off-diagonal part of an anisotropic
    diffusion tensor *explicitly* (as a source built from the current gradient), so a
    full ``a`` needs Picard sweeps; each sweep re-assembles and re-factorises.
:func:`solve_fplanck`
    ``fplanck`` (PyPI, 0.2.x): per-cell Python-loop assembly of a master-equation matrix and
    shift-invert ``eigs`` at 0.  Only diagonal ``a`` (one temperature per axis).
:func:`solve_superlu_plain`
    A plain pinned SuperLU solve of an already assembled matrix (e.g. ``stationary``'s), with
    a chosen column ordering.
:func:`gaussian_reference`, :func:`l1_error`
    The exact Gaussian and the L1 distance to it on the cell centres.

Run ``python benchmarks/alternatives.py`` for a small convergence check (n = 64, 128).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sps
import scipy.sparse.linalg as spla

__all__ = [
    "solve_fipy",
    "solve_fplanck",
    "solve_superlu_plain",
    "gaussian_reference",
    "l1_error",
    "cell_centres",
    "FIPY_SCHEMES",
]


# ----------------------------------------------------------------------------- helpers
def _box(lo, hi, n):
    lo = np.broadcast_to(np.asarray(lo, float), (2,)).copy()
    hi = np.broadcast_to(np.asarray(hi, float), (2,)).copy()
    if not np.all(hi > lo):
        raise ValueError(f"need hi > lo, got lo={lo}, hi={hi}")
    n = int(n)
    if n < 3:
        raise ValueError(f"need n >= 3, got {n}")
    h = (hi - lo) / n
    return lo, hi, n, h


def _ou(A, c, a):
    A = np.asarray(A, float).reshape(2, 2)
    c = np.zeros(2) if c is None else np.asarray(c, float).reshape(2)
    a = np.asarray(a, float)
    if a.ndim == 0:
        a = a * np.eye(2)
    a = a.reshape(2, 2)
    if not np.allclose(a, a.T):
        raise ValueError("a must be symmetric")
    return A, c, a


def cell_centres(lo, hi, n):
    """The two 1-d arrays of cell-centre coordinates of the ``n x n`` grid on ``[lo, hi]``."""
    lo, hi, n, h = _box(lo, hi, n)
    return tuple(lo[k] + (np.arange(n) + 0.5) * h[k] for k in range(2))


def _normalise(p, h):
    p = np.asarray(p, float)
    return p / (p.sum() * h[0] * h[1])


def gaussian_reference(A, c, a):
    r"""Exact stationary law of the OU SDE on the whole plane: ``(mean, cov)``.

    mean :math:`= -A^{-1}c`; covariance :math:`\Sigma` solves :math:`A\Sigma + \Sigma A^T + a = 0`
    (``scipy.linalg.solve_continuous_lyapunov(A, -a)``).  Requires A stable (Hurwitz).
    """
    A, c, a = _ou(A, c, a)
    if np.max(np.linalg.eigvals(A).real) >= 0:
        raise ValueError("A is not Hurwitz: no stationary Gaussian")
    mean = -np.linalg.solve(A, c)
    cov = scipy.linalg.solve_continuous_lyapunov(A, -a)
    return mean, 0.5 * (cov + cov.T)


def gaussian_on_grid(lo, hi, n, mean, cov):
    """The Gaussian density at the cell centres, renormalised on the box (sum * dx * dy = 1)."""
    lo, hi, n, h = _box(lo, hi, n)
    x, y = cell_centres(lo, hi, n)
    X, Y = np.meshgrid(x - mean[0], y - mean[1], indexing="ij")
    P = np.linalg.inv(np.asarray(cov, float))
    q = P[0, 0] * X * X + 2 * P[0, 1] * X * Y + P[1, 1] * Y * Y
    return _normalise(np.exp(-0.5 * q), h)


def l1_error(density, lo, hi, n, mean, cov):
    r""":math:`\sum |p - p_{exact}|\,dx\,dy` with :math:`p_{exact}` the Gaussian at the cell
    centres normalised on the box (the density is renormalised too)."""
    lo, hi, n, h = _box(lo, hi, n)
    p = _normalise(np.asarray(density, float).reshape(n, n), h)
    return float(np.abs(p - gaussian_on_grid(lo, hi, n, mean, cov)).sum() * h[0] * h[1])


# ----------------------------------------------------------------------------- FiPy
def _import_fipy():
    """FiPy with the SciPy solver suite, never parsing ``sys.argv`` (the project's own importer)."""
    from stationary.backends.fipy import import_fipy

    return import_fipy()


FIPY_SCHEMES = ("exponential", "power", "hybrid", "upwind", "central")


def solve_fipy(A, c, a, lo, hi, n, scheme="exponential", *, max_sweeps=500, tol=1e-8,
               penalty=1.0):
    r"""Stationary density with FiPy's own finite-volume path.

    Equation, in FiPy's convention (``ConvectionTerm(u)`` is :math:`\nabla\cdot(u\phi)`,
    ``DiffusionTerm(G)`` is :math:`\nabla\cdot(G\nabla\phi)`):

    ``0 == DiffusionTerm(D) - <Scheme>ConvectionTerm(b) - ImplicitSourceTerm(K m) + K m``

    with :math:`D = a/2` a rank-2 ``FaceVariable`` (constant ``a``, so
    :math:`\tfrac12\partial_i\partial_j(a_{ij}p) = \nabla\cdot(D\nabla p)`), the drift
    :math:`b = A x_f + c` evaluated at the face centres as a rank-1 ``FaceVariable``, and
    :math:`m` the indicator of one *pinned* cell (the cell containing the drift's zero
    :math:`-A^{-1}c`, clipped to the box).  The last two terms are FiPy's documented way to
    fix an interior value (FAQ, "fixed value in the interior"), and they remove the
    singularity of the stationary system.  Because the discrete operator conserves mass
    (columns sum to zero), :math:`L p = K (p_m - 1) e_m` forces :math:`p_m = 1` and
    :math:`L p = 0` exactly for *any* :math:`K > 0`; so :math:`K` = ``penalty`` (default 1)
    times the largest diffusion/convection rate, which keeps the matrix well scaled (a huge
    :math:`K` makes FiPy's RHS-relative LU refinement test stop early).  The result is then
    normalised.  Walls: FiPy's default (no constraint) is zero flux for diffusion and
    convection; the off-diagonal entries of ``D`` are set to zero on exterior faces, because
    FiPy adds the cross-diffusion flux as an explicit source summed over *all* faces,
    including the walls.

    FiPy discretises the off-diagonal diffusion explicitly, so for a non-diagonal ``a`` the
    equation is swept (each sweep assembles and LU-factorises a new matrix) until the
    relative change of the normalised density is below ``tol`` (at most ``max_sweeps``).
    For a diagonal ``a`` one sweep is exact.  ``seconds`` covers mesh, variables, terms and
    all sweeps.

    ``scheme``: one of :data:`FIPY_SCHEMES` (FiPy's exponential, power-law, hybrid, upwind,
    central-difference convection terms).  The exponential scheme is Scharfetter–Gummel
    with the face-normal diffusion as the Péclet denominator: for diagonal ``a`` FiPy's
    ``exponential``/``upwind``/``central`` densities agree to round-off with ``stationary``'s
    ``sg``/``upwind``/``central`` (which take the drift as the average of the two cell-centre
    values; for affine drift that is the face-centre value FiPy uses).
    """
    fipy = _import_fipy()
    from fipy.solvers.scipy import LinearLUSolver

    terms = {
        "exponential": fipy.ExponentialConvectionTerm,
        "power": fipy.PowerLawConvectionTerm,
        "hybrid": fipy.HybridConvectionTerm,
        "upwind": fipy.UpwindConvectionTerm,
        "central": fipy.CentralDifferenceConvectionTerm,
    }
    if scheme not in terms:
        raise ValueError(f"scheme must be one of {FIPY_SCHEMES}, got {scheme!r}")
    A, c, a = _ou(A, c, a)
    lo, hi, n, h = _box(lo, hi, n)
    D = a / 2.0
    anisotropic = D[0, 1] != 0.0

    t0 = time.perf_counter()
    mesh = fipy.Grid2D(dx=h[0], dy=h[1], nx=n, ny=n) + ((lo[0],), (lo[1],))
    xf = np.asarray(mesh.faceCenters)                       # (2, nfaces)
    bface = fipy.FaceVariable(mesh=mesh, rank=1, value=A @ xf + c[:, None])
    Dvals = np.repeat(D[:, :, None], mesh.numberOfFaces, axis=2)
    exterior = np.asarray(mesh.exteriorFaces, bool)
    Dvals[0, 1, exterior] = 0.0
    Dvals[1, 0, exterior] = 0.0
    Dface = fipy.FaceVariable(mesh=mesh, rank=2, value=Dvals)

    # Pinned cell: nearest the drift's zero (the density's mode for OU), inside the box.
    target = np.clip(-np.linalg.solve(A, c), lo + 0.5 * h, hi - 0.5 * h)
    ij = np.floor((target - lo) / h).astype(int).clip(0, n - 1)
    pin = int(ij[0] + ij[1] * n)                             # FiPy cell ids: x fastest
    rate = np.max(np.diag(D) / h**2) * 4 + np.max(np.abs(A @ np.stack([lo, hi]).T + c[:, None])) / h.min()
    K = penalty * rate
    mvals = np.zeros(mesh.numberOfCells)
    mvals[pin] = K
    Km = fipy.CellVariable(mesh=mesh, value=mvals)

    p = fipy.CellVariable(mesh=mesh, value=1.0)
    eq = (0 == fipy.DiffusionTerm(coeff=Dface) - terms[scheme](coeff=bface)
          - fipy.ImplicitSourceTerm(coeff=Km) + Km)
    solver = LinearLUSolver(tolerance=1e-14, criterion="RHS", iterations=10)

    sweeps, change, residuals = 0, np.inf, []
    prev = None
    for sweeps in range(1, (max_sweeps if anisotropic else 1) + 1):
        residuals.append(float(eq.sweep(var=p, solver=solver)))
        cur = np.asarray(p.value, float)
        cur = cur / cur.sum()
        if prev is not None:
            change = float(np.abs(cur - prev).sum())
            if change < tol:
                break
        prev = cur
    seconds = time.perf_counter() - t0

    density = _normalise(np.asarray(p.value, float).reshape(n, n).T, h)   # FiPy (y, x) -> (x, y)
    return {
        "density": density,
        "seconds": seconds,
        "sweeps": sweeps,
        "last_change": change if anisotropic else 0.0,
        "converged": (not anisotropic) or change < tol,
        "sweep_residuals": residuals,
        "pinned_cell": (int(ij[0]), int(ij[1])),
        "scheme": scheme,
        "tool": f"fipy {fipy.__version__}",
    }


# ----------------------------------------------------------------------------- fplanck
def _version(dist):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


@contextlib.contextmanager
def _numpy_product_alias():
    """fplanck 0.2.2 calls ``np.product``, removed in NumPy 2; alias it to ``np.prod`` while
    fplanck runs, and remove the alias afterwards."""
    added = not hasattr(np, "product")
    if added:
        np.product = np.prod
    try:
        yield
    finally:
        if added:
            del np.product


def solve_fplanck(A, c, a, lo, hi, n):
    r"""Stationary density with ``fplanck`` (``fokker_planck(...).steady_state()``).

    fplanck solves :math:`\partial_t p = \sum_i \partial_i[D_i \partial_i p - (F_i/\gamma_i) p]`
    with :math:`D_i = k_B T_i/\gamma_i` (``temperature`` :math:`T_i` per axis, ``drag``
    :math:`\gamma`, ``force`` :math:`F`, Boltzmann's :math:`k_B` in SI units).  Mapping:
    ``drag = 1`` (so the drift is the force), ``force(x) = A x + c``, and
    ``temperature[i] = a_ii / (2 k_B)`` (so :math:`D_i = a_{ii}/2`).  fplanck's diffusion is
    diagonal: **it cannot represent an off-diagonal** ``a``; a non-diagonal ``a`` raises
    ``ValueError`` (benchmark fplanck on a diagonal, e.g. isotropic, ``a``).

    Grid.  fplanck's nodes are ``arange(N) * resolution`` centred on 0 with
    ``N = ceil(extent / resolution)``; we pass ``extent = hi - lo`` (shrunk by 1e-12 relative
    so the ceiling gives exactly ``n``) and ``resolution = (hi - lo) / n`` and shift the force
    by the box centre, so its nodes are exactly our cell centres.  Its reflecting boundary
    sets the rates out of the edge nodes to zero, i.e. a finite-volume scheme on our cells with
    zero-flux walls: no interpolation is needed.  Its face rates are
    :math:`D/h^2\,e^{\pm \bar F h/(2 k_B T)}` (square-root approximation, force averaged over the
    two nodes): the same stencil as ``stationary``'s ``scheme="sqra"`` (for diagonal ``a`` the
    two densities agree to round-off).

    ``seconds`` covers the constructor (per-node Python loop assembly) and ``steady_state()``
    (``eigs(k=1, sigma=0)`` shift-invert: SuperLU of the singular matrix itself).  NumPy 2
    removed ``np.product``, which fplanck 0.2.2 still calls; it is aliased to ``np.prod`` during
    the call.
    """
    import fplanck
    from scipy import constants

    A, c, a = _ou(A, c, a)
    if a[0, 1] != 0.0:
        raise ValueError("fplanck has only diagonal diffusion (one temperature per axis); got an off-diagonal a")
    lo, hi, n, h = _box(lo, hi, n)
    mid = 0.5 * (lo + hi)
    extent = (hi - lo) * (1 - 1e-12)
    temperature = np.diag(a) / (2 * constants.k)

    def force(x, y):
        X, Y = x + mid[0], y + mid[1]
        return np.array([A[0, 0] * X + A[0, 1] * Y + c[0], A[1, 0] * X + A[1, 1] * Y + c[1]])

    t0 = time.perf_counter()
    with _numpy_product_alias():
        sim = fplanck.fokker_planck(temperature=temperature, drag=1.0, extent=extent,
                                    resolution=h, force=force,
                                    boundary=fplanck.boundary.reflecting)
        t1 = time.perf_counter()
        steady = sim.steady_state()
    seconds = time.perf_counter() - t0

    if tuple(sim.Ngrid) != (n, n):
        raise RuntimeError(f"fplanck made a {tuple(sim.Ngrid)} grid, expected {(n, n)}")
    nodes = [sim.axes[k] + mid[k] for k in range(2)]
    centres = cell_centres(lo, hi, n)
    offset = max(float(np.max(np.abs(nodes[k] - centres[k]))) for k in range(2))
    if offset > 1e-9 * float(np.max(hi - lo)):
        raise RuntimeError(f"fplanck nodes are off our cell centres by {offset}")
    # eigs returns the vector up to sign; steady_state divides by its sum, so it is positive
    # unless the eigenvector has mixed signs (then report it).
    density = _normalise(steady, h)
    return {
        "density": density,
        "seconds": seconds,
        "seconds_assembly": t1 - t0,
        "seconds_eigs": seconds - (t1 - t0),
        "min_value": float(density.min()),
        "node_offset": offset,
        "tool": f"fplanck {_version('fplanck')}",
    }


# ----------------------------------------------------------------------------- plain SuperLU
def default_pin(L, shape=None):
    """Row to pin: the cell of smallest ``|L_rr|``, restricted to interior cells when the grid
    ``shape`` is given (the same rule as ``stationary``'s direct solver)."""
    diag = -np.asarray(L.diagonal(), float)
    if shape is not None:
        interior = np.zeros(tuple(shape), bool)
        interior[(slice(1, -1),) * len(shape)] = True
        diag = np.where(interior.ravel(), diag, np.inf)
    return int(np.argmin(diag))


def solve_superlu_plain(L, permc_spec="COLAMD", r=None, *, shape=None, cell_volume=1.0):
    r"""Stationary vector of an assembled ``L`` (``dp/dt = L p``, columns summing to zero) by a
    plain pinned SuperLU solve: row ``r`` of ``L`` is replaced by :math:`e_r^T` and the
    right-hand side is :math:`e_r`; ``splu(..., permc_spec=permc_spec)`` (``"COLAMD"``, the
    SciPy default, ``"MMD_AT_PLUS_A"``, ``"MMD_ATA"`` or ``"NATURAL"``).

    ``r`` defaults to :func:`default_pin` (pass ``shape`` to restrict it to interior cells).
    The vector is normalised so ``sum * cell_volume == 1``.  ``seconds`` covers pinning,
    factorisation and the triangular solves (not the assembly of ``L``).
    """
    L = sps.csr_matrix(L)
    N = L.shape[0]
    if r is None:
        r = default_pin(L, shape)
    t0 = time.perf_counter()
    keep = np.ones(N)
    keep[r] = 0.0
    M = (sps.diags(keep) @ L + sps.csr_matrix(([1.0], ([r], [r])), shape=(N, N))).tocsc()
    rhs = np.zeros(N)
    rhs[r] = 1.0
    t1 = time.perf_counter()
    lu = spla.splu(M, permc_spec=permc_spec)
    t2 = time.perf_counter()
    p = lu.solve(rhs)
    seconds = time.perf_counter() - t0
    p = p / (p.sum() * cell_volume)
    residual = float(np.abs(L @ p).sum() / max(np.abs(L.diagonal() * p).sum(), 1e-300))
    density = p.reshape(shape) if shape is not None else p
    return {
        "density": density,
        "seconds": seconds,
        "seconds_pin": t1 - t0,
        "seconds_factor": t2 - t1,
        "seconds_solve": seconds - (t2 - t0),
        "fill": float((lu.L.nnz + lu.U.nnz) / M.nnz),
        "permc_spec": permc_spec,
        "pinned_row": int(r),
        "residual": residual,
        "min_value": float(p.min()),
    }


# ----------------------------------------------------------------------------- check
def _stationary_matrix(A, c, a, lo, hi, n, scheme="sg"):
    """``stationary``'s assembled matrix for the same OU problem (for the SuperLU check)."""
    try:
        import stationary as st
    except ImportError:  # run from a checkout without installing: use the repository root
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import stationary as st

    A, c, a = _ou(A, c, a)
    sde = st.SDE(lambda U: U @ A.T + c, lambda U: np.broadcast_to(a, (len(U), 2, 2)), 2,
                 diffusion_divergence=lambda U: np.zeros((len(U), 2)))
    lo, hi, n, h = _box(lo, hi, n)
    t0 = time.perf_counter()
    op = st.assemble(sde, st.Grid(lo, hi, (n, n)), scheme=scheme)
    return op, time.perf_counter() - t0


def _main():
    A = np.array([[-1.0, 2.0], [-2.0, -0.5]])
    c = np.array([0.3, -0.2])
    a_full = np.array([[0.8, 0.3], [0.3, 0.5]])
    a_iso = 0.65 * np.eye(2)
    rows = []

    def box(a):
        mean, cov = gaussian_reference(A, c, a)
        half = 6.0 * float(np.sqrt(np.max(np.diag(cov))))
        return mean, cov, mean - half, mean + half

    for label, a in (("full a", a_full), ("isotropic a", a_iso)):
        mean, cov, lo, hi = box(a)
        print(f"\n{label}: a = {a.tolist()}, mean = {mean.round(4).tolist()}, box = {lo.round(3).tolist()}..{hi.round(3).tolist()}")
        errs = {}
        for n in (64, 128):
            h = (hi - lo) / n
            out = {}
            out["fipy exponential"] = solve_fipy(A, c, a, lo, hi, n)
            if label == "isotropic a":
                out["fplanck"] = solve_fplanck(A, c, a, lo, hi, n)
            op, t_asm = _stationary_matrix(A, c, a, lo, hi, n)
            for spec in ("COLAMD", "MMD_AT_PLUS_A"):
                res = solve_superlu_plain(op.matrix, spec, shape=(n, n), cell_volume=h[0] * h[1])
                res["seconds_assembly"] = t_asm
                out[f"stationary sg + superlu {spec}"] = res
            for name, res in out.items():
                e = l1_error(res["density"], lo, hi, n, mean, cov)
                errs.setdefault(name, []).append(e)
                extra = ""
                if "sweeps" in res:
                    extra = f" sweeps={res['sweeps']}"
                if "seconds_assembly" in res and name.startswith("stationary"):
                    extra = f" (+ assembly {res['seconds_assembly']:.3f} s)"
                print(f"  n={n:4d}  {name:38s} {res['seconds']:8.3f} s  L1 = {e:.3e}{extra}")
                rows.append((label, n, name, res["seconds"], e))
        for name, (e64, e128) in errs.items():
            ok = e128 < e64 and e128 < 2e-2
            print(f"  {name:38s} L1 ratio 64->128: {e64 / e128:5.2f}  {'ok' if ok else 'NOT DECREASING/SMALL'}")
            if not ok:
                raise SystemExit(f"check failed for {name} ({label})")
    return rows


if __name__ == "__main__":
    _main()
