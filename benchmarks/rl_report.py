"""The RL agents against a reference agent (UCB-DUAL), paired by seed, from a leaderboard's ``runs.csv``.

    iov report rl results/leaderboard-rl --reference ucb_dual

For every scenario and agent: the normalised score (random = 0, oracle = 1, paired by seed, see
``benchmarks.scoring``) where the grid ran both references, the episode reward, the energy as a share of
the fleet's budget and the budget violation rate beside them (mean and 95% bootstrap CI over evaluation
seeds), and the paired differences to the reference on the same seeds (same mobility, channel and data
draws), so that seed-to-seed variation common to both agents cancels. The hindsight references
(``HINDSIGHT``: they read the simulator, so they bound what a learner can reach rather than compete) come
first, marked; then the agents within the energy budget (mean energy / budget at most
``scoring.ENERGY_TOLERANCE``), by score; the others follow with their overspend: a policy is never ranked
by reward alone. Writes ``<folder>/RL_VS_REFERENCE.md``
and prints it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.baselines import REFERENCE_AGENTS
from benchmarks.errors import BenchmarkError
from benchmarks.scoring import ENERGY_TOLERANCE, score_runs
from benchmarks.stats import interval_estimate
from iov_env.results import write_text_atomic

# the leaderboard's references that read the simulator (the episode in hindsight, or its model of the next round),
# listed first in this order; random, the score's 0, is ranked with the agents it is paired with
HINDSIGHT = tuple(a for a in REFERENCE_AGENTS if a != "random")


def read_runs(folder: str | Path) -> list[dict[str, Any]]:
    """The leaderboard's per-run rows with numbers as floats."""
    path = Path(folder) / "runs.csv"
    if not path.exists():
        raise FileNotFoundError(f"no runs.csv in {folder}; run iov leaderboard --out {folder} first")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["seed"] = int(r["seed"])
        for k in ("cumulative_reward", "energy_j", "violation_rate", "accuracy_pts", "latency_s"):
            r[k] = float(r[k])
        r["budget_j"] = float(r.get("budget_j") or "nan")
    return rows


def paired_table(rows: Sequence[Mapping[str, Any]], reference: str, reps: int = 2000) -> list[dict[str, Any]]:
    """Per scenario and agent: reward, energy, violations, and paired differences to ``reference`` (CIs)."""
    rows = score_runs(rows)
    out = []
    for sid in dict.fromkeys(r["scenario"] for r in rows):
        ref = {r["seed"]: r for r in rows if r["scenario"] == sid and r["agent"] == reference}
        if not ref:
            raise ValueError(f"reference agent {reference!r} has no runs on {sid}; allowed: the agents in runs.csv")
        for agent in dict.fromkeys(r["agent"] for r in rows if r["scenario"] == sid):
            sel = sorted((r for r in rows if r["scenario"] == sid and r["agent"] == agent), key=lambda r: r["seed"])
            paired = [r for r in sel if r["seed"] in ref]
            rec: dict[str, Any] = {"scenario": sid, "agent": agent, "n": len(sel), "paired_n": len(paired)}
            for key in ("score", "cumulative_reward", "energy_j", "energy_ratio", "violation_rate"):
                rec[key] = interval_estimate(np.array([r[key] for r in sel]), reps=reps)
            for key in ("score", "cumulative_reward", "energy_j"):
                diff = np.array([r[key] - ref[r["seed"]][key] for r in paired])
                rec[f"delta_{key}"] = interval_estimate(diff, reps=reps) if len(diff) > 1 else (float("nan"),) * 3
            out.append(rec)
    return out


def within_budget(rec: Mapping[str, Any]) -> bool:
    """The agent's mean energy / budget is at most ``ENERGY_TOLERANCE`` (unknown budgets count as within)."""
    ratio = rec["energy_ratio"][0]
    return not ratio > ENERGY_TOLERANCE


def order(table: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ``HINDSIGHT`` references first (in that order), then within-budget agents, each group by normalised
    score (by reward only where no score exists)."""
    def key(r: Mapping[str, Any]) -> tuple[int, bool, float]:
        score = r["score"][0]
        rank = HINDSIGHT.index(r["agent"]) if r["agent"] in HINDSIGHT else len(HINDSIGHT)
        return (rank, not within_budget(r), -(r["cumulative_reward"][0] if np.isnan(score) else score))
    return sorted(table, key=key)


def markdown(table: Sequence[Mapping[str, Any]], reference: str, source: str) -> str:
    """One markdown table per scenario: hindsight references first, then within-budget agents by normalised score."""
    buf = io.StringIO()
    w = buf.write
    w(f"# RL agents against {reference}\n\nFrom `{source}`: mean [95% CI] over evaluation seeds; Δ = agent minus "
      f"{reference} on the same seed (paired). Score: normalised return, random = 0, oracle = 1 (paired by seed). "
      f"Energy / budget: episode energy over the fleet's budget; agents over {ENERGY_TOLERANCE:g} are listed after "
      "the others. Violation rate: share of task-rounds over their energy budget. References marked (reference) read "
      "the simulator and are listed first: they bound what a learner can reach.\n")

    def ci(t: tuple[float, float, float], fmt: str = ",.0f", sign: bool = False) -> str:
        if np.isnan(t[0]):
            return "n/a"
        f = ("+" if sign else "") + fmt
        return f"{t[0]:{f}} [{t[1]:{f}}, {t[2]:{f}}]"

    for sid in dict.fromkeys(r["scenario"] for r in table):
        w(f"\n## {sid}\n\n| agent | score | Δ score | reward | Δ reward | energy / budget | Δ energy (J) | violation rate |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|\n")
        for r in order([r for r in table if r["scenario"] == sid]):
            ref = r["agent"] == reference
            flag = (" (reference)" if r["agent"] in HINDSIGHT else "") + ("" if within_budget(r) else " (over budget)")
            w(f"| {r['agent']}{flag} | {ci(r['score'], '.2f')} | {'—' if ref else ci(r['delta_score'], '.2f', sign=True)} "
              f"| {ci(r['cumulative_reward'])} | {'—' if ref else ci(r['delta_cumulative_reward'], sign=True)} "
              f"| {ci(r['energy_ratio'], '.2f')} | {'—' if ref else ci(r['delta_energy_j'], sign=True)} "
              f"| {ci(r['violation_rate'], '.2f')} |\n")
    return buf.getvalue()


def run(args: Any) -> int:
    """Write RL_VS_REFERENCE.md: each agent's paired difference against the reference, from a leaderboard folder.

    ``args`` holds the options of its ``iov`` command, named as its flags (``iov`` builds it).
    """
    try:
        table = paired_table(read_runs(args.folder), args.reference, args.reps)
    except (FileNotFoundError, ValueError) as exc:
        raise BenchmarkError(str(exc)) from None
    md = markdown(table, args.reference, f"{args.folder}/runs.csv")
    write_text_atomic(args.folder / "RL_VS_REFERENCE.md", md)
    print(md)
    return 0

