r"""Stationarity identities :math:`\mathbb{E}_{\mu^*}[\mathcal{A}f] = 0` and the paper's FDRs (MATH.md section 5).

The generator of :math:`du = b\,dt + \sigma\,dW` is

.. math:: \mathcal{A}f = b\cdot\nabla f + \tfrac12\, a : \nabla^2 f, \qquad a = \sigma\sigma^T,

and every invariant law :math:`\mu^*` satisfies :math:`\mathbb{E}_{\mu^*}[\mathcal{A}f] = 0`
for smooth :math:`f` (mass at the box edge negligible).  Here :math:`\mathcal{A}f` is
evaluated pointwise from the *continuous* coefficients and *exact* derivatives of
:math:`f` (sympy for a formula; :math:`\nabla\Phi = g`, :math:`\nabla^2\Phi = H` from
:meth:`GAN.moments <stationary.model.GAN.moments>` for the loss), at grid centres (weights
:math:`p_c |c|`) or at samples.  The discrete identity :math:`p\cdot(L^T f) = 0` is a
tautology of the assembly (columns of ``L`` sum to zero, :math:`Lp = 0`); it is tested
as such and never used as validation.

Every named identity is one test function plus one reference SDE.  Writing
:math:`b_0 = S g = (-g_\theta, g_\omega)` for the first-order GAN drift, the split into
two sides is

.. math::

    \text{lhs} = -\mathbb{E}[b_0\cdot\nabla f], \qquad
    \text{rhs} = \mathbb{E}[(b - b_0)\cdot\nabla f] + \tfrac12\,\mathbb{E}[a : \nabla^2 f],

so that :math:`\text{rhs} - \text{lhs} = \mathbb{E}[\mathcal{A}f]` exactly (the "difference"
reported).  With :math:`f = \Phi` (zero-sum losses, :math:`\nabla\Phi = g`) and
:math:`a = (\eta/B)\,\mathrm{blockdiag}(\Sigma_\theta, \Sigma_\omega) = 2\beta^{-1}(\cdot)`,
this is the paper's

* (FDR1), ALT-SDE: :math:`\mathbb{E}|g_\theta|^2 - |g_\omega|^2 = \beta^{-1}\mathbb{E}\,\mathrm{tr}(\Sigma_\theta H_{\theta\theta} + \Sigma_\omega H_{\omega\omega}) - \tfrac\eta2 \mathbb{E}[g_\theta^T H_{\theta\theta} g_\theta + g_\omega^T H_{\omega\omega} g_\omega]`
  (because :math:`b_1\cdot g = -\tfrac12(g_\theta^T H_{\theta\theta} g_\theta + g_\omega^T H_{\omega\omega} g_\omega)` when :math:`H_{\omega\theta} = H_{\theta\omega}^T`);
* FDR1-SML: the same without the :math:`\eta` term;
* FDR1-shared: SML with the shared-batch noise, whose cross covariance adds
  :math:`-2\beta^{-1}\mathbb{E}\,\mathrm{tr}(\Sigma_{\theta\omega} H_{\omega\theta})`;

and with :math:`f = |u|^2/2`:

* (FDR2), SML: :math:`\mathbb{E}[\theta\cdot g_\theta - \omega\cdot g_\omega] = \beta^{-1}\mathbb{E}\,\mathrm{tr}(\Sigma_\theta + \Sigma_\omega)`;
* FDR2-ALT: plus :math:`\eta\,\mathbb{E}[u\cdot b_1]`; FDR2-shared: the shared-batch noise
  (its trace is the same: only the off-diagonal blocks differ).

FDR1 needs one objective :math:`\Phi` with :math:`\nabla\Phi = g`: for a non-zero-sum loss
(non-saturating) it raises :class:`IdentityError`; :math:`\mathbb{E}[\mathcal{A}f] = 0`
for a formula :math:`f`, and FDR2 (whose :math:`f` does not involve :math:`\Phi`; then
:math:`g_\theta = \nabla_\theta\Phi_G`) still hold.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .formula import NUMPY_FUNCTIONS, parse_formula, symbol
from .grid import Grid

__all__ = [
    "IdentityError",
    "extrapolate_identity",
    "TestFunction",
    "test_function",
    "generator_action",
    "IDENTITIES",
    "identities_for",
    "IdentityResult",
    "evaluate_identity",
    "evaluate_identities",
    "identity_convergence",
    "ChainAverager",
    "monte_carlo_identities",
]


class IdentityError(ValueError):
    """An identity that does not apply (non-zero-sum FDR1, no GAN behind the SDE, bad target)."""


# --------------------------------------------------------------------------- test functions
@dataclass(frozen=True)
class TestFunction:
    r"""A smooth test function with exact derivatives, all vectorised over points ``U`` (n, d).

    Attributes
    ----------
    name : str
    value : callable ``U -> (n,)``
    gradient : callable ``U -> (n, d)``
    hessian : callable ``U -> (n, d, d)``
    """

    __test__ = False  # not a pytest class, despite the name

    name: str
    value: Callable
    gradient: Callable
    hessian: Callable
    #: ``moments -> (gradient, hessian)`` from a :class:`~stationary.model.GradientMoments` with
    #: the Jacobian, when ``f`` is the loss (saves recomputing the model's moments).
    from_moments: Callable | None = None


def _half_square(d: int) -> TestFunction:
    return TestFunction(
        "|u|^2/2",
        lambda U: 0.5 * np.einsum("nk,nk->n", U, U),
        lambda U: np.array(U, float),
        lambda U: np.broadcast_to(np.eye(d), (U.shape[0], d, d)),
    )


def _loss_function(model) -> TestFunction:
    if not getattr(model, "zero_sum", False):
        raise IdentityError(
            f"f = Phi needs one objective with grad Phi = g, but the {model.loss!r} loss of {model.name!r} is not "
            "zero-sum (the generator descends Phi_G, the discriminator ascends Phi_D): the paper's FDR1 does not apply "
            "(MATH.md section 1). E[A f] = 0 still holds for any formula f, and FDR2 (f = |u|^2/2)."
        )

    def grad(U):
        return model.moments(U, jacobian=False, covariance=False, covariance_derivative=False).mean

    def hess(U):
        H = model.moments(U, jacobian=True, covariance=False, covariance_derivative=False).jacobian
        return 0.5 * (H + np.swapaxes(H, 1, 2))  # symmetric for zero-sum; removes round-off

    def from_moments(mom):
        return mom.mean, 0.5 * (mom.jacobian + np.swapaxes(mom.jacobian, 1, 2))

    return TestFunction("Phi", lambda U: model.objectives(U)[1], grad, hess, from_moments)


def _formula_function(text: str, names: Sequence[str], constants=None) -> TestFunction:
    expr = parse_formula(text, names, constants, where="test function")
    syms = [symbol(n) for n in names]
    d = len(syms)
    grad = [sp.diff(expr, s) for s in syms]
    hess = [sp.diff(grad[k], syms[l]) for k in range(d) for l in range(d)]
    modules = [NUMPY_FUNCTIONS, "numpy"]
    fv = sp.lambdify(syms, expr, modules=modules)
    fg = sp.lambdify(syms, grad, modules=modules, cse=True)
    fh = sp.lambdify(syms, hess, modules=modules, cse=True)

    def stack(vals, n):
        return np.stack([np.broadcast_to(np.asarray(v, float), (n,)) for v in vals], axis=-1)

    return TestFunction(
        text,
        lambda U: np.broadcast_to(np.asarray(fv(*U.T), float), (U.shape[0],)),
        lambda U: stack(fg(*U.T), U.shape[0]),
        lambda U: stack(fh(*U.T), U.shape[0]).reshape(U.shape[0], d, d),
    )


def test_function(f, sde) -> TestFunction:
    """Resolve ``f`` for ``sde``: a :class:`TestFunction`, ``"Phi"`` (the loss, zero-sum GANs),
    ``"half_square"`` (:math:`|u|^2/2`) or a formula in the SDE's coordinate names (parsed by
    :func:`~stationary.formula.parse_formula`, never evaluated as Python; the model's constants
    may be used)."""
    if isinstance(f, TestFunction):
        return f
    if not isinstance(f, str):
        raise IdentityError(f"test function must be a TestFunction or a string, got {type(f).__name__}")
    if f in ("Phi", "loss"):
        model = getattr(sde, "model", None)
        if model is None:
            raise IdentityError("f = Phi needs a GAN SDE (from gan_sde): this SDE has no model")
        return _loss_function(model)
    if f in ("half_square", "|u|^2/2"):
        return _half_square(sde.dim)
    model = getattr(sde, "model", None)
    return _formula_function(f, sde.names, getattr(model, "constants", None))


test_function.__test__ = False  # a library function, not a pytest test


# --------------------------------------------------------------------------- the generator
def generator_terms(sde, f: TestFunction, U, _cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Pointwise integrands ``(l, r)`` of the two sides at points ``U`` (n, d):

    :math:`l = -b_0\cdot\nabla f`, :math:`r = (b - b_0)\cdot\nabla f + \tfrac12 a:\nabla^2 f`,
    so :math:`r - l = \mathcal{A}f`.  Without a GAN behind the SDE, :math:`b_0 := b`.
    ``_cache`` (a dict, valid for one ``U``) shares coefficients between identities.
    """
    U = np.asarray(U, float)
    if U.ndim == 1:
        U = U[None, :]
    cache = {} if _cache is None else _cache
    key = ("ba", id(sde))
    if key not in cache:
        cache[key] = sde.drift_and_diffusion(U) if hasattr(sde, "drift_and_diffusion") else (sde.drift(U), sde.diffusion(U))
    b, a = cache[key]
    model = getattr(sde, "model", None)
    if model is None:
        b0 = b
        grad, hess = f.gradient(U), f.hessian(U)
    else:
        # One moments call (with the Jacobian) gives b0 = S g and, for f = Phi, its exact
        # derivatives g and H.
        key = ("moments", id(model))
        if key not in cache:
            cache[key] = model.moments(U, jacobian=True, covariance=False, covariance_derivative=False)
        mom = cache[key]
        b0 = model.sign * mom.mean
        grad, hess = f.from_moments(mom) if f.from_moments is not None else (f.gradient(U), f.hessian(U))
    lhs = -np.einsum("nk,nk->n", b0, grad)
    rhs = np.einsum("nk,nk->n", b - b0, grad) + 0.5 * np.einsum("nkl,nkl->n", a, hess)
    return lhs, rhs


