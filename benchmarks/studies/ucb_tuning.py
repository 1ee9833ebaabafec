"""Tuning UCB-DUAL on training seeds: the search behind the ``ucb_dual_tuned`` and ``ucb_dual_deployed`` presets.

    iov study ucb-tuning --out benchmarks/data/tuning

Two grids of ``agents.ucb_dual.UCBDual`` options, each setting played on every tuning world:

* **episodic** (``ucb_dual_tuned``): statistics forgotten at every reset, as in the paper. Grid: exploration
  constant c, sleeping-bandit counts, the price-aware sweep, discounting, and the price's source and step
  (the env's RSU price at the scenario's ``dual_step_size``, or the agent's own price at mu).
* **deployed** (``ucb_dual_deployed``): per-task statistics kept across episodes, evaluated after
  ``WARMUP_EPISODES`` episodes on the training seeds ``WARMUP_SEED_BASE ..`` (the leaderboard's warm-up). Grid:
  c, sleeping counts, the price and the reward signal (raw, or detrended: less the task model's accuracy of
  the round, so that ranks sampled in different rounds and episodes compare fairly). No sweep or discount axis: after the warm-up every rank has been tried,
  and discounting would throw the warm-up away.

Seeds: every setting is scored on the tuning seeds ``TUNING_SEED_BASE ..`` (2000+), disjoint from the
leaderboard's evaluation seeds 0..99, the RL validation seeds 500+ and the warm-up/training seeds 1000+.
Score per run: the leaderboard's normalised score, random = 0 and oracle = 1 on the same world and seed.

Selection rule (one setting for every world; ``select``): among the settings whose mean energy / budget is at
most ``ENERGY_LIMIT`` on every tuning world (0.05 under the leaderboard's 1.05, a margin for unseen seeds), the
highest mean over worlds of the per-world mean score; ties go to the earlier setting of the grid. The summary
also lists the best setting per world, to show what a per-world choice would add.

Resumable: each (grid, world, setting) is one job in a result store (``--store``, default
``results/ucb-tuning-runs``, git-ignored); a rerun skips the jobs already stored. Outputs, written atomically:
``ucb_tuning_runs.csv`` (every run, in the store's folder: hundreds of KB), and in ``--out``
``ucb_tuning_settings.csv`` (per setting and world), ``ucb_tuning.md``
(the summary) and ``ucb_tuning_choice.json`` (the two settings chosen, which the presets in
``agents.baselines`` must equal: ``tests/agents/test_agent_ucb_presets.py`` checks it).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iov_env.results import write_csv_atomic, write_text_atomic

TUNING_SEED_BASE = 2000
ENERGY_LIMIT = 1.0
DEFAULT_WORLDS = ("tiny-v2", "paper-v2", "paper-tight-v2", "paper-rank-prior-v2", "scale-90-v2")
EXPLORATION = (0.0, 0.1, 0.25, 1.0)
DEPLOYED_EXPLORATION = (0.0, 0.1, 0.25, 0.5)
# (dual_source, dual_step_size): the env's RSU price (its own step), or the agent's own price at mu
DUALS = (("rsu", None), ("local", 0.3), ("local", 1.0))


def episodic_grid() -> list[dict[str, Any]]:
    """Every episodic setting: c x counts x sweep x discount x price."""
    out = []
    for c, counts, sweep, discount, (src, mu) in itertools.product(
            EXPLORATION, ("all", "sleeping"), ("random", "price", "skip"), (1.0, 0.95), DUALS):
        kw: dict[str, Any] = {"exploration": c, "counts": counts, "sweep": sweep, "discount": discount,
                              "dual_source": src}
        if mu is not None:
            kw["dual_step_size"] = mu
        out.append(kw)
    return out


def deployed_grid() -> list[dict[str, Any]]:
    """Every deployed setting: c x counts x price x reward signal (price-aware warm-up sweep, no discount)."""
    out = []
    for c, counts, (src, mu), signal in itertools.product(DEPLOYED_EXPLORATION, ("all", "sleeping"), DUALS,
                                                          ("reward", "detrended")):
        kw: dict[str, Any] = {"exploration": c, "counts": counts, "sweep": "price", "dual_source": src}
        if signal != "reward":
            kw["reward_signal"] = signal
        if mu is not None:
            kw["dual_step_size"] = mu
        out.append(kw)
    return out


OPTION_KEYS = ("exploration", "counts", "sweep", "discount", "dual_source", "dual_step_size", "reward_signal")
GRIDS: dict[str, Callable[[], list[dict[str, Any]]]] = {"episodic": episodic_grid, "deployed": deployed_grid}


def setting_id(kw: Mapping[str, Any]) -> str:
    """A short stable name of a setting (``c0.1-sleeping-price-d1-local0.3``)."""
    mu = f"local{kw['dual_step_size']:g}" if kw.get("dual_source") == "local" else "rsu"
    signal = "" if kw.get("reward_signal", "reward") == "reward" else f"-{kw['reward_signal']}"
    return (f"c{kw['exploration']:g}-{kw.get('counts', 'all')}-{kw.get('sweep', 'random')}-d{kw.get('discount', 1.0):g}-"
            f"{mu}{signal}")


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """One (grid, world, setting): the episodes on every tuning seed (after the warm-up for ``deployed``)."""
    from agents.runner import run_decentralized
    from agents.ucb_dual import UCBDual, warm_up
    from benchmarks.scenarios import scenario

    env_kwargs = scenario(job["world"])
    kw = dict(job["options"])
    rows = []
    memory = None
    if job["grid"] == "deployed":
        memory = warm_up(env_kwargs, kw, episodes=job["warmup_episodes"], seed_base=job["warmup_seed_base"])
    for seed in job["seeds"]:
        if memory is not None:
            mem = memory.copy()  # every evaluation episode starts from the same warmed memory
            r = run_decentralized(lambda m=mem: UCBDual(**kw, persist=True, memory=m), env_kwargs, seed=seed)
        else:
            r = run_decentralized(lambda: UCBDual(**kw), env_kwargs, seed=seed)
        rows.append({"seed": seed, "reward": r["cumulative_reward"], "energy_ratio": r["energy_ratio"]})
    return {"rows": rows}


def reference_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The score's references (random, oracle) on one world's tuning seeds."""
    from agents.baselines import make_agent
    from agents.runner import run_decentralized
    from benchmarks.scenarios import scenario

    env_kwargs = scenario(job["world"])
    rows = []
    for seed in job["seeds"]:
        r = run_decentralized(lambda: make_agent(job["agent"]), env_kwargs, seed=seed)
        rows.append({"seed": seed, "reward": r["cumulative_reward"], "energy_ratio": r["energy_ratio"]})
    return {"rows": rows}


