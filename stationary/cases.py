"""Case files (TOML, data only) -> validated settings and a :class:`~stationary.model.GAN`.

Every error names the file, the key and the cause, e.g.
``cases/x.toml: training.eta: must be a positive number, got -0.1``.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from .data import DataError
from .formula import FormulaError
from .model import GAN
from .operator import CROSS_STENCILS, SCHEMES
from .sde import NOISE_MODELS, UPDATES, gan_sde
from .solve import METHODS

__all__ = ["Case", "CaseError", "load_case", "bundled_cases", "CASES_DIR", "DEFAULT_CASE"]

CASES_DIR = Path(__file__).resolve().parent.parent / "cases"
DEFAULT_CASE = "lq-wgan"

_TOP = {"name", "description", "model", "data", "training", "grid", "montecarlo"}
_MODEL = {"theta", "omega", "generator", "discriminator", "loss", "regularizer", "constants"}
_TRAINING = {"update", "eta", "batch", "noise", "batches"}
_GRID = {"lower", "upper", "shape", "scheme", "method", "cross", "width"}
_MC = {"chains", "burn_in", "duration", "seed", "dt"}


class CaseError(ValueError):
    """An invalid case file; the message is one line naming file, key and cause."""


@dataclass(frozen=True)
class Case:
    """A validated case: the model plus training, grid and Monte Carlo settings."""

    name: str
    description: str
    path: Path | None
    model: GAN = field(repr=False)
    update: str = "alt"
    eta: float = 0.1
    batch: int = 4
    noise: str = "paper"
    batches: str = "shared"
    grid: dict = field(default_factory=dict)  # lower/upper/shape or auto (shape, width), scheme, method, cross
    montecarlo: dict = field(default_factory=dict)

    def sde(self):
        """The SDE of this case's training settings (:func:`stationary.sde.gan_sde`)."""
        return gan_sde(self.model, self.update, self.eta, self.batch, self.noise)

    def with_overrides(self, **kw) -> "Case":
        """A copy with training or grid settings replaced (``eta``, ``batch``, ``shape``, ...)."""
        grid = dict(self.grid)
        if kw.get("shape") is not None:
            grid["shape"] = kw.pop("shape")
        else:
            kw.pop("shape", None)
        kw = {k: v for k, v in kw.items() if v is not None}
        where = f"{self.path or self.name}"
        if "eta" in kw:
            _positive_number(kw["eta"], f"{where}: --eta")
        if "batch" in kw:
            _positive_int(kw["batch"], f"{where}: --batch")
        return replace(self, grid=grid, **kw)


def _type_name(v) -> str:
    return type(v).__name__


