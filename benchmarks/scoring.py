"""Benchmark scoring, the one module behind ``benchmarks.compare`` and ``benchmarks.leaderboard``: pure functions.

Markdown is in ``benchmarks.report``, figures in ``benchmarks.plots``.

docs/leaderboard.md and docs/design.md, "Benchmark scoring". Runs are records (dicts) with a world (scenario or preset), an agent, a
seed, the episode's cumulative reward, energy, long-run budget and share of task-rounds over budget.
Seed s is the same world for every agent (common random numbers), so every comparison is paired by
seed.

* **Per run.** Normalised score ``(R - R_random) / (R_oracle - R_random)`` with the random policy and
  the oracle on the same world and seed (random = 0, oracle = 1); energy ratio = episode energy / the
  fleet's long-run budget; violation share = share of task-rounds whose energy exceeded the task's
  budget.
* **Headroom per world.** ``mean(R_oracle - R_random)`` in paired standard errors over seeds. A world
  under ``MIN_HEADROOM_SE`` cannot separate agents: it is flagged and left out of the aggregates.
* **Per agent**, over the worlds kept: the IQM of normalised scores with a stratified-bootstrap 95% CI
  (strata = worlds, rliable), the probability of improvement over UCB-DUAL (rliable), the paired
  difference of scores to UCB-DUAL, the mean energy ratio.
* **Constraint-aware ranking** (Safety-Gymnasium and OmniSafe report return beside cost): the headline
  ranks the agents whose mean energy ratio is at most ``ENERGY_TOLERANCE`` on every world kept; the
  others are listed below it with their violation.
* **The oracle's claim**, checked per run (``agents/oracle.py``): ``R <= R_oracle + mu (E - E_oracle)``
  (its Lagrangian line) beyond paired noise, and ``R <= UB(E)``, the certified bound, always.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.runner import energy_ratio
from benchmarks.stats import interval_estimate, iqm, probability_of_improvement, stratify

REFERENCE_LOW = "random"
REFERENCE_HIGH = "oracle"
BASELINE = "ucb_dual"
ENERGY_TOLERANCE = 1.05  # long-run energy / budget still counted as within budget
MIN_HEADROOM_SE = 10.0
NOISE_SE = 2.0  # "beyond paired noise": a mean paired difference more than this many standard errors


@dataclass(frozen=True)
class Fields:
    """The record keys scoring reads: those of ``benchmarks.runs.run_record``, the one schema of every benchmark."""

    world: str = "scenario"
    who: str = "agent"
    seed: str = "seed"
    reward: str = "cumulative_reward"
    energy: str = "energy_j"
    budget: str = "budget_j"
    violation: str = "violation_rate"


F = Fields()


# -- per run ------------------------------------------------------------------------------------------
def run_index(records: Iterable[Mapping[str, Any]], f: Fields) -> dict[tuple[Any, Any], dict[Any, Mapping[str, Any]]]:
    """(world, agent) -> seed -> record."""
    out: dict[tuple[Any, Any], dict[Any, Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault((r[f.world], r[f.who]), {})[r[f.seed]] = r
    return out


def ordered(records: Iterable[Mapping[str, Any]], key: str) -> list[Any]:
    """Distinct values of ``key`` in first-seen order."""
    return list(dict.fromkeys(r[key] for r in records))


def score_runs(
    records: Sequence[Mapping[str, Any]], low: str = REFERENCE_LOW, high: str = REFERENCE_HIGH, f: Fields = F
) -> list[dict[str, Any]]:
    """Every record with ``score`` (paired normalised score; NaN without both references) and ``energy_ratio``."""
    runs = run_index(records, f)
    out = []
    for r in records:
        lo = runs.get((r[f.world], low), {}).get(r[f.seed])
        hi = runs.get((r[f.world], high), {}).get(r[f.seed])
        score = math.nan
        if lo is not None and hi is not None:
            span = float(hi[f.reward]) - float(lo[f.reward])
            if span != 0:
                score = (float(r[f.reward]) - float(lo[f.reward])) / span
        out.append({**r, "score": score, "energy_ratio": energy_ratio(float(r[f.energy]), float(r[f.budget]))})
    return out


def paired(records: Sequence[Mapping[str, Any]], world: Any, a: str, b: str, key: str, f: Fields = F
           ) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Seeds run by both ``a`` and ``b`` on ``world``, with their values of ``key`` (same order)."""
    runs = run_index(records, f)
    ra, rb = runs.get((world, a), {}), runs.get((world, b), {})
    seeds = [s for s in ra if s in rb]
    return seeds, np.array([float(ra[s][key]) for s in seeds]), np.array([float(rb[s][key]) for s in seeds])


