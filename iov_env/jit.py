"""numba's ``njit`` for the fast fidelity's per-vehicle loops, or plain Python where numba is missing.

Modules that use it (``sim/kernels.py``, ``learning/surrogate_loops.py``, ``envs/kernels.py``) are imported on
the first step, not by ``import iov_env``: numba takes a third of a second to load.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

try:
    from numba import njit as _njit
except ImportError:  # pragma: no cover - numba is a dependency; this keeps exotic platforms working
    warnings.warn("numba is not installed: iov_env's fast fidelity runs its per-vehicle loops as plain Python "
                  "(same numbers, far slower); pip install numba", RuntimeWarning, stacklevel=2)
    _njit = None


def compiled(fn: F) -> F:
    """``numba.njit(cache=True)`` when numba is importable (compiled once, then loaded from disk), else ``fn``.

    numpy's error model: a division by zero gives inf or nan as in the numpy code, never ZeroDivisionError.
    """
    return fn if _njit is None else _njit(cache=True, nogil=True, error_model="numpy")(fn)
