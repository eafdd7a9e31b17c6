"""Sweeps on Dask: exact references at every setting, the small-eta slope, determinism across
worker counts and after an interruption, per-setting failures.

The clusters are small (at most 2 single-threaded worker processes), always closed by context
managers, and every test has a timeout so that a stuck cluster cannot hang the suite.
"""
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
from dask.distributed import Client, LocalCluster  # noqa: E402

from stationary.cases import load_case  # noqa: E402
from stationary.exact import linear_gaussian_reference  # noqa: E402
from stationary.sweep import (TIMING_PREFIX, Setting, parse_values, read_table, sweep,  # noqa: E402
                              sweep_settings)

ROOT = Path(__file__).resolve().parent.parent
SMALL_ETA = [0.0025, 0.005, 0.01, 0.02]
MC = {"chains": 512, "burn_in": 20.0, "duration": 100.0}


def _timeout(seconds):
    """Fail (not hang) a test after ``seconds``: SIGALRM, main thread, POSIX."""
    return pytest.mark.timeout(seconds) if _has_pytest_timeout() else _alarm(seconds)


def _has_pytest_timeout():
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        return False
    return True


def _alarm(seconds):
    def deco(fn):
        @functools.wraps(fn)  # keeps the signature: pytest injects fixtures by it
        def wrapper(*a, **k):
            def handler(signum, frame):
                raise TimeoutError(f"{fn.__name__} exceeded {seconds} s")

            old = signal.signal(signal.SIGALRM, handler)
            signal.alarm(seconds)
            try:
                return fn(*a, **k)
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)

        return wrapper

    return deco


@pytest.fixture(scope="module")
def client():
    """One 2-worker local cluster shared by the module's tests (closed at the end)."""
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, env=env) as cluster:
        with Client(cluster) as c:
            yield c


def _det(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIX)} for r in rows]


def test_parse_values_and_settings():
    assert parse_values("0.01:0.16:5") == [0.01, 0.02, 0.04, 0.08, 0.16]
    assert parse_values("1,4,16", int) == [1, 4, 16]
    with pytest.raises(ValueError):
        parse_values("0:1:3")
    case = load_case("lq-wgan")
    s = sweep_settings(case, eta=[0.1, 0.2], batch=[4], updates=["alt", "sml"], noise=["paper", "shared-batch"])
    # ALT has independent batches: only the paper noise model exists for it.
    assert [(x.update, x.noise) for x in s] == [("alt", "paper")] * 2 + [("sml", "paper")] * 2 + [("sml", "shared-batch")] * 2
    assert len({x.id for x in s}) == len(s)
    # Seeds depend on the sweep seed and the setting, nothing else.
    assert s[0].seed(0) == Setting("alt", "paper", 0.1, 4).seed(0) != s[0].seed(1)
    with pytest.raises(ValueError, match="model.constants"):
        sweep_settings(case, constants={"nope": [1.0]})


@_timeout(120)
def test_lq_sweep_exact_covariances_and_unit_slope(client, tmp_path):
    """Grid solution vs the continuous-Lyapunov covariance at every setting; log-log slope 1.

    The SDE's diffusion is (eta/B) Sigma and its drift b0 + eta b1 (ALT) or b0 (SML), so its
    stationary covariance is (eta/B) (S0 + eta S1 + O(eta^2)): the slope of log spread against
    log(eta/B) at fixed B is 1 + eta tr S1 / tr S0, which is exactly 1 for SML and within
    eta_max |tr S1 / tr S0| of 1 for ALT. The grid adds at most its relative error estimate at
    either end of the fit, i.e. a slope error of 2 e_rel / log(eta_max / eta_min).
    """
    res = sweep("lq-wgan", eta=SMALL_ETA, batch=[1, 4], updates=["alt", "sml"], shape=[96, 96],
                scheduler=client, out=tmp_path, progress=False)
    assert res.success and len(res.table) == 16 and res.counts == {"ok": 16}
    case = load_case("lq-wgan")
    for r in res.table:
        sde = case.with_overrides(update=r["update"], eta=r["eta"], batch=r["batch"]).sde()
        _, S, _ = linear_gaussian_reference(sde)
        cov = np.array([[r["cov_theta_theta"], r["cov_theta_omega"]], [r["cov_theta_omega"], r["cov_omega_omega"]]])
        err = np.abs(cov - S).max()
        assert err == pytest.approx(r["exact_cov_error"], rel=1e-12)
        # |Q_h - Q_2h| bounds the error of Q_h for a method of order >= 1.
        assert err <= r["grid_error_cov"], r["id"]
        assert err <= 0.02 * np.abs(S).max(), r["id"]
    # The O(eta) coefficient tr S1 / tr S0 from the exact Lyapunov solution at tiny eta.
    def s_over_eta(upd, eta):
        return np.trace(linear_gaussian_reference(case.with_overrides(update=upd, eta=eta, batch=1).sde())[1]) / eta

    for upd in ("alt", "sml"):
        kappa = abs(math.log(s_over_eta(upd, 2e-4) / s_over_eta(upd, 1e-4)) / 1e-4)
        for b in (1, 4):
            rows = [r for r in res.table if r["update"] == upd and r["batch"] == b]
            x = np.log([r["eta_over_batch"] for r in rows])
            y = np.log([r["spread"] for r in rows])
            slope = np.polyfit(x, y, 1)[0]
            e_rel = max(r["grid_error_cov"] / r["spread"] for r in rows)
            tol = 2 * kappa * max(SMALL_ETA) + 2 * e_rel / math.log(max(SMALL_ETA) / min(SMALL_ETA))
            assert abs(slope - 1) <= tol, (upd, b, slope, tol)
    # SML paper noise: the spread depends on eta/B only (eta=0.01, B=4 is eta=0.0025, B=1).
    by = {(r["update"], r["eta"], r["batch"]): r["spread"] for r in res.table}
    assert by[("sml", 0.01, 4)] == by[("sml", 0.0025, 1)]
    table = read_table(tmp_path / "sweep.csv")
    assert _det(table) == _det(res.table)
    assert (tmp_path / "spread.png").stat().st_size > 0


