"""Structure and accuracy of the finite-volume Fokker–Planck operator."""
import itertools

import numpy as np
import pytest
from scipy import linalg

from stationary import SDE, Grid, SDEError, GridError, assemble, solve_stationary, stationary_density
from stationary.operator import SCHEMES


def ou_sde(A, a, c=None):
    A, a = np.asarray(A, float), np.asarray(a, float)
    c = np.zeros(len(A)) if c is None else np.asarray(c, float)
    d = len(A)
    return SDE(lambda U: U @ A.T + c, lambda U: np.broadcast_to(a, (len(U), d, d)), d,
               diffusion_divergence=lambda U: np.zeros((len(U), d)))


def ou_reference(A, a, c=None):
    A = np.asarray(A, float)
    c = np.zeros(len(A)) if c is None else np.asarray(c, float)
    return -np.linalg.solve(A, c), linalg.solve_continuous_lyapunov(A, -np.asarray(a, float))


ROT_A = [[-1.0, 2.0], [-2.0, -0.5]]
ROT_a = [[0.8, 0.3], [0.3, 0.5]]


def state_dependent_sde():
    """Nonlinear drift, state-dependent anisotropic diffusion with cross terms (2-d)."""
    def drift(U):
        x, y = U[:, 0], U[:, 1]
        return np.stack([-x**3 + y - 0.3 * x, -y - x], axis=1)

    def diff(U):
        x, y = U[:, 0], U[:, 1]
        a11 = 0.5 + 0.2 * np.tanh(x)
        a22 = 0.4 + 0.1 * x**2
        a12 = 0.1 * np.sin(y)
        return np.stack([np.stack([a11, a12], -1), np.stack([a12, a22], -1)], 1)

    return SDE(drift, diff, 2)


def reference_matrix(sde, grid, scheme, cross):
    """Slow, loop-based assembly written straight from the flux definitions (2-d only)."""
    n0, n1 = grid.shape
    h = grid.spacing
    U = grid.points()
    b, a, div = sde.coefficients(U)
    D = 0.5 * a.reshape(n0, n1, 2, 2)
    beta = (b - 0.5 * div).reshape(n0, n1, 2)
    idx = lambda i, j: i * n1 + j
    L = np.zeros((grid.size, grid.size))
    Dax = np.stack([D[..., 0, 0], D[..., 1, 1]], -1).copy()
    if cross == "monotone":
        Dax[..., 0] -= np.abs(D[..., 0, 1]) * h[0] / h[1]
        Dax[..., 1] -= np.abs(D[..., 0, 1]) * h[1] / h[0]
    flux = SCHEMES[scheme][0]
    for i, j in itertools.product(range(n0), range(n1)):
        for k, (di, dj) in enumerate([(1, 0), (0, 1)]):
            i2, j2 = i + di, j + dj
            if i2 >= n0 or j2 >= n1:
                continue
            bf = 0.5 * (beta[i, j, k] + beta[i2, j2, k])
            Df = 0.5 * (Dax[i, j, k] + Dax[i2, j2, k])
            A_, B_ = (float(v[0]) for v in flux(np.array([bf]), np.array([Df]), h[k]))
            c, c2 = idx(i, j), idx(i2, j2)
            L[c2, c] += A_ / h[k]; L[c, c] -= A_ / h[k]
            L[c, c2] += B_ / h[k]; L[c2, c2] -= B_ / h[k]
            if cross == "central":
                j_ = 1 - k
                # cross flux -D_kj,f * d_j p on faces interior in j
                pos = [i, j]
                if not (1 <= pos[j_] <= grid.shape[j_] - 2):
                    continue
                Dkj = 0.5 * (D[i, j, k, j_] + D[i2, j2, k, j_])
                e = [0, 0]; e[j_] = 1
                terms = [((i + e[0], j + e[1]), 1), ((i2 + e[0], j2 + e[1]), 1), ((i - e[0], j - e[1]), -1), ((i2 - e[0], j2 - e[1]), -1)]
                for (ii, jj), s in terms:
                    gamma = -Dkj * s / (4 * h[j_])
                    L[c, idx(ii, jj)] -= gamma / h[k]
                    L[c2, idx(ii, jj)] += gamma / h[k]
    if cross == "monotone":
        for i, j in itertools.product(range(n0), range(n1)):
            for s in (1, -1):
                i2, j2 = i + 1, j + s
                if i2 >= n0 or not 0 <= j2 < n1:
                    continue
                w = lambda ii, jj: max(s * D[ii, jj, 0, 1], 0.0) / (h[0] * h[1])
                wf = 0.5 * (w(i, j) + w(i2, j2))
                c, c2 = idx(i, j), idx(i2, j2)
                L[c2, c] += wf; L[c, c] -= wf; L[c, c2] += wf; L[c2, c2] -= wf
    return L


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("cross", ["monotone", "central"])
def test_vectorised_assembly_equals_loop_reference(scheme, cross):
    sde = state_dependent_sde()
    grid = Grid([-2.0, -1.5], [2.0, 1.7], (7, 6))
    op = assemble(sde, grid, scheme=scheme, cross=cross)
    assert op.cross_stencil == cross
    ref = reference_matrix(sde, grid, scheme, cross)
    assert np.abs(op.matrix.toarray() - ref).max() <= 1e-12 * np.abs(ref).max()


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_columns_sum_to_zero_and_sign_structure(scheme):
    sde = state_dependent_sde()
    grid = Grid([-2.5, -2.5], [2.5, 2.5], (40, 36))
    op = assemble(sde, grid, scheme=scheme, cross="monotone")
    L = op.matrix
    colsum = np.abs(np.asarray(L.sum(axis=0))).max()
    assert colsum <= 1e-12 * np.abs(L.diagonal()).max()
    if SCHEMES[scheme][1]:
        off = L - __import__("scipy.sparse", fromlist=["diags"]).diags(L.diagonal())
        assert off.min() >= 0.0
        res = solve_stationary(op)
        assert res.density.min() >= 0.0
        assert res.monotone and res.success


