"""Stationarity identities E[A f] = 0 and the paper's FDRs (MATH.md section 5).

Order of evidence: exact Gaussian laws (machine precision), the two routes to each FDR
(round-off), grid refinement (fitted orders), Monte Carlo (standard errors), training samples
(exact discrete-Lyapunov trend in eta, and Monte Carlo).
"""
import numpy as np
import pytest

from stationary import GAN, Grid, assemble, gan_sde, linear_gaussian_reference, solve_stationary, stationary_density
from stationary.cases import load_case
from stationary.discrete import discrete_reference, euler_maruyama_reference
from stationary.identities import (
    IDENTITIES,
    IdentityError,
    evaluate_identity,
    evaluate_identities,
    generator_action,
    generator_terms,
    identities_for,
    identity_convergence,
    monte_carlo_identities,
    test_function,
)
from stationary.pipeline import case_grid

from conftest import lq_model

SETTINGS = [("alt", "paper"), ("sml", "paper"), ("sml", "shared-batch"), ("sml2", "paper")]
NONTRIVIAL = ["theta*omega", "omega**4", "tanh(theta)*exp(-omega**2)"]


def gauss_hermite(mean, cov, k=5):
    """Tensor Gauss-Hermite rule for N(mean, cov): exact for polynomials of degree <= 2k - 1."""
    x, w = np.polynomial.hermite_e.hermegauss(k)
    d = len(mean)
    X = np.stack(np.meshgrid(*[x] * d, indexing="ij"), -1).reshape(-1, d)
    W = np.prod(np.stack(np.meshgrid(*[w] * d, indexing="ij"), -1).reshape(-1, d), axis=1)
    return mean + X @ np.linalg.cholesky(cov).T, W


def vanilla_model(loss="vanilla"):
    return GAN(["theta"], ["omega"], "theta + z", "sigmoid(omega*x)", loss=loss,
               regularizer="0.1*theta**2 - 0.1*omega**2",
               z={"distribution": "normal", "size": 64, "seed": 8},
               x={"distribution": "normal", "loc": 1.0, "scale": 1.0, "size": 64, "seed": 9}, name=loss)


# ----------------------------------------------------------------------------- exact
@pytest.mark.parametrize("update, noise", SETTINGS)
def test_identities_vanish_under_exact_gaussian(lq, update, noise):
    """LQ: every SDE is OU with Gaussian invariant law; A f is a polynomial of degree <= 4 for
    these f, so a 5-point Gauss-Hermite rule gives E[A f] exactly: zero to round-off."""
    sde = gan_sde(lq, update, eta=0.1, batch=4, noise=noise)
    mean, cov, _ = linear_gaussian_reference(sde)
    names = identities_for(sde)
    assert len(names) == 2
    for name in names + ["theta*omega", "theta**2*omega + omega**4/4"]:
        r = evaluate_identity(name, sde, gauss_hermite(mean, cov))
        # Round-off relative to the terms that cancel, or absolute where both vanish (theta*omega
        # under SML: b0.grad f and a:H f are both zero at every point for a diagonal a).
        assert abs(r.difference) < 1e-12 * r.scale + 1e-15, r


def test_lq_identity_is_not_zero_for_the_wrong_law(lq):
    """The check has power: FDR1 under the SML-SDE's law, evaluated for the ALT-SDE, is off."""
    alt = gan_sde(lq, "alt", eta=0.2, batch=4)
    mean, cov, _ = linear_gaussian_reference(gan_sde(lq, "sml", eta=0.2, batch=4))
    r = evaluate_identity("FDR1", alt, gauss_hermite(mean, cov))
    assert abs(r.relative) > 0.05, r


