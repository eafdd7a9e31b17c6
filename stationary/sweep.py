r"""Sweeps over learning rate, batch size, update rule, noise model and regularisation, on Dask.

How does the long-run law depend on :math:`\eta`, :math:`B` and the regularisation? For every
combination of the requested values this module solves the stationary Fokker–Planck density
of the case's SDE (and, if asked, runs long-run Monte Carlo of the training algorithm and of
the SDE), and writes one tidy table, one row per setting.

Design
------
* **Parallelism is Dask's** (``dask.distributed``): one task per setting, submitted to an
  in-process :class:`~distributed.LocalCluster` (``processes=True``, one thread per worker,
  BLAS/OpenMP pinned to one thread so ``n`` workers use ``n`` cores) or to an existing cluster
  given by its scheduler address. There is no home-made pool or queue.
* **Workers compute, the client writes.** A task returns a plain record (numbers, strings);
  the client writes it atomically to ``OUT/settings/<id>.json`` as soon as it arrives. Workers
  need no shared file system, and an interrupted sweep keeps everything that finished.
* **Resume.** A rerun with the same options skips settings whose record exists with a final
  status (``ok``, ``no-invariant-measure``, ``training-diverges``) and recomputes those recorded
  as ``failed`` (solver failure, exception, lost worker). A record made with different options
  (grid shape, Monte Carlo settings, seed) is not reused.
* **Determinism.** Every number in a record depends only on the case, the setting and the
  sweep options: the Monte Carlo seed is a hash of the sweep seed and the setting's identity
  (never of the worker), each task runs single-threaded, and rows are ordered by the
  setting grid, not by completion. Hence 1 and 2 workers, or an interrupted sweep plus a
  rerun, give identical tables; only the ``seconds_*`` columns (wall times) differ.

Regularisation
--------------
``lam`` scales the case's regularizer formula, :math:`R \mapsto \lambda R` (``lam = 0``
switches it off, ``1`` is the case as written); ``constants`` overrides named entries of
``model.constants`` (e.g. the critic's curvature ``c``). Both rebuild the model from the case
file's formulas; nothing is evaluated as Python.

Row columns
-----------
``id, update, noise, eta, batch, eta_over_batch, lam, constants, status, reason`` then the
grid solution's ``mean_<p>``, ``cov_<p>_<q>`` (upper triangle), ``sd_<p>``, ``spread``
(:math:`\operatorname{tr}\,\mathrm{Cov}`), ``mass_at_boundary``, ``residual``, ``shape``; the
grid error estimate ``grid_error_mean`` / ``grid_error_cov`` (:math:`\max|Q_h - Q_{2h}|`, re-solved
with half the cells per axis on the same box); the stationarity identities ``fdr1``, ``fdr2``
(:math:`\mathbb E[\mathcal A f]` on the grid density; names in ``fdr_names``); the references
when the model is affine, ``exact_spread`` and ``exact_cov_error`` (continuous Lyapunov,
:math:`\max|C_h - S|`) and ``discrete_spread`` (discrete Lyapunov of the training recursion);
Monte Carlo ``mc_sga_*`` / ``mc_sde_*`` (spread, its standard error, status, and for the
training the largest :math:`|z|` against the discrete reference); ``seconds_*`` wall times.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .io import atomic_write_bytes, atomic_write_json

__all__ = ["Setting", "SweepResult", "sweep", "sweep_settings", "run_setting", "parse_values", "read_table",
           "plot_sweep", "FINAL_STATUSES", "TIMING_PREFIX"]

log = logging.getLogger("stationary")

#: Statuses that are a verdict about the setting; a rerun keeps them. ``failed`` is retried.
FINAL_STATUSES = ("ok", "no-invariant-measure", "training-diverges")
#: Columns with this prefix are wall times: the only ones allowed to differ between reruns.
TIMING_PREFIX = "seconds_"
_SCHEMA = 1


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """One point of the sweep: training settings plus model overrides.

    ``lam`` is the regularizer scale (``None``: the case's formula as written);
    ``constants`` is a sorted tuple of ``(name, value)`` overrides of ``model.constants``.
    """

    update: str
    noise: str
    eta: float
    batch: int
    lam: float | None = None
    constants: tuple = ()

    def to_dict(self) -> dict:
        return {"update": self.update, "noise": self.noise, "eta": self.eta, "batch": self.batch,
                "lam": self.lam, "constants": {k: v for k, v in self.constants}}

    @property
    def id(self) -> str:
        """A stable file-name-safe identity: readable prefix plus a hash of the exact values."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
        lam = "" if self.lam is None else f"-lam{self.lam:g}"
        cst = "".join(f"-{k}{v:g}" for k, v in self.constants)
        return f"{self.update}-{self.noise}-eta{self.eta:g}-B{self.batch}{lam}{cst}-{digest}"

    def seed(self, sweep_seed: int) -> int:
        """Monte Carlo seed from the sweep seed and this setting only (never the worker)."""
        h = hashlib.sha256(f"{int(sweep_seed)}|{json.dumps(self.to_dict(), sort_keys=True)}".encode()).digest()
        return int.from_bytes(h[:4], "little")


def parse_values(text: str, kind=float) -> list:
    """``"a:b:n"`` -> ``n`` log-spaced values from ``a`` to ``b`` (spreads are studied on log axes);
    ``"v1,v2,..."`` -> the listed values. Floats are rounded to 12 significant digits so that a
    setting's identity is stable across platforms."""
    text = str(text).strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"range {text!r}: expected start:stop:count")
        a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
        if a <= 0 or b <= 0 or n < 1:
            raise ValueError(f"range {text!r}: start and stop must be positive and count >= 1")
        vals = np.geomspace(a, b, n) if n > 1 else np.array([a])
    else:
        vals = [v for v in text.split(",") if v.strip()]
        if not vals:
            raise ValueError(f"no values in {text!r}")
    out = []
    for v in vals:
        out.append(int(v) if kind is int else float(f"{float(v):.12g}"))
    return out


