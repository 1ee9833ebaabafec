"""The observation matrix's per-round columns, clipped to the Box and cast to float32, as one compiled loop.

Columns come from ``parallel.observation_layout`` (``at``, never literal offsets); the per-episode columns (task one-hot, compute, data
size) and the uplink column (a log, left to numpy so the numbers match it) are filled before the call.
Imported on first use, not by ``import iov_env`` (see ``iov_env/jit.py``).
"""

from __future__ import annotations

import math

import numpy as np

from iov_env.jit import compiled

# The per-round features this loop writes, in the order of ``observation_rows``'s ``at`` argument: the
# caller passes each one's column, taken from ``observation_layout`` (the single source of the layout).
ROUND_FEATURES = ("dwell_time", "energy_remaining", "dual_price", "budget_share", "last_accuracy", "last_latency",
                  "last_energy", "last_rank", "active", "round_progress")


@compiled
def observation_rows(
    cols: np.ndarray, at: np.ndarray, dwell_s: np.ndarray, round_s: float, energy_remaining_j: np.ndarray,
    vehicle_energy_j: float, dual_price: np.ndarray, vehicle_task: np.ndarray, budget_j: np.ndarray,
    budget_ref_j: float, last_accuracy: np.ndarray, last_latency_s: np.ndarray, last_energy_j: np.ndarray,
    last_rank_index: np.ndarray, rank_denominator: int, active: np.ndarray, round_progress: float,
    low: np.ndarray, high: np.ndarray,
) -> tuple[np.ndarray, bool]:
    """Fill the per-round columns of ``cols`` (N, D) in place; return them clipped to [low, high] as float32,
    and whether every value was finite before clipping.

    ``at[j]`` is the column of ``ROUND_FEATURES[j]``.
    """
    n, d = cols.shape
    out = np.empty((n, d), dtype=np.float32)
    finite = True
    for i in range(n):
        cols[i, at[0]] = dwell_s[i] / round_s
        cols[i, at[1]] = energy_remaining_j[i] / vehicle_energy_j
        cols[i, at[2]] = dual_price[vehicle_task[i]]
        cols[i, at[3]] = budget_j[i] / budget_ref_j
        cols[i, at[4]] = last_accuracy[i]
        cols[i, at[5]] = last_latency_s[i] / round_s
        cols[i, at[6]] = last_energy_j[i] / budget_ref_j
        cols[i, at[7]] = last_rank_index[i] / rank_denominator
        cols[i, at[8]] = 1.0 if active[i] else 0.0
        cols[i, at[9]] = round_progress
        for j in range(d):
            v = cols[i, j]
            if not math.isfinite(v):
                finite = False
            out[i, j] = min(max(v, float(low[j])), float(high[j]))
    return out, finite
