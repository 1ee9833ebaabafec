"""Compiled per-vehicle loops for the fast fidelity's hot path.

A round at N = 100 is a few hundred numpy calls on 100-element arrays, each costing more in dispatch than
in arithmetic. The loops here do the same elementwise arithmetic, in the same order, once per vehicle,
compiled by numba (cached on disk after the first run). Random draws stay with numpy's generators, so a
seed gives the same stream whichever way the arithmetic runs.

This module is imported on the first step, not by ``import iov_env``: numba takes a third of a second to
load. Without numba the same functions run as plain Python: identical numbers, many times slower.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    from numba import njit as _njit
except ImportError:  # pragma: no cover - numba is a dependency; this keeps exotic platforms working
    warnings.warn("numba is not installed: iov_env's fast fidelity runs its per-vehicle loops as plain Python "
                  "(same numbers, far slower); pip install numba", RuntimeWarning, stacklevel=2)
    _njit = None


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``numba.njit(cache=True)`` when numba is importable, else the function itself."""
    return fn if _njit is None else _njit(cache=True, nogil=True)(fn)


@_compiled
def grid_substeps(
    positions_m: np.ndarray, heading: np.ndarray, dist_m: np.ndarray, turn_drawn: np.ndarray, left: np.ndarray,
    spacing_m: float, width_m: float, height_m: float,
) -> None:
    """Grid mobility's sub-steps, in place: drive along the heading, turn where drawn, reflect at the edges.

    ``positions_m`` (N, 2) and ``heading`` (N,) (0..3 = E, N, W, S) are updated; ``dist_m`` (N,) is the
    distance of one sub-step; ``turn_drawn`` and ``left`` (S, N) are the per-sub-step draws. Vehicles do not
    interact, so each runs its S sub-steps in turn.
    """
    n_sub, n = turn_drawn.shape
    size = (width_m, height_m)
    for i in range(n):
        h = heading[i]
        for s in range(n_sub):
            axis = h & 1
            sign = 1.0 if h < 2 else -1.0
            coord = positions_m[i, axis]
            new = coord + sign * dist_m[i]
            g = coord / spacing_m  # the next intersection in the driving direction
            nxt_m = (math.floor(g + 1e-9) + 1.0 if sign > 0 else math.ceil(g - 1e-9) - 1.0) * spacing_m
            if turn_drawn[s, i] and (new - nxt_m) * sign >= 0:
                h = (h + (1 if left[s, i] else 3)) & 3
                positions_m[i, axis] = nxt_m
                # the overshoot past the intersection continues along the new heading
                positions_m[i, h & 1] += (1.0 if h < 2 else -1.0) * abs(coord + sign * dist_m[i] - nxt_m)
            else:
                positions_m[i, axis] = new
            hit = False  # mirror back into the map; a vehicle that hit an edge turns around
            for c in range(2):
                p = positions_m[i, c]
                if p > size[c]:
                    hit, p = True, 2 * size[c] - p
                elif p < 0:
                    hit, p = True, -p
                positions_m[i, c] = p
            if hit:
                for c in range(2):
                    positions_m[i, c] = min(max(positions_m[i, c], 0.0), size[c])
                h = (h + 2) & 3
        heading[i] = h