def sweep_settings(case, eta=None, batch=None, updates=None, noise=None, lam=None, constants=None) -> list[Setting]:
    """The settings grid in its canonical (table) order.

    Outer to inner: regularizer scale, constant overrides, update rule, noise model, batch, eta.
    Combinations that do not exist are left out, not failed: ALT uses independent batches, so
    only the ``"paper"`` noise model applies to it.
    """
    from .sde import NOISE_MODELS, UPDATES

    eta = [case.eta] if eta is None else [float(f"{float(v):.12g}") for v in np.atleast_1d(eta)]
    batch = [case.batch] if batch is None else [int(b) for b in np.atleast_1d(batch)]
    updates = [case.update] if updates is None else list(np.atleast_1d(updates))
    noise = [case.noise] if noise is None else list(np.atleast_1d(noise))
    lams = [None] if lam is None else [float(f"{float(v):.12g}") for v in np.atleast_1d(lam)]
    for e in eta:
        if not (math.isfinite(e) and e > 0):
            raise ValueError(f"eta must be positive, got {e!r}")
    for b in batch:
        if b < 1:
            raise ValueError(f"batch must be a positive integer, got {b!r}")
    for u in updates:
        if u not in UPDATES:
            raise ValueError(f"unknown update {u!r}; choose from {list(UPDATES)}")
    for n in noise:
        if n not in NOISE_MODELS:
            raise ValueError(f"unknown noise model {n!r}; choose from {list(NOISE_MODELS)}")
    constants = constants or {}
    known = set(case.model.constants)
    for k in constants:
        if k not in known:
            raise ValueError(f"constant {k!r} is not in {case.name}'s model.constants {sorted(known)}")
    cnames = sorted(constants)
    cgrid = list(itertools.product(*[[float(v) for v in np.atleast_1d(constants[k])] for k in cnames])) or [()]
    out = []
    for lm, cv, u, n, b, e in itertools.product(lams, cgrid, updates, noise, batch, eta):
        if u == "alt" and n != "paper":
            continue
        out.append(Setting(str(u), str(n), e, b, lm, tuple(zip(cnames, cv))))
    if not out:
        raise ValueError("the sweep has no valid settings (ALT only takes noise='paper')")
    return out


# ----------------------------------------------------------------------------- one setting (on a worker)
_MODEL_CACHE: dict = {}


