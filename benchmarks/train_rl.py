"""Train the RL agents on the leaderboard's scenarios: learning curves, plateau, checkpoints.

    iov train --scenarios paper-v1 paper-rank-prior-v1 \\
        --agents maskable_ppo_shared ppo_lag_shared ppo_shared --seeds 5 --env-steps 20000 --out results/rl
    iov leaderboard --checkpoints results/rl --agents ucb_dual maskable_ppo_shared ...

Every (scenario, agent, training seed) run trains one shared-parameter policy on the scenario's fast
world and evaluates it every ``--eval-every`` env steps on fixed validation episodes; it writes
``<out>/<scenario>/<agent>/seed<k>/``: ``curve.csv`` (env steps, return, energy, violations, lambda),
the resumable trainer state (SB3's own pickled zip: it is read back only by a rerun into the same
``--out``, which the folder's lock keeps to one command at a time), and at the end ``policy.json`` +
``policy.safetensors`` (the agent's checkpoint, tens of KB, loaded without unpickling) and ``done.json``. A rerun skips finished runs and resumes unfinished ones from their last evaluation;
a larger ``--env-steps`` continues finished runs from where they stopped. Runs fan out with
``--workers`` or ``--ray`` (``benchmarks.runs``).

Seeds: training runs use seeds ``TRAIN_SEED_BASE + k``, learning curves are measured on the validation
seeds ``VALIDATION_SEED_BASE + j``, and the leaderboard evaluates on seeds ``0 .. n-1``: three disjoint
sets, so no policy is scored on an episode it trained or was selected on.

An env step is one federated round (one ``env.step()``); the shared-parameter learners see one sample
per vehicle per round, so SB3's ``num_timesteps`` is env steps x vehicles. Curves report env steps.

Outputs beside the runs: ``curves.csv`` (mean and 95% CI over training seeds at every evaluation),
``plateau.csv`` (the measured plateau per scenario and agent, see ``plateau_step``) and one
``curves_<scenario>.png`` per scenario (return and energy vs env steps, UCB-DUAL and HomoLoRA on the
same validation episodes as references).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import plots, runs
from benchmarks.errors import BenchmarkError
from benchmarks.scenarios import SCENARIOS, scenario
from iov_env.results import write_csv_atomic, write_text_atomic

TRAIN_SEED_BASE = 1000
VALIDATION_SEED_BASE = 500
DEFAULT_AGENTS = ("maskable_ppo_shared", "ppo_lag_shared", "ppo_shared")
DEFAULT_SCENARIOS = ("tiny-v2", "paper-v2", "paper-tight-v2", "paper-rank-prior-v2", "scale-90-v2")
REFERENCE_AGENTS = ("ucb_dual", "homolora")
# per-slot rollout of 128 rounds x N vehicles; 5 epochs of minibatches of 256 vehicle-rounds
PPO_HP: dict[str, Any] = {"n_steps": 128, "batch_size": 256, "n_epochs": 5, "learning_rate": 3e-4, "gamma": 0.99}
# The masked learners (benchmarks/data/rl/v2/RL_DIAGNOSIS_v2.md has the measurements behind each choice):
# - gamma = 0, the fix: replaying one vehicle's rank change shows its effect on its own reward is immediate
#   (all of it for SST-2 and COPA, ~2/3 for CoNLL) and 0.04-1.3 reward units against 10-15 of noise given
#   its observation; a 40-round return adds 40 rounds of that noise. In the ablation every gamma = 0.99
#   setting scored <= 0.19 on paper-v2 and every gamma = 0 setting 0.68-0.81 (best fixed rank per task = 1).
# - task_heads (agents.task_heads: the actor reads only the task, a per-task rank table) with the larger step
#   (lr 1e-2, one minibatch per rollout, 10 epochs; at 3e-4 the table barely moves) is the setting the v2
#   table was trained with. With 2 runs each the ablation found plain MLP MaskablePPO at gamma = 0 and the
#   default step as good (0.81 [0.77, 0.85] against 0.68 [0.54, 0.81]); with 5 runs each the task heads
#   ended higher on validation (paper-v2 return 35,689 [35,645, 35,724] against 35,643 [35,588, 35,702]).
MASKED_HP: dict[str, Any] = {"n_steps": 128, "batch_size": 1152, "n_epochs": 10, "learning_rate": 1e-2, "gamma": 0.0,
                             "task_heads": True}
HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "ppo_shared": PPO_HP,
    "maskable_ppo_shared": MASKED_HP,
    # PI gains: lambda (reward/J) must reach ~0.5-1 within a few rollouts of a ~100% overspend, and the
    # proportional term answers at once while the integral holds the steady state (PID-Lagrangian)
    "ppo_lag_shared": {**MASKED_HP, "lagrangian": {"ki": 0.2, "kp": 0.5}},
    "a2c_shared": {"n_steps": 16},
    "dqn_shared": {"learning_starts": 1000, "buffer_size": 50_000},
    # RLlib counts its train batch in env steps: 128 rounds, like the SB3 rollouts
    "rllib_ppo": {"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 5, "lr": 3e-4, "gamma": 0.99},
}
METRIC_KEYS = ("return", "energy_j", "violation_rate")


def trained_agents() -> tuple[str, ...]:
    """Agent names this CLI trains: the SB3 shared-parameter agents and RLlib's multi-agent PPO."""
    from agents.sb3 import SHARED_AGENTS

    return (*SHARED_AGENTS, "rllib_ppo")


