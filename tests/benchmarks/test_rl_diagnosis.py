"""benchmarks/studies/rl_diagnosis.py (`iov study rl-diagnosis`): the fixed-rank landscape, one decision's exact
credit, and the reward's noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import iov_env
from benchmarks.scenarios import scenario
from benchmarks.studies import rl_diagnosis as diag

SID = "tiny-v2"


def test_play_is_seeded_and_a_fixed_rank_matches_the_landscape() -> None:
    """Same seed, same policy: identical rewards; the landscape's one-rank row is that policy's return over random."""
    env = iov_env.parallel_env(**scenario(SID))
    a = diag.play(env, 500, diag.per_task([3, 3, 3]))
    b = diag.play(env, 500, diag.per_task([3, 3, 3]))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (env.config.episode.rounds, env.config.num_vehicles) and 0 < a[2] < 5
    rand = diag.play(env, 500, diag.random_policy(500))[0].sum()
    land = diag.fixed_rank_landscape(SID, [500, 501])
    k = env.config.num_ranks
    assert len(land) == k ** env.config.num_tasks
    gains = [r["return_over_random"] for r in land]
    assert gains == sorted(gains, reverse=True)
    row = next(r for r in land if r["ranks"] == "8/8/8")
    rand2 = diag.play(env, 501, diag.random_policy(501))[0].sum()
    fixed2 = diag.play(env, 501, diag.per_task([3, 3, 3]))[0].sum()
    assert row["return_over_random"] == pytest.approx(((a[0].sum() - rand) + (fixed2 - rand2)) / 2)


def test_decision_credit_counts_every_deviation_and_nests_its_parts() -> None:
    """One row per (task, other rank), n = seeds x rounds x the task's vehicles; the own effect this round is
    part of the own effect to the end; a deviation that the mask undoes changes nothing."""
    env = iov_env.parallel_env(**scenario(SID))
    _, tasks, _ = diag.play(env, 500, diag.per_task([2, 2, 2]))
    rows = diag.decision_credit(SID, [2, 2, 2], [500], [4])
    k = env.config.num_ranks
    assert len(rows) == env.config.num_tasks * (k - 1)
    names = env.config.tasks.tasks
    for r in rows:
        assert r["n"] == int((tasks == names.index(r["task"])).sum())
        assert np.isfinite([r["own_now"], r["own_rest"], r["task_rest"], r["fleet_rest"]]).all()
    # only the deviating round differs for a myopic effect: own_now and own_rest agree in sign for the largest rank
    top = [r for r in rows if r["rank"] == env.config.learning.rank_set[-1]]
    assert all(np.sign(r["own_now"]) == np.sign(r["own_rest"]) or abs(r["own_now"]) < 1e-9 for r in top)


def test_reward_noise_and_the_written_files(tmp_path: Path) -> None:
    """Spreads are positive and finite; the command writes the three CSVs per scenario and the Markdown."""
    rows = diag.reward_noise(SID, [500, 501, 502, 503], holdout=0.5)
    assert len(rows) == 3
    for r in rows:
        assert r["samples"] > 0 and r["reward_sd"] > 0 and np.isfinite(r["resid_sd_given_obs_rank"])
    text = diag.run([SID], tmp_path, landscape_seeds=2, credit_seeds=2, credit_rounds=[2], noise_seeds=4,
                    command="iov study rl-diagnosis --scenarios tiny-v2")
    for stem in ("rl_landscape", "rl_credit", "rl_noise"):
        assert (tmp_path / f"{stem}_{SID}.csv").stat().st_size > 0
    md = (tmp_path / "RL_DIAGNOSIS_DATA.md").read_text()
    assert md == text and f"## {SID}" in md and "| task | base | rank |" in md
    assert "Written by `iov study rl-diagnosis --scenarios tiny-v2` on validation seeds 500+" in md
    # same seeds, same numbers
    again = diag.run([SID], tmp_path / "again", landscape_seeds=2, credit_seeds=2, credit_rounds=[2], noise_seeds=4,
                     command="iov study rl-diagnosis --scenarios tiny-v2")
    assert again == text
    with pytest.raises(ValueError, match="noise_seeds=1: at least 2"):
        diag.run([SID], tmp_path / "bad", noise_seeds=1)
    with pytest.raises(ValueError, match=r"credit rounds \[30\] are outside tiny-v2's episode; allowed: 0 .. 19"):
        diag.run([SID], tmp_path / "bad", credit_rounds=[3, 30])
    assert not (tmp_path / "bad").exists()  # checked before any measurement
    with pytest.raises(ValueError, match="outside tiny-v2's episode"):
        diag.decision_credit(SID, [2, 2, 2], [500], [20])


def test_ablation_scores_each_training_folder_between_random_and_the_best_fixed_rank(tmp_path: Path) -> None:
    """Two `iov train` settings -> one row each, with the score (return - random) / (best fixed - random)."""
    pytest.importorskip("sb3_contrib")
    from iov_env.cli import main as iov

    base = ["train", "--scenarios", SID, "--agents", "maskable_ppo_shared", "--seeds", "1", "--env-steps", "40",
            "--eval-every", "40", "--eval-episodes", "2", "--reps", "20", "--set", "n_steps=20", "batch_size=60",
            "n_epochs=1"]
    assert iov([*base, "--out", str(tmp_path / "abl" / "myopic")]) == 0
    assert iov([*base, "gamma=0.99", "--out", str(tmp_path / "abl" / "discounted")]) == 0
    rows = diag.ablation_rows(tmp_path / "abl", SID)
    assert [r["setting"] for r in rows] == ["discounted", "myopic"]
    assert rows[0]["hp"]["gamma"] == 0.99 and rows[1]["hp"]["gamma"] == 0.0
    env = iov_env.parallel_env(**scenario(SID))
    rand = np.mean([diag.play(env, s, diag.random_policy(s))[0].sum() for s in (500, 501)])
    best = max(r["return_over_random"] for r in diag.fixed_rank_landscape(SID, [500, 501]))
    for r in rows:
        assert r["random"] == pytest.approx(rand)
        assert r["score_mean"] == pytest.approx((r["mean"] - rand) / best)
    with pytest.raises(FileNotFoundError, match="no `iov train` output"):
        diag.ablation_rows(tmp_path, SID)
    # through the command: the same rows in ABLATION.md, with the command that wrote it
    assert iov(["study", "rl-diagnosis", "--ablation", str(tmp_path / "abl"), "--scenarios", SID,
                "--out", str(tmp_path / "scored")]) == 0
    md = (tmp_path / "scored" / "ABLATION.md").read_text()
    assert f"Written by `iov study rl-diagnosis --ablation {tmp_path / 'abl'} --scenarios {SID} --out" in md
    assert f"| myopic | {rows[1]['runs']} | 40 |" in md and f"{rows[1]['score_mean']:.2f}" in md
    assert (tmp_path / "scored" / f"ablation_{SID}.csv").stat().st_size > 0
