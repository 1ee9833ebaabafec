"""Evidence for the real fidelity: per-task dev metric per federated round, MiniLM on the real data.

    IOV_DATA_DIR=../shared/data iov study curves --out results/learning_curves

Drives ``iov_env.parallel_env(preset="tiny", fidelity="real")`` with one fixed rank for every vehicle
(``--driver env``, default; vehicles out of coverage or out of budget skip rounds as the simulator
decides) or the ``RealBackend`` directly with every vehicle training every round
(``--driver backend``). Prints a table, writes ``learning_curves.csv`` and ``learning_curves.png``
(atomically) under ``--out``. The last round is evaluated on the full dev set.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import plots
from iov_env.results import write_csv_atomic

FIELDS = ["round", "task", "metric_name", "metric", "token_accuracy", "dev_loss", "n_eval", "n_trained",
          "n_uploaded", "round_wall_s", "train_s", "aggregate_s", "evaluate_s"]


def plot(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    """One panel per task: dev metric vs round, with the trivial baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    baseline = {"sst2": 0.5, "copa": 0.5, "conll2003": 0.0}
    for ax, task in zip(axes[0], tasks, strict=True):
        mine = [r for r in rows if r["task"] == task]
        ax.plot([r["round"] for r in mine], [r["metric"] for r in mine], marker="o", ms=3, label=mine[0]["metric_name"])
        if task == "conll2003":
            ax.plot([r["round"] for r in mine], [r["token_accuracy"] for r in mine], ls=":", label="token accuracy")
        ax.axhline(baseline.get(task, 0.0), color="grey", ls="--", lw=1,
                   label="all-O baseline" if task == "conll2003" else "chance")
        ax.set_title(task)
        ax.set_xlabel("round")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    plots.finish(fig, path, title, fontsize=9)


def _rows(round_index: int, backend: Any, n_trained: int, n_up: int, wall_s: float) -> list[dict[str, Any]]:
    out = []
    for td, m in zip(backend.tasks, backend.last_task_metrics, strict=True):
        out.append({
            "round": round_index, "task": td.spec.name, "metric_name": td.spec.metric,
            "metric": round(m[td.spec.metric], 4), "token_accuracy": round(m.get("token_accuracy", float("nan")), 4),
            "dev_loss": round(m["loss"], 4), "n_eval": int(m["n"]), "n_trained": n_trained, "n_uploaded": n_up,
            "round_wall_s": round(wall_s, 2),
            **{f"{k}_s": round(v, 2) for k, v in backend.last_timing_s.items()},
        })
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the episode and return one row per (round, task)."""
    import iov_env  # noqa: F401  (registers; cheap)
    from iov_env.config import preset
    from iov_env.sim import faults

    overrides: dict[str, Any] = {"fidelity": "real", "rounds": args.rounds, "model_name_or_path": args.model}
    if args.local_steps:
        overrides["local_steps"] = args.local_steps
    if args.dirichlet_alpha:
        overrides["dirichlet_alpha"] = args.dirichlet_alpha
    cfg = preset(args.preset, **overrides)
    rank_index = cfg.learning.rank_set.index(args.rank)
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    t_start = time.perf_counter()
    if args.driver == "env":
        env = iov_env.parallel_env(preset=args.preset, **overrides)
        env.reset(seed=args.seed)
        backend = env.simulator.backend
        print(f"# {backend.describe()}", flush=True)
        for r in range(cfg.episode.rounds):
            t0 = time.perf_counter()
            env.step({a: rank_index for a in env.agents})
            wall = time.perf_counter() - t0
            m = env.simulator.history[-1]
            trained = int(np.sum(m.active & (m.train_fraction > 0)))
            n_up = int(np.sum(m.active & (m.fault != faults.ABANDON)))
            rows += _rows(r, backend, trained, n_up, wall)
            _report(rows[-len(backend.tasks):])
            _save(out, rows, args)
        env.close()
    else:
        from iov_env.learning.backend import FleetLayout, RoundPlan
        from iov_env.learning.real import RealBackend

        backend = RealBackend(cfg)
        n, k = cfg.num_vehicles, cfg.num_tasks
        backend.reset(args.seed, FleetLayout.round_robin(cfg))
        print(f"# {backend.describe()}", flush=True)
        for r in range(cfg.episode.rounds):
            plan = RoundPlan.uniform(r, np.full(n, args.rank), cfg.learning.model_num_layers,
                                     vehicle_rsu=np.arange(n) % cfg.rsu.num_rsus)
            t0 = time.perf_counter()
            backend.train_round(plan)
            rows += _rows(r, backend, n, n, time.perf_counter() - t0)
            _report(rows[-k:])
            _save(out, rows, args)
    print(f"# total wall {time.perf_counter() - t_start:.1f} s; files under {out}", flush=True)
    return rows


def _report(rows: list[dict[str, Any]]) -> None:
    r = rows[0]
    parts = [f"{x['task']}={x['metric']:.3f}" + (f" (tok {x['token_accuracy']:.3f})" if x["task"] == "conll2003" else "")
             for x in rows]
    print(f"round {r['round']:2d}  wall {r['round_wall_s']:6.1f} s  trained {r['n_trained']}  " + "  ".join(parts),
          flush=True)


def _save(out: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    write_csv_atomic(out / "learning_curves.csv", rows, FIELDS)
    plot(out / "learning_curves.png", rows,
         f"{args.model}, preset {args.preset}, rank {args.rank}, driver {args.driver}, seed {args.seed}, "
         f"alpha {args.dirichlet_alpha or 'config'}")
