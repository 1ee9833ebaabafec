"""``iov leaderboard``, ``compare``, ``train`` and ``report``: the benchmark's commands (parse, call, exit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from iov_env.cli.options import (
    IovCommand,
    IovGroup,
    Variadic,
    agents_option,
    command_line,
    namespace,
    out_option,
    ray_option,
    reports_errors,
    reps_option,
    scenarios_option,
    seeds_option,
    set_option,
    workers_option,
)


def _leaderboard_defaults(name: str) -> Any:
    """A default read from ``benchmarks.leaderboard`` only when the command runs (it imports the agents)."""
    def default() -> list[str]:
        from benchmarks import leaderboard

        return list(getattr(leaderboard, name))

    return default


def _train_defaults(name: str) -> Any:
    def default() -> list[str]:
        from benchmarks import train_rl

        return list(getattr(train_rl, name))

    return default


@click.command(cls=IovCommand)
@out_option(default="results/leaderboard")
@scenarios_option(_leaderboard_defaults("DEFAULT_SCENARIOS"))
@agents_option(_leaderboard_defaults("DEFAULT_AGENTS"))
@seeds_option(5, help="number of seeds (0..n-1), at least 2")
@reps_option()
@click.option("--sb3-timesteps", type=int, default=20_000, show_default=True,
              help="training steps per SB3 agent, scenario and seed")
@click.option("--no-plots", is_flag=True, help="write no PNG")
@click.option("--checkpoints", type=click.Path(path_type=Path), default=None,
              help="evaluate RL agents from this `iov train` output folder instead of training them")
@workers_option()
@ray_option()
@click.option("--fresh", is_flag=True, help="ignore runs stored by an earlier, killed invocation")
@click.option("--trust-pickle", is_flag=True, help="also load pickled checkpoints (legacy SB3 zips, RLlib): unpickling "
              "runs the code a file contains, so only for checkpoints from a source you trust")
@reports_errors
def leaderboard(**params: Any) -> int:
    """Run agents on frozen scenarios over paired seeds and score them (resumable; LEADERBOARD.md)."""
    from benchmarks import leaderboard as lib

    return lib.run(namespace(params, command=command_line()))


@click.command(cls=IovCommand)
@out_option(required=True, help="output folder (runs.csv, summary.csv, compare.md)")
@click.option("--presets", cls=Variadic, default=["tiny", "paper"], show_default=True, help="env presets")
@seeds_option(10)
@reps_option()
@click.option("--calibration", default="", help="surrogate calibration for every run, e.g. 'default' "
              "(rank-sensitive priors) instead of the base model's fit")
@reports_errors
def compare(**params: Any) -> int:
    """The paper's comparison: UCB-DUAL against the paper's baselines on the tiny and paper presets."""
    from benchmarks import compare as lib

    return lib.run(namespace(params, command=command_line()))


@click.command(cls=IovCommand)
@out_option(default="results/rl")
@scenarios_option(_train_defaults("DEFAULT_SCENARIOS"))
@agents_option(_train_defaults("DEFAULT_AGENTS"))
@seeds_option(5, help="training runs per scenario and agent")
@click.option("--first-seed", type=int, default=0, show_default=True,
              help="index of the first training run: split one grid across machines")
@click.option("--env-steps", type=int, default=20_000, show_default=True,
              help="training budget per run, in federated rounds")
@click.option("--eval-every", type=int, default=1_000, show_default=True, help="env steps between evaluations")
@click.option("--eval-episodes", type=int, default=2, show_default=True, help="validation episodes per evaluation")
@workers_option(help="training runs in parallel (processes)")
@ray_option(help="run the training runs as Ray tasks: a local Ray, or the cluster at ADDRESS")
@reps_option(1000)
@click.option("--report-only", is_flag=True,
              help="train nothing: aggregate the curves, plateau and plots of the runs already in --out")
@set_option(help="override a hyperparameter of every agent trained (JSON values), e.g. n_epochs=10")
@reports_errors
def train(**params: Any) -> int:
    """Train the RL agents (SB3, RLlib) with checkpoints and learning curves (resumable)."""
    from benchmarks import train_rl as lib

    return lib.run(namespace(params, command=command_line()))


@click.group(cls=IovGroup)
def report() -> None:
    """Reports from stored results: RL agents against a reference, the rank study."""


@report.command("rl")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--reference", default="ucb_dual", show_default=True, help="the agent every other is paired with")
@reps_option()
@reports_errors
def report_rl(**params: Any) -> int:
    """RL_VS_REFERENCE.md: each agent's paired difference against the reference, from a leaderboard FOLDER."""
    from benchmarks import rl_report as lib

    return lib.run(namespace(params))


@report.command("rank")
@click.option("--csv", cls=Variadic, min_values=0, default=[], help="default: benchmarks/data/rank_study_*.csv")
@click.option("--calibration", cls=Variadic, min_values=0, default=None,
              help="calibration CSVs to report as federated runs (default: benchmarks/data/calibration_runs_*.csv)")
@click.option("--out", default="results/rank_study", show_default=True, help="output folder")
@reports_errors
def report_rank(**params: Any) -> int:
    """Tables and plots of the rank study, from its CSVs (also: iov study rank report)."""
    from benchmarks.studies import rank

    rank.report(namespace(params))
    return 0


COMMANDS = (leaderboard, compare, train, report)
