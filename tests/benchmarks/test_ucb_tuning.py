"""benchmarks/studies/ucb_tuning.py: the selection rule by hand, seeds disjoint from evaluation, resuming from its store."""

from __future__ import annotations

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