def run_dir(out: str | Path, scenario_id: str, agent: str, train_seed: int) -> Path:
    """Where one training run keeps its state, curve and checkpoint."""
    return Path(out) / scenario_id / agent / f"seed{train_seed}"


def trained_policy_path(out: str | Path, scenario_id: str, agent: str, index: int) -> Path:
    """The checkpoint of finished training run ``index`` (cycling when there are fewer runs than seeds)."""
    folder = Path(out) / scenario_id / agent
    done = sorted((d for d in folder.glob("seed*") if (d / "done.json").exists()), key=lambda d: int(d.name[4:]))
    if not done:
        raise FileNotFoundError(f"no finished training run of {agent} on {scenario_id} under {folder}; "
                                f"train it first: iov train --scenarios {scenario_id} --agents {agent} --out {out}")
    d = done[index % len(done)]
    return d / "policy.json" if (d / "policy.json").exists() else d / "policy"


def make_trainer(agent: str, env_kwargs: Mapping[str, Any], seed: int, hp: Mapping[str, Any]) -> Any:
    """A fresh trainer for ``agent`` (SB3Trainer or RLlibTrainer: learn / policy / save / load / close)."""
    if agent == "rllib_ppo":
        from agents.rllib import RLlibTrainer

        return RLlibTrainer(env_kwargs, seed=seed, **hp)
    from agents.sb3 import SHARED_AGENTS, SB3Trainer

    if agent not in SHARED_AGENTS:
        raise ValueError(f"unknown agent {agent!r}; allowed: {trained_agents()}")
    return SB3Trainer(SHARED_AGENTS[agent], env_kwargs, seed=seed, label=agent, **hp)


def load_trainer(agent: str, folder: Path) -> Any:
    """A trainer saved by ``save`` in ``folder``."""
    if agent == "rllib_ppo":
        from agents.rllib import RLlibTrainer

        return RLlibTrainer.load(folder)
    from agents.sb3 import SB3Trainer

    return SB3Trainer.load(folder)


def evaluate(policy: Any, env_kwargs: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, float]:
    """Mean episode return, energy and violation rate of ``policy`` on the validation ``seeds``."""
    import copy

    from agents.runner import run_decentralized

    outs = [run_decentralized(lambda: copy.deepcopy(policy), env_kwargs, seed=s) for s in seeds]
    return {
        "return": float(np.mean([o["cumulative_reward"] for o in outs])),
        "energy_j": float(np.mean([o["total_energy_j"] for o in outs])),
        "violation_rate": float(np.mean([o["budget_violation_rate"] for o in outs])),
        "corrections": float(np.sum([o["action_corrections"] for o in outs])),
    }


