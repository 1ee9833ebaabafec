"""Fit the fast surrogate's per-task learning curves to real LoRA runs and measure its error.

    IOV_DATA_DIR=../shared/data iov calibrate --phase all      # runs (hours on 2 cores) + fit
    iov calibrate --phase fit                                  # re-fit from the saved CSV

Phase ``run``: a grid of real runs (ranks x shard sizes x seeds x rounds, the three tasks side by side:
one vehicle per task, every vehicle trains and uploads every round) with the ``RealBackend`` in the
config's default LoRA regime (``--set key=value`` overrides any config field); each round's global dev
metric per task is appended to ``benchmarks/data/calibration_runs_<model>.csv`` (small, committed, so
fitting can be re-run without retraining), with the regime in every row.

Phase ``fit``: for each task, least squares of ``iov_env.learning.surrogate.predict_accuracy`` (the
surrogate's own formula, with its own sample accounting ``samples_per_round`` and ``rank_speed``) over
the training configurations; held-out configurations (whole runs never seen by the fit) give the
mean absolute error, in accuracy points, written with the parameters to
``iov_env/learning/calibration/<model>.json``. ``floor`` is fixed at the task's trivial metric,
``noniid_penalty``, ``stale_penalty`` and ``zero_pad_penalty`` keep their default priors (the grid
varies neither alpha, staleness nor aggregation), ``tokens_per_sample`` is measured from the
tokenised training split, ``noise_std`` is the residual standard deviation of the fit. The MAE is
reported against every seed's observation and against the seed mean of each held-out round, beside
the binomial noise floor ``sqrt(p (1 - p) / n_eval)`` of one evaluation on the dev subset. The JSON
records the model, the LoRA regime and the git commit the runs came from.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from collections import defaultdict
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import BenchmarkError
from benchmarks.studies.common import DATA_DIR, REPO_ROOT, git_commit, parse_overrides, use_default_data_dir
from iov_env.results import write_csv_atomic, write_text_atomic

RUN_FIELDS = ["config_id", "task", "metric_name", "rank", "shard_size", "local_steps", "batch_size", "round",
              "metric", "n_eval", "tokens_per_sample", "dirichlet_alpha", "round_wall_s", "seed", "regime", "commit"]
# the learning fields that make a regime: a calibration is only valid for the regime it was measured in
REGIME_FIELDS = ("lora_scaling", "target_modules", "lora_alpha", "lora_dropout", "learning_rate", "local_steps",
                 "batch_size", "max_seq_len", "head_lr_scale", "aggregation")
FITTED = ("ceiling", "rank_gap", "rank_half", "sample_scale", "speed_rank_half")
FLOOR = {"sst2": 0.5, "conll2003": 0.0, "copa": 0.5}


def grid(ranks: list[int], shards: list[int]) -> list[tuple[int, int]]:
    """All (rank, shard size) configurations."""
    return [(r, s) for r in ranks for s in shards]


def default_holdout(configs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Held-out configurations: interior ranks, one per shard size, never the extremes of the grid."""
    ranks = sorted({r for r, _ in configs})
    shards = sorted({s for _, s in configs})
    inner = ranks[1:-1] or ranks
    return [(inner[i % len(inner)], s) for i, s in enumerate(reversed(shards))]


def regime_of(config: Any) -> dict[str, Any]:
    """The LoRA regime of a config: the learning fields a calibration depends on."""
    ln = config.learning
    return {f: (list(getattr(ln, f)) if isinstance(getattr(ln, f), tuple) else getattr(ln, f)) for f in REGIME_FIELDS}


def regime_tag(regime: dict[str, Any]) -> str:
    """A compact, stable one-line form of a regime (stored in every CSV row)."""
    return json.dumps(regime, sort_keys=True, separators=(",", ":"))


