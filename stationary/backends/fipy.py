r"""FiPy as a second assembler of the stationary Fokker–Planck equation (d = 1, 2, 3).

The forward equation :math:`\partial_t p = -\nabla\cdot F` with
:math:`F = \beta p - D\nabla p`, :math:`D = a/2`, :math:`\beta_k = b_k - \tfrac12\sum_j \partial_j a_{kj}`
(MATH.md section 4) is written in FiPy's terms (``DiffusionTerm(G)`` is
:math:`\nabla\cdot(G\nabla\phi)`, ``ConvectionTerm(u)`` is :math:`\nabla\cdot(u\phi)`):

.. math::  \partial_t p = \nabla\cdot(D\nabla p) - \nabla\cdot(\beta p)

``TransientTerm() == DiffusionTerm(D) - ExponentialConvectionTerm(beta)``; the stationary
equation replaces the left side by a normalisation (below).

Mesh and coefficients
    ``Grid1D/2D/3D`` with the grid's spacing, shifted to its lower corner.  ``D`` is a rank-2
    and ``beta`` a rank-1 ``FaceVariable``.  With ``face_values="evaluate"`` (default) the
    SDE's ``(b, a, div a)`` are evaluated at the face centres (``mesh.faceCenters``) — an
    independent second-order discretisation of the coefficients; with ``"average"`` they
    are the average of the two adjacent cell-centre values, as the native operator does
    (then for diagonal ``a`` the FiPy and native ``exponential``/``sg`` densities agree to
    round-off).  Walls carry no flux: FiPy's default for faces without constraints.
Convection scheme
    ``exponential`` (default) is Scharfetter–Gummel with Péclet number
    :math:`P = \beta_n h / (n^T D n)`; also FiPy's ``power``, ``hybrid``, ``upwind`` and
    ``central`` (``"sg"`` is accepted as an alias of ``"exponential"``).
Anisotropic diffusion
    FiPy puts the normal part :math:`n^T D n` of the diffusion flux in the matrix and the
    tangential part :math:`n^T D t\,(t\cdot\nabla p)_f` in an *explicit* source built from the
    current iterate, with the face gradient the harmonic mean of the two cell gradients
    (set to 0 where they differ in sign; a nonlinear limiter).  FiPy sums that source over
    all faces including the walls, so the off-diagonal entries of ``D`` are set to zero on
    wall faces (zero flux).  The stationary equation is therefore swept (Picard) until the
    L1 change of the normalised density is below ``tol``; for diagonal ``a`` one sweep is exact.
Singular system
    The columns of the discrete operator sum to zero, so one equation is redundant.  FiPy's
    documented way to fix an interior value is used:

    ``0 == DiffusionTerm(D) - ExponentialConvectionTerm(beta) - ImplicitSourceTerm(K m) + K m``

    with :math:`m` the indicator of one interior cell :math:`r` (the one of smallest
    :math:`|\beta|`, near the drift's zero).  Summing all rows, mass conservation leaves
    :math:`K(1 - p_r)|c| = 0`, so :math:`p_r = 1` and :math:`Lp = 0` exactly for any
    :math:`K > 0`; :math:`K` is one times the largest rate of the operator (a huge ``K`` stops
    FiPy's RHS-relative LU refinement early).  The result is normalised afterwards.  No
    transient march is used unless the user runs :meth:`FipyProblem.transient_equation`.

Checks
    :func:`solve_fipy` reads FiPy's assembled matrix back (``eq.cacheMatrix()``), removes the
    pin, divides by the cell volume and reorders FiPy's cells (axis 0 fastest) into the
    grid's C order, giving ``L`` with :math:`dp/dt = Lp`.  For anisotropic ``a`` the explicit
    tangential source is added as a matrix: FiPy's own source expression with the limiter's
    ratio harmonic/arithmetic frozen at the solution, which is linear, reproduces FiPy's source
    at the solution to round-off (checked) and is read off column by column with
    :math:`5^d` coloured probes.  :func:`stationary.solve.result_from_vector` then computes the
    residual, boundary mass, irreducibility and sign checks exactly as for the native backend.

FiPy is imported lazily, with ``FIPY_SOLVERS=scipy`` and ``sys.argv`` hidden, because FiPy
reads both when it is first imported.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sps

from ..grid import Grid
from ..sde import checked_coefficients

__all__ = ["FipyProblem", "FipyError", "fipy_equation", "solve_fipy", "import_fipy", "FIPY_SCHEMES", "SCHEME_ALIASES"]

#: FiPy convection schemes by name -> FiPy term class name.
FIPY_SCHEMES = {
    "exponential": "ExponentialConvectionTerm",
    "power": "PowerLawConvectionTerm",
    "hybrid": "HybridConvectionTerm",
    "upwind": "UpwindConvectionTerm",
    "central": "CentralDifferenceConvectionTerm",
}
#: Native scheme names accepted for the FiPy backend.
SCHEME_ALIASES = {"sg": "exponential"}
FACE_VALUES = ("evaluate", "average")
_PROBE_PERIOD = 5  # the explicit anisotropy source couples cells at most 2 apart per axis

_fipy = None


class FipyError(ValueError):
    """The problem cannot be represented with FiPy (e.g. a 4-d grid) or FiPy is missing."""


def import_fipy():
    """Import FiPy with the SciPy solver suite, without letting it parse ``sys.argv``.

    FiPy reads ``FIPY_SOLVERS`` and the program's command line (``--scipy``, ``--petsc``,
    ...) when first imported; both are set here so the caller's arguments are never seen.
    """
    global _fipy
    if _fipy is None:
        os.environ["FIPY_SOLVERS"] = "scipy"
        argv = sys.argv
        sys.argv = sys.argv[:1]
        try:
            with warnings.catch_warnings():  # FiPy 4.0.3 imports numpy.core (deprecated in NumPy 2)
                warnings.simplefilter("ignore", DeprecationWarning)
                import fipy
                import fipy.solvers.scipy  # noqa: F401
        except ImportError as exc:
            raise FipyError("the FiPy backend needs fipy: pip install 'stationary[fipy]'") from exc
        finally:
            sys.argv = argv
        _fipy = fipy
    return _fipy


def _scheme_name(scheme: str) -> str:
    name = SCHEME_ALIASES.get(scheme, scheme)
    if name not in FIPY_SCHEMES:
        raise FipyError(
            f"unknown FiPy convection scheme {scheme!r}; choose from {sorted(FIPY_SCHEMES)} (or 'sg' = 'exponential')"
        )
    return name


def _mesh(fipy, grid: Grid):
    d, h, n, lo = grid.ndim, grid.spacing, grid.shape, grid.lower
    if d == 1:
        mesh = fipy.Grid1D(dx=h[0], nx=n[0])
    elif d == 2:
        mesh = fipy.Grid2D(dx=h[0], dy=h[1], nx=n[0], ny=n[1])
    elif d == 3:
        mesh = fipy.Grid3D(dx=h[0], dy=h[1], dz=h[2], nx=n[0], ny=n[1], nz=n[2])
    else:
        raise FipyError(f"FiPy has no {d}-d grids; use the native backend")
    return mesh + tuple((v,) for v in lo)


def _permutation(grid: Grid) -> np.ndarray:
    """``perm[c]`` = FiPy cell id of the grid's C-order cell ``c`` (FiPy: axis 0 fastest)."""
    return np.arange(grid.size).reshape(grid.shape[::-1]).T.ravel()


