"""Fit the form-2 surrogate to real fine-tuning: whole federations at one rank and single decisions in mixed ones.

The curves (``ceiling, rank_gap, rank_half, sample_scale, speed_rank_half, speed_exponent, onset_samples,
onset_steepness, federation_exponent`` per task) are fitted by
least squares to two kinds of real readings at once:

* the calibration grid (``benchmarks/studies/calibration.py``): one vehicle per task at one rank, the global dev
  metric after every round: ``curve(r, (t + 1) s speed(r))``;
* the decision study's counterfactuals (``benchmarks/studies/decision.py``): one vehicle's local adapter,
  trained at rank r from the global state of a mixed-rank random-policy episode, on the dev subset:
  ``curve(r, S_before + s_v speed(r))``, with ``S_before`` the samples the task's uploaders added in the
  episode's earlier rounds at their executed ranks (the surrogate's own accounting).

The noise (form 2) is then read off the residuals of the vehicles' *local* readings (the reward's input):
the spread of a vehicle's readings around its own mean is the per-pull part (``round_std``); the spread of
those means across vehicles is the persistent offset, whose binomial share (a fixed validation sample of
``n_val`` examples) is modelled from first principles and the rest is ``vehicle_persistent_std``. The task metric's
per-episode offset (``task_persistent_std``) comes from the grid's runs. The random-policy episodes'
per-round task metrics are not used by the fit: they are the held-out check.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.studies.decision_analysis import Z90

FITTED = ("ceiling", "rank_gap", "rank_half", "sample_scale", "speed_rank_half", "speed_exponent", "onset_samples",
          "onset_steepness", "federation_exponent")
# the loader's limits (surrogate.CURVE_LIMITS) where they are finite; rank scales up to 4x the largest rank
LOWER = {"ceiling": None, "rank_gap": 0.0, "rank_half": 0.1, "sample_scale": 10.0, "speed_rank_half": 0.01,
         "speed_exponent": 0.1, "onset_samples": 0.0, "onset_steepness": 1.0, "federation_exponent": 0.0}
UPPER = {"ceiling": 1.0, "rank_gap": 0.6, "rank_half": 256.0, "sample_scale": None, "speed_rank_half": 256.0,
         "speed_exponent": 10.0, "onset_samples": 2000.0, "onset_steepness": 100.0, "federation_exponent": 1.0}


@dataclass(frozen=True)
class Fleet:
    """The study world's vehicles for one seed: task index and fresh samples of a full local round."""

    task: np.ndarray
    samples: np.ndarray
    shard: np.ndarray


def fleets(config: Any, seeds: Sequence[int]) -> dict[int, Fleet]:
    """Each seed's fleet, from the simulator (the fleet depends on the seed, not on the fidelity)."""
    from iov_env.learning.surrogate import samples_per_round
    from iov_env.sim.simulator import IoVSimulator

    sim = IoVSimulator(config.replace(fidelity="fast"))
    ln = config.learning
    out = {}
    for seed in seeds:
        sim.reset(seed)
        out[seed] = Fleet(sim.vehicle_task.copy(), samples_per_round(ln.local_steps, ln.batch_size, sim.shard_size),
                          sim.shard_size.copy())
    return out