def train_run(job: dict[str, Any]) -> dict[str, Any]:
    """One training run, resumable: train to ``env_steps`` in ``eval_every`` chunks, evaluating after each."""
    import torch

    torch.set_num_threads(1)  # one core per run: parallelism comes from --workers, arithmetic stays identical
    folder = Path(job["dir"])
    env_kwargs = scenario(job["scenario"])
    curve_path, state_dir = folder / "curve.csv", folder / "trainer"
    settings = {k: job[k] for k in ("scenario", "agent", "seed", "eval_seeds", "hp")}
    settings_path = folder / "settings.json"
    if settings_path.exists() and json.loads(settings_path.read_text()) != json.loads(json.dumps(settings)):
        raise ValueError(f"{folder} was trained with other settings ({settings_path}); delete the folder to "
                         "retrain it, or train into another --out")
    write_text_atomic(settings_path, json.dumps(settings, indent=1))
    curve = _read_curve(curve_path)
    if curve and (state_dir / "trainer.json").exists():
        trainer = load_trainer(job["agent"], state_dir)
        if trainer.env_steps < int(curve[-1]["env_steps"]):  # killed between saving the state and the curve
            curve = [r for r in curve if int(r["env_steps"]) <= trainer.env_steps]
    else:
        trainer, curve = make_trainer(job["agent"], env_kwargs, job["seed"], job["hp"]), []
    t0 = time.perf_counter()
    try:
        if not curve:
            curve.append(_curve_row(trainer, evaluate(trainer.policy(), env_kwargs, job["eval_seeds"]), 0.0))
        while trainer.env_steps < job["env_steps"]:
            target = min(trainer.env_steps + job["eval_every"], job["env_steps"])
            trainer.learn((target - trainer.env_steps) * trainer.slots)
            row = _curve_row(trainer, evaluate(trainer.policy(), env_kwargs, job["eval_seeds"]), time.perf_counter() - t0)
            curve.append(row)
            # state first, then the curve: a kill in between is detected on resume (see above)
            trainer.save(state_dir)
            write_csv_atomic(curve_path, curve)
        write_csv_atomic(curve_path, curve)
        policy = trainer.policy()
        policy.save(folder / "policy", scenario=job["scenario"])
    finally:
        trainer.close()
    done = {"scenario": job["scenario"], "agent": job["agent"], "seed": job["seed"], "env_steps": trainer.env_steps,
            "timesteps": trainer.num_timesteps, "eval_seeds": job["eval_seeds"], "hp": job["hp"]}
    write_text_atomic(folder / "done.json", json.dumps(done, indent=1, default=str))
    return {**done, "final": curve[-1]}


def _curve_row(trainer: Any, metrics: Mapping[str, float], wall_s: float) -> dict[str, Any]:
    lam = getattr(getattr(trainer, "multiplier", None), "value", float("nan"))
    return {"env_steps": trainer.env_steps, "timesteps": trainer.num_timesteps, **metrics, "lambda": lam,
            "wall_s": round(wall_s, 2)}


def _read_curve(path: Path) -> list[dict[str, Any]]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    for r in rows:
        r["env_steps"], r["timesteps"] = int(r["env_steps"]), int(r["timesteps"])
    return rows


def is_done(job: Mapping[str, Any]) -> bool:
    """Whether the run finished with at least the requested env steps (a larger budget continues it)."""
    path = Path(job["dir"]) / "done.json"
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return int(done["env_steps"]) >= int(job["env_steps"])


# -- aggregation -----------------------------------------------------------------------------------
def aggregate(out: Path, jobs: Sequence[Mapping[str, Any]], reps: int = 1000) -> list[dict[str, Any]]:
    """Per scenario, agent and evaluation step: mean and 95% CI over the finished training runs of each metric."""
    from benchmarks.stats import interval_estimate

    rows = []
    groups: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
    for job in jobs:
        # finished runs only: an unfinished one would cut every seed's curve short (the common schedule)
        done = (Path(job["dir"]) / "done.json").exists()
        groups.setdefault((job["scenario"], job["agent"]), []).append(
            _read_curve(Path(job["dir"]) / "curve.csv") if done else [])
    for (sid, agent), curves in groups.items():
        curves = [c for c in curves if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)  # the evaluation schedule every seed has reached
        for k in range(n):
            row: dict[str, Any] = {"scenario": sid, "agent": agent, "env_steps": int(curves[0][k]["env_steps"]),
                                   "seeds": len(curves)}
            for key in (*METRIC_KEYS, "lambda"):
                x = np.array([float(c[k][key]) for c in curves])
                if np.isnan(x).all():
                    continue
                mean, lo, hi = interval_estimate(x, reps=reps) if len(x) > 1 else (float(x[0]),) * 3
                row.update({f"{key}_mean": mean, f"{key}_lo": lo, f"{key}_hi": hi})
            rows.append(row)
    return rows


