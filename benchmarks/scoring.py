"""Benchmark scoring, the one module behind ``benchmarks.compare`` and ``benchmarks.leaderboard``.

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

import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import interval_estimate, iqm, probability_of_improvement, stratify

REFERENCE_LOW = "random"
REFERENCE_HIGH = "oracle"
BASELINE = "ucb_dual"
ENERGY_TOLERANCE = 1.05  # long-run energy / budget still counted as within budget
MIN_HEADROOM_SE = 10.0
NOISE_SE = 2.0  # "beyond paired noise": a mean paired difference more than this many standard errors


@dataclass(frozen=True)
class Fields:
    """Names of the record keys; compare.py calls its worlds presets and its agents methods."""

    world: str = "scenario"
    who: str = "agent"
    seed: str = "seed"
    reward: str = "cumulative_reward"
    energy: str = "energy_j"
    budget: str = "budget_j"
    violation: str = "violation_rate"


F = Fields()


# -- per run ------------------------------------------------------------------------------------------
def _runs(records: Iterable[Mapping[str, Any]], f: Fields) -> dict[tuple[Any, Any], dict[Any, Mapping[str, Any]]]:
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
    runs = _runs(records, f)
    out = []
    for r in records:
        lo = runs.get((r[f.world], low), {}).get(r[f.seed])
        hi = runs.get((r[f.world], high), {}).get(r[f.seed])
        score = math.nan
        if lo is not None and hi is not None:
            span = float(hi[f.reward]) - float(lo[f.reward])
            if span != 0:
                score = (float(r[f.reward]) - float(lo[f.reward])) / span
        budget = float(r[f.budget])
        ratio = float(r[f.energy]) / budget if budget > 0 else math.nan
        out.append({**r, "score": score, "energy_ratio": ratio})
    return out


def paired(records: Sequence[Mapping[str, Any]], world: Any, a: str, b: str, key: str, f: Fields = F
           ) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Seeds run by both ``a`` and ``b`` on ``world``, with their values of ``key`` (same order)."""
    runs = _runs(records, f)
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
    runs = _runs(scored, f)
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
    runs = _runs(scored, f)
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
    runs = _runs(scored, f)
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


