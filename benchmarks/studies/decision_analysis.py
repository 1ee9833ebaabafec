"""What the decision study measured, the same numbers from the fast world, and the form-2 surrogate fitted to both.

Pure functions over the study's rows (``benchmarks/studies/decision.py``) and the calibration grid's
(``benchmarks/studies/calibration.py``); the study's ``report`` and ``refit`` commands call them.

Definitions (per task and branch round; a *unit* is one vehicle of one seed; ``u`` a reward in utility
units, ``gamma * 100 * metric - alpha * latency_s``):

* ``u_local``: the reward the env gives (the adapter's metric on the vehicle's local validation split);
  ``u_dev``: the same reward with the metric measured on the task's dev subset (the de-noised value).
* per unit, its feasible ranks are ordered by their mean ``u_dev`` over the *other* units (leave one out:
  ordering and measuring on the same noisy readings would favour a rank that read high by chance); the
  gap is the unit's own ``u_dev`` at the first minus at the second (and minus the mean of its feasible
  ranks), paired within the unit, with a 95% t-interval over units. The task's best rank is the most
  frequent first.
* per-pull noise: the SD of ``u_local - u_dev`` around its unit-and-round mean (rank-specific) combined
  with the SD of that mean around the unit's mean over rounds (round-to-round); the unit's mean itself
  (persistent) cancels in a vehicle's own comparison of ranks and is reported apart. Beside it, the
  binomial SD of one reading at the local validation size (first principles). A vehicle's validation
  split is one fixed sample, so that binomial error is mostly persistent too: per-pull noise can be
  below it (successive adapters err on largely the same examples).
* pulls to identify the best rank at 2 sigma: ``8 (sigma / gap)^2`` pulls per rank (the difference of two
  means of n pulls each has SD ``sigma sqrt(2 / n)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Z90 = 1.6448536269514722  # two-sided 90% normal quantile
DECISION_ROUNDS = (0, 2, 5, 10)  # where the real study branches: early, mid and late decisions


def t95(n: int) -> float:
    """Two-sided 95% Student-t quantile with ``n - 1`` degrees of freedom (normal beyond 30)."""
    table = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262,
             12: 2.201, 15: 2.145, 20: 2.093, 25: 2.064, 30: 2.045}
    if n < 2:
        return math.nan
    if n in table:
        return table[n]
    keys = sorted(table)
    if n > keys[-1]:
        return 1.96
    lo = max(k for k in keys if k < n)
    return table[lo]


def mean_ci(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and 95% t half-width of finite values, and their count."""
    x = np.array([v for v in values if np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, 0
    if len(x) == 1:
        return float(x[0]), math.nan, 1
    return float(x.mean()), float(t95(len(x)) * x.std(ddof=1) / math.sqrt(len(x))), len(x)


@dataclass(frozen=True)
class DecisionCell:
    """One (vehicle of one seed) x rank reading at one branch round."""

    seed: int
    round: int
    vehicle: int
    task: str
    rank: int
    feasible: bool
    u_local: float  # the reward the env gives
    u_dev: float  # the same reward, metric on the dev subset (de-noised); nan in the fast world's noise-free view
    metric_dev: float  # the adapter's dev metric in [0, 1] (the fast world: its expected metric)
    local_n: float  # local validation examples


@dataclass(frozen=True)
class DecisionRow:
    """The decision's numbers for one task and branch round."""

    task: str
    round: int
    units: int
    metric_by_rank: dict[int, tuple[float, float]]  # rank -> (mean dev metric in points, 95% half-width)
    best_rank: int
    gap_second: tuple[float, float]  # (mean, 95% half-width), utility units
    gap_mean: tuple[float, float]
    noise_pull: float  # utility units per pull (rank-specific and round-to-round)
    noise_binomial: float  # binomial SD at the local validation size, utility units
    noise_rest: float
    noise_persistent: float  # per-vehicle offset (cancels in a vehicle's own comparison)

    @property
    def gap_per_noise(self) -> float:
        """Gap to the second-best rank per unit of per-pull noise."""
        return self.gap_second[0] / self.noise_pull if self.noise_pull > 0 else math.inf

    @property
    def pulls_needed(self) -> float:
        """Pulls per rank to tell the best rank from the second at 2 sigma."""
        g = self.gap_second[0]
        return 8.0 * (self.noise_pull / g) ** 2 if g > 0 else math.inf


def cells_from_rows(rows: Sequence[dict[str, str]], accuracy_weight: float) -> list[DecisionCell]:
    """The counterfactual rows of the study as cells (``u_dev`` swaps the local metric for the dev metric)."""
    out = []
    for r in rows:
        if r["kind"] != "counterfactual":
            continue
        local, dev = float(r["local_metric"]), float(r["dev_metric"])
        reward = float(r["reward"])
        out.append(DecisionCell(int(r["seed"]), int(r["round"]), int(r["vehicle"]), r["task"], int(r["rank"]),
                                r["feasible"] in ("1", "True", "true"), reward,
                                reward - accuracy_weight * 100.0 * (local - dev), dev, float(r["local_n"])))
    return out


def decision_rows(cells: Sequence[DecisionCell], accuracy_weight: float,
                  noise: dict[str, tuple[float, float, float]] | None = None) -> list[DecisionRow]:
    """Per task x round: metric by rank, gaps with CIs, noise split, from cells.

    ``noise`` (task -> (per pull, binomial, persistent) in utility units) is given for the fast world,
    whose cells are noise-free expectations; for real cells it is measured from ``u_local - u_dev``.
    """
    out = []
    for task in dict.fromkeys(c.task for c in cells):
        mine = [c for c in cells if c.task == task]
        measured = _measured_noise(mine, accuracy_weight) if noise is None else None
        for t in sorted({c.round for c in mine}):
            at = [c for c in mine if c.round == t]
            ranks = sorted({c.rank for c in at})
            by_rank = {r: [c for c in at if c.rank == r] for r in ranks}
            metric = {r: mean_ci(100.0 * c.metric_dev for c in by_rank[r]) for r in ranks}
            mean_u = {r: _rank_mean(by_rank[r]) for r in ranks}
            units = sorted({(c.seed, c.vehicle) for c in at})
            gaps2, gapsm, best_ranks = [], [], []
            for unit in units:
                row = {c.rank: c for c in at if (c.seed, c.vehicle) == unit}
                feas = [r for r in ranks if r in row and row[r].feasible]
                if len(feas) < 2:
                    continue
                # the order comes from the other vehicles (leave one out): ranking and measuring on the same
                # noisy readings would favour whichever rank read high by chance (a winner's curse)
                others = {r: _rank_mean([c for c in by_rank[r] if (c.seed, c.vehicle) != unit]) for r in feas}
                order = sorted(feas, key=lambda r: -(others[r] if np.isfinite(others[r]) else mean_u[r]))
                b, b2 = order[0], order[1]
                best_ranks.append(b)
                gaps2.append(row[b].u_dev - row[b2].u_dev)
                gapsm.append(row[b].u_dev - float(np.mean([row[r].u_dev for r in feas])))
            best = max(set(best_ranks), key=best_ranks.count) if best_ranks else max(mean_u, key=mean_u.get)
            if noise is None:
                pull, binom, persist = measured[t]
            else:
                pull, binom, persist = noise[task]
            rest = math.sqrt(max(pull ** 2 - binom ** 2, 0.0))
            g2 = mean_ci(gaps2)
            gm = mean_ci(gapsm)
            out.append(DecisionRow(task, t, len(units), {r: (m, h) for r, (m, h, _) in metric.items()}, best,
                                   (g2[0], g2[1]), (gm[0], gm[1]), pull, binom, rest, persist))
    return out


def _rank_mean(cells: Sequence[DecisionCell]) -> float:
    """A rank's mean de-noised reward over the vehicles that could run it (all of them where none could; nan: none)."""
    values = [c.u_dev for c in cells if c.feasible] or [c.u_dev for c in cells]
    return float(np.mean(values)) if values else math.nan


def _measured_noise(cells: Sequence[DecisionCell], accuracy_weight: float) -> dict[int, tuple[float, float, float]]:
    """Per round: (per-pull SD, binomial SD at the local size, persistent SD) of ``u_local - u_dev``."""
    e: dict[tuple[int, int], dict[int, list[float]]] = {}
    binom: dict[int, list[float]] = {}
    for c in cells:
        e.setdefault((c.seed, c.vehicle), {}).setdefault(c.round, []).append(c.u_local - c.u_dev)
        p = min(max(c.metric_dev, 0.0), 1.0)
        binom.setdefault(c.round, []).append(accuracy_weight * 100.0 * math.sqrt(p * (1 - p) / max(c.local_n, 1.0)))
    # rank-specific: spread around each unit-round mean; round-to-round: unit-round means around the unit mean
    within: dict[int, list[float]] = {}
    dof: dict[int, int] = {}
    round_dev: list[float] = []
    round_dof = 0
    persistent = []
    for per_round in e.values():
        means = {t: float(np.mean(v)) for t, v in per_round.items()}
        for t, v in per_round.items():
            within.setdefault(t, []).extend((np.asarray(v) - means[t]) ** 2)
            dof[t] = dof.get(t, 0) + len(v) - 1
        m = float(np.mean(list(means.values())))
        persistent.append(m)
        round_dev.extend((x - m) ** 2 for x in means.values())
        round_dof += len(means) - 1
    round_var = float(np.sum(round_dev)) / round_dof if round_dof > 0 else 0.0
    persist_sd = float(np.std(persistent, ddof=1)) if len(persistent) > 1 else 0.0
    out = {}
    for t in within:
        rank_var = float(np.sum(within[t])) / max(dof[t], 1)
        out[t] = (math.sqrt(rank_var + round_var), float(np.sqrt(np.mean(np.square(binom[t])))), persist_sd)
    return out


def render_table(real: Sequence[DecisionRow], fast: dict[str, Sequence[DecisionRow]]) -> str:
    """Markdown: per task x round, real beside each fast world (gap, noise, gap/noise, pulls)."""
    index = {name: {(r.task, r.round): r for r in rows} for name, rows in fast.items()}
    head = ("| task | round | units | best rank (real) | gap to 2nd, real [95% CI] | gap to mean, real | noise/pull real "
            "(binomial + rest) | gap/noise real | pulls real | " + " | ".join(
                f"gap to 2nd {n} | noise/pull {n} | pulls {n}" for n in fast) + " |")
    lines = [head, "|" + "---|" * (9 + 3 * len(fast))]
    for r in real:
        cells = [r.task, str(r.round), str(r.units), str(r.best_rank), _pm(r.gap_second), _pm(r.gap_mean),
                 f"{r.noise_pull:.2f} ({r.noise_binomial:.2f} + {r.noise_rest:.2f})", f"{r.gap_per_noise:.3f}",
                 _pulls(r.pulls_needed)]
        for name in fast:
            f = index[name].get((r.task, r.round))
            cells += ([_pm(f.gap_second), f"{f.noise_pull:.2f}", _pulls(f.pulls_needed)] if f else ["-"] * 3)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_metric_by_rank(real: Sequence[DecisionRow], fast: dict[str, Sequence[DecisionRow]]) -> str:
    """Markdown: the dev metric (points) by rank per task x round, real [95% CI] beside the fast worlds' expectations."""
    ranks = sorted({k for r in real for k in r.metric_by_rank})
    index = {name: {(r.task, r.round): r for r in rows} for name, rows in fast.items()}
    lines = ["| task | round | world | " + " | ".join(f"r={k}" for k in ranks) + " |", "|" + "---|" * (3 + len(ranks))]
    for r in real:
        lines.append(f"| {r.task} | {r.round} | real | " + " | ".join(
            f"{r.metric_by_rank[k][0]:.1f} ± {r.metric_by_rank[k][1]:.1f}" if k in r.metric_by_rank else "-" for k in ranks) + " |")
        for name in fast:
            f = index[name].get((r.task, r.round))
            if f:
                lines.append(f"| {r.task} | {r.round} | {name} | " + " | ".join(
                    f"{f.metric_by_rank[k][0]:.1f}" if k in f.metric_by_rank else "-" for k in ranks) + " |")
    return "\n".join(lines)


def _pm(x: tuple[float, float]) -> str:
    m, h = x
    return f"{m:.2f}" if not np.isfinite(h) else f"{m:.2f} [{m - h:.2f}, {m + h:.2f}]"


def _pulls(n: float) -> str:
    return "inf" if not np.isfinite(n) else f"{n:,.0f}"


def summarise(rows: Sequence[DecisionRow]) -> dict[str, float]:
    """Medians over a world's task x round cells: best-vs-second gap per pull noise, pulls needed, gain over random.

    ``median_gain_per_noise`` is the best rank's gap to the mean of the feasible ranks (what a learner that found
    it gains over picking at random) per pull noise.
    """
    ratios = [r.gap_per_noise for r in rows if np.isfinite(r.gap_per_noise)]
    pulls = [r.pulls_needed for r in rows]
    gains = [r.gap_mean[0] / r.noise_pull for r in rows if r.noise_pull > 0 and np.isfinite(r.gap_mean[0])]
    return {"median_gap_per_noise": float(np.median(ratios)) if ratios else math.nan,
            "median_pulls": float(np.median(pulls)) if pulls else math.nan,
            "median_gain_per_noise": float(np.median(gains)) if gains else math.nan}


def random_actions(mask: np.ndarray, active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random feasible rank index per vehicle (inactive vehicles: index 0, ignored)."""
    out = np.zeros(len(mask), dtype=int)
    for v in np.flatnonzero(active):
        out[v] = int(rng.choice(np.flatnonzero(mask[v])))
    return out


def policy_rng(seed: int) -> np.random.Generator:
    """The random policy's own stream for a seed: independent of the world's, the same in both fidelities."""
    return np.random.default_rng([seed, 4242])


def fast_cells(config: Any, seeds: Sequence[int], branch_rounds: Sequence[int]) -> tuple[list[DecisionCell], Any]:
    """The fast world's expected reward of every rank for every active vehicle at the branch rounds.

    The same world, seeds and random policy as the real study; returns the cells (noise-free: ``u_local =
    u_dev``) and the last backend (its noise model is ``fast_noise``'s input).
    """
    from iov_env.sim.simulator import IoVSimulator

    sim = IoVSimulator(config)
    tasks = config.tasks.tasks
    rank_set = [int(r) for r in config.learning.rank_set]
    out: list[DecisionCell] = []
    last = max(branch_rounds)
    for seed in seeds:
        sim.reset(seed)
        rng = policy_rng(seed)
        for t in range(last + 1):
            st = sim.state
            if t in branch_rounds:
                acc = sim.backend.expected_vehicle_accuracy(sim.rank_set)
                u = sim.utility(acc, st.latency_table_s, st.energy_table_j)
                for v in np.flatnonzero(st.active):
                    k = int(sim.vehicle_task[v])
                    for j, rank in enumerate(rank_set):
                        out.append(DecisionCell(seed, t, int(v), tasks[k], rank, bool(st.mask[v, j]), float(u[v, j]),
                                                float(u[v, j]), float(acc[v, j]), math.nan))
            sim.step(random_actions(st.mask, st.active, rng))
    return out, sim


def fast_noise(sim: Any) -> dict[str, tuple[float, float, float]]:
    """Per task: (per-pull, binomial, persistent) noise SD of the fast world's reward, in utility units.

    The surrogate's own noise sizes (``FastBackend.vehicle_noise_sd``), root-mean-square over the task's vehicles.
    """
    sd = sim.backend.vehicle_noise_sd()
    weight = sim.config.episode.accuracy_weight * 100.0
    out = {}
    for k, task in enumerate(sim.config.tasks.tasks):
        mine = sim.vehicle_task == k
        out[task] = tuple(weight * float(np.sqrt(np.mean(sd[part][mine] ** 2))) for part in ("pull", "binomial", "offset"))
    return out


def gap_checks(real: Sequence[DecisionRow], fast: Sequence[DecisionRow]) -> list[dict[str, Any]]:
    """Per task x round: is the fast world's gap (to the second-best and to the mean) inside the real 95% CI?"""
    index = {(r.task, r.round): r for r in fast}
    out = []
    for r in real:
        f = index.get((r.task, r.round))
        if f is None:
            continue
        row: dict[str, Any] = {"task": r.task, "round": r.round}
        for name in ("gap_second", "gap_mean"):
            (m, h), fm = getattr(r, name), getattr(f, name)[0]
            row[name] = (fm, m, h, bool(np.isfinite(h) and abs(fm - m) <= h))
        out.append(row)
    return out


def heldout_checks(rows: Sequence[dict[str, str]], doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task: a frozen calibration's MAE on the fitted and held-out counterfactual rounds and on the episodes.

    Either form: parameters a form-1 file lacks take their defaults (no onset, exponent 1, data that adds up).
    """
    from dataclasses import fields

    from benchmarks.studies import decision_fit
    from benchmarks.studies.common import DATA_DIR
    from iov_env.config import preset
    from iov_env.learning.surrogate import TaskCurve, heterogeneity
    from iov_env.results import read_csv_rows

    defaults = {f.name: f.default for f in fields(TaskCurve) if isinstance(f.default, float)}
    form = int(doc.get("form", 1))

    cfg = preset("tiny", fidelity="fast", rounds=20)
    seeds = sorted({int(r["seed"]) for r in rows})
    fleet = decision_fit.fleets(cfg, seeds)
    grid = read_csv_rows([DATA_DIR / f"calibration_runs_{doc.get('model', '')}.csv"])
    hetero = heterogeneity(cfg.tasks.dirichlet_alpha)
    fitted = set(doc.get("fit_rounds", []))
    out = {}
    for k, task in enumerate(cfg.tasks.tasks):
        data = decision_fit.TaskData(task, grid, rows, fleet, k)
        params = {**defaults, **doc["tasks"][task]}
        err = np.abs(decision_fit.counterfactual_prediction(data, params, hetero) - data.c_dev) * 100
        held = ~np.isin(data.c_round, list(fitted))
        out[task] = {
            "mae_fitted": float(err[~held].mean()) if (~held).any() else math.nan,
            "mae_heldout": float(err[held].mean()) if held.any() else math.nan,
            "episodes": {k2: (math.nan if v is None else v) for k2, v in decision_fit.heldout_episodes(
                data, params, hetero, cfg.learning.eval_subset_size, form).items()},
        }
    return out


def report(rows: Sequence[dict[str, str]], calibrations: Sequence[str]) -> str:
    """decision_study.md: the real decision beside each fast world, the gap checks and the refit's held-out checks."""
    import json

    from iov_env.config import preset
    from iov_env.learning.surrogate import CALIBRATION_DIR

    weight = preset("tiny").episode.accuracy_weight
    cells = cells_from_rows(rows, weight)
    real = decision_rows(cells, weight)
    seeds = sorted({c.seed for c in cells})
    rounds = sorted({c.round for c in cells})
    fast: dict[str, list[DecisionRow]] = {}
    for name in calibrations:
        cfg = preset("tiny", fidelity="fast", rounds=max(rounds) + 1, calibration=name)
        fc, sim = fast_cells(cfg, seeds, rounds)
        fast[name] = decision_rows(fc, weight, noise=fast_noise(sim))
    episodes = [r for r in rows if r["kind"] == "episode"]
    lines = [
        "# The rank decision in real fine-tuning, beside the fast worlds",
        "",
        f"`iov study decision run` then `iov study decision report`: real `tiny` "
        f"episodes (MiniLM, RealBackend) under the random policy, seeds {seeds}, "
        f"{1 + max(int(r['round']) for r in episodes) if episodes else 0} rounds stored; at rounds {rounds} every active "
        f"vehicle trained its local round at every rank from the same global state ({len(cells)} counterfactual local "
        f"rounds, each scored on its local validation split and on a fixed dev subset). Utility units: the env's reward, "
        f"{weight:g} x metric (points) - latency weight x latency (s). A unit is one vehicle of one seed; gaps are paired "
        "within a unit, with 95% t-intervals over units. Fast worlds beside it (same world, seeds, random policy and "
        "rounds): " + ", ".join(f"`{n}`" for n in calibrations) + " (the v1 and v2 worlds' surrogates).",
        "",
        "## Gap and noise per decision",
        "",
        render_table(real, fast),
        "",
        "Medians over task x round cells: "
        + "; ".join(f"{name}: gap to 2nd/noise {v['median_gap_per_noise']:.3f}, pulls {v['median_pulls']:,.0f}, "
                    f"gain over random/noise {v['median_gain_per_noise']:.3f}" for name, v in
                    [("real", summarise(real)), *[(n, summarise(f)) for n, f in fast.items()]]) + ".",
        "",
        "## Dev metric by rank (points)",
        "",
        "Real: mean ± 95% half-width over units; fast: the surrogate's expectation for the same vehicles.",
        "",
        render_metric_by_rank(real, fast),
    ]
    docs = {name: json.loads((CALIBRATION_DIR / f"{name}.json").read_text()) for name in calibrations
            if (CALIBRATION_DIR / f"{name}.json").is_file()}
    checks_by = {name: heldout_checks(rows, doc) for name, doc in docs.items()}
    lines += ["", "## The mixed-rank real episodes against each fast world", "",
              "Every round's global task metric of the random-policy episodes (never used by a fit) against the "
              "surrogate's prediction for the same executed ranks, and its 90% predictive interval.", "",
              "| fast world | task | inside the 90% interval | MAE (pts) | bias, surrogate - real (pts) |", "|---|---|---|---|---|"]
    for name, by_task in checks_by.items():
        for task, check in by_task.items():
            ep = check["episodes"]
            lines.append(f"| `{name}` | {task} | {ep['coverage_90']:.0%} of {ep['n']} | {ep['mae_points']:.2f} | "
                         f"{ep['bias_points']:+.2f} |")
    for name, doc in docs.items():
        if doc.get("form") != 2:
            continue
        held = [t for t in rounds if t not in doc.get("fit_rounds", rounds)]
        checks = gap_checks(real, fast[name])
        lines += ["", f"## `{name}`: fit and held-out checks", "",
                  f"{doc.get('source', '')}. Counterfactual rounds held out of the fit: {held or 'none'}.", "",
                  "| task | round | held out | v2 gap to 2nd (real mean [CI]) | inside | v2 gap to mean (real mean [CI]) | inside |",
                  "|---|---|---|---|---|---|---|"]
        for c in checks:
            g2, gm = c["gap_second"], c["gap_mean"]
            lines.append(f"| {c['task']} | {c['round']} | {'yes' if c['round'] in held else 'no'} | "
                         f"{g2[0]:.2f} ({g2[1]:.2f} [{g2[1] - g2[2]:.2f}, {g2[1] + g2[2]:.2f}]) | {'yes' if g2[3] else 'no'} | "
                         f"{gm[0]:.2f} ({gm[1]:.2f} [{gm[1] - gm[2]:.2f}, {gm[1] + gm[2]:.2f}]) | {'yes' if gm[3] else 'no'} |")
        inside = sum(c[g][3] for c in checks for g in ("gap_second", "gap_mean"))
        lines += ["", f"{inside} of {2 * len(checks)} gaps inside the real 95% CI.", "",
                  "Accuracy of the frozen calibration against the rows stored now (recomputed here, so readings taken "
                  "after the fit count): the counterfactual dev metric of the fitted and of the held-out rounds, the "
                  "grid, and the fitted parameters that ended at a bound of their range.", "",
                  "| task | MAE fitted rounds (pts) | MAE held-out rounds (pts) | MAE grid (pts) | parameters at a bound |",
                  "|---|---|---|---|---|"]
        for task, check in checks_by[name].items():
            f = doc.get("fit", {}).get(task, {})
            lines.append(f"| {task} | {check['mae_fitted']:.2f} | {check['mae_heldout']:.2f} | {f.get('mae_grid_points')} | "
                         f"{', '.join(f.get('at_bound', [])) or 'none'} |")
        lines += ["", "Fitted parameters: " + "; ".join(
            f"{t}: " + ", ".join(f"{k} {v:.4g}" for k, v in p.items() if k in (
                "ceiling", "rank_gap", "rank_half", "sample_scale", "speed_rank_half", "speed_exponent", "onset_samples", "onset_steepness", "federation_exponent",
                "vehicle_persistent_std",
                "round_std", "task_persistent_std")) for t, p in doc.get("tasks", {}).items()) + "."]
    return "\n".join(lines) + "\n"


__all__ = ["DecisionCell", "DecisionRow", "cells_from_rows", "decision_rows", "fast_cells", "fast_noise", "gap_checks", "heldout_checks", "mean_ci",
           "policy_rng", "random_actions", "render_metric_by_rank", "render_table", "report", "summarise", "t95"]