def generator_action(sde, f, U) -> np.ndarray:
    r""":math:`\mathcal{A}f(u) = b\cdot\nabla f + \tfrac12 a:\nabla^2 f` at points ``U`` (n, d).

    ``f`` as in :func:`test_function`; ``b`` and ``a`` are the SDE's own continuous
    coefficients (for the ALT-SDE, :math:`b = b_0 + \eta b_1`), so the identity is exact for it.
    """
    U = np.asarray(U, float)
    if U.ndim == 1:
        U = U[None, :]
    f = test_function(f, sde)
    b, a = sde.drift(U), sde.diffusion(U)
    return np.einsum("nk,nk->n", b, f.gradient(U)) + 0.5 * np.einsum("nkl,nkl->n", a, f.hessian(U))


# --------------------------------------------------------------------------- named identities
#: ``name -> (test function, update, noise, what)``: the reference SDE is
#: ``gan_sde(model, update, eta, batch, noise)`` with the target SDE's ``eta`` and ``batch``.
IDENTITIES = {
    "FDR1": ("Phi", "alt", "paper", "paper's FDR1 for ALT: f = Phi under the ALT-SDE"),
    "FDR1-SML": ("Phi", "sml", "paper", "FDR1 for SML: f = Phi under the SML-SDE (no eta term)"),
    "FDR1-SML2": ("Phi", "sml2", "paper", "f = Phi under the second-order SML-SDE"),
    "FDR1-shared": ("Phi", "sml", "shared-batch", "f = Phi under the SML-SDE with shared-batch noise (cross-covariance term)"),
    "FDR2": ("half_square", "sml", "paper", "paper's FDR2 for SML: f = |u|^2/2 under the SML-SDE"),
    "FDR2-ALT": ("half_square", "alt", "paper", "FDR2 with its ALT correction eta E[u.b1]"),
    "FDR2-SML2": ("half_square", "sml2", "paper", "f = |u|^2/2 under the second-order SML-SDE"),
    "FDR2-shared": ("half_square", "sml", "shared-batch", "f = |u|^2/2 under the SML-SDE with shared-batch noise"),
}


