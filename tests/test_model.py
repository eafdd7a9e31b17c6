"""Exact derivatives from formulas against central finite differences (issue: 1e-6 relative)."""
import numpy as np
import pytest

from stationary import GAN, FormulaError, gan_sde

from conftest import lq_model

SMALL = {"size": 24}


def models():
    z = {"distribution": "normal", "size": 24, "seed": 3}
    x = {"distribution": "normal", "loc": 0.7, "scale": 0.8, "size": 20, "seed": 4}
    yield "lq", lq_model(n=24)
    yield "vanilla", GAN(["theta"], ["omega"], "theta + z", "sigmoid(omega*x)", loss="vanilla",
                         regularizer="0.05*theta**2 - 0.05*omega**2", z=z, x=x)
    yield "nonsaturating", GAN(["theta"], ["omega"], "theta*z", "sigmoid(omega*x + 0.3)", loss="nonsaturating",
                               regularizer="0.1*theta**2 - 0.1*omega**2", z=z, x=x)
    yield "formula-nonseparable", GAN(["theta"], ["omega"], "theta + z", "tanh(omega*x)", loss="a*b - a**2/2",
                                      regularizer="0.1*theta**2 - 0.1*omega**2", z=z, x=x)
    yield "loc-scale-3", GAN(["t1", "t2"], ["w"], "t1 + t2*z", "w*x - x**2/2", loss="wgan",
                             regularizer="0.05*t1**2 + 0.05*t2**2 - 0.05*w**2", z=z, x=x)
    yield "4-param", GAN(["t1", "t2"], ["w1", "w2"], "t1 + t2*z", "w1*x + w2*tanh(x)", loss="wgan",
                         regularizer="0.05*(t1**2 + t2**2 - w1**2 - w2**2)", z=z, x=x)


MODELS = list(models())


def central(f, U, h=1e-5):
    """Central differences of f (n, ...) along each coordinate: returns (..., d) stacked last."""
    out = []
    for k in range(U.shape[1]):
        e = np.zeros(U.shape[1])
        e[k] = h
        out.append((f(U + e) - f(U - e)) / (2 * h))
    return np.stack(out, axis=-1)


def rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


@pytest.mark.parametrize("name, model", MODELS, ids=[m[0] for m in MODELS])
def test_gradient_jacobian_covariance_derivatives(name, model, rng):
    U = rng.normal(0.3, 0.6, size=(5, model.dim))
    mom = model.moments(U)
    # g = (grad_theta Phi_G, grad_omega Phi_D)
    dPhiG = central(lambda V: model.objectives(V)[0], U)
    dPhiD = central(lambda V: model.objectives(V)[1], U)
    fd_grad = np.concatenate([dPhiG[:, : model.dim_theta], dPhiD[:, model.dim_theta :]], axis=1)
    assert rel_err(mom.mean, fd_grad) < 1e-6
    assert rel_err(mom.jacobian, central(lambda V: model.moments(V).mean, U)) < 1e-6
    fd_dsig = central(lambda V: model.moments(V).covariance, U)  # [n, k, l, m]
    assert rel_err(mom.covariance_derivative, fd_dsig) < 1e-6


@pytest.mark.parametrize("name, model", MODELS, ids=[m[0] for m in MODELS])
def test_covariance_is_the_pair_covariance(name, model, rng):
    """Sigma = Cov over the uniform pair (i, j), divided by N*M, from per-sample gradients."""
    u = rng.normal(0.2, 0.5, size=(1, model.dim))
    N, M = model.z.size, model.x.size
    zi, xj = np.meshgrid(np.arange(N), np.arange(M), indexing="ij")
    g = model.per_sample_gradients(u, zi.reshape(1, -1), xj.reshape(1, -1))[0]
    assert rel_err(model.moments(u).mean[0], g.mean(axis=0)) < 1e-12
    assert rel_err(model.moments(u).covariance[0], np.cov(g.T, bias=True)) < 1e-10


def test_moment_path_matches_data_sum_path(lq, rng):
    """The same model with a term that forces the data-sum path gives the same moments."""
    assert [p.kind for p in lq._parts[:2]] == ["moments", "moments"]
    alt = GAN(["theta"], ["omega"], "theta + z", "omega*x - c/2*x**2 + 1e-200*omega*exp(x)", regularizer="0.05*theta**2 - 0.05*omega**2",
              constants={"c": 1.0}, z=lq.z, x=lq.x)
    assert [p.kind for p in alt._parts[:2]] == ["data-sum", "data-sum"]
    U = rng.normal(size=(7, 2))
    m1, m2 = lq.moments(U), alt.moments(U)
    assert rel_err(m1.covariance, m2.covariance) < 1e-12
    assert rel_err(m1.mean, m2.mean) < 1e-12


