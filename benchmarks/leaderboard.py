"""Leaderboard: scenarios x agents x seeds -> results CSV, LEADERBOARD.md and plots.

    python -m benchmarks.leaderboard --out results/leaderboard
    python -m benchmarks.leaderboard --scenarios paper-v0 scale-90-v0 --agents ucb_dual homolora ppo_shared \
        --seeds 5 --sb3-timesteps 20000 --out results/lb

Agents are the names of ``agents.baselines.AGENTS`` plus ``ppo_shared``, ``a2c_shared`` and
``dqn_shared`` (Stable-Baselines3, one policy shared by all vehicles, trained per scenario and seed
before its evaluation episode on the same seed). Each agent runs under the env system it implies
(its aggregation) with the scenario's allocation and fault tolerance. Every run is seeded: the same
command gives the same numbers, and seed s is the same world for every agent.

Scoring (``benchmarks/scoring.py``): per run a normalised score (random = 0, oracle = 1, paired by
seed; ``random`` and ``oracle`` are always run) and the energy ratio and violation share; per agent
the IQM with stratified-bootstrap 95% CIs over seeds x scenarios, the probability of improvement over
UCB-DUAL and the paired difference to it; per scenario the headroom (oracle - random in paired
standard errors; under 10 the scenario is flagged and left out of the aggregate). The headline ranks
the agents within budget (mean energy / budget <= 1.05 on every scenario kept); the others are listed
below with their violation. Outputs: runs.csv, summary.csv, scores.csv, LEADERBOARD.md, per scenario
<id>.png (metrics) and <id>-return-vs-energy.png.
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
from agents.oracle import Oracle, covers
from agents.runner import env_config_for, run_decentralized
from benchmarks import scoring
from benchmarks.scenarios import SCENARIOS, scenario, unavailable_reason
from iov_env.results import save_figure_atomic, write_csv_atomic, write_text_atomic

SB3_AGENTS = {"ppo_shared": "PPO", "a2c_shared": "A2C", "dqn_shared": "DQN"}
DEFAULT_AGENTS = ("ucb_dual", "ucb1", "homolora", "hetlora", "flexlora", "fedra", "greedy", "random", "oracle")
REFERENCES = (scoring.REFERENCE_LOW, scoring.REFERENCE_HIGH)  # the score's 0 and 1, always run
DEFAULT_SCENARIOS = ("tiny-v0", "paper-v0", "paper-tight-v0", "paper-rank-prior-v0", "scale-90-v0")
# (record key, label, higher is better)
METRICS = (
    ("cumulative_reward", "reward", True),
    ("accuracy_pts", "final accuracy (pts)", True),
    ("latency_s", "end-to-end latency (s)", False),
    ("energy_j", "energy (J)", False),
    ("energy_ratio", "energy / budget", False),
    ("violation_rate", "task-rounds over budget", False),
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
        oracle_kwargs = env_config_for(Oracle(), kwargs)
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
                    "budget_j": r["total_budget_j"],
                    "energy_ratio": r["energy_ratio"],
                    "violation_rate": r["budget_violation_rate"],
                    "wall_s": time.perf_counter() - t0,
                    "accuracy_trace": ";".join(f"{np.mean(row):.4f}" for row in r["task_accuracy"]),
                    **scoring.oracle_fields(r.get("agent_state_vehicle_0", {})),
                    "bounded_by": scoring.REFERENCE_HIGH if covers(r["env_kwargs"], oracle_kwargs) else "",
                })
            progress(f"{sid:<22} {name:<14} {len(seeds)} seeds done")
    return records


def summarise(records: list[dict[str, Any]], reps: int) -> list[dict[str, Any]]:
    """Per scenario x agent x metric: mean with 95% CI, and IQM."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in records))
    return scoring.metric_summary(records, [k for k, _, _ in METRICS], "agent", scenarios, world="scenario", reps=reps)


def markdown(
    summary: list[dict[str, Any]], scores: dict[str, Any], seeds: Sequence[int], command: str, elapsed_s: float
) -> str:
    """LEADERBOARD.md: the constraint-aware ranking, headroom, the oracle's check, then per-scenario tables."""
    buf = io.StringIO()
    w = buf.write
    w("# iov-env leaderboard\n\n")
    w(f"`{command}` — seeds {list(seeds)}, {elapsed_s:.0f} s. Every comparison is paired by seed (seed s is the same "
      "world for every agent) and every score is shown beside the energy it cost.\n\n")
    w(scoring.report(scores["scored"], scores["headroom"], scores["agents"], scores["checks"], scores["worlds"],
                     describe=lambda sid: f"`{scenario(sid)}`"))
    w("\n## Metrics per scenario\n\nMean [95% CI] over seeds (rliable stratified bootstrap).\n")
    cell = {(r["scenario"], r["agent"], r["metric"]): r for r in summary}
    for sid in dict.fromkeys(r["scenario"] for r in summary):
        w(f"\n### {sid}\n\n| agent | " + " | ".join(lbl for _, lbl, _ in METRICS) + " |\n")
        w("|---|" + "---:|" * len(METRICS) + "\n")
        for a in dict.fromkeys(r["agent"] for r in summary if r["scenario"] == sid):
            cells = []
            for key, _, _ in METRICS:
                c = cell[(sid, a, key)]
                fmt = ".2f" if key in ("violation_rate", "energy_ratio") else ".1f"
                cells.append(scoring.fmt_ci(c["mean"], c["ci_lo"], c["ci_hi"], fmt))
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
        cols = (len(METRICS) + 2) // 2  # one panel per metric, then the accuracy traces
        fig, grid = plt.subplots(2, cols, figsize=(4.4 * cols, 7))
        axes = grid.ravel()
        for extra in axes[len(METRICS) + 1:]:
            extra.set_visible(False)
        for ax, (key, label, _) in zip(axes, METRICS, strict=False):
            rows = [next(r for r in summary if r["scenario"] == sid and r["agent"] == a and r["metric"] == key)
                    for a in agents]
            means = np.array([r["mean"] for r in rows])
            err = np.array([[r["mean"] - r["ci_lo"] for r in rows], [r["ci_hi"] - r["mean"] for r in rows]])
            ax.barh(agents, means, xerr=err, color="#4c72b0", alpha=0.85)
            ax.set_title(label, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.invert_yaxis()
        ax = axes[len(METRICS)]
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
    missing = [a for a in REFERENCES if a not in args.agents]
    if missing:
        print(f"adding {missing}: the normalised score's references (random = 0, oracle = 1)", file=sys.stderr)
        args.agents = [*args.agents, *missing]
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
    write_csv_atomic(args.out / "runs.csv", records)  # first: the runs survive a failure in the statistics
    summary = summarise(records, args.reps)
    scores = scoring.score_all(records, reps=args.reps)
    command = "python -m benchmarks.leaderboard " + " ".join(argv if argv is not None else sys.argv[1:])
    md = markdown(summary, scores, seeds, command, time.perf_counter() - t0)
    write_csv_atomic(args.out / "summary.csv", summary)
    write_csv_atomic(args.out / "scores.csv", [
        {k: v for k, v in r.items() if k not in ("accuracy_trace", "certificate")} for r in scores["scored"]
    ])
    write_text_atomic(args.out / "LEADERBOARD.md", md)
    if not args.no_plots:
        plot(records, summary, args.out)
        scoring.plot_return_vs_energy(scores["scored"], scores["worlds"], args.out)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