def identities_for(sde) -> list[str]:
    """The named identities whose reference SDE is ``sde``'s own (update and noise model)."""
    upd, noise = getattr(sde, "update", None), getattr(sde, "noise", None)
    return [k for k, (_, u, n, _) in IDENTITIES.items() if u == upd and n == noise]


def _resolve(name_or_f, sde, update=None, noise=None):
    """-> (label, reference SDE, TestFunction, description)."""
    if isinstance(name_or_f, str) and name_or_f in IDENTITIES:
        fkey, upd, nz, what = IDENTITIES[name_or_f]
        model = getattr(sde, "model", None)
        if model is None:
            raise IdentityError(f"{name_or_f} is a GAN identity: the SDE has no model (build it with gan_sde)")
        if getattr(sde, "update", None) == upd and getattr(sde, "noise", None) == nz:
            ref = sde
        else:
            from .sde import gan_sde

            ref = gan_sde(model, upd, sde.eta, sde.batch, nz)
        try:
            f = test_function(fkey, ref)
        except IdentityError as exc:
            raise IdentityError(f"{name_or_f}: {exc}") from None
        return name_or_f, ref, f, what
    if update is not None or noise is not None:
        from .sde import gan_sde

        ref = gan_sde(sde.model, update or sde.update, sde.eta, sde.batch, noise or sde.noise)
    else:
        ref = sde
    f = test_function(name_or_f, ref)
    return f"E[A f], f = {f.name}", ref, f, "generic stationarity identity E[A f] = 0"


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, repr=False)
class IdentityResult:
    r"""Both sides of one identity on one target.

    Attributes
    ----------
    name : str
    description : str
    lhs, rhs : float
        :math:`-\mathbb{E}[b_0\cdot\nabla f]` and :math:`\mathbb{E}[(b-b_0)\cdot\nabla f + \tfrac12 a:\nabla^2 f]`.
    difference : float
        ``rhs - lhs`` :math:`= \mathbb{E}[\mathcal{A}f]` (zero at the invariant law).
    relative : float
        ``difference / max(|lhs|, |rhs|)``.
    stderr, stderr_lhs, stderr_rhs : float
        Monte Carlo standard errors (across independent chains or i.i.d. samples); NaN on a grid.
    zscore : float
        ``difference / stderr`` (NaN on a grid).
    scale : float
        :math:`\max(\mathbb{E}|l|, \mathbb{E}|r|)` for the pointwise integrands :math:`l, r` of
        the two sides: the size of the terms that must cancel (``relative`` is misleading when a
        side vanishes identically, e.g. ``rhs = 0`` for :math:`f = \theta\omega` under SML).
    source : str
        ``"grid"``, ``"samples"``, ``"weighted points"``, ``"chains"``, ``"grid refinement"``.
    count : int
        Cells, samples or chains.
    trend : dict
        Grid refinement: ``h`` (max cell width per grid), ``difference``, ``relative``, ``slope``
        (fitted order of :math:`|\text{difference}|` in ``h``).
    success, status, message
        ``success`` says the evaluation worked, not that the identity "passes": judge
        ``difference`` against ``stderr`` or ``trend``.
    """

    name: str
    description: str
    lhs: float
    rhs: float
    difference: float
    relative: float
    stderr: float
    stderr_lhs: float
    stderr_rhs: float
    zscore: float
    scale: float
    source: str
    count: int
    trend: dict = field(default_factory=dict)
    success: bool = True
    status: int = 0
    message: str = ""

    def to_dict(self) -> dict:
        """JSON-ready (``identities.<name>.*`` in ``result.json``)."""
        out = {k: getattr(self, k) for k in ("lhs", "rhs", "difference", "relative", "stderr", "stderr_lhs",
                                             "stderr_rhs", "zscore", "scale", "source", "count", "description", "message")}
        out = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}
        out["trend"] = {k: (np.asarray(v).tolist() if not np.isscalar(v) else float(v)) for k, v in self.trend.items()}
        return out

    def __repr__(self) -> str:
        lines = [
            f"     name: {self.name} ({self.description})",
            f"      lhs: {self.lhs:.6g} +- {self.stderr_lhs:.3g}",
            f"      rhs: {self.rhs:.6g} +- {self.stderr_rhs:.3g}",
            f"rhs - lhs: {self.difference:.4g} +- {self.stderr:.3g} (relative {self.relative:.3g}, z = {self.zscore:.3g})",
            f"    scale: {self.scale:.4g} (size of the cancelling terms)",
            f"   source: {self.source} ({self.count})",
        ]
        if self.trend:
            lines.append(f"    trend: h = {np.round(self.trend['h'], 5).tolist()}, "
                         f"relative = {[float(f'{v:.3g}') for v in self.trend['relative']]}, slope = {self.trend['slope']:.3g}")
        lines.append(f"  message: {self.message!r}")
        return "IdentityResult(\n" + "\n".join("  " + l for l in lines) + "\n)"


