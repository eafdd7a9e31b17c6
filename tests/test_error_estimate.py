"""Grid error estimates (Richardson, stationary.richardson) and spectral gaps (stationary.spectral)
against exact Gaussian invariant laws.

Claims (from the issue and the schemes' theory): the estimated L1 and covariance errors of the
fine solution are within a factor 2 of the true ones, and Richardson extrapolation with the
observed (or, on two grids, the nominal second) order cuts the error at least 5x.  The true
density is the exact cell average of the Gaussian (2-point Gauss–Legendre per axis, error O(h^4)).
"""
import itertools

import numpy as np
import pytest
from scipy.special import roots_legendre

import stationary as st
from stationary.cases import load_case
from stationary.richardson import restrict
from stationary.spectral import relaxation_time


def ou(A, a, c=None):
    A, a = np.asarray(A, float), np.asarray(a, float)
    d = len(A)
    c = np.zeros(d) if c is None else np.asarray(c, float)
    return st.SDE(lambda U: U @ A.T + c, lambda U: np.broadcast_to(a, (len(U), d, d)), d,
                  diffusion_divergence=lambda U: np.zeros((len(U), d)), constant_diffusion=True)


A3 = [[-1.0, 0.4, 0.0], [-0.4, -0.8, 0.3], [0.0, -0.2, -1.2]]
a3 = [[1.0, 0.3, 0.1], [0.3, 0.8, 0.2], [0.1, 0.2, 1.2]]  # full diffusion
A4 = [[-1.0, 0.3, 0, 0.1], [-0.3, -0.9, 0.2, 0], [0, -0.2, -1.1, 0.3], [0.1, 0, -0.3, -1.0]]
a4 = np.diag([1.0, 0.9, 1.1, 1.0]) + 0.1 * (np.ones((4, 4)) - np.eye(4))


def cell_averages(grid, mean, cov):
    x, w = roots_legendre(2)
    P = np.linalg.inv(cov)
    norm = 1.0 / np.sqrt((2 * np.pi) ** grid.ndim * np.linalg.det(cov))
    h = grid.spacing
    C = grid.points() - mean
    out = np.zeros(len(C))
    for idx in itertools.product(range(2), repeat=grid.ndim):
        X = C + np.array([x[i] * h[k] / 2 for k, i in enumerate(idx)])
        out += np.prod([w[i] / 2 for i in idx]) * norm * np.exp(-0.5 * np.einsum("ni,ij,nj->n", X, P, X))
    return out.reshape(grid.shape)


def solve_and_compare(sde, n, width=5.0):
    mean, cov, _ = st.linear_gaussian_reference(sde)
    sd = np.sqrt(np.diag(cov))
    grid = st.Grid(mean - width * sd, mean + width * sd, (n,) * sde.dim)
    res = st.stationary_density(sde, grid)
    if res.status == 2 and grid.spacing.max() / sd.min() > 0.5:
        # On coarse 4-d grids the outermost layer (+-4.4..5 sd) holds ~1e-4 of the exact Gaussian
        # mass itself: the boundary check fires on the layer's width, not on truncation.
        assert res.mass_at_boundary < 2e-4, res.message
    else:
        assert res.success, res.message
    e = res.error
    g2 = e.coarse_grids[0]
    out = {
        "l1_true": np.abs(res.density - cell_averages(grid, mean, cov)).sum() * grid.cell_volume,
        "l1_est": e.l1_error,
        "l1_extrap": np.abs(e.extrapolated_density - cell_averages(g2, mean, cov)).sum() * g2.cell_volume,
        "cov_true": np.abs(res.covariance - cov).max(),
        "cov_est": e.covariance_error.max(),
        "cov_extrap": np.abs(e.extrapolated_covariance - cov).max(),
    }
    return res, out


def assert_factor_two(o):
    assert 0.5 <= o["l1_est"] / o["l1_true"] <= 2.0, o
    assert 0.5 <= o["cov_est"] / o["cov_true"] <= 2.0, o


def test_lq_wgan_three_grids_observed_order():
    res, o = solve_and_compare(load_case("lq-wgan").sde(), 128)
    e = res.error
    assert e.order_source == "observed" and len(e.coarse_grids) == 2
    assert abs(e.order - 2.0) <= 0.3, e.order  # SG is second order on this smooth problem
    assert_factor_two(o)
    assert o["l1_true"] >= 5 * o["l1_extrap"], o
    assert o["cov_true"] >= 5 * o["cov_extrap"], o
    # mean: exact to round-off on the symmetric box, and so is the estimate
    assert e.mean_error.max() < 1e-12


def test_ou_3d_full_diffusion():
    res, o = solve_and_compare(ou(A3, a3, [0.2, -0.1, 0.3]), 64)
    assert res.error.order_source == "observed" and res.method == "gmres"
    assert_factor_two(o)
    assert o["l1_true"] >= 5 * o["l1_extrap"], o
    assert o["cov_true"] >= 5 * o["cov_extrap"], o


def test_ou_4d_two_grids_assumed_order():
    res, o = solve_and_compare(ou(A4, a4), 16)
    e = res.error
    # 16^4 halves to 8^4 but not again: two grids, the nominal order, and it says so.
    assert e.order_source == "assumed" and e.order == 2.0 and len(e.coarse_grids) == 1
    assert any("nominal order" in n for n in e.notes)
    assert_factor_two(o)
    assert o["l1_true"] >= 5 * o["l1_extrap"], o
    assert o["cov_true"] >= 5 * o["cov_extrap"], o


