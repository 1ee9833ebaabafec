"""Leaderboard: scenarios x agents x seeds -> results CSV, LEADERBOARD.md and plots.

    python -m benchmarks.leaderboard --out results/leaderboard
    python -m benchmarks.leaderboard --scenarios paper-v0 scale-90-v0 --agents ucb_dual homolora ppo_shared \
        --seeds 5 --sb3-timesteps 20000 --out results/lb

Agents are the names of ``agents.baselines.AGENTS`` plus ``ppo_shared``, ``a2c_shared`` and
``dqn_shared`` (Stable-Baselines3, one policy shared by all vehicles, trained per scenario and seed
before its evaluation episode on the same seed). Each agent runs under the env system it implies
(its aggregation) with the scenario's allocation and fault tolerance. Every run is seeded: the same
command gives the same numbers. Cells are means over seeds with 95% stratified-bootstrap CIs
(rliable); ranking is by the mean of the per-scenario reward rank.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent
from agents.baselines import AGENTS, make_agent
from agents.runner import run_decentralized
from benchmarks.scenarios import SCENARIOS, scenario, unavailable_reason
from benchmarks.stats import interval_estimate, iqm
from iov_env.results import save_figure_atomic, write_csv_atomic, write_text_atomic

SB3_AGENTS = {"ppo_shared": "PPO", "a2c_shared": "A2C", "dqn_shared": "DQN"}
DEFAULT_AGENTS = ("ucb_dual", "ucb1", "homolora", "hetlora", "flexlora", "fedra", "random", "greedy_oracle")
DEFAULT_SCENARIOS = ("tiny-v0", "paper-v0", "paper-tight-v0", "paper-rank-prior-v0", "scale-90-v0", "paper-sumo-v0")
# (record key, label, higher is better)
METRICS = (
    ("cumulative_reward", "reward", True),
    ("accuracy_pts", "final accuracy (pts)", True),
    ("latency_s", "end-to-end latency (s)", False),
    ("energy_j", "energy (J)", False),
    ("violation_rate", "budget violations", False),
)


def agent_factory(name: str, env_kwargs: dict[str, Any], seed: int, sb3_timesteps: int) -> Callable[[], Agent]:
    """A per-vehicle agent factory; SB3 agents are trained first on the same scenario and seed."""
    if name in SB3_AGENTS:
        from agents.sb3 import train_decentralized

        policy = train_decentralized(SB3_AGENTS[name], env_kwargs, total_timesteps=sb3_timesteps, seed=seed)
        return lambda: copy.deepcopy(policy)
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; allowed: {sorted([*AGENTS, *SB3_AGENTS])}")
    return lambda: make_agent(name)


def run_grid(
    scenario_ids: Sequence[str], agent_names: Sequence[str], seeds: Sequence[int], sb3_timesteps: int,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every (scenario, agent, seed) episode as one flat record."""
    records = []
    for sid in scenario_ids:
        kwargs = scenario(sid)
        for name in agent_names:
            for s in seeds:
                t0 = time.perf_counter()
                r = run_decentralized(agent_factory(name, kwargs, s, sb3_timesteps), kwargs, seed=s)
                records.append({
                    "scenario": sid, "agent": name, "seed": s,
                    "cumulative_reward": r["cumulative_reward"],
                    "accuracy_pts": 100.0 * r["final_accuracy"],
                    "latency_s": r["end_to_end_latency_s"],
                    "energy_j": r["total_energy_j"],
                    "violation_rate": r["budget_violation_rate"],
                    "wall_s": time.perf_counter() - t0,
                    "accuracy_trace": ";".join(f"{np.mean(row):.4f}" for row in r["task_accuracy"]),
                })
            progress(f"{sid:<22} {name:<14} {len(seeds)} seeds done")
    return records


def summarise(records: list[dict[str, Any]], reps: int) -> list[dict[str, Any]]:
    """Per scenario x agent x metric: mean with 95% CI, and IQM."""
    out = []
    for sid in dict.fromkeys(r["scenario"] for r in records):
        for name in dict.fromkeys(r["agent"] for r in records):
            sel = [r for r in records if r["scenario"] == sid and r["agent"] == name]
            for key, _, _ in METRICS:
                x = np.array([r[key] for r in sel], dtype=float)
                mean, lo, hi = interval_estimate(x, reps=reps)
                out.append({"scenario": sid, "agent": name, "metric": key, "mean": mean, "ci_lo": lo, "ci_hi": hi,
                            "iqm": iqm(x), "n": len(x)})
    return out