def _case_for(source: dict, setting: Setting):
    """Load the case (by path, or from its text where the worker cannot see the file) and apply the
    setting. Models are cached per worker process: building one is symbolic work (about 1 s)."""
    import tempfile

    from .cases import CaseError, load_case
    from .model import GAN

    key = (source["text"], setting.lam, setting.constants)
    if key not in _MODEL_CACHE:
        path = Path(source["path"])
        if not path.is_file() or path.read_text() != source["text"]:
            tmp = Path(tempfile.mkdtemp(prefix="stationary-sweep-")) / path.name
            tmp.write_text(source["text"])
            path = tmp
        case = load_case(path)
        if setting.lam is not None or setting.constants:
            raw = tomllib.loads(source["text"])
            m = raw["model"]
            where = f"{source['path']}: model"
            reg = m.get("regularizer")
            if setting.lam is not None:
                if not reg:
                    raise CaseError(f"{where}.regularizer: the case has none, so a regularisation scale lam does not apply")
                reg = f"({setting.lam:.17g})*({reg})"
            constants = {**m.get("constants", {}), **dict(setting.constants)}
            model = GAN(m["theta"], m["omega"], m["generator"], m["discriminator"], m.get("loss", "wgan"), reg,
                        constants, z=raw["data"]["z"], x=raw["data"]["x"], name=raw["name"], where=where,
                        base_dir=Path(source["path"]).parent)
            case = replace(case, model=model)
        if len(_MODEL_CACHE) > 16:
            _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = case
    case = _MODEL_CACHE[key]
    # The training algorithm: SML shares one batch between the players unless the case says
    # otherwise; ALT always draws independent batches.
    if setting.update == "alt":
        batches = "independent"
    else:
        batches = case.batches if case.update != "alt" else "shared"
    return case.with_overrides(update=setting.update, noise=setting.noise, eta=setting.eta, batch=setting.batch,
                               batches=batches)


def _flat(prefix, names, vec):
    return {f"{prefix}_{n}": (None if vec is None else float(v)) for n, v in zip(names, vec if vec is not None else [None] * len(names))}


def _flat_cov(prefix, names, cov):
    out = {}
    for i, j in itertools.combinations_with_replacement(range(len(names)), 2):
        out[f"{prefix}_{names[i]}_{names[j]}"] = None if cov is None else float(cov[i][j])
    return out


def _spread_stderr(mc):
    # tr Cov's standard error, treating the diagonal estimates as independent (a slight
    # underestimate when they are positively correlated; fine for error bars).
    if mc.stderr_covariance is None:
        return None
    return float(np.sqrt(np.sum(np.diag(mc.stderr_covariance) ** 2)))


def _columns(names):
    d = len(names)
    cols = ["id", "update", "noise", "eta", "batch", "eta_over_batch", "lam", "constants", "status", "reason"]
    cols += [f"mean_{n}" for n in names] + list(_flat_cov("cov", names, None)) + [f"sd_{n}" for n in names]
    cols += ["spread", "mass_at_boundary", "residual", "shape", "grid_error_mean", "grid_error_cov",
             "fdr_names", "fdr1", "fdr2", "fdr1_relative", "fdr2_relative",
             "exact_spread", "exact_cov_error", "discrete_spread", "training_invariant"]
    for p in ("sga", "sde"):
        cols += [f"mc_{p}_status", f"mc_{p}_spread", f"mc_{p}_spread_stderr"]
    cols += ["mc_sga_max_z"]
    cols += [f"mc_sga_mean_{n}" for n in names] + list(_flat_cov("mc_sga_cov", names, None))
    cols += ["seconds_solve", "seconds_coarse", "seconds_montecarlo", "seconds_total"]
    assert d == len(names)
    return cols


