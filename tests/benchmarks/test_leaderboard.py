"""benchmarks/leaderboard.py and scenarios.py: outputs, determinism, ranking and input errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmarks import leaderboard
from benchmarks.scenarios import SCENARIOS, scenario, unavailable_reason


def _runs(path: Path) -> list[dict[str, str]]:
    with open(path / "runs.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_leaderboard_writes_files_and_is_reproducible(tmp_path: Path) -> None:
    """Same command, same numbers; runs.csv has one row per (scenario, agent, seed); plots are PNGs."""
    args = ["--scenarios", "tiny-v1", "--agents", "homolora", "random", "--seeds", "2", "--reps", "100"]
    assert leaderboard.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert leaderboard.main([*args, "--out", str(tmp_path / "b"), "--no-plots"]) == 0
    a, b = _runs(tmp_path / "a"), _runs(tmp_path / "b")
    assert len(a) == 4 and {(r["agent"], r["seed"]) for r in a} == {(g, s) for g in ("homolora", "random") for s in "01"}
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "wall_s"} == {k: v for k, v in rb.items() if k != "wall_s"}
    md = (tmp_path / "a" / "LEADERBOARD.md").read_text()
    assert "## tiny-v1" in md and "| homolora |" in md and "| random |" in md
    assert (tmp_path / "a" / "tiny-v1.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "b" / "tiny-v1.png").exists()


def test_ranking_orders_by_mean_reward_rank() -> None:
    """An agent first in one scenario and second in the other ranks 1.5; ties keep both."""
    rows = [
        {"scenario": "s1", "agent": "x", "metric": "cumulative_reward", "mean": 10.0},
        {"scenario": "s1", "agent": "y", "metric": "cumulative_reward", "mean": 5.0},
        {"scenario": "s2", "agent": "x", "metric": "cumulative_reward", "mean": 1.0},
        {"scenario": "s2", "agent": "y", "metric": "cumulative_reward", "mean": 2.0},
    ]
    assert leaderboard.ranking(rows) == [("x", 1.5), ("y", 1.5)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--agents", "nope"], "unknown agents"),
        (["--scenarios", "mars-v0"], "unknown scenarios"),
        (["--seeds", "1"], "at least 2 seeds"),
    ],
)
def test_bad_arguments_name_what_is_allowed(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    """argparse errors (exit 2) that name the bad value and what is allowed; nothing is written."""
    with pytest.raises(SystemExit) as exc:
        leaderboard.main([*argv, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_scenarios_are_valid_configs() -> None:
    """Every frozen scenario builds (without data where it needs none) and unknown ids are refused."""
    import iov_env

    for sid in SCENARIOS:
        if unavailable_reason(sid) is None:
            env = iov_env.parallel_env(**scenario(sid))
            env.close()
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario("nope-v0")
