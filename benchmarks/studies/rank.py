"""Does the LoRA rank change what is learned? A study through the project's own RealBackend and env.

    IOV_DATA_DIR=../shared/data iov study rank run --mode centralised \\
        --ranks 1 8 64 --scalings standard rslora --targets query,value all-linear --lrs 3e-4 1e-3 --seeds 0 1 2
    IOV_DATA_DIR=../shared/data iov study rank run --mode federated \\
        --ranks 1 64 --scalings rslora --targets all-linear --lrs 1e-3 --seeds 0 1 2
    iov study rank report

``run --mode centralised`` drives ``RealBackend`` with one vehicle per task holding ``--shard``
training examples (so one federated client: centralised training), ``--rounds`` rounds of
``--steps`` local steps each, and evaluates every round's model on a fixed dev subset (``--eval-subset``, default 1,000: all of
SST-2's 872, a third of CoNLL's 3,250 sentences), so each run gives
the metric after ``steps, 2 steps, ...`` local steps. ``run --mode federated`` drives
``iov_env.parallel_env(preset="tiny", fidelity="real")`` with every vehicle at one fixed rank and the
energy budget lifted (no rank is masked for energy); the last round is scored on the full dev set.
One run = (mode, regime, rank, seed); a regime = (scaling, target modules, learning rate, local
steps, head learning-rate scale, alpha). Rows are appended to ``benchmarks/data/rank_study_<mode>.csv``
(atomically, after every finished run; ``run`` skips runs already there, so a killed study resumes).
``--part I/N`` runs every N-th run only, into its own CSV, so N processes can share a machine.

``report`` reads the CSVs and prints, per mode, regime and task, the mean metric per rank with 95%
t-intervals over seeds and the paired (same seed) difference between the largest and smallest rank;
it writes ``rank_study.md`` and ``rank_study_<mode>.png`` (metric vs rank per regime, 95% CIs).
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import plots
from benchmarks.errors import BenchmarkError
from benchmarks.studies.common import DATA_DIR
from iov_env.results import read_csv_rows, write_csv_atomic, write_text_atomic

MODES = ("centralised", "federated")
FIELDS = ["mode", "regime", "lora_scaling", "target_modules", "learning_rate", "local_steps", "head_lr_scale",
          "lora_alpha", "rank", "seed", "task", "metric_name", "round", "steps_done", "metric", "n_eval",
          "executed_rank", "wall_s", "model", "device", "data_source"]
NO_BUDGET = {"energy_budget_j_per_vehicle_round": 1e6, "vehicle_energy_j": 1e9}  # nothing masked for energy


@dataclass(frozen=True)
class Regime:
    """How LoRA is fine-tuned: the knobs the study varies besides the rank."""

    lora_scaling: str
    target_modules: tuple[str, ...]
    learning_rate: float
    local_steps: int
    head_lr_scale: float = 10.0
    lora_alpha: float = 32.0

    @property
    def tag(self) -> str:
        """A short stable name, e.g. ``rslora/all-linear/lr1e-03/s10/h10/a32``."""
        targets = "+".join(self.target_modules)
        return (f"{self.lora_scaling}/{targets}/lr{self.learning_rate:.0e}/s{self.local_steps}"
                f"/h{self.head_lr_scale:g}/a{self.lora_alpha:g}")

    def overrides(self) -> dict[str, Any]:
        """Config keyword overrides of this regime."""
        out = asdict(self)
        out["target_modules"] = tuple(self.target_modules)
        return out


def regimes(scalings: Sequence[str], targets: Sequence[str], lrs: Sequence[float], steps: Sequence[int],
            head_scales: Sequence[float], alphas: Sequence[float]) -> list[Regime]:
    """The full factorial grid of regimes (``targets`` entries are comma-separated module lists)."""
    return [Regime(s, tuple(t.split(",")), float(lr), int(st), float(h), float(a))
            for s, t, lr, st, h, a in itertools.product(scalings, targets, lrs, steps, head_scales, alphas)]


# -- running ---------------------------------------------------------------------------------------
def _base_config(args: argparse.Namespace, regime: Regime, num_tasks: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"fidelity": "real", "model_name_or_path": args.model, "device": args.device,
                          "tasks": tuple(args.tasks), **regime.overrides()}
    if num_tasks == 1:
        kw["budget_cap_fraction"] = 1.0  # config rule: the cap must be >= 1/num_tasks
    if args.rank_set:
        kw["rank_set"] = tuple(args.rank_set)
    return kw


def run_centralised(args: argparse.Namespace, regime: Regime, rank: int, seed: int) -> list[dict[str, Any]]:
    """One client per task holding ``--shard`` examples; every round evaluated on the same dev subset."""
    import torch

    from iov_env.config import preset
    from iov_env.learning.backend import FleetLayout, RoundPlan
    from iov_env.learning.real import RealBackend

    k = len(args.tasks)
    cfg = preset("tiny", num_vehicles=k, rounds=args.rounds + 1000, eval_subset_size=args.eval_subset,
                 local_val_fraction=0.05, **_base_config(args, regime, k))
    backend = RealBackend(cfg)
    torch.set_num_threads(args.threads)
    backend.reset(seed, FleetLayout.one_per_task(k, args.shard))
    rows = []
    for t in range(args.rounds):
        plan = RoundPlan.uniform(t, np.full(k, rank), cfg.learning.model_num_layers)
        t0 = time.perf_counter()
        res = backend.train_round(plan)
        wall = time.perf_counter() - t0
        for j, td in enumerate(backend.tasks):
            rows.append(_row(args, "centralised", regime, rank, seed, td, t, (t + 1) * regime.local_steps,
                             float(res.task_accuracy[j]), int(backend.last_task_metrics[j]["n"]), float(rank), wall,
                             backend))
        _progress(rows[-k:])
    backend.close()
    return rows


def run_federated(args: argparse.Namespace, regime: Regime, rank: int, seed: int) -> list[dict[str, Any]]:
    """The tiny world through the env, every vehicle at ``rank``; the last round on the full dev set."""
    import torch

    import iov_env

    kw = _base_config(args, regime, len(args.tasks))
    kw.update(NO_BUDGET, rounds=args.rounds)
    env = iov_env.parallel_env(preset=args.preset, **kw)
    env.reset(seed=seed)
    torch.set_num_threads(args.threads)
    backend = env.simulator.backend
    rank_index = env.config.learning.rank_set.index(rank)
    rows = []
    steps_done = np.zeros(env.config.num_vehicles)
    for t in range(env.config.episode.rounds):
        t0 = time.perf_counter()
        env.step({a: rank_index for a in env.agents})
        wall = time.perf_counter() - t0
        m = env.simulator.history[-1]
        steps_done += m.train_fraction * regime.local_steps * m.active
        task_of = env.simulator.vehicle_task
        for j, td in enumerate(backend.tasks):
            mine = m.active & (task_of == j)
            executed = float(m.rank[mine].mean()) if mine.any() else 0.0
            rows.append(_row(args, "federated", regime, rank, seed, td, t, float(steps_done[task_of == j].mean()),
                             float(m.task_accuracy[j]), int(backend.last_task_metrics[j]["n"]), executed, wall, backend))
        _progress(rows[-len(backend.tasks):])
    env.close()
    return rows


def _row(args: argparse.Namespace, mode: str, regime: Regime, rank: int, seed: int, td: Any, round_index: int,
         steps_done: float, metric: float, n_eval: int, executed_rank: float, wall: float, backend: Any) -> dict[str, Any]:
    return {
        "mode": mode, "regime": regime.tag, "lora_scaling": regime.lora_scaling,
        "target_modules": "+".join(regime.target_modules), "learning_rate": regime.learning_rate,
        "local_steps": regime.local_steps, "head_lr_scale": regime.head_lr_scale, "lora_alpha": regime.lora_alpha,
        "rank": rank, "seed": seed, "task": td.spec.name, "metric_name": td.spec.metric, "round": round_index,
        "steps_done": round(steps_done, 2), "metric": round(metric, 4), "n_eval": n_eval,
        "executed_rank": round(executed_rank, 2), "wall_s": round(wall, 2), "model": args.model,
        "device": args.device, "data_source": td.source,
    }


def _progress(rows: list[dict[str, Any]]) -> None:
    r = rows[0]
    print(f"{r['mode']:11s} {r['regime']:40s} rank {r['rank']:3d} seed {r['seed']} round {r['round']:2d} "
          f"wall {r['wall_s']:6.1f} s  " + "  ".join(f"{x['task']}={x['metric']:.3f}" for x in rows), flush=True)


def read_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Rows of the given study CSVs (missing files are skipped)."""
    return list(read_csv_rows(paths))


