"""Energy budgets: the cloud's per-task allocation, the RSU's split over vehicles, the dual price.

Pure functions over per-task arrays; the simulator keeps the state.
"""

from __future__ import annotations

import numpy as np

from iov_env.config import EnergyConfig
from iov_env.lazy import lazy_import

kernels = lazy_import("iov_env.sim.kernels")  # compiled loops: numba loads on first use, not with iov_env


def static_allocation_j(total_j: float, vehicles_per_task: np.ndarray) -> np.ndarray:
    """Split the global per-round budget over tasks in proportion to their vehicle counts."""
    counts = np.asarray(vehicles_per_task, dtype=float)
    if counts.sum() <= 0:
        return np.full(counts.shape, total_j / max(len(counts), 1))
    return total_j * counts / counts.sum()


def update_difficulty(difficulty: np.ndarray, task_accuracy: np.ndarray, smoothing: float) -> np.ndarray:
    """EMA of how far each task is from converged (1 - accuracy), smoothing ``xi`` on the old value."""
    gap = 1.0 - np.clip(np.asarray(task_accuracy, dtype=float), 0.0, 1.0)
    return smoothing * np.asarray(difficulty, dtype=float) + (1.0 - smoothing) * gap


def tri_feedback_allocation_j(
    allocated_j: np.ndarray,
    used_j: np.ndarray,
    difficulty: np.ndarray,
    cfg: EnergyConfig,
) -> np.ndarray:
    """Cloud re-allocation: keep what each task used, spread the unused budget by ``h^gamma_h * u``.

    The result sums to the same total as ``allocated_j`` and respects the floor and cap fractions
    (clipping is redistributed, not dropped, so the total is conserved exactly).
    """
    alloc = np.asarray(allocated_j, dtype=float)
    used = np.minimum(np.asarray(used_j, dtype=float), alloc)
    total = float(alloc.sum())
    utilisation = np.where(alloc > 0, used / np.maximum(alloc, 1e-12), 0.0)
    weight = np.maximum(np.asarray(difficulty, dtype=float), 1e-9) ** cfg.difficulty_exponent * np.maximum(
        utilisation, 1e-9
    )
    unused = total - float(used.sum())
    proposal = used + unused * weight / weight.sum()
    cap = max(cfg.budget_cap_fraction, 1.0 / len(alloc))  # a lower cap could not hold the whole budget
    return clip_and_conserve(proposal, total, cfg.budget_floor_fraction * total, cap * total)


def clip_and_conserve(values: np.ndarray, total: float, floor: float, cap: float) -> np.ndarray:
    """Project ``values`` onto ``{floor <= x <= cap, sum x = total}`` by water-filling the excess."""
    x = np.clip(np.asarray(values, dtype=float), floor, cap)
    for _ in range(len(x) + 1):
        gap = total - x.sum()
        if abs(gap) <= 1e-9 * abs(total):  # relative: a budget below 1 J is conserved as tightly
            break
        free = (x < cap - 1e-12) if gap > 0 else (x > floor + 1e-12)
        if not free.any():
            break
        x[free] += gap / free.sum()
        x = np.clip(x, floor, cap)
    return x


def split_over_vehicles_j(
    task_budget_j: np.ndarray,
    vehicle_task: np.ndarray,
    shard_size: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """Each task's budget shared by its active vehicles in proportion to data size (0 for inactive)."""
    return kernels.split_over_vehicles_j(np.asarray(task_budget_j, dtype=float), np.asarray(vehicle_task, dtype=np.intp),
                                         np.asarray(shard_size, dtype=float), np.asarray(active, dtype=bool))


def dual_price_update(price: np.ndarray, used_j: np.ndarray, budget_j: np.ndarray, step_size: float) -> np.ndarray:
    """Projected subgradient on the normalised violation: ``max(0, lam + mu (E_used - E_budget) / E_budget)``."""
    violation = (np.asarray(used_j, dtype=float) - budget_j) / np.maximum(budget_j, 1e-12)
    return np.maximum(0.0, np.asarray(price, dtype=float) + step_size * violation)
