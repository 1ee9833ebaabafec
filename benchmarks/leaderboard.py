"""Leaderboard: scenarios x agents x seeds -> results CSV, LEADERBOARD.md and plots.

    iov leaderboard --out results/leaderboard
    iov leaderboard --scenarios paper-v1 scale-90-v1 --agents ucb_dual homolora ppo_shared \
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
below with their violation; references (``oracle``, ``best_fixed``, ``greedy``, ``random``: they read the
simulator or anchor the score) are listed first, unranked. ``ucb_dual_deployed`` keeps its statistics
across episodes: before each evaluation episode it runs its stated warm-up (``WARMUP_EPISODES`` episodes
on the training seeds ``1000 ..``, never evaluation seeds), computed once per scenario and process and
copied for every evaluation seed. Outputs: runs.csv, summary.csv, scores.csv, LEADERBOARD.md, per scenario
<id>.png (metrics) and <id>-return-vs-energy.png.

Trained RL agents (``iov train``) join without retraining through
``--checkpoints DIR``: ``maskable_ppo_shared``, ``ppo_lag_shared``, ``rllib_ppo`` (and the other SB3
names) then load the policy trained on the same scenario, evaluation seed ``i`` using training run ``i``
(training seeds are disjoint from the evaluation seeds). Without ``--checkpoints`` the SB3 names train
per scenario and seed first, as before. Checkpoints load without unpickling (safetensors weights + a
JSON manifest, ``agents.checkpoints``); a pickled one (a legacy SB3 zip, RLlib's) is refused before any
run unless ``--trust-pickle`` is given, because unpickling runs the code a file contains.

Operations (``benchmarks.runs``): each finished run is stored under ``<out>/runs/`` as it ends, so a
rerun after a kill skips it (``--fresh`` runs everything again); outputs of an earlier run in the same
folder are removed first; ``--workers N`` or ``--ray [ADDRESS]`` fan the runs out with the same rows.
One run per ``--out`` at a time: a second one fails at once naming the holder (``runs.lock_folder``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent
from agents.baselines import AGENTS, REFERENCE_AGENTS, make_agent
from agents.oracle import Oracle, covers
from agents.runner import env_config_for, run_decentralized
from agents.sb3 import SHARED_AGENTS as SB3_AGENTS
from benchmarks import learnability, plots, report, runs, scoring
from benchmarks.errors import BenchmarkError
from benchmarks.scenarios import SCENARIOS, scenario, unavailable_reason
from iov_env.results import write_csv_atomic, write_text_atomic

CHECKPOINT_AGENTS = ("rllib_ppo",)  # trained only by benchmarks.train_rl, evaluated from --checkpoints
RL_AGENTS = (*SB3_AGENTS, *CHECKPOINT_AGENTS)
DEFAULT_AGENTS = ("ucb_dual", "ucb_dual_tuned", "ucb_dual_deployed", "ucb1", "homolora", "hetlora", "flexlora", "fedra",
                  "best_fixed", "greedy", "random", "oracle")
REFERENCES = (scoring.REFERENCE_LOW, scoring.REFERENCE_HIGH)  # the score's 0 and 1, always run
DEFAULT_SCENARIOS = ("tiny-v2", "paper-v2", "paper-tight-v2", "paper-rank-prior-v2", "scale-90-v2", "paper-sumo-v2")
# (record key, label, higher is better)
METRICS = (
    ("cumulative_reward", "reward", True),
    ("accuracy_pts", "final accuracy (pts)", True),
    ("latency_s", "end-to-end latency (s)", False),
    ("energy_j", "energy (J)", False),
    ("energy_ratio", "energy / budget", False),
    ("violation_rate", "task-rounds over budget", False),
    ("executed_rank", "executed rank (median)", True),
)


def agent_factory(name: str, env_kwargs: dict[str, Any], seed: int, sb3_timesteps: int,
                  checkpoint: str | None = None, trust_pickle: bool = False,
                  scenario_id: str | None = None) -> Callable[[], Agent]:
    """A per-vehicle agent factory: a trained checkpoint if given; SB3 agents otherwise train on this scenario and seed.

    A pickled checkpoint (legacy SB3 zip, RLlib) is refused unless ``trust_pickle`` (see ``agents.checkpoints``).
    A tuned preset (``ucb_dual_tuned``, ``ucb_dual_deployed``) runs the setting of ``scenario_id``'s world family,
    or its pooled setting when the family has none (or no ``scenario_id`` is given).
    """
    if checkpoint is not None:
        from agents.checkpoints import load_agent

        policy = load_agent(checkpoint, trust_pickle=trust_pickle)
        return lambda: copy.deepcopy(policy)
    if name in CHECKPOINT_AGENTS:
        raise ValueError(f"{name} is evaluated from a trained checkpoint: pass --checkpoints (see benchmarks.train_rl)")
    if name in SB3_AGENTS:
        from agents.sb3 import train_decentralized

        policy = train_decentralized(SB3_AGENTS[name], env_kwargs, total_timesteps=sb3_timesteps, seed=seed)
        return lambda: copy.deepcopy(policy)
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; allowed: {sorted([*AGENTS, *RL_AGENTS])}")
    kw: dict[str, Any] = {}
    if hasattr(AGENTS[name], "family_for"):
        kw["family"] = AGENTS[name].family_for(scenario_id) if scenario_id is not None else None  # type: ignore[attr-defined]
    if warmup_of(name):
        # the deployed scheduler: every evaluation episode starts from its own copy of one warmed memory, shared by
        # the episode's vehicles (the roadside units' per-task tables)
        memory = _warmed_memory(name, json.dumps(env_kwargs, sort_keys=True, default=str), kw.get("family")).copy()
        return lambda: make_agent(name, memory=memory, **kw)
    return lambda: make_agent(name, **kw)


def preset_of(name: str, scenario_id: str) -> str:
    """The setting a tuned preset runs on ``scenario_id`` as a short label ('' for every other agent): a run key part."""
    cls = AGENTS.get(name)
    if cls is None or not hasattr(cls, "family_for"):
        return ""
    family = cls.family_for(scenario_id)  # type: ignore[attr-defined]
    return f"{family or 'pooled'}:" + json.dumps(cls.setting(family), sort_keys=True)  # type: ignore[attr-defined]


def warmup_of(name: str) -> str:
    """The stated warm-up of an agent that keeps statistics across episodes ('' for every other agent)."""
    cls = AGENTS.get(name)
    return cls.warmup_label() if cls is not None and hasattr(cls, "warmed_memory") else ""


@functools.lru_cache(maxsize=16)
def _warmed_memory(name: str, env_kwargs_json: str, family: str | None = None) -> Any:
    """The warm-up of ``name`` (its ``family`` preset) on one world, once per process (deterministic)."""
    return AGENTS[name].warmed_memory(json.loads(env_kwargs_json), family=family)  # type: ignore[attr-defined]


def run_one(job: dict[str, Any], trust_pickle: bool = False) -> dict[str, Any]:
    """One (scenario, agent, seed) episode as a flat record (module-level: it runs in pool and Ray workers).

    ``trust_pickle`` is how the run may load its checkpoint, not what defines the run: it stays out of ``job``
    (the result store's key).
    """
    if job["agent"] in RL_AGENTS:
        import torch

        torch.set_num_threads(1)  # same arithmetic in every worker layout, and no oversubscribed cores
    kwargs = scenario(job["scenario"])
    t0 = time.perf_counter()
    factory = agent_factory(job["agent"], kwargs, job["seed"], job.get("sb3_timesteps", 0), job.get("checkpoint"),
                            trust_pickle, scenario_id=job["scenario"])
    r = run_decentralized(factory, kwargs, seed=job["seed"])
    # the oracle bounds this run only if it is the oracle's world up to aggregation and allocation
    bounded = covers(r["env_kwargs"], env_config_for(Oracle(), kwargs))
    return runs.run_record(
        job["scenario"], job["agent"], job["seed"], r, bounded_by=scoring.REFERENCE_HIGH if bounded else "",
        executed_rank=r["median_executed_rank"], wall_s=time.perf_counter() - t0,
        accuracy_trace=";".join(f"{np.mean(row):.4f}" for row in r["task_accuracy"]),
    )


def jobs_for(scenario_ids: Sequence[str], agent_names: Sequence[str], seeds: Sequence[int], sb3_timesteps: int,
             checkpoints: str | Path | None = None) -> list[dict[str, Any]]:
    """Every (scenario, agent, seed) run as a job: what defines it, and nothing else (its store key)."""
    jobs = []
    for sid in scenario_ids:
        for name in agent_names:
            for i, s in enumerate(seeds):
                job: dict[str, Any] = {"scenario": sid, "agent": name, "seed": s}
                if checkpoints is not None and name in RL_AGENTS:
                    from agents.checkpoints import manifest_path
                    from benchmarks.train_rl import trained_policy_path

                    job["checkpoint"] = str(trained_policy_path(checkpoints, sid, name, i))
                    # a retrained policy at the same path is a different run: key on its manifest too
                    job["checkpoint_sha1"] = hashlib.sha1(manifest_path(job["checkpoint"]).read_bytes()).hexdigest()[:12]
                elif name in SB3_AGENTS:
                    job["sb3_timesteps"] = sb3_timesteps
                elif warmup_of(name):
                    job["warmup"] = warmup_of(name)  # a different warm-up is a different run
                if preset_of(name, sid):
                    job["preset"] = preset_of(name, sid)  # a re-tuned preset is a different run: stale ones rerun
                jobs.append(job)
    return jobs


def run_grid(
    scenario_ids: Sequence[str], agent_names: Sequence[str], seeds: Sequence[int], sb3_timesteps: int,
    progress: Callable[[str], None] = print, *, workers: int = 1, ray_address: str | None = None,
    store: runs.ResultStore | None = None, checkpoints: str | Path | None = None, trust_pickle: bool = False,
) -> list[dict[str, Any]]:
    """Every (scenario, agent, seed) episode as one flat record, in grid order; stored runs are not rerun."""
    jobs = jobs_for(scenario_ids, agent_names, seeds, sb3_timesteps, checkpoints)
    records: list[dict[str, Any] | None] = [store.get(j) if store else None for j in jobs]
    # a run stored by an older version lacks the scoring fields: run it again rather than score it wrongly
    records = [r if r is not None and "energy_ratio" in r and "bounded_by" in r else None for r in records]
    todo = [i for i, r in enumerate(records) if r is None]
    if len(todo) < len(jobs):
        progress(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} runs already done")

    def finished(k: int, record: dict[str, Any]) -> None:
        if store is not None:
            store.put(jobs[todo[k]], record)

    fn = functools.partial(run_one, trust_pickle=True) if trust_pickle else run_one
    fresh = runs.execute(fn, [jobs[i] for i in todo], workers=workers, ray_address=ray_address,
                         desc="leaderboard", on_result=finished)
    for i, record in zip(todo, fresh, strict=True):
        records[i] = record
    return [r for r in records if r is not None]


def summarise(records: list[dict[str, Any]], reps: int) -> list[dict[str, Any]]:
    """Per scenario x agent x metric: mean with 95% CI, and IQM."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in records))
    return scoring.metric_summary(records, [k for k, _, _ in METRICS], "agent", scenarios, world="scenario", reps=reps)


def markdown(
    summary: list[dict[str, Any]], scores: dict[str, Any], seeds: Sequence[int], command: str, elapsed_s: float,
    learn: dict[str, dict[str, float]] | None = None,
) -> str:
    """LEADERBOARD.md: the constraint-aware ranking, headroom, the oracle's check, then per-scenario tables."""
    buf = io.StringIO()
    w = buf.write
    w("# iov-env leaderboard\n\n")
    w(f"`{command}` — seeds {list(seeds)}, {elapsed_s:.0f} s. Every comparison is paired by seed (seed s is the same "
      "world for every agent) and every score is shown beside the energy it cost.\n\n")
    w(report.scores_markdown(scores["scored"], scores["headroom"], scores["agents"], scores["checks"], scores["worlds"],
                             describe=lambda sid: f"`{scenario(sid)}`", learnability=learn,
                             reference_names=REFERENCE_AGENTS))
    w("\n## Metrics per scenario\n\nMean [95% CI] over seeds (rliable stratified bootstrap).\n")
    cell = {(r["scenario"], r["agent"], r["metric"]): r for r in summary}
    for sid in dict.fromkeys(r["scenario"] for r in summary):
        w(f"\n### {sid}\n\n| agent | " + " | ".join(lbl for _, lbl, _ in METRICS) + " |\n")
        w("|---|" + "---:|" * len(METRICS) + "\n")
        for a in dict.fromkeys(r["agent"] for r in summary if r["scenario"] == sid):
            cells = []
            for key, _, _ in METRICS:
                c = cell[(sid, a, key)]
                fmt = ".2f" if key in ("violation_rate", "energy_ratio") else ".0f" if key == "executed_rank" else ".1f"
                cells.append(report.fmt_ci(c["mean"], c["ci_lo"], c["ci_hi"], fmt))
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
        paths.append(plots.finish(fig, out / f"{sid}.png", sid))
    return paths


def run(args: Any) -> int:
    """Run the leaderboard grid (resumable), score it, and write runs.csv, summary.csv, scores.csv, LEADERBOARD.md and plots.

    ``args`` holds the options of its ``iov`` command, named as its flags (``iov`` builds it).
    """
    if args.workers < 1:
        raise BenchmarkError(f"--workers={args.workers}: at least 1")
    if args.seeds < 2:
        raise BenchmarkError(f"--seeds={args.seeds}: at least 2 seeds are needed for confidence intervals")
    missing = [a for a in REFERENCES if a not in args.agents]
    if missing:
        print(f"adding {missing}: the normalised score's references (random = 0, oracle = 1)", file=sys.stderr)
        args.agents = [*args.agents, *missing]
    unknown = [a for a in args.agents if a not in AGENTS and a not in RL_AGENTS]
    if unknown:
        raise BenchmarkError(f"unknown agents {unknown}; allowed: {sorted([*AGENTS, *RL_AGENTS])}")
    needs_ckpt = [a for a in args.agents if a in CHECKPOINT_AGENTS]
    if needs_ckpt and args.checkpoints is None:
        raise BenchmarkError(f"agents {needs_ckpt} are evaluated from trained checkpoints: pass --checkpoints DIR "
                "(written by iov train)")
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad:
        raise BenchmarkError(f"unknown scenarios {bad}; allowed: {sorted(SCENARIOS)}")
    scenario_ids = []
    for sid in args.scenarios:
        reason = unavailable_reason(sid)
        if reason:
            print(f"skipping {sid}: {reason}", file=sys.stderr)
        else:
            scenario_ids.append(sid)
    if not scenario_ids:
        raise BenchmarkError("no runnable scenario left")
    seeds = list(range(args.seeds))
    command = args.command
    try:
        # one writer per --out: taken before anything in the folder is read, cleared or written
        with runs.lock_folder(args.out, command):
            md = _run(args, scenario_ids, seeds, command)
    except runs.FolderLockedError as exc:
        raise BenchmarkError(str(exc)) from None
    print(md)
    return 0


def _run(args: Any, scenario_ids: list[str], seeds: list[int],
         command: str) -> str:
    """The grid into ``args.out`` (locked by the caller); returns LEADERBOARD.md."""
    t0 = time.perf_counter()
    store = runs.ResultStore(args.out / "runs")
    try:
        jobs = jobs_for(scenario_ids, args.agents, seeds, args.sb3_timesteps, args.checkpoints)
    except FileNotFoundError as exc:
        raise BenchmarkError(str(exc)) from None
    if args.checkpoints is not None:
        from agents.checkpoints import CheckpointError, check_trusted, is_pickled, load_agent

        # every checkpoint before any run: a refused or corrupt one fails the command at once, nothing cleared
        for ckpt in dict.fromkeys(j["checkpoint"] for j in jobs if "checkpoint" in j):
            try:
                if not is_pickled(check_trusted(ckpt, args.trust_pickle)):
                    load_agent(ckpt)  # safe to load here: its weights are checked too (tens of KB)
            except CheckpointError as exc:
                raise BenchmarkError(str(exc)) from None
    # an earlier run's tables and plots go first: a kill from here on leaves no stale PNG beside new CSVs
    runs.clear_outputs(args.out, markers=("LEADERBOARD.md", "runs"))
    if args.fresh:
        store.prune([])
    store.prune(jobs)
    records = run_grid(scenario_ids, args.agents, seeds, args.sb3_timesteps, workers=args.workers,
                       ray_address=args.ray, store=store, checkpoints=args.checkpoints, trust_pickle=args.trust_pickle)
    write_csv_atomic(args.out / "runs.csv", records)  # first: the runs survive a failure in the statistics
    summary = summarise(records, args.reps)
    scores = scoring.score_all(records, reps=args.reps)
    learn = learnability.learnability_table(scenario_ids, {sid: scenario(sid) for sid in scenario_ids},
                                            learnability.measured_real(scenario_ids))
    md = markdown(summary, scores, seeds, command, time.perf_counter() - t0, learn)
    write_csv_atomic(args.out / "summary.csv", summary)
    write_csv_atomic(args.out / "scores.csv", [
        {k: v for k, v in r.items() if k not in ("accuracy_trace", "certificate")} for r in scores["scored"]
    ])
    write_text_atomic(args.out / "LEADERBOARD.md", md)
    if not args.no_plots:
        plot(records, summary, args.out)
        plots.plot_return_vs_energy(scores["scored"], scores["worlds"], args.out)
    return md

