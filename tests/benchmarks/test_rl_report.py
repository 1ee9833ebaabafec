"""benchmarks/rl_report.py: paired differences against the reference agent, by seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import rl_report
from iov_env.cli import main as iov
from iov_env.results import write_csv_atomic


def _write(folder: Path) -> None:
    rows = []
    for seed, base in enumerate([100.0, 200.0, 300.0, 400.0]):
        rows.append({"scenario": "s", "agent": "ucb_dual", "seed": seed, "cumulative_reward": base, "energy_j": 50.0,
                     "violation_rate": 0.5, "accuracy_pts": 0, "latency_s": 0})
        # +10 reward and -5 J on every seed: unpaired CIs overlap widely, paired ones are exact
        rows.append({"scenario": "s", "agent": "ppo", "seed": seed, "cumulative_reward": base + 10, "energy_j": 45.0,
                     "violation_rate": 0.25, "accuracy_pts": 0, "latency_s": 0})
    write_csv_atomic(folder / "runs.csv", rows)


def test_paired_differences_cancel_the_seed_variation(tmp_path: Path) -> None:
    """Δ reward is exactly +10 on every seed, so its CI is [10, 10]; violations sit beside every score."""
    _write(tmp_path)
    table = {r["agent"]: r for r in rl_report.paired_table(rl_report.read_runs(tmp_path), "ucb_dual", reps=200)}
    assert table["ppo"]["delta_cumulative_reward"] == pytest.approx((10.0, 10.0, 10.0))
    assert table["ppo"]["delta_energy_j"] == pytest.approx((-5.0, -5.0, -5.0))
    lo, hi = table["ppo"]["cumulative_reward"][1:]
    assert hi - lo > 100  # the unpaired interval is wide
    assert iov(["report", "rl", str(tmp_path), "--reps", "100"]) == 0
    md = (tmp_path / "RL_VS_REFERENCE.md").read_text()
    assert "| ppo | n/a | n/a | 260 [" in md and "+10 [+10, +10]" in md and "0.25 [0.25, 0.25]" in md


def test_scores_and_budget_order_the_table(tmp_path: Path) -> None:
    """With random and oracle in the grid: scores by hand; an over-budget agent is listed last despite its reward."""
    rows = []
    for seed, base in enumerate([100.0, 200.0, 300.0]):
        for agent, reward, energy in (("random", base, 50.0), ("oracle", base + 100, 50.0), ("ucb_dual", base + 50, 60.0),
                                      ("greedy_spender", base + 200, 200.0)):
            rows.append({"scenario": "s", "agent": agent, "seed": seed, "cumulative_reward": reward, "energy_j": energy,
                         "budget_j": 100.0, "violation_rate": 0.1, "accuracy_pts": 0, "latency_s": 0})
    write_csv_atomic(tmp_path / "runs.csv", rows)
    table = rl_report.paired_table(rl_report.read_runs(tmp_path), "ucb_dual", reps=200)
    by = {r["agent"]: r for r in table}
    assert by["ucb_dual"]["score"] == pytest.approx((0.5, 0.5, 0.5))
    assert by["greedy_spender"]["score"][0] == pytest.approx(2.0)
    assert by["greedy_spender"]["delta_score"] == pytest.approx((1.5, 1.5, 1.5))
    assert by["greedy_spender"]["energy_ratio"][0] == pytest.approx(2.0)
    assert [r["agent"] for r in rl_report.order(table)] == ["oracle", "ucb_dual", "random", "greedy_spender"]
    md = rl_report.markdown(table, "ucb_dual", "x")
    assert "| greedy_spender (over budget) | 2.00 [2.00, 2.00] | +1.50 [+1.50, +1.50] |" in md
    assert "| oracle (reference) | 1.00 [1.00, 1.00] |" in md


def test_hindsight_references_come_first_whatever_their_score(tmp_path: Path) -> None:
    """greedy and best_fixed read the simulator: listed right after the oracle even below a learner's score."""
    rows = []
    for seed, base in enumerate([100.0, 200.0, 300.0]):
        for agent, reward in (("random", base), ("oracle", base + 100), ("ucb_dual", base + 50),
                              ("greedy", base + 20), ("best_fixed", base + 90), ("learner", base + 95)):
            rows.append({"scenario": "s", "agent": agent, "seed": seed, "cumulative_reward": reward, "energy_j": 50.0,
                         "budget_j": 100.0, "violation_rate": 0.0, "accuracy_pts": 0, "latency_s": 0})
    write_csv_atomic(tmp_path / "runs.csv", rows)
    table = rl_report.paired_table(rl_report.read_runs(tmp_path), "ucb_dual", reps=100)
    assert [r["agent"] for r in rl_report.order(table)] == ["oracle", "best_fixed", "greedy", "learner", "ucb_dual",
                                                            "random"]
    md = rl_report.markdown(table, "ucb_dual", "x")
    assert "| greedy (reference) | 0.20 [0.20, 0.20] | -0.30 [-0.30, -0.30] |" in md


def test_missing_inputs_are_named(tmp_path: Path, capsys) -> None:
    """No runs.csv, or a reference that never ran: argparse errors naming the problem."""
    assert iov(["report", "rl", str(tmp_path)]) == 1
    assert "no runs.csv" in capsys.readouterr().err
    _write(tmp_path)
    assert iov(["report", "rl", str(tmp_path), "--reference", "nobody"]) == 1
    assert "nobody" in capsys.readouterr().err
