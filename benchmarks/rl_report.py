"""The RL agents against a reference agent (UCB-DUAL), paired by seed, from a leaderboard's ``runs.csv``.

    python -m benchmarks.rl_report results/leaderboard-rl --reference ucb_dual

For every scenario and agent: the episode reward and energy (mean and 95% stratified-bootstrap CI over
evaluation seeds), the budget violation rate beside it, and the paired differences to the reference
on the same seeds (same mobility, channel and data draws), so that seed-to-seed variation common to
both agents cancels. Writes ``<folder>/RL_VS_REFERENCE.md`` and prints it.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import interval_estimate
from iov_env.results import write_text_atomic


def read_runs(folder: str | Path) -> list[dict[str, Any]]:
    """The leaderboard's per-run rows with numbers as floats."""
    path = Path(folder) / "runs.csv"
    if not path.exists():
        raise FileNotFoundError(f"no runs.csv in {folder}; run python -m benchmarks.leaderboard --out {folder} first")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["seed"] = int(r["seed"])
        for k in ("cumulative_reward", "energy_j", "violation_rate", "accuracy_pts", "latency_s"):
            r[k] = float(r[k])
    return rows


def paired_table(rows: Sequence[Mapping[str, Any]], reference: str, reps: int = 2000) -> list[dict[str, Any]]:
    """Per scenario and agent: reward, energy, violations, and paired differences to ``reference`` (CIs)."""
    out = []
    for sid in dict.fromkeys(r["scenario"] for r in rows):
        ref = {r["seed"]: r for r in rows if r["scenario"] == sid and r["agent"] == reference}
        if not ref:
            raise ValueError(f"reference agent {reference!r} has no runs on {sid}; allowed: the agents in runs.csv")
        for agent in dict.fromkeys(r["agent"] for r in rows if r["scenario"] == sid):
            sel = sorted((r for r in rows if r["scenario"] == sid and r["agent"] == agent), key=lambda r: r["seed"])
            paired = [r for r in sel if r["seed"] in ref]
            rec: dict[str, Any] = {"scenario": sid, "agent": agent, "n": len(sel), "paired_n": len(paired)}
            for key in ("cumulative_reward", "energy_j", "violation_rate"):
                rec[key] = interval_estimate(np.array([r[key] for r in sel]), reps=reps)
            for key in ("cumulative_reward", "energy_j"):
                diff = np.array([r[key] - ref[r["seed"]][key] for r in paired])
                rec[f"delta_{key}"] = interval_estimate(diff, reps=reps) if len(diff) > 1 else (float("nan"),) * 3
            out.append(rec)
    return out


def markdown(table: Sequence[Mapping[str, Any]], reference: str, source: str) -> str:
    """One markdown table per scenario, agents by mean reward."""
    buf = io.StringIO()
    w = buf.write
    w(f"# RL agents against {reference}\n\nFrom `{source}`: mean [95% CI] over evaluation seeds; Δ = agent minus "
      f"{reference} on the same seed (paired). Violation rate: share of task-rounds over their energy budget.\n")

    def ci(t: tuple[float, float, float], fmt: str = ",.0f", sign: bool = False) -> str:
        f = ("+" if sign else "") + fmt
        return f"{t[0]:{f}} [{t[1]:{f}}, {t[2]:{f}}]"

    for sid in dict.fromkeys(r["scenario"] for r in table):
        w(f"\n## {sid}\n\n| agent | reward | Δ reward | energy (J) | Δ energy (J) | violation rate |\n"
          "|---|---:|---:|---:|---:|---:|\n")
        for r in sorted((r for r in table if r["scenario"] == sid), key=lambda r: -r["cumulative_reward"][0]):
            ref = r["agent"] == reference
            w(f"| {r['agent']} | {ci(r['cumulative_reward'])} | {'—' if ref else ci(r['delta_cumulative_reward'], sign=True)} "
              f"| {ci(r['energy_j'])} | {'—' if ref else ci(r['delta_energy_j'], sign=True)} "
              f"| {ci(r['violation_rate'], '.2f')} |\n")
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a leaderboard --out folder (with runs.csv)")
    p.add_argument("--reference", default="ucb_dual")
    p.add_argument("--reps", type=int, default=2000)
    args = p.parse_args(argv)
    try:
        table = paired_table(read_runs(args.folder), args.reference, args.reps)
    except (FileNotFoundError, ValueError) as exc:
        p.error(str(exc))
    md = markdown(table, args.reference, f"{args.folder}/runs.csv")
    write_text_atomic(args.folder / "RL_VS_REFERENCE.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
