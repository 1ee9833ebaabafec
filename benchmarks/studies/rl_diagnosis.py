"""Why a learner does or does not find the per-task rank: the signal one decision carries, and its noise.

    iov study rl-diagnosis --scenarios paper-v2 paper-rank-prior-v2 --out benchmarks/data/rl/v2/diagnosis
    iov study rl-diagnosis --ablation results/abl --scenarios paper-v2 --out benchmarks/data/rl/v2/diagnosis

Three measurements on validation seeds (``train_rl.VALIDATION_SEED_BASE`` on), none on evaluation seeds:

* ``fixed_rank_landscape``: the episode return of every fixed rank per task (|R|^K policies), over random
  on the same seeds, with its energy / budget. Shows how good the best per-task rank is and how flat the
  top of the landscape is.
* ``decision_credit``: replay an episode with one vehicle's rank changed at one round (every other
  action the same, the same seed, so the world's draws are the same) and split the return's change
  into that vehicle's reward in that round, its later rewards, its task-mates' and the rest of the fleet's.
  That is the exact effect of one decision, which the learner has to pick out of the reward's noise; it
  says which discount credits it (all immediate: gamma = 0 loses nothing) and how large it is.
* ``reward_noise``: the spread of one vehicle's reward under random ranks, raw and after a least-squares
  fit on its observation and executed rank (held-out residual: the noise a value baseline cannot remove),
  and after subtracting its task-mates' mean reward (a difference reward).

Every result is seeded and written atomically: ``rl_landscape_<scenario>.csv``, ``rl_credit_<scenario>.csv``,
``rl_noise_<scenario>.csv``, and ``RL_DIAGNOSIS_DATA.md`` with the tables (``run``). ``--ablation DIR``
(``ablation``) instead scores the ``iov train`` outputs under DIR, one folder per setting, between random and
the best fixed rank per task: ``ablation_<scenario>.csv`` and ``ABLATION.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import largest_feasible_at_most
from benchmarks.scenarios import scenario
from benchmarks.train_rl import VALIDATION_SEED_BASE
from iov_env.results import write_csv_atomic, write_text_atomic

Policy = Callable[[int, np.ndarray, int, int], int]  # (vehicle, mask, task, round) -> rank index


def play(env: Any, seed: int, policy: Policy) -> tuple[np.ndarray, np.ndarray, float]:
    """One episode: rewards (rounds x vehicles), each vehicle's task, and the fleet's energy / budget."""
    _, infos = env.reset(seed=seed)
    rewards, energy, budget, t = [], 0.0, 0.0, 0
    while env.agents:
        actions = {a: policy(i, infos[a]["action_mask"], int(infos[a]["task_index"]), t)
                   for i, a in enumerate(env.possible_agents)}
        _, r, _, _, infos = env.step(actions)
        rewards.append([r[a] for a in env.possible_agents])
        energy += sum(float(infos[a]["cost"]) for a in env.possible_agents)
        budget += sum(float(infos[a]["budget"]) for a in env.possible_agents)
        t += 1
    tasks = np.array([int(infos[a]["task_index"]) for a in env.possible_agents])
    return np.asarray(rewards), tasks, energy / budget if budget > 0 else float("nan")


def random_policy(seed: int) -> Policy:
    """A uniformly random feasible rank, seeded."""
    rng = np.random.default_rng(seed)

    def act(_i: int, mask: np.ndarray, _task: int, _t: int) -> int:
        idx = np.flatnonzero(mask)
        return int(rng.choice(idx)) if idx.size else 0
    return act


def per_task(ranks: Sequence[int]) -> Policy:
    """A fixed rank index per task, corrected by the mask like the env would."""
    return lambda _i, mask, task, _t: largest_feasible_at_most(ranks[task], mask, len(mask))


def fixed_rank_landscape(sid: str, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Return over random (same seeds) and energy / budget of every fixed rank per task, best first."""
    import iov_env

    env = iov_env.parallel_env(**scenario(sid))
    k, num_tasks = env.config.num_ranks, env.config.num_tasks
    base = np.array([play(env, s, random_policy(s))[0].sum() for s in seeds])
    rows = []
    for combo in itertools.product(range(k), repeat=num_tasks):
        out = [play(env, s, per_task(combo)) for s in seeds]
        gain = np.array([o[0].sum() for o in out]) - base
        rows.append({"scenario": sid, "ranks": "/".join(str(env.config.learning.rank_set[c]) for c in combo),
                     "return_over_random": float(gain.mean()),
                     "se": float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else float("nan"),
                     "energy_ratio": float(np.mean([o[2] for o in out]))})
    env.close()
    return sorted(rows, key=lambda r: -r["return_over_random"])


