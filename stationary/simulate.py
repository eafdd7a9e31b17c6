r"""Long-run Monte Carlo of minibatch GAN training and of its SDE approximations.

Two processes, many independent chains in one ``(chains, d)`` array:

* ``simulate_training`` (process ``"sga"``): stochastic gradient ascent-descent exactly as in
  MATH.md section 2. A minibatch is ``B`` i.i.d. pairs :math:`(I_k, J_k)`, uniform with
  replacement over the z and x indices; :math:`g^{\mathcal B} = B^{-1}\sum_k g^{I_k J_k}`.

  - (ALT): :math:`\omega' = \omega + \eta\, g_\omega^{\mathcal B}(\theta, \omega)`, then
    :math:`\theta' = \theta - \eta\, g_\theta^{\bar{\mathcal B}}(\theta, \omega')` with an independent
    batch :math:`\bar{\mathcal B}`.
  - (SML): :math:`\omega' = \omega + \eta\, g_\omega^{\mathcal B}(\theta, \omega)`,
    :math:`\theta' = \theta - \eta\, g_\theta^{\mathcal B'}(\theta, \omega)` with
    :math:`\mathcal B' = \mathcal B` (``batches="shared"``) or independent (``"independent"``).

* ``simulate_sde`` (process ``"sde"``): Euler–Maruyama
  :math:`u' = u + b(u)\,\Delta t + \sigma(u)\sqrt{\Delta t}\,\xi`, :math:`\xi\sim N(0, I)`, with
  :math:`\sigma = V\,\mathrm{diag}(\sqrt{\max(\lambda, 0)})\,V^T` from the eigendecomposition
  :math:`a = V\,\mathrm{diag}(\lambda)\,V^T` (never Cholesky, so rank-deficient ``a`` works).

Statistics are accumulated online after the burn-in: per-chain time averages of :math:`u`
and :math:`u u^T`, per-chain batch means, a thinned trace of a few chains (for Sokal's
autocorrelation time) and optionally a histogram; see :mod:`stationary.diagnostics`.

Random stream: step ``s`` belongs to block ``s // block_steps`` and every block draws from its
own ``Generator(PCG64(SeedSequence(seed, spawn_key=(block,))))``. Checkpoints are written only
at block boundaries, so stopping, checkpointing and resuming never change which random numbers
a step sees: a resumed run is bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import diagnostics as diag
from .grid import Grid
from .io import atomic_savez

__all__ = ["simulate_training", "simulate_sde", "extrapolate_time_step", "MonteCarloResult", "Histogram", "BatchGradient",
           "SimulationError"]

#: Status codes of :class:`MonteCarloResult`.
STATUS = {0: "success", 1: "diverged", 2: "stopped early (resumable from the checkpoint)"}

DEFAULT_BOUND = 1e6
TRACE_LENGTH = 4096
TRACE_CHAINS = 64


class SimulationError(ValueError):
    """Invalid simulation input, or a checkpoint that does not belong to this run."""


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, repr=False)
class Histogram:
    """Counts of recorded samples on a tensor of bins.

    Attributes
    ----------
    edges : tuple of arrays
        Bin edges per axis.
    counts : int64 array, shape ``tuple(len(e) - 1 for e in edges)``
    outside : int
        Recorded samples outside the box (counted, never dropped silently).
    total : int
        All recorded samples, inside or outside.
    """

    edges: tuple
    counts: np.ndarray
    outside: int
    total: int

    def probabilities(self) -> np.ndarray:
        """Fraction of all recorded samples in each bin (sums to ``1 - outside/total``)."""
        return self.counts / max(self.total, 1)

    def density(self) -> np.ndarray:
        """Probabilities divided by bin volumes."""
        widths = np.meshgrid(*[np.diff(e) for e in self.edges], indexing="ij")
        return self.probabilities() / np.prod(widths, axis=0)


@dataclass(frozen=True, repr=False)
class MonteCarloResult:
    """Long-run statistics of many independent chains.

    Attributes
    ----------
    success : bool
    status : int
        0 success, 1 a chain diverged (statistics are those before the divergence, from all
        chains, or absent), 2 stopped early (``stop_after``; resumable).
    message : str
    process : str
        ``"sga"`` (training algorithm) or ``"sde"`` (Euler–Maruyama).
    mean, covariance : arrays
        Pooled over chains and recorded times after burn-in.
    stderr_mean, stderr_covariance : arrays
        From the spread across independent chains (see :mod:`stationary.diagnostics`).
    stderr_mean_batch : array
        The same from batch means (a cross-check).
    chain_means : (chains, d) array
        Per-chain time averages.
    tau : (d,) array
        Integrated autocorrelation time in time units (Sokal window on the thinned trace).
    tau_batch, tau_chains : (d,) arrays
        Cross-checks: from batch means, and :math:`T\\,s^2(\\bar u_c)/\\sigma^2` from the chain spread.
    ess : (d,) array
        Effective sample size :math:`C\\,T/\\max(\\tau, \\Delta t_\\mathrm{rec})`.
    steps : int
        Steps taken per chain (burn-in included); ``recorded`` samples per chain after burn-in.
    chains, seed : int
    seconds : float
        Wall time of the simulation (all sessions, when resumed).
    settings : dict
    histogram : Histogram or None
    final : (chains, d) array
        Chain positions at the end.
    warnings : tuple of str
    """

    success: bool
    status: int
    message: str
    process: str
    mean: np.ndarray | None
    covariance: np.ndarray | None
    stderr_mean: np.ndarray | None
    stderr_covariance: np.ndarray | None
    stderr_mean_batch: np.ndarray | None
    chain_means: np.ndarray | None
    tau: np.ndarray | None
    tau_batch: np.ndarray | None
    tau_chains: np.ndarray | None
    ess: np.ndarray | None
    steps: int
    recorded: int
    chains: int
    seconds: float
    seed: int
    settings: dict
    histogram: Histogram | None = None
    final: np.ndarray | None = None
    warnings: tuple = ()
    names: tuple = ()

    @property
    def std(self):
        return None if self.covariance is None else np.sqrt(np.diag(self.covariance))

    def to_dict(self) -> dict:
        """JSON-ready summary (``montecarlo.<process>.*`` in ``result.json``)."""

        def lst(a):
            return None if a is None else np.asarray(a).tolist()

        return {
            "success": bool(self.success),
            "status": int(self.status),
            "message": self.message,
            "process": self.process,
            "mean": lst(self.mean),
            "covariance": lst(self.covariance),
            "stderr_mean": lst(self.stderr_mean),
            "stderr_covariance": lst(self.stderr_covariance),
            "stderr_mean_batch": lst(self.stderr_mean_batch),
            "tau": lst(self.tau),
            "tau_batch": lst(self.tau_batch),
            "tau_chains": lst(self.tau_chains),
            "ess": lst(self.ess),
            "steps": int(self.steps),
            "recorded": int(self.recorded),
            "chains": int(self.chains),
            "seconds": float(self.seconds),
            "seed": int(self.seed),
            "settings": self.settings,
            "warnings": list(self.warnings),
        }

    def __repr__(self) -> str:
        with np.printoptions(precision=5):
            lines = [
                f"  success: {self.success}",
                f"   status: {self.status}",
                f"  message: {self.message!r}",
                f"  process: {self.process} ({self.settings.get('description', '')})",
                f"   chains: {self.chains}, steps: {self.steps}, recorded/chain: {self.recorded}, seed: {self.seed}",
                f"     mean: {self.mean} +- {self.stderr_mean}",
                f"      std: {self.std}",
                f"      tau: {self.tau} (time units), ess: {self.ess}",
                f"  seconds: {self.seconds:.3f}",
            ]
        return "MonteCarloResult(\n" + "\n".join(lines) + "\n)"


# --------------------------------------------------------------------------- batch gradients
class BatchGradient:
    r"""Minibatch-mean gradient :math:`g^{\mathcal B}(u) = B^{-1}\sum_k g^{I_k J_k}(u)` for many chains.

    A thin wrapper over the model's public :meth:`~stationary.model.GAN.batch_gradient`
    (coordinate-major: states ``V`` of shape (d, n), index arrays of shape (B, n)) that checks,
    once at construction, the model's fast path against the generic
    ``model.per_sample_gradients(V.T, I.T, J.T).mean(axis=1).T`` and falls back to the generic
    path on any mismatch. ``needs(rows)`` says which data indices the rows' gradients depend on
    at all, so that an update of only those rows may skip drawing the other index: the
    distribution of the update is unchanged.
    """

    def __init__(self, model, check: bool = True):
        self.model = model
        self.d = model.dim
        self.path = getattr(model, "batch_gradient_path", "per-sample")
        self.fast = self.path != "per-sample"
        if self.fast and check:
            rng = np.random.default_rng(0)
            V = rng.normal(size=(self.d, 5))
            zi = rng.integers(0, model.z.size, (3, 5))
            xi = rng.integers(0, model.x.size, (3, 5))
            ref = model.per_sample_gradients(V.T, zi.T, xi.T).mean(axis=1).T
            try:
                got = model.batch_gradient(V, zi, xi)
                ok = np.allclose(got, ref, rtol=1e-10, atol=1e-12 * (1 + np.abs(ref).max()))
            except Exception:  # the generic path is always right
                ok = False
            if not ok:
                self.fast = False
                self.path = "per-sample"

    def needs(self, rows) -> tuple[bool, bool]:
        """``(needs z index, needs x index)`` for the gradient components ``rows``."""
        if not self.fast:
            return True, True
        return self.model.needs(rows)

    def __call__(self, V: np.ndarray, z_index, x_index, rows=None) -> np.ndarray:
        """Batch-mean gradient, shape (d, n); only ``rows`` (a slice) are filled when given."""
        return self.model.batch_gradient(V, z_index, x_index, rows, fast=self.fast)


# --------------------------------------------------------------------------- the engine
def _block_rng(seed: int, block: int) -> np.random.Generator:
    """One generator per fixed block of steps, keyed by ``(seed, block)``: resumable and reproducible."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(block,))))


