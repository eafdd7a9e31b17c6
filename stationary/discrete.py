r"""Exact stationary mean and covariance of the discrete training recursions for affine gradients.

When every per-sample gradient is affine in :math:`u`,
:math:`g^{ij}(u) = G_{ij} u + h_{ij}` (the linear-quadratic WGAN of MATH.md section 7, and its
vector versions), one training step is a *random affine map* of the state,

.. math:: u' = A u + c, \qquad (A, c) \text{ independent of } u,

whose randomness is the minibatch. The stationary law's first two moments then solve linear
equations, exactly. Derivation (used by :func:`discrete_reference`):

**Batch means.** Stack :math:`X^{ij} = (\mathrm{vec}\,G_{ij}, h_{ij}) \in \mathbb R^{d^2+d}`. Over
the uniform pair it has mean :math:`\mu` and covariance :math:`\Sigma_X` (divide by ``N*M``);
the mean over a batch of ``B`` i.i.d. pairs, :math:`\bar X^{\mathcal B}`, has mean :math:`\mu`
and covariance :math:`\Sigma_X / B`. For separable losses
:math:`X^{ij} = X^{i0} + X^{0j} - X^{00}`, so :math:`\Sigma_X = \mathrm{Cov}_i X^{i0} + \mathrm{Cov}_j X^{0j}`.

**Sub-steps.** A player update with rows :math:`P` (projector onto θ or ω) and signs
:math:`S = \mathrm{diag}(-1_{d_\theta}, +1_{d_\omega})` is
:math:`u \leftarrow u + \eta P S(\bar G u + \bar h)`, i.e. on :math:`\tilde u = (u, 1)`,

.. math:: \tilde u \leftarrow T \tilde u,\quad
   T = \begin{pmatrix} I + \eta P S \bar G & \eta P S \bar h\\ 0 & 1\end{pmatrix}
   = \bar T + \sum_r \xi_r E_r,

affine in the batch noise :math:`\xi = \bar X - \mu` with covariance :math:`C`.

* (SML, shared batch): one sub-step, :math:`P = I`, :math:`C = \Sigma_X/B`.
* (SML, independent batches): one sub-step whose θ-rows use :math:`\bar X^{\mathcal B'}` and
  ω-rows :math:`\bar X^{\mathcal B}`: noise :math:`(\xi, \xi')`, :math:`C = \mathrm{blockdiag}(\Sigma_X, \Sigma_X)/B`.
* (ALT): ω sub-step with :math:`\bar X^{\mathcal B}` at :math:`(\theta, \omega)`, then θ sub-step with
  an independent :math:`\bar X^{\bar{\mathcal B}}` at :math:`(\theta, \omega')`: :math:`T = T_\theta T_\omega`.
  The θ update sees ω's noise through :math:`\omega'`, which this composition carries exactly.

**Second moments.** For :math:`\tilde M = E[\tilde u \tilde u^T]` and one sub-step,
:math:`E[T \tilde M T^T] = \bar T \tilde M \bar T^T + \sum_{rs} C_{rs} E_r \tilde M E_s^T`, a linear map
:math:`\mathcal K = \bar T\otimes\bar T + \sum_k \tilde E_k \otimes \tilde E_k` on
:math:`\mathrm{vec}\,\tilde M` (:math:`\tilde E_k = \sum_r L_{rk}E_r`, :math:`C = LL^T`); sub-steps
compose as :math:`\mathcal K_\theta\mathcal K_\omega`. The stationary :math:`\tilde M` is the fixed point
with :math:`\tilde M_{dd} = 1`; then :math:`m = \tilde M_{:d,d}`, :math:`P = \tilde M_{:d,:d} - m m^T`.
This handles multiplicative noise (random :math:`G_{ij}`) too.

**Additive noise** (all :math:`G_{ij}` equal, the LQ WGAN): :math:`A = F` is deterministic,
:math:`u' = F u + c + \varepsilon`, :math:`m = (I - F)^{-1} c` and :math:`P = F P F^T + Q` (discrete
Lyapunov, :func:`scipy.linalg.solve_discrete_lyapunov`). A sub-step's noise is
:math:`\varepsilon_k = \eta P_k S (\bar h_k - \mu_h)` with :math:`Q_k = \eta^2 P_k S \Sigma_h S P_k / B`
(for SML-independent the θ- and ω-rows are uncorrelated: :math:`Q = \eta^2 (P_\theta \Sigma_h P_\theta + P_\omega\Sigma_h P_\omega)/B`,
for SML-shared the cross block :math:`-\eta^2\Sigma_{h,\theta\omega}/B` stays); for ALT
:math:`u' = F_\theta(F_\omega u + c_\omega + \varepsilon_\omega) + c_\theta + \varepsilon_\theta`, so
:math:`F = F_\theta F_\omega` and :math:`Q = F_\theta Q_\omega F_\theta^T + Q_\theta`. Both routes are
computed and must agree (``agreement`` in the result).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

__all__ = ["DiscreteReference", "affine_gradient_moments", "discrete_reference", "euler_maruyama_reference", "AffineError"]


class AffineError(ValueError):
    """Per-sample gradients are not affine in u, or the recursion has no stationary second moment."""


@dataclass(frozen=True)
class AffineGradients:
    """:math:`X^{ij} = (\\mathrm{vec}\\,G_{ij}, h_{ij})`: its mean and covariance over the uniform pair."""

    G: np.ndarray  # (d, d) mean of G_ij
    h: np.ndarray  # (d,) mean of h_ij
    cov: np.ndarray  # (d*d + d, d*d + d)
    additive: bool  # every G_ij equal
    path: str


@dataclass(frozen=True)
class DiscreteReference:
    """Exact stationary moments of a linear training recursion (see the module docstring).

    Attributes
    ----------
    mean, covariance : arrays
    F : (d, d) array
        Mean one-step matrix :math:`E[A]`; ``c`` its mean offset.
    Q : (d, d) array or None
        Per-step noise covariance (additive case only).
    additive : bool
    spectral_radius : float
        Of the second-moment map's linear part (< 1 for a stationary law).
    agreement : float
        Max abs difference between the second-moment fixed point and the discrete-Lyapunov route
        (additive case; 0 otherwise).
    description : str
    """

    mean: np.ndarray
    covariance: np.ndarray
    F: np.ndarray
    c: np.ndarray
    Q: np.ndarray | None
    additive: bool
    spectral_radius: float
    agreement: float
    description: str


def affine_gradient_moments(model, pairs: str = "auto", rtol: float = 1e-9) -> AffineGradients:
    """Read :math:`G_{ij}, h_{ij}` off ``model.per_sample_gradients`` at ``u = 0`` and ``u = e_k``.

    ``pairs="all"`` enumerates all ``N*M`` pairs; ``"separable"`` uses pairs ``(i, 0)`` and
    ``(0, j)`` (``O(N + M)``, requires a separable loss, checked on random pairs); ``"auto"``
    picks separable when the model says it is. Affinity is checked at random points.
    """
    d = model.dim
    N, M = model.z.size, model.x.size
    if pairs == "auto":
        pairs = "separable" if getattr(model, "separable", False) else "all"
    if pairs == "all":
        zi, xj = np.meshgrid(np.arange(N), np.arange(M), indexing="ij")
        zi, xj = zi.ravel(), xj.ravel()
    elif pairs == "separable":
        zi = np.concatenate([np.arange(N), np.zeros(M, int)])
        xj = np.concatenate([np.zeros(N, int), np.arange(M)])
    else:
        raise ValueError(f"unknown pairs {pairs!r}; choose from ['auto', 'all', 'separable']")
    U = np.vstack([np.zeros(d), np.eye(d)])
    n = U.shape[0]
    g = model.per_sample_gradients(U, np.broadcast_to(zi, (n, zi.size)), np.broadcast_to(xj, (n, xj.size)))
    h = g[0]  # (P, d)
    G = np.stack([g[1 + k] - g[0] for k in range(d)], axis=-1)  # (P, d_out, d_in)
    # Affinity: compare the prediction at random points (and a far one) with the model.
    rng = np.random.default_rng(2024)
    test = np.vstack([rng.normal(size=(2, d)), 7.0 * rng.normal(size=(1, d))])
    sub = rng.integers(0, zi.size, size=min(64, zi.size))
    got = model.per_sample_gradients(test, np.broadcast_to(zi[sub], (3, sub.size)), np.broadcast_to(xj[sub], (3, sub.size)))
    pred = h[sub][None] + np.einsum("pkl,nl->npk", G[sub], test)
    if np.abs(got - pred).max() > rtol * (1 + np.abs(got).max()) * 10:
        raise AffineError("per-sample gradients are not affine in u: no exact discrete reference")
    X = np.concatenate([G.reshape(G.shape[0], d * d), h], axis=1)
    if pairs == "all":
        mu = X.mean(axis=0)
        cov = np.cov(X.T, bias=True).reshape(X.shape[1], X.shape[1])
    else:
        Xz, Xx = X[:N], X[N:]
        # Check additivity X^{ij} = X^{i0} + X^{0j} - X^{00} on random pairs.
        ri, rj = rng.integers(0, N, 16), rng.integers(0, M, 16)
        gp = model.per_sample_gradients(U, np.broadcast_to(ri, (n, 16)), np.broadcast_to(rj, (n, 16)))
        Xp = np.concatenate([np.stack([gp[1 + k] - gp[0] for k in range(d)], -1).reshape(16, d * d), gp[0]], axis=1)
        if np.abs(Xp - (Xz[ri] + Xx[rj] - Xz[0])).max() > rtol * (1 + np.abs(Xp).max()) * 10:
            raise AffineError("the loss is not separable; use pairs='all'")
        mu = Xz.mean(axis=0) + Xx.mean(axis=0) - Xz[0]
        cov = np.cov(Xz.T, bias=True).reshape(X.shape[1], X.shape[1]) + np.cov(Xx.T, bias=True).reshape(X.shape[1], X.shape[1])
    cov = 0.5 * (cov + cov.T)
    Gcov = cov[: d * d, : d * d]
    additive = bool(np.abs(Gcov).max() <= 1e-12 * (1 + np.abs(mu).max()) ** 2)
    return AffineGradients(mu[: d * d].reshape(d, d), mu[d * d :], cov, additive, pairs)


def _substep(d, eta, sign, rows_for_noise, cov, mu):
    """Mean augmented map and its noise directions for one sub-step.

    ``rows_for_noise``: list of (row mask, index of the noise vector it uses); each noise vector
    is an independent batch mean with covariance ``cov`` (already divided by B).
    Returns ``Tbar`` (D, D), ``E`` (k, D, D) scaled noise directions (covariance factor folded
    in), and the additive-case pieces ``(A, c, Q)``.
    """
    D = d + 1
    p = d * d + d
    lam, V = np.linalg.eigh(cov)
    L = V * np.sqrt(np.clip(lam, 0, None))  # cov = L L^T
    Tbar = np.eye(D)
    dirs = []
    for mask, _ in rows_for_noise:
        PS = np.diag(mask * sign)
        Gm, hm = mu[: d * d].reshape(d, d), mu[d * d :]
        Tbar[:d, :d] += eta * PS @ Gm
        Tbar[:d, d] += eta * PS @ hm
        for k in range(p):
            Gk, hk = L[: d * d, k].reshape(d, d), L[d * d :, k]
            E = np.zeros((D, D))
            E[:d, :d] = eta * PS @ Gk
            E[:d, d] = eta * PS @ hk
            dirs.append(E)
    return Tbar, np.array(dirs)


def _second_moment_operator(Tbar, E):
    K = np.kron(Tbar, Tbar)
    for Ek in E:
        K += np.kron(Ek, Ek)
    return K


def discrete_reference(model, update: str, eta: float, batch: int, batches: str = "independent", pairs: str = "auto") -> DiscreteReference:
    """Exact stationary mean and covariance of (ALT) / (SML) training with affine per-sample gradients.

    Parameters
    ----------
    model : GAN
        Per-sample gradients must be affine in ``u`` (checked).
    update : {"alt", "sml"}
    eta : float
    batch : int
    batches : {"independent", "shared"}
        SML only; ALT is always independent.

    See the module docstring for the derivation.
    """
    if update not in ("alt", "sml"):
        raise ValueError(f"unknown update {update!r}")
    if update == "alt" and batches != "independent":
        raise ValueError("ALT uses independent batches")
    d, dth = model.dim, model.dim_theta
    aff = affine_gradient_moments(model, pairs=pairs)
    sign = np.asarray(model.sign, float)
    cov = aff.cov / batch
    mu = np.concatenate([aff.G.ravel(), aff.h])
    th = np.r_[np.ones(dth), np.zeros(d - dth)]
    om = 1.0 - th
    p = d * d + d
    if update == "alt":
        subs = [[(om, 0)], [(th, 0)]]  # omega first, then theta with a fresh batch
    elif batches == "shared":
        subs = [[(np.ones(d), 0)]]
    else:
        subs = [[(om, 0), (th, 1)]]
    D = d + 1
    K = np.eye(D * D)
    Ts = []
    for sub in subs:
        Tbar, E = _substep(d, eta, sign, sub, cov, mu)
        # Independent batches within one sub-step: the direction list is simply concatenated.
        Ts.append((Tbar, sub))
        K = _second_moment_operator(Tbar, E) @ K
    # Linear part acting on the u u^T block decides stability.
    idx = [i * D + j for i in range(d) for j in range(d)]
    rho = float(np.max(np.abs(np.linalg.eigvals(K[np.ix_(idx, idx)]))))
    if rho >= 1:
        raise AffineError(f"the second-moment map has spectral radius {rho:.6g} >= 1: no stationary covariance (eta too large?)")
    I = np.eye(D * D)
    Amat = I - K
    last = D * D - 1
    Amat[last] = 0.0
    Amat[last, last] = 1.0
    rhs = np.zeros(D * D)
    rhs[last] = 1.0
    Mt = np.linalg.solve(Amat, rhs).reshape(D, D)
    Mt = 0.5 * (Mt + Mt.T)
    mean = Mt[:d, d].copy()
    covariance = Mt[:d, :d] - np.outer(mean, mean)
    # Mean map of the whole step.
    Ttot = np.eye(D)
    for Tbar, _ in Ts:
        Ttot = Tbar @ Ttot
    F, c = Ttot[:d, :d], Ttot[:d, d]
    Q = None
    agreement = 0.0
    if aff.additive:
        Sh = aff.cov[d * d :, d * d :] / batch
        Q = np.zeros((d, d))
        for Tbar, sub in Ts:
            Ak = Tbar[:d, :d]
            # Noise of this sub-step: rows using the same batch are correlated, different batches not.
            Qk = np.zeros((d, d))
            for mask, _ in sub:
                PS = np.diag(mask * sign)
                Qk += eta**2 * PS @ Sh @ PS
            Q = Ak @ Q @ Ak.T + Qk
        P = linalg.solve_discrete_lyapunov(F, Q)
        m2 = np.linalg.solve(np.eye(d) - F, c)
        agreement = float(max(np.abs(P - covariance).max(), np.abs(m2 - mean).max()))
    desc = f"{update.upper()}{'' if update == 'alt' else ' (' + batches + ' batches)'} eta={eta} B={batch}"
    return DiscreteReference(mean, 0.5 * (covariance + covariance.T), F, c, Q, aff.additive, rho, agreement, desc)


def euler_maruyama_reference(sde, dt: float):
    r"""Exact stationary mean and covariance of the Euler–Maruyama chain of an Ornstein–Uhlenbeck SDE.

    With :math:`b(u) = A u + c` and constant :math:`a`, EM is :math:`u' = (I + A\Delta t) u + c\Delta t + \sqrt{\Delta t}\,\sigma\xi`:
    mean :math:`-A^{-1}c` (exact), covariance :math:`P = F P F^T + a\Delta t`, :math:`F = I + A\Delta t`.
    It differs from the SDE's :math:`A S + S A^T + a = 0` by :math:`O(\Delta t)`.

    Returns
    -------
    mean, covariance
    """
    from .exact import linear_gaussian_reference

    mean, _, A = linear_gaussian_reference(sde)
    d = sde.dim
    a = sde.diffusion(np.zeros(d))[0]
    F = np.eye(d) + A * dt
    if np.max(np.abs(np.linalg.eigvals(F))) >= 1:
        raise AffineError(f"Euler–Maruyama with dt={dt} is unstable for this drift")
    P = linalg.solve_discrete_lyapunov(F, a * dt)
    return mean, 0.5 * (P + P.T)
