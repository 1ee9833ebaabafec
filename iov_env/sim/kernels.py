"""Compiled per-vehicle loops for the fast fidelity's hot path.

A round at N = 100 is a few hundred numpy calls on 100-element arrays, each costing more in dispatch than
in arithmetic. The loops here do the same elementwise arithmetic, in the same order, once per vehicle,
compiled by numba (cached on disk after the first run). Random draws stay with numpy's generators, so a
seed gives the same stream whichever way the arithmetic runs.

Imported on the first step, not by ``import iov_env`` (see ``iov_env/jit.py``).
"""

from __future__ import annotations

import math

import numpy as np

from iov_env.jit import compiled
from iov_env.sim import costs


@compiled
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


_dynamic_energy_j = compiled(costs.dynamic_energy_j)  # the cost model's own formula, compiled for scalars


@compiled
def compute_time_s_and_energy_j(
    tokens: float, flops_per_token: float, flops_per_cycle: float, cpu_freq_hz: float, kappa_j_per_cycle_hz2: float,
) -> tuple[float, float]:
    """Local training's compute latency ``cycles / f`` and energy (``costs.dynamic_energy_j``)."""
    cycles = tokens * flops_per_token / flops_per_cycle
    return cycles / cpu_freq_hz, _dynamic_energy_j(cycles, cpu_freq_hz, kappa_j_per_cycle_hz2)