@dataclass
class FipyProblem:
    r"""The Fokker–Planck equation of an SDE as FiPy objects.

    Attributes
    ----------
    mesh : fipy.Grid1D | fipy.Grid2D | fipy.Grid3D
    var : fipy.CellVariable
        The density (FiPy cell order: axis 0 fastest; see :meth:`to_native`).
    equation : fipy term
        ``0 == DiffusionTerm(D) - <Scheme>ConvectionTerm(beta) - ImplicitSourceTerm(K m) + K m``
        (pinned stationary equation).
    diffusion : fipy.FaceVariable
        :math:`D = a/2`, rank 2, off-diagonals zero on wall faces.
    drift : fipy.FaceVariable
        :math:`\beta = b - \tfrac12\nabla\cdot a`, rank 1.
    pin : int
        FiPy id of the pinned cell; ``penalty`` is :math:`K`.
    anisotropic : bool
        Whether ``D`` has non-zero off-diagonal entries (then sweeps are needed).
    """

    sde: object
    grid: Grid
    scheme: str
    mesh: object
    var: object
    equation: object
    diffusion: object
    drift: object
    pin: int
    penalty: float
    anisotropic: bool
    face_values: str
    seconds: dict = field(default_factory=dict)
    _terms: dict = field(default_factory=dict, repr=False)

    @property
    def fipy(self):
        return import_fipy()

    def convection_term(self):
        """A fresh ``<Scheme>ConvectionTerm(beta)``."""
        return getattr(self.fipy, FIPY_SCHEMES[self.scheme])(coeff=self.drift)

    def transient_equation(self):
        r"""``TransientTerm() == DiffusionTerm(D) - <Scheme>ConvectionTerm(beta)``: the
        time-dependent Fokker–Planck equation :math:`\partial_t p = \nabla\cdot(D\nabla p - \beta p)`
        with zero-flux walls, for use in one's own FiPy code (e.g. ``eq.solve(var, dt=...)``
        from an initial density set with :meth:`set_density`).  Mass-conservative."""
        fipy = self.fipy
        return fipy.TransientTerm() == fipy.DiffusionTerm(coeff=self.diffusion) - self.convection_term()

    def to_native(self, values=None) -> np.ndarray:
        """A FiPy cell array (default: ``var``) as a field of shape ``grid.shape`` (C order)."""
        values = np.asarray(self.var.value if values is None else values, dtype=float)
        return values.reshape(self.grid.shape[::-1]).T.copy()

    def from_native(self, field_) -> np.ndarray:
        """A field of shape ``grid.shape`` as a flat FiPy cell array."""
        return np.asarray(field_, dtype=float).reshape(self.grid.shape).T.ravel()

    def set_density(self, field_) -> None:
        """Set ``var`` from a field of shape ``grid.shape``."""
        self.var.setValue(self.from_native(field_))


