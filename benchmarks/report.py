"""Markdown of scored benchmark runs: the constraint-aware ranking, headroom, the oracle's check, one table per world.

Rendering only: every number comes from ``benchmarks.scoring``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks.scoring import (
    BASELINE,
    ENERGY_TOLERANCE,
    MIN_HEADROOM_SE,
    NOISE_SE,
    REFERENCE_HIGH,
    REFERENCE_LOW,
    ordered,
    ranking,
)


def fmt_ci(mean: float, lo: float, hi: float, spec: str = ".2f") -> str:
    """``mean [lo, hi]`` (just the mean when the interval is undefined)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return f"{mean:{spec}}"
    return f"{mean:{spec}} [{lo:{spec}}, {hi:{spec}}]"


SECTIONS = ("ranking", "headroom", "checks", "worlds")


def scores_markdown(
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
        _ranking_section(w, agents, kept, dropped, baseline, world_label, label, low, high, marked)
    if "headroom" in sections:
        _headroom_section(w, rooms, world_label, low, high, learnability or {})
    if "checks" in sections:
        _checks_section(w, checks, world_label, label, low, high)
    if "worlds" in sections:
        _worlds_section(w, worlds, describe, label)
    return buf.getvalue()


def _ranking_section(w: Callable[[str], Any], agents: Sequence[Mapping[str, Any]], kept: list, dropped: list,
                     baseline: str, world_label: str, label: Callable[[Any], str], low: str, high: str,
                     marked: set[Any] | frozenset[Any] = frozenset()) -> None:
    w("## Constraint-aware ranking\n\n")
    w(f"Normalised score: {low} = 0, {high} = 1 on the same {world_label} and seed (paired). IQM over seeds x "
      f"{world_label}s [95% stratified-bootstrap CI, rliable]; P(> {baseline}): probability of improvement over "
      f"{baseline} (rliable); Δ: paired difference of scores to {baseline}, same seeds. Energy: episode energy / "
      f"the fleet's long-run budget, mean [CI]; over budget: share of task-rounds above the task's budget. "
      f"Ranked: agents with mean energy/budget <= {ENERGY_TOLERANCE} on every {world_label} kept "
      f"({', '.join(map(str, kept)) or 'none'}). References (they read the simulator, or anchor the score) come "
      "first, unranked; the learners follow, ranked.")
    if dropped:
        w(f" Left out for lack of headroom: {', '.join(map(str, dropped))}.")
    w("\n\n")
    within, over = ranking(agents)
    refs = [r for r in (*within, *over) if r["agent"] in marked]
    within = [r for r in within if r["agent"] not in marked]
    over = [r for r in over if r["agent"] not in marked]
    w(f"| rank | agent | IQM score | P(> {baseline}) | Δ score vs {baseline} | energy / budget | over budget |\n")
    w("|---:|---|---:|---:|---:|---:|---:|\n")
    numbered = [("ref", r) for r in refs] + [(str(i), r) for i, r in enumerate(within, start=1)]
    for i, r in numbered:
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
        w(" Learnability (benchmarks/learnability.py): per vehicle at rounds 0, 2, 5 and 10 under the random policy, "
          "the expected reward gap between its best and second-best feasible rank over the per-pull noise of its "
          "reward, and the pulls per rank needed to tell them apart at 2 sigma (8 (noise/gap)^2); medians over task x "
          "round cells, fast world; *real*: the same measured in real fine-tuning (decision study, `tiny` world).")
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
        return "-" if math.isnan(value) else "inf"  # inf: the best rank cannot be told from the second
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
