"""The ``iov`` command: every job is listed, every level has --help, errors are one line with the right status,
and a run through ``iov`` writes what the library call returns."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import click
import pytest

from iov_env.cli import iov as root
from iov_env.cli import main as iov
from iov_env.cli.options import OptionalValue, Part, Variadic, expand_args

JOBS = ("demo", "leaderboard", "compare", "train", "report", "calibrate", "study", "perf", "sumo")


def _paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += _paths(cmd, (*prefix, name))
    return out


def test_help_lists_every_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert iov(["--help"]) == 0
    listed = capsys.readouterr().out
    for job in JOBS:
        assert f"\n  {job} " in listed, job
    assert set(root.commands) == set(JOBS)


@pytest.mark.parametrize("path", _paths(root), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert iov([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: iov {' '.join(path)}")


def test_study_and_perf_hold_their_subcommands() -> None:
    assert {"rank", "decision", "energy", "curves", "bandit", "ucb-tuning", "ucb-paired",
            "rl-diagnosis"} == set(
        root.commands["study"].commands)
    assert set(root.commands["study"].commands["rank"].commands) == {"run", "report"}
    assert set(root.commands["perf"].commands) == {"fast", "real"}
    assert set(root.commands["report"].commands) == {"rl", "rank"}


def test_a_bad_scenario_exits_1_naming_it_and_the_allowed_ids(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert iov(["leaderboard", "--scenarios", "mars-v9", "--seeds", "2", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("iov leaderboard: error: unknown scenarios ['mars-v9']; allowed: [")
    assert "'paper-v1'" in err and "'tiny-v1'" in err


def test_a_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert iov(["leaderboard", "--no-such-flag"]) == 2
    assert "No such option" in capsys.readouterr().err
    assert iov(["no-such-job"]) == 2


def test_a_run_error_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert iov(["report", "rl", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iov report rl: error: no runs.csv in") and err.count("\n") == 1


def test_leaderboard_through_iov_writes_the_records_of_the_library_call(tmp_path: Path) -> None:
    from benchmarks import leaderboard
    from iov_env.results import write_csv_atomic

    assert iov(["leaderboard", "--scenarios", "tiny-v1", "--agents", "homolora", "random", "oracle", "--seeds", "2",
                "--reps", "20", "--no-plots", "--out", str(tmp_path / "cli")]) == 0
    records = leaderboard.run_grid(["tiny-v1"], ["homolora", "random", "oracle"], [0, 1], 20_000, progress=lambda _: None)
    write_csv_atomic(tmp_path / "lib.csv", records)

    def rows(path: Path) -> list[dict[str, str]]:  # every field but the measured wall time
        with open(path, newline="") as fh:
            return [{k: v for k, v in r.items() if not k.endswith("wall_s")} for r in csv.DictReader(fh)]

    assert len(rows(tmp_path / "lib.csv")) == 6
    assert rows(tmp_path / "cli" / "runs.csv") == rows(tmp_path / "lib.csv")
    assert "`iov leaderboard --scenarios tiny-v1" in (tmp_path / "cli" / "LEADERBOARD.md").read_text()


def test_part_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert Part().convert("1/3", None, None) == (1, 3)
    assert iov(["study", "decision", "run", "--part", "3/3"]) == 2
    assert "allowed: I/N with 0 <= I < N" in capsys.readouterr().err


def test_argparse_style_values_are_expanded() -> None:
    params = [Variadic(["--seeds"], item_type=int), Variadic(["--set"], min_values=0),
              OptionalValue(["--ray"], const="local"), click.Option(["--out"])]
    assert expand_args(params, ["--seeds", "0", "1", "--out", "x"]) == ["--seeds=0", "--seeds=1", "--out", "x"]
    assert expand_args(params, ["--set", "--out", "x"]) == ["--set=", "--out", "x"]
    assert expand_args(params, ["--seeds", "-1", "2"]) == ["--seeds=-1", "--seeds=2"]
    assert expand_args(params, ["--ray"]) == ["--ray=local"]
    assert expand_args(params, ["--ray", "ray://head:10001", "--out", "x"]) == ["--ray=ray://head:10001", "--out", "x"]
    assert expand_args(params, ["--ray", "--seeds", "3"]) == ["--ray=local", "--seeds=3"]


def test_import_iov_env_does_not_load_the_cli() -> None:
    code = "import sys, iov_env; print('iov_env.cli' in sys.modules, 'click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["False", "False"]


def test_demo_passes_its_options_to_the_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """iov demo calls the demo's own entry point; options left out keep the demo's defaults."""
    from iov_env import demo

    seen: list[list[str]] = []
    monkeypatch.setattr(demo, "main", lambda argv: seen.append(argv) or 0)
    assert iov(["demo", "--preset", "paper", "--rounds", "3", "--out", str(tmp_path)]) == 0
    assert seen == [["--preset", "paper", "--fidelity", "fast", "--seed", "0", "--out", str(tmp_path),
                     "--real-rounds", "0", "--rounds", "3"]]
    assert iov(["demo", "--video", str(tmp_path / "e.gif"), "--fps", "4"]) == 0
    assert seen[-1][-4:] == ["--video", str(tmp_path / "e.gif"), "--fps", "4.0"]


def test_ucb_paired_refuses_a_folder_without_leaderboard_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`iov study ucb-paired` names the missing runs.csv and what to pass instead."""
    assert iov(["study", "ucb-paired", str(tmp_path), "--out", str(tmp_path / "t.md")]) != 0
    err = capsys.readouterr().err
    assert "runs.csv not found" in err and "iov leaderboard" in err and not (tmp_path / "t.md").exists()


def test_rl_diagnosis_writes_its_tables_with_the_command_that_made_them(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`iov study rl-diagnosis` runs the library and records the `iov` command line as provenance."""
    args = ["study", "rl-diagnosis", "--scenarios", "tiny-v2", "--out", str(tmp_path), "--landscape-seeds", "2",
            "--credit-seeds", "2", "--credit-rounds", "2", "5", "--noise-seeds", "4"]
    assert iov(args) == 0
    md = (tmp_path / "RL_DIAGNOSIS_DATA.md").read_text()
    assert md.startswith("# RL diagnosis data")
    assert f"Written by `iov {' '.join(args)}` on validation seeds 500+" in md
    assert "(rounds 2, 5)" in md and md in capsys.readouterr().out
    for stem in ("rl_landscape", "rl_credit", "rl_noise"):
        assert (tmp_path / f"{stem}_tiny-v2.csv").stat().st_size > 0


@pytest.mark.parametrize(("args", "status", "message"), [
    (["--noise-seeds", "1"], 2, "Invalid value for '--noise-seeds': 1 is not in the range x>=2"),
    (["--scenarios", "mars-v9"], 2, "unknown scenarios ['mars-v9']; allowed: ["),
    (["--scenarios", "tiny-v2", "--credit-rounds", "3", "30"], 1,
     "iov study rl-diagnosis: error: credit rounds [30] are outside tiny-v2's episode; allowed: 0 .. 19"),
    (["--ablation", ".", "--credit-seeds", "3"], 2, "--credit-seeds: not used with --ablation"),
])
def test_rl_diagnosis_refuses_bad_values_naming_what_is_allowed(args: list[str], status: int, message: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert iov(["study", "rl-diagnosis", *args, "--out", str(tmp_path / "o")]) == status
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
