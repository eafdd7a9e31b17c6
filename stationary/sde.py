r"""Stochastic differential equations :math:`du = b(u)\,dt + \sigma(u)\,dW`, :math:`a = \sigma\sigma^T`.

:class:`SDE` is the general object the grid, the operator and the simulators consume:
vectorised drift ``b(U) -> (n, d)``, diffusion ``a(U) -> (n, d, d)`` and, optionally, the
divergence of the diffusion matrix ``(div a)_k = sum_j d_j a_kj`` (needed by the
Fokker–Planck flux :math:`F = b p - \nabla\cdot(D p)`, :math:`D = a/2`).  Without an exact
divergence it is taken by central differences.

:func:`gan_sde` builds the paper's SDEs from a :class:`~stationary.model.GAN` (MATH.md section 3).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["SDE", "SDEError", "gan_sde", "UPDATES", "NOISE_MODELS"]

UPDATES = ("sml", "alt", "sml2")
NOISE_MODELS = ("paper", "shared-batch")


class SDEError(ValueError):
    """Drift or diffusion are malformed (wrong shape, non-finite, asymmetric, indefinite)."""


class SDE:
    r"""An Itô SDE with vectorised coefficients.

    Parameters
    ----------
    drift : callable
        ``drift(U)`` with ``U`` of shape (n, d) returns :math:`b(U)`, shape (n, d).
    diffusion : callable
        ``diffusion(U)`` returns :math:`a(U) = \sigma\sigma^T`, shape (n, d, d), symmetric PSD.
    dim : int
        Dimension d.
    diffusion_divergence : callable, optional
        ``(n, d)`` array :math:`\sum_j \partial_j a_{kj}`; central differences if omitted.
    coefficients : callable, optional
        ``coefficients(U) -> (b, a, div a)`` computed together (faster when they share work).
    drift_and_diffusion : callable, optional
        ``drift_and_diffusion(U, diffusion=True) -> (b, a)`` (``a`` may be ``None`` when
        ``diffusion=False``): what a time stepper needs, without the divergence. Checked against
        ``drift`` and ``diffusion`` at the validation point.
    constant_diffusion : bool
        Declare that ``a`` does not depend on ``u`` (checked at two points): simulators then
        factorise it once.
    names : sequence of str, optional
        Coordinate names (default ``u0, u1, ...``).
    description : str
    validate_at : array_like, optional
        A point where the coefficients are evaluated once and checked (default: the origin).
    """

    def __init__(
        self,
        drift: Callable,
        diffusion: Callable,
        dim: int,
        *,
        diffusion_divergence: Callable | None = None,
        coefficients: Callable | None = None,
        names: Sequence[str] | None = None,
        description: str = "",
        validate_at=None,
        drift_and_diffusion: Callable | None = None,
        constant_diffusion: bool = False,
    ):
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise SDEError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self._drift, self._diffusion = drift, diffusion
        self._divergence = diffusion_divergence
        self._coefficients = coefficients
        self._drift_and_diffusion = drift_and_diffusion
        self.constant_diffusion = bool(constant_diffusion)
        self.names = list(names) if names is not None else [f"u{i}" for i in range(self.dim)]
        if len(self.names) != self.dim:
            raise SDEError(f"{len(self.names)} names for dimension {self.dim}")
        self.description = description
        self.validate(np.zeros(self.dim) if validate_at is None else validate_at)

    # -------------------------------------------------------------- evaluation
    def _points(self, U) -> np.ndarray:
        U = np.asarray(U, dtype=float)
        if U.ndim == 1:
            U = U[None, :]
        if U.ndim != 2 or U.shape[1] != self.dim:
            raise SDEError(f"points must have shape (n, {self.dim}), got {U.shape}")
        return U

    def drift(self, U) -> np.ndarray:
        """:math:`b(U)`, shape (n, d)."""
        U = self._points(U)
        return np.asarray(self._drift(U), dtype=float).reshape(U.shape[0], self.dim)

    def diffusion(self, U) -> np.ndarray:
        """:math:`a(U)`, shape (n, d, d)."""
        U = self._points(U)
        return np.asarray(self._diffusion(U), dtype=float).reshape(U.shape[0], self.dim, self.dim)

    def diffusion_divergence(self, U, step: float | None = None) -> np.ndarray:
        r""":math:`(\nabla\cdot a)_k = \sum_j \partial_j a_{kj}`, shape (n, d).

        Exact when the SDE was given one; otherwise central differences with step
        :math:`\delta_j = \epsilon^{1/3}\max(1, |u_j|)` (error :math:`O(\delta^2)`, about 1e-10).
        """
        U = self._points(U)
        if self._divergence is not None:
            return np.asarray(self._divergence(U), dtype=float).reshape(U.shape[0], self.dim)
        out = np.zeros((U.shape[0], self.dim))
        for j in range(self.dim):
            delta = (np.finfo(float).eps ** (1 / 3) if step is None else step) * np.maximum(1.0, np.abs(U[:, j]))
            up, dn = U.copy(), U.copy()
            up[:, j] += delta
            dn[:, j] -= delta
            out += (self.diffusion(up)[:, :, j] - self.diffusion(dn)[:, :, j]) / (2 * delta[:, None])
        return out

    def coefficients(self, U) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(b, a, div a)`` at ``U`` in one call."""
        U = self._points(U)
        if self._coefficients is not None:
            b, a, div = self._coefficients(U)
            n = U.shape[0]
            return (
                np.asarray(b, float).reshape(n, self.dim),
                np.asarray(a, float).reshape(n, self.dim, self.dim),
                np.asarray(div, float).reshape(n, self.dim),
            )
        return self.drift(U), self.diffusion(U), self.diffusion_divergence(U)

    def drift_and_diffusion(self, U, *, diffusion: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(b, a)`` at ``U``: what an Euler–Maruyama step needs (no divergence).

        ``diffusion=False`` returns ``(b, None)`` (for a stepper that factorised a constant ``a``
        once). Uses the SDE's own ``drift_and_diffusion`` when given, else ``coefficients``
        (when b and a are computed together), else ``drift`` and ``diffusion``.
        """
        U = self._points(U)
        n = U.shape[0]
        if self._drift_and_diffusion is not None:
            b, a = self._drift_and_diffusion(U, diffusion=diffusion)
        elif self._coefficients is not None:
            b, a, _ = self._coefficients(U)
        else:
            b = self._drift(U)
            a = self._diffusion(U) if diffusion else None
        b = np.asarray(b, float).reshape(n, self.dim)
        if not diffusion:
            return b, None
        return b, np.asarray(a, float).reshape(n, self.dim, self.dim)

    # -------------------------------------------------------------- checks
    def validate(self, point) -> None:
        """Evaluate once at ``point`` and raise :class:`SDEError` on wrong shapes, non-finite
        values, an asymmetric or an indefinite diffusion matrix."""
        point = np.asarray(point, dtype=float).reshape(1, -1)
        if point.shape[1] != self.dim:
            raise SDEError(f"validation point has {point.shape[1]} coordinates, SDE has dimension {self.dim}")
        b = np.asarray(self._drift(point), dtype=float)
        if b.size != self.dim:
            raise SDEError(f"drift returned shape {b.shape}, expected (1, {self.dim})")
        a = np.asarray(self._diffusion(point), dtype=float)
        if a.size != self.dim**2:
            raise SDEError(f"diffusion returned shape {a.shape}, expected (1, {self.dim}, {self.dim})")
        check_coefficients(b.reshape(1, self.dim), a.reshape(1, self.dim, self.dim), point)
        if self._drift_and_diffusion is not None:
            b2, a2 = self._drift_and_diffusion(point, diffusion=True)
            b2, a2 = np.asarray(b2, float).reshape(b.shape), np.asarray(a2, float).reshape(a.shape)
            for label, x, y in (("drift", b2, b), ("diffusion", a2, a)):
                if not np.allclose(x, y, rtol=1e-9, atol=1e-12 * (1 + np.abs(y).max())):
                    raise SDEError(f"drift_and_diffusion disagrees with {label} at u = {point[0].tolist()}: {x.tolist()} vs {y.tolist()}")
        if self.constant_diffusion:
            other = point + np.linspace(0.5, -0.3, self.dim)[None, :]
            a2 = np.asarray(self._diffusion(other), dtype=float).reshape(a.shape)
            if not np.allclose(a2, a, rtol=1e-9, atol=1e-12 * (1 + np.abs(a).max())):
                raise SDEError(
                    f"constant_diffusion=True, but a = {a.reshape(self.dim, self.dim).tolist()} at u = {point[0].tolist()} "
                    f"and {a2.reshape(self.dim, self.dim).tolist()} at u = {other[0].tolist()}"
                )

    def __repr__(self) -> str:
        return f"SDE(dim={self.dim}, names={self.names}, description={self.description!r})"


def checked_coefficients(sde: "SDE", U: np.ndarray, chunk: int = 1 << 16):
    """``(b, a, div a)`` at points ``U`` (n, d), evaluated in chunks and checked
    (:func:`check_coefficients`; a non-finite divergence names the point too)."""
    U = np.asarray(U, dtype=float)
    n, d = U.shape
    b, a, div = np.empty((n, d)), np.empty((n, d, d)), np.empty((n, d))
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        b[sl], a[sl], div[sl] = sde.coefficients(U[sl])
        check_coefficients(b[sl], a[sl], U[sl])
    if not np.all(np.isfinite(div)):
        i = int(np.flatnonzero(~np.all(np.isfinite(div), axis=1))[0])
        raise SDEError(f"non-finite divergence of the diffusion matrix at u = {U[i].tolist()}")
    return b, a, div


def check_coefficients(b: np.ndarray, a: np.ndarray, U: np.ndarray, rtol: float = 1e-10) -> None:
    """Raise :class:`SDEError` naming the first point where ``b`` or ``a`` is non-finite,
    ``a`` is asymmetric or has a negative eigenvalue beyond round-off."""
    bad = ~np.all(np.isfinite(b), axis=1) | ~np.all(np.isfinite(a), axis=(1, 2))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "drift" if not np.all(np.isfinite(b[i])) else "diffusion"
        raise SDEError(f"non-finite {what} at u = {U[i].tolist()}: b = {b[i].tolist()}, a = {a[i].tolist()}")
    scale = np.maximum(np.abs(a).max(axis=(1, 2)), np.finfo(float).tiny)
    asym = np.abs(a - np.swapaxes(a, 1, 2)).max(axis=(1, 2)) > rtol * scale + 1e-300
    if asym.any():
        i = int(np.flatnonzero(asym)[0])
        raise SDEError(f"diffusion matrix is not symmetric at u = {U[i].tolist()}: a = {a[i].tolist()}")
    lam = np.linalg.eigvalsh(a)[:, 0]
    neg = lam < -1e-10 * scale
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise SDEError(
            f"diffusion matrix is indefinite at u = {U[i].tolist()}: smallest eigenvalue {lam[i]:.3g}, a = {a[i].tolist()}"
        )


def gan_sde(model, update: str = "alt", eta: float = 0.1, batch: int = 1, noise: str = "paper") -> SDE:
    r"""The SDE approximation of minibatch GAN training (MATH.md section 3).

    With :math:`b_0 = S g = (-g_\theta, g_\omega)` and :math:`J = \nabla b_0`:

    * ``"sml"``: (SML-SDE) :math:`b = b_0`;
    * ``"alt"``: (ALT-SDE) :math:`b = b_0 + \eta b_1`,
      :math:`b_1 = -\tfrac12 J b_0 - (H_{\theta\omega} g_\omega, 0)`, :math:`H_{\theta\omega} = \partial_\omega g_\theta`;
    * ``"sml2"``: second-order SML drift :math:`b = b_0 - \tfrac{\eta}{2} J b_0`.

    Diffusion :math:`a = (\eta/B)\,M` with, for ``noise="paper"``,
    :math:`M = \mathrm{blockdiag}(\Sigma_\theta, \Sigma_\omega)` (independent batches; the
    paper's model) and, for ``noise="shared-batch"`` (SML with one batch for both players),
    :math:`M = S\Sigma S = [[\Sigma_\theta, -\Sigma_{\theta\omega}], [-\Sigma_{\omega\theta}, \Sigma_\omega]]`.
    The divergence :math:`\sum_l \partial_l a_{kl}` is exact, from per-sample Hessians.
    ``drift_and_diffusion`` skips it (and, for ``"sml"``, the Hessians altogether);
    ``constant_diffusion`` is set when :meth:`GAN.constant_gradient_covariance` proves
    :math:`\Sigma` constant.
    """
    if update not in UPDATES:
        raise SDEError(f"unknown update {update!r}; choose from {list(UPDATES)}")
    if noise not in NOISE_MODELS:
        raise SDEError(f"unknown noise model {noise!r}; choose from {list(NOISE_MODELS)}")
    if update == "alt" and noise != "paper":
        raise SDEError("ALT draws independent batches for the two players: use noise='paper'")
    if not (isinstance(eta, (int, float)) and np.isfinite(eta) and eta > 0):
        raise SDEError(f"eta must be a positive number, got {eta!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise SDEError(f"batch must be a positive integer, got {batch!r}")
    d, dth = model.dim, model.dim_theta
    s = model.sign
    if noise == "paper":
        mask = np.zeros((d, d))
        mask[:dth, :dth] = 1.0
        mask[dth:, dth:] = 1.0
    else:
        mask = np.ones((d, d))
    weight = mask * np.outer(s, s) * (eta / batch)  # a_kl = weight_kl * Sigma_kl

    def drift(g, H):
        b0 = s * g
        if update == "sml":
            return b0
        J = s[None, :, None] * H  # d b0_k / d u_l
        if update == "alt":
            b1 = -0.5 * np.einsum("nkl,nl->nk", J, b0)
            b1[:, :dth] -= np.einsum("nkl,nl->nk", H[:, :dth, dth:], g[:, dth:])
            return b0 + eta * b1
        return b0 - 0.5 * eta * np.einsum("nkl,nl->nk", J, b0)  # sml2

    def coefficients(U):
        mom = model.moments(U)
        b = drift(mom.mean, mom.jacobian)
        a = weight * mom.covariance
        dsig = mom.covariance_derivative  # [n, k, l, m] = d_m Sigma_kl
        div = np.einsum("kl,nkll->nk", weight, dsig)
        return b, a, div

    def drift_and_diffusion(U, diffusion=True):
        # Only what an Euler–Maruyama step needs: mean g (and mean Jacobian for ALT/SML2), and
        # the d x d covariance of g; no Hessian-gradient covariances, no divergence.
        mom = model.moments(U, jacobian=update != "sml", covariance=diffusion, covariance_derivative=False)
        b = drift(mom.mean, mom.jacobian)
        return b, (weight * mom.covariance if diffusion else None)

    desc = f"{update.upper()}-SDE of {model.name} (eta={eta}, B={batch}, noise={noise})"
    sde = SDE(
        lambda U: coefficients(U)[0],
        lambda U: coefficients(U)[1],
        d,
        diffusion_divergence=lambda U: coefficients(U)[2],
        coefficients=coefficients,
        names=model.names,
        description=desc,
        drift_and_diffusion=drift_and_diffusion,
        constant_diffusion=model.constant_gradient_covariance(),
    )
    sde.model, sde.update, sde.eta, sde.batch, sde.noise = model, update, eta, batch, noise
    return sde
