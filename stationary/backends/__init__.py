"""Alternative assemblers behind :mod:`stationary.operator`, imported lazily.

``fipy``: FiPy's meshes and terms (d ≤ 3); see :mod:`stationary.backends.fipy`.  Importing this
package does not import FiPy.
"""
from __future__ import annotations

__all__ = ["BACKENDS"]

#: Backends accepted by :func:`stationary.solve.stationary_density`.
BACKENDS = ("native", "fipy")