def calibration_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Calibration runs (benchmarks/studies/calibration.py) as federated study rows: the env with one vehicle per task.

    Their mode names the shard and horizon (``federated s150 x6``), so they are never pooled with the
    tiny-episode runs; only rows that record their regime are used.
    """
    import json

    out: list[dict[str, Any]] = []
    horizon: dict[tuple[str, str, str], int] = defaultdict(int)
    rows = [r for r in read_rows(paths) if r.get("regime")]
    for r in rows:
        key = (r["regime"], r["shard_size"], r["config_id"])
        horizon[key] = max(horizon[key], int(r["round"]) + 1)
    for r in rows:
        reg = json.loads(r["regime"])
        regime = Regime(reg["lora_scaling"], tuple(reg["target_modules"]), float(reg["learning_rate"]),
                        int(reg["local_steps"]), float(reg["head_lr_scale"]), float(reg["lora_alpha"]))
        rounds = horizon[(r["regime"], r["shard_size"], r["config_id"])]
        out.append({"mode": f"federated s{r['shard_size']} x{rounds}", "regime": regime.tag, "rank": r["rank"],
                    "seed": r["seed"], "task": r["task"], "metric_name": r["metric_name"], "round": r["round"],
                    "metric": r["metric"], "n_eval": r["n_eval"]})
    return out


def run(args: Any) -> None:
    """Every (regime, rank, seed) of the grid not yet in the CSV, in a fixed order."""
    part, parts = (int(x) for x in args.part.split("/"))
    if not 0 <= part < parts:
        raise BenchmarkError(f"--part {args.part}: allowed I/N with 0 <= I < N")
    csv_path = Path(args.csv) if args.csv else DATA_DIR / (
        f"rank_study_{args.mode}.csv" if parts == 1 else f"rank_study_{args.mode}.part{part}of{parts}.csv")
    rows = read_rows([csv_path])
    done = {(r["regime"], int(r["rank"]), int(r["seed"])) for r in rows}
    grid = regimes(args.scalings, args.targets, args.lrs, args.steps, args.head_scales, args.alphas)
    # seeds outermost: a partial study already covers every regime and rank with the first seeds
    todo = [(g, r, s) for s in args.seeds for g in grid for r in args.ranks][part::parts]
    runner = run_centralised if args.mode == "centralised" else run_federated
    print(f"# {len(todo)} runs in this part, {sum((g.tag, r, s) in done for g, r, s in todo)} already in {csv_path}",
          flush=True)
    for regime, rank, seed in todo:
        if (regime.tag, rank, seed) in done:
            continue
        rows.extend(runner(args, regime, rank, seed))
        write_csv_atomic(csv_path, rows, FIELDS)  # a finished run is never lost; a killed one is redone


# -- reporting -------------------------------------------------------------------------------------
def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval over seeds (nan bounds for a single value)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def final_metrics(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], dict[int, float]]:
    """(mode, regime, task, rank) -> {seed: metric of the run's last round}."""
    last: dict[tuple[str, str, str, int, int], tuple[int, float]] = {}
    for r in rows:
        key = (r["mode"], r["regime"], r["task"], int(r["rank"]), int(r["seed"]))
        t = int(r["round"])
        if key not in last or t > last[key][0]:
            last[key] = (t, float(r["metric"]))
    out: dict[tuple[str, str, str, int], dict[int, float]] = defaultdict(dict)
    for (mode, regime, task, rank, seed), (_, metric) in last.items():
        out[(mode, regime, task, rank)][seed] = metric
    return out


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (mode, regime, task): mean and 95% CI per rank (points) and the paired top-minus-bottom rank gap."""
    finals = final_metrics(rows)
    groups: dict[tuple[str, str, str], dict[int, dict[int, float]]] = defaultdict(dict)
    for (mode, regime, task, rank), by_seed in finals.items():
        groups[(mode, regime, task)][rank] = by_seed
    out = []
    for (mode, regime, task), by_rank in sorted(groups.items()):
        ranks = sorted(by_rank)
        entry: dict[str, Any] = {"mode": mode, "regime": regime, "task": task, "ranks": {}}
        for r in ranks:
            entry["ranks"][r] = (*(100 * v for v in t_interval(list(by_rank[r].values()))), len(by_rank[r]))
        lo_r, hi_r = ranks[0], ranks[-1]
        paired = sorted(set(by_rank[lo_r]) & set(by_rank[hi_r]))
        if len(ranks) > 1 and paired:
            diffs = [100 * (by_rank[hi_r][s] - by_rank[lo_r][s]) for s in paired]
            entry["gap"] = (lo_r, hi_r, *t_interval(diffs), len(paired))
        out.append(entry)
    return out


def _fmt(mean: float, lo: float, hi: float) -> str:
    return f"{mean:.1f}" if math.isnan(lo) else f"{mean:.1f} [{lo:.1f}, {hi:.1f}]"


def modes_of(summary: list[dict[str, Any]]) -> list[str]:
    """The modes present, the study's own first, then calibration grids."""
    present = list(dict.fromkeys(s["mode"] for s in summary))
    return [m for m in MODES if m in present] + sorted(m for m in present if m not in MODES)


def markdown(summary: list[dict[str, Any]]) -> str:
    """One table per mode: metric (points) per rank with 95% CIs, and the paired rank gap."""
    lines = []
    for mode in modes_of(summary):
        mine = [s for s in summary if s["mode"] == mode]
        if not mine:
            continue
        ranks = sorted({r for s in mine for r in s["ranks"]})
        lines += [f"### {mode}", "", "| regime | task | " + " | ".join(f"r={r}" for r in ranks)
                  + " | top - bottom rank, paired by seed | seeds |",
                  "|---|---|" + "---:|" * len(ranks) + "---:|---:|"]
        for s in mine:
            cells = [_fmt(*s["ranks"][r][:3]) if r in s["ranks"] else "" for r in ranks]
            gap = s.get("gap")
            gap_txt = f"r{gap[1]}-r{gap[0]}: {_fmt(*gap[2:5])}" if gap else ""
            seeds = min(v[3] for v in s["ranks"].values())
            lines.append(f"| {s['regime']} | {s['task']} | " + " | ".join(cells) + f" | {gap_txt} | {seeds} |")
        lines.append("")
    return "\n".join(lines)


def plot(path: Path, summary: list[dict[str, Any]], mode: str) -> None:
    """Metric vs rank (log2 axis) per task, one line per regime, 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [s for s in summary if s["mode"] == mode]
    tasks = list(dict.fromkeys(s["task"] for s in mine))
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for s in (x for x in mine if x["task"] == task):
            ranks = sorted(s["ranks"])
            mean = np.array([s["ranks"][r][0] for r in ranks])
            err = np.array([[s["ranks"][r][0] - s["ranks"][r][1], s["ranks"][r][2] - s["ranks"][r][0]] for r in ranks]).T
            ax.errorbar(ranks, mean, yerr=np.nan_to_num(err), marker="o", ms=3, capsize=3, label=s["regime"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("LoRA rank")
        ax.set_ylabel("dev metric (points)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="best")
    plots.finish(fig, path, f"rank study, {mode}: mean over seeds, 95% t-intervals", fontsize=9)


def report(args: argparse.Namespace) -> str:
    """Tables and plots from every study CSV."""
    paths = [Path(p) for p in args.csv] if args.csv else sorted(DATA_DIR.glob("rank_study_*.csv"))
    calib = [Path(p) for p in args.calibration] if args.calibration is not None else sorted(
        DATA_DIR.glob("calibration_runs_*.csv"))
    rows = read_rows(paths) + calibration_rows(calib)
    if not rows:
        raise BenchmarkError(f"no study rows in {[str(p) for p in paths + calib]}; run the study first")
    summary = summarise(rows)
    text = markdown(summary)
    out = Path(args.out)
    write_text_atomic(out / "rank_study.md", text + "\n")
    for mode in modes_of(summary):
        plot(out / f"rank_study_{mode.replace(' ', '_')}.png", summary, mode)
    print(text)
    return text