def decision_credit(sid: str, base_ranks: Sequence[int], seeds: Sequence[int],
                    rounds: Sequence[int]) -> list[dict[str, Any]]:
    """Mean and standard error of the return's change when one vehicle deviates from ``base_ranks`` once.

    Per (task, rank index): the deviating vehicle's reward in that round (``own_now``), its rewards from
    then on (``own_rest``), its task's (``task_rest``) and the fleet's (``fleet_rest``).
    """
    import iov_env

    env = iov_env.parallel_env(**scenario(sid))
    k, length = env.config.num_ranks, env.config.episode.rounds
    bad = [t for t in rounds if not 0 <= t < length]
    if bad:
        env.close()
        raise ValueError(f"rounds {bad} are outside {sid}'s episode; allowed: 0 .. {length - 1}")
    cells: dict[tuple[int, int], list[list[float]]] = {}
    for seed in seeds:
        r0, tasks, _ = play(env, seed, per_task(base_ranks))
        for t0 in rounds:
            for v in range(len(tasks)):
                for rank in range(k):
                    if rank == base_ranks[tasks[v]]:
                        continue

                    def dev(i: int, mask: np.ndarray, task: int, t: int, v: int = v, rank: int = rank,
                            t0: int = t0) -> int:
                        target = rank if (i, t) == (v, t0) else base_ranks[task]
                        return largest_feasible_at_most(target, mask, len(mask))
                    r1, _, _ = play(env, seed, dev)
                    d = r1[t0:] - r0[t0:]
                    same = tasks == tasks[v]
                    cells.setdefault((int(tasks[v]), rank), []).append(
                        [d[0, v], d[:, v].sum(), d[:, same].sum(), d.sum()])
    names = env.config.tasks.tasks
    rank_set = env.config.learning.rank_set
    env.close()
    rows = []
    for (task, rank), vals in sorted(cells.items()):
        x = np.asarray(vals)
        se = x.std(axis=0, ddof=1) / np.sqrt(len(x))
        rec: dict[str, Any] = {"scenario": sid, "task": names[task], "rank": rank_set[rank],
                               "base_rank": rank_set[base_ranks[task]], "n": len(x)}
        for j, key in enumerate(("own_now", "own_rest", "task_rest", "fleet_rest")):
            rec[key], rec[f"{key}_se"] = float(x[:, j].mean()), float(se[j])
        rows.append(rec)
    return rows


def reward_noise(sid: str, seeds: Sequence[int], holdout: float = 0.3) -> list[dict[str, Any]]:
    """Per task: one vehicle's reward spread under random ranks, raw, given (observation, rank), and as a
    difference to its active task-mates' mean, given the same; fitted on the first seeds, measured on the rest."""
    import iov_env

    env = iov_env.parallel_env(**scenario(sid))
    names, k = env.config.tasks.tasks, env.config.num_ranks
    data: list[tuple[int, int, np.ndarray, float, float, int]] = []  # (episode, task, obs, reward, mates, rank)
    for e, seed in enumerate(seeds):
        act = random_policy(seed)
        obs, infos = env.reset(seed=seed)
        t = 0
        while env.agents:
            before = {a: obs[a] for a in env.agents}
            actions = {a: act(i, infos[a]["action_mask"], 0, t) for i, a in enumerate(env.possible_agents)}
            obs, r, _, _, infos = env.step(actions)
            on = [a for a in env.possible_agents if infos[a]["active"]]
            for a in on:
                mates = [r[b] for b in on if b != a and infos[b]["task_index"] == infos[a]["task_index"]]
                data.append((e, int(infos[a]["task_index"]), before[a], float(r[a]),
                             float(np.mean(mates)) if mates else np.nan, int(actions[a])))
            t += 1
    env.close()
    n_fit = int(round(len(seeds) * (1 - holdout)))
    rows = []
    for task in range(len(names)):
        sel = [d for d in data if d[1] == task]
        ep = np.array([d[0] for d in sel])
        x = np.array([d[2] for d in sel], dtype=float)
        y = np.array([d[3] for d in sel])
        mates = np.array([d[4] for d in sel])
        onehot = (np.array([d[5] for d in sel])[:, None] == np.arange(k)[None]).astype(float)
        feats = np.c_[x, x**2, onehot]
        fit = ep < n_fit
        has = ~np.isnan(mates)
        rows.append({"scenario": sid, "task": names[task], "samples": len(y), "reward_sd": float(y.std()),
                     "resid_sd_given_obs_rank": _heldout_resid_sd(feats, y, fit, np.ones_like(has)),
                     "resid_sd_difference_reward": _heldout_resid_sd(feats, np.where(has, y - mates, 0.0), fit, has)})
    return rows