def speed(rank: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Per-sample learning efficiency of a rank (the surrogate's formula)."""
    from iov_env.learning.surrogate import rank_speed_table

    return rank_speed_table(params["speed_rank_half"], np.asarray(rank, dtype=float), params["speed_exponent"])


class TaskData:
    """One task's readings in arrays the residual function needs."""

    def __init__(self, task: str, grid: Sequence[dict[str, str]], study: Sequence[dict[str, str]],
                 fleet: dict[int, Fleet], task_index: int) -> None:
        self.task = task
        g = [r for r in grid if r["task"] == task]
        self.g_rank = np.array([float(r["rank"]) for r in g])
        self.g_done = np.array([int(r["round"]) + 1 for r in g], dtype=float)
        steps, batch = (int(g[0]["local_steps"]), int(g[0]["batch_size"])) if g else (10, 16)
        from iov_env.learning.surrogate import samples_per_round

        self.g_samples = samples_per_round(steps, batch, np.array([float(r["shard_size"]) for r in g]))
        self.g_y = np.array([float(r["metric"]) for r in g])
        self.g_n = np.array([float(r["n_eval"]) for r in g])
        self.g_run = [(r["rank"], r["shard_size"], r.get("seed", "0")) for r in g]
        # the episodes: who uploaded at which rank in each round, per seed
        ep = [r for r in study if r["kind"] == "episode" and r["task"] == task and r["active"] == "1"]
        self.uploads: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
        for r in ep:
            s = int(r["seed"])
            self.uploads[(s, int(r["round"]))].append((fleet[s].samples[int(r["vehicle"])], float(r["rank"])))
        cf = [r for r in study if r["kind"] == "counterfactual" and r["task"] == task]
        self.c_seed = np.array([int(r["seed"]) for r in cf])
        self.c_round = np.array([int(r["round"]) for r in cf])
        self.c_vehicle = np.array([int(r["vehicle"]) for r in cf])
        self.c_rank = np.array([float(r["rank"]) for r in cf])
        self.c_own = np.array([fleet[int(r["seed"])].samples[int(r["vehicle"])] for r in cf])
        self.c_dev = np.array([float(r["dev_metric"]) for r in cf])
        self.c_local = np.array([float(r["local_metric"]) for r in cf])
        self.c_local_n = np.array([float(r["local_n"]) for r in cf])
        tk = [r for r in study if r["kind"] == "task" and r["task"] == task]
        self.t_seed = np.array([int(r["seed"]) for r in tk])
        self.t_round = np.array([int(r["round"]) for r in tk])
        self.t_y = np.array([float(r["task_metric"]) for r in tk])
        self.t_n = np.array([float(r["task_n"]) for r in tk])
        self.task_index = task_index

    def samples_before(self, seed: int, rnd: int, params: dict[str, float]) -> float:
        """Samples the task had absorbed before round ``rnd`` of seed ``seed``'s episode."""
        total = 0.0
        for t in range(rnd):
            ups = self.uploads.get((seed, t), [])
            if ups:
                s, r = np.array(ups).T
                # the surrogate's accounting: n > 1 uploaders keep n ** -federation_exponent of their sum
                total += float(np.sum(s * speed(r, params))) * (len(ups) ** -params["federation_exponent"] if len(ups) > 1 else 1.0)
        return total

    def global_rank(self, seed: int, rnd: int) -> float:
        """The task's global rank after round ``rnd`` (svd: the largest uploaded rank so far this round, else the last)."""
        for t in range(rnd, -1, -1):
            ups = self.uploads.get((seed, t), [])
            if ups:
                return float(max(r for _, r in ups))
        return 1.0


def predict(params: dict[str, float], hetero: float, rank: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The surrogate's curve for these parameters (``curve_value``: the env's own formula)."""
    from iov_env.learning.surrogate import curve_value

    return curve_value(params["floor"], params["ceiling"], params["rank_gap"], params["rank_half"],
                       params["noniid_penalty"], params["sample_scale"], rank, samples, hetero, params["onset_samples"],
                       params["onset_steepness"])


def counterfactual_prediction(data: TaskData, params: dict[str, float], hetero: float) -> np.ndarray:
    """Expected dev metric of each counterfactual reading: its own round on top of the episode's state."""
    before = {(s, t): data.samples_before(s, t, params)
              for s, t in set(zip(data.c_seed.tolist(), data.c_round.tolist(), strict=True))}
    s_before = np.array([before[(s, t)] for s, t in zip(data.c_seed.tolist(), data.c_round.tolist(), strict=True)])
    return predict(params, hetero, data.c_rank, s_before + data.c_own * speed(data.c_rank, params))


def episode_prediction(data: TaskData, params: dict[str, float], hetero: float) -> np.ndarray:
    """Expected global metric of each episode round (after its aggregation)."""
    s_after = np.array([data.samples_before(s, t + 1, params)
                        for s, t in zip(data.t_seed.tolist(), data.t_round.tolist(), strict=True)])
    ranks = np.array([data.global_rank(s, t) for s, t in zip(data.t_seed.tolist(), data.t_round.tolist(), strict=True)])
    return predict(params, hetero, ranks, s_after)


def fit_task(data: TaskData, base: dict[str, float], hetero: float) -> tuple[dict[str, float], list[str]]:
    """Least squares over the grid's and the counterfactuals' dev readings; returns params and bounds hit."""
    from scipy.optimize import least_squares

    most = float(np.max(data.g_samples * data.g_done)) if len(data.g_y) else 1000.0
    lo = np.array([base["floor"] if LOWER[n] is None else LOWER[n] for n in FITTED])
    hi = np.array([max(5.0 * most, 100.0) if n == "sample_scale" else UPPER[n] for n in FITTED])
    hi[0] = 1.0 - base["noniid_penalty"] * hetero  # the stored ceiling (observed top + skew) stays <= 1

    def params_of(x: np.ndarray) -> dict[str, float]:
        p = dict(base, **dict(zip(FITTED, x.tolist(), strict=True)))
        p["ceiling"] = p["ceiling"] + p["noniid_penalty"] * hetero  # fit the observed top; the prior's skew stays
        return p

    def residual(x: np.ndarray) -> np.ndarray:
        p = params_of(x)
        grid = predict(p, hetero, data.g_rank, data.g_done * data.g_samples * speed(data.g_rank, p))
        return np.concatenate([grid - data.g_y, counterfactual_prediction(data, p, hetero) - data.c_dev])

    best = None
    top = float(max(np.max(data.g_y, initial=0.0), np.max(data.c_dev, initial=0.0)))
    starts = ((150.0, 8.0, 1.0, 0.0, 1.0), (400.0, 32.0, 1.0, 0.0, 1.0), (1500.0, 2.0, 1.0, 0.0, 1.0),
              (300.0, 2.0, 1.0, 140.0, 10.0), (300.0, 8.0, 2.0, 120.0, 20.0), (150.0, 1.0, 1.0, 100.0, 5.0),
              (300.0, 16.0, 0.3, 88.0, 40.0))
    for scale0, speed0, exp0, onset0, steep0 in starts:
        x0 = np.clip(np.array([max(top, base["floor"] + 0.01), 0.1, 4.0, scale0, speed0, exp0, onset0, steep0, 0.5]),
                     lo, hi)
        sol = least_squares(residual, x0, bounds=(lo, hi),
                            x_scale=np.array([0.1, 0.05, 4.0, 300.0, 8.0, 0.5, 50.0, 5.0, 0.2]))
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    near = 1e-4 * (hi - lo)  # least_squares stops just inside a bound it presses against
    at_bound = [f"{n}={v:.4g} at its {'lower' if v - a <= tol else 'upper'} bound"
                for n, v, a, b, tol in zip(FITTED, best.x, lo, hi, near, strict=True) if v - a <= tol or b - v <= tol]
    return params_of(best.x), at_bound


def mid_metric(params: dict[str, float]) -> float:
    """The metric at which form 2 takes its binomial noise: ``TaskCurve.mid_metric`` of these parameters."""
    from iov_env.learning.surrogate import TaskCurve

    return TaskCurve(**{f.name: params[f.name] for f in fields(TaskCurve)}).mid_metric


def noise_components(data: TaskData, params: dict[str, float], hetero: float) -> dict[str, float]:
    """Form 2's noise, read off the local readings' residuals (metric units) and the grid's runs."""
    from iov_env.learning.surrogate import binomial_sd

    resid = data.c_local - counterfactual_prediction(data, params, hetero)
    units = defaultdict(lambda: defaultdict(list))
    for s, v, t, e in zip(data.c_seed.tolist(), data.c_vehicle.tolist(), data.c_round.tolist(), resid.tolist(), strict=True):
        units[(s, v)][t].append(e)
    unit_means, sq, dof, cells = [], 0.0, 0, 0
    for per_round in units.values():
        values = [e for v in per_round.values() for e in v]
        m = float(np.mean(values))
        unit_means.append(m)
        sq += float(np.sum((np.asarray(values) - m) ** 2))
        dof += len(values) - 1
        cells += len(values)
    pull_var = sq / max(dof, 1)
    binom = binomial_sd(mid_metric(params), data.c_local_n)
    binom_var = float(np.mean(binom ** 2))
    per_unit = cells / max(len(unit_means), 1)
    persistent_var = max(float(np.var(unit_means, ddof=1)) - pull_var / per_unit, 0.0) if len(unit_means) > 1 else 0.0
    # the grid's runs: one offset per run (seed x config) above the binomial noise of each reading
    g_pred = predict(params, hetero, data.g_rank, data.g_done * data.g_samples * speed(data.g_rank, params))
    runs = defaultdict(list)
    for key, e in zip(data.g_run, (data.g_y - g_pred).tolist(), strict=True):
        runs[key].append(e)
    run_means = [float(np.mean(v)) for v in runs.values()]
    g_binom_var = float(np.mean(binomial_sd(mid_metric(params), data.g_n) ** 2))
    per_run = len(data.g_y) / max(len(run_means), 1)
    task_persistent_var = max(float(np.var(run_means, ddof=1)) - g_binom_var / per_run, 0.0) if len(run_means) > 1 else 0.0
    return {
        "vehicle_persistent_std": math.sqrt(max(persistent_var - binom_var, 0.0)),
        "round_std": math.sqrt(pull_var),
        "persistent_total_std": math.sqrt(persistent_var),
        "task_persistent_std": math.sqrt(task_persistent_var),
        "measured_pull_std": math.sqrt(pull_var),
        "binomial_pull_std": math.sqrt(binom_var),
    }


def heldout_episodes(data: TaskData, params: dict[str, float], hetero: float, eval_examples: float,
                     form: int = 2) -> dict[str, float]:
    """The random-policy episodes' task metrics against the surrogate's 90% predictive interval, and the MAE.

    The interval's SD is form 2's (per-episode offset and binomial noise at the dev subset's size) or form 1's
    (``noise_std``).
    """
    from iov_env.learning.surrogate import binomial_sd

    if not len(data.t_y):
        return {"coverage_90": None, "mae_points": None, "bias_points": None, "n": 0}
    pred = episode_prediction(data, params, hetero)
    mid = mid_metric(params)
    sd = (np.hypot(params["task_persistent_std"], binomial_sd(mid, eval_examples)) if form == 2
          else np.full(len(pred), params["noise_std"]))
    inside = np.abs(data.t_y - pred) <= Z90 * sd
    return {"coverage_90": float(np.mean(inside)), "mae_points": float(np.mean(np.abs(data.t_y - pred)) * 100),
            "bias_points": float(np.mean(pred - data.t_y) * 100), "n": int(len(data.t_y))}


def refit(grid_rows: Sequence[dict[str, str]], study_rows: Sequence[dict[str, str]], base_path: Path,
          config: Any, model: str) -> dict[str, Any]:
    """The form-2 calibration document: fitted curves, noise, bounds hit, held-out checks, provenance."""
    from iov_env.learning.surrogate import TaskCurve, heterogeneity

    base_doc = json.loads(base_path.read_text())
    seeds = sorted({int(r["seed"]) for r in study_rows})
    fleet = fleets(config, seeds)
    hetero = heterogeneity(config.tasks.dirichlet_alpha)
    tasks_out, report = {}, {}
    for k, task in enumerate(config.tasks.tasks):
        data = TaskData(task, grid_rows, study_rows, fleet, k)
        base = {f.name: float(base_doc["tasks"][task].get(f.name, f.default)) for f in fields(TaskCurve)}
        params, at_bound = fit_task(data, base, hetero)
        noise = noise_components(data, params, hetero)
        params.update({n: noise[n] for n in ("vehicle_persistent_std", "round_std", "task_persistent_std")})
        params["noise_std"] = 0.0  # form 2 does not use it
        cf = counterfactual_prediction(data, params, hetero)
        grid = predict(params, hetero, data.g_rank, data.g_done * data.g_samples * speed(data.g_rank, params))
        tasks_out[task] = {n: round(float(params[n]), 6) for n in [f.name for f in fields(TaskCurve)]}
        report[task] = {
            "mae_counterfactual_dev_points": round(float(np.mean(np.abs(cf - data.c_dev))) * 100, 2),
            "mae_grid_points": round(float(np.mean(np.abs(grid - data.g_y))) * 100, 2),
            "n_counterfactual": int(len(data.c_dev)), "n_grid": int(len(data.g_y)),
            "at_bound": at_bound,
            "measured_pull_std_points": round(noise["measured_pull_std"] * 100, 2),
            "measured_persistent_std_points": round(noise["persistent_total_std"] * 100, 2),
            "binomial_validation_std_points": round(noise["binomial_pull_std"] * 100, 2),
            "heldout_episodes": {k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in
                                 heldout_episodes(data, params, hetero, config.learning.eval_subset_size).items()},
        }
    return {
        "model": model,
        "form": 2,
        "source": ("fitted by benchmarks/studies/decision_fit.py to the calibration grid (calibration_runs_"
                   f"{model}.csv) and the decision study's counterfactual local rounds (decision_study.part*.csv, seeds "
                   f"{seeds}); the study's random-policy episodes are held out"),
        "regime": base_doc.get("regime"),
        "seeds": seeds,
        "metric": base_doc.get("metric"),
        "priors_not_fitted": ["floor", "noniid_penalty", "stale_penalty", "zero_pad_penalty"],
        "tasks": tasks_out,
        "fit": report,
    }


__all__ = ["FITTED", "Fleet", "TaskData", "counterfactual_prediction", "episode_prediction", "fit_task", "fleets",
           "heldout_episodes", "mid_metric", "noise_components", "predict", "refit"]