def _result(name, what, lhs, rhs, se_l, se_r, se_d, source, count, message="", trend=None, scale=np.nan):
    diff = rhs - lhs
    size = max(abs(lhs), abs(rhs))
    rel = diff / size if size > 0 else np.nan
    scale = scale if np.isfinite(scale) else size  # the cancelling terms' size when known
    z = diff / se_d if se_d > 0 else np.nan
    return IdentityResult(name, what, float(lhs), float(rhs), float(diff), float(rel), float(se_d), float(se_l),
                          float(se_r), float(z), float(scale), source, int(count), trend or {}, True, 0, message)


def _density_target(target):
    """(points, weights) for a StationaryResult or a (grid, density) pair, else None."""
    grid = getattr(target, "grid", None)
    dens = getattr(target, "density", None)
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], Grid):
        grid, dens = target
    if isinstance(grid, Grid) and dens is not None:
        p = np.asarray(dens, float).reshape(-1)
        return grid.points(), p * grid.cell_volume, grid
    return None


def evaluate_identity(name_or_f, sde, target, *, update: str | None = None, noise: str | None = None,
                      chunk: int = 1 << 15) -> IdentityResult:
    r"""Evaluate one identity on a density, on samples or on per-chain averages.

    Parameters
    ----------
    name_or_f : str or TestFunction
        A key of :data:`IDENTITIES` (``"FDR1"``, ``"FDR1-SML"``, ``"FDR2"``, ``"FDR2-ALT"``,
        ``"FDR1-shared"``, ...) or a test function for :math:`\mathbb{E}[\mathcal{A}f] = 0`
        (see :func:`test_function`).
    sde : SDE
        The SDE (for a named identity: supplies the model, ``eta`` and ``batch``; the identity
        fixes update and noise model).  For a generic ``f``, ``update``/``noise`` may pick
        another GAN SDE of the same model.
    target
        * a :class:`~stationary.results.StationaryResult` or ``(grid, density)``: the
          expectation is :math:`\sum_c (\cdot)(u_c)\,p_c|c|` over cell centres (midpoint rule);
        * an (n, d) array of i.i.d. samples (e.g. ``MonteCarloResult.final``, or the result
          itself): sample mean, standard error :math:`s/\sqrt n`;
        * ``(points, weights)``: a weighted quadrature (e.g. Gauss–Hermite for a Gaussian);
        * a :class:`ChainAverager` after a run: per-chain time averages, standard error
          from their spread across independent chains.

    Returns
    -------
    IdentityResult
    """
    label, ref, f, what = _resolve(name_or_f, sde, update, noise)
    if isinstance(target, ChainAverager):
        return target.result(label)
    dens = _density_target(target)
    if dens is not None:
        pts, w, grid = dens
        keep = w > 0  # cells without mass contribute nothing; skip their (possibly costly) moments
        sums = np.zeros(4)  # l, r, |l|, |r|
        P, W = pts[keep], w[keep]
        for s in range(0, P.shape[0], chunk):
            l, r = generator_terms(ref, f, P[s : s + chunk])
            sums += np.stack([l, r, np.abs(l), np.abs(r)]) @ W[s : s + chunk]
        sums /= w.sum()
        msg = f"midpoint rule on {grid!r}, mass {w.sum():.12g}"
        return _result(label, what, sums[0], sums[1], np.nan, np.nan, np.nan, "grid", grid.size, msg,
                       scale=max(sums[2], sums[3]))
    if hasattr(target, "final") and hasattr(target, "process"):
        if target.final is None:
            raise IdentityError("the Monte Carlo result holds no final states")
        target = target.final
    if isinstance(target, tuple) and len(target) == 2:
        pts, w = (np.asarray(t, float) for t in target)
        l, r = generator_terms(ref, f, pts)
        W = w / w.sum()
        return _result(label, what, l @ W, r @ W, 0.0, 0.0, 0.0, "weighted points", pts.shape[0], "quadrature",
                       scale=max(np.abs(l) @ W, np.abs(r) @ W))
    U = np.asarray(target, float)
    if U.ndim != 2 or U.shape[1] != ref.dim:
        raise IdentityError(f"samples must have shape (n, {ref.dim}), got {U.shape}")
    l, r = generator_terms(ref, f, U)
    n = U.shape[0]
    se = lambda x: float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan  # noqa: E731
    return _result(label, what, l.mean(), r.mean(), se(l), se(r), se(r - l), "samples", n,
                   f"{n} samples treated as independent", scale=max(np.abs(l).mean(), np.abs(r).mean()))