def fipy_equation(sde, grid: Grid, scheme: str = "exponential", face_values: str = "evaluate", penalty: float = 1.0) -> FipyProblem:
    r"""Build the pinned stationary Fokker–Planck equation of ``sde`` on ``grid`` with FiPy.

    Parameters
    ----------
    sde : stationary.SDE
        Supplies ``coefficients(U) -> (b, a, div a)``.
    grid : Grid
        1 to 3 dimensions (FiPy has no 4-d grids).
    scheme : {"exponential", "power", "hybrid", "upwind", "central"} or "sg"
        FiPy convection term.
    face_values : {"evaluate", "average"}
        Coefficients at face centres, or averaged from the two adjacent cell centres.
    penalty : float
        :math:`K` in units of the largest rate :math:`2\sum_k \max D_{kk}/h_k^2 + \sum_k \max|\beta_k|/h_k`.

    Returns
    -------
    FipyProblem
        Holds ``equation`` (:math:`0 = \nabla\cdot(D\nabla p) - \nabla\cdot(\beta p) - K m (p - 1)`),
        ``var``, ``mesh``, the face coefficients and :meth:`FipyProblem.transient_equation`.
    """
    if grid.ndim > 3:
        raise FipyError(f"FiPy has no {grid.ndim}-d grids; use the native backend")
    if grid.ndim != sde.dim:
        raise FipyError(f"grid has {grid.ndim} dimensions, the SDE {sde.dim}")
    if face_values not in FACE_VALUES:
        raise FipyError(f"unknown face_values {face_values!r}; choose from {list(FACE_VALUES)}")
    if not (np.isfinite(penalty) and penalty > 0):
        raise FipyError(f"penalty must be a positive number, got {penalty!r}")
    scheme = _scheme_name(scheme)
    fipy = import_fipy()
    d, h = grid.ndim, grid.spacing
    t0 = time.perf_counter()
    mesh = _mesh(fipy, grid)
    nf = int(mesh.numberOfFaces)
    id1, id2 = (np.asarray(i, dtype=int) for i in mesh._adjacentCellIDs)
    exterior = np.asarray(mesh.exteriorFaces, dtype=bool)
    if face_values == "evaluate":
        b, a, div = checked_coefficients(sde, np.asarray(mesh.faceCenters, dtype=float).T)
    else:
        # Cell centres in FiPy order, then the two-cell average (wall faces: id1 == id2).
        bc, ac, dc = checked_coefficients(sde, np.asarray(mesh.cellCenters, dtype=float).T)
        b, a, div = (0.5 * (x[id1] + x[id2]) for x in (bc, ac, dc))
    t1 = time.perf_counter()
    Dv = np.ascontiguousarray(np.moveaxis(0.5 * a, 0, -1))  # (d, d, nf)
    for k in range(d):
        for j in range(d):
            if j != k:
                Dv[k, j, exterior] = 0.0
    beta = (b - 0.5 * div).T  # (d, nf)
    anisotropic = bool(d > 1 and np.any([np.any(Dv[k, j]) for k in range(d) for j in range(d) if j != k]))
    D = fipy.FaceVariable(mesh=mesh, rank=2, value=Dv)
    B = fipy.FaceVariable(mesh=mesh, rank=1, value=beta)

    # Pin: the interior cell whose mean face drift is smallest (near the density's mode).
    cf = np.asarray(mesh.cellFaceIDs)  # (faces per cell, ncells)
    cell_beta = np.linalg.norm(beta[:, cf].mean(axis=1), axis=0)
    interior = ~grid.boundary_mask()
    interior_fipy = interior.T.ravel()
    pin = int(np.argmin(np.where(interior_fipy, cell_beta, np.inf)))
    rate = 2.0 * sum(np.abs(Dv[k, k]).max() / h[k] ** 2 for k in range(d)) + sum(np.abs(beta[k]).max() / h[k] for k in range(d))
    K = penalty * float(rate if rate > 0 else 1.0)
    m = np.zeros(mesh.numberOfCells)
    m[pin] = K
    Km = fipy.CellVariable(mesh=mesh, value=m)
    var = fipy.CellVariable(mesh=mesh, value=1.0, name="p")
    dterm = fipy.DiffusionTerm(coeff=D)
    cterm = getattr(fipy, FIPY_SCHEMES[scheme])(coeff=B)
    eq = 0 == dterm - cterm - fipy.ImplicitSourceTerm(coeff=Km) + Km
    t2 = time.perf_counter()
    return FipyProblem(
        sde=sde, grid=grid, scheme=scheme, mesh=mesh, var=var, equation=eq, diffusion=D, drift=B,
        pin=pin, penalty=K, anisotropic=anisotropic, face_values=face_values,
        seconds={"coefficients": t1 - t0, "setup": (t2 - t1)}, _terms={"diffusion": dterm, "convection": cterm},
    )