def run_grid(args: argparse.Namespace, csv_path: Path) -> None:
    """Real runs for every (rank, shard, seed); rows appended (and the CSV rewritten atomically) per round."""
    import torch

    from iov_env.config import preset
    from iov_env.learning.backend import FleetLayout, RoundPlan
    from iov_env.learning.real import RealBackend

    # rounds far beyond the grid: every recorded round uses the same fixed dev subset (no full-dev final round)
    cfg = preset("tiny", fidelity="real", model_name_or_path=args.model, rounds=args.rounds + 1000,
                 num_vehicles=3, eval_subset_size=args.eval_subset,
                 dirichlet_alpha=args.dirichlet_alpha, **parse_overrides(args.set))
    backend = RealBackend(cfg)
    torch.set_num_threads(args.threads)
    tag = regime_tag(regime_of(cfg))
    commit = git_commit()
    print(f"# {backend.describe()}", flush=True)
    rows: list[dict[str, Any]] = []
    if csv_path.is_file() and args.resume:
        with csv_path.open() as fh:
            rows = list(csv.DictReader(fh))
    other = {r.get("regime", "") for r in rows} - {tag}
    if other:
        raise BenchmarkError(f"{csv_path} holds runs of another regime {sorted(other)}; this config's is {tag}. "
                         "Use --csv for a new file.")
    done = {(int(r["rank"]), int(r["shard_size"]), int(r["seed"])) for r in rows}
    k = cfg.num_tasks
    ln = cfg.learning
    todo = [(r, s, args.rounds, seed) for seed in args.seeds for r, s in grid(args.ranks, args.shards)]
    for spec in args.long:  # long horizons pin the ceiling
        rank, shard, num_rounds = (int(x) for x in spec.split(":"))
        todo += [(rank, shard, num_rounds, seed) for seed in args.seeds]
    for rank, shard, num_rounds, seed in todo:
        if (rank, shard, seed) in done:
            continue
        backend.reset(seed, FleetLayout.one_per_task(k, shard))
        run_rows = []
        for t in range(num_rounds):
            plan = RoundPlan.uniform(t, np.full(k, rank), ln.model_num_layers)
            t0 = time.perf_counter()
            res = backend.train_round(plan)
            wall = time.perf_counter() - t0
            for j, td in enumerate(backend.tasks):
                run_rows.append({
                    "config_id": f"r{rank}_s{shard}", "task": td.spec.name, "metric_name": td.spec.metric,
                    "rank": rank, "shard_size": shard, "local_steps": ln.local_steps, "batch_size": ln.batch_size,
                    "round": t, "metric": round(float(res.task_accuracy[j]), 4),
                    "n_eval": int(backend.last_task_metrics[j]["n"]),
                    "tokens_per_sample": round(float(backend.tokens_per_sample[j]), 3),
                    "dirichlet_alpha": cfg.tasks.dirichlet_alpha, "round_wall_s": round(wall, 2), "seed": seed,
                    "regime": tag, "commit": commit,
                })
            print(f"rank {rank:3d} shard {shard:4d} seed {seed} round {t}: wall {wall:5.1f} s  "
                  + "  ".join(f"{td.spec.name}={a:.3f}" for td, a in zip(backend.tasks, res.task_accuracy, strict=True)),
                  flush=True)
        rows.extend(run_rows)  # whole runs only: a killed run is redone, never half-counted
        write_csv_atomic(csv_path, rows, RUN_FIELDS)


def _predict(params: dict[str, float], task_rows: list[dict[str, Any]], hetero: float) -> np.ndarray:
    """The surrogate's task-accuracy prediction for recorded rounds (one uploading vehicle per task)."""
    from iov_env.learning.surrogate import TaskCurve, predict_accuracy, rank_speed, samples_per_round

    curve = TaskCurve(**params)
    rank = np.array([float(r["rank"]) for r in task_rows])
    shard = np.array([float(r["shard_size"]) for r in task_rows])
    steps = int(task_rows[0]["local_steps"])
    batch = int(task_rows[0]["batch_size"])
    rounds_done = np.array([int(r["round"]) + 1 for r in task_rows], dtype=float)
    samples = rounds_done * samples_per_round(steps, batch, shard) * rank_speed(curve, rank)
    return predict_accuracy(curve, rank, samples, hetero)


