r"""Spectral gap of the Fokker–Planck matrix: how fast the density relaxes to the stationary one.

``dp/dt = L p`` has the stationary density as its eigenvalue-0 eigenvector; every other
eigenvalue has negative real part (columns of ``L`` sum to zero and, for a monotone stencil,
``L^T`` is a rate matrix).  The slowest decaying mode sets the relaxation time

.. math::  \gamma = \min_{\lambda \ne 0} |\operatorname{Re}\lambda|, \qquad \tau = 1/\gamma .

For an Ornstein–Uhlenbeck process :math:`du = A u\,dt + \sigma dW` the Fokker–Planck spectrum is
:math:`\{\sum_i n_i \lambda_i(A)\}`, so :math:`\gamma = -\max \operatorname{Re}\lambda(A)`
(in 1-d, :math:`du = -k u\,dt + \sqrt{2D}dW` gives :math:`\lambda_n = -nk`, :math:`\gamma = k`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

__all__ = ["SpectralGap", "relaxation_time"]


@dataclass(frozen=True, repr=False)
class SpectralGap:
    """Spectral gap ``gap`` of ``L`` and the relaxation time ``1/gap``.

    Attributes
    ----------
    gap : float
        Smallest ``|Re λ|`` among the computed non-zero eigenvalues.
    relaxation_time : float
    slowest : complex
        The eigenvalue attaining the gap.
    eigenvalues : ndarray
        The eigenvalues found nearest 0 (shift-invert ARPACK), the null one included.
    null_eigenvalue : complex
        The eigenvalue taken as the stationary one (should be ~0 relative to ``|L|``).
    seconds : float
    """

    gap: float
    relaxation_time: float
    slowest: complex
    eigenvalues: np.ndarray
    null_eigenvalue: complex
    seconds: float

    def to_dict(self) -> dict:
        return {"gap": float(self.gap), "relaxation_time": float(self.relaxation_time),
                "slowest": [float(self.slowest.real), float(self.slowest.imag)],
                "eigenvalues": [[float(v.real), float(v.imag)] for v in self.eigenvalues],
                "null_eigenvalue": [float(self.null_eigenvalue.real), float(self.null_eigenvalue.imag)],
                "seconds": float(self.seconds)}

    def __repr__(self) -> str:
        return f"SpectralGap(gap={self.gap:.6g}, relaxation_time={self.relaxation_time:.6g}, slowest={self.slowest:.4g})"


def relaxation_time(op, k: int = 8, tol: float = 1e-10) -> SpectralGap:
    r"""Spectral gap and relaxation time of an assembled operator (or a sparse ``L``).

    Shift-invert ARPACK for the ``k`` eigenvalues of ``L`` nearest a tiny positive shift
    :math:`\sigma = 10^{-8}\|L\|_\infty` (``L`` itself is singular; ``σ`` is not an eigenvalue
    because every eigenvalue has non-positive real part).  The eigenvalue of smallest modulus is
    the stationary one; the gap is the smallest :math:`|\operatorname{Re}\lambda|` among the
    others.  Eigenvalues are ordered by distance to 0, so a mode with small real part and a
    large imaginary part beyond the ``k`` nearest would be missed: raise ``k`` for strongly
    rotational drifts.

    Returns
    -------
    SpectralGap
    """
    L = getattr(op, "matrix", op).tocsc()
    n = L.shape[0]
    k = int(min(k, n - 2))
    t0 = time.perf_counter()
    shift = 1e-8 * spla.norm(L, np.inf)
    vals = spla.eigs(L, k=k, sigma=shift, which="LM", return_eigenvectors=False, tol=tol)
    vals = vals[np.argsort(np.abs(vals))]
    null, rest = vals[0], vals[1:]
    i = int(np.argmin(np.abs(rest.real)))
    gap = float(abs(rest[i].real))
    return SpectralGap(gap=gap, relaxation_time=1.0 / gap if gap > 0 else np.inf, slowest=complex(rest[i]),
                       eigenvalues=vals, null_eigenvalue=complex(null), seconds=time.perf_counter() - t0)
