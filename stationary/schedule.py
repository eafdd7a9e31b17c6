r"""The FDR-driven learning-rate schedule (paper's Remark 4.3, MATH.md section 6).

FDR2 says that at stationarity :math:`\mathbb{E}[\theta\cdot g_\theta - \omega\cdot g_\omega]
= \beta^{-1}\mathbb{E}\,\mathrm{tr}(\Sigma_\theta + \Sigma_\omega)`, :math:`\beta = 2B/\eta`.
Training has reached its noise floor when the minibatch estimate of the ratio of the two sides

.. math::

    r = \frac{\theta\cdot \bar g_\theta^{\mathcal B} - \omega\cdot \bar g_\omega^{\mathcal B}}
             {\beta^{-1}\,\mathrm{tr}(\hat\Sigma_\theta + \hat\Sigma_\omega)},
    \qquad \hat\Sigma = \frac{1}{B-1}\sum_k (g^k - \bar g)(g^k - \bar g)^T,

is close to one; then :math:`\eta \leftarrow (1-\delta)\eta` lowers the floor.  A
single-batch :math:`r` is very noisy (its numerator has mean of the order of its standard
deviation at stationarity), so :class:`FDRSchedule` also offers a running version over a
window of ``W`` steps, :math:`r_W = \sum_{\text{window}} \text{num} / \sum_{\text{window}} \text{den}`
(``window=1`` is the paper's per-step rule).  After a reduction the window restarts, so the
next test uses only steps taken with the new :math:`\eta`.

:func:`simulate_scheduled_training` runs many independent training chains (ALT or SML, the
updates of :func:`~stationary.simulate.simulate_training`), each with its own schedule, and
records the :math:`\eta` trajectory; ``schedule=None`` is the constant-:math:`\eta` baseline
on the same random stream.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FDRSchedule", "ScheduleState", "minibatch_ratio_terms", "simulate_scheduled_training",
           "ScheduledTrainingResult", "ScheduleError"]


class ScheduleError(ValueError):
    """Invalid schedule or training settings."""


@dataclass(frozen=True)
class FDRSchedule:
    r"""If :math:`|r - 1| < \varepsilon`, set :math:`\eta \leftarrow \max((1-\delta)\eta, \eta_{\min})`.

    Parameters
    ----------
    epsilon : float
        Tolerance :math:`\varepsilon > 0` on the ratio.
    delta : float
        Reduction factor :math:`0 < \delta < 1`.
    window : int
        Steps averaged in :math:`r_W` (1: the paper's per-step ratio).
    eta_min : float
        Floor for :math:`\eta`.
    """

    epsilon: float = 0.1
    delta: float = 0.1
    window: int = 1
    eta_min: float = 0.0

    def __post_init__(self):
        if not (np.isfinite(self.epsilon) and self.epsilon > 0):
            raise ScheduleError(f"epsilon must be positive, got {self.epsilon!r}")
        if not (0 < self.delta < 1):
            raise ScheduleError(f"delta must lie in (0, 1), got {self.delta!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, (int, np.integer)) or self.window < 1:
            raise ScheduleError(f"window must be a positive integer, got {self.window!r}")
        if not (np.isfinite(self.eta_min) and self.eta_min >= 0):
            raise ScheduleError(f"eta_min must be non-negative, got {self.eta_min!r}")

    def start(self, eta, chains: int = 1) -> "ScheduleState":
        """Per-chain state with initial learning rate ``eta`` (scalar or (chains,))."""
        return ScheduleState(self, np.broadcast_to(np.asarray(eta, float), (chains,)).copy())


class ScheduleState:
    """Learning rates and ratio windows of ``chains`` independent runs (see :class:`FDRSchedule`).

    Attributes
    ----------
    eta : (chains,) array
    ratio : (chains,) array
        The last :math:`r_W` (NaN while a window is filling).
    reductions : (chains,) int array
    """

    def __init__(self, schedule: FDRSchedule, eta: np.ndarray):
        if not np.all(np.isfinite(eta) & (eta > 0)):
            raise ScheduleError("initial learning rates must be positive")
        self.schedule = schedule
        self.eta = eta
        n, W = eta.size, schedule.window
        self._num = np.zeros((W, n))
        self._den = np.zeros((W, n))
        self._count = np.zeros(n, dtype=np.int64)
        self._pos = 0
        self.ratio = np.full(n, np.nan)
        self.reductions = np.zeros(n, dtype=np.int64)

    def observe(self, numerator, denominator) -> np.ndarray:
        r"""Add one step's numerator :math:`\theta\cdot\bar g_\theta - \omega\cdot\bar g_\omega` and
        denominator :math:`\beta^{-1}\mathrm{tr}(\hat\Sigma_\theta + \hat\Sigma_\omega)` per chain;
        apply the rule where a full window satisfies it.  Returns the mask of reduced chains."""
        s = self.schedule
        W = s.window
        self._num[self._pos] = numerator
        self._den[self._pos] = denominator
        self._pos = (self._pos + 1) % W
        self._count = np.minimum(self._count + 1, W)
        ready = self._count >= W
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self._num.sum(axis=0) / self._den.sum(axis=0)
        self.ratio = np.where(ready, r, np.nan)
        hit = ready & (np.abs(r - 1.0) < s.epsilon)  # NaN (0/0) compares False: no reduction
        if hit.any():
            self.eta[hit] = np.maximum((1.0 - s.delta) * self.eta[hit], s.eta_min)
            self.reductions[hit] += 1
            # Restart the window: the next test sees only steps taken with the new eta.
            self._num[:, hit] = 0.0
            self._den[:, hit] = 0.0
            self._count[hit] = 0
        return hit


def minibatch_ratio_terms(U, G_theta, G_omega, eta, dim_theta: int):
    r"""Numerator and denominator of the schedule's ratio from per-sample gradients.

    Parameters
    ----------
    U : (n, d) array
        Parameters :math:`(\theta, \omega)` per chain.
    G_theta, G_omega : (n, B, d) arrays
        Per-sample gradient vectors of the batches used for the θ and the ω update (the same
        array for a shared batch); only their θ resp. ω components are used.
    eta : float or (n,) array
    dim_theta : int

    Returns
    -------
    numerator : (n,) :math:`\theta\cdot\bar g_\theta - \omega\cdot\bar g_\omega`
    denominator : (n,) :math:`\beta^{-1}\mathrm{tr}(\hat\Sigma_\theta + \hat\Sigma_\omega)`,
        :math:`\beta^{-1} = \eta/(2B)`, :math:`\hat\Sigma` unbiased (divide by B − 1).
    """
    th, om = slice(0, dim_theta), slice(dim_theta, None)
    B = G_theta.shape[1]
    if B < 2:
        raise ScheduleError("the unbiased minibatch covariance needs batch >= 2")
    gt, gw = G_theta[:, :, th], G_omega[:, :, om]
    mt, mw = gt.mean(axis=1), gw.mean(axis=1)
    num = np.einsum("nk,nk->n", U[:, th], mt) - np.einsum("nk,nk->n", U[:, om], mw)
    tr = ((gt - mt[:, None]) ** 2).sum(axis=(1, 2)) / (B - 1) + ((gw - mw[:, None]) ** 2).sum(axis=(1, 2)) / (B - 1)
    return num, np.asarray(eta) / (2 * B) * tr


@dataclass(frozen=True, repr=False)
class ScheduledTrainingResult:
    """Independent training chains under a learning-rate schedule (or a constant one).

    Attributes
    ----------
    final : (chains, d) array
    eta_final : (chains,) array
    steps, chains, batch : int
    gradient_evaluations : int
        Per-sample gradient evaluations per chain (``2 B`` per step for ALT and independent SML
        batches, ``B`` for a shared batch).
    record_steps : (k,) array
    eta_quantiles : (k, 3) array
        10 %, 50 %, 90 % quantiles of η over chains at the recorded steps.
    ratio_median : (k,) array
        Median over chains of the last :math:`r_W` (NaN while windows fill).
    distance : (k,) array or None
        :math:`\\mathbb{E}|u - u^*|^2` over chains when ``equilibrium`` was given.
    reductions : (chains,) int array
    seconds : float
    settings : dict
    success, status, message
    """

    final: np.ndarray
    eta_final: np.ndarray
    steps: int
    chains: int
    batch: int
    gradient_evaluations: int
    record_steps: np.ndarray
    eta_quantiles: np.ndarray
    ratio_median: np.ndarray
    distance: np.ndarray | None
    reductions: np.ndarray
    seconds: float
    settings: dict = field(default_factory=dict)
    success: bool = True
    status: int = 0
    message: str = ""

    def __repr__(self) -> str:
        q = self.eta_quantiles[-1]
        return (f"ScheduledTrainingResult(success={self.success}, steps={self.steps}, chains={self.chains}, "
                f"gradient_evaluations={self.gradient_evaluations}, eta median {q[1]:.4g} [{q[0]:.4g}, {q[2]:.4g}], "
                f"mean reductions {self.reductions.mean():.2f}, message={self.message!r})")


def simulate_scheduled_training(model, schedule: FDRSchedule | None = None, update: str = "alt", eta: float = 0.1,
                                batch: int = 4, batches: str = "independent", *, steps: int = 10000,
                                chains: int = 1024, seed: int = 0, init=None, record_every: int = 50,
                                equilibrium=None, bound: float = 1e6) -> ScheduledTrainingResult:
    r"""Minibatch ALT / SML training of ``chains`` independent runs, each adapting its own η.

    The updates are those of :func:`~stationary.simulate.simulate_training` (MATH.md section 2)
    with per-chain η; the schedule's ratio uses the per-sample gradients of the batches that
    the step itself uses (θ·ḡ_θ and ω·ḡ_ω at the parameters before the step).

    Parameters
    ----------
    model : GAN
    schedule : FDRSchedule or None
        ``None``: constant η (the baseline; same random numbers).
    update : {"alt", "sml"}
    eta : float
        Initial learning rate.
    batch : int
        ``B >= 2`` (the unbiased minibatch covariance).
    batches : {"independent", "shared"}
        SML only.
    steps, chains, seed, init
        Run length, independent runs, seed of ``numpy.random.default_rng``, start ((d,) or (chains, d)).
    record_every : int
        Steps between records of the η quantiles, the ratio and the distance.
    equilibrium : (d,) array, optional
        :math:`u^*` for the recorded :math:`\mathbb{E}|u-u^*|^2`.
    bound : float
        Divergence guard: stops with ``success=False``.
    """
    if update not in ("alt", "sml"):
        raise ScheduleError(f"unknown update {update!r}; choose from ['alt', 'sml']")
    if batches not in ("independent", "shared") or (update == "alt" and batches != "independent"):
        raise ScheduleError(f"batches must be 'independent' (ALT) or 'independent'/'shared' (SML), got {batches!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 2:
        raise ScheduleError(f"batch must be an integer >= 2, got {batch!r}")
    d, dth = model.dim, model.dim_theta
    N, M = model.z.size, model.x.size
    rng = np.random.default_rng(seed)
    U = np.zeros((chains, d)) if init is None else np.array(np.broadcast_to(np.asarray(init, float), (chains, d)))
    state = (schedule or FDRSchedule(epsilon=1e-300, delta=0.5)).start(eta, chains)
    if schedule is None:
        state.schedule = None
    th, om = slice(0, dth), slice(dth, d)
    eq = None if equilibrium is None else np.asarray(equilibrium, float)
    rec_steps, rec_q, rec_r, rec_d = [], [], [], []
    t0 = time.perf_counter()
    status, message = 0, ""

    def batch_grads(V):
        zi = rng.integers(0, N, (chains, batch))
        xi = rng.integers(0, M, (chains, batch))
        return model.per_sample_gradients(V, zi, xi)

    for s in range(1, steps + 1):
        e = state.eta[:, None]
        U0 = U.copy()
        if update == "alt":
            Gw = batch_grads(U)
            U[:, om] += e * Gw[:, :, om].mean(axis=1)
            Gt = batch_grads(U)
            U[:, th] -= e * Gt[:, :, th].mean(axis=1)
        else:
            Gw = batch_grads(U)
            Gt = Gw if batches == "shared" else batch_grads(U)
            U[:, om] += e * Gw[:, :, om].mean(axis=1)
            U[:, th] -= e * Gt[:, :, th].mean(axis=1)
        if schedule is not None:
            num, den = minibatch_ratio_terms(U0, Gt, Gw, state.eta, dth)
            state.observe(num, den)
        if not np.all(np.abs(U) <= bound):
            status, message = 1, f"a chain left |u| <= {bound:g} or became non-finite at step {s}"
            break
        if s % record_every == 0 or s == steps:
            rec_steps.append(s)
            rec_q.append(np.quantile(state.eta, [0.1, 0.5, 0.9]))
            rec_r.append(np.nanmedian(state.ratio) if np.isfinite(state.ratio).any() else np.nan)
            if eq is not None:
                rec_d.append(float(((U - eq) ** 2).sum(axis=1).mean()))
    per_step = batch * (1 if (update == "sml" and batches == "shared") else 2)
    if status == 0:
        message = f"{chains} runs x {s} steps" + ("" if schedule is None else f"; {state.reductions.mean():.2f} reductions per run")
    return ScheduledTrainingResult(
        final=U, eta_final=state.eta.copy(), steps=s, chains=chains, batch=batch, gradient_evaluations=s * per_step,
        record_steps=np.array(rec_steps), eta_quantiles=np.array(rec_q).reshape(-1, 3), ratio_median=np.array(rec_r),
        distance=np.array(rec_d) if eq is not None else None, reductions=state.reductions.copy(),
        seconds=time.perf_counter() - t0,
        settings=dict(update=update, eta=eta, batch=batch, batches=batches, schedule=schedule, seed=seed),
        success=status == 0, status=status, message=message,
    )
