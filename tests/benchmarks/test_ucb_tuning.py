"""benchmarks/studies/ucb_tuning.py: the selection rule by hand, seeds disjoint from evaluation, resuming from its store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.studies import ucb_tuning


def _row(setting: str, world: str, score: float, ratio: float, grid: str = "episodic") -> dict:
    return {"grid": grid, "setting": setting, "world": world, "score": score, "energy_ratio": ratio,
            "opt_exploration": 0.1, "opt_dual_step_size": ""}


def test_selection_keeps_the_best_mean_score_within_the_energy_limit_everywhere() -> None:
    """An overspender on one world is out whatever its score; among the rest the best mean wins, ties to the first."""
    rows = [
        _row("spender", "a", 0.9, 0.8), _row("spender", "b", 0.9, 1.01),
        _row("first", "a", 0.3, 0.9), _row("first", "b", 0.5, 1.0),
        _row("tied", "a", 0.5, 0.5), _row("tied", "b", 0.3, 0.5),
        _row("worse", "a", 0.1, 0.5), _row("worse", "b", 0.1, 0.5),
    ]
    best = ucb_tuning.select(rows, "episodic")
    assert best is not None and best["setting"] == "first" and best["mean_score"] == pytest.approx(0.4)
    assert best["options"] == {"exploration": 0.1}  # unset options ("") are not part of the preset
    assert ucb_tuning.select([_row("x", "a", 1.0, 1.2)], "episodic") is None


def test_the_grids_name_every_setting_once_and_tune_off_the_evaluation_seeds() -> None:
    """Distinct names (the store's keys), and tuning seeds that never meet the leaderboard's 0..99."""
    for grid in ucb_tuning.GRIDS.values():
        names = [ucb_tuning.setting_id(kw) for kw in grid()]
        assert len(names) == len(set(names))
    assert "c1-all-random-d1-rsu" in {ucb_tuning.setting_id(kw) for kw in ucb_tuning.episodic_grid()}  # the paper's rule
    assert ucb_tuning.TUNING_SEED_BASE >= 100


def test_a_rerun_resumes_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same rows from the store, no job run twice; seeds < 2 refused."""
    monkeypatch.setattr(ucb_tuning, "GRIDS", {"episodic": lambda: ucb_tuning.episodic_grid()[:1]})
    first = ucb_tuning.study(["tiny-v2"], 2, store_dir=tmp_path, progress=lambda _: None, grids=("episodic",))
    assert {r["seed"] for r in first} == {ucb_tuning.TUNING_SEED_BASE, ucb_tuning.TUNING_SEED_BASE + 1}

    def boom(job: dict) -> dict:
        raise AssertionError("a stored job ran again")

    monkeypatch.setattr(ucb_tuning, "run_job", boom)
    monkeypatch.setattr(ucb_tuning, "reference_job", boom)
    assert ucb_tuning.study(["tiny-v2"], 2, store_dir=tmp_path, progress=lambda _: None, grids=("episodic",)) == first
    with pytest.raises(ValueError, match="seeds=1"):
        ucb_tuning.study(["tiny-v2"], 1)


def test_the_per_family_rule_takes_each_worlds_best_within_budget_there() -> None:
    """Per family (scenario id less -vN): the best score on its own world within the limit; over the limit is out."""
    rows = [
        _row("a", "paper-v2", 0.9, 1.2), _row("a", "tiny-v2", 0.1, 0.5),
        _row("b", "paper-v2", 0.5, 0.9), _row("b", "tiny-v2", 0.2, 0.5),
        _row("c", "paper-v2", 0.5, 0.5), _row("c", "tiny-v2", 0.3, 1.01),
    ]
    fam = ucb_tuning.select_by_family(rows, "episodic")
    assert fam["paper"]["setting"] == "b"  # a overspends there; b and c tie and b comes first in the grid
    assert fam["tiny"]["setting"] == "b" and fam["tiny"]["mean_score"] == pytest.approx(0.2)  # c overspends on tiny
    assert ucb_tuning.select_by_family([_row("x", "tiny-v2", 1.0, 1.5)], "episodic") == {}  # nothing within: pooled


def test_the_reevaluation_takes_distinct_top_candidates_on_fresh_training_warm_ups() -> None:
    """Top-k within budget per world, identical runs counted once, every warm-up off the evaluation seeds."""
    rows = [_row(n, "paper-v2", s, e, grid="deployed") for n, s, e in
            [("best", 0.9, 0.5), ("twin", 0.9, 0.5), ("over", 0.95, 1.1), ("second", 0.7, 0.8), ("third", 0.6, 0.6),
             ("fourth", 0.5, 0.6)]]
    for r, c in zip(rows, (0.5, 0.5, 0.1, 0.25, 0.1, 0.0), strict=True):
        r["opt_exploration"] = c
    jobs = ucb_tuning.reevaluation_jobs(rows, ["paper-v2"], [2000, 2001], top=3, bases=(3000, 3020))
    assert [(j["search_rank"], j["warmup_seed_base"]) for j in jobs] == [(1, 3000), (1, 3020), (2, 3000), (2, 3020),
                                                                         (3, 3000), (3, 3020)]
    assert [j["search_score"] for j in jobs[::2]] == [0.9, 0.7, 0.6]  # "twin" (same runs as "best") and "over" left out
    assert min(ucb_tuning.REEVAL_WARMUP_BASES) >= 3000  # disjoint from the leaderboard's warm-up 1000.. and tuning 2000..
    table = [{"family": "paper", "world": "paper-v2", "setting": s, "score": sc, "score_se": 0.0, "energy_ratio": e,
              "energy_ratio_worst_warmup": e, "within": e <= 1.0, "options": {"exploration": 0.1}}
             for s, sc, e in [("first", 0.4, 0.9), ("spender", 0.8, 1.02), ("tie", 0.4, 0.5), ("weak", 0.1, 0.5)]]
    assert ucb_tuning.select_reevaluated(table)["paper"]["setting"] == "first"
    assert ucb_tuning.select_reevaluated(table[1:2]) == {}


def test_paired_rows_pair_by_seed_against_each_reference() -> None:
    """Scores anchored per seed (random 0, oracle 1); the difference to a reference is the mean per-seed gap."""
    recs = []
    for seed, (lo, hi, a, b) in enumerate([(0.0, 10.0, 5.0, 3.0), (10.0, 30.0, 20.0, 16.0), (0.0, 10.0, 9.0, 8.0)]):
        for who, rew in (("random", lo), ("oracle", hi), ("a", a), ("b", b)):
            recs.append({"scenario": "w-v2", "agent": who, "seed": seed, "cumulative_reward": rew, "energy_j": 1.0,
                         "budget_j": 2.0, "violation_rate": 0.0})
    rows = ucb_tuning.paired_rows(recs, ["a", "b"], references=("b",), reps=200)
    ra, rb = rows
    assert ra["score"] == pytest.approx((0.5 + 0.5 + 0.9) / 3) and ra["energy_ratio"] == pytest.approx(0.5)
    assert ra["vs_b"] == pytest.approx((0.2 + 0.2 + 0.1) / 3)
    assert ra["vs_b_lo"] <= ra["vs_b"] <= ra["vs_b_hi"]
    assert math.isnan(rb["vs_b"])
    text = ucb_tuning.paired_markdown(rows, ("b",))
    assert "| w-v2 | a | 0.63 | 0.50 | +0.17 [" in text and "| w-v2 | b | 0.47 | 0.50 | - |" in text