def test_lq_moments_are_the_closed_form(lq):
    vz, vx = np.var(lq.z), np.var(lq.x)
    mom = lq.moments(np.array([[0.4, -0.3]]))
    # g_theta^ij = -omega + c(theta + z_i) + lam theta ; g_omega^ij = x_j - theta - z_i - lam omega
    expected = np.array([[vz, -vz], [-vz, vx + vz]])
    assert rel_err(mom.covariance[0], expected) < 1e-12
    assert np.allclose(mom.jacobian[0], [[1.1, -1.0], [-1.0, -0.1]], atol=1e-14)


def test_alt_drift_matches_the_paper_form(rng):
    """b1 = 1/2 [[Htt, -Htw], [-Hwt, -Hww]] (-g_t, g_w) for a zero-sum loss (MATH.md section 3)."""
    name, model = MODELS[1]
    U = rng.normal(0.2, 0.5, size=(4, 2))
    eta = 0.2
    sde_alt, sde_sml = gan_sde(model, "alt", eta, 2), gan_sde(model, "sml", eta, 2)
    mom = model.moments(U)
    H = mom.jacobian
    g = mom.mean
    b0 = np.stack([-g[:, 0], g[:, 1]], axis=1)
    M = 0.5 * np.stack([np.stack([H[:, 0, 0], -H[:, 0, 1]], -1), np.stack([-H[:, 1, 0], -H[:, 1, 1]], -1)], 1)
    b1 = np.einsum("nkl,nl->nk", M, b0)
    assert rel_err(sde_alt.drift(U), sde_sml.drift(U) + eta * b1) < 1e-12


def test_bad_model_input():
    z = x = [0.0, 1.0, 2.0]
    with pytest.raises(FormulaError, match="unknown name 'q'"):
        GAN(["theta"], ["omega"], "theta + q", "omega*x", z=z, x=x)
    with pytest.raises(FormulaError, match="reserved"):
        GAN(["x"], ["omega"], "x + z", "omega*x", z=z, x=x)
    with pytest.raises(FormulaError, match="1 to 3"):
        GAN(["a1", "a2", "a3", "a4"], ["omega"], "a1 + z", "omega*x", z=z, x=x)
    from stationary import DataError
    with pytest.raises(DataError, match="non-finite"):
        GAN(["theta"], ["omega"], "theta + z", "omega*x", z=[0.0, float("nan")], x=x)


@pytest.mark.parametrize("name, model", MODELS, ids=[m[0] for m in MODELS])
def test_batch_gradient_public_api(name, model, rng):
    """Fast minibatch means (coordinate-major) equal the per-sample route; rows and data dependence."""
    d, n, Bn = model.dim, 9, 5
    V = rng.normal(0.2, 0.5, size=(d, n))
    zi, xi = rng.integers(0, model.z.size, (Bn, n)), rng.integers(0, model.x.size, (Bn, n))
    ref = model.per_sample_gradients(V.T, zi.T, xi.T).mean(axis=1).T
    assert rel_err(model.batch_gradient(V, zi, xi), ref) < 1e-12
    np.testing.assert_array_equal(model.batch_gradient(V, zi, xi, fast=False), ref)
    dep = model.data_dependence()
    for k in range(d):
        got = model.batch_gradient(V, zi if dep["z"][k] else None, xi if dep["x"][k] else None, slice(k, k + 1))
        assert rel_err(got[k], ref[k]) < 1e-12
        assert model.needs(slice(k, k + 1)) == (bool(dep["z"][k]), bool(dep["x"][k]))
    # With a separable loss the generator's gradient never sees the real data x.
    if model.separable:
        assert not dep["x"][: model.dim_theta].any()
    assert model.separable == model.batch_gradient_path.startswith("separable")


@pytest.mark.parametrize("name, model", MODELS, ids=[m[0] for m in MODELS])
def test_moments_skip_flags(name, model, rng):
    """Reduced moments (no covariance derivatives, optionally no Jacobian / covariance) equal the full ones."""
    U = rng.normal(0.2, 0.5, size=(6, model.dim))
    full = model.moments(U)
    for jac in (True, False):
        for cov in (True, False):
            m = model.moments(U, jacobian=jac, covariance=cov, covariance_derivative=False)
            assert m.covariance_derivative is None
            assert rel_err(m.mean, full.mean) < 1e-13
            assert (m.jacobian is None) != jac and (m.covariance is None) != cov
            if jac:
                assert rel_err(m.jacobian, full.jacobian) < 1e-13
            if cov:
                assert rel_err(m.covariance, full.covariance) < 1e-12
    # Chunked evaluation gives the same numbers.
    m = model.moments(U, chunk_points=4, covariance_derivative=False)
    assert rel_err(m.covariance, full.covariance) < 1e-12


def test_constant_gradient_covariance():
    assert lq_model(n=8).constant_gradient_covariance()
    for name, model in MODELS:
        U = np.array([[0.1] * model.dim, [0.9] * model.dim])
        S = model.moments(U).covariance
        if model.constant_gradient_covariance():
            np.testing.assert_array_equal(S[0], S[1])
        else:
            assert not np.allclose(S[0], S[1]), name