def evaluate_identities(names, sde, target, *, chunk: int = 1 << 15) -> list[IdentityResult]:
    """:func:`evaluate_identity` for several identities on one density or sample set, sharing the
    coefficient and moment evaluations between them (same numbers, less work)."""
    dens = _density_target(target)
    if dens is None or isinstance(target, ChainAverager):
        return [evaluate_identity(n, sde, target) for n in names]
    items = [_resolve(n, sde) for n in names]
    pts, w, grid = dens
    keep = w > 0
    P, W = pts[keep], w[keep]
    sums = np.zeros((len(items), 4))
    for s in range(0, P.shape[0], chunk):
        cache = {}
        for k, (_, ref, f, _) in enumerate(items):
            l, r = generator_terms(ref, f, P[s : s + chunk], cache)
            sums[k] += np.stack([l, r, np.abs(l), np.abs(r)]) @ W[s : s + chunk]
    sums /= w.sum()
    msg = f"midpoint rule on {grid!r}, mass {w.sum():.12g}"
    return [_result(label, what, v[0], v[1], np.nan, np.nan, np.nan, "grid", grid.size, msg, scale=max(v[2], v[3]))
            for (label, _, _, what), v in zip(items, sums)]


def identity_convergence(name_or_f, sde, grids: Sequence[Grid], *, results=None, **solve_options) -> IdentityResult:
    r"""The identity on stationary densities over a sequence of refined grids: its trend.

    Solves :func:`~stationary.solve.stationary_density` on each grid (or uses ``results``,
    one per grid), evaluates the identity on each, and fits the order :math:`q` in
    :math:`|\text{rhs} - \text{lhs}| \approx C h^q`.  The returned numbers are those of the
    finest grid; ``trend`` holds the sequence.
    """
    from .solve import stationary_density

    if results is None:
        results = [stationary_density(sde, g, **solve_options) for g in grids]
    evals = [evaluate_identity(name_or_f, sde, r) for r in results]
    h = np.array([float(np.max(r.grid.spacing)) for r in results])
    diff = np.array([e.difference for e in evals])
    rel = np.array([e.relative for e in evals])
    ok = np.abs(diff) > 0
    slope = float(np.polyfit(np.log(h[ok]), np.log(np.abs(diff[ok])), 1)[0]) if ok.sum() >= 2 else np.nan
    last = evals[-1]
    trend = dict(h=h, difference=diff, relative=rel, lhs=np.array([e.lhs for e in evals]),
                 rhs=np.array([e.rhs for e in evals]), slope=slope)
    return IdentityResult(last.name, last.description, last.lhs, last.rhs, last.difference, last.relative,
                          np.nan, np.nan, np.nan, np.nan, last.scale, "grid refinement", last.count, trend, True, 0,
                          f"{len(results)} grids; |rhs - lhs| ~ h^{slope:.2f}")