def _frozen_anisotropy(prob: FipyProblem, p_at: np.ndarray):
    r"""FiPy's explicit tangential-diffusion source with the limiter frozen at ``p_at``, as a
    linear map ``q -> source(q)`` (a callable on FiPy-ordered arrays).

    FiPy: ``AddOverFaces(((grad q)_f^{harm} . R)[1:] . coeff[1:]) * V``.  The harmonic face
    value of each gradient component is :math:`w\,\bar g` with :math:`\bar g` the arithmetic
    mean and :math:`w = g_1 g_2/\bar g^2` (0 where :math:`g_1 g_2 \le 0`); freezing :math:`w`
    makes the source linear and equal to FiPy's at ``p_at``.
    """
    fipy = import_fipy()
    from fipy.variables.addOverFacesVariable import _AddOverFacesVariable

    mesh, dterm = prob.mesh, prob._terms["diffusion"]
    probe = fipy.CellVariable(mesh=mesh, value=p_at)
    g = np.asarray(probe.grad.value, dtype=float)  # (d, ncells)
    id1, id2 = (np.asarray(i, dtype=int) for i in mesh._adjacentCellIDs)
    g1, g2 = g[:, id1], g[:, id2]
    gbar = 0.5 * (g1 + g2)
    prod = g1 * g2
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(prod > 0, prod / np.where(gbar != 0, gbar, 1.0) ** 2, 0.0)
    W = fipy.FaceVariable(mesh=mesh, rank=1, value=w)
    coeff = dterm._getGeomCoeff(probe)
    R = dterm._getRotationTensor(mesh)
    gradients = (probe.grad.arithmeticFaceValue * W).dot(R)
    source = _AddOverFacesVariable(gradients[1:].dot(coeff[1:])) * mesh.cellVolumes

    def apply(q):
        probe.setValue(np.asarray(q, dtype=float))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(source.value, dtype=float).copy()

    return apply


