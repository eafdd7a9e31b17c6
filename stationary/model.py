r"""Low-dimensional GANs as formulas: exact per-sample gradients, Hessians and covariances.

Notation follows MATH.md section 1.  Parameters :math:`u = (\theta, \omega)`; per-pair
objective :math:`J_{ij} = J(D_\omega(x_j), D_\omega(G_\theta(z_i))) + R(\theta, \omega)`;
the generator descends its objective in :math:`\theta`, the discriminator ascends its
objective in :math:`\omega` (for the zero-sum losses both objectives are :math:`J`; for the
non-saturating loss the generator's is :math:`-\log D_\omega(G_\theta(z_i)) + R`).

The per-sample "gradient vector" is
:math:`g^{ij} = (\nabla_\theta J^G_{ij}, \nabla_\omega J^D_{ij}) \in \mathbb{R}^d` and its
Jacobian :math:`H^{ij}_{kl} = \partial_{u_l} g^{ij}_k` (so :math:`H_{\theta\omega}` of MATH.md is
the block ``H[θ, ω]``).  Everything downstream needs, at many points :math:`u`, only

* the mean :math:`g(u) = \mathbb{E}\, g^{IJ}` and mean Jacobian :math:`\mathbb{E}\, H^{IJ}`,
* the covariance :math:`\Sigma(u) = \mathrm{Cov}(g^{IJ})` over the uniform pair, and
* :math:`\mathrm{Cov}(g_k^{IJ}, H_{lm}^{IJ})`, which gives the exact derivatives
  :math:`\partial_m \Sigma_{kl} = \mathrm{Cov}(H_{km}, g_l) + \mathrm{Cov}(g_k, H_{lm})`.

All of these are the mean and covariance of the stacked vector :math:`v = (g, \mathrm{vec}\,H)`.
For a separable loss :math:`v^{ij} = v^x(u, x_j) + v^z(u, z_i) + v^R(u)`, so means add and,
with :math:`I, J` independent, covariances add: cost :math:`O(N + M)` per point.  Where a part
is a polynomial in its data variable the data enter only through a few moments
(:math:`O(1)` per point); otherwise the data are summed in chunks.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .data import load_data
from .formula import NUMPY_FUNCTIONS, FormulaError, parse_formula, stabilise_logs, symbol

__all__ = ["GAN", "GradientMoments", "LOSSES"]

RESERVED = {"x", "z", "a", "b"}
MAX_MOMENT_DEGREE = 6

_a, _b = symbol("a"), symbol("b")

#: Named losses: ``name -> (J_G(a, b), J_D(a, b))`` for the generator's and discriminator's objectives.
LOSSES = {
    "wgan": (_a - _b, _a - _b),
    "vanilla": (sp.log(_a) + sp.log(1 - _b), sp.log(_a) + sp.log(1 - _b)),
    "nonsaturating": (-sp.log(_b), sp.log(_a) + sp.log(1 - _b)),
}


@dataclass(frozen=True)
class GradientMoments:
    """Moments of the per-sample gradient vector at ``n`` points (arrays over the leading axis).

    Attributes
    ----------
    mean : (n, d) array
        :math:`g(u) = (g_\\theta, g_\\omega)`, the full-batch gradient vector.
    jacobian : (n, d, d) array
        :math:`\\partial_{u_l} g_k`.
    covariance : (n, d, d) array
        :math:`\\Sigma = \\mathrm{Cov}(g^{IJ})` over the uniform pair (divide by N·M).
    covariance_derivative : (n, d, d, d) array
        ``[k, l, m]`` = :math:`\\partial_{u_m} \\Sigma_{kl}` (exact).

    A field is ``None`` when the caller of :meth:`GAN.moments` asked to skip it.
    """

    mean: np.ndarray
    jacobian: np.ndarray | None
    covariance: np.ndarray | None
    covariance_derivative: np.ndarray | None


class _Part:
    """One additive piece of ``v = (g, vec H)``: a function of ``u`` and one data variable (or none).

    ``evaluate(U)`` returns the mean (n, q) and covariance (n, q, q) of the piece over its
    data (or only what is asked for: the gradient rows, their covariance).  Uses data moments
    where the piece is a polynomial of low degree in the data variable, else sums over the
    data in chunks (Chan et al.'s pairwise update keeps the covariance accurate).

    The first ``ngrad`` expressions are the gradient rows ``g``; the rest are ``vec H``.
    ``batch_mean`` gives minibatch means of the gradient rows, ``per_sample`` their values at
    given data, ``depends[k]`` whether gradient row ``k`` depends on the data at all.
    """

    def __init__(self, exprs: Sequence[sp.Expr], usyms, datasym, data, ngrad: int):
        self.exprs = list(exprs)
        self.q = len(exprs)
        self.ngrad = int(ngrad)
        self.usyms = list(usyms)
        self.datasym = datasym
        self.variable = None if datasym is None else datasym.name
        self.data = None if data is None else np.asarray(data, dtype=float)
        self.degree = None
        gexprs = self.exprs[: self.ngrad]
        modules = [NUMPY_FUNCTIONS, "numpy"]
        if datasym is None:
            self.kind = "constant-data"
            self._f = sp.lambdify(self.usyms, list(exprs), modules=modules, cse=True)
            self._gf = sp.lambdify(self.usyms, gexprs, modules=modules, cse=True)
            self.depends = np.zeros(self.ngrad, dtype=bool)
            return
        # Gradient rows at given data values (per-sample gradients; data-sum batch means).
        self._sample_f = sp.lambdify(self.usyms + [datasym], gexprs, modules=modules, cse=True)
        degree = _polynomial_degree(exprs, datasym)
        if degree is not None and degree <= MAX_MOMENT_DEGREE:
            self.kind = "moments"
            self.degree = degree
            coeffs = []
            for e in exprs:
                poly = sp.Poly(sp.expand(e), datasym) if e.has(datasym) else None
                c = [sp.S.Zero] * (degree + 1)
                if poly is None:
                    c[0] = e
                else:
                    for (p,), coef in poly.terms():
                        c[p] = coef
                coeffs.extend(c)
            K = degree + 1
            self._coeffs = coeffs
            self._f = sp.lambdify(self.usyms, coeffs, modules=modules, cse=True)
            self._gf = sp.lambdify(self.usyms, coeffs[: self.ngrad * K], modules=modules, cse=True)
            # Structurally zero coefficients (lambdify returns a plain 0 for them): skipped.
            self._zero = np.array([c == 0 for c in coeffs], dtype=bool).reshape(self.q, K)
            self.depends = ~self._zero[: self.ngrad, 1:].all(axis=1)
            # Moments of the monomials s^0..s^K under the empirical distribution; the covariance
            # is formed from centred monomial columns, never as E[s^(p+q)] - E[s^p]E[s^q].
            powers = self.data[:, None] ** np.arange(K)[None, :]
            self._powers = np.ascontiguousarray(powers.T)  # (K, size): row p is s^p over the data
            self._mono_mean = powers.mean(axis=0)
            centred = powers - self._mono_mean
            self._mono_cov = centred.T @ centred / self.data.size
        else:
            self.kind = "data-sum"
            self._f = sp.lambdify(self.usyms + [datasym], list(exprs), modules=modules, cse=True)
            self._gf = self._sample_f
            self.depends = np.array([e.has(datasym) for e in gexprs], dtype=bool)

    def constant_covariance(self) -> bool:
        """True if the covariance of the gradient rows over the data cannot depend on ``u``:
        every gradient row is ``alpha(u) + beta(s)`` (``d/du d/ds g_k`` structurally zero)."""
        if self.kind == "constant-data":
            return True
        if self.kind == "moments":
            K = self.degree + 1
            return all(
                not self._coeffs[k * K + p].free_symbols & set(self.usyms)  # sympy expressions, never strings
                for k in range(self.ngrad)
                for p in range(1, K)
            )
        s = self.datasym
        for e in self.exprs[: self.ngrad]:
            ds = sp.diff(e, s)
            if any(sp.expand(sp.diff(ds, u)) != 0 for u in self.usyms):
                return False
        return True

    def _call(self, f, args, shape):
        out = f(*args)
        return np.stack([np.broadcast_to(np.asarray(o, dtype=float), shape) for o in out], axis=-1)

    def evaluate(self, U: np.ndarray, chunk: int = 1 << 22, *, jacobian: bool = True, covariance: str | None = "full"):
        """Mean and covariance over the data at points ``U`` (n, d).

        ``jacobian=False``: only the gradient rows (mean (n, ngrad)); ``covariance`` is
        ``"full"`` (all q rows, needs ``jacobian``), ``"rows"`` (the ngrad gradient rows against
        all q rows, shape (n, ngrad, q): all that Sigma and its derivatives need, q/ngrad times
        cheaper), ``"g"`` (the ngrad x ngrad gradient block) or ``None`` (not computed).
        """
        n = U.shape[0]
        ng = self.ngrad
        cols = [U[:, i] for i in range(U.shape[1])]
        if self.kind == "constant-data":
            return self._call(self._f if jacobian else self._gf, cols, (n,)), None
        if self.kind == "moments":
            K = self.degree + 1
            qq = self.q if jacobian else ng
            f = self._f if jacobian else self._gf
            if covariance in ("full", "rows"):
                c = self._call(f, cols, (n,)).reshape(n, qq, K)
                mean = c @ self._mono_mean
                left = c if covariance == "full" else c[:, :ng]
                cov = np.einsum("nap,pr,nbr->nab", left, self._mono_cov, c, optimize=True)
                return mean, cov
            # Reduced path: sum the nonzero coefficients times the monomial means row by row (a
            # batched (qq, K) @ (K,) matmul is several times slower for small qq, K).
            out = f(*cols)
            mean = np.empty((n, qq))
            for k in range(qq):
                acc = 0.0
                for p in range(K):
                    if not self._zero[k, p]:
                        acc = acc + out[k * K + p] * self._mono_mean[p]
                mean[:, k] = acc
            if covariance is None:
                return mean, None
            # Cov(g_a, g_b) = sum_{p, r >= 1} c_ap C_pr c_br (the s^0 column is constant).
            live = [p for p in range(1, K) if not self._zero[:ng, p].all()]
            C = self._mono_cov
            cov = np.zeros((n, ng, ng))
            for a in range(ng):
                w = [sum(out[a * K + p] * C[p, r] for p in live if not self._zero[a, p]) for r in live]
                for b in range(a, ng):
                    v = sum(w[i] * out[b * K + r] for i, r in enumerate(live) if not self._zero[b, r])
                    cov[:, a, b] = v
                    cov[:, b, a] = v
            return mean, cov
        # Sum over data in chunks of points x data (memory ~ chunk * q floats).
        f = self._f if jacobian else self._sample_f
        qq = self.q if jacobian else ng
        qc = 0 if covariance is None else (qq if covariance in ("full", "rows") else ng)
        qa = ng if covariance == "rows" else qc  # left (row) count of the covariance block
        m = self.data.size
        per = max(1, chunk // max(1, n * qq))
        mean = np.zeros((n, qq))
        m2 = np.zeros((n, qa, qc))
        count = 0
        ucols = [c[:, None] for c in cols]
        for start in range(0, m, per):
            s = self.data[None, start : start + per]
            k = s.shape[1]
            vals = self._call(f, ucols + [s], (n, k))  # (n, k, qq)
            cmean = vals.mean(axis=1)
            delta = cmean - mean
            tot = count + k
            if qc:
                dev = vals[..., :qc] - cmean[:, None, :qc]
                cm2 = np.einsum("nka,nkb->nab", dev[..., :qa], dev, optimize=True)
                m2 += cm2 + np.einsum("na,nb->nab", delta[:, :qa], delta[:, :qc]) * (count * k / tot)
            mean += delta * (k / tot)
            count = tot
        return mean, (m2 / count if qc else None)

    def per_sample(self, cols, values) -> list:
        """Gradient rows at data ``values`` (broadcast against the columns ``cols`` of u)."""
        if self.kind == "constant-data":
            return self._gf(*cols)
        return self._sample_f(*cols, values)

    def batch_mean(self, cols, index, rows) -> dict:
        """Minibatch means of the gradient rows ``rows`` for every chain: ``{k: (n,) array or scalar}``.

        ``cols`` are the d coordinate arrays (n,) of the chains; ``index`` (B, n) integer indices
        into this part's data (ignored, and may be ``None``, when the rows do not depend on it).
        Polynomial pieces :math:`\\sum_p c_p(u) s^p` evaluate the coefficients once per chain
        and use the gathered batch means of :math:`s^p`.
        """
        if self.kind == "constant-data":
            g = self._gf(*cols)
            return {k: g[k] for k in rows}
        if index is None and self.depends[list(rows)].any():
            raise ValueError(f"gradient rows {list(rows)} depend on {self.variable}: its batch indices are required")
        if self.kind == "moments":
            K = self.degree + 1
            coeffs = self._gf(*cols)  # ngrad*K entries
            means = {}
            out = {}
            for k in rows:
                acc = coeffs[k * K]
                for p in range(1, K):
                    if self._zero[k, p]:
                        continue
                    if p not in means:  # batch mean of s^p; (B, n) gather summed over axis 0
                        means[p] = self._powers[p][index].sum(axis=0) * (1.0 / index.shape[0])
                    acc = acc + coeffs[k * K + p] * means[p]
                out[k] = acc
            return out
        if index is None:
            index = np.zeros((1, cols[0].shape[0]), dtype=np.intp)
        g = self._sample_f(*[c[None, :] for c in cols], self.data[index])
        return {k: np.broadcast_to(g[k], index.shape).mean(axis=0) for k in rows}


def _polynomial_degree(exprs, s) -> int | None:
    degree = 0
    for e in exprs:
        if not e.has(s):
            continue
        if not e.is_polynomial(s):
            return None
        degree = max(degree, sp.Poly(sp.expand(e), s).degree())
    return degree


class GAN:
    r"""A GAN written as formulas plus a finite data set.

    Parameters
    ----------
    theta, omega : sequence of str
        Names of the generator's and discriminator's scalar parameters (1-3 each).
    generator : str
        :math:`G_\theta(z)`, a formula in the theta-names and ``z``.
    discriminator : str
        :math:`D_\omega(x)`, a formula in the omega-names and ``x``.
    loss : str
        ``"wgan"`` (:math:`J = a - b`), ``"vanilla"`` (:math:`\log a + \log(1-b)`),
        ``"nonsaturating"`` (discriminator as vanilla, generator descends :math:`-\log b`),
        or a formula in ``a`` (:math:`D(x)`) and ``b`` (:math:`D(G(z))`).
    regularizer : str, optional
        :math:`R(\theta, \omega)`, added to the objective of both players.
    constants : mapping, optional
        Named numbers usable in every formula.
    z, x : array_like or mapping
        The data sets (see :func:`stationary.data.load_data`).
    name : str, optional
    where : str
        Prefix for error messages (e.g. the case file's name).
    """

    def __init__(
        self,
        theta: Sequence[str],
        omega: Sequence[str],
        generator: str,
        discriminator: str,
        loss: str = "wgan",
        regularizer: str | None = None,
        constants: Mapping[str, float] | None = None,
        *,
        z,
        x,
        name: str = "gan",
        where: str = "model",
        base_dir=".",
    ):
        self.name = name
        theta, omega = list(theta), list(omega)
        for label, names in (("theta", theta), ("omega", omega)):
            if not 1 <= len(names) <= 3:
                raise FormulaError(f"{where}.{label}: expected 1 to 3 parameter names, got {names!r}")
            for n in names:
                if not isinstance(n, str) or not n.isidentifier():
                    raise FormulaError(f"{where}.{label}: {n!r} is not a valid name")
        all_names = theta + omega
        bad = set(all_names) & (RESERVED | set(constants or {}))
        if bad:
            raise FormulaError(f"{where}: parameter names {sorted(bad)} clash with reserved names x, z, a, b or constants")
        if len(set(all_names)) != len(all_names):
            raise FormulaError(f"{where}: duplicate parameter names in {all_names}")
        self.theta_names, self.omega_names = theta, omega
        self.names = all_names
        self.dim_theta, self.dim = len(theta), len(all_names)
        self.constants = dict(constants or {})
        self.z = load_data(z, where=_data_where(where, "z"), base_dir=base_dir)
        self.x = load_data(x, where=_data_where(where, "x"), base_dir=base_dir)

        us = [symbol(n) for n in all_names]
        xs, zs = symbol("x"), symbol("z")
        self.symbols = us
        G = parse_formula(generator, set(theta) | {"z"}, self.constants, where=f"{where}.generator")
        D = parse_formula(discriminator, set(omega) | {"x"}, self.constants, where=f"{where}.discriminator")
        R = (
            parse_formula(regularizer, set(all_names), self.constants, where=f"{where}.regularizer")
            if regularizer not in (None, "", 0)
            else sp.S.Zero
        )
        if isinstance(loss, str) and loss in LOSSES:
            JG, JD = LOSSES[loss]
        else:
            J = parse_formula(loss, {"a", "b"}, self.constants, where=f"{where}.loss")
            JG = JD = J
        self.loss = loss
        self.zero_sum = sp.simplify(JG - JD) == 0
        self.generator_expr, self.discriminator_expr, self.regularizer_expr = G, D, R
        Dx = D
        Dg = D.subs(xs, G)
        self._objectives = (JG, JD)

        dth = self.dim_theta

        def objective(k):  # which player's loss the k-th component descends/ascends
            return JG if k < dth else JD

        def grad_and_hessian(piece_of):
            g = [sp.diff(piece_of(k), us[k]) for k in range(self.dim)]
            H = [sp.diff(g[k], us[l]) for k in range(self.dim) for l in range(self.dim)]
            return g + H

        separable = all(sp.simplify(sp.diff(J, _a, _b)) == 0 for J in (JG, JD))
        self.separable = separable
        parts = []
        if separable:
            # J(a, b) = J_a(a) + J_b(b) + const: differentiate J(D(x), b) and J(a, D(G(z))); the
            # other argument drops out of the derivative (checked below).
            vx = grad_and_hessian(lambda k: stabilise_logs(objective(k).subs(_a, Dx)))
            vz = grad_and_hessian(lambda k: stabilise_logs(objective(k).subs(_b, Dg)))
            vx = [sp.simplify(e) if e.has(_b) else e for e in vx]
            vz = [sp.simplify(e) if e.has(_a) else e for e in vz]
            if any(e.has(_b) for e in vx) or any(e.has(_a) for e in vz):
                separable = self.separable = False
            else:
                parts.append(_Part(vx, us, xs, self.x, self.dim))
                parts.append(_Part(vz, us, zs, self.z, self.dim))
        if not separable:
            vxz = grad_and_hessian(lambda k: stabilise_logs(objective(k).subs({_a: Dx, _b: Dg})))
            self._pair_exprs = vxz
            self._pair_f = sp.lambdify(us + [xs, zs], vxz, modules=[NUMPY_FUNCTIONS, "numpy"], cse=True)
        vR = grad_and_hessian(lambda k: R)
        parts.append(_Part(vR, us, None, None, self.dim))
        self._parts = parts
        self._value_f = sp.lambdify(
            us + [xs, zs],
            [stabilise_logs(JG.subs({_a: Dx, _b: Dg}) + R), stabilise_logs(JD.subs({_a: Dx, _b: Dg}) + R)],
            modules=[NUMPY_FUNCTIONS, "numpy"],
        )
        # Per-sample gradient rows of a non-separable loss (separable parts carry their own).
        d = self.dim
        self._pair_grad = (
            None
            if separable
            else sp.lambdify(us + [xs, zs], self._pair_exprs[:d], modules=[NUMPY_FUNCTIONS, "numpy"], cse=True)
        )
        self._constant_covariance = None

    # ------------------------------------------------------------------ evaluation
    @property
    def sign(self) -> np.ndarray:
        """:math:`S = \\mathrm{diag}(-1_{d_\\theta}, +1_{d_\\omega})`, so that :math:`b_0 = S g`."""
        return np.concatenate([-np.ones(self.dim_theta), np.ones(self.dim - self.dim_theta)])

    def _as_points(self, U) -> np.ndarray:
        U = np.asarray(U, dtype=float)
        if U.ndim == 1:
            U = U[None, :]
        if U.ndim != 2 or U.shape[1] != self.dim:
            raise ValueError(f"points must have shape (n, {self.dim}), got {U.shape}")
        return U

    def moments(
        self,
        U,
        chunk_points: int = 1 << 15,
        *,
        jacobian: bool = True,
        covariance: bool = True,
        covariance_derivative: bool = True,
    ) -> GradientMoments:
        """Mean, Jacobian, covariance and covariance derivatives of :math:`g^{IJ}` at points ``U`` (n, d).

        By default everything is computed.  Callers that need less say so and get ``None`` in
        the skipped fields: ``covariance_derivative=False`` skips the Hessian-gradient
        covariances (then only the d x d covariance of ``g`` is formed), ``jacobian=False``
        skips the mean Hessian (with ``covariance_derivative=False``, no Hessian expression is
        evaluated at all), ``covariance=False`` skips the covariance.  What is returned is the
        same (up to round-off) as the corresponding field of the full call.
        """
        U = self._as_points(U)
        n, d = U.shape
        if covariance_derivative:
            q = d + d * d
            mean = np.empty((n, q))
            # Only the d gradient rows of the q x q covariance are needed (Sigma and Cov(g, H)):
            # forming the full block cost (q/d)x the time and memory (5x for d = 4).
            cov = np.empty((n, d, q))
            for start in range(0, n, chunk_points):
                sl = slice(start, min(n, start + chunk_points))
                m, c = self._moments_v(U[sl], covariance="rows")
                mean[sl], cov[sl] = m, c
            g = mean[:, :d]
            H = mean[:, d:].reshape(n, d, d)
            sigma = cov[:, :, :d]
            cgh = cov[:, :, d:].reshape(n, d, d, d)  # [k, l, m] = Cov(g_k, H_lm)
            # d_m Sigma_kl = Cov(H_km, g_l) + Cov(g_k, H_lm)
            dsigma = np.swapaxes(cgh, 1, 2) + cgh
            return GradientMoments(
                g,
                H if jacobian else None,
                0.5 * (sigma + np.swapaxes(sigma, 1, 2)) if covariance else None,
                dsigma,
            )
        what = dict(jacobian=bool(jacobian), covariance="g" if covariance else None)
        if n <= chunk_points:
            mean, cov = self._moments_v(U, **what)
        else:
            mean = np.empty((n, d + d * d if jacobian else d))
            cov = np.empty((n, d, d)) if covariance else None
            for start in range(0, n, chunk_points):
                sl = slice(start, min(n, start + chunk_points))
                m, c = self._moments_v(U[sl], **what)
                mean[sl] = m
                if covariance:
                    cov[sl] = c
        g = mean[:, :d]
        H = mean[:, d:].reshape(n, d, d) if jacobian else None
        sigma = 0.5 * (cov + np.swapaxes(cov, 1, 2)) if covariance else None
        return GradientMoments(g, H, sigma, None)

    def _moments_v(self, U, jacobian: bool = True, covariance: str | None = "full"):
        n, d = U.shape
        q = d + d * d if jacobian else d
        qc = 0 if covariance is None else (q if covariance in ("full", "rows") else d)
        qa = d if covariance == "rows" else qc
        mean = np.zeros((n, q))
        cov = np.zeros((n, qa, qc)) if qc else None
        for part in self._parts:
            m, c = part.evaluate(U, jacobian=jacobian, covariance=covariance)
            mean += m
            if c is not None and qc:
                cov += c
        if not self.separable:
            m, c = self._pair_moments(U, jacobian=jacobian, covariance=covariance)
            mean += m
            if qc:
                cov += c
        return mean, cov

    def _pair_moments(self, U, chunk: int = 1 << 22, jacobian: bool = True, covariance: str | None = "full"):
        """Non-separable loss: sum over all N*M pairs in chunks (Chan et al. pairwise update)."""
        n, d = U.shape
        q = d + d * d if jacobian else d
        qc = 0 if covariance is None else (q if covariance in ("full", "rows") else d)
        qa = d if covariance == "rows" else qc
        f = self._pair_f if jacobian else self._pair_grad
        X, Z = np.meshgrid(self.x, self.z, indexing="ij")
        X, Z = X.ravel(), Z.ravel()
        per = max(1, chunk // max(1, n * q))
        mean = np.zeros((n, q))
        m2 = np.zeros((n, qa, qc))
        count = 0
        cols = [U[:, i, None] for i in range(d)]
        for start in range(0, X.size, per):
            xs, zs = X[None, start : start + per], Z[None, start : start + per]
            k = xs.shape[1]
            vals = np.stack([np.broadcast_to(np.asarray(o, float), (n, k)) for o in f(*cols, xs, zs)], -1)
            cmean = vals.mean(axis=1)
            delta = cmean - mean
            tot = count + k
            if qc:
                dev = vals[..., :qc] - cmean[:, None, :qc]
                m2 += np.einsum("nka,nkb->nab", dev[..., :qa], dev, optimize=True) + np.einsum(
                    "na,nb->nab", delta[:, :qa], delta[:, :qc]
                ) * (count * k / tot)
            mean += delta * (k / tot)
            count = tot
        return mean, (m2 / count if qc else None)

    def constant_gradient_covariance(self) -> bool:
        r"""True if :math:`\Sigma(u) = \mathrm{Cov}(g^{IJ})` provably does not depend on ``u``.

        Decided symbolically: every data-dependent gradient row is :math:`\alpha(u) + \beta(\text{data})`
        (for polynomial pieces: no coefficient of a positive data power involves ``u``).  A
        ``False`` may be conservative (the test is structural, no simplification).
        """
        if self._constant_covariance is None:
            if self.separable:
                ok = all(part.constant_covariance() for part in self._parts)
            else:
                xs, zs = symbol("x"), symbol("z")
                ok = True
                for e in self._pair_exprs[: self.dim]:
                    for s in (xs, zs):
                        ds = sp.diff(e, s)
                        if any(sp.expand(sp.diff(ds, u)) != 0 for u in self.symbols):
                            ok = False
                ok = ok and all(part.constant_covariance() for part in self._parts)
            self._constant_covariance = bool(ok)
        return self._constant_covariance

    def gradient(self, U) -> np.ndarray:
        """Full-batch gradient vector :math:`g(u) = (\\nabla_\\theta \\Phi_G, \\nabla_\\omega \\Phi_D)`, shape (n, d)."""
        return self.moments(U).mean

    def per_sample_gradients(self, U, z_index, x_index) -> np.ndarray:
        """Per-sample gradient vectors :math:`g^{ij}(u)` for batches of pairs.

        Parameters
        ----------
        U : (n, d) array
        z_index, x_index : (n, B) integer arrays
            Indices ``i`` into ``z`` and ``j`` into ``x`` of each chain's batch.

        Returns
        -------
        (n, B, d) array
        """
        U = self._as_points(U)
        n, d = U.shape
        zi, xj = np.asarray(z_index), np.asarray(x_index)
        shape = zi.shape
        cols = [U[:, i, None] for i in range(d)]
        xv, zv = self.x[xj], self.z[zi]
        out = np.zeros(shape + (d,))
        if self.separable:
            for part in self._parts:
                if part.variable is None:
                    continue
                for k, o in enumerate(part.per_sample(cols, xv if part.variable == "x" else zv)):
                    out[..., k] += o
        else:
            for k, o in enumerate(self._pair_grad(*cols, xv, zv)):
                out[..., k] += o
        for part in self._parts:
            if part.variable is None:
                for k, o in enumerate(part.per_sample(cols, None)):
                    out[..., k] += o
        return out

    # ------------------------------------------------------------------ minibatch gradients
    @property
    def batch_gradient_path(self) -> str:
        """How :meth:`batch_gradient` computes: ``"separable: <kind of each part>"`` or ``"per-sample"``."""
        if not self.separable:
            return "per-sample"
        names = {"constant-data": "constant"}
        return "separable: " + ", ".join(names.get(p.kind, p.kind) for p in self._parts)

    def data_dependence(self) -> dict:
        """Which data variable each gradient component depends on: ``{"z": (d,) bool, "x": (d,) bool}``.

        Structural (symbolic) and exact for separable models; for a non-separable loss, whether
        the component's expression contains ``x`` / ``z``.  A component that does not depend
        on a variable has the same minibatch mean whatever indices are drawn for it.
        """
        d = self.dim
        out = {"z": np.zeros(d, dtype=bool), "x": np.zeros(d, dtype=bool)}
        if self.separable:
            for part in self._parts:
                if part.variable is not None:
                    out[part.variable] |= part.depends
        else:
            for var in ("x", "z"):
                s = symbol(var)
                out[var][:] = [e.has(s) for e in self._pair_exprs[:d]]
        return out

    def needs(self, rows=slice(None)) -> tuple[bool, bool]:
        """``(needs z indices, needs x indices)`` for the minibatch gradient of the components ``rows``."""
        dep = self.data_dependence()
        return bool(dep["z"][rows].any()), bool(dep["x"][rows].any())

    def batch_gradient(self, V, z_index, x_index, rows=None, *, fast: bool = True) -> np.ndarray:
        r"""Minibatch-mean gradients :math:`g^{\mathcal B}(u) = B^{-1}\sum_k g^{I_k J_k}(u)` for many chains.

        Coordinate-major layout (contiguous rows, fast for many chains and small d).

        Parameters
        ----------
        V : (d, n) array
            The chains' states, one column each.
        z_index, x_index : (B, n) integer arrays or None
            Each chain's batch of indices into ``z`` and ``x``.  An index array may be ``None``
            when the requested rows do not depend on that variable (see :meth:`needs`).
        rows : slice, optional
            Fill only these components (the others are left zero on the fast path).
        fast : bool
            ``False`` forces the generic path
            ``per_sample_gradients(V.T, z_index.T, x_index.T).mean(axis=1).T``.

        Returns
        -------
        (d, n) array

        For separable models :math:`g^{ij} = g^x(u, x_j) + g^z(u, z_i) + g^R(u)`; a piece that
        is a polynomial :math:`\sum_p c_p(u) s^p` in its data variable has batch mean
        :math:`\sum_p c_p(u)\,\overline{s^p}^{\mathcal B}`: its coefficients are evaluated once
        per chain, and the data enter only through gathered powers.
        """
        V = np.asarray(V, dtype=float)
        d = self.dim
        if V.ndim != 2 or V.shape[0] != d:
            raise ValueError(f"states must have shape ({d}, n), got {V.shape}")
        n = V.shape[1]
        if not (fast and self.separable):
            ref = z_index if z_index is not None else x_index
            Bn = 1 if ref is None else np.shape(ref)[0]
            zi = np.zeros((n, Bn), int) if z_index is None else np.asarray(z_index).T
            xi = np.zeros((n, Bn), int) if x_index is None else np.asarray(x_index).T
            return self.per_sample_gradients(V.T, zi, xi).mean(axis=1).T
        ks = range(d) if rows is None else range(*rows.indices(d))
        cols = [V[k] for k in range(d)]
        out = np.zeros((d, n))
        for part in self._parts:
            idx = None if part.variable is None else (x_index if part.variable == "x" else z_index)
            got = part.batch_mean(cols, idx, ks)
            for k in ks:
                out[k] += got[k]
        return out

    def objectives(self, U) -> tuple[np.ndarray, np.ndarray]:
        """:math:`(\\Phi_G(u), \\Phi_D(u))`, the two players' full-data objectives (equal when zero-sum)."""
        U = self._as_points(U)
        cols = [U[:, i, None, None] for i in range(self.dim)]
        X, Z = self.x[None, :, None], self.z[None, None, :]
        vals = self._value_f(*cols, X, Z)
        return tuple(np.broadcast_to(np.asarray(v, float), (U.shape[0], self.x.size, self.z.size)).mean(axis=(1, 2)) for v in vals)

    def __repr__(self) -> str:
        return (
            f"GAN(name={self.name!r}, theta={self.theta_names}, omega={self.omega_names}, "
            f"loss={self.loss!r}, N={self.z.size}, M={self.x.size}, separable={self.separable}, "
            f"paths={[p.kind for p in self._parts]})"
        )


def _data_where(where: str, var: str) -> str:
    """``"case.toml: model"`` -> ``"case.toml: data.z"`` for error messages."""
    prefix = where[: -len("model")] if where.endswith("model") else (where + ": " if where else "")
    return f"{prefix}data.{var}"
