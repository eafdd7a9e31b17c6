"""Exact references: Gaussian invariant laws of Ornstein–Uhlenbeck SDEs (MATH.md section 7)."""
from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["linear_gaussian_reference", "ReferenceError"]


class ReferenceError(ValueError):
    """The SDE is not Ornstein–Uhlenbeck (affine drift, constant diffusion) or is not stable."""


def linear_gaussian_reference(sde, probe=None, scale: float = 1.0, rtol: float = 1e-9):
    r"""Stationary mean and covariance of an SDE with affine drift and constant diffusion.

    With :math:`b(u) = A u + c` and constant :math:`a`, the invariant law is
    :math:`\mathcal{N}(m, S)` with :math:`m = -A^{-1}c` and :math:`A S + S A^T + a = 0`
    (continuous Lyapunov equation), provided every eigenvalue of ``A`` has negative real part.

    ``A`` and ``c`` are read off ``d + 1`` evaluations of the drift; a further random
    point checks that drift and diffusion really are affine and constant.

    Returns
    -------
    mean : (d,) array
    covariance : (d, d) array
    A : (d, d) array
    """
    d = sde.dim
    base = np.zeros(d) if probe is None else np.asarray(probe, float)
    pts = np.vstack([base, base + scale * np.eye(d)])
    b = sde.drift(pts)
    c0 = b[0]
    A = (b[1:] - c0).T / scale
    rng = np.random.default_rng(12345)
    test = base + scale * rng.standard_normal((3, d))
    pred = c0 + (test - base) @ A.T
    got = sde.drift(test)
    tol = rtol * (1 + np.abs(got).max())
    if np.abs(pred - got).max() > tol:
        raise ReferenceError("drift is not affine: no Gaussian reference")
    a_all = sde.diffusion(np.vstack([base, test]))
    if np.abs(a_all - a_all[0]).max() > rtol * (1 + np.abs(a_all).max()):
        raise ReferenceError("diffusion is not constant: no Gaussian reference")
    eig = np.linalg.eigvals(A)
    if np.max(eig.real) >= 0:
        raise ReferenceError(f"drift matrix is not stable (eigenvalues {eig}): no invariant probability measure")
    c = c0 - A @ base
    mean = -np.linalg.solve(A, c)
    cov = linalg.solve_continuous_lyapunov(A, -a_all[0])
    return mean, 0.5 * (cov + cov.T), A
