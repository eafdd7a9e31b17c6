"""Finite data sets for z (latent) and x (real): generated with a seed, inline, or from CSV."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["DataError", "load_data", "DISTRIBUTIONS"]


class DataError(ValueError):
    """A data specification is invalid (message names where and why)."""


def _normal(rng, size, loc=0.0, scale=1.0):
    return rng.normal(loc, scale, size)


def _uniform(rng, size, low=0.0, high=1.0):
    return rng.uniform(low, high, size)


def _clusters(rng, size, centers=(-1.0, 1.0), scale=0.1):
    """Equal-weight mixture of normals at ``centers`` (balanced: exactly size/k per cluster)."""
    centers = np.asarray(centers, dtype=float)
    labels = np.arange(size) % centers.size
    return centers[labels] + rng.normal(0.0, scale, size)


#: Named generators: ``name -> (function, allowed parameters)``.
DISTRIBUTIONS = {
    "normal": (_normal, {"loc", "scale"}),
    "uniform": (_uniform, {"low", "high"}),
    "clusters": (_clusters, {"centers", "scale"}),
}


def load_data(spec, *, where: str = "data", base_dir: str | Path = ".") -> np.ndarray:
    """Turn a data specification into a finite 1-d float array.

    Parameters
    ----------
    spec : array_like or mapping
        An array of values, or a mapping with exactly one of
        ``values = [...]``, ``file = "path.csv"`` (optional ``column``, an index or a
        header name), or ``distribution = NAME`` with ``size``, ``seed`` and the
        distribution's parameters (see :data:`DISTRIBUTIONS`).
    where : str
        Context for error messages (file and key).
    base_dir : path
        Directory that relative CSV paths are resolved against.
    """
    if not isinstance(spec, Mapping):
        values = np.asarray(spec, dtype=float).ravel()
        return _check(values, where)
    keys = set(spec)
    sources = keys & {"values", "file", "distribution"}
    if len(sources) != 1:
        raise DataError(f"{where}: give exactly one of 'values', 'file', 'distribution' (got {sorted(keys)})")
    if "values" in spec:
        _no_extra(keys, {"values"}, where)
        try:
            values = np.asarray(spec["values"], dtype=float).ravel()
        except (TypeError, ValueError):
            raise DataError(f"{where}.values: expected a list of numbers") from None
        return _check(values, where + ".values")
    if "file" in spec:
        _no_extra(keys, {"file", "column"}, where)
        path = Path(base_dir) / str(spec["file"])
        if not path.is_file():
            raise DataError(f"{where}.file: data file {str(path)!r} not found")
        return _check(_read_csv(path, spec.get("column", 0), where), f"{where}.file ({path})")
    name = spec["distribution"]
    if name not in DISTRIBUTIONS:
        raise DataError(f"{where}.distribution: unknown distribution {name!r}; choose from {sorted(DISTRIBUTIONS)}")
    func, params = DISTRIBUTIONS[name]
    _no_extra(keys, {"distribution", "size", "seed"} | params, where)
    size = spec.get("size", 256)
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise DataError(f"{where}.size: expected an integer >= 2, got {size!r}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"{where}.seed: expected a non-negative integer, got {seed!r}")
    kwargs = {k: spec[k] for k in params if k in spec}
    for k, v in kwargs.items():
        arr = np.asarray(v, dtype=float) if not isinstance(v, str) else None
        if arr is None or not np.all(np.isfinite(arr)):
            raise DataError(f"{where}.{k}: expected finite number(s), got {v!r}")
    rng = np.random.default_rng(seed)
    return _check(np.asarray(func(rng, size, **kwargs), dtype=float), where)


def _no_extra(keys, allowed, where):
    extra = keys - allowed
    if extra:
        raise DataError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")


def _read_csv(path: Path, column, where) -> np.ndarray:
    import csv

    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
    if not rows:
        raise DataError(f"{where}.file: {path} is empty")
    header = None
    try:
        float(rows[0][0] if isinstance(column, str) else rows[0][int(column)])
    except (ValueError, IndexError):
        header, rows = rows[0], rows[1:]
    if isinstance(column, str):
        if header is None or column not in header:
            raise DataError(f"{where}.column: column {column!r} not in the header of {path}")
        column = header.index(column)
    try:
        return np.array([float(r[column]) for r in rows])
    except (ValueError, IndexError) as exc:
        raise DataError(f"{where}.file: cannot read column {column} of {path} as numbers ({exc})") from None


def _check(values: np.ndarray, where: str) -> np.ndarray:
    if values.size < 1:
        raise DataError(f"{where}: empty data")
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataError(f"{where}: non-finite value {values[bad]} at position {bad}")
    return values
