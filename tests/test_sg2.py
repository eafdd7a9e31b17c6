"""Scheme "sg2" (stationary.highres): second order along degenerate directions, against an exact
hypoelliptic Ornstein–Uhlenbeck process (MATH.md sections 4 and 7).

du1 = (-u1 + u2) dt (no noise), du2 = -u2 dt + sqrt(2) dW: the diffusion vanishes along axis 0,
the invariant law is Gaussian with covariance [[1/2, 1/2], [1/2, 1]] (continuous Lyapunov).
SG is first-order upwind along axis 0 there; sg2 adds a limited second-order correction.
"""
import numpy as np
import pytest

import stationary as st
from stationary.cases import load_case


def degenerate_ou():
    A = np.array([[-1.0, 1.0], [0.0, -1.0]])
    a = np.array([[0.0, 0.0], [0.0, 2.0]])
    return st.SDE(lambda U: U @ A.T, lambda U: np.broadcast_to(a, (len(U), 2, 2)), 2,
                  diffusion_divergence=lambda U: np.zeros((len(U), 2)), constant_diffusion=True)


@pytest.fixture(scope="module")
def runs():
    sde = degenerate_ou()
    mean, cov, _ = st.linear_gaussian_reference(sde)
    s = np.sqrt(np.diag(cov))
    out = {}
    for scheme in ("sg", "sg2"):
        out[scheme] = [st.stationary_density(sde, st.Grid(-5 * s, 5 * s, (n, n)), scheme=scheme) for n in (64, 128, 256)]
    return out, cov


def cov_err(r, cov):
    return np.abs(r.covariance - cov).max() / np.abs(cov).max()


def slope(errs):
    return np.polyfit(np.log([64, 128, 256]), np.log(errs), 1)[0] * -1


def test_sg_is_first_order_and_sg2_second_order_on_degenerate_ou(runs):
    res, cov = runs
    e_sg = [cov_err(r, cov) for r in res["sg"]]
    e_sg2 = [cov_err(r, cov) for r in res["sg2"]]
    assert abs(slope(e_sg) - 1) <= 0.3, e_sg
    assert abs(slope(e_sg2) - 2) <= 0.3, e_sg2
    assert e_sg2[-1] * 5 <= e_sg[-1], (e_sg, e_sg2)
    for r in res["sg2"]:
        assert r.success, r.message
        assert r.scheme == "sg2" and not r.monotone
        assert r.min_density >= -1e-10 * r.density.max()  # the limiter keeps it non-negative here
        assert r.info["defect_converged"]
        c = r.info["certified"]
        assert c["scheme"] == "sg" and c["l1_difference"] > 0
    # the certified SG moments are the SG solve's
    np.testing.assert_allclose(res["sg2"][-1].info["certified"]["covariance"], res["sg"][-1].covariance, rtol=1e-10)


def test_sg2_error_estimate_is_second_order_and_within_factor_two(runs):
    res, cov = runs
    r = res["sg2"][-1]
    assert r.error.order_source == "observed" and abs(r.error.order - 2) <= 0.3
    true = np.abs(r.covariance - cov).max()
    assert 0.5 <= r.error.covariance_error.max() / true <= 2.0


def test_sg2_is_sg_where_every_peclet_number_is_small():
    sde = load_case("lq-wgan").sde()
    mean, cov, _ = st.linear_gaussian_reference(sde)
    sd = np.sqrt(np.diag(cov))
    g = st.Grid(mean - 5 * sd, mean + 5 * sd, (256, 256))
    op = st.assemble(sde, g)
    assert max(op.max_peclet) <= 2  # so w = 0 on every face
    a = st.stationary_density(sde, g, scheme="sg", error_estimate=False)
    b = st.stationary_density(sde, g, scheme="sg2", error_estimate=False)
    np.testing.assert_allclose(b.density, a.density, rtol=1e-9, atol=1e-12 * a.density.max())
    assert b.info["defect_iterations"] == 1