def ablation_rows(root: Path, sid: str, agent: str = "maskable_ppo_shared") -> list[dict[str, Any]]:
    """One row per ``iov train`` output under ``root`` (one folder per setting): the final validation return,
    mean and 95% CI over training runs, and as a score between random (0) and the best fixed rank per task
    (1) on the same validation episodes (the first ``seeds`` of ``train_rl``'s validation seeds)."""
    import csv
    import json

    rows = []
    for folder in sorted(p for p in Path(root).iterdir() if (p / "curves.csv").exists()):
        with open(folder / "curves.csv", newline="") as fh:
            curve = [r for r in csv.DictReader(fh) if r["scenario"] == sid and r["agent"] == agent]
        runs = sorted((folder / sid / agent).glob("seed*/settings.json"))
        if not curve or not runs:
            continue
        settings = json.loads(runs[0].read_text())
        rows.append({"setting": folder.name, "runs": int(curve[-1]["seeds"]), "env_steps": int(curve[-1]["env_steps"]),
                     "eval_seeds": settings["eval_seeds"], "hp": settings["hp"],
                     **{k: float(curve[-1][f"return_{k}"]) for k in ("mean", "lo", "hi")}})
    if not rows:
        raise FileNotFoundError(f"no `iov train` output for {sid}/{agent} under {root}")
    seeds = rows[0]["eval_seeds"]
    if any(r["eval_seeds"] != seeds for r in rows):
        raise ValueError(f"the settings under {root} were validated on different seeds; allowed: one --eval-episodes")
    land = fixed_rank_landscape(sid, seeds)
    import iov_env

    env = iov_env.parallel_env(**scenario(sid))
    rand = float(np.mean([play(env, s, random_policy(s))[0].sum() for s in seeds]))
    env.close()
    best = rand + land[0]["return_over_random"]
    for r in rows:
        for k in ("mean", "lo", "hi"):
            r[f"score_{k}"] = (r[k] - rand) / (best - rand)
        r["best_fixed"], r["random"] = land[0]["ranks"], rand
    return rows


def _heldout_resid_sd(feats: np.ndarray, target: np.ndarray, fit: np.ndarray, ok: np.ndarray) -> float:
    """Spread of ``target`` on the held-out rows after a least-squares fit on ``feats`` of the ``fit`` rows."""
    w, *_ = np.linalg.lstsq(feats[fit & ok], target[fit & ok], rcond=None)
    return float(np.std(target[~fit & ok] - feats[~fit & ok] @ w))


def markdown(sid: str, landscape: Sequence[dict], credit: Sequence[dict], noise: Sequence[dict], top: int = 5,
             rounds: Sequence[int] | None = None) -> str:
    """The three tables of one scenario (``rounds``: where the credit's deviations were made)."""
    out = [f"## {sid}\n", "Fixed rank per task (validation seeds), return over random on the same seeds:\n",
           "| ranks (per task) | return over random | energy / budget |", "|---|---:|---:|"]
    out += [f"| {r['ranks']} | {r['return_over_random']:+.1f} ± {r['se']:.1f} | {r['energy_ratio']:.2f} |"
            for r in landscape[:top]]
    uniform = [r for r in landscape if len(set(r["ranks"].split("/"))) == 1]
    out += [f"| {r['ranks']} (one rank) | {r['return_over_random']:+.1f} ± {r['se']:.1f} | {r['energy_ratio']:.2f} |"
            for r in uniform]
    if credit:
        out += ["", "One vehicle's rank changed in one round (rounds " + ", ".join(map(str, rounds or [])) + ") from the "
                "best fixed rank per task above (the base column), everything else replayed: change of its reward that "
                "round, of its rewards to the end, of its task's and of the fleet's (mean ± s.e.):\n",
                "| task | base | rank | own, this round | own, to the end | task, to the end | fleet, to the end |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {r['task']} | {r['base_rank']} | {r['rank']} | {r['own_now']:+.2f} ± {r['own_now_se']:.2f} | "
                f"{r['own_rest']:+.2f} ± {r['own_rest_se']:.2f} | {r['task_rest']:+.2f} ± {r['task_rest_se']:.2f} | "
                f"{r['fleet_rest']:+.2f} ± {r['fleet_rest_se']:.2f} |" for r in credit]
    out += ["", "One vehicle's reward under random ranks: spread, and held-out residual spread given its observation "
            "and rank (what a value baseline leaves), and of the difference to its task-mates' mean:\n",
            "| task | samples | reward sd | residual sd given obs, rank | difference reward's residual sd |",
            "|---|---:|---:|---:|---:|"]
    out += [f"| {r['task']} | {r['samples']} | {r['reward_sd']:.1f} | {r['resid_sd_given_obs_rank']:.1f} | "
            f"{r['resid_sd_difference_reward']:.1f} |" for r in noise]
    return "\n".join(out) + "\n"