def paired_difference(
    records: Sequence[Mapping[str, Any]], world: Any, a: str, b: str, key: str, relative: bool = False,
    reps: int = 2000, f: Fields = F,
) -> tuple[float, float, float]:
    """Mean over shared seeds of a - b (relative: mean(a) / mean(b) - 1), with a 95% bootstrap CI over seeds."""
    _, xa, xb = paired(records, world, a, b, key, f)
    if len(xa) == 0:
        return math.nan, math.nan, math.nan
    if relative:
        # ratio of means (not mean of ratios): "x% lower latency" is about totals
        rng = np.random.default_rng(1)
        idx = rng.integers(0, len(xa), (reps, len(xa)))
        boots = xa[idx].mean(axis=1) / xb[idx].mean(axis=1) - 1.0
        return float(xa.mean() / xb.mean() - 1.0), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
    return interval_estimate(xa - xb, reps=reps, seed=2)


# -- per world ----------------------------------------------------------------------------------------
def headroom(
    records: Sequence[Mapping[str, Any]], low: str = REFERENCE_LOW, high: str = REFERENCE_HIGH,
    minimum_se: float = MIN_HEADROOM_SE, reps: int = 2000, f: Fields = F,
) -> list[dict[str, Any]]:
    """Per world: oracle - random (paired by seed), its paired SD, and the headroom in paired SEs; flagged below the minimum."""
    out = []
    for world in ordered(records, f.world):
        _, xh, xl = paired(records, world, high, low, f.reward, f)
        d = xh - xl
        n = len(d)
        mean = float(d.mean()) if n else math.nan
        sd = float(d.std(ddof=1)) if n > 1 else math.nan
        se = sd / math.sqrt(n) if n > 1 else math.nan
        if n < 2 or not math.isfinite(mean):
            ratio = math.nan
        elif se > 0:
            ratio = mean / se
        else:
            ratio = math.inf if mean > 0 else -math.inf
        ci = interval_estimate(d, reps=reps, seed=3) if n > 1 else (mean, math.nan, math.nan)
        out.append({
            "world": world, "n": n, "gap": mean, "gap_lo": ci[1], "gap_hi": ci[2], "gap_sd": sd,
            "headroom_se": ratio, "kept": bool(math.isfinite(ratio) and ratio >= minimum_se or ratio == math.inf),
        })
    return out


def _mean_ci(x: np.ndarray, reps: int, seed: int = 0) -> tuple[float, float, float]:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan, math.nan
    return interval_estimate(x, reps=reps, seed=seed)


def world_summary(scored: Sequence[Mapping[str, Any]], reps: int = 2000, f: Fields = F) -> list[dict[str, Any]]:
    """Per world x agent: score, reward, energy ratio (mean [95% CI] over seeds) and the violation share."""
    out = []
    runs = run_index(scored, f)
    for world in ordered(scored, f.world):
        for who in ordered(scored, f.who):
            sel = list(runs.get((world, who), {}).values())
            if not sel:
                continue
            row: dict[str, Any] = {"world": world, "agent": who, "n": len(sel)}
            for key, name in (("score", "score"), (f.reward, "reward"), ("energy_ratio", "energy_ratio"),
                              (f.violation, "violation")):
                m, lo, hi = _mean_ci(np.array([float(r[key]) for r in sel]), reps)
                row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
            row["within_budget"] = bool(row["energy_ratio"] <= ENERGY_TOLERANCE)
            out.append(row)
    return out


# -- the oracle's claims ------------------------------------------------------------------------------
def oracle_fields(state: Mapping[str, Any]) -> dict[str, Any]:
    """A run record's ``lagrange_mu`` and ``certificate`` from an agent's state (empty for non-oracles: one CSV schema)."""
    if "bound_reward" not in state:
        return {"lagrange_mu": "", "certificate": ""}
    cert = [[float(f"{m:.6g}") for m in state["bound_mu"]], [round(float(b), 4) for b in state["bound_reward"]]]
    return {"lagrange_mu": state["mu"], "certificate": json.dumps(cert, separators=(",", ":"))}



