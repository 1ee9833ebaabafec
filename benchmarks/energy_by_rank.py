"""What a rank costs: the nominal energy of one vehicle-round at each rank, beside the per-vehicle budget.

    python -m benchmarks.energy_by_rank --scenarios paper-v2 paper-tight-v2 tiny-v2

Per scenario, under the random policy over seeds ``0 .. --seeds - 1``, the mean over active vehicle-rounds
of the simulator's planned energy at each rank (the table the action mask is built from), with its 10th-90th
percentile, and the per-vehicle budget of a round (``energy_budget_j_per_vehicle_round``). It says where the
budget binds: which ranks cost more than a vehicle's share.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.decision_analysis import policy_rng, random_actions
from benchmarks.scenarios import SCENARIOS, scenario


def energy_by_rank(env_kwargs: dict[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """Per rank: mean and 10th/90th percentile of the planned energy (J) over active vehicle-rounds."""
    from iov_env.envs.parallel import resolve_config
    from iov_env.sim.simulator import IoVSimulator

    cfg = resolve_config(None, **env_kwargs)
    sim = IoVSimulator(cfg)
    tables = []
    for seed in seeds:
        sim.reset(seed)
        rng = policy_rng(seed)
        while not sim.done:
            st = sim.state
            tables.append(st.energy_table_j[st.active])
            sim.step(random_actions(st.mask, st.active, rng))
    sim.close()
    energy = np.concatenate(tables)
    return {
        "ranks": [int(r) for r in cfg.learning.rank_set],
        "mean_j": energy.mean(axis=0).tolist(),
        "p10_j": np.percentile(energy, 10, axis=0).tolist(),
        "p90_j": np.percentile(energy, 90, axis=0).tolist(),
        "budget_j": float(cfg.energy.energy_budget_j_per_vehicle_round),
    }


def markdown(rows: dict[str, dict[str, Any]]) -> str:
    """One line per scenario: energy per rank (mean [p10, p90]) and the budget."""
    ranks = next(iter(rows.values()))["ranks"]
    out = ["| scenario | budget (J) | " + " | ".join(f"r={r} (J)" for r in ranks) + " |",
           "|---|---:|" + "---:|" * len(ranks)]
    for sid, r in rows.items():
        out.append(f"| {sid} | {r['budget_j']:g} | " + " | ".join(
            f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in zip(r["mean_j"], r["p10_j"], r["p90_j"], strict=True)) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", nargs="+", default=["tiny-v2", "paper-v2", "paper-tight-v2", "scale-90-v2"],
                   choices=sorted(SCENARIOS), metavar="ID")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    print(markdown({sid: energy_by_rank(scenario(sid), range(args.seeds)) for sid in args.scenarios}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
