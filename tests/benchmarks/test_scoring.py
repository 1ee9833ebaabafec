"""benchmarks/scoring.py on hand-built runs: normalisation, headroom, constraint-aware ranking, oracle checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import report, scoring

BUDGET = 1000.0


def _runs(worlds: dict[str, float], agents: dict[str, tuple[float, float]], seeds: int = 6, noise: float = 1.0,
          world_sd: float = 200.0) -> list[dict]:
    """Rewards = world level + seed effect (shared by all agents: common random numbers) + agent offset + noise.

    ``worlds``: world -> oracle - random gap; ``agents``: agent -> (fraction of the gap, energy ratio).
    """
    rng = np.random.default_rng(0)
    out = []
    for w, gap in worlds.items():
        for s in range(seeds):
            level = 10_000.0 + rng.normal(0, world_sd)  # large seed-to-seed spread, removed by pairing
            for a, (frac, ratio) in agents.items():
                jitter = 0.0 if a in ("random", "oracle") else rng.normal(0, noise)
                out.append({"scenario": w, "agent": a, "seed": s, "cumulative_reward": level + frac * gap + jitter,
                            "energy_j": ratio * BUDGET, "budget_j": BUDGET, "violation_rate": max(0.0, ratio - 0.9)})
    return out


AGENTS = {"random": (0.0, 0.8), "oracle": (1.0, 1.0), "ucb_dual": (0.3, 1.0), "good": (0.8, 0.9), "greedy_spender": (1.3, 1.4)}


def test_scores_are_paired_and_anchored() -> None:
    """Random scores 0 and the oracle 1 on every seed although seeds differ by hundreds; others in between."""
    scored = scoring.score_runs(_runs({"w": 100.0}, AGENTS))
    by = {(r["agent"], r["seed"]): r for r in scored}
    assert all(by[("random", s)]["score"] == 0.0 and by[("oracle", s)]["score"] == 1.0 for s in range(6))
    good = [by[("good", s)]["score"] for s in range(6)]
    assert np.mean(good) == pytest.approx(0.8, abs=0.02)
    assert by[("greedy_spender", 0)]["energy_ratio"] == pytest.approx(1.4)
    # a run without both references cannot be scored
    lone = scoring.score_runs([{**_runs({"w": 100.0}, {"good": (0.5, 1.0)})[0]}])
    assert math.isnan(lone[0]["score"])


def test_headroom_flags_worlds_that_cannot_separate_agents() -> None:
    """A 100-reward gap with 1-reward noise has headroom; a 1-reward gap under 1-reward noise does not."""
    records = _runs({"wide": 100.0}, AGENTS) + _runs({"flat": 0.5}, AGENTS, noise=1.0)
    # the references carry per-seed noise on 'flat' only, so its paired gap is noisy
    rng = np.random.default_rng(3)
    for r in records:
        if r["scenario"] == "flat" and r["agent"] == "oracle":
            r["cumulative_reward"] += rng.normal(0, 2.0)
    rooms = {r["world"]: r for r in scoring.headroom(records)}
    assert rooms["wide"]["kept"] and rooms["wide"]["headroom_se"] > 10
    assert not rooms["flat"]["kept"] and rooms["flat"]["headroom_se"] < 10
    out = scoring.score_all(records, reps=60)
    assert all(a["worlds"] == 1 for a in out["agents"])  # the flagged world is left out of the aggregate
    md = report.scores_markdown(out["scored"], out["headroom"], out["agents"], out["checks"], out["worlds"])
    assert "**no: flagged**" in md and "Left out for lack of headroom: flat" in md


def test_constraint_aware_ranking_lists_overspenders_apart() -> None:
    """Within budget (<= 1.05) ranked by IQM score; the overspender is listed below despite the top score."""
    out = scoring.score_all(_runs({"w1": 100.0, "w2": 300.0}, AGENTS), reps=60)
    within, over = scoring.ranking(out["agents"])
    assert [r["agent"] for r in within] == ["oracle", "good", "ucb_dual", "random"]
    assert [r["agent"] for r in over] == ["greedy_spender"] and over[0]["over_budget_worlds"] == ["w1", "w2"]
    good = next(r for r in out["agents"] if r["agent"] == "good")
    assert good["iqm_lo"] <= good["iqm"] <= good["iqm_hi"] and good["iqm"] == pytest.approx(0.8, abs=0.02)
    assert good["poi"] == pytest.approx(1.0) and good["diff"] == pytest.approx(0.5, abs=0.02)
    assert "poi" not in next(r for r in out["agents"] if r["agent"] == "ucb_dual")
    md = report.scores_markdown(out["scored"], out["headroom"], out["agents"], out["checks"], out["worlds"])
    ranked = md.split("Over budget")[0]
    assert "greedy_spender" not in ranked
    # the references first, unranked (best first), then the learners numbered from 1
    rows = [line.split(" | ")[:2] for line in ranked.splitlines() if line.startswith("| ") and " | " in line][1:]
    assert rows == [["| ref", "oracle (reference)"], ["| ref", "random (reference)"], ["| 1", "good"], ["| 2", "ucb_dual"]]


def test_oracle_checks_catch_an_agent_above_the_line_and_above_the_bound() -> None:
    """The Lagrangian line allows mu reward per extra joule; the certified bound is min over mu of B + mu E."""
    records = _runs({"w": 100.0}, AGENTS)
    for r in records:
        if r["agent"] == "oracle":
            r["lagrange_mu"] = 0.5  # the spender's 400 extra J are worth at most 200 reward
            b0 = r["cumulative_reward"] - 0.5 * r["energy_j"]
            r["certificate"] = json.dumps([[0.0, 0.5], [r["cumulative_reward"] + 100.0, b0 + 10.0]])
    checks = {c["agent"]: c for c in scoring.oracle_checks(scoring.score_runs(records))}
    assert not checks["greedy_spender"]["beyond_noise"] and checks["greedy_spender"]["bound_violations"] == 0
    assert checks["oracle"]["lagrangian_gap"] == pytest.approx(0.0)
    for r in records:
        if r["agent"] == "greedy_spender":
            r["cumulative_reward"] += 250.0  # now above both
    checks = {c["agent"]: c for c in scoring.oracle_checks(scoring.score_runs(records))}
    assert checks["greedy_spender"]["beyond_noise"] and checks["greedy_spender"]["bound_violations"] == 6
    assert scoring.certified_bound((np.array([0.0, 0.5]), np.array([100.0, 40.0])), 100.0) == pytest.approx(90.0)


def test_paired_difference_uses_shared_seeds_only() -> None:
    """a - b over the seeds both ran; relative: ratio of means minus one."""
    rec = [{"scenario": "w", "agent": a, "seed": s, "x": v} for a, s, v in
           [("a", 0, 3.0), ("a", 1, 5.0), ("a", 2, 7.0), ("b", 0, 1.0), ("b", 1, 1.0)]]
    point, lo, hi = scoring.paired_difference(rec, "w", "a", "b", "x", reps=60)
    assert point == pytest.approx(3.0) and lo <= point <= hi
    assert scoring.paired_difference(rec, "w", "a", "b", "x", relative=True, reps=60)[0] == pytest.approx(3.0)