def certificate_of(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The oracle's certificate (multipliers, bounds) stored in a run record, if any."""
    raw = record.get("certificate")
    if not raw:
        return None
    mu, bound = json.loads(raw) if isinstance(raw, str) else raw
    return np.asarray(mu, dtype=float), np.asarray(bound, dtype=float)


def certified_bound(certificate: tuple[np.ndarray, np.ndarray], energy_j: float) -> float:
    """The proven upper bound on the reward of any policy spending ``energy_j``: min over mu of B(mu) + mu E."""
    mu, bound = certificate
    return float(np.min(bound + mu * float(energy_j)))


def oracle_checks(
    scored: Sequence[Mapping[str, Any]], high: str = REFERENCE_HIGH, low: str = REFERENCE_LOW, f: Fields = F
) -> list[dict[str, Any]]:
    """Per world x agent, paired by seed: the gap to the oracle's Lagrangian line and the certified bound.

    ``lagrangian_gap`` = mean of (R - R_o - mu (E - E_o)) / (R_o - R_random), ``beyond_noise`` when its mean
    exceeds ``NOISE_SE`` paired standard errors above 0; ``bound_violations`` counts runs with R > UB(E).
    A run whose ``bounded_by`` names another reference (or none) is outside the class the oracle bounds
    (FedRA adapts other layers, hence other costs): it gets ``covered = False`` and no numbers.
    """
    runs = run_index(scored, f)
    out = []
    for world in ordered(scored, f.world):
        oracle, rand = runs.get((world, high), {}), runs.get((world, low), {})
        for who in ordered(scored, f.who):
            mine = {s: r for s, r in runs.get((world, who), {}).items() if r.get("bounded_by", high) == high}
            if not mine and runs.get((world, who)):
                out.append({"world": world, "agent": who, "n": 0, "covered": False, "lagrangian_gap": math.nan,
                            "lagrangian_gap_se": math.nan, "beyond_noise": False, "bound_slack": math.nan,
                            "bound_violations": 0})
                continue
            gaps, above_bound, slack = [], 0, []
            for seed, r in mine.items():
                o = oracle.get(seed)
                if o is None:
                    continue
                span = float(o[f.reward]) - float(rand[seed][f.reward]) if seed in rand else math.nan
                mu = float(o.get("lagrange_mu") or 0.0)
                line = float(o[f.reward]) + mu * (float(r[f.energy]) - float(o[f.energy]))
                gaps.append((float(r[f.reward]) - line) / span if span else math.nan)
                cert = certificate_of(o)
                if cert is not None:
                    ub = certified_bound(cert, float(r[f.energy]))
                    slack.append((ub - float(r[f.reward])) / span if span else math.nan)
                    above_bound += int(float(r[f.reward]) > ub + 1e-6 * abs(ub))
            g = np.array(gaps, dtype=float)
            se = float(g.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else math.nan
            mean = float(np.mean(g)) if len(g) else math.nan
            out.append({
                "world": world, "agent": who, "n": len(g), "covered": True, "lagrangian_gap": mean,
                "lagrangian_gap_se": se,
                "beyond_noise": bool(len(g) > 1 and mean > NOISE_SE * se and mean > 0),
                "bound_slack": float(np.mean(slack)) if slack else math.nan, "bound_violations": above_bound,
            })
    return out


# -- per agent ----------------------------------------------------------------------------------------
def _matrix(scored: Sequence[Mapping[str, Any]], who: str, worlds: Sequence[Any], key: str, f: Fields) -> np.ndarray:
    """(seeds x worlds) matrix of ``key`` for ``who``, seeds sorted within each world (rliable's layout)."""
    runs = run_index(scored, f)
    values, strata = [], []
    for w in worlds:
        sel = runs.get((w, who), {})
        for s in sorted(sel):
            values.append(float(sel[s][key]))
            strata.append(w)
    return stratify(values, strata)


def agent_summary(
    scored: Sequence[Mapping[str, Any]], kept_worlds: Sequence[Any], world_rows: Sequence[Mapping[str, Any]],
    baseline: str = BASELINE, reps: int = 2000, f: Fields = F,
) -> list[dict[str, Any]]:
    """Per agent over ``kept_worlds``: IQM score [CI], P(improvement over ``baseline``) [CI], paired score
    difference to it [CI], mean energy ratio [CI], violation share, and whether it stays within budget
    (``world_rows``: ``world_summary``'s output, for the per-world budget test)."""
    out: list[dict[str, Any]] = []
    worlds = list(kept_worlds)
    if not worlds:
        return out
    per_world = {(r["world"], r["agent"]): r for r in world_rows}
    agents = ordered(scored, f.who)
    for who in agents:
        if any((w, who) not in per_world for w in worlds):
            continue
        row: dict[str, Any] = {"agent": who, "worlds": len(worlds)}
        scores = _matrix(scored, who, worlds, "score", f)
        row["iqm"], row["iqm_lo"], row["iqm_hi"] = interval_estimate(scores, stat=_iqm_stat, reps=reps)
        row["mean_score"] = float(np.mean(scores))
        ratio = _matrix(scored, who, worlds, "energy_ratio", f)
        row["energy_ratio"], row["energy_ratio_lo"], row["energy_ratio_hi"] = interval_estimate(ratio, reps=reps)
        row["violation"] = float(np.mean(_matrix(scored, who, worlds, f.violation, f)))
        over = [w for w in worlds if not per_world[(w, who)]["within_budget"]]
        row["over_budget_worlds"] = over
        row["within_budget"] = not over
        if baseline in agents and all((w, baseline) in per_world for w in worlds) and who != baseline:
            base = _matrix(scored, baseline, worlds, "score", f)
            row["poi"], row["poi_lo"], row["poi_hi"] = probability_of_improvement(scores, base, reps=reps)
            diffs = [paired(scored, w, who, baseline, "score", f) for w in worlds]
            d = stratify(np.concatenate([a - b for _, a, b in diffs]),
                         [w for w, (_, a, _) in zip(worlds, diffs, strict=True) for _ in a])
            row["diff"], row["diff_lo"], row["diff_hi"] = interval_estimate(d, reps=reps, seed=5)
        out.append(row)
    return out


def _iqm_stat(m: np.ndarray) -> float:
    return iqm(m)


def ranking(agent_rows: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(headline, others): agents within budget by IQM score (best first); the rest by score, listed apart."""
    within = sorted((r for r in agent_rows if r["within_budget"]), key=lambda r: -r["iqm"])
    over = sorted((r for r in agent_rows if not r["within_budget"]), key=lambda r: -r["iqm"])
    return within, over


# -- generic metric tables (compare.py's and leaderboard.py's per-metric cells) ------------------------
def metric_summary(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str], group: str, scopes: Sequence[Any],
    world: str = "scenario", reps: int = 2000, pool_label: str = "all",
) -> list[dict[str, Any]]:
    """Per scope (a world, or ``pool_label``: all worlds, stratified) x group x metric: mean [95% CI] and IQM."""
    out = []
    for scope in scopes:
        for g in ordered(records, group):
            sel = [r for r in records if r[group] == g and (scope == pool_label or r[world] == scope)]
            if not sel:
                continue
            strata = [r[world] for r in sel]
            for key in metrics:
                x = np.array([float(r[key]) for r in sel])
                mean, lo, hi = interval_estimate(stratify(x, strata), reps=reps)
                out.append({world: scope, group: g, "metric": key, "mean": mean, "ci_lo": lo, "ci_hi": hi,
                            "iqm": iqm(x), "n": len(x)})
    return out


def score_all(
    records: Sequence[Mapping[str, Any]], reps: int = 2000, baseline: str = BASELINE, f: Fields = F,
    references: tuple[str, str] = (REFERENCE_LOW, REFERENCE_HIGH),
) -> dict[str, Any]:
    """Everything above in one call: scored runs, headroom, per-world and per-agent summaries, oracle checks."""
    low, high = references
    scored = score_runs(records, low=low, high=high, f=f)
    rooms = headroom(records, low=low, high=high, reps=reps, f=f)
    kept = [r["world"] for r in rooms if r["kept"]]
    worlds = world_summary(scored, reps=reps, f=f)
    return {
        "scored": scored,
        "headroom": rooms,
        "worlds": worlds,
        "agents": agent_summary(scored, kept, worlds, baseline=baseline, reps=reps, f=f),
        "checks": oracle_checks(scored, high=high, low=low, f=f),
    }