@pytest.mark.slow
def test_ou_4d_three_grids_at_a_million_cells():
    """32^4 (10^6 cells, GMRES + AMG started from the 16^4 solution): observed order, estimate
    within 2x, extrapolation 5x better (measured: 0.81, 6.0x in L1, 5.5x in covariance)."""
    res, o = solve_and_compare(ou(A4, a4), 32)
    e = res.error
    assert e.order_source == "observed" and len(e.coarse_grids) == 2
    assert res.info["nested_iteration"] == [[8] * 4, [16] * 4]
    assert_factor_two(o)
    assert o["l1_true"] >= 5 * o["l1_extrap"], o
    assert o["cov_true"] >= 5 * o["cov_extrap"], o


def test_restrict_conserves_mass_and_block_constants():
    rng = np.random.default_rng(3)
    p = rng.random((8, 6, 4))
    r = restrict(p)
    assert r.shape == (4, 3, 2)
    assert np.isclose(r.sum() * 8, p.sum())
    blocks = np.kron(r, np.ones((2, 2, 2)))
    np.testing.assert_allclose(restrict(blocks), r)
    with pytest.raises(ValueError):
        restrict(np.ones((5, 4)))


def test_result_carries_the_estimate_and_can_skip_it():
    sde = load_case("lq-wgan").sde()
    mean, cov, _ = st.linear_gaussian_reference(sde)
    sd = np.sqrt(np.diag(cov))
    grid = st.Grid(mean - 5 * sd, mean + 5 * sd, (64, 64))
    res = st.stationary_density(sde, grid)
    d = res.to_dict()
    assert d["error"]["order_source"] == "observed" and d["error"]["coarse_shapes"] == [[32, 32], [16, 16]]
    assert "grid error: order" in repr(res)
    assert all(r.error is None for r in res.error.coarse_results)
    assert st.stationary_density(sde, grid, error_estimate=False).error is None
    # odd axis: no block restriction, moments only, and it says so
    odd = st.stationary_density(sde, st.Grid(grid.lower, grid.upper, (63, 64)))
    assert odd.error.l1_error is None and odd.error.extrapolated_density is None
    assert odd.error.order_source == "assumed" and any("odd axis" in n for n in odd.error.notes)


def _slope(ns, errs):
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0]


def test_spectral_gap_1d_ou():
    """du = -k u dt + sqrt(2D) dW: Fokker–Planck spectrum {-n k}, gap k; SG converges at order 2."""
    k, D = 0.7, 0.5
    sde = st.SDE(lambda U: -k * U, lambda U: np.full((len(U), 1, 1), 2 * D), 1)
    sd = np.sqrt(D / k)
    ns, errs = (100, 200, 400), []
    for n in ns:
        g = relaxation_time(st.assemble(sde, st.Grid([-7 * sd], [7 * sd], (n,))))
        errs.append(abs(g.gap - k) / k)
        assert abs(g.null_eigenvalue) < 1e-10
    assert abs(_slope(ns, errs) - 2) <= 0.3, errs
    assert errs[-1] < 1e-3, errs
    assert np.isclose(g.relaxation_time, 1 / g.gap)
    # the next modes: -2k, -3k
    np.testing.assert_allclose(np.sort(-g.eigenvalues.real)[1:4], [k, 2 * k, 3 * k], rtol=1e-3)


def test_spectral_gap_2d_ou_on_result():
    A = np.array([[-1.0, 0.8], [-0.5, -0.6]])  # eigenvalues -0.8 +- 0.6i: gap 0.8
    a = np.array([[1.0, 0.3], [0.3, 0.7]])
    sde = ou(A, a)
    _, cov, _ = st.linear_gaussian_reference(sde)
    s = np.sqrt(np.diag(cov))
    gap = -np.linalg.eigvals(A).real.max()
    ns, errs = (64, 128), []
    for n in ns:
        res = st.stationary_density(sde, st.Grid(-6 * s, 6 * s, (n, n)), spectral_gap=True, error_estimate=False)
        errs.append(abs(res.spectral.gap - gap) / gap)
    assert abs(_slope(ns, errs) - 2) <= 0.3, errs
    assert errs[-1] < 5e-3, errs
    assert abs(abs(res.spectral.slowest.imag) - 0.6) < 5e-3
    assert res.to_dict()["spectral"]["gap"] == pytest.approx(res.spectral.gap)
    assert "spectral gap" in repr(res)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vanilla", "scale-generator"])
def test_degenerate_gan_cases_extrapolation_within_stated_error_of_a_much_finer_solve(name):
    """Issue 7's alternative for the cases where SG is first order (noise vanishing at the
    equilibrium): the Richardson extrapolation at 128^2 lies within the stated error estimate of
    a 768^2 reference (measured: vanilla 0.92 % vs 2.2 %, scale-generator 2.6 % vs 7.2 %, relative
    to the largest covariance entry), and is closer to it than the fine solution."""
    from stationary.cases import load_case
    from stationary.pipeline import case_grid

    case = load_case(name)
    sde = case.sde()
    box = case_grid(case, shape=[8, 8], width=9.0)  # wide enough that the edge mass passes at 128^2
    res = st.stationary_density(sde, st.Grid(box.lower, box.upper, (128, 128)))
    ref = st.stationary_density(sde, st.Grid(box.lower, box.upper, (768, 768)), error_estimate=False)
    assert res.success and ref.success
    err = res.error
    scale = np.abs(ref.covariance).max()
    extrap = np.abs(np.asarray(err.extrapolated_covariance) - ref.covariance).max() / scale
    fine = np.abs(res.covariance - ref.covariance).max() / scale
    stated = np.abs(err.covariance_error).max() / scale
    assert extrap <= stated and extrap < fine, (extrap, stated, fine)