@_timeout(150)
def test_training_matches_discrete_lyapunov_deterministic_and_resumable(client, tmp_path):
    """Monte Carlo of the training recursion against its exact discrete-Lyapunov moments
    (|z| < 4.5 for all 6 moments of 5 settings), identical tables on 1 and 2 workers, and after
    losing records to an interruption (plus a failed one) a rerun recomputes only those."""
    kw = dict(eta=[0.1, 0.2], batch=[4], updates=["alt", "sml"], noise=["paper", "shared-batch"], shape=[64, 64],
              montecarlo=MC, seed=3, progress=False)
    two = sweep("lq-wgan", scheduler=client, out=tmp_path / "two", **kw)
    assert two.success and len(two.table) == 6
    for r in two.table:
        assert r["mc_sga_status"] == 0 and r["mc_sde_status"] == 0
        assert r["discrete_spread"] is not None
        assert r["mc_sga_max_z"] < 4.5, (r["id"], r["mc_sga_max_z"])
    one = sweep("lq-wgan", workers=1, out=tmp_path / "one", **kw)
    assert one.workers == 1
    assert one.deterministic_table() == two.deterministic_table()
    assert one.digest() == two.digest()
    # Interruption: two records never written, one recorded as failed.
    files = sorted((tmp_path / "two" / "settings").glob("*.json"))
    files[0].unlink()
    files[1].unlink()
    rec = json.loads(files[2].read_text())
    rec["row"]["status"], rec["row"]["reason"] = "failed", "simulated failure"
    files[2].write_text(json.dumps(rec))
    again = sweep("lq-wgan", scheduler=client, out=tmp_path / "two", **kw)
    assert (again.computed, again.reused) == (3, 3)
    assert again.digest() == two.digest()
    # Different options are a different sweep: nothing is reused.
    other = sweep("lq-wgan", scheduler=client, out=tmp_path / "two", figures=False,
                  **{**kw, "montecarlo": {**MC, "chains": 256}, "eta": [0.1], "updates": ["alt"]})
    assert other.computed == 1


@_timeout(120)
def test_failures_are_per_setting_and_regularisation_edge(client, tmp_path):
    """Without regularisation the Dirac-GAN has no invariant law (a verdict, not a crash); a
    setting that cannot be built is 'failed' with its reason; the sweep carries on."""
    res = sweep("dirac-r1", eta=[0.1], batch=[4], lam=[0.0, 1.0], shape=[64, 64], scheduler=client,
                out=tmp_path / "r1", progress=False)
    st = {r["lam"]: r for r in res.table}
    assert st[0.0]["status"] == "no-invariant-measure" and st[0.0]["reason"]
    assert st[1.0]["status"] == "ok"
    assert res.success  # a verdict is not a failure
    bad = sweep("dirac-unregularised", eta=[0.1], lam=[1.0], shape=[64, 64], scheduler=client,
                out=tmp_path / "bad", progress=False, figures=False)
    assert bad.table[0]["status"] == "failed" and "regularizer" in bad.table[0]["reason"]
    assert not bad.success


@pytest.mark.slow
@_timeout(600)
def test_cli_interrupt_and_rerun_identical(tmp_path):
    """A real interruption: SIGINT to ``stationary sweep`` after its first record, then a rerun;
    the table equals that of an uninterrupted sweep."""
    args = [sys.executable, "-m", "stationary.cli", "sweep", "lq-wgan", "--eta", "0.05:0.4:4", "--batch", "1,4",
            "--update", "alt,sml", "--shape", "64,64", "--montecarlo", "--chains", "256", "--duration", "50",
            "--burn-in", "10", "--workers", "2", "--quiet", "--no-figures"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full = subprocess.run(args + ["--out", str(tmp_path / "full")], env=env, capture_output=True, timeout=500)
    assert full.returncode == 0, full.stderr.decode()[-2000:]
    p = subprocess.Popen(args + ["--out", str(tmp_path / "cut")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sdir = tmp_path / "cut" / "settings"
    t0 = time.time()
    while time.time() - t0 < 300 and not (sdir.exists() and any(sdir.glob("*.json"))):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=120)
    done = len(list(sdir.glob("*.json")))
    assert 1 <= done
    rerun = subprocess.run(args + ["--out", str(tmp_path / "cut")], env=env, capture_output=True, timeout=500)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert _det(read_table(tmp_path / "cut" / "sweep.csv")) == _det(read_table(tmp_path / "full" / "sweep.csv"))