# --------------------------------------------------------------------------- Monte Carlo
class ChainAverager:
    r"""Per-chain time averages of the identities' integrands, as a simulator callback.

    Pass as ``callback=`` to :func:`~stationary.simulate.simulate_training` or
    :func:`~stationary.simulate.simulate_sde`: it is called with ``(step, U)`` (U of shape
    (chains, d)) at every block boundary; after ``burn_in_steps`` it adds the lhs and rhs
    integrands of each identity to per-chain sums.  Independent chains then give the standard
    error of each side and of their difference; snapshots ``block_steps`` apart within a
    chain need not be independent (the spread across chains accounts for that).

    Parameters
    ----------
    identities : sequence
        Names of :data:`IDENTITIES` or test functions.
    sde : SDE
        The (GAN) SDE whose coefficients define the integrands (the *SDE*'s, even when the
        samples come from the training algorithm).
    burn_in_steps : int
        Snapshots at steps ``<= burn_in_steps`` are ignored.
    """

    def __init__(self, identities, sde, burn_in_steps: int):
        self.items = [_resolve(i, sde) for i in identities]
        self.burn_in_steps = int(burn_in_steps)
        self.sums = None
        self.count = 0

    def __call__(self, step, U):
        if step <= self.burn_in_steps:
            return
        U = np.asarray(U, float)
        cache = {}
        vals = np.stack([np.stack(generator_terms(ref, f, U, cache)) for _, ref, f, _ in self.items])  # (k, 2, n)
        absum = np.abs(vals).mean(axis=2)  # (k, 2): size of the cancelling terms
        self.abs_sums = absum if self.sums is None else self.abs_sums + absum
        self.sums = vals if self.sums is None else self.sums + vals
        self.count += 1

    def result(self, name=None) -> IdentityResult | list:
        """One :class:`IdentityResult` (by label) or, without ``name``, the list of all."""
        if self.count == 0:
            raise IdentityError("no snapshot after the burn-in was recorded (run longer, or lower block_steps)")
        out = []
        for k, (label, _, f, what) in enumerate(self.items):
            if name is not None and label != name:
                continue
            l, r = self.sums[k] / self.count
            C = l.size
            se = lambda x: float(x.std(ddof=1) / np.sqrt(C)) if C > 1 else np.nan  # noqa: E731
            out.append(_result(label, what, l.mean(), r.mean(), se(l), se(r), se(r - l), "chains", C,
                               f"{C} chains x {self.count} snapshots after step {self.burn_in_steps}",
                               scale=float(self.abs_sums[k].max() / self.count)))
        if name is not None:
            if not out:
                raise IdentityError(f"{name!r} was not collected; collected: {[i[0] for i in self.items]}")
            return out[0]
        return out