def run(scenarios: Sequence[str], out: Path, landscape_seeds: int = 4, credit_seeds: int = 6,
        credit_rounds: Sequence[int] = (3, 15, 30), noise_seeds: int = 60, command: str = "") -> str:
    """Run the three measurements on each scenario; write its CSVs and ``RL_DIAGNOSIS_DATA.md`` into ``out``.

    Every input is checked before the first (minutes-long) measurement: a seed count below 2 or a credit round
    outside a scenario's episode is a ``ValueError`` naming what is allowed. ``command`` is the provenance line.
    Returns the Markdown written.
    """
    import iov_env

    for name, n in (("landscape_seeds", landscape_seeds), ("credit_seeds", credit_seeds), ("noise_seeds", noise_seeds)):
        if n < 2:
            raise ValueError(f"{name}={n}: at least 2 (a spread needs two)")
    if not credit_rounds:
        raise ValueError("credit_rounds is empty; allowed: one or more rounds of the episode")
    rank_sets = {}
    for sid in scenarios:
        env = iov_env.parallel_env(**scenario(sid))
        rounds, rank_sets[sid] = env.config.episode.rounds, env.config.learning.rank_set
        env.close()
        bad = [t for t in credit_rounds if not 0 <= t < rounds]
        if bad:
            raise ValueError(f"credit rounds {bad} are outside {sid}'s episode; allowed: 0 .. {rounds - 1}")

    def seeds(n: int) -> list[int]:
        return [VALIDATION_SEED_BASE + j for j in range(n)]

    by = f"Written by `{command}` on validation seeds" if command else "On validation seeds"
    parts = ["# RL diagnosis data\n", f"{by} {VALIDATION_SEED_BASE}+ (never the evaluation seeds).\n"]
    for sid in scenarios:
        land = fixed_rank_landscape(sid, seeds(landscape_seeds))
        best = [rank_sets[sid].index(int(x)) for x in land[0]["ranks"].split("/")]
        credit = decision_credit(sid, best, seeds(credit_seeds), credit_rounds)
        noise = reward_noise(sid, seeds(noise_seeds))
        write_csv_atomic(Path(out) / f"rl_landscape_{sid}.csv", land)
        write_csv_atomic(Path(out) / f"rl_credit_{sid}.csv", credit)
        write_csv_atomic(Path(out) / f"rl_noise_{sid}.csv", noise)
        parts.append(markdown(sid, land, credit, noise, rounds=credit_rounds))
    text = "\n".join(parts)
    write_text_atomic(Path(out) / "RL_DIAGNOSIS_DATA.md", text)
    return text


def ablation(root: Path, scenarios: Sequence[str], out: Path, command: str = "") -> str:
    """Score the ``iov train`` outputs under ``root`` (one folder per setting) on each scenario
    (``ablation_rows``); write ``ablation_<scenario>.csv`` and ``ABLATION.md`` into ``out``; return the Markdown."""
    parts = ["# RL ablation\n", (f"Written by `{command}`. " if command else "")
             + "Each setting: `iov train` into its own folder; the final validation return (mean [95% CI] over training "
             "runs) and the same as a score: random = 0, the best fixed rank per task = 1, on the same validation "
             "episodes.\n"]
    for sid in scenarios:
        rows = ablation_rows(root, sid)
        write_csv_atomic(Path(out) / f"ablation_{sid}.csv", [{k: v for k, v in r.items() if k != "eval_seeds"}
                                                             for r in rows])
        parts += [f"## {sid}\n", f"Best fixed rank per task on these episodes: {rows[0]['best_fixed']}.\n",
                  "| setting | runs | rounds | validation return | score | hyperparameters |", "|---|---:|---:|---:|---:|---|"]
        parts += [f"| {r['setting']} | {r['runs']} | {r['env_steps']} | {r['mean']:,.0f} [{r['lo']:,.0f}, {r['hi']:,.0f}] "
                  f"| {r['score_mean']:.2f} [{r['score_lo']:.2f}, {r['score_hi']:.2f}] | "
                  + ", ".join(f"{k}={v}" for k, v in r["hp"].items()) + " |" for r in rows]
        parts.append("")
    text = "\n".join(parts)
    write_text_atomic(Path(out) / "ABLATION.md", text)
    return text