def _bins(histogram, d):
    if histogram is None:
        return None
    if isinstance(histogram, Grid):
        edges = tuple(np.asarray(e, float) for e in histogram.edges)
    else:
        edges = tuple(np.asarray(e, float) for e in histogram)
    if len(edges) != d:
        raise SimulationError(f"histogram needs edges for {d} axes, got {len(edges)}")
    for k, e in enumerate(edges):
        if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
            raise SimulationError(f"histogram edges of axis {k} must be increasing, at least 2 of them")
    return edges


class _Accumulators:
    """Online sums after burn-in; every field is saved in checkpoints."""

    FIELDS = ("sum_u", "sum_uu", "batch_sums", "trace", "hist", "hist_outside")

    def __init__(self, chains, d, n_rec, n_batches, edges):
        # Coordinate-major (d, chains) layout throughout: contiguous row operations.
        self.pairs = np.triu_indices(d)
        self.sum_u = np.zeros((d, chains))
        self.sum_uu = np.zeros((len(self.pairs[0]), chains))
        self.batch_len = -(-n_rec // n_batches)
        self.batch_sums = np.zeros((n_batches, d, chains))
        self.trace_stride = max(1, -(-n_rec // TRACE_LENGTH))
        self.trace = np.zeros((-(-n_rec // self.trace_stride), d, min(chains, TRACE_CHAINS)))
        self.edges = edges
        if edges is not None:
            self.hist = np.zeros(tuple(e.size - 1 for e in edges), dtype=np.int64)
            self._uniform = all(np.allclose(np.diff(e), np.diff(e)[0], rtol=1e-12, atol=0) for e in edges)
        else:
            self.hist = np.zeros(0, dtype=np.int64)
        self.hist_outside = np.zeros(1, dtype=np.int64)

    def record(self, V, r):
        """Add recorded sample number ``r`` (0-based, after burn-in); ``V`` is (d, chains)."""
        self.sum_u += V
        for p, (i, j) in enumerate(zip(*self.pairs)):
            self.sum_uu[p] += V[i] * V[j]
        self.batch_sums[r // self.batch_len] += V
        if r % self.trace_stride == 0:
            self.trace[r // self.trace_stride] = V[:, : self.trace.shape[2]]
        if self.edges is not None:
            self._histogram(V)

    def second_moments(self):
        """Per-chain sums of u u^T as (chains, d, d)."""
        d, n = self.sum_u.shape
        out = np.empty((n, d, d))
        for p, (i, j) in enumerate(zip(*self.pairs)):
            out[:, i, j] = out[:, j, i] = self.sum_uu[p]
        return out

    def _histogram(self, V):
        d, n = V.shape
        inside = np.ones(n, dtype=bool)
        flat = np.zeros(n, dtype=np.int64)
        for k, e in enumerate(self.edges):
            nb = e.size - 1
            if self._uniform:
                i = np.floor((V[k] - e[0]) * (nb / (e[-1] - e[0]))).astype(np.int64)
            else:
                i = np.searchsorted(e, V[k], side="right") - 1
            # The top edge belongs to the last bin, as in numpy.histogram.
            i = np.where(V[k] == e[-1], nb - 1, i)
            inside &= (i >= 0) & (i < nb)
            flat = flat * nb + np.clip(i, 0, nb - 1)
        self.hist.reshape(-1)[:] += np.bincount(flat[inside], minlength=self.hist.size)
        self.hist_outside[0] += n - int(inside.sum())

    def state(self):
        return {k: getattr(self, k) for k in self.FIELDS}

    def load(self, data):
        for k in self.FIELDS:
            arr = data["acc_" + k]
            if arr.shape != getattr(self, k).shape:
                raise SimulationError(f"checkpoint field {k} has shape {arr.shape}, expected {getattr(self, k).shape}")
            setattr(self, k, np.array(arr))


def _run(
    *,
    process,
    step,
    d,
    names,
    dt,
    chains,
    burn_in,
    duration,
    seed,
    init,
    record_every,
    n_batches,
    histogram,
    bound,
    block_steps,
    checkpoint,
    checkpoint_every,
    resume,
    stop_after,
    callback,
    progress,
    settings,
):
    if isinstance(chains, bool) or not isinstance(chains, (int, np.integer)) or chains < 1:
        raise SimulationError(f"chains must be a positive integer, got {chains!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    for label, v in (("burn_in", burn_in), ("duration", duration)):
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
            raise SimulationError(f"{label} must be a non-negative number of time units, got {v!r}")
    if not isinstance(record_every, (int, np.integer)) or record_every < 1:
        raise SimulationError(f"record_every must be a positive integer, got {record_every!r}")
    chains, seed = int(chains), int(seed)
    n_burn = int(round(burn_in / dt))
    n_rec = int(math.ceil(duration / dt / record_every))
    if n_rec < 2:
        raise SimulationError(f"duration {duration!r} gives {n_rec} recorded samples per chain; need at least 2")
    n_batches = int(min(n_batches, n_rec))
    n_rec = n_batches * -(-n_rec // n_batches)  # whole batches: every batch mean has the same length
    n_total = n_burn + n_rec * record_every
    edges = _bins(histogram, d)

    if init is None:
        init = np.zeros(d)
    init = np.asarray(init, float)
    # The state is kept coordinate-major, V = U.T of shape (d, chains).
    if init.shape == (d,):
        U = np.ascontiguousarray(np.broadcast_to(init[:, None], (d, chains)))
    elif init.shape == (chains, d):
        U = np.ascontiguousarray(init.T)
    else:
        raise SimulationError(f"init must have shape ({d},) or ({chains}, {d}), got {init.shape}")
    if not np.all(np.isfinite(U)):
        raise SimulationError("init has non-finite entries")

    settings = dict(settings)
    settings.update(
        dt=dt, chains=chains, burn_in=burn_in, duration=duration, seed=seed, record_every=int(record_every),
        n_batches=n_batches, block_steps=int(block_steps), burn_in_steps=n_burn, recorded_per_chain=n_rec,
        total_steps=n_total, bound=bound, histogram=None if edges is None else [e.tolist() for e in edges],
    )
    # Everything that shapes the random stream or the accumulators must match for a checkpoint to
    # belong to this run (the run length too: it fixes the batch-means layout).
    signature = json.dumps({k: v for k, v in settings.items() if k != "description"}, sort_keys=True, default=str)
    signature += json.dumps(init.tolist())

    acc = _Accumulators(chains, d, n_rec, n_batches, edges)
    s = 0
    elapsed_before = 0.0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.exists():
        with np.load(ckpt, allow_pickle=False) as data:
            if str(data["signature"]) != signature:
                raise SimulationError(f"checkpoint {ckpt} was written by a run with different settings; refusing to resume")
            s = int(data["step"])
            if data["U"].shape != U.shape:
                raise SimulationError(f"checkpoint {ckpt} holds states of shape {data['U'].shape}, expected {U.shape}")
            U = np.array(data["U"])
            acc.load(data)
            elapsed_before = float(data["seconds"])
    elif resume and ckpt is None:
        raise SimulationError("resume=True needs a checkpoint path")

    def save(step_no, U_, acc_state, seconds):
        if ckpt is None:
            return
        arrays = {"acc_" + k: v for k, v in acc_state.items()}
        atomic_savez(ckpt, compress=False, signature=np.array(signature), step=np.array(step_no), U=U_, seconds=np.array(seconds), **arrays)

    if checkpoint_every is None:
        every_steps, every_seconds = None, None
    elif isinstance(checkpoint_every, (int, np.integer)) and not isinstance(checkpoint_every, bool):
        every_steps, every_seconds = int(checkpoint_every), None
    else:
        every_steps, every_seconds = None, float(checkpoint_every)

    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_total, initial=s, unit="step", desc=f"{process} x{chains}", leave=False)
        except ImportError:  # tqdm is optional at run time
            bar = None

    t0 = time.perf_counter()
    last_ckpt_time, last_ckpt_step = t0, s
    status, message = 0, ""
    warn_list = []
    # Snapshot at the last block boundary: what an interrupt writes (a block is redone on resume).
    snap = (s, U.copy(), {k: v.copy() for k, v in acc.state().items()})
    try:
        while s < n_total:
            block = s // block_steps
            rng = _block_rng(seed, block)
            end = min(n_total, (block + 1) * block_steps)
            diverged = None
            while s < end:
                step(U, rng)
                s += 1
                top = np.abs(U).max()
                if not (top <= bound):
                    diverged = s
                    break
                r = s - n_burn
                if r > 0 and r % record_every == 0:
                    acc.record(U, r // record_every - 1)
            if diverged is not None:
                bad = ~np.all(np.isfinite(U), axis=0) | (np.abs(U) > bound).any(axis=0)
                cs = np.flatnonzero(bad)
                c = int(cs[0])
                what = "became non-finite" if not np.all(np.isfinite(U[:, c])) else f"left the bound |u| <= {bound:g}"
                status = 1
                message = (
                    f"chain {c} {what} at step {diverged} (time {diverged * dt:g}): u = {U[:, c].tolist()}; "
                    f"{cs.size} of {chains} chains diverged by then; the run was stopped and no chain is excluded. "
                    "Is the drift dissipative (regularisation) and the step small enough?"
                )
                break
            if bar is not None:
                bar.update(s - bar.n)
            now = time.perf_counter()
            snap = (s, U.copy(), {k: v.copy() for k, v in acc.state().items()})
            if callback is not None:
                callback(s, U.T)
            done = s >= n_total
            stop = stop_after is not None and s >= stop_after and not done
            due = (every_steps is not None and s - last_ckpt_step >= every_steps) or (
                every_seconds is not None and now - last_ckpt_time >= every_seconds
            )
            if ckpt is not None and (due or done or stop):
                save(s, U, acc.state(), elapsed_before + now - t0)
                last_ckpt_time, last_ckpt_step = now, s
            if stop:
                status = 2
                message = f"stopped after step {s} of {n_total} (stop_after={stop_after}); resume from {ckpt}"
                break
    except KeyboardInterrupt:
        if ckpt is not None:
            s_, U_, st_ = snap
            save(s_, U_, st_, elapsed_before + time.perf_counter() - t0)
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = elapsed_before + time.perf_counter() - t0

    # ---------------------------------------------------------------- statistics
    n_done = max(0, min(s - n_burn, n_rec * record_every) // record_every)
    hist = None
    if edges is not None:
        hist = Histogram(edges, acc.hist.copy(), int(acc.hist_outside[0]), int(n_done * chains))
    common = dict(process=process, steps=s, recorded=n_done, chains=chains, seconds=seconds, seed=seed,
                  settings=settings, histogram=hist, final=U.T.copy(), names=tuple(names))
    if status == 2 or n_done < 2:
        return MonteCarloResult(False, status, message, mean=None, covariance=None, stderr_mean=None,
                                stderr_covariance=None, stderr_mean_batch=None, chain_means=None, tau=None,
                                tau_batch=None, tau_chains=None, ess=None, **common)
    cm = acc.sum_u.T / n_done
    cs2 = acc.second_moments() / n_done
    mean, se_m, cov, se_cov = diag.chain_spread_stderr(cm, cs2)
    var = np.diag(cov)
    dt_rec = dt * record_every
    T = n_done * dt_rec
    full_batches = n_done // acc.batch_len
    if full_batches >= 2:
        bm = acc.batch_sums[:full_batches].transpose(2, 0, 1) / acc.batch_len
        se_bm, tau_b = diag.batch_means_stderr(bm, acc.batch_len, var)
        tau_b = tau_b * dt_rec
    else:
        se_bm = tau_b = np.full(d, np.nan)
    n_trace = -(-n_done // acc.trace_stride)
    tau = diag.integrated_time(acc.trace[:n_trace].transpose(0, 2, 1)) * acc.trace_stride * dt_rec
    with np.errstate(invalid="ignore", divide="ignore"):
        tau_c = T * cm.var(axis=0, ddof=1) / var if chains > 1 else np.full(d, np.nan)
    # The thinned trace cannot resolve tau below its own stride; the chain-spread value is the
    # larger (and conservative) one when the trace is too coarse.
    tau = np.maximum(tau, np.where(np.isfinite(tau_c), np.minimum(tau_c, acc.trace_stride * dt_rec), 0))
    ess = chains * T / np.maximum(tau, dt_rec)
    if status == 0:
        w = diag.length_warning(T, tau, list(names), warn=True)
        if w:
            warn_list.append(w)
        message = f"{chains} chains x {n_done} recorded samples ({T:g} time units after {n_burn * dt:g} burn-in)"
        if warn_list:
            message += "; WARNING: " + "; ".join(warn_list)
        if hist is not None and hist.outside:
            message += f"; {hist.outside} of {hist.total} samples fell outside the histogram box"
    else:
        message += f" Statistics cover the {n_done} samples recorded before step {s}."
    return MonteCarloResult(
        status == 0, status, message, mean=mean, covariance=cov, stderr_mean=se_m, stderr_covariance=se_cov,
        stderr_mean_batch=se_bm, chain_means=cm, tau=tau, tau_batch=tau_b, tau_chains=tau_c, ess=ess,
        warnings=tuple(warn_list), **common,
    )


# --------------------------------------------------------------------------- public API
def simulate_training(
    model,
    update: str = "alt",
    eta: float = 0.1,
    batch: int = 1,
    batches: str = "independent",
    *,
    chains: int = 4096,
    burn_in: float = 50.0,
    duration: float = 500.0,
    seed: int = 0,
    init=None,
    record_every: int = 1,
    histogram=None,
    n_batches: int = 32,
    bound: float = DEFAULT_BOUND,
    block_steps: int = 256,
    checkpoint=None,
    checkpoint_every=60.0,
    resume: bool = False,
    stop_after: int | None = None,
    callback=None,
    progress: bool = True,
) -> MonteCarloResult:
    r"""Long-run Monte Carlo of minibatch gradient ascent-descent (process ``"sga"``).

    Parameters
    ----------
    model : GAN
    update : {"alt", "sml"}
        (ALT): :math:`\omega' = \omega + \eta g_\omega^{\mathcal B}(\theta,\omega)`, then
        :math:`\theta' = \theta - \eta g_\theta^{\bar{\mathcal B}}(\theta,\omega')`, independent batches.
        (SML): :math:`\omega' = \omega + \eta g_\omega^{\mathcal B}(\theta,\omega)`,
        :math:`\theta' = \theta - \eta g_\theta^{\mathcal B'}(\theta,\omega)`.
    eta : float
        Learning rate; one step is ``eta`` time units.
    batch : int
        ``B``, pairs per minibatch, drawn i.i.d. uniform with replacement.
    batches : {"independent", "shared"}
        For SML: one batch for both players (``"shared"``) or one each. ALT is always independent.
    chains : int
        Independent chains, simulated together.
    burn_in, duration : float
        In time units (steps times ``eta``); statistics use the ``duration`` after ``burn_in``.
        The number of recorded samples is rounded up to a whole number of batch means.
    seed : int
        Every random number is a function of ``(seed, block of steps)``.
    init : array, optional
        ``(d,)`` start for all chains or ``(chains, d)``; default the origin.
    record_every : int
        Record every k-th step after burn-in (statistics and histogram).
    histogram : Grid or sequence of edge arrays, optional
        Bin the recorded samples on the grid's cells or on these edges.
    n_batches : int
        Batch means per chain.
    bound : float
        A chain with a non-finite entry or :math:`|u_k| >` ``bound`` stops the run (status 1,
        message naming step and chain).
    block_steps : int
        Steps per random-number block (and the granularity of checkpoints).
    checkpoint : path, optional
        ``.npz`` file written atomically at block boundaries, on completion, on ``stop_after`` and
        on ``KeyboardInterrupt``.
    checkpoint_every : float or int
        Seconds (float) or steps (int) between checkpoints.
    resume : bool
        Continue from ``checkpoint`` if it exists; the result is bit-identical to an
        uninterrupted run with the same arguments.
    stop_after : int, optional
        Stop (status 2) at the first block boundary at or after this step, after checkpointing.
    callback : callable, optional
        ``callback(step, U)`` at every block boundary (may raise ``KeyboardInterrupt``).
    progress : bool
        Show a tqdm progress bar.
    """
    if update not in ("alt", "sml"):
        raise SimulationError(f"unknown update {update!r}; choose from ['alt', 'sml']")
    if batches not in ("independent", "shared"):
        raise SimulationError(f"unknown batches {batches!r}; choose from ['independent', 'shared']")
    if update == "alt" and batches != "independent":
        raise SimulationError("ALT draws independent batches for the two players: use batches='independent'")
    if not (isinstance(eta, (int, float)) and np.isfinite(eta) and eta > 0):
        raise SimulationError(f"eta must be a positive number, got {eta!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise SimulationError(f"batch must be a positive integer, got {batch!r}")
    d, dth = model.dim, model.dim_theta
    N, M = model.z.size, model.x.size
    B = int(batch)
    grad = BatchGradient(model)
    eta = float(eta)
    # Exact uniform integers (Lemire with rejection); the narrowest dtype is the fastest to draw.
    idx_dtype = np.uint16 if max(N, M) <= 2**16 else np.int64
    th, om = slice(0, dth), slice(dth, d)
    sign = np.asarray(model.sign, float)[:, None]

    def draw(rng, n, need):
        # Fixed order per batch: z indices, then x indices, each (B, n); an index that the
        # updated rows do not depend on is not drawn (same law of the update, fewer numbers).
        nz, nx = need
        zi = rng.integers(0, N, (B, n), dtype=idx_dtype) if nz else None
        xi = rng.integers(0, M, (B, n), dtype=idx_dtype) if nx else None
        return zi, xi

    need_all, need_th, need_om = grad.needs(slice(0, d)), grad.needs(th), grad.needs(om)

    if update == "alt":

        def step(V, rng):
            n = V.shape[1]
            zi, xi = draw(rng, n, need_om)
            V[om] += eta * grad(V, zi, xi, om)[om]
            zj, xj = draw(rng, n, need_th)
            V[th] -= eta * grad(V, zj, xj, th)[th]

    elif batches == "shared":

        def step(V, rng):
            zi, xi = draw(rng, V.shape[1], need_all)
            g = grad(V, zi, xi)
            g *= sign
            g *= eta
            V += g

    else:

        def step(V, rng):
            n = V.shape[1]
            zi, xi = draw(rng, n, need_om)  # omega's batch
            zj, xj = draw(rng, n, need_th)  # theta's batch
            gw = grad(V, zi, xi, om)
            gt = grad(V, zj, xj, th)
            V[th] -= eta * gt[th]
            V[om] += eta * gw[om]

    desc = f"{update.upper()} training of {getattr(model, 'name', 'model')} (eta={eta}, B={B}, batches={batches})"
    settings = dict(description=desc, update=update, eta=eta, batch=B, batches=batches, gradient_path=grad.path)
    return _run(process="sga", step=step, d=d, names=list(getattr(model, "names", [f"u{k}" for k in range(d)])),
                dt=eta, chains=chains, burn_in=burn_in, duration=duration, seed=seed, init=init,
                record_every=record_every, n_batches=n_batches, histogram=histogram, bound=bound,
                block_steps=block_steps, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                stop_after=stop_after, callback=callback, progress=progress, settings=settings)


def matrix_sqrt_psd(a: np.ndarray) -> np.ndarray:
    r"""Symmetric square roots :math:`\sigma = V\,\mathrm{diag}(\sqrt{\max(\lambda,0)})\,V^T` of a stack of PSD matrices.

    Negative eigenvalues (round-off of rank-deficient ``a``) are clipped to zero; unlike a
    Cholesky factor this exists for every PSD matrix, singular or not.

    For d = 1 and d = 2 the same principal root in closed form (about 20x faster than a
    batched ``eigh``): :math:`\sigma = (a + s I)/t`, :math:`s = \sqrt{\max(\det a, 0)}`,
    :math:`t = \sqrt{\mathrm{tr}\, a + 2 s}`, for which Cayley–Hamilton gives
    :math:`\sigma^2 - a = (s^2 - \det a)/t^2\, I`, i.e. round-off only, singular or not.
    """
    a = np.asarray(a, dtype=float)
    d = a.shape[-1]
    if d == 1:
        return np.sqrt(np.clip(a, 0.0, None))
    if d == 2:
        a00, a11 = a[..., 0, 0], a[..., 1, 1]
        a01 = 0.5 * (a[..., 0, 1] + a[..., 1, 0])
        a00c, a11c = np.clip(a00, 0.0, None), np.clip(a11, 0.0, None)
        sdet = np.sqrt(np.clip(a00c * a11c - a01 * a01, 0.0, None))
        t = np.sqrt(a00c + a11c + 2.0 * sdet)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(t > 0, 1.0 / t, 0.0)
        out = np.empty(a.shape)
        out[..., 0, 0] = (a00c + sdet) * inv
        out[..., 1, 1] = (a11c + sdet) * inv
        out[..., 0, 1] = out[..., 1, 0] = a01 * inv
        return out
    lam, V = np.linalg.eigh(0.5 * (a + np.swapaxes(a, -1, -2)))
    return (V * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]) @ np.swapaxes(V, -1, -2)


def simulate_sde(
    sde,
    dt: float | None = None,
    *,
    chains: int = 4096,
    burn_in: float = 50.0,
    duration: float = 500.0,
    seed: int = 0,
    init=None,
    record_every: int = 1,
    histogram=None,
    n_batches: int = 32,
    bound: float = DEFAULT_BOUND,
    block_steps: int = 256,
    checkpoint=None,
    checkpoint_every=60.0,
    resume: bool = False,
    stop_after: int | None = None,
    callback=None,
    progress: bool = True,
) -> MonteCarloResult:
    r"""Long-run Euler–Maruyama simulation of an :class:`~stationary.sde.SDE` (process ``"sde"``).

    :math:`u' = u + b(u)\,\Delta t + \sigma(u)\sqrt{\Delta t}\,\xi`, :math:`\sigma\sigma^T = a`
    from a clipped eigendecomposition (see :func:`matrix_sqrt_psd`). The stationary law of
    the scheme differs from the SDE's by :math:`O(\Delta t)`; choose ``dt`` accordingly.

    Parameters
    ----------
    sde : SDE
    dt : float, optional
        Time step; default ``sde.eta`` (the learning rate, for SDEs from :func:`~stationary.sde.gan_sde`).

    The remaining parameters are those of :func:`simulate_training`.
    """
    if dt is None:
        dt = getattr(sde, "eta", None)
        if dt is None:
            raise SimulationError("dt is required for an SDE without a learning rate (sde.eta)")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise SimulationError(f"dt must be a positive number, got {dt!r}")
    dt = float(dt)
    d = sde.dim
    sq = math.sqrt(dt)
    # b and a only (no divergence, which Euler–Maruyama does not need); a constant diffusion
    # (declared by the SDE, or proved by gan_sde for its model) is factorised once.
    constant = bool(getattr(sde, "constant_diffusion", False))
    has_dd = callable(getattr(sde, "drift_and_diffusion", None))
    if constant:
        a0 = np.asarray(sde.diffusion(np.zeros(d)), float).reshape(1, d, d)
        if not np.all(np.isfinite(a0)):
            raise SimulationError(f"constant diffusion is not finite: a = {a0[0].tolist()}")
        sig0 = sq * matrix_sqrt_psd(a0)[0]

        def step(V, rng):
            xi = rng.standard_normal(V.shape)  # (d, n)
            b = sde.drift_and_diffusion(V.T, diffusion=False)[0] if has_dd else sde.drift(V.T)
            V += b.T * dt + sig0 @ xi

    else:

        def step(V, rng):
            xi = rng.standard_normal(V.shape)  # (d, n)
            U = V.T
            if has_dd:
                b, a = sde.drift_and_diffusion(U)
            else:
                b, a = sde.drift(U), sde.diffusion(U)
            sig = matrix_sqrt_psd(a)
            V += b.T * dt + sq * np.einsum("nkl,ln->kn", sig, xi)

    settings = dict(description=f"Euler-Maruyama of {getattr(sde, 'description', 'SDE')} (dt={dt})",
                    diffusion="constant (factorised once)" if constant else "state-dependent")
    return _run(process="sde", step=step, d=d, names=list(getattr(sde, "names", [f"u{k}" for k in range(d)])),
                dt=dt, chains=chains, burn_in=burn_in, duration=duration, seed=seed, init=init,
                record_every=record_every, n_batches=n_batches, histogram=histogram, bound=bound,
                block_steps=block_steps, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
                stop_after=stop_after, callback=callback, progress=progress, settings=settings)


def extrapolate_time_step(full: MonteCarloResult, half: MonteCarloResult) -> MonteCarloResult:
    r"""Richardson extrapolation of Euler–Maruyama's :math:`O(\Delta t)` stationary bias.

    :math:`Q = 2Q(\Delta t/2) - Q(\Delta t)` for the mean and covariance, with standard errors
    :math:`\sqrt{4 s_{1/2}^2 + s_1^2}` (the two runs are independent).  The histogram and the
    diagnostics are those of the ``dt/2`` run.
    """
    from dataclasses import replace

    if not (full.success and half.success):
        return half if not half.success else full
    se_m = np.sqrt(4 * half.stderr_mean**2 + full.stderr_mean**2)
    se_c = np.sqrt(4 * half.stderr_covariance**2 + full.stderr_covariance**2)
    return replace(half, mean=2 * half.mean - full.mean, covariance=2 * half.covariance - full.covariance,
                   stderr_mean=se_m, stderr_covariance=se_c,
                   message=half.message + "; moments extrapolated from dt and dt/2",
                   settings=dict(half.settings, extrapolated_from=[full.settings.get("dt"), half.settings.get("dt")]))