def ranking(summary: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Agents ordered by their mean rank of cumulative reward across scenarios (1 = best)."""
    ranks: dict[str, list[int]] = {}
    for sid in dict.fromkeys(r["scenario"] for r in summary):
        rows = [r for r in summary if r["scenario"] == sid and r["metric"] == "cumulative_reward"]
        for i, r in enumerate(sorted(rows, key=lambda r: -r["mean"]), start=1):
            ranks.setdefault(r["agent"], []).append(i)
    return sorted(((a, float(np.mean(v))) for a, v in ranks.items()), key=lambda t: t[1])


def markdown(summary: list[dict[str, Any]], seeds: Sequence[int], command: str, elapsed_s: float) -> str:
    """LEADERBOARD.md: overall ranking, then one table per scenario."""
    buf = io.StringIO()
    w = buf.write
    w("# iov-env leaderboard\n\n")
    w(f"`{command}` — seeds {list(seeds)}, {elapsed_s:.0f} s. Mean [95% CI] over seeds (rliable stratified "
      "bootstrap). Rank = mean rank of cumulative reward across scenarios.\n\n")
    w("| rank | agent | mean reward rank |\n|---:|---|---:|\n")
    for i, (agent, r) in enumerate(ranking(summary), start=1):
        w(f"| {i} | {agent} | {r:.2f} |\n")
    cell = {(r["scenario"], r["agent"], r["metric"]): r for r in summary}
    for sid in dict.fromkeys(r["scenario"] for r in summary):
        w(f"\n## {sid}\n\n`{scenario(sid)}`\n\n| agent | " + " | ".join(lbl for _, lbl, _ in METRICS) + " |\n")
        w("|---|" + "---:|" * len(METRICS) + "\n")
        agents = [a for a, _ in ranking([r for r in summary if r["scenario"] == sid])]
        for a in agents:
            cells = []
            for key, _, _ in METRICS:
                c = cell[(sid, a, key)]
                fmt = ".2f" if key == "violation_rate" else ".1f"
                cells.append(f"{c['mean']:{fmt}} [{c['ci_lo']:{fmt}}, {c['ci_hi']:{fmt}}]")
            w(f"| {a} | " + " | ".join(cells) + " |\n")
    return buf.getvalue()


def plot(records: list[dict[str, Any]], summary: list[dict[str, Any]], out: Path) -> list[Path]:
    """Per scenario: metric bars with CI whiskers, and mean accuracy per round for each agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for sid in dict.fromkeys(r["scenario"] for r in summary):
        agents = list(dict.fromkeys(r["agent"] for r in summary if r["scenario"] == sid))
        fig, grid = plt.subplots(2, 3, figsize=(13, 7))
        axes = grid.ravel()
        for ax, (key, label, _) in zip(axes, METRICS, strict=False):
            rows = [next(r for r in summary if r["scenario"] == sid and r["agent"] == a and r["metric"] == key)
                    for a in agents]
            means = np.array([r["mean"] for r in rows])
            err = np.array([[r["mean"] - r["ci_lo"] for r in rows], [r["ci_hi"] - r["mean"] for r in rows]])
            ax.barh(agents, means, xerr=err, color="#4c72b0", alpha=0.85)
            ax.set_title(label, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.invert_yaxis()
        ax = axes[-1]
        for a in agents:
            traces = [np.array(r["accuracy_trace"].split(";"), dtype=float)
                      for r in records if r["scenario"] == sid and r["agent"] == a and r["accuracy_trace"]]
            if traces:
                ax.plot(np.arange(1, len(traces[0]) + 1), 100 * np.mean(traces, axis=0), label=a)
        ax.set_title("mean task accuracy per round (pts)", fontsize=9)
        ax.legend(fontsize=6)
        fig.suptitle(sid)
        fig.tight_layout()
        paths.append(save_figure_atomic(out / f"{sid}.png", fig))
        plt.close(fig)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/leaderboard"))
    p.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS), help=f"from {sorted(SCENARIOS)}")
    p.add_argument("--agents", nargs="+", default=list(DEFAULT_AGENTS), help=f"from {sorted([*AGENTS, *SB3_AGENTS])}")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..n-1), at least 2")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--sb3-timesteps", type=int, default=20_000, help="training steps per SB3 agent, scenario and seed")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error(f"--seeds={args.seeds}: at least 2 seeds are needed for confidence intervals")
    unknown = [a for a in args.agents if a not in AGENTS and a not in SB3_AGENTS]
    if unknown:
        p.error(f"unknown agents {unknown}; allowed: {sorted([*AGENTS, *SB3_AGENTS])}")
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad:
        p.error(f"unknown scenarios {bad}; allowed: {sorted(SCENARIOS)}")
    scenario_ids = []
    for sid in args.scenarios:
        reason = unavailable_reason(sid)
        if reason:
            print(f"skipping {sid}: {reason}", file=sys.stderr)
        else:
            scenario_ids.append(sid)
    if not scenario_ids:
        p.error("no runnable scenario left")
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    records = run_grid(scenario_ids, args.agents, seeds, args.sb3_timesteps)
    summary = summarise(records, args.reps)
    command = "python -m benchmarks.leaderboard " + " ".join(argv if argv is not None else sys.argv[1:])
    md = markdown(summary, seeds, command, time.perf_counter() - t0)
    write_csv_atomic(args.out / "runs.csv", records)
    write_csv_atomic(args.out / "summary.csv", summary)
    write_text_atomic(args.out / "LEADERBOARD.md", md)
    if not args.no_plots:
        plot(records, summary, args.out)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
