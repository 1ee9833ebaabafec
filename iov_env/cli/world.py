"""``iov demo`` and ``iov sumo``: the environment itself, and the SUMO traffic behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from iov_env.cli.options import IovCommand, Variadic, out_option, reports_errors


@click.command(cls=IovCommand)
@click.option("--preset", default="tiny", show_default=True)
@click.option("--fidelity", type=click.Choice(("fast", "real")), default="fast", show_default=True)
@click.option("--rounds", type=int, default=None, help="override the preset's rounds")
@click.option("--mobility-model", type=click.Choice(("grid", "tdrive", "sumo")), default=None,
              help="override the preset's mobility model")
@click.option("--seed", type=int, default=0, show_default=True)
@out_option(default="results/demo")
@click.option("--real-rounds", type=int, default=0, show_default=True,
              help="then run this many rounds of real LoRA training")
@click.option("--video", type=click.Path(path_type=Path), default=None,
              help="write one policy's episode as a video, one frame per round: a .gif or .mp4 path")
@click.option("--video-policy", type=click.Choice(("fixed", "random")), default=None,
              help="whose episode the video shows (default: random, whose ranks change every round)")
@click.option("--fps", type=float, default=None, help="video frames per second (default 2)")
@reports_errors
def demo(preset: str, fidelity: str, rounds: int | None, mobility_model: str | None, seed: int, out: Path,
         real_rounds: int, video: Path | None, video_policy: str | None, fps: float | None) -> int:
    """Run a short episode with two simple policies, print a summary table and save the final map."""
    from iov_env import demo as lib

    # the demo's own entry point, with its own flags: options left out keep its defaults
    argv = ["--preset", preset, "--fidelity", fidelity, "--seed", str(seed), "--out", str(out),
            "--real-rounds", str(real_rounds)]
    for flag, value in (("--rounds", rounds), ("--mobility-model", mobility_model), ("--video", video),
                        ("--video-policy", video_policy), ("--fps", fps)):
        if value is not None:
            argv += [flag, str(value)]
    return lib.main(argv)


@click.command(cls=IovCommand)
@click.option("--preset", default="paper", show_default=True)
@click.option("--seeds", cls=Variadic, item_type=int, default=[0, 1, 2], show_default=True, help="traffic seeds")
@click.option("--backend", type=click.Choice(("auto", "libsumo", "traci")), default="auto", show_default=True)
@reports_errors
def sumo(preset: str, seeds: list[int], backend: str) -> int:
    """Build SUMO traces for a preset (no cache) and print how busy the traffic is, one row per seed."""
    from iov_env.sim.sumo import traffic_report

    for line in traffic_report(preset, seeds, backend):
        click.echo(line)
    return 0


COMMANDS: tuple[Any, ...] = (demo, sumo)