def test_sg_is_exact_for_1d_linear_drift_constant_diffusion():
    """SG reproduces exp(-V/D) at the cell centres to round-off for b = -k(x - m), D const."""
    k, m, a = 1.7, 0.4, 0.6
    sde = SDE(lambda U: -k * (U - m), lambda U: np.full((len(U), 1, 1), a), 1)
    grid = Grid([-3.0], [4.0], (60,))
    res = stationary_density(sde, grid, scheme="sg")
    x = grid.centres[0]
    exact = np.exp(-k * (x - m) ** 2 / a)
    exact /= exact.sum() * grid.cell_volume
    assert np.abs(res.density / exact - 1).max() < 1e-10


def _gibbs_errors(sde, V, D, grids):
    errs = []
    for g in grids:
        res = stationary_density(sde, g)
        pts = g.points()
        exact = np.exp(-V(pts) / D).reshape(g.shape)
        exact /= exact.sum() * g.cell_volume
        errs.append(np.abs(res.density - exact).sum() * g.cell_volume)
    return np.array(errs)


def test_gibbs_density_1d_second_order():
    V = lambda U: U[:, 0] ** 4 / 4 - U[:, 0] ** 2 / 2  # double well
    D = 0.4
    sde = SDE(lambda U: -(U**3 - U), lambda U: np.full((len(U), 1, 1), 2 * D), 1)
    ns = np.array([50, 100, 200, 400])
    errs = _gibbs_errors(sde, V, D, [Grid([-3.0], [3.0], (n,)) for n in ns])
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert 1.7 <= slope <= 2.3, (errs, slope)


def test_gibbs_density_2d_second_order():
    V = lambda U: 0.25 * (U[:, 0] ** 2 - 1) ** 2 + 0.5 * U[:, 1] ** 2 + 0.3 * U[:, 0] * U[:, 1]
    def grad(U):
        x, y = U[:, 0], U[:, 1]
        return np.stack([x * (x**2 - 1) + 0.3 * y, y + 0.3 * x], 1)
    D = 0.5
    sde = SDE(lambda U: -grad(U), lambda U: np.broadcast_to(2 * D * np.eye(2), (len(U), 2, 2)), 2)
    ns = np.array([40, 80, 160])
    errs = _gibbs_errors(sde, V, D, [Grid([-3.5, -4.0], [3.5, 4.0], (n, n)) for n in ns])
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert 1.7 <= slope <= 2.3, (errs, slope)


@pytest.mark.parametrize("scheme", ["sg", "sqra"])
def test_rotational_ou_with_full_diffusion(scheme):
    sde = ou_sde(ROT_A, ROT_a)
    mean, cov = ou_reference(ROT_A, ROT_a)
    sd = np.sqrt(np.diag(cov))
    # +-5 sd: the truncated Gaussian mass (< 1e-6) is far below the tolerance
    res = stationary_density(sde, Grid(-5 * sd, 5 * sd, (256, 256)), scheme=scheme, cross="central")
    assert res.success
    assert np.abs(res.covariance - cov).max() / np.abs(cov).max() < 1e-3
    assert np.abs(res.mean - mean).max() / sd.max() < 1e-3


