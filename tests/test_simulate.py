"""Long-run Monte Carlo of training and SDE, checked against exact references (tolerances from standard errors)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from stationary import GAN, Grid, gan_sde, linear_gaussian_reference, stationary_density
from stationary.compare import compare, l1_noise_floor
from stationary.diagnostics import ShortRunWarning, integrated_time
from stationary.discrete import affine_gradient_moments, discrete_reference, euler_maruyama_reference
from stationary.simulate import BatchGradient, matrix_sqrt_psd, simulate_sde, simulate_training

ETA, B = 0.1, 4
Z_MAX = 4.0


def lq_model(seed=1, n=16):
    rng = np.random.default_rng(seed)
    return GAN(["theta"], ["omega"], "theta + z", "omega*x - c/2*x**2",
               regularizer="0.05*theta**2 - 0.05*omega**2", constants={"c": 1.0},
               z=rng.normal(size=n), x=rng.normal(1.0, 0.5, size=n), name="lq")


def tanh_model(seed=1, n=16):
    rng = np.random.default_rng(seed)
    return GAN(["theta"], ["omega"], "theta + z", "tanh(omega*x) - c/2*x**2",
               regularizer="0.05*theta**2 - 0.25*omega**2", constants={"c": 1.0},
               z=rng.normal(size=n), x=rng.normal(1.0, 0.5, size=n), name="tanh")


def zscores(res, mean, cov):
    zm = (res.mean - mean) / res.stderr_mean
    zc = (res.covariance - cov) / res.stderr_covariance
    return zm, zc


@pytest.fixture(scope="module")
def lq():
    return lq_model()


_RUNS = {}


def training_run(model, update, batches):
    key = (update, batches)
    if key not in _RUNS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortRunWarning)
            _RUNS[key] = simulate_training(model, update, ETA, B, batches, chains=2048, burn_in=20.0,
                                           duration=200.0, seed=11, progress=False)
    return _RUNS[key]


# ----------------------------------------------------------------------------- building blocks
def test_batch_gradient_fast_path_matches_per_sample():
    rng = np.random.default_rng(0)
    for model in (lq_model(), tanh_model()):
        bg = BatchGradient(model)
        assert bg.fast, bg.path
        U = rng.normal(size=(50, 2))
        zi, xi = rng.integers(0, 16, (50, 7)), rng.integers(0, 16, (50, 7))
        ref = model.per_sample_gradients(U, zi, xi).mean(axis=1)
        np.testing.assert_allclose(bg(U.T, zi.T, xi.T).T, ref, rtol=1e-12, atol=1e-13)
        # Only the requested rows, and the rows' data dependence (LQ: g_theta ignores x).
        np.testing.assert_allclose(bg(U.T, zi.T, xi.T, slice(1, 2))[1], ref[:, 1], rtol=1e-12, atol=1e-13)
    assert BatchGradient(lq_model()).needs(slice(0, 1)) == (True, False)


def test_affine_reading_all_pairs_equals_separable(lq):
    a, s = affine_gradient_moments(lq, "all"), affine_gradient_moments(lq, "separable")
    np.testing.assert_allclose(a.G, s.G, atol=1e-13)
    np.testing.assert_allclose(a.h, s.h, atol=1e-13)
    np.testing.assert_allclose(a.cov, s.cov, atol=1e-13)
    assert a.additive
    # MATH.md section 7: b0 = S(G u + h) has Jacobian [[-(c+0.1), 1], [-1, -0.1]].
    np.testing.assert_allclose(lq.sign[:, None] * a.G, [[-1.1, 1.0], [-1.0, -0.1]], atol=1e-12)


@pytest.mark.parametrize("update,batches", [("alt", "independent"), ("sml", "shared"), ("sml", "independent")])
def test_discrete_reference_two_routes_agree(lq, update, batches):
    ref = discrete_reference(lq, update, ETA, B, batches)
    assert ref.additive and ref.agreement < 1e-12  # second-moment fixed point == discrete Lyapunov


def test_matrix_sqrt_rank_deficient():
    v = np.array([1.0, -2.0])
    a = np.outer(v, v)[None]  # rank one: Cholesky fails, the clipped eigen-root does not
    s = matrix_sqrt_psd(a)
    np.testing.assert_allclose(s @ np.swapaxes(s, 1, 2), a, atol=1e-12)


def test_drift_and_diffusion_fast_path(lq):
    """gan_sde's drift_and_diffusion (no divergence, no Hessian for SML) equals coefficients();
    the constant-diffusion stepper matches the general one to round-off on the same random numbers."""
    from stationary import SDE
    from stationary.sde import SDEError
    rng = np.random.default_rng(2)
    for model in (lq, tanh_model()):
        U = rng.normal(0.3, 0.7, size=(11, 2))
        for update, noise in (("alt", "paper"), ("sml", "paper"), ("sml", "shared-batch"), ("sml2", "paper")):
            sde = gan_sde(model, update, ETA, B, noise)
            b, a, _ = sde.coefficients(U)
            b2, a2 = sde.drift_and_diffusion(U)
            np.testing.assert_allclose(b2, b, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(a2, a, rtol=1e-12, atol=1e-14)
            assert sde.drift_and_diffusion(U, diffusion=False)[1] is None
            assert sde.constant_diffusion == (model is lq)
    sde = gan_sde(lq, "alt", ETA, B)
    run = lambda: simulate_sde(sde, 0.05, chains=32, burn_in=0.0, duration=5.0, seed=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortRunWarning)
        fast = run()
        sde.constant_diffusion = False
        slow = run()
    assert fast.settings["diffusion"] != slow.settings["diffusion"]
    np.testing.assert_allclose(fast.final, slow.final, rtol=1e-9, atol=1e-12)
    # A user SDE: default drift_and_diffusion, and a false constant-diffusion claim is refused.
    user = SDE(lambda U: -U, lambda U: np.eye(2)[None] * (1 + U[:, :1, None] ** 2), 2)
    b, a = user.drift_and_diffusion(np.ones((3, 2)))
    np.testing.assert_allclose(a, 2 * np.eye(2)[None].repeat(3, 0))
    with pytest.raises(SDEError, match="constant_diffusion"):
        SDE(lambda U: -U, lambda U: np.eye(2)[None] * (1 + U[:, :1, None] ** 2), 2, constant_diffusion=True)


def test_matrix_sqrt_closed_form_matches_eigh():
    rng = np.random.default_rng(4)
    A = rng.normal(size=(200, 2, 2))
    A = A @ np.swapaxes(A, 1, 2)
    lam, V = np.linalg.eigh(A)
    ref = (V * np.sqrt(lam)[..., None, :]) @ np.swapaxes(V, 1, 2)
    np.testing.assert_allclose(matrix_sqrt_psd(A), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(matrix_sqrt_psd(np.zeros((1, 2, 2))), 0.0)
    np.testing.assert_allclose(matrix_sqrt_psd(np.array([[[4.0]]])), [[[2.0]]])


def test_integrated_time_ar1():
    rng = np.random.default_rng(3)
    phi, n, c = 0.8, 20000, 32
    x = np.zeros((n, c))
    e = rng.normal(size=(n, c))
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    tau = integrated_time(x)
    exact = (1 + phi) / (1 - phi)
    # Relative SE of tau with Sokal's window ~ sqrt(2(2M+1)/(n c)) ~ 1 %; allow 5 %.
    assert abs(tau / exact - 1) < 0.05, (tau, exact)


# ----------------------------------------------------------------------------- exact references
@pytest.mark.parametrize("update,batches", [("alt", "independent"), ("sml", "shared"), ("sml", "independent")])
def test_training_matches_discrete_lyapunov(lq, update, batches):
    ref = discrete_reference(lq, update, ETA, B, batches)
    res = training_run(lq, update, batches)
    assert res.success, res.message
    zm, zc = zscores(res, ref.mean, ref.covariance)
    print(f"\n{update}/{batches}: z mean {np.round(zm, 2)}, z cov {np.round(zc.ravel(), 2)}, tau {res.tau}")
    assert np.all(np.abs(zm) < Z_MAX) and np.all(np.abs(zc) < Z_MAX)
    # Independent SE routes agree roughly (batch means vs chain spread).
    np.testing.assert_allclose(res.stderr_mean_batch, res.stderr_mean, rtol=0.35)


def test_sde_matches_euler_maruyama_lyapunov(lq):
    """The EM chain of the OU SDE has an exact stationary law (discrete Lyapunov with F = I + A dt,
    Q = a dt): we test against that (no O(dt) bias in the comparison) and report the continuous one."""
    sde = gan_sde(lq, "alt", ETA, B)
    dt = 0.05
    mean, cov = euler_maruyama_reference(sde, dt)
    cmean, ccov, _ = linear_gaussian_reference(sde)
    res = simulate_sde(sde, dt, chains=2048, burn_in=20.0, duration=150.0, seed=5, progress=False)
    zm, zc = zscores(res, mean, cov)
    zm_c, zc_c = zscores(res, cmean, ccov)
    print(f"\nSDE (EM dt={dt}) vs EM-Lyapunov: z mean {np.round(zm, 2)}, z cov {np.round(zc.ravel(), 2)}; "
          f"vs continuous Lyapunov: z cov {np.round(zc_c.ravel(), 2)}")
    assert np.all(np.abs(zm) < Z_MAX) and np.all(np.abs(zc) < Z_MAX)
    np.testing.assert_allclose(mean, cmean, atol=1e-12)  # EM's mean is exact for affine drift


def test_shared_batch_effect(lq):
    """MATH.md section 3: block-diagonal (paper) SML-SDE misses shared-batch SML by many SE;
    the shared-batch noise model agrees to O(eta)."""
    res = training_run(lq, "sml", "shared")
    miss = {}
    for noise in ("paper", "shared-batch"):
        _, S, _ = linear_gaussian_reference(gan_sde(lq, "sml", ETA, B, noise))
        miss[noise] = (np.abs(res.covariance - S) / res.stderr_covariance).max(), np.abs(res.covariance - S).max() / np.abs(S).max()
    print(f"\nmiss in SE / relative: paper {miss['paper'][0]:.1f} / {miss['paper'][1]:.3f}, "
          f"shared-batch {miss['shared-batch'][0]:.1f} / {miss['shared-batch'][1]:.3f}")
    assert miss["paper"][0] > 50 and miss["paper"][1] > 0.3
    assert miss["shared-batch"][1] < 1.5 * ETA
    # O(eta): with the exact discrete reference, halving eta halves the shared-batch miss while
    # the paper model's miss does not shrink.
    rel = {"paper": [], "shared-batch": []}
    for eta in (0.1, 0.05, 0.025):
        P = discrete_reference(lq, "sml", eta, B, "shared").covariance
        for noise in rel:
            _, S, _ = linear_gaussian_reference(gan_sde(lq, "sml", eta, B, noise))
            rel[noise].append(np.abs(P - S).max() / np.abs(P).max())
    print(f"relative miss at eta=0.1,0.05,0.025: {rel}")
    assert min(rel["paper"]) > 0.3
    r = np.array(rel["shared-batch"])
    assert np.all((r[:-1] / r[1:] > 1.7) & (r[:-1] / r[1:] < 2.3))


# ----------------------------------------------------------------------------- grid vs SDE, nonlinear
def test_grid_density_matches_sde_samples_nonlinear():
    """tanh critic (non-OU: state-dependent diffusion). EM's stationary law has an O(dt) bias, so
    the moments are Richardson-extrapolated from dt and dt/2 (SE combined accordingly); the grid's
    own error is the change from 130^2 to 260^2 cells, added in quadrature."""
    model = tanh_model()
    sde = gan_sde(model, "alt", 0.5, 1)
    grid = Grid((-3.0, -3.0), (3.5, 3.5), (130, 130))
    ref = stationary_density(sde, grid)
    fine = stationary_density(sde, grid.refined(2))
    assert ref.success and fine.success
    gerr = {"mean": np.abs(fine.mean - ref.mean), "covariance": np.abs(fine.covariance - ref.covariance)}
    runs = {}
    for dt in (0.04, 0.02):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortRunWarning)
            runs[dt] = simulate_sde(sde, dt, chains=512, burn_in=10.0, duration=50.0, seed=21, histogram=grid, progress=False)
    r1, r2 = runs[0.04], runs[0.02]
    m = 2 * r2.mean - r1.mean
    S = 2 * r2.covariance - r1.covariance
    se_m = np.sqrt(4 * r2.stderr_mean**2 + r1.stderr_mean**2 + gerr["mean"] ** 2)
    se_S = np.sqrt(4 * r2.stderr_covariance**2 + r1.stderr_covariance**2 + gerr["covariance"] ** 2)
    zm, zc = (m - fine.mean) / se_m, (S - fine.covariance) / se_S
    cmp = compare(r2, ref, grid_error=gerr, coarsen=5)
    print(f"\n{cmp}\nRichardson-extrapolated: z mean {np.round(zm, 2)}, z cov {np.round(zc.ravel(), 2)}; "
          f"grid error {gerr}")
    assert np.all(np.abs(zm) < Z_MAX) and np.all(np.abs(zc) < Z_MAX)
    assert cmp.mass_outside_mc == 0.0
    assert cmp.l1 < 1.5 * cmp.l1_floor, (cmp.l1, cmp.l1_floor)
    assert np.all(cmp.wasserstein1_relative < 0.05)


# ----------------------------------------------------------------------------- long runs
def _short(model, **kw):
    args = dict(chains=64, burn_in=5.0, duration=40.0, seed=3, block_steps=64, progress=False,
                histogram=[np.linspace(-1, 3, 21), np.linspace(-1, 3, 17)])
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortRunWarning)
        return simulate_training(model, "alt", ETA, B, **args)


def _assert_identical(a, b):
    for f in ("mean", "covariance", "stderr_mean", "stderr_covariance", "chain_means", "tau", "ess", "final"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    np.testing.assert_array_equal(a.histogram.counts, b.histogram.counts)
    assert a.histogram.outside == b.histogram.outside and a.steps == b.steps


def test_interrupt_and_resume_bit_identical(lq, tmp_path):
    full = _short(lq)
    ck = tmp_path / "run.npz"
    part = _short(lq, checkpoint=ck, checkpoint_every=1, stop_after=150)
    assert part.status == 2 and not part.success and ck.exists()
    resumed = _short(lq, checkpoint=ck, checkpoint_every=1, resume=True)
    assert resumed.success
    _assert_identical(full, resumed)

    # KeyboardInterrupt from a callback mid-run: the checkpoint holds the last block boundary.
    ck2 = tmp_path / "run2.npz"

    def boom(step, U):
        if step >= 192:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _short(lq, checkpoint=ck2, checkpoint_every=10**9, callback=boom)
    resumed2 = _short(lq, checkpoint=ck2, resume=True)
    _assert_identical(full, resumed2)

    # A checkpoint from a different run is refused.
    with pytest.raises(ValueError, match="different settings"):
        _short(lq, checkpoint=ck, resume=True, seed=4)


def test_same_seed_same_numbers_different_seed_different(lq):
    a, b, c = _short(lq), _short(lq), _short(lq, seed=4)
    _assert_identical(a, b)
    assert not np.array_equal(a.final, c.final)


def test_divergence_names_step_and_chain(lq):
    init = np.zeros((32, 2))
    init[5] = [1e5, -1e5]  # starts furthest out, so it crosses the bound first
    res = simulate_training(lq, "sml", 3.0, B, "shared", chains=32, burn_in=0.0, duration=300.0, seed=0,
                            init=init, progress=False)
    assert not res.success and res.status == 1
    assert "chain 5 " in res.message and "at step" in res.message, res.message


def test_short_run_warns(lq):
    with pytest.warns(ShortRunWarning):
        res = simulate_training(lq, "alt", ETA, B, chains=64, burn_in=1.0, duration=5.0, seed=0, progress=False)
    assert "WARNING" in res.message and res.warnings


def test_noise_floor_simulated_vs_normal():
    q = np.full(100, 0.01)
    sim, approx = l1_noise_floor(q, 1e5, draws=16)
    assert abs(sim / approx - 1) < 0.05


# ----------------------------------------------------------------------------- slow studies
@pytest.mark.slow
def test_sde_small_dt_matches_continuous_lyapunov(lq):
    sde = gan_sde(lq, "sml", ETA, B, "shared-batch")
    cmean, ccov, _ = linear_gaussian_reference(sde)
    res = simulate_sde(sde, 0.005, chains=4096, burn_in=15.0, duration=60.0, seed=8, progress=False)
    em_mean, em_cov = euler_maruyama_reference(sde, 0.005)
    zm, zc = zscores(res, cmean, ccov)
    print(f"\nEM dt=0.005 vs continuous: z mean {zm}, z cov {zc.ravel()}; EM bias in SE: "
          f"{((em_cov - ccov) / res.stderr_covariance).ravel()}")
    assert np.all(np.abs(zm) < Z_MAX) and np.all(np.abs(zc) < Z_MAX)