def _positive_number(v, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise CaseError(f"{where}: must be a positive number, got {v!r}")
    return float(v)


def _positive_int(v, where):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise CaseError(f"{where}: must be a positive integer, got {v!r}")
    return int(v)


def _check_keys(table, allowed, where):
    if not isinstance(table, dict):
        raise CaseError(f"{where}: expected a table, got {_type_name(table)}")
    unknown = set(table) - allowed
    if unknown:
        raise CaseError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed keys: {sorted(allowed)}")


def _choice(v, options, where):
    if v not in options:
        raise CaseError(f"{where}: must be one of {list(options)}, got {v!r}")
    return v


def load_case(path) -> Case:
    """Read and validate a case file.

    ``path`` may be a file path or the name of a bundled case (see :func:`bundled_cases`).
    """
    p = Path(path)
    if not p.suffix and not p.exists():
        p = CASES_DIR / f"{path}.toml"
    if not p.is_file():
        names = ", ".join(bundled_cases())
        raise CaseError(f"{path}: no such case file (bundled cases: {names})")
    src = str(p)
    try:
        with open(p, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise CaseError(f"{src}: not valid TOML: {exc}") from None
    _check_keys(raw, _TOP, src)
    for key in ("name", "model", "data", "training"):
        if key not in raw:
            raise CaseError(f"{src}: missing required key {key!r}")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise CaseError(f"{src}: name: must be a non-empty string, got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise CaseError(f"{src}: description: must be a string, got {_type_name(description)}")

    m = raw["model"]
    _check_keys(m, _MODEL, f"{src}: model")
    for key in ("theta", "omega", "generator", "discriminator"):
        if key not in m:
            raise CaseError(f"{src}: model.{key}: missing")
    for key in ("theta", "omega"):
        v = m[key]
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise CaseError(f"{src}: model.{key}: must be a list of names, got {m[key]!r}")
        m = {**m, key: v}
    for key in ("generator", "discriminator", "loss", "regularizer"):
        if key in m and not isinstance(m[key], str):
            raise CaseError(f"{src}: model.{key}: must be a formula string, got {_type_name(m[key])}")
    constants = m.get("constants", {})
    if not isinstance(constants, dict):
        raise CaseError(f"{src}: model.constants: must be a table of numbers")
    for k, v in constants.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CaseError(f"{src}: model.constants.{k}: must be a finite number, got {v!r}")

    data = raw["data"]
    _check_keys(data, {"z", "x"}, f"{src}: data")
    for key in ("z", "x"):
        if key not in data:
            raise CaseError(f"{src}: data.{key}: missing")

    t = raw["training"]
    _check_keys(t, _TRAINING, f"{src}: training")
    update = _choice(t.get("update", "alt"), UPDATES, f"{src}: training.update")
    eta = _positive_number(t.get("eta", 0.1), f"{src}: training.eta")
    batch = _positive_int(t.get("batch", 1), f"{src}: training.batch")
    noise = _choice(t.get("noise", "paper"), NOISE_MODELS, f"{src}: training.noise")
    batches = _choice(t.get("batches", "shared" if update != "alt" else "independent"), ("shared", "independent"), f"{src}: training.batches")
    if update == "alt" and noise != "paper":
        raise CaseError(f"{src}: training.noise: ALT uses independent batches; only 'paper' applies")

    g = raw.get("grid", "auto")
    if g == "auto":
        g = {}
    _check_keys(g, _GRID, f"{src}: grid")
    g = dict(g)
    if ("lower" in g) != ("upper" in g):
        raise CaseError(f"{src}: grid: give both lower and upper, or neither (automatic box)")
    for key in ("lower", "upper"):
        if key in g:
            v = g[key]
            if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise CaseError(f"{src}: grid.{key}: must be a list of finite numbers, got {v!r}")
    if "shape" in g:
        v = g["shape"]
        if isinstance(v, int):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 3 for x in v):
            raise CaseError(f"{src}: grid.shape: must be a list of integers >= 3, got {g['shape']!r}")
        g["shape"] = v
    if "scheme" in g:
        _choice(g["scheme"], sorted(SCHEMES), f"{src}: grid.scheme")
    if "method" in g:
        _choice(g["method"], METHODS, f"{src}: grid.method")
    if "cross" in g:
        _choice(g["cross"], CROSS_STENCILS, f"{src}: grid.cross")
    if "width" in g:
        _positive_number(g["width"], f"{src}: grid.width")

    mc = raw.get("montecarlo", {})
    _check_keys(mc, _MC, f"{src}: montecarlo")
    if "chains" in mc:
        _positive_int(mc["chains"], f"{src}: montecarlo.chains")
    for key in ("burn_in", "duration", "dt"):
        if key in mc:
            if key == "burn_in" and mc[key] == 0:
                continue
            _positive_number(mc[key], f"{src}: montecarlo.{key}")
    if "seed" in mc and (isinstance(mc["seed"], bool) or not isinstance(mc["seed"], int) or mc["seed"] < 0):
        raise CaseError(f"{src}: montecarlo.seed: must be a non-negative integer, got {mc['seed']!r}")

    try:
        model = GAN(
            m["theta"], m["omega"], m["generator"], m["discriminator"], m.get("loss", "wgan"), m.get("regularizer"),
            constants, z=data["z"], x=data["x"], name=name, where=f"{src}: model", base_dir=p.parent,
        )
    except (FormulaError, DataError) as exc:
        msg = str(exc).replace(f"{src}: data.", f"{src}: data.")
        raise CaseError(msg) from None
    n_params = len(m["theta"]) + len(m["omega"])
    for key, allowed in (("lower", (n_params,)), ("upper", (n_params,)), ("shape", (1, n_params))):
        if key in g and len(g[key]) not in allowed:
            raise CaseError(f"{src}: grid.{key}: needs {n_params} entries (one per parameter), got {len(g[key])}")
    return Case(name, description, p, model, update, eta, batch, noise, batches, g, dict(mc))


def bundled_cases() -> list[str]:
    """Names of the case files shipped in ``cases/``."""
    return sorted(p.stem for p in CASES_DIR.glob("*.toml"))