def test_rotational_ou_default_monotone_stencil_is_second_order():
    sde = ou_sde(ROT_A, ROT_a)
    mean, cov = ou_reference(ROT_A, ROT_a)
    sd = np.sqrt(np.diag(cov))
    errs = []
    for n in (64, 128, 256):
        res = stationary_density(sde, Grid(-5 * sd, 5 * sd, (n, n)))
        assert res.cross_stencil == "monotone" and res.min_density >= 0
        errs.append(np.abs(res.covariance - cov).max() / np.abs(cov).max())
    slope = -np.polyfit(np.log([64, 128, 256]), np.log(errs), 1)[0]
    assert abs(slope - 2) <= 0.3 and errs[-1] < 3e-3, (errs, slope)


def test_degenerate_axis_falls_back_to_upwind_and_says_so():
    # Noise only on the second coordinate; linear rotation-damping drift: hypoelliptic OU.
    A = [[-0.5, 1.0], [-1.0, -0.5]]
    a = [[0.0, 0.0], [0.0, 0.4]]
    sde = ou_sde(A, a)
    mean, cov = ou_reference(A, a)
    sd = np.sqrt(np.diag(cov))
    errs = []
    for n in (64, 128, 256):
        res = stationary_density(sde, Grid(-7 * sd, 7 * sd, (n, n)))
        errs.append(np.abs(res.covariance - cov).max() / np.abs(cov).max())
    assert res.degenerate_axes == (0,)
    assert any("axis 0" in w for w in res.info["warnings"])
    assert res.success and res.min_density >= 0
    slope = -np.polyfit(np.log([64, 128, 256]), np.log(errs), 1)[0]
    assert 0.7 <= slope <= 1.3, (errs, slope)  # first order: the upwind limit, as reported


def test_bad_sde_and_grid_input():
    with pytest.raises(SDEError, match="non-finite drift"):
        SDE(lambda U: U / 0.0 * 0.0, lambda U: np.eye(1)[None].repeat(len(U), 0), 1)
    with pytest.raises(SDEError, match="not symmetric"):
        SDE(lambda U: -U, lambda U: np.array([[[1.0, 0.5], [0.0, 1.0]]]).repeat(len(U), 0), 2)
    with pytest.raises(SDEError, match="indefinite"):
        SDE(lambda U: -U, lambda U: np.array([[[1.0, 2.0], [2.0, 1.0]]]).repeat(len(U), 0), 2)
    with pytest.raises(SDEError, match="shape"):
        SDE(lambda U: -U[:, :1], lambda U: np.eye(2)[None].repeat(len(U), 0), 2)
    # non-finite only away from the validation point: caught at assembly, naming the point
    sde = SDE(lambda U: -U + np.where(U[:, :1] > 1.5, np.inf, 0.0), lambda U: np.eye(2)[None].repeat(len(U), 0), 2)
    with pytest.raises(SDEError, match=r"non-finite drift at u = \["):
        assemble(sde, Grid([-2, -2], [2, 2], (8, 8)))
    with pytest.raises(GridError, match="non-positive extent"):
        Grid([0.0, 1.0], [1.0, 1.0], (10, 10))
    with pytest.raises(GridError, match="at least 3 cells"):
        Grid([0.0], [1.0], (0,))
    with pytest.raises(GridError, match="1 to 4"):
        Grid([0] * 5, [1] * 5, (4,) * 5)
    with pytest.raises(ValueError, match="unknown scheme 'foo'; choose from"):
        assemble(ou_sde(ROT_A, ROT_a), Grid([-1, -1], [1, 1], (5, 5)), scheme="foo")


def test_small_box_reports_boundary_mass():
    sde = ou_sde(ROT_A, ROT_a)
    res = stationary_density(sde, Grid([-0.5, -0.5], [0.5, 0.5], (40, 40)))
    assert not res.success and res.status == 2 and "outermost cells" in res.message


def test_grid_transfer_is_exact_for_log_linear_fields_and_checks_input():
    """Grid.transfer interpolates log f multilinearly: exp(c.x) is reproduced exactly on a finer
    grid of the same box, including the outer half-cells (linear extrapolation of log f)."""
    coarse = Grid((-1.0, 0.0, 2.0), (1.0, 3.0, 4.0), (6, 7, 5))
    fine = Grid(coarse.lower, coarse.upper, (12, 13, 10))
    c = np.array([1.5, -2.0, 0.7])
    f = np.exp(coarse.points() @ c).reshape(coarse.shape)
    g = coarse.transfer(f, fine)
    assert g.shape == fine.shape
    assert np.allclose(g.ravel(), np.exp(fine.points() @ c), rtol=1e-12)
    # zeros and tiny negatives (non-monotone undershoot) are floored, the result stays positive
    h = f.copy()
    h[0, 0, 0] = -1e-20
    assert np.all(coarse.transfer(h, fine) > 0)
    with pytest.raises(GridError):
        coarse.transfer(-f, fine)
    with pytest.raises(GridError):
        coarse.transfer(f, Grid((0, 0), (1, 1), (4, 4)))