def run_setting(source: dict, setting: Setting, options: dict) -> dict:
    """Compute one setting; never raises (a failure is a record with ``status="failed"``).

    Runs on a Dask worker. Returns ``{"setting", "row", "details"}``: ``row`` is the flat table
    row (see the module docstring), ``details`` the full arrays and messages for the JSON file.
    """
    t_all = time.perf_counter()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - the environment variables of the local cluster suffice
        limits = None
    else:
        # One BLAS thread per task: n workers on n cores must not oversubscribe (and a
        # single-threaded reduction order keeps results bit-identical across worker counts).
        limits = threadpool_limits(1)
    details: dict = {}
    names = options["names"]
    row = {c: None for c in _columns(names)}
    row.update(id=setting.id, update=setting.update, noise=setting.noise, eta=setting.eta, batch=setting.batch,
               eta_over_batch=setting.eta / setting.batch, lam=setting.lam,
               constants=";".join(f"{k}={v:g}" for k, v in setting.constants))
    try:
        _compute(source, setting, options, row, details)
    except Exception as exc:  # recorded, not raised: one bad setting must not abort the sweep
        row["status"] = "failed"
        row["reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    finally:
        if limits is not None:
            limits.unregister()
    row["seconds_total"] = time.perf_counter() - t_all
    # Empty text is None, as an empty CSV cell reads back: the table survives a CSV round trip.
    row = {k: (None if v == "" else v) for k, v in row.items()}
    return {"schema": _SCHEMA, "setting": setting.to_dict(), "options_hash": options["hash"], "row": row, "details": details}


def _compute(source, setting, options, row, details):
    import warnings

    from .existence import diagnose
    from .grid import Grid
    from .identities import evaluate_identity, identities_for
    from .pipeline import case_grid, montecarlo_settings, solve_case
    from .solve import stationary_density

    case = _case_for(source, setting)
    sde = case.sde()
    names = options["names"]
    shape = options.get("shape")
    try:
        grid = case_grid(case, shape)
    except ValueError as exc:
        grid = None
        details["grid_error"] = str(exc)
    existence = diagnose(sde, grid)
    details["existence"] = {"verdict": existence.verdict, "evidence": list(existence.evidence)}

    # Training recursion: exact discrete-Lyapunov moments where the gradients are affine.
    upd = "sml" if setting.update == "sml2" else setting.update
    try:
        from .discrete import AffineError, discrete_reference

        ref = discrete_reference(case.model, upd, case.eta, case.batch, case.batches)
        row["discrete_spread"] = float(np.trace(ref.covariance))
        row["training_invariant"] = True
        details["discrete"] = {"mean": ref.mean, "covariance": ref.covariance, "spectral_radius": ref.spectral_radius}
    except AffineError as exc:
        msg = str(exc).splitlines()[0]
        details["discrete"] = {"unavailable": msg}
        if "spectral radius" in msg:  # affine but unstable: the training law has no second moment
            row["training_invariant"] = False
            details["training_reason"] = msg

    if existence.verdict == "no invariant probability measure":
        row["status"] = "no-invariant-measure"
        row["reason"] = ("SDE: " + "; ".join(existence.evidence))[:300]
        return
    if grid is None:
        raise ValueError(f"could not size a box: {details['grid_error']}")

    t0 = time.perf_counter()
    res = solve_case(case, shape=shape, **options.get("solve", {}))
    row["seconds_solve"] = time.perf_counter() - t0
    row["shape"] = "x".join(str(n) for n in res.grid.shape)
    row["mass_at_boundary"] = float(res.mass_at_boundary)
    row["residual"] = float(res.residual)
    details["solve"] = {"message": res.message, "status": int(res.status), "lower": list(res.grid.lower),
                        "upper": list(res.grid.upper), "shape": list(res.grid.shape)}
    if not res.success:
        if res.status == 2:
            row["status"] = "no-invariant-measure"
            row["reason"] = f"SDE: {res.message} (box grown {options.get('solve', {}).get('grow', 2)} times)"[:300]
        else:
            row["status"] = "failed"
            row["reason"] = f"solver: {res.message}"[:300]
        return
    row.update(_flat("mean", names, res.mean))
    row.update(_flat_cov("cov", names, res.covariance))
    row.update(_flat("sd", names, np.sqrt(np.diag(res.covariance))))
    row["spread"] = float(np.trace(res.covariance))
    details["mean"], details["covariance"] = res.mean, res.covariance

    # Grid error estimate: the same box with half the cells per axis; |Q_h - Q_2h| bounds
    # Q_h's error whenever the observed order is at least 1.
    t0 = time.perf_counter()
    coarse_shape = tuple(max(3, n // 2) for n in res.grid.shape)
    coarse = stationary_density(sde, Grid(res.grid.lower, res.grid.upper, coarse_shape), scheme=res.scheme,
                                cross=case.grid.get("cross", "auto"), error_estimate=False)
    row["seconds_coarse"] = time.perf_counter() - t0
    row["grid_error_mean"] = float(np.abs(res.mean - coarse.mean).max())
    row["grid_error_cov"] = float(np.abs(res.covariance - coarse.covariance).max())

    # FDR residuals E[A f] on the grid density (zero at the exact invariant law).
    fdr = {}
    for name in identities_for(sde):
        try:
            r = evaluate_identity(name, sde, res)
            fdr[name] = {"difference": r.difference, "relative": r.relative, "lhs": r.lhs, "rhs": r.rhs}
        except Exception as exc:
            fdr[name] = {"unavailable": str(exc).splitlines()[0]}
    details["identities"] = fdr
    avail = [n for n in fdr if "difference" in fdr[n]]
    row["fdr_names"] = ";".join(avail)
    for k in (1, 2):
        n = next((n for n in avail if n.startswith(f"FDR{k}")), None)
        if n is not None:
            row[f"fdr{k}"] = float(fdr[n]["difference"])
            row[f"fdr{k}_relative"] = float(fdr[n]["relative"])

    try:
        from .exact import linear_gaussian_reference

        m_ex, c_ex, _ = linear_gaussian_reference(sde)
        row["exact_spread"] = float(np.trace(c_ex))
        row["exact_cov_error"] = float(np.abs(res.covariance - c_ex).max())
        details["exact"] = {"mean": m_ex, "covariance": c_ex}
    except Exception as exc:  # not Ornstein-Uhlenbeck: no closed form, say why
        details["exact"] = {"unavailable": str(exc).splitlines()[0]}

    status, reason = "ok", ""
    mc_opts = options.get("montecarlo")
    if mc_opts is not None:
        from .pipeline import _sample_density
        from .simulate import simulate_sde, simulate_training

        t0 = time.perf_counter()
        st = montecarlo_settings(case, seed=setting.seed(options["seed"]))
        st.update({k: v for k, v in mc_opts.items() if v is not None})
        rng = np.random.default_rng(st["seed"])
        init = _sample_density(res, st["chains"], rng)
        common = dict(chains=st["chains"], burn_in=st["burn_in"], duration=st["duration"], seed=st["seed"],
                      init=init, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mcs = {"sga": simulate_training(case.model, upd, case.eta, case.batch, case.batches, **common),
                   "sde": simulate_sde(sde, st["dt"], **common)}
        row["seconds_montecarlo"] = time.perf_counter() - t0
        details["montecarlo"] = {p: mc.to_dict() for p, mc in mcs.items()}
        for p, mc in mcs.items():
            row[f"mc_{p}_status"] = int(mc.status)
            if mc.success:
                row[f"mc_{p}_spread"] = float(np.trace(mc.covariance))
                row[f"mc_{p}_spread_stderr"] = _spread_stderr(mc)
        sga = mcs["sga"]
        if sga.success:
            row.update(_flat("mc_sga_mean", names, sga.mean))
            row.update(_flat_cov("mc_sga_cov", names, sga.covariance))
            if "covariance" in details.get("discrete", {}):
                ref = details["discrete"]
                z = np.concatenate([((sga.mean - ref["mean"]) / sga.stderr_mean).ravel(),
                                    ((sga.covariance - ref["covariance"]) / sga.stderr_covariance).ravel()])
                row["mc_sga_max_z"] = float(np.nanmax(np.abs(z)))
        elif sga.status == 1:
            row["training_invariant"] = False
            details.setdefault("training_reason", f"training chains diverged: {sga.message}")
        if not mcs["sde"].success:
            status, reason = "failed", f"SDE Monte Carlo: {mcs['sde'].message}"
    if status == "ok" and row["training_invariant"] is False:
        status, reason = "training-diverges", details.get("training_reason", "")
    row["status"], row["reason"] = status, reason[:300]


# ----------------------------------------------------------------------------- the sweep (client side)
@dataclass(frozen=True, repr=False)
class SweepResult:
    """A finished (or partly finished) sweep.

    Attributes
    ----------
    case : str
    out : Path
        ``settings/<id>.json`` per setting, ``sweep.csv`` (the table), ``sweep.json``, figures.
    table : list of dict
        One row per setting, in the canonical settings order (see :func:`sweep_settings`).
    columns : list of str
    computed, reused : int
        Settings computed in this call, and reused from an earlier run.
    seconds : float
        Wall time of this call.
    workers : int
        Dask worker threads used.
    figures : list of Path
    """

    case: str
    out: Path
    table: list
    columns: list
    computed: int
    reused: int
    seconds: float
    workers: int
    figures: list = field(default_factory=list)

    @property
    def counts(self) -> dict:
        c: dict = {}
        for r in self.table:
            c[r["status"]] = c.get(r["status"], 0) + 1
        return c

    @property
    def success(self) -> bool:
        """True when no setting failed (settings without an invariant measure are verdicts, not failures)."""
        return all(r["status"] in FINAL_STATUSES for r in self.table)

    def deterministic_table(self) -> list:
        """The table without wall-time columns: identical for any worker count and after a resume."""
        return [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIX)} for r in self.table]

    def digest(self) -> str:
        """SHA-256 of :meth:`deterministic_table` (exact float reprs)."""
        return hashlib.sha256(json.dumps(self.deterministic_table(), sort_keys=False).encode()).hexdigest()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        return (f"SweepResult({self.case}: {len(self.table)} settings ({counts}); computed {self.computed}, reused "
                f"{self.reused}; {self.seconds:.1f} s on {self.workers} worker(s); table {self.out / 'sweep.csv'})")


def _options_hash(options: dict) -> str:
    return hashlib.sha256(json.dumps({k: v for k, v in options.items() if k != "hash"}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def _load_record(path: Path, options_hash: str):
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("schema") != _SCHEMA or rec.get("options_hash") != options_hash:
        return None
    return rec


def _failed_record(setting: Setting, options: dict, reason: str) -> dict:
    row = {c: None for c in _columns(options["names"])}
    row.update(id=setting.id, update=setting.update, noise=setting.noise, eta=setting.eta, batch=setting.batch,
               eta_over_batch=setting.eta / setting.batch, lam=setting.lam,
               constants=";".join(f"{k}={v:g}" for k, v in setting.constants) or None, status="failed",
               reason=reason[:300] or None)
    return {"schema": _SCHEMA, "setting": setting.to_dict(), "options_hash": options["hash"], "row": row, "details": {}}


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else repr(v))
    return str(v)


def _write_table(path: Path, columns, rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in columns])
    atomic_write_bytes(path, buf.getvalue().encode())


def read_table(path) -> list[dict]:
    """Read ``sweep.csv`` back: numbers as floats/ints, empty cells as None."""
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            out = {}
            for k, v in r.items():
                if v == "":
                    out[k] = None
                elif v in ("true", "false"):
                    out[k] = v == "true"
                else:
                    try:
                        out[k] = int(v) if k == "batch" else float(v)
                    except ValueError:
                        out[k] = v
            rows.append(out)
    return rows


class _Progress:
    """Done / running / failed counts and a time-left estimate from this call's throughput."""

    def __init__(self, total, reused, slots, enabled, stream=None):
        self.total, self.reused, self.slots, self.enabled = total, reused, slots, enabled
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.t0 = time.perf_counter()

    def update(self, row=None):
        if row is not None:
            self.done += 1
            self.failed += row["status"] == "failed"
        if not self.enabled:
            return
        todo = self.total - self.reused
        left = todo - self.done
        running = min(self.slots, left)
        elapsed = time.perf_counter() - self.t0
        eta = f"~{elapsed / self.done * left:.0f} s left" if self.done else "time left: estimating"
        last = f"; last: {row['id']} -> {row['status']}" if row is not None else ""
        print(f"[sweep] {self.reused + self.done}/{self.total} done ({self.reused} reused, {self.failed} failed), "
              f"{running} running, {left - running} queued; {elapsed:.0f} s elapsed, {eta}{last}",
              file=self.stream, flush=True)


def _client_for(workers, scheduler):
    """-> (client, cluster or None, threads). A LocalCluster of single-threaded worker processes
    with BLAS/OpenMP pinned to one thread, or a Client on an existing scheduler."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        return client, None, max(1, sum(client.nthreads().values()))
    n = int(workers or os.cpu_count() or 1)
    one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, env=one,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster, n


def sweep(case, eta=None, batch=None, updates=None, noise=None, lam=None, constants=None, *, montecarlo=False,
          shape=None, seed: int = 0, workers: int | None = None, scheduler=None, out=None, progress: bool = True,
          figures: bool = True, solve_options: dict | None = None, retry_failed: bool = True) -> SweepResult:
    r"""Solve (and optionally simulate) every combination of the given settings, in parallel on Dask.

    Parameters
    ----------
    case : Case or str or path
        A :class:`~stationary.cases.Case` loaded from a file, or a case file / bundled name.
    eta, batch : sequence, optional
        Learning rates and batch sizes (default: the case's).
    updates : sequence of {"alt", "sml", "sml2"}, optional
    noise : sequence of {"paper", "shared-batch"}, optional
        ALT combines with ``"paper"`` only; other pairs are left out.
    lam : sequence of float, optional
        Regularisation strengths: the case's regularizer formula is multiplied by each.
    constants : dict of name -> sequence of float, optional
        Overrides of ``model.constants``; every combination is swept.
    montecarlo : bool or dict
        Also run long-run Monte Carlo of the training algorithm (``sga``) and of the SDE
        (``sde``); a dict overrides ``chains``, ``burn_in``, ``duration``, ``dt`` of the case's
        ``[montecarlo]`` settings. Seeds derive from ``seed`` and the setting.
    shape : sequence of int, optional
        Grid cells per axis (default: the case's); the grid error estimate re-solves with half.
    seed : int
        Sweep seed.
    workers : int, optional
        Worker processes of the in-process local cluster (default: all cores).
    scheduler : str or distributed.Client, optional
        Submit to an existing Dask cluster instead (``"tcp://host:8786"``).
    out : path, optional
        Results directory (default ``results/<case>/sweep``).
    progress : bool
        Print done / running / failed counts and a time-left estimate to stderr.
    figures : bool
        Write ``spread.png`` (spread against :math:`\eta/B`, with the stability edge).
    solve_options : dict, optional
        Passed to :func:`stationary.pipeline.solve_case` (``scheme``, ``method``, ``grow``).
    retry_failed : bool
        Recompute settings recorded as ``failed`` (default); final verdicts are always reused.

    Returns
    -------
    SweepResult
    """
    from .cases import load_case

    t_start = time.perf_counter()
    if not hasattr(case, "model"):
        case = load_case(case)
    if case.path is None:
        raise ValueError("sweep needs a case loaded from a file (workers rebuild it from the file's text)")
    source = {"path": str(Path(case.path).resolve()), "text": Path(case.path).read_text()}
    settings = sweep_settings(case, eta, batch, updates, noise, lam, constants)
    names = list(case.model.names)
    mc = None
    if montecarlo:
        mc = {} if montecarlo is True else {k: montecarlo.get(k) for k in ("chains", "burn_in", "duration", "dt")}
    options = {"names": names, "shape": None if shape is None else [int(s) for s in np.atleast_1d(shape)],
               "montecarlo": mc, "seed": int(seed), "solve": dict(solve_options or {}),
               "case_text": hashlib.sha256(source["text"].encode()).hexdigest()}
    options["hash"] = _options_hash(options)
    out = Path(out) if out is not None else Path("results") / case.name / "sweep"
    sdir = out / "settings"
    sdir.mkdir(parents=True, exist_ok=True)

    records, todo = {}, []
    for s in settings:
        rec = _load_record(sdir / f"{s.id}.json", options["hash"])
        keep = rec is not None and (rec["row"]["status"] in FINAL_STATUSES or not retry_failed)
        if keep:
            records[s.id] = rec
        else:
            todo.append(s)
    reused = len(records)
    threads = 0
    if todo:
        from dask.distributed import as_completed

        client, cluster, threads = _client_for(workers, scheduler)
        bar = _Progress(len(settings), reused, threads, progress)
        bar.update()
        try:
            futures = {}
            for s in todo:
                fut = client.submit(run_setting, source, s, options, key=f"stationary-sweep-{options['hash']}-{s.id}",
                                    pure=False)
                futures[fut] = s
            for fut in as_completed(futures):
                s = futures[fut]
                try:
                    rec = fut.result()
                except Exception as exc:  # lost worker, unpicklable error: still a per-setting failure
                    rec = _failed_record(s, options, f"{type(exc).__name__}: {exc}")
                atomic_write_json(sdir / f"{s.id}.json", rec)
                records[s.id] = json.loads((sdir / f"{s.id}.json").read_text())
                bar.update(rec["row"])
                fut.release()
        finally:
            if cluster is not None:
                client.close()
                cluster.close()
            elif not (hasattr(scheduler, "submit")):
                client.close()
    # Rows come from the files (JSON round trip) so that a fresh and a resumed sweep are alike.
    columns = _columns(names)
    table = [{c: records[s.id]["row"].get(c) for c in columns} for s in settings]
    _write_table(out / "sweep.csv", columns, table)
    atomic_write_json(out / "sweep.json", {"case": case.name, "options": options,
                                           "settings": [s.to_dict() | {"id": s.id} for s in settings]})
    figs = plot_sweep(table, out, names) if figures else []
    return SweepResult(case.name, out, table, columns, len(todo), reused, time.perf_counter() - t_start, threads, figs)


# ----------------------------------------------------------------------------- figures
def plot_sweep(table, out, names=None) -> list[Path]:
    r"""``spread.png``: spread :math:`\operatorname{tr}\,\mathrm{Cov}` against :math:`\eta/B` on log axes,
    one panel per update rule: the SDE's grid solution (lines), the training algorithm's Monte Carlo
    (points with 2-sigma bars) and its exact discrete moments where available (open circles),
    and the stability edge (the smallest :math:`\eta/B` without an invariant law, dotted line, x marks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    out = Path(out)
    updates = sorted({r["update"] for r in table}, key=lambda u: ("alt", "sml", "sml2").index(u) if u in ("alt", "sml", "sml2") else 9)
    fig, axes = plt.subplots(1, len(updates), figsize=(5.2 * len(updates), 4.2), squeeze=False)
    groups = sorted({(r["noise"], r["batch"], r["lam"] if r["lam"] is not None else -1.0, r["constants"] or "") for r in table})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, upd in zip(axes[0], updates):
        rows = [r for r in table if r["update"] == upd]
        ymin = min((r["spread"] for r in rows if r["spread"]), default=1.0)
        for gi, g in enumerate(groups):
            rs = sorted([r for r in rows if (r["noise"], r["batch"], r["lam"] if r["lam"] is not None else -1.0,
                                              r["constants"] or "") == g], key=lambda r: r["eta_over_batch"])
            if not rs:
                continue
            col = colours[gi % len(colours)]
            label = f"{g[0]}, B={g[1]}" + (f", lam={g[2]:g}" if g[2] >= 0 else "") + (f", {g[3]}" if g[3] else "")
            ok = [r for r in rs if r["spread"] is not None]
            ax.plot([r["eta_over_batch"] for r in ok], [r["spread"] for r in ok], "-", color=col, label=f"SDE (grid): {label}")
            # A diverging training run has no long-run spread: its Monte Carlo numbers are transients.
            mc = [r for r in rs if r["mc_sga_spread"] is not None and r["status"] == "ok"]
            if mc:
                ax.errorbar([r["eta_over_batch"] for r in mc], [r["mc_sga_spread"] for r in mc],
                            yerr=[2 * (r["mc_sga_spread_stderr"] or 0) for r in mc], fmt="s", ms=4, color=col,
                            label=f"training (Monte Carlo): {label}")
            dr = [r for r in rs if r["discrete_spread"] is not None]
            if dr:
                ax.plot([r["eta_over_batch"] for r in dr], [r["discrete_spread"] for r in dr], "o", mfc="none", color=col,
                        ms=7, label=f"training (exact): {label}")
            bad = [r for r in rs if r["status"] in ("no-invariant-measure", "training-diverges")]
            if bad:
                first = min(r["eta_over_batch"] for r in bad)
                below = [r["eta_over_batch"] for r in rs if r["eta_over_batch"] < first and r["status"] == "ok"]
                # The edge lies between the last stable and the first unstable setting.
                edge = math.sqrt(first * max(below)) if below else first
                ax.axvline(edge, color=col, ls=":", lw=1)
                ax.plot([r["eta_over_batch"] for r in bad], [ymin] * len(bad), "x", color=col, ms=8,
                        label=f"no invariant law ({'SDE' if bad[0]['status'] == 'no-invariant-measure' else 'training'}): {label}")
        xs = [r["eta_over_batch"] for r in rows]
        if xs and ymin > 0:
            x0 = min(xs)
            ax.plot([x0, max(xs)], [ymin, ymin * max(xs) / x0], "k--", lw=0.8, label="slope 1")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yscale("log")
        ax.set_xlabel(r"$\eta / B$")
        ax.set_ylabel(r"spread $\mathrm{tr}\,\mathrm{Cov}$")
        ax.set_title(upd.upper())
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "spread.png"
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return [path]