def monte_carlo_identities(identities, sde, process: str = "sde", *, chains: int = 2048, burn_in: float = 50.0,
                           duration: float = 200.0, seed: int = 0, block_steps: int = 32, batches: str | None = None,
                           progress: bool = False, **options):
    r"""Run the SDE (Euler–Maruyama, ``process="sde"``) or the training algorithm (``"sga"``,
    the update, ``eta`` and ``batch`` of ``sde``) and evaluate ``identities`` on per-chain averages.

    Returns ``(list of IdentityResult, MonteCarloResult)``.  The integrands always use the
    continuous coefficients of the identities' reference SDEs: on training samples the
    difference measures how far the training law is from the SDE's invariant law.
    """
    from .simulate import simulate_sde, simulate_training

    if process == "sde":
        dt = options.pop("dt", None) or sde.eta
        avg = ChainAverager(identities, sde, int(round(burn_in / dt)))
        mc = simulate_sde(sde, dt, chains=chains, burn_in=burn_in, duration=duration, seed=seed,
                          block_steps=block_steps, callback=avg, progress=progress, **options)
    elif process == "sga":
        avg = ChainAverager(identities, sde, int(round(burn_in / sde.eta)))
        if batches is None:
            batches = "shared" if getattr(sde, "noise", "paper") == "shared-batch" else "independent"
        mc = simulate_training(sde.model, sde.update, sde.eta, sde.batch, batches, chains=chains, burn_in=burn_in,
                               duration=duration, seed=seed, block_steps=block_steps, callback=avg,
                               progress=progress, **options)
    else:
        raise IdentityError(f"unknown process {process!r}; choose from ['sde', 'sga']")
    if not mc.success:
        raise IdentityError(f"Monte Carlo run failed: {mc.message}")
    return avg.result(), mc


def extrapolate_identity(full: IdentityResult, half: IdentityResult) -> IdentityResult:
    r"""Both sides of an identity measured on Euler–Maruyama runs at :math:`\Delta t` and
    :math:`\Delta t/2` (independent), extrapolated to :math:`\Delta t \to 0`:
    :math:`2Q(\Delta t/2) - Q(\Delta t)`, standard errors :math:`\sqrt{4 s_{1/2}^2 + s_1^2}`."""
    lhs, rhs = 2 * half.lhs - full.lhs, 2 * half.rhs - full.rhs
    se = lambda a, b: float(np.sqrt(4 * a**2 + b**2))  # noqa: E731
    return _result(half.name, half.description, lhs, rhs, se(half.stderr_lhs, full.stderr_lhs),
                   se(half.stderr_rhs, full.stderr_rhs), se(half.stderr, full.stderr), "chains (extrapolated dt -> 0)",
                   half.count, f"extrapolated from dt and dt/2; {half.message}", scale=half.scale)
