"""The surrogate's round as compiled per-vehicle loops (see ``iov_env/jit.py``): one formula for the curve.

``surrogate.py`` holds the model and its documentation; this module holds the arithmetic that runs every
round, in the order the formulas are written there. Imported on first use, not by ``import iov_env``.
"""

from __future__ import annotations

import math

import numpy as np

from iov_env.jit import compiled
from iov_env.learning.surrogate import CURVE_COLUMNS, rank_speed_table

(FLOOR, CEILING, RANK_GAP, RANK_HALF, NONIID_PENALTY, SAMPLE_SCALE, STALE_PENALTY, SPEED_RANK_HALF, ONSET,
 ONSET_STEEP, SPEED_EXP, FED_EXP) = (
    CURVE_COLUMNS.index(name) for name in (
        "floor", "ceiling", "rank_gap", "rank_half", "noniid_penalty", "sample_scale", "stale_penalty",
        "speed_rank_half", "onset_samples", "onset_steepness", "speed_exponent", "federation_exponent",
    )
)

_rank_speed = compiled(rank_speed_table)  # the model's own formula, compiled for scalars


@compiled
def curve_point(
    floor: float, ceiling: float, rank_gap: float, rank_half: float, noniid_penalty: float, sample_scale: float,
    rank: float, samples: float, hetero: float, onset_samples: float, onset_steepness: float,
) -> float:
    """``floor + (top - floor)(1 - exp(-samples / sample_scale)) gate``, ``top`` the rank's ceiling net of skew."""
    top = ceiling - rank_gap * rank_half / (rank_half + rank) - noniid_penalty * hetero
    if top < floor:
        top = floor
    progress = 1.0 - math.exp(-samples / sample_scale)
    if onset_samples > 0.0:  # without an onset (every form-1 file) the curve stays bit for bit what it was
        progress *= 1.0 - math.exp(-((samples / onset_samples) ** onset_steepness))
    return floor + (top - floor) * progress


@compiled
def curve_points(
    floor: np.ndarray, ceiling: np.ndarray, rank_gap: np.ndarray, rank_half: np.ndarray, noniid_penalty: np.ndarray,
    sample_scale: np.ndarray, rank: np.ndarray, samples: np.ndarray, hetero: float, onset_samples: np.ndarray,
    onset_steepness: np.ndarray, out: np.ndarray,
) -> None:
    """``curve_point`` over flat arrays of equal length, into ``out``."""
    for i in range(len(out)):
        out[i] = curve_point(floor[i], ceiling[i], rank_gap[i], rank_half[i], noniid_penalty[i], sample_scale[i],
                             rank[i], samples[i], hetero, onset_samples[i], onset_steepness[i])


@compiled
def surrogate_round(
    task: np.ndarray, rank: np.ndarray, training: np.ndarray, uploads: np.ndarray, train_fraction: np.ndarray,
    layer_share: np.ndarray, aggregation_efficiency: np.ndarray, samples: np.ndarray, global_rank: np.ndarray,
    staleness: np.ndarray, vehicle_accuracy: np.ndarray, task_noise: np.ndarray, vehicle_noise: np.ndarray,
    task_curve: np.ndarray, vehicle_curve: np.ndarray, vehicle_samples: np.ndarray, vehicle_tokens: np.ndarray,
    hetero: float, max_staleness: float, form: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One round of the surrogate (the formulas of ``surrogate.py``'s docstring), without touching its inputs.

    ``form`` 1 (the v0/v1 worlds): a training vehicle reports the curve at its rank on the task's samples
    after the round, less a stale penalty computed after its staleness was reset (so always 0). ``form`` 2:
    it reports its own local model, the task's samples before the round plus what its own round added at its
    rank, less ``stale_penalty`` per round it missed before this one.

    Returns the new (K,) samples, global rank and clipped task metric, and the new (N,) staleness, clipped
    vehicle metric, tokens processed and loss (nan where the vehicle did not train).
    """
    n, k = len(task), len(samples)
    absorbed = np.zeros(k)
    uploaders = np.zeros(k)
    round_max = np.zeros(k)
    for i in range(n):
        r = float(rank[i])
        if uploads[i] and training[i]:
            speed = _rank_speed(vehicle_curve[i, SPEED_RANK_HALF], r, vehicle_curve[i, SPEED_EXP])
            absorbed[task[i]] += vehicle_samples[i] * train_fraction[i] * speed * layer_share[i]
            uploaders[task[i]] += 1.0
        uploaded = r if uploads[i] else 0.0
        if uploaded > round_max[task[i]]:
            round_max[task[i]] = uploaded
    new_samples = np.empty(k)
    new_rank = np.empty(k)
    task_metric = np.empty(k)
    for t in range(k):
        c = task_curve[t]
        if c[FED_EXP] != 0.0 and uploaders[t] > 1.0:  # averaging n models is not adding their data
            absorbed[t] *= uploaders[t] ** -c[FED_EXP]
        new_samples[t] = samples[t] + absorbed[t] * aggregation_efficiency[t]
        new_rank[t] = round_max[t] if round_max[t] > 0 else global_rank[t]
        acc = curve_point(c[FLOOR], c[CEILING], c[RANK_GAP], c[RANK_HALF], c[NONIID_PENALTY], c[SAMPLE_SCALE],
                          new_rank[t], new_samples[t], hetero, c[ONSET], c[ONSET_STEEP]) + task_noise[t]
        task_metric[t] = min(max(acc, 0.0), 1.0)
    new_staleness = np.empty(n)
    metric = np.empty(n)
    tokens = np.empty(n)
    loss = np.empty(n)
    for i in range(n):
        trained = training[i] and train_fraction[i] > 0
        new_staleness[i] = 0.0 if trained else staleness[i] + 1.0
        if trained:
            c = vehicle_curve[i]
            if form == 1:
                acc = curve_point(c[FLOOR], c[CEILING], c[RANK_GAP], c[RANK_HALF], c[NONIID_PENALTY], c[SAMPLE_SCALE],
                                  float(rank[i]), new_samples[task[i]], hetero, c[ONSET], c[ONSET_STEEP])
                missed = new_staleness[i]
            else:
                own = vehicle_samples[i] * train_fraction[i] * _rank_speed(c[SPEED_RANK_HALF], float(rank[i]), c[SPEED_EXP]) \
                    * layer_share[i]
                acc = curve_point(c[FLOOR], c[CEILING], c[RANK_GAP], c[RANK_HALF], c[NONIID_PENALTY], c[SAMPLE_SCALE],
                                  float(rank[i]), samples[task[i]] + own, hetero, c[ONSET], c[ONSET_STEEP])
                missed = staleness[i]
            acc = acc - c[STALE_PENALTY] * min(missed, max_staleness) + vehicle_noise[i]
            loss[i] = -math.log(min(max(acc, 1e-3), 1.0))
        else:
            acc = vehicle_accuracy[i]
            loss[i] = math.nan
        metric[i] = min(max(acc, 0.0), 1.0)
        tokens[i] = vehicle_tokens[i] * train_fraction[i] if training[i] else 0.0
    return new_samples, new_rank, task_metric, new_staleness, metric, tokens, loss
