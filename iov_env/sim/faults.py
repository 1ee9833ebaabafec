"""Mobility-aware fault tolerance for vehicles predicted to leave coverage before the round ends.

Three options with the paper's costs (accuracies in percentage points):
early upload ``C0 = gamma_f max(0, A* - A)``; migration to the nearest in-coverage vehicle of the
same task ``C1 = alpha_f tau_m + beta_f E_m``; abandonment ``C2 = beta_f E_used + gamma_f A*``.
The cheapest feasible option is chosen. An option the vehicle cannot finish before it leaves is
infeasible: early upload needs time to download and upload, migration to download and hand over.
Without the paper's costs abandonment could never win (C2 >= C0 whenever A >= 0); it is what remains
when neither finishes in time. Without the mechanism a leaving vehicle always uploads early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iov_env.lazy import lazy_import

kernels = lazy_import("iov_env.sim.kernels")  # compiled loops: numba loads on first use, not with iov_env

NONE, EARLY_UPLOAD, MIGRATION, ABANDON = 0, 1, 2, 3
ALL_PAIRS_LIMIT = 20_000  # leaving x candidate pairs above which the search goes group by group
GROUP_PAIRS_LIMIT = 4_000_000  # pairs in one group above which a k-d tree replaces the exact all-pairs scan
FAULT_NAMES = {NONE: None, EARLY_UPLOAD: "early_upload", MIGRATION: "migration", ABANDON: "abandon"}


@dataclass(frozen=True)
class FaultDecision:
    """Per-vehicle outcome of the fault-tolerance choice."""

    option: np.ndarray  # (N,) int: NONE / EARLY_UPLOAD / MIGRATION / ABANDON
    cost: np.ndarray  # (N,) float: cost of the chosen option (0 where NONE)
    costs: np.ndarray  # (N, 3) float: C0, C1, C2 (inf where infeasible or not leaving)
    migrate_to: np.ndarray  # (N,) int: receiving vehicle (-1 if none)
    migration_latency_s: np.ndarray  # (N,) float
    migration_energy_j: np.ndarray  # (N,) float
    any_leaving: bool = True  # False lets the simulator skip the partial-training arithmetic

    @classmethod
    def nobody_leaving(cls, n: int) -> FaultDecision:
        """What ``decide`` gives when no vehicle leaves, without computing any option's cost."""
        option_costs, migrate_to = np.empty((n, 3)), np.empty(n, dtype=np.intp)
        option_costs.fill(np.inf)  # np.full's Python wrapper costs more than the fill, once per round
        migrate_to.fill(-1)
        return cls(option=np.zeros(n, dtype=np.intp), cost=np.zeros(n), costs=option_costs, migrate_to=migrate_to,
                   migration_latency_s=np.zeros(n), migration_energy_j=np.zeros(n), any_leaving=False)


def nearest_peer(
    positions_m: np.ndarray, group: np.ndarray, candidate: np.ndarray, leaving: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each leaving vehicle, the nearest candidate in the same group and its distance (-1, inf if none).

    A group is a (task, RSU) pair: the model state can only move to a vehicle that trains the same
    task under the same aggregator. Looping over groups, not vehicles, keeps the cost near-linear in N.
    """
    n = len(group)
    peer = np.full(n, -1)
    dist = np.full(n, np.inf)
    candidate = candidate & ~leaving
    src_all, dst_all = np.flatnonzero(leaving), np.flatnonzero(candidate)
    if len(src_all) == 0 or len(dst_all) == 0:
        return peer, dist
    if len(src_all) * len(dst_all) <= ALL_PAIRS_LIMIT:  # small fleets: one pass over all pairs is cheapest
        kernels.nearest_in_group(np.asarray(positions_m, dtype=float), np.asarray(group), src_all, dst_all, peer, dist)
        return peer, dist
    for g in np.unique(group[leaving]):
        in_group = group == g
        src = np.flatnonzero(leaving & in_group)
        dst = np.flatnonzero(candidate & in_group)
        if len(dst) == 0:
            continue
        if len(src) * len(dst) > GROUP_PAIRS_LIMIT:
            # tens of thousands on each side: an all-pairs matrix would take GiBs and seconds per round
            from scipy.spatial import cKDTree

            dd, j = cKDTree(positions_m[dst]).query(positions_m[src])
            peer[src] = dst[j]
            dist[src] = dd
            continue
        d = np.linalg.norm(positions_m[src, None, :] - positions_m[None, dst, :], axis=-1)
        j = np.argmin(d, axis=1)
        peer[src] = dst[j]
        dist[src] = d[np.arange(len(src)), j]
    return peer, dist


def choose_fault_options(
    leaving: np.ndarray,
    accuracy_pct: np.ndarray,
    best_accuracy_pct: np.ndarray,
    energy_used_j: np.ndarray,
    migration_latency_s: np.ndarray,
    migration_energy_j: np.ndarray,
    latency_weight: float,
    energy_weight: float,
    accuracy_weight: float,
    enabled: bool,
    early_upload_feasible: np.ndarray | None = None,
) -> np.ndarray:
    """The (N, 3) cost matrix [C0, C1, C2]; inf where the vehicle is not leaving or the option is infeasible."""
    c0 = accuracy_weight * np.maximum(0.0, best_accuracy_pct - accuracy_pct)
    with np.errstate(invalid="ignore"):  # a zero weight times an infeasible (inf) migration: inf below
        c1 = latency_weight * migration_latency_s + energy_weight * migration_energy_j
    c2 = energy_weight * energy_used_j + accuracy_weight * best_accuracy_pct
    costs = np.stack([c0, c1, c2], axis=1).astype(float)
    costs[~np.isfinite(costs)] = np.inf
    if early_upload_feasible is not None:
        costs[:, 0] = np.where(early_upload_feasible, costs[:, 0], np.inf)
    if not enabled:
        costs[:, 1:] = np.inf
    costs[~leaving] = np.inf
    return costs


def decide(
    leaving: np.ndarray,
    accuracy_pct: np.ndarray,
    best_accuracy_pct: np.ndarray,
    energy_used_j: np.ndarray,
    migrate_to: np.ndarray,
    migration_latency_s: np.ndarray,
    migration_energy_j: np.ndarray,
    latency_weight: float,
    energy_weight: float,
    accuracy_weight: float,
    enabled: bool,
    early_upload_feasible: np.ndarray | None = None,
) -> FaultDecision:
    """Pick the cheapest feasible option for each leaving vehicle (early upload when the mechanism is off)."""
    costs = choose_fault_options(
        leaving, accuracy_pct, best_accuracy_pct, energy_used_j, migration_latency_s, migration_energy_j,
        latency_weight, energy_weight, accuracy_weight, enabled,
        None if not enabled else early_upload_feasible,
    )
    choice = np.argmin(costs, axis=1) + 1
    option = np.where(leaving, choice, NONE)
    cost = np.where(leaving, costs[np.arange(len(option)), np.maximum(choice - 1, 0)], 0.0)
    return FaultDecision(
        option=option,
        cost=cost,
        costs=costs,
        migrate_to=np.where(option == MIGRATION, migrate_to, -1),
        migration_latency_s=np.where(option == MIGRATION, migration_latency_s, 0.0),
        migration_energy_j=np.where(option == MIGRATION, migration_energy_j, 0.0),
    )