@compiled
def round_tables(
    candidate: np.ndarray, uplink_bps: np.ndarray, downlink_bps: np.ndarray, dwell_s: np.ndarray,
    tokens: np.ndarray, cpu_freq_hz: np.ndarray, memory_capacity_mb: np.ndarray, energy_remaining_j: np.ndarray,
    payload_bits: np.ndarray, flops_per_token: np.ndarray, memory_mb: np.ndarray,
    flops_per_cycle: float, kappa_j_per_cycle_hz2: float, rsu_tx_power_w: float, vehicle_tx_power_w: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A round's (N, R) cost tables at every rank, the feasibility mask and who can take part.

    Per vehicle i and rank j: download and upload ``bits_j / rate_i`` (inf for a non-candidate), compute time
    and energy from ``tokens_i * flops_per_token_j``, energy ``P_rsu t_dn + E_cmp + P_veh t_up``. A vehicle
    is active if a candidate whose smallest rank fits its memory and energy; rank j is allowed if it fits
    memory, energy and dwell time, and the smallest rank always is for an active vehicle (faults handle
    departures), the only one for an inactive one. Returns (latency, energy, download, upload, compute, mask,
    active), with non-finite latency, energy, download and upload set to 0 (kept out of the observations).
    """
    n, r = len(candidate), len(payload_bits)
    latency = np.empty((n, r))
    energy = np.empty((n, r))
    download = np.empty((n, r))
    upload = np.empty((n, r))
    compute = np.empty((n, r))
    mask = np.empty((n, r), dtype=np.bool_)
    active = np.empty(n, dtype=np.bool_)
    for i in range(n):
        for j in range(r):
            if candidate[i]:
                t_dn = payload_bits[j] / max(downlink_bps[i], 1e-300)
                t_up = payload_bits[j] / max(uplink_bps[i], 1e-300)
            else:
                t_dn = t_up = math.inf
            t_cmp, e_cmp = compute_time_s_and_energy_j(
                tokens[i], flops_per_token[j], flops_per_cycle, cpu_freq_hz[i], kappa_j_per_cycle_hz2)
            e = rsu_tx_power_w * t_dn + e_cmp + vehicle_tx_power_w * t_up
            lat = t_dn + t_cmp + t_up
            fits = memory_mb[j] <= memory_capacity_mb[i] and e <= energy_remaining_j[i]
            if j == 0:
                active[i] = candidate[i] and fits
            mask[i, j] = fits and lat <= dwell_s[i]
            latency[i, j] = lat if math.isfinite(lat) else 0.0
            energy[i, j] = e if math.isfinite(e) else 0.0
            download[i, j] = t_dn if math.isfinite(t_dn) else 0.0
            upload[i, j] = t_up if math.isfinite(t_up) else 0.0
            compute[i, j] = t_cmp
        if active[i]:
            mask[i, 0] = True
        else:
            mask[i, :] = False
            mask[i, 0] = True
    return latency, energy, download, upload, compute, mask, active


@compiled
def round_costs(
    active: np.ndarray, vehicle_task: np.ndarray, num_tasks: int, executed: np.ndarray, tokens: np.ndarray,
    download_s: np.ndarray, upload_s: np.ndarray, sends: np.ndarray, migration_latency_s: np.ndarray,
    migration_energy_j: np.ndarray, planned_energy_j: np.ndarray, fault_handled: np.ndarray,
    flops_per_token: np.ndarray, cpu_freq_hz: np.ndarray, flops_per_cycle: float, kappa_j_per_cycle_hz2: float,
    rsu_tx_power_w: float, vehicle_tx_power_w: float, aggregation_latency_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the round cost, from the tokens really processed: per vehicle and per task.

    Latency ``t_dn + t_cmp + t_up (if it sends) + migration``, energy likewise with powers, 0 for inactive
    vehicles; the energy a fault-handling option saved against the plan. Per task: energy summed and latency
    of the slowest participant plus aggregation (synchronous rounds; 0 without participants). Returns
    (latency, energy, saved, task_energy, task_latency).
    """
    n = len(active)
    latency = np.zeros(n)
    energy = np.zeros(n)
    saved = np.zeros(n)
    task_energy = np.zeros(num_tasks)
    task_latency = np.zeros(num_tasks)
    participants = np.zeros(num_tasks, dtype=np.int64)
    for i in range(n):
        t = vehicle_task[i]
        if active[i]:
            t_cmp, e_cmp = compute_time_s_and_energy_j(
                tokens[i], flops_per_token[executed[i]], flops_per_cycle, cpu_freq_hz[i], kappa_j_per_cycle_hz2)
            t_up = upload_s[i] if sends[i] else 0.0
            e_up = vehicle_tx_power_w * upload_s[i] if sends[i] else 0.0
            latency[i] = download_s[i] + t_cmp + t_up + migration_latency_s[i]
            energy[i] = rsu_tx_power_w * download_s[i] + e_cmp + e_up + migration_energy_j[i]
            if fault_handled[i]:
                saved[i] = max(planned_energy_j[i] - energy[i], 0.0)
            participants[t] += 1
        task_energy[t] += energy[i]
        if latency[i] > task_latency[t]:
            task_latency[t] = latency[i]
    for t in range(num_tasks):
        task_latency[t] = task_latency[t] + aggregation_latency_s if participants[t] > 0 else 0.0
    return latency, energy, saved, task_energy, task_latency


@compiled
def _distance_m(a_m: np.ndarray, b_m: np.ndarray) -> float:
    """Euclidean distance of two points (2,): ``np.linalg.norm``'s arithmetic, sqrt(dx^2 + dy^2)."""
    dx, dy = a_m[0] - b_m[0], a_m[1] - b_m[1]
    return math.sqrt(dx * dx + dy * dy)


@compiled
def nearest_within(positions_m: np.ndarray, centres_m: np.ndarray, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the nearest centre (first on ties; -1 if farther than ``radius_m``) and the distance to it."""
    n, m = len(positions_m), len(centres_m)
    idx = np.empty(n, dtype=np.intp)
    dist = np.empty(n)
    for i in range(n):
        best, best_j = math.inf, 0
        for j in range(m):
            d = _distance_m(positions_m[i], centres_m[j])
            if d < best:
                best, best_j = d, j
        idx[i] = best_j if best <= radius_m else -1
        dist[i] = best
    return idx, dist


@compiled
def straight_dwell_s(
    positions_m: np.ndarray, velocity_mps: np.ndarray, centres_m: np.ndarray, radius_m: float, max_dwell_s: float,
) -> np.ndarray:
    """Per vehicle, when a straight constant-velocity path leaves the disc of ``radius_m`` around its centre.

    Solves ``|rel + v t| = radius`` for the later root: ``t = (-b + sqrt(b^2 - a c)) / a`` with ``a = v.v``,
    ``b = rel.v``, ``c = rel.rel - radius^2``; 0 if already outside, ``max_dwell_s`` if parked.
    """
    n = len(positions_m)
    out = np.empty(n)
    for i in range(n):
        rx = positions_m[i, 0] - centres_m[i, 0]
        ry = positions_m[i, 1] - centres_m[i, 1]
        vx, vy = velocity_mps[i, 0], velocity_mps[i, 1]
        a = vx * vx + vy * vy
        b = rx * vx + ry * vy
        c = (rx * rx + ry * ry) - radius_m**2
        if c > 0:
            t = 0.0
        elif a > 1e-12:
            t = (-b + math.sqrt(max(b * b - a * c, 0.0))) / a
        else:
            t = max_dwell_s
        out[i] = min(max(t, 0.0), max_dwell_s)
    return out


@compiled
def largest_feasible_at_or_below(mask: np.ndarray, requested: np.ndarray) -> np.ndarray:
    """Per row, ``requested`` if feasible, else the largest feasible index below it, else the smallest feasible."""
    n, r = mask.shape
    out = np.empty(n, dtype=np.intp)
    for i in range(n):
        pick = -1
        for j in range(min(requested[i], r - 1), -1, -1):
            if mask[i, j]:
                pick = j
                break
        if pick < 0:
            pick = 0  # argmax of an all-False row, as numpy gives it
            for j in range(r):
                if mask[i, j]:
                    pick = j
                    break
        out[i] = pick
    return out


@compiled
def shared_bandwidth_hz(vehicle_rsu: np.ndarray, num_rsus: int, rsu_bandwidth_hz: float) -> np.ndarray:
    """Equal share of each RSU's bandwidth among the vehicles attached to it (0 where ``vehicle_rsu`` is -1)."""
    counts = np.zeros(num_rsus, dtype=np.int64)
    for rsu in vehicle_rsu:
        if rsu >= 0:
            counts[rsu] += 1
    share = np.zeros(len(vehicle_rsu))
    for i in range(len(vehicle_rsu)):
        if vehicle_rsu[i] >= 0:
            share[i] = rsu_bandwidth_hz / counts[vehicle_rsu[i]]
    return share


@compiled
def split_over_vehicles_j(
    task_budget_j: np.ndarray, vehicle_task: np.ndarray, shard_size: np.ndarray, active: np.ndarray,
) -> np.ndarray:
    """Each task's budget shared by its active vehicles in proportion to data size (0 for inactive)."""
    per_task = np.zeros(len(task_budget_j))
    for i in range(len(vehicle_task)):
        per_task[vehicle_task[i]] += shard_size[i] if active[i] else 0.0
    out = np.zeros(len(vehicle_task))
    for i in range(len(vehicle_task)):
        t = vehicle_task[i]
        if per_task[t] > 0:
            out[i] = task_budget_j[t] * (shard_size[i] if active[i] else 0.0) / max(per_task[t], 1e-12)
    return out


@compiled
def nearest_in_group(
    positions_m: np.ndarray, group: np.ndarray, sources: np.ndarray, targets: np.ndarray,
    peer: np.ndarray, dist_m: np.ndarray,
) -> None:
    """For each vehicle in ``sources``, the nearest of ``targets`` in its group (first on ties), into ``peer``
    and ``dist_m`` (left as they are where its group has no target)."""
    for s in sources:
        best, best_t = math.inf, -1
        for t in targets:
            if group[t] != group[s]:
                continue
            d = _distance_m(positions_m[s], positions_m[t])
            if d < best:
                best, best_t = d, t
        if best_t >= 0:
            peer[s] = best_t
            dist_m[s] = best
