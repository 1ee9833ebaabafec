"""benchmarks/leaderboard.py and scenarios.py: outputs, determinism, ranking and input errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmarks.scenarios import SCENARIOS, scenario, unavailable_reason
from iov_env.cli import main as iov


def _runs(path: Path) -> list[dict[str, str]]:
    with open(path / "runs.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_leaderboard_writes_files_and_is_reproducible(tmp_path: Path, capsys) -> None:
    """Same command, same numbers; the references are added; one row per (scenario, agent, seed); PNG plots."""
    args = ["--scenarios", "tiny-v1", "--agents", "homolora", "hetlora", "--seeds", "2", "--reps", "100"]
    assert iov(["leaderboard", *args, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr()
    assert "adding ['random', 'oracle']" in printed.err
    assert iov(["leaderboard", *args, "--out", str(tmp_path / "b"), "--no-plots"]) == 0
    a, b = _runs(tmp_path / "a"), _runs(tmp_path / "b")
    agents = ("homolora", "hetlora", "random", "oracle")
    assert len(a) == 8 and {(r["agent"], r["seed"]) for r in a} == {(g, s) for g in agents for s in "01"}
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "wall_s"} == {k: v for k, v in rb.items() if k != "wall_s"}
    assert all(r["certificate"] for r in a if r["agent"] == "oracle")
    assert not any(r["certificate"] for r in a if r["agent"] != "oracle")
    md = (tmp_path / "a" / "LEADERBOARD.md").read_text()
    # the printed table is the constraint-aware one, with scores, CIs, energy, violations and headroom
    for text in ("## Constraint-aware ranking", "| rank | agent | IQM score |", "## Headroom", "## The oracle's bound",
                 "| ref | oracle (reference) | 1.00 [1.00, 1.00] |", "not ranked", "| hetlora |", "## tiny-v1"):
        assert text in md and text in printed.out, text
    with open(tmp_path / "a" / "scores.csv", newline="") as fh:
        scores = {(r["agent"], r["seed"]): float(r["score"]) for r in csv.DictReader(fh)}
    reward = {(r["agent"], r["seed"]): float(r["cumulative_reward"]) for r in a}
    by_hand = (reward[("hetlora", "0")] - reward[("random", "0")]) / (reward[("oracle", "0")] - reward[("random", "0")])
    assert scores[("random", "0")] == 0.0 and scores[("oracle", "1")] == 1.0
    assert scores[("hetlora", "0")] == pytest.approx(by_hand, rel=1e-9) and scores[("hetlora", "0")] < 1.0
    for name in ("tiny-v1.png", "tiny-v1-return-vs-energy.png"):
        assert (tmp_path / "a" / name).read_bytes()[:4] == b"\x89PNG"
        assert not (tmp_path / "b" / name).exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--agents", "nope"], "unknown agents"),
        (["--scenarios", "mars-v0"], "unknown scenarios"),
        (["--seeds", "1"], "at least 2 seeds"),
    ],
)
def test_bad_arguments_name_what_is_allowed(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    """Errors (exit 1, one line) that name the bad value and what is allowed; nothing is written."""
    assert iov(["leaderboard", *argv, "--out", str(tmp_path / "o")]) == 1
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