def _probe_matrix(apply, grid: Grid) -> sps.csr_matrix:
    """Sparse matrix (FiPy order) of a linear local map whose columns reach at most 2 cells per axis."""
    d, shape, P = grid.ndim, grid.shape, _PROBE_PERIOD
    idx_f = np.indices(shape[::-1]).reshape(d, -1)[::-1]  # FiPy cell ids -> (i0, ..., i_{d-1})
    strides = np.concatenate([[1], np.cumprod(shape[:-1])]).astype(int)
    rows, cols, vals = [], [], []
    for colour in np.ndindex(*(P,) * d):
        c = np.array(colour)[:, None]
        mask = np.all(idx_f % P == c, axis=0)
        col_of_row = idx_f + ((c - idx_f + 2) % P) - 2  # the colour's cell within 2 of each row
        valid = np.all((col_of_row >= 0) & (col_of_row < np.array(shape)[:, None]), axis=0)
        y = apply(mask.astype(float))
        nz = valid & (y != 0)
        rows.append(np.flatnonzero(nz))
        cols.append((col_of_row[:, nz] * strides[:, None]).sum(axis=0))
        vals.append(y[nz])
    n = grid.size
    return sps.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def solve_fipy(
    sde,
    grid: Grid,
    scheme: str = "exponential",
    *,
    sweeps: int = 200,
    tol: float = 1e-10,
    face_values: str = "evaluate",
    penalty: float = 1.0,
    residual_tol: float = 1e-8,
    boundary_mass_tol: float = 1e-4,
):
    r"""Stationary density through FiPy, checked like the native solve.

    Solves ``0 == DiffusionTerm(D) - <Scheme>ConvectionTerm(beta) - ImplicitSourceTerm(K m) + K m``
    (see :func:`fipy_equation`) with FiPy's SciPy ``LinearLUSolver`` (tolerance 1e-14 on the
    RHS-relative residual), sweeping while ``D`` is anisotropic until the L1 change of the
    normalised density is below ``tol`` (at most ``sweeps``), then rebuilds the discrete
    operator :math:`L` (:math:`dp/dt = Lp`) from FiPy's matrix and passes it, with the
    density, to :func:`stationary.solve.result_from_vector`.

    Parameters
    ----------
    sde, grid, scheme, face_values, penalty
        As for :func:`fipy_equation`.
    sweeps : int
        Largest number of Picard sweeps (anisotropic ``D`` only).
    tol : float
        Sweep stopping tolerance on :math:`\|p_k - p_{k-1}\|_1` of the normalised cell values.
    residual_tol, boundary_mass_tol : float
        The success criteria of :func:`stationary.solve.solve_stationary`.

    Returns
    -------
    StationaryResult
        ``method="fipy-lu"``, ``scheme="fipy-<scheme>"``; ``info`` holds ``backend``, ``sweeps``,
        ``last_change``, ``pinned_cell`` and how the check matrix was obtained.
    """
    from ..operator import FokkerPlanckOperator
    from ..solve import result_from_vector

    prob = fipy_equation(sde, grid, scheme=scheme, face_values=face_values, penalty=penalty)
    fipy = import_fipy()
    solver = fipy.solvers.scipy.LinearLUSolver(tolerance=1e-14, criterion="RHS", iterations=10)
    eq, var, mesh = prob.equation, prob.var, prob.mesh
    eq.cacheMatrix()
    eq.cacheRHSvector()
    V = float(grid.cell_volume)
    t0 = time.perf_counter()
    prev = None
    change = 0.0
    max_sweeps = max(1, int(sweeps)) if prob.anisotropic else 1
    n_sweeps = 0
    p_before = np.asarray(var.value, dtype=float).copy()
    for n_sweeps in range(1, max_sweeps + 1):
        p_before = np.asarray(var.value, dtype=float).copy()
        with np.errstate(divide="ignore", invalid="ignore"):  # FiPy's 3-d rotation tensor divides by 0 inside a where
            eq.sweep(var=var, solver=solver)
        cur = np.asarray(var.value, dtype=float)
        cur = cur / cur.sum()
        if prev is not None:
            change = float(np.abs(cur - prev).sum())
            if change < tol:
                break
        prev = cur.copy()
    t1 = time.perf_counter()
    converged = (not prob.anisotropic) or change < tol
    info = {"backend": f"fipy {fipy.__version__}", "sweeps": n_sweeps, "last_change": change,
            "face_values": face_values, "penalty": prob.penalty}
    notes = []

    # --- the operator FiPy solved, in the grid's order -------------------------------------
    S = sps.csr_matrix(eq.matrix.matrix, dtype=float, copy=True)  # V * (L_implicit - K m m^T)
    S = (S + sps.csr_matrix(([prob.penalty * V], ([prob.pin], [prob.pin])), shape=S.shape)).tocsr()
    if prob.anisotropic:
        rhs = np.asarray(eq.RHSvector, dtype=float).copy()
        rhs[prob.pin] += prob.penalty * V  # what remains is FiPy's explicit anisotropy source at p_before
        apply = _frozen_anisotropy(prob, p_before)
        frozen = apply(p_before)
        scale = max(np.abs(rhs).max(), np.abs(frozen).max(), 1e-300)
        sign = 1.0 if np.abs(rhs - frozen).max() <= np.abs(rhs + frozen).max() else -1.0
        mismatch = float(np.abs(rhs - sign * frozen).max() / scale)
        info["anisotropy_source_mismatch"] = mismatch
        if mismatch < 1e-6:  # round-off of the face weights; a wrong sign or stencil gives O(1)
            # At the fixed point S p = rhs(p): the full operator is S - (explicit source as a matrix).
            S = (S - sign * _probe_matrix(apply, grid)).tocsr()
            info["check_matrix"] = "FiPy matrix + explicit anisotropy source with the limiter frozen at the solution"
            cross = "fipy-explicit"
        else:
            from ..operator import assemble

            notes.append(
                f"could not reproduce FiPy's anisotropy source (mismatch {mismatch:.1e}); "
                "checks use the native operator (sg, central cross stencil)"
            )
            info["check_matrix"] = "native assemble (fallback)"
            native = assemble(sde, grid, scheme="sg", cross="central")
            S = native.matrix.tocsr()[np.argsort(_permutation(grid))][:, np.argsort(_permutation(grid))] * V
            cross = "fipy-explicit"
    else:
        info["check_matrix"] = "FiPy matrix"
        cross = "none"
    perm = _permutation(grid)
    L = (S[perm][:, perm] / V).tocsr()
    L.eliminate_zeros()
    colsum = np.abs(np.asarray(L.sum(axis=0))).max()
    info["max_column_sum"] = float(colsum / max(sps.linalg.norm(L, np.inf), 1e-300))
    off = L - sps.diags(L.diagonal())
    monotone = bool(off.nnz == 0 or off.data.min() >= 0)
    t2 = time.perf_counter()

    # --- face diagnostics (Péclet numbers per axis) ----------------------------------------
    h = grid.spacing
    normals = np.asarray(mesh.faceNormals, dtype=float)
    axis_of_face = np.argmax(np.abs(normals), axis=0)
    Dv, bv = np.asarray(prob.diffusion.value), np.asarray(prob.drift.value)
    interior = ~np.asarray(mesh.exteriorFaces, dtype=bool)
    degenerate, upwind_frac, max_pe = [], [], []
    for k in range(grid.ndim):
        sel = interior & (axis_of_face == k)
        Dn, bn = Dv[k, k, sel], bv[k, sel]
        with np.errstate(divide="ignore", invalid="ignore"):
            pe = np.where(Dn > 0, np.abs(bn) * h[k] / Dn, np.where(bn != 0, np.inf, 0.0))
        degenerate.append(bool(np.all(Dn <= 0)))
        upwind_frac.append(float(np.mean(pe > 2)) if pe.size else 0.0)
        max_pe.append(float(pe.max()) if pe.size else 0.0)
    if prob.anisotropic:
        notes.append("FiPy treats off-diagonal diffusion explicitly (Picard sweeps, harmonic-mean tangential gradient)")
    if not converged:
        info["fallback_reason"] = f"FiPy sweeps did not converge in {n_sweeps} sweeps (last change {change:.2e} > {tol:.0e})"
    op = FokkerPlanckOperator(
        matrix=L, grid=grid, scheme=f"fipy-{prob.scheme}", cross_stencil=cross, monotone=monotone,
        degenerate_axes=tuple(k for k in range(grid.ndim) if degenerate[k]), upwind_fraction=tuple(upwind_frac),
        max_peclet=tuple(max_pe), seconds={**prob.seconds, "check_matrix": t2 - t1}, notes=tuple(notes),
    )
    info["pinned_cell"] = tuple(int(i) for i in np.unravel_index(int(np.argsort(perm)[prob.pin]), grid.shape))
    return result_from_vector(op, prob.to_native().ravel(), "fipy-lu", t1 - t0, info,
                              residual_tol=residual_tol, boundary_mass_tol=boundary_mass_tol)