NO_CHANGE = "no change beyond seed noise"


def plateau_step(steps: Sequence[int], mean: Sequence[float], ci_halfwidth: float, frac: float = 0.95,
                 window: int = 3) -> int | str | None:
    """The first evaluation from which the curve stays within ``1 - frac`` of its total change of its final level.

    The mean curve is smoothed over ``window`` evaluations (trailing), its final level is the mean of
    the last quarter of the evaluations (at least two) and its total change is that level minus the
    first evaluation (the untrained policy). Returns ``NO_CHANGE`` when the total change is within the
    95% CI half-width of the final level across seeds (training moved nothing measurable), and None
    when the curve only gets there in its last quarter (it may still be moving: the budget was too
    small to tell).
    """
    m = np.asarray(mean, dtype=float)
    if m.size < 4:
        return None
    tail = max(2, m.size // 4)
    final = float(m[-tail:].mean())
    change = final - m[0]
    if abs(change) <= ci_halfwidth:
        return NO_CHANGE
    smooth = np.array([m[max(0, k - window + 1): k + 1].mean() for k in range(m.size)])
    # within (1 - frac) of the change from the final level, or within seed noise: overshoots count as outside
    band = max((1.0 - frac) * abs(change), ci_halfwidth)
    outside = np.flatnonzero(np.abs(smooth - final) > band)
    first = int(outside[-1]) + 1 if outside.size else 0
    return int(steps[first]) if first < m.size - tail else None


def plateaus(curves: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``plateau_step`` of the return and of the energy for every scenario and agent."""
    out = []
    for sid, agent in dict.fromkeys((r["scenario"], r["agent"]) for r in curves):
        rows = [r for r in curves if r["scenario"] == sid and r["agent"] == agent]
        steps = [r["env_steps"] for r in rows]
        rec: dict[str, Any] = {"scenario": sid, "agent": agent, "seeds": rows[-1]["seeds"], "budget_env_steps": steps[-1]}
        for key in ("return", "energy_j"):
            half = (rows[-1][f"{key}_hi"] - rows[-1][f"{key}_lo"]) / 2
            p = plateau_step(steps, [r[f"{key}_mean"] for r in rows], half)
            rec[f"{key}_plateau_env_steps"] = p if p is not None else "not reached"
            rec[f"{key}_initial_mean"] = rows[0][f"{key}_mean"]
            rec[f"{key}_final_mean"] = rows[-1][f"{key}_mean"]
        out.append(rec)
    return out


def references(scenario_ids: Sequence[str], eval_seeds: Sequence[int]) -> list[dict[str, Any]]:
    """UCB-DUAL's and HomoLoRA's return and energy on the same validation episodes."""
    from agents.baselines import make_agent
    from agents.runner import run_decentralized

    rows = []
    for sid in scenario_ids:
        kwargs = scenario(sid)
        for name in REFERENCE_AGENTS:
            outs = [run_decentralized(lambda n=name: make_agent(n), kwargs, seed=s) for s in eval_seeds]
            rows.append({"scenario": sid, "agent": name,
                         "return": float(np.mean([o["cumulative_reward"] for o in outs])),
                         "energy_j": float(np.mean([o["total_energy_j"] for o in outs])),
                         "violation_rate": float(np.mean([o["budget_violation_rate"] for o in outs]))})
    return rows


def plot(curves: Sequence[Mapping[str, Any]], refs: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """curves_<scenario>.png: return and energy vs env steps, mean and 95% CI band per agent, references dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for sid in dict.fromkeys(r["scenario"] for r in curves):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        for ax, key, label in zip(axes, ("return", "energy_j"), ("episode return (sum of utilities)", "episode energy (J)"),
                                  strict=True):
            for i, agent in enumerate(dict.fromkeys(r["agent"] for r in curves if r["scenario"] == sid)):
                rows = [r for r in curves if r["scenario"] == sid and r["agent"] == agent]
                x = [r["env_steps"] for r in rows]
                color = f"C{i}"
                ax.plot(x, [r[f"{key}_mean"] for r in rows], color=color, label=f"{agent} (n={rows[0]['seeds']})")
                ax.fill_between(x, [r[f"{key}_lo"] for r in rows], [r[f"{key}_hi"] for r in rows], color=color, alpha=0.2)
            for j, ref in enumerate(r for r in refs if r["scenario"] == sid):
                ax.axhline(ref[key], color="k", ls=("--", ":")[j % 2], lw=1, label=ref["agent"])
            ax.set_xlabel("env steps (federated rounds)")
            ax.set_title(label, fontsize=10)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        paths.append(plots.finish(fig, out / f"curves_{sid}.png",
                                  f"{sid}: validation episodes, mean and 95% CI over training seeds"))
    return paths


def run(args: Any) -> int:
    """Train the RL agents (resumable), then write their learning curves, references, plateaus and plots.

    ``args`` holds the options of its ``iov`` command, named as its flags (``iov`` builds it).
    """
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad:
        raise BenchmarkError(f"unknown scenarios {bad}; allowed: {sorted(SCENARIOS)}")
    unknown = [a for a in args.agents if a not in trained_agents()]
    if unknown:
        raise BenchmarkError(f"unknown agents {unknown}; allowed: {list(trained_agents())}")
    if args.first_seed < 0:
        raise BenchmarkError(f"--first-seed={args.first_seed}: at least 0")
    for name, v in (("--seeds", args.seeds), ("--env-steps", args.env_steps), ("--eval-every", args.eval_every),
                    ("--eval-episodes", args.eval_episodes), ("--workers", args.workers)):
        if v < 1:
            raise BenchmarkError(f"{name}={v}: at least 1")
    if VALIDATION_SEED_BASE + args.eval_episodes > TRAIN_SEED_BASE:
        raise BenchmarkError(f"--eval-episodes={args.eval_episodes}: validation seeds would reach the training seeds")
    overrides = {}
    for kv in args.set:
        key, sep, value = kv.partition("=")
        if not sep:
            raise BenchmarkError(f"--set {kv!r}: expected KEY=VALUE")
        overrides[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
    eval_seeds = [VALIDATION_SEED_BASE + j for j in range(args.eval_episodes)]
    jobs = [
        {"scenario": sid, "agent": agent, "seed": TRAIN_SEED_BASE + k, "env_steps": args.env_steps,
         "eval_every": args.eval_every, "eval_seeds": eval_seeds, "hp": {**HYPERPARAMETERS[agent], **overrides},
         "dir": str(run_dir(args.out, sid, agent, TRAIN_SEED_BASE + k))}
        for sid in args.scenarios for agent in args.agents for k in range(args.first_seed, args.first_seed + args.seeds)
    ]
    command = args.command
    try:
        # one writer per --out: two trainings into one folder would interleave their runs' states and curves
        with runs.lock_folder(args.out, command):
            _train_and_report(args, jobs, eval_seeds)
    except runs.FolderLockedError as exc:
        raise BenchmarkError(str(exc)) from None
    return 0


def _train_and_report(args: Any, jobs: list[dict[str, Any]], eval_seeds: list[int]) -> None:
    """Train what is not done, then write the curves, references, plateau and plots (``args.out`` is locked)."""
    todo = [] if args.report_only else [j for j in jobs if not is_done(j)]
    finished = sum((Path(j["dir"]) / "done.json").exists() for j in jobs) if args.report_only else len(jobs) - len(todo)
    print(f"{finished} of {len(jobs)} training runs finished; training {len(todo)}", file=sys.stderr)
    runs.execute(train_run, todo, workers=args.workers, ray_address=args.ray, desc="train_rl")
    curves = aggregate(args.out, jobs, reps=args.reps)
    refs = references(args.scenarios, eval_seeds)
    write_csv_atomic(args.out / "curves.csv", curves)
    write_csv_atomic(args.out / "references.csv", refs)
    plat = plateaus(curves)
    write_csv_atomic(args.out / "plateau.csv", plat)
    plot(curves, refs, args.out)
    for r in plat:
        print(f"{r['scenario']:<22} {r['agent']:<20} budget {r['budget_env_steps']:>7} env steps; plateau: return "
              f"{r['return_plateau_env_steps']}, energy {r['energy_j_plateau_env_steps']}; final return "
              f"{r['return_final_mean']:.1f}, energy {r['energy_j_final_mean']:.1f} J")