# -- reporting ----------------------------------------------------------------------------------------
def fmt_ci(mean: float, lo: float, hi: float, spec: str = ".2f") -> str:
    """``mean [lo, hi]`` (just the mean when the interval is undefined)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return f"{mean:{spec}}"
    return f"{mean:{spec}} [{lo:{spec}}, {hi:{spec}}]"


SECTIONS = ("ranking", "headroom", "checks", "worlds")


def report(
    scored: Sequence[Mapping[str, Any]], rooms: Sequence[Mapping[str, Any]], agents: Sequence[Mapping[str, Any]],
    checks: Sequence[Mapping[str, Any]], worlds: Sequence[Mapping[str, Any]], baseline: str = BASELINE,
    world_label: str = "scenario", describe: Callable[[Any], str] | None = None,
    references: tuple[str, str] = (REFERENCE_LOW, REFERENCE_HIGH), sections: Sequence[str] = SECTIONS,
    reference_names: Sequence[str] = (), learnability: Mapping[Any, Mapping[str, float]] | None = None,
) -> str:
    """The constraint-aware ranking, headroom, the oracle's check and one table per world, as markdown.

    Agents in ``references`` (and ``reference_names``) are marked as references, not competitors.
    ``learnability`` (world -> ``benchmarks.learnability`` figures) adds its columns beside the headroom.
    """
    buf = io.StringIO()
    w = buf.write
    kept = [r["world"] for r in rooms if r["kept"]]
    dropped = [r["world"] for r in rooms if not r["kept"]]
    low, high = references
    marked = {*references, *reference_names}

    def label(agent: Any) -> str:
        return f"{agent} (reference)" if agent in marked else str(agent)

    if "ranking" in sections:
        _ranking_section(w, agents, kept, dropped, baseline, world_label, label, low, high)
    if "headroom" in sections:
        _headroom_section(w, rooms, world_label, low, high, learnability or {})
    if "checks" in sections:
        _checks_section(w, checks, world_label, label, low, high)
    if "worlds" in sections:
        _worlds_section(w, worlds, describe, label)
    return buf.getvalue()


def _ranking_section(w: Callable[[str], Any], agents: Sequence[Mapping[str, Any]], kept: list, dropped: list,
                     baseline: str, world_label: str, label: Callable[[Any], str], low: str, high: str) -> None:
    w("## Constraint-aware ranking\n\n")
    w(f"Normalised score: {low} = 0, {high} = 1 on the same {world_label} and seed (paired). IQM over seeds x "
      f"{world_label}s [95% stratified-bootstrap CI, rliable]; P(> {baseline}): probability of improvement over "
      f"{baseline} (rliable); Δ: paired difference of scores to {baseline}, same seeds. Energy: episode energy / "
      f"the fleet's long-run budget, mean [CI]; over budget: share of task-rounds above the task's budget. "
      f"Ranked: agents with mean energy/budget <= {ENERGY_TOLERANCE} on every {world_label} kept "
      f"({', '.join(map(str, kept)) or 'none'}).")
    if dropped:
        w(f" Left out for lack of headroom: {', '.join(map(str, dropped))}.")
    w("\n\n")
    within, over = ranking(agents)
    w(f"| rank | agent | IQM score | P(> {baseline}) | Δ score vs {baseline} | energy / budget | over budget |\n")
    w("|---:|---|---:|---:|---:|---:|---:|\n")
    for i, r in enumerate(within, start=1):
        w(f"| {i} | {label(r['agent'])} | {fmt_ci(r['iqm'], r['iqm_lo'], r['iqm_hi'])} | {_poi(r)} | {_diff(r)} | "
          f"{fmt_ci(r['energy_ratio'], r['energy_ratio_lo'], r['energy_ratio_hi'])} | {r['violation']:.2f} |\n")
    if over:
        w(f"\nOver budget (mean energy/budget > {ENERGY_TOLERANCE} on some {world_label}), not ranked:\n\n")
        w(f"| agent | IQM score | P(> {baseline}) | energy / budget | over budget | over-budget {world_label}s |\n")
        w("|---|---:|---:|---:|---:|---|\n")
        for r in over:
            w(f"| {label(r['agent'])} | {fmt_ci(r['iqm'], r['iqm_lo'], r['iqm_hi'])} | {_poi(r)} | "
              f"{fmt_ci(r['energy_ratio'], r['energy_ratio_lo'], r['energy_ratio_hi'])} | {r['violation']:.2f} | "
              f"{', '.join(map(str, r['over_budget_worlds']))} |\n")


def _headroom_section(w: Callable[[str], Any], rooms: Sequence[Mapping[str, Any]], world_label: str, low: str,
                      high: str, learnability: Mapping[Any, Mapping[str, float]]) -> None:
    w("\n## Headroom and learnability\n\n")
    w(f"{high} minus {low} reward, paired by seed; a {world_label} needs at least {MIN_HEADROOM_SE:.0f} paired "
      "standard errors to separate agents.")
    if learnability:
        w(" Learnability (benchmarks/learnability.py): per vehicle and round under the random policy, the expected "
          "reward gap between its best and second-best feasible rank over the per-pull noise of its reward, and the "
          "pulls per rank needed to tell them apart at 2 sigma (8 (noise/gap)^2); medians over task x round cells, "
          "fast world; *real*: the same measured in real fine-tuning (decision study, `tiny` world).")
        w(f"\n\n| {world_label} | {high} - {low} (reward) | paired SD | headroom (paired SE) | kept | gap/noise per pull "
          "| pulls needed | real gap/noise | real pulls |\n|---|---:|---:|---:|---|---:|---:|---:|---:|\n")
    else:
        w(f"\n\n| {world_label} | {high} - {low} (reward) | paired SD | headroom (paired SE) | kept |\n"
          "|---|---:|---:|---:|---|\n")
    for r in rooms:
        w(f"| {r['world']} | {fmt_ci(r['gap'], r['gap_lo'], r['gap_hi'], '.1f')} | {r['gap_sd']:.1f} | "
          f"{r['headroom_se']:.1f} | {'yes' if r['kept'] else '**no: flagged**'} |")
        if learnability:
            lr = learnability.get(r["world"], {})
            w(" " + " | ".join(_learn_cell(lr.get(k, math.nan), k) for k in (
                "median_gap_per_noise", "median_pulls", "real_median_gap_per_noise", "real_median_pulls")) + " |")
        w("\n")


def _learn_cell(value: float, key: str) -> str:
    if not math.isfinite(value):
        return "-" if key.startswith("real_") or math.isnan(value) else "inf"
    return f"{value:,.0f}" if key.endswith("pulls") else f"{value:.3f}"


def _checks_section(w: Callable[[str], Any], checks: Sequence[Mapping[str, Any]], world_label: str,
                    label: Callable[[Any], str], low: str, high: str) -> None:
    w("\n## The oracle's bound\n\n")
    w(f"Per run, paired by seed ({high} and {low} on the same seed): the Lagrangian gap (R - R_{high} - mu (E - "
      f"E_{high})) / (R_{high} - R_{low}) must not exceed 0 by more than {NOISE_SE:.0f} paired SE, and R must stay "
      f"below the certified bound UB(E) (agents/oracle.py). Slack: mean (UB(E) - R) / (R_{high} - R_{low}); the "
      f"{high}'s own slack is how far its plan may still be from the best possible.\n\n")
    w(f"| {world_label} | agent | Lagrangian gap (mean ± SE) | beyond noise | certified slack | runs above UB |\n")
    w("|---|---|---:|---|---:|---:|\n")
    for c in checks:
        if not c["covered"]:
            w(f"| {c['world']} | {label(c['agent'])} | outside the class bounded (other env system) | - | - | - |\n")
            continue
        w(f"| {c['world']} | {label(c['agent'])} | {c['lagrangian_gap']:+.3f} ± {c['lagrangian_gap_se']:.3f} | "
          f"{'**yes**' if c['beyond_noise'] else 'no'} | {c['bound_slack']:.3f} | {c['bound_violations']} |\n")


def _worlds_section(w: Callable[[str], Any], worlds: Sequence[Mapping[str, Any]], describe: Callable[[Any], str] | None,
                    label: Callable[[Any], str]) -> None:
    for world in ordered(worlds, "world"):
        w(f"\n## {world}\n\n")
        if describe is not None:
            w(f"{describe(world)}\n\n")
        w("| agent | score | reward | energy / budget | over budget | within budget |\n|---|---:|---:|---:|---:|---|\n")
        rows = sorted((r for r in worlds if r["world"] == world), key=lambda r: -(r["score"] if math.isfinite(r["score"]) else -1e9))
        for r in rows:
            w(f"| {label(r['agent'])} | {fmt_ci(r['score'], r['score_lo'], r['score_hi'])} | "
              f"{fmt_ci(r['reward'], r['reward_lo'], r['reward_hi'], '.1f')} | "
              f"{fmt_ci(r['energy_ratio'], r['energy_ratio_lo'], r['energy_ratio_hi'])} | {r['violation']:.2f} | "
              f"{'yes' if r['within_budget'] else 'no'} |\n")


def _poi(r: Mapping[str, Any]) -> str:
    return fmt_ci(r["poi"], r["poi_lo"], r["poi_hi"]) if "poi" in r else "-"


def _diff(r: Mapping[str, Any]) -> str:
    return fmt_ci(r["diff"], r["diff_lo"], r["diff_hi"], "+.2f") if "diff" in r else "-"


def plot_return_vs_energy(
    scored: Sequence[Mapping[str, Any]], worlds: Sequence[Mapping[str, Any]], out: Path,
    high: str = REFERENCE_HIGH, low: str = REFERENCE_LOW, f: Fields = F, suffix: str = "-return-vs-energy",
) -> list[Path]:
    """Per world: normalised score against energy/budget, with the certified bound and the oracle's line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from iov_env.results import save_figure_atomic

    runs = _runs(scored, f)
    paths = []
    for world in ordered(worlds, "world"):
        rows = [r for r in worlds if r["world"] == world]
        fig, ax = plt.subplots(figsize=(7, 5))
        xmax = max([r["energy_ratio_hi"] if math.isfinite(r["energy_ratio_hi"]) else r["energy_ratio"] for r in rows]
                   + [1.2]) * 1.08
        grid = np.linspace(0.0, xmax, 200)
        oracle, rand = runs.get((world, high), {}), runs.get((world, low), {})
        bound_curves, lines = [], []
        for seed, o in oracle.items():
            if seed not in rand:
                continue
            span = float(o[f.reward]) - float(rand[seed][f.reward])
            if not span:
                continue
            budget, r_low = float(o[f.budget]), float(rand[seed][f.reward])
            cert = certificate_of(o)
            if cert is not None:
                bound_curves.append([(certified_bound(cert, x * budget) - r_low) / span for x in grid])
            mu = float(o.get("lagrange_mu") or 0.0)
            lines.append(1.0 + mu * (grid * budget - float(o[f.energy])) / span)
        if bound_curves:
            ax.plot(grid, np.mean(bound_curves, axis=0), color="k", lw=1.2, label="certified bound (mean over seeds)")
        if lines:
            ax.plot(grid, np.mean(lines, axis=0), color="k", lw=0.8, ls=":", label="oracle's Lagrangian line")
        ax.axvline(1.0, color="grey", lw=0.8, ls="--", label="budget")
        ax.axvline(ENERGY_TOLERANCE, color="grey", lw=0.8, ls="-.", label=f"tolerance {ENERGY_TOLERANCE}")
        for r in rows:
            color = "#4c72b0" if r["within_budget"] else "#c44e52"
            xerr = _err(r, "energy_ratio")
            yerr = _err(r, "score")
            ax.errorbar([r["energy_ratio"]], [r["score"]], xerr=xerr, yerr=yerr, fmt="o", color=color, ms=5, capsize=2)
            ax.annotate(str(r["agent"]), (r["energy_ratio"], r["score"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        finite = [r["score"] for r in rows if math.isfinite(r["score"])]
        if finite:
            ax.set_ylim(min(min(finite), 0.0) - 0.15, max(max(finite), 1.0) + 0.25)
        ax.set_xlim(0.0, xmax)
        ax.set_xlabel("episode energy / long-run budget")
        ax.set_ylabel("normalised score (random = 0, oracle = 1)")
        ax.set_title(f"{world}: return vs energy (mean, 95% CI; red: over budget)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        paths.append(save_figure_atomic(out / f"{world}{suffix}.png", fig))
        plt.close(fig)
    return paths


def _err(r: Mapping[str, Any], name: str) -> np.ndarray | None:
    lo, hi = r[f"{name}_lo"], r[f"{name}_hi"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return np.array([[max(r[name] - lo, 0.0)], [max(hi - r[name], 0.0)]])


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