def test_fdr1_and_fdr2_match_the_paper_formulas():
    """The split lhs = -E[b0.grad f], rhs = E[(b - b0).grad f + a:H f/2] reproduces MATH.md's
    typed FDR1 (ALT, SML, shared-batch) and FDR2 (SML, ALT) pointwise, on a nonlinear model."""
    model = vanilla_model()
    eta, B = 0.3, 4
    beta = 2 * B / eta
    U = np.random.default_rng(0).normal(size=(7, 2)) * [0.5, 1.0] + [0.5, 0.3]
    mom = model.moments(U)
    g, H, S = mom.mean, mom.jacobian, mom.covariance
    gt, gw = g[:, 0], g[:, 1]
    Htt, Hww, Hwt = H[:, 0, 0], H[:, 1, 1], H[:, 1, 0]
    trace_term = (S[:, 0, 0] * Htt + S[:, 1, 1] * Hww) / beta
    lhs1 = gt**2 - gw**2
    eta_term = -(eta / 2) * (gt * Htt * gt + gw * Hww * gw)
    lhs2 = U[:, 0] * gt - U[:, 1] * gw
    for name, lhs, rhs in [
        ("FDR1", lhs1, trace_term + eta_term),
        ("FDR1-SML", lhs1, trace_term),
        ("FDR1-shared", lhs1, trace_term - 2 * S[:, 0, 1] * Hwt / beta),
        ("FDR2", lhs2, (S[:, 0, 0] + S[:, 1, 1]) / beta),
    ]:
        _, upd, noise, _ = IDENTITIES[name]
        sde = gan_sde(model, upd, eta, B, noise)
        f = test_function(IDENTITIES[name][0], sde)
        l, r = generator_terms(sde, f, U)
        np.testing.assert_allclose(l, lhs, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(r, rhs, rtol=1e-9, atol=1e-14)
        # rhs - lhs is E[A f] computed directly from the SDE's b and a.
        np.testing.assert_allclose(r - l, generator_action(sde, f, U), rtol=1e-9, atol=1e-13)
    # FDR2-ALT: the extra eta E[u.b1], with b1 = (b_alt - b0)/eta from MATH.md's first form.
    sde = gan_sde(model, "alt", eta, B)
    b1 = 0.5 * np.stack([-Htt * gt - H[:, 0, 1] * gw, Hwt * gt - Hww * gw], axis=1)
    l, r = generator_terms(sde, test_function("half_square", sde), U)
    np.testing.assert_allclose(r, (S[:, 0, 0] + S[:, 1, 1]) / beta + eta * np.einsum("nk,nk->n", U, b1), rtol=1e-9)


def test_formula_test_function_has_exact_derivatives(lq):
    sde = gan_sde(lq, "alt", 0.1, 4)
    f = test_function("tanh(theta)*exp(-omega**2) + c*theta", sde)  # the model's constant c = 1
    U = np.array([[0.3, -0.7], [1.1, 0.2]])
    t, w = U.T
    np.testing.assert_allclose(f.value(U), np.tanh(t) * np.exp(-w**2) + t)
    np.testing.assert_allclose(f.gradient(U)[:, 0], (1 - np.tanh(t) ** 2) * np.exp(-w**2) + 1)
    np.testing.assert_allclose(f.hessian(U)[:, 1, 1], np.tanh(t) * (4 * w**2 - 2) * np.exp(-w**2))
    with pytest.raises(Exception, match="test function"):
        test_function("__import__('os')", sde)


def test_non_zero_sum_loss_has_no_fdr1_but_generic_identities_work():
    model = vanilla_model("nonsaturating")
    assert not model.zero_sum
    sde = gan_sde(model, "alt", 0.3, 4)
    U = np.array([[0.2, 0.1], [0.5, -0.4]])
    for name in ("FDR1", "FDR1-SML", "FDR1-shared"):
        with pytest.raises(IdentityError, match="not zero-sum"):
            evaluate_identity(name, sde, U)
    assert np.isfinite(evaluate_identity("FDR2-ALT", sde, U).difference)
    assert np.isfinite(evaluate_identity("theta*omega", sde, U).difference)


def test_discrete_identity_is_a_tautology_of_the_assembly(lq):
    """p . (L^T f) = (L p) . f = 0 for ANY f: it only checks the solve, never the SDE."""
    sde = gan_sde(lq, "alt", 0.1, 4)
    mean, cov, _ = linear_gaussian_reference(sde)
    sd = np.sqrt(np.diag(cov))
    op = assemble(sde, Grid(mean - 5 * sd, mean + 5 * sd, (48, 48)))
    res = solve_stationary(op)
    p = res.density.ravel()
    for f in (lambda X: X[:, 0] ** 3 * X[:, 1], lambda X: np.sin(7 * X[:, 0])):
        fv = f(op.grid.points())
        Lf = op.matrix.T @ fv
        assert abs(p @ Lf) < 1e-10 * np.abs(op.matrix).sum(axis=0).max() * np.abs(p).sum() * np.abs(fv).max()


# ----------------------------------------------------------------------------- grids
def _lq_grids(sde, ns, width=6.0):
    mean, cov, _ = linear_gaussian_reference(sde)
    sd = np.sqrt(np.diag(cov))
    return [Grid(mean - width * sd, mean + width * sd, (n, n)) for n in ns]


@pytest.mark.parametrize("update, noise", [("alt", "paper"), ("sml", "paper")])
def test_lq_grid_residuals_fall_at_second_order(lq, update, noise):
    """Second-order FV scheme + midpoint rule on a smooth problem: |rhs - lhs| = O(h^2)."""
    sde = gan_sde(lq, update, eta=0.1, batch=4, noise=noise)
    grids = _lq_grids(sde, [64, 128, 256])
    results = [stationary_density(sde, g) for g in grids]
    for name in identities_for(sde):
        r = identity_convergence(name, sde, grids, results=results)
        print(r)
        assert 1.8 < r.trend["slope"] < 2.3, r
        assert abs(r.trend["relative"][-1]) < 0.03, r


def _nonlinear(name, ns, width):
    case = load_case(name)
    sde = case.sde()
    grids = [case_grid(case, shape=(n, n), width=width) for n in ns]
    return sde, grids, [stationary_density(sde, g) for g in grids]


@pytest.mark.parametrize("case, width", [("scale-generator", 7.0), ("vanilla", 9.0)])
def test_nonlinear_grid_identities_converge(case, width):
    """State-dependent noise that vanishes at the flat critic makes SG first order there (MATH.md
    section 4): the last refinement must cut |rhs - lhs| by at least 2^0.8 (observed order >= 0.8
    where 1 is expected; coarse grids are pre-asymptotic).  (The vanilla box is 9 sd wide: at 6 sd its edge mass
    leaves an h-independent truncation error in E[omega^4].)"""
    sde, grids, results = _nonlinear(case, (48, 96, 192), width)
    names = identities_for(sde) + NONTRIVIAL
    evals = [evaluate_identities(names, sde, r) for r in results]
    for k, name in enumerate(names):
        d = np.array([e[k].difference for e in evals])
        scale = evals[-1][k].scale
        print(case, name, d, scale, np.log2(np.abs(d[1] / d[2])))
        assert abs(d[-1]) <= 2**-0.8 * abs(d[-2]), (name, d)


# ----------------------------------------------------------------------------- Monte Carlo
def test_lq_monte_carlo_sde_residuals_within_four_standard_errors(lq):
    """Euler-Maruyama samples of the ALT-SDE.  EM's own stationary law is biased by O(dt); its exact
    (discrete Lyapunov) moments bound that bias, checked to be far below the standard error."""
    sde = gan_sde(lq, "alt", eta=0.1, batch=4)
    dt = 0.01
    names = identities_for(sde) + ["theta*omega"]
    m_em, P_em = euler_maruyama_reference(sde, dt)
    res, mc = monte_carlo_identities(names, sde, "sde", dt=dt, chains=2048, burn_in=15.0, duration=30.0, seed=3)
    for r in res:
        bias = evaluate_identity(r.name if r.name in IDENTITIES else "theta*omega", sde, gauss_hermite(m_em, P_em))
        print(r, "EM bias", bias.difference)
        # The zero test is meaningful only if EM's own O(dt) bias is below the noise level ...
        assert abs(bias.difference) < r.stderr
        assert abs(r.zscore) < 4, r
        # ... and the Monte Carlo reproduces the exact EM residual.
        assert abs(r.difference - bias.difference) < 4 * r.stderr
        if r.name in IDENTITIES:
            assert r.stderr < 0.1 * r.scale  # the test has power against O(1) relative errors


def _training_law_residual(model, name, eta, B=4):
    """Exact FDR residual of ALT *training*: integrands are quadratic on LQ, so the exact
    discrete-Lyapunov mean and covariance of the recursion determine E[.]."""
    sde = gan_sde(model, "alt", eta, B)
    ref = discrete_reference(model, "alt", eta, B)
    return evaluate_identity(name, sde, gauss_hermite(ref.mean, ref.covariance))


def test_training_samples_fdr_residual_shrinks_with_eta(lq):
    etas = [0.4, 0.2, 0.1, 0.05]
    for name in ("FDR1", "FDR2-ALT"):
        rel = np.array([_training_law_residual(lq, name, eta).relative for eta in etas])
        print(name, dict(zip(etas, rel)))
        assert np.all(np.diff(np.abs(rel)) < 0), rel
        slope = np.polyfit(np.log(etas), np.log(np.abs(rel)), 1)[0]
        assert slope > 0.9, (name, slope)  # at least first order in eta
    # Monte Carlo on the training algorithm's own samples agrees with the exact residual.
    eta = 0.2
    res, mc = monte_carlo_identities(["FDR2-ALT"], gan_sde(lq, "alt", eta, 4), "sga", chains=2048, burn_in=15.0,
                                     duration=40.0, seed=5)
    exact = _training_law_residual(lq, "FDR2-ALT", eta)
    print(res[0], exact.difference)
    assert abs(res[0].difference - exact.difference) < 4 * res[0].stderr


@pytest.mark.slow
def test_training_samples_fdr_residual_vs_eta_monte_carlo(lq):
    """Monte Carlo version across eta: the training law's residual (relative to the FDR's size)
    shrinks as eta decreases, each within 4 SE of the exact discrete-Lyapunov value."""
    rels = []
    for eta in (0.4, 0.2, 0.1):
        res, _ = monte_carlo_identities(["FDR1", "FDR2-ALT"], gan_sde(lq, "alt", eta, 4), "sga", chains=4096,
                                        burn_in=20.0, duration=80.0, seed=9)
        for r in res:
            exact = _training_law_residual(lq, r.name, eta)
            print(eta, r, exact.difference)
            assert abs(r.difference - exact.difference) < 4 * r.stderr
        rels.append(abs(res[1].relative))
    assert rels[0] > rels[1] > rels[2], rels


@pytest.mark.slow
@pytest.mark.parametrize("case", ["scale-generator", "vanilla"])
def test_nonlinear_monte_carlo_sde_identities(case):
    """Nonlinear SDEs sampled by Euler-Maruyama at dt = eta/10 and eta/20; the scheme's O(dt)
    stationary bias is removed by Richardson extrapolation (2 Q(dt/2) - Q(dt), measured at dt
    alone: vanilla FDR2-ALT z = -5.6); E[A f] within 4 standard errors of zero."""
    from stationary.identities import extrapolate_identity

    c = load_case(case)
    sde = c.sde()
    names = identities_for(sde) + NONTRIVIAL
    runs = [monte_carlo_identities(names, sde, "sde", dt=sde.eta / k, chains=2048, burn_in=20.0, duration=40.0,
                                   seed=13 + k)[0] for k in (10, 20)]
    for full, half in zip(*runs):
        r = extrapolate_identity(full, half)
        print(r)
        assert abs(r.zscore) < 4, r


# ----------------------------------------------------------------------------- schedule
from stationary.schedule import FDRSchedule, ScheduleError, minibatch_ratio_terms, simulate_scheduled_training  # noqa: E402


def test_schedule_reduces_eta_exactly_when_the_ratio_condition_holds():
    s = FDRSchedule(epsilon=0.1, delta=0.2).start(1.0, chains=4)
    # ratios 1.0, 1.05, 1.2, 0.85: only |r - 1| < 0.1 reduces
    hit = s.observe(np.array([1.0, 1.05, 1.2, 0.85]), np.ones(4))
    np.testing.assert_array_equal(hit, [True, True, False, False])
    np.testing.assert_allclose(s.eta, [0.8, 0.8, 1.0, 1.0])
    for _ in range(50):  # never otherwise, however long
        s.observe(np.array([2.0, -1.0, 1.2, 0.85]), np.ones(4))
    np.testing.assert_allclose(s.eta, [0.8, 0.8, 1.0, 1.0])
    s.observe(np.zeros(4), np.zeros(4))  # 0/0: undefined ratio, no reduction
    np.testing.assert_allclose(s.eta, [0.8, 0.8, 1.0, 1.0])


def test_schedule_running_average_window_and_floor():
    s = FDRSchedule(epsilon=0.05, delta=0.5, window=3, eta_min=0.3).start(1.0, chains=2)
    # per-step ratios 0.5, 1.5, 1.0 (chain 0) average to 1.0 only once the window is full
    for num in ([0.5, 1.0], [1.5, 1.0]):
        assert not s.observe(np.array(num), np.ones(2)).any()
    np.testing.assert_array_equal(s.observe(np.array([1.0, 1.0]), np.ones(2)), [True, True])
    np.testing.assert_allclose(s.eta, [0.5, 0.5])
    # the window restarts: two more steps are not enough
    assert not s.observe(np.ones(2), np.ones(2)).any()
    assert not s.observe(np.ones(2), np.ones(2)).any()
    s.observe(np.ones(2), np.ones(2))
    np.testing.assert_allclose(s.eta, [0.3, 0.3])  # 0.25 floored at eta_min
    with pytest.raises(ScheduleError):
        FDRSchedule(delta=1.5)
    with pytest.raises(ScheduleError):
        FDRSchedule(window=0)


def test_minibatch_ratio_terms_by_hand():
    U = np.array([[2.0, 3.0]])
    G = np.array([[[1.0, 10.0], [3.0, 14.0]]])  # B = 2: means (2, 12), unbiased variances (2, 8)
    num, den = minibatch_ratio_terms(U, G, G, eta=0.4, dim_theta=1)
    np.testing.assert_allclose(num, [2 * 2 - 3 * 12])
    np.testing.assert_allclose(den, [0.4 / 4 * (2 + 8)])


def test_scheduled_training_constant_baseline_and_reductions(lq):
    base = simulate_scheduled_training(lq, None, "alt", 0.1, 4, steps=200, chains=64, seed=1)
    assert base.success and np.all(base.eta_final == 0.1) and base.gradient_evaluations == 200 * 8
    sched = simulate_scheduled_training(lq, FDRSchedule(epsilon=1e9, delta=0.01), "alt", 0.1, 4, steps=200,
                                        chains=64, seed=1)
    np.testing.assert_allclose(sched.eta_final, 0.1 * 0.99**200)  # the condition always holds
    never = simulate_scheduled_training(lq, FDRSchedule(epsilon=1e-12, delta=0.5, window=5), "alt", 0.1, 4,
                                        steps=200, chains=64, seed=1)
    assert np.all(never.eta_final == 0.1)
    np.testing.assert_allclose(never.final, base.final)  # same random stream, same updates
