r"""Monte Carlo error analysis: autocorrelation times, effective sample sizes, standard errors.

Everything here works on summaries that the simulators accumulate online (per-chain time
averages, per-chain batch means, a thinned trace of a few chains), never on full trajectories.

Notation: ``C`` independent chains, each observed at ``n`` recorded times after burn-in,
:math:`\bar u_c = n^{-1}\sum_t u_{c,t}` (chain means), :math:`\bar M_c = n^{-1}\sum_t u_{c,t}u_{c,t}^T`.

* Integrated autocorrelation time (Sokal 1997; emcee's ``integrated_time``):
  :math:`\tau = 1 + 2\sum_{k\ge1}\rho_k`, summed up to the automatic window
  :math:`M = \min\{m : m \ge c\,\hat\tau(m)\}` with ``c = 5``.
* Effective sample size :math:`n_\mathrm{eff} = C\, n / \tau`.
* Standard errors from the spread across independent chains (valid whatever the
  autocorrelation, because the chains are independent):
  :math:`\mathrm{se}(\hat m) = s(\bar u_c)/\sqrt{C}`, and for the pooled covariance
  :math:`\hat S = C^{-1}\sum_c \bar M_c - \hat m\hat m^T` the delta method gives the per-chain
  influence :math:`\bar M_c - \bar u_c \hat m^T - \hat m \bar u_c^T` whose spread over chains,
  divided by :math:`\sqrt C`, is :math:`\mathrm{se}(\hat S)`.
* Batch means: with ``K`` batches per chain, :math:`\mathrm{se}^2 = s^2(\text{batch means}) / (C K)`
  and :math:`\tau \approx L\, s^2(\text{batch means}) / s^2(u)` with ``L`` samples per batch.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "autocorrelation_function",
    "integrated_time",
    "auto_window",
    "effective_sample_size",
    "chain_spread_stderr",
    "batch_means_stderr",
    "length_warning",
    "ShortRunWarning",
    "MIN_LENGTH_IN_TAU",
]

#: emcee's rule of thumb: trust a run (and its own tau estimate) only if it is this many tau long.
MIN_LENGTH_IN_TAU = 50.0


class ShortRunWarning(UserWarning):
    """The run is shorter than :data:`MIN_LENGTH_IN_TAU` autocorrelation times."""


def _next_pow_two(n: int) -> int:
    i = 1
    while i < n:
        i <<= 1
    return i


def autocorrelation_function(x: np.ndarray) -> np.ndarray:
    r"""Normalised autocorrelation :math:`\rho_k` of series along axis 0, by FFT.

    Parameters
    ----------
    x : (n, ...) array
        Time along axis 0; any further axes are independent series.

    Returns
    -------
    (n, ...) array with ``rho[0] == 1`` (zero-variance series give ``rho = 1`` at lag 0 and 0 after).
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    f = np.fft.rfft(x - x.mean(axis=0), n=2 * _next_pow_two(n), axis=0)
    acf = np.fft.irfft(f * np.conjugate(f), axis=0)[:n]
    var = acf[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(var > 0, acf / np.where(var > 0, var, 1.0), 0.0)
    rho[0] = 1.0
    return rho


def auto_window(taus: np.ndarray, c: float) -> int:
    """Sokal's window: the smallest ``m`` with ``m >= c * tau(m)`` (the last index if none)."""
    m = np.arange(len(taus)) < c * taus
    if np.any(~m):
        return int(np.argmin(m))
    return len(taus) - 1


def integrated_time(x, c: float = 5.0) -> np.ndarray:
    r"""Integrated autocorrelation time per coordinate, in units of the series' sampling step.

    The autocorrelation function is averaged over chains first (as emcee does), then
    :math:`\hat\tau(m) = 2\sum_{k=0}^{m}\rho_k - 1` is cut at Sokal's automatic window.

    Parameters
    ----------
    x : array, shape (n,), (n, chains) or (n, chains, d)
        A recorded (possibly thinned) series.
    c : float
        Window constant (emcee's default 5).

    Returns
    -------
    tau : (d,) array (a 0-d array for 1-d input)
    """
    x = np.asarray(x, dtype=float)
    squeeze = x.ndim == 1
    if x.ndim == 1:
        x = x[:, None, None]
    elif x.ndim == 2:
        x = x[:, :, None]
    rho = autocorrelation_function(x).mean(axis=1)  # (n, d)
    taus = 2.0 * np.cumsum(rho, axis=0) - 1.0
    out = np.empty(x.shape[2])
    for k in range(x.shape[2]):
        out[k] = taus[auto_window(taus[:, k], c), k]
    out = np.maximum(out, 1e-12)
    return out[0] if squeeze else out


def effective_sample_size(n_total: float, tau) -> np.ndarray:
    """:math:`n_\\mathrm{eff} = n_\\mathrm{total}/\\max(\\tau, 1)` (``tau`` in sampling steps)."""
    return n_total / np.maximum(np.asarray(tau, float), 1.0)


def chain_spread_stderr(chain_means: np.ndarray, chain_second: np.ndarray | None = None):
    r"""Standard errors of the pooled mean and covariance from the spread across independent chains.

    Parameters
    ----------
    chain_means : (C, d) array
        :math:`\bar u_c`.
    chain_second : (C, d, d) array, optional
        :math:`\bar M_c`, per-chain time averages of :math:`u u^T`.

    Returns
    -------
    mean, stderr_mean, covariance, stderr_covariance
        The pooled estimates :math:`\hat m`, :math:`\hat S = \overline{M} - \hat m\hat m^T` and
        their standard errors (``None`` for the covariance parts without ``chain_second``).
        With fewer than 2 chains the standard errors are NaN.
    """
    chain_means = np.asarray(chain_means, float)
    C = chain_means.shape[0]
    m = chain_means.mean(axis=0)
    se_m = chain_means.std(axis=0, ddof=1) / np.sqrt(C) if C > 1 else np.full_like(m, np.nan)
    if chain_second is None:
        return m, se_m, None, None
    M = np.asarray(chain_second, float)
    S = M.mean(axis=0) - np.outer(m, m)
    # Influence of chain c on S (delta method); the constant part drops out of the spread.
    infl = M - chain_means[:, :, None] * m[None, None, :] - m[None, :, None] * chain_means[:, None, :]
    se_S = infl.std(axis=0, ddof=1) / np.sqrt(C) if C > 1 else np.full_like(S, np.nan)
    return m, se_m, 0.5 * (S + S.T), se_S


def batch_means_stderr(batch_means: np.ndarray, samples_per_batch: int, variance: np.ndarray):
    r"""Standard error of the mean and autocorrelation time from batch means.

    Parameters
    ----------
    batch_means : (C, K, d) array
        Means of ``samples_per_batch`` consecutive recorded samples, ``K`` batches per chain.
    samples_per_batch : int
    variance : (d,) array
        Stationary variance of each coordinate (the diagonal of the covariance estimate).

    Returns
    -------
    stderr : (d,) array
        :math:`s(\text{batch means})/\sqrt{CK}` with the variance about each chain's own mean
        pooled over chains (so between-chain differences of the start do not count twice).
    tau : (d,) array
        :math:`L\, s^2_\text{within}/\sigma^2` in sampling steps.
    """
    bm = np.asarray(batch_means, float)
    C, K, d = bm.shape
    if K < 2:
        nan = np.full(d, np.nan)
        return nan, nan
    within = ((bm - bm.mean(axis=1, keepdims=True)) ** 2).sum(axis=(0, 1)) / (C * (K - 1))
    se = np.sqrt(within / (C * K))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = samples_per_batch * within / np.asarray(variance, float)
    return se, tau


def length_warning(duration: float, tau, names=None, factor: float = MIN_LENGTH_IN_TAU, warn: bool = True) -> str | None:
    """Message (and a :class:`ShortRunWarning`) when ``duration < factor * tau`` for some coordinate.

    ``duration`` and ``tau`` in the same units (time units for the simulators).
    """
    tau = np.atleast_1d(np.asarray(tau, float))
    short = np.flatnonzero(~(duration >= factor * tau))
    if short.size == 0:
        return None
    names = names or [f"u{k}" for k in range(tau.size)]
    worst = int(short[np.nanargmax(tau[short])]) if np.any(np.isfinite(tau[short])) else int(short[0])
    msg = (
        f"the run ({duration:g} time units after burn-in) is shorter than {factor:g} autocorrelation times "
        f"for {', '.join(names[k] for k in short)} (tau = {tau[worst]:.3g} for {names[worst]}): "
        "the autocorrelation time and the standard errors may be unreliable; run longer"
    )
    if warn:
        warnings.warn(msg, ShortRunWarning, stacklevel=3)
    return msg