def _samples_seen(task_rows: list[dict[str, Any]]) -> np.ndarray:
    """Samples each recorded round's model absorbed at full rank speed (the fit's data horizon)."""
    from iov_env.learning.surrogate import samples_per_round

    shard = np.array([float(r["shard_size"]) for r in task_rows])
    done = np.array([int(r["round"]) + 1 for r in task_rows], dtype=float)
    return done * samples_per_round(int(task_rows[0]["local_steps"]), int(task_rows[0]["batch_size"]), shard)


def seed_mean_mae(rows: list[dict[str, Any]], pred: np.ndarray) -> float:
    """Mean absolute error against the seed mean of each (rank, shard, round): the expected curve's error."""
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r["rank"], r["shard_size"], r["round"])].append(i)
    y = np.array([float(r["metric"]) for r in rows])
    return float(np.mean([abs(float(np.mean(y[idx])) - float(np.mean(pred[idx]))) for idx in groups.values()]))


def binomial_floor_points(rows: list[dict[str, Any]]) -> float:
    """Binomial SD (points) of one evaluation at the rows' mean metric and dev-subset size."""
    p = float(np.mean([float(r["metric"]) for r in rows]))
    n = float(np.mean([float(r["n_eval"]) for r in rows]))
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1.0))


def fit(csv_path: Path, json_path: Path, model: str, holdout: list[tuple[int, int]] | None) -> dict[str, Any]:
    """Least-squares fit per task on training configs; MAE (points) on held-out configs; JSON written atomically."""
    from scipy.optimize import least_squares

    from iov_env.learning.surrogate import CALIBRATION_DIR, TaskCurve, heterogeneity

    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise BenchmarkError(f"{csv_path} has no runs; run --phase run first")
    defaults = json.loads((CALIBRATION_DIR / "default.json").read_text())["tasks"]
    configs = sorted({(int(r["rank"]), int(r["shard_size"])) for r in rows})
    held = holdout if holdout is not None else default_holdout(configs)
    out_tasks: dict[str, dict[str, float]] = {}
    report: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        hetero = heterogeneity(float(mine[0]["dirichlet_alpha"]))
        train = [r for r in mine if (int(r["rank"]), int(r["shard_size"])) not in held]
        test = [r for r in mine if (int(r["rank"]), int(r["shard_size"])) in held]
        y_train = np.array([float(r["metric"]) for r in train])
        base = {f.name: float(defaults[task].get(f.name, f.default)) for f in fields(TaskCurve)}  # form-2 fields: defaults
        base["floor"] = FLOOR.get(task, base["floor"])
        base["tokens_per_sample"] = float(mine[0]["tokens_per_sample"])
        lo = np.array([base["floor"], 0.0, 0.1, 20.0, 0.01])
        # sample_scale capped at 5x the most samples any run absorbed: beyond that it is unidentified and
        # would extrapolate a straight line (a COPA ceiling of 1.0) over long episodes
        most = float(np.max(_samples_seen(train)))
        hi = np.array([1.0, 0.6, 64.0, max(5.0 * most, 100.0), 64.0])
        x0 = np.clip(np.array([max(y_train.max(), base["floor"] + 0.01), 0.05, 2.0, 2000.0, 1.0]), lo, hi)

        def residual(x: np.ndarray, data: list[dict[str, Any]] = train, y: np.ndarray = y_train,
                     b: dict[str, float] = base, h: float = hetero) -> np.ndarray:
            p = dict(b, **dict(zip(FITTED, x, strict=True)))
            p["ceiling"] = p["ceiling"] + p["noniid_penalty"] * h  # fit the observed top; the prior's skew term stays
            return _predict(p, data, h) - y

        best = None
        for scale0 in (300.0, 2000.0, 20000.0):  # a few starts: the exponential scale is badly conditioned
            x0[3] = min(scale0, hi[3] * 0.99)
            sol = least_squares(residual, x0, bounds=(lo, hi), x_scale=np.array([0.1, 0.05, 2.0, 1000.0, 1.0]))
            if best is None or sol.cost < best.cost:
                best = sol
        assert best is not None
        params = dict(base, **dict(zip(FITTED, best.x.tolist(), strict=True)))
        params["ceiling"] += params["noniid_penalty"] * hetero
        params["noise_std"] = float(np.std(best.fun))
        mae_train = float(np.mean(np.abs(best.fun))) * 100
        mae_test = mae_mean = floor = float("nan")
        if test:
            y_test = np.array([float(r["metric"]) for r in test])
            pred = _predict(params, test, hetero)
            mae_test = float(np.mean(np.abs(pred - y_test))) * 100
            mae_mean = seed_mean_mae(test, pred) * 100
            floor = binomial_floor_points(test)
        out_tasks[task] = {k: round(float(v), 6) for k, v in params.items()}
        report[task] = {"mae_train_points": round(mae_train, 2), "mae_heldout_points": round(mae_test, 2),
                        "mae_heldout_seed_mean_points": round(mae_mean, 2),
                        "binomial_noise_floor_points": round(floor, 2),
                        "seeds": len({r.get("seed", "0") for r in mine}),
                        "n_train_points": len(train), "n_heldout_points": len(test),
                        "metric_range": [round(float(y_train.min()), 3), round(float(y_train.max()), 3)]}
        print(f"{task:10s} MAE train {mae_train:5.2f} pts  held-out {mae_test:5.2f} pts (seed means {mae_mean:5.2f}, "
              f"noise floor {floor:4.2f})  " + " ".join(f"{k}={params[k]:.4g}" for k in (*FITTED, "noise_std")),
              flush=True)
    regimes = {r.get("regime") or "" for r in rows}
    commits = sorted({r.get("commit") or "" for r in rows} - {""})
    seeds = sorted({int(r.get("seed") or 0) for r in rows})
    doc = {
        "model": model,
        "source": (f"fitted by benchmarks/calibrate.py to {len(configs)} (rank, shard) configurations x "
                   f"{len(seeds)} seeds of real RealBackend runs ({csv_path.name}); held-out configs {held}"),
        "regime": json.loads(regimes.pop()) if len(regimes) == 1 and "" not in regimes else None,
        "commit": commits,
        "seeds": seeds,
        "metric": {t: next(r["metric_name"] for r in rows if r["task"] == t) for t in out_tasks},
        "tasks": out_tasks,
        "fit": report,
    }
    buf = io.StringIO()
    json.dump(doc, buf, indent=2)
    write_text_atomic(json_path, buf.getvalue() + "\n")
    print(f"# wrote {json_path}", flush=True)
    return doc


def run(args: Any) -> int:
    """Run the calibration grid (``--phase run``), fit the surrogate (``fit``), or both (``all``).

    ``args`` holds the options of its ``iov`` command, named as its flags (``iov`` builds it).
    """
    name = Path(args.model.rstrip("/")).name
    csv_path = Path(args.csv) if args.csv else DATA_DIR / f"calibration_runs_{name}.csv"
    json_path = Path(args.json) if args.json else REPO_ROOT / "iov_env" / "learning" / "calibration" / f"{name}.json"
    if args.phase in ("run", "all"):
        use_default_data_dir()
        run_grid(args, csv_path)
    if args.phase in ("fit", "all"):
        holdout = [tuple(int(x) for x in h.split(":")) for h in args.holdout] if args.holdout else None
        fit(csv_path, json_path, name, holdout)
    return 0