def _key(job: Mapping[str, Any]) -> dict[str, Any]:
    """What names a job in the store: short fields (the options are named by their ``setting_id``)."""
    seeds = job["seeds"]
    key = {k: job[k] for k in ("kind", "grid", "world", "agent") if k in job}
    if "options" in job:
        key["setting"] = setting_id(job["options"])
    key["seeds"] = f"{seeds[0]}-{seeds[-1]}" if list(seeds) == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
    if "warmup_episodes" in job:
        key["warmup"] = f"{job['warmup_episodes']}@{job['warmup_seed_base']}"
    return key


def _run(fn: Callable[[Mapping[str, Any]], dict[str, Any]], jobs: list[dict[str, Any]], store: Any, workers: int,
         progress: Callable[[str], None], desc: str) -> list[dict[str, Any]]:
    from benchmarks import runs

    results: list[dict[str, Any] | None] = [store.get(_key(j)) for j in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    if len(todo) < len(jobs):
        progress(f"{desc}: {len(jobs) - len(todo)} of {len(jobs)} jobs already stored")

    def done(k: int, result: dict[str, Any]) -> None:
        store.put(_key(jobs[todo[k]]), result)

    fresh = runs.execute(fn, [jobs[i] for i in todo], workers=workers, desc=desc, on_result=done)
    for i, r in zip(todo, fresh, strict=True):
        results[i] = r
    return [r for r in results if r is not None]


def study(worlds: Sequence[str], seeds: int, workers: int = 1, store_dir: Path | None = None,
          progress: Callable[[str], None] = print, grids: Sequence[str] = tuple(GRIDS)) -> list[dict[str, Any]]:
    """Every run of the search as flat rows (grid, world, setting, seed, reward, energy_ratio, score)."""
    from agents.ucb_dual import WARMUP_EPISODES, WARMUP_SEED_BASE
    from benchmarks import runs

    if seeds < 2:
        raise ValueError(f"seeds={seeds!r}; allowed: >= 2 (a mean and its spread)")
    unknown = [g for g in grids if g not in GRIDS]
    if unknown:
        raise ValueError(f"unknown grids {unknown}; allowed: {sorted(GRIDS)}")
    seed_list = list(range(TUNING_SEED_BASE, TUNING_SEED_BASE + seeds))
    store = runs.ResultStore(store_dir) if store_dir is not None else _MemoryStore()
    ref_jobs = [{"kind": "reference", "world": w, "agent": a, "seeds": seed_list} for w in worlds for a in ("random", "oracle")]
    refs = _run(reference_job, ref_jobs, store, workers, progress, "references")
    ref = {(j["world"], j["agent"], row["seed"]): row["reward"] for j, r in zip(ref_jobs, refs, strict=True) for row in r["rows"]}
    jobs = []
    for g in grids:
        for kw in GRIDS[g]():
            for w in worlds:
                job = {"kind": "setting", "grid": g, "world": w, "options": kw, "seeds": seed_list}
                if g == "deployed":
                    job.update(warmup_episodes=WARMUP_EPISODES, warmup_seed_base=WARMUP_SEED_BASE)
                jobs.append(job)
    results = _run(run_job, jobs, store, workers, progress, "settings")
    rows = []
    for job, res in zip(jobs, results, strict=True):
        for row in res["rows"]:
            lo, hi = ref[(job["world"], "random", row["seed"])], ref[(job["world"], "oracle", row["seed"])]
            score = (row["reward"] - lo) / (hi - lo) if hi != lo else math.nan
            rows.append({"grid": job["grid"], "setting": setting_id(job["options"]), "world": job["world"],
                         "seed": row["seed"], "reward": row["reward"], "energy_ratio": row["energy_ratio"],
                         "score": score, **{f"opt_{k}": job["options"].get(k, "") for k in OPTION_KEYS}})
    return rows


class _MemoryStore:
    """A result store that keeps nothing between processes (``out=None``: tests)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, job: Mapping[str, Any]) -> Any:
        return self.data.get(json.dumps(job, sort_keys=True))

    def put(self, job: Mapping[str, Any], result: Any) -> None:
        self.data[json.dumps(job, sort_keys=True)] = result


def per_setting(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (grid, setting, world): mean score [its SE], mean and max-over-seeds energy ratio."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["grid"], r["setting"], r["world"]), []).append(r)
    out = []
    for (g, s, w), sel in groups.items():
        sc = np.array([r["score"] for r in sel], dtype=float)
        er = np.array([r["energy_ratio"] for r in sel], dtype=float)
        out.append({"grid": g, "setting": s, "world": w, "n": len(sel), "score": float(sc.mean()),
                    "score_se": float(sc.std(ddof=1) / math.sqrt(len(sc))) if len(sc) > 1 else math.nan,
                    "energy_ratio": float(er.mean()), "energy_ratio_max": float(er.max()),
                    **{k: v for k, v in sel[0].items() if k.startswith("opt_")}})
    return out


def select(settings: Sequence[Mapping[str, Any]], grid: str, limit: float = ENERGY_LIMIT) -> dict[str, Any] | None:
    """The selection rule (module docstring): the best mean score over worlds among settings within ``limit`` everywhere."""
    names = list(dict.fromkeys(r["setting"] for r in settings if r["grid"] == grid))
    best: dict[str, Any] | None = None
    for name in names:
        sel = [r for r in settings if r["grid"] == grid and r["setting"] == name]
        worst = max(r["energy_ratio"] for r in sel)
        mean = float(np.mean([r["score"] for r in sel]))
        cand = {"setting": name, "mean_score": mean, "worst_energy_ratio": worst, "within": worst <= limit,
                "options": {k[4:]: v for k, v in sel[0].items() if k.startswith("opt_") and v != ""}}
        if cand["within"] and (best is None or mean > best["mean_score"]):
            best = cand
    return best


def markdown(settings: Sequence[Mapping[str, Any]], choice: Mapping[str, Any], worlds: Sequence[str], seeds: int,
             command: str) -> str:
    """The summary: the selection, the top settings of each grid, and the best setting per world."""
    lines = ["# UCB-DUAL tuning (training seeds)", "",
             f"`{command}`: tuning seeds {TUNING_SEED_BASE}..{TUNING_SEED_BASE + seeds - 1} (disjoint from the "
             "leaderboard's 0..99), worlds " + ", ".join(worlds) + ". Score: random = 0, oracle = 1 on the same world "
             "and seed. Selection: the highest mean score over worlds among settings with mean energy / budget <= "
             f"{ENERGY_LIMIT} on every world.", ""]
    for grid in GRIDS:
        sel = [r for r in settings if r["grid"] == grid]
        if not sel:
            continue
        names = list(dict.fromkeys(r["setting"] for r in sel))
        ranked = []
        for n in names:
            rs = {r["world"]: r for r in sel if r["setting"] == n}
            ranked.append((float(np.mean([r["score"] for r in rs.values()])), max(r["energy_ratio"] for r in rs.values()), n, rs))
        ranked.sort(key=lambda x: -x[0])
        chosen = choice.get(grid)
        lines += [f"## {grid} ({len(names)} settings)", "",
                  f"Chosen: `{chosen['setting']}` (mean score {chosen['mean_score']:.3f}, worst energy / budget "
                  f"{chosen['worst_energy_ratio']:.3f})." if chosen else "Chosen: none within the energy limit.", "",
                  "Top 10 by mean score (all settings, within the limit or not); cells: score (energy / budget).", "",
                  "| setting | mean score | worst energy / budget | " + " | ".join(worlds) + " |",
                  "|---|---:|---:|" + "---:|" * len(worlds)]
        for mean, worst, n, rs in ranked[:10]:
            cells = [f"{rs[w]['score']:.2f} ({rs[w]['energy_ratio']:.2f})" if w in rs else "-" for w in worlds]
            lines.append(f"| `{n}` | {mean:.3f} | {worst:.3f} | " + " | ".join(cells) + " |")
        ref = next((x for x in ranked if x[2] == "c1-all-random-d1-rsu"), None)
        if ref is not None:
            cells = [f"{ref[3][w]['score']:.2f} ({ref[3][w]['energy_ratio']:.2f})" for w in worlds]
            lines.append(f"| `{ref[2]}` (the paper's rule) | {ref[0]:.3f} | {ref[1]:.3f} | " + " | ".join(cells) + " |")
        lines += ["", "Best setting per world (within the limit on that world):", "",
                  "| world | setting | score | energy / budget |", "|---|---|---:|---:|"]
        for w in worlds:
            ok = [r for r in sel if r["world"] == w and r["energy_ratio"] <= ENERGY_LIMIT]
            if ok:
                b = max(ok, key=lambda r: r["score"])
                lines.append(f"| {w} | `{b['setting']}` | {b['score']:.2f} ± {b['score_se']:.2f} | {b['energy_ratio']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def _rounded(row: Mapping[str, Any]) -> dict[str, Any]:
    """Floats to 4 significant digits (the seeds' spread is far wider): a small evidence file."""
    return {k: float(f"{v:.4g}") if isinstance(v, float) and math.isfinite(v) else v for k, v in row.items()}


def run(worlds: Sequence[str], seeds: int, out: Path, workers: int, command: str, store_dir: Path | None = None,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The search into ``out``: runs CSV, per-setting CSV, Markdown summary, the chosen settings as JSON."""
    rows = study(worlds, seeds, workers=workers, store_dir=store_dir, progress=progress)
    settings = per_setting(rows)
    choice = {g: select(settings, g) for g in GRIDS}
    out.mkdir(parents=True, exist_ok=True)
    # every run (hundreds of KB) beside the store, not in the evidence folder; the per-setting table goes there
    runs_csv = (store_dir if store_dir is not None else out) / "ucb_tuning_runs.csv"
    write_csv_atomic(runs_csv, [{k: v for k, v in r.items() if not k.startswith("opt_")} for r in rows])
    write_csv_atomic(out / "ucb_tuning_settings.csv", [_rounded(r) for r in settings])
    write_text_atomic(out / "ucb_tuning.md", markdown(settings, choice, worlds, seeds, command))
    write_text_atomic(out / "ucb_tuning_choice.json", json.dumps(
        {"tuning_seeds": [TUNING_SEED_BASE, TUNING_SEED_BASE + seeds - 1], "worlds": list(worlds),
         "energy_limit": ENERGY_LIMIT, "command": command, **choice}, indent=2) + "\n")
    return choice
