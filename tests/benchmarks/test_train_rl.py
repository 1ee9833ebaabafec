"""benchmarks/train_rl.py: an end-to-end run on the tiny world, resume, plateau, seeds, leaderboard hand-off."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("sb3_contrib")

from benchmarks import train_rl  # noqa: E402
from iov_env.cli import main as iov  # noqa: E402

TINY_RUN = ["--scenarios", "tiny-v1", "--agents", "maskable_ppo_shared", "--seeds", "2", "--eval-every", "40",
            "--eval-episodes", "1", "--reps", "50", "--set", "n_steps=20", "batch_size=60", "n_epochs=1"]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_plateau_step_finds_where_the_curve_settles() -> None:
    """Rise then flat: the smoothed curve keeps 95% of its change from step 500 on; noise and rising curves are told apart."""
    steps = list(range(0, 1100, 100))
    rising_then_flat = [0, 50, 80, 95, 99, 100, 100, 101, 100, 99, 100]
    assert train_rl.plateau_step(steps, rising_then_flat, ci_halfwidth=0.0) == 500
    assert train_rl.plateau_step(steps, [-x for x in rising_then_flat], ci_halfwidth=0.0) == 500  # falling energy
    assert train_rl.plateau_step(steps, rising_then_flat, ci_halfwidth=150.0) == train_rl.NO_CHANGE
    assert train_rl.plateau_step(steps, list(range(11)), ci_halfwidth=0.0) is None  # still rising at the end


def test_training_seeds_are_disjoint_from_validation_and_evaluation_seeds() -> None:
    """Leaderboard seeds 0..n-1 < validation 500.. < training 1000..; a clash is refused."""
    assert train_rl.VALIDATION_SEED_BASE < train_rl.TRAIN_SEED_BASE
    assert iov(["train", "--eval-episodes", "600", "--out", "/nonexistent"]) == 1


def test_train_then_leaderboard_evaluates_the_checkpoints_without_training(tmp_path: Path, monkeypatch, capsys) -> None:
    """Two tiny runs -> curves, plateau, PNG, checkpoints; a rerun skips them; a bigger budget continues them;
    the leaderboard then loads (never trains) the policies, evaluation seed i <- training run i."""
    out = tmp_path / "rl"
    assert iov(["train", *TINY_RUN, "--env-steps", "80", "--out", str(out)]) == 0
    run0 = out / "tiny-v1" / "maskable_ppo_shared" / "seed1000"
    curve = _csv(run0 / "curve.csv")
    assert [int(r["env_steps"]) for r in curve] == [0, 40, 80]
    assert {"return", "energy_j", "violation_rate", "lambda"} <= set(curve[0])
    assert (run0 / "policy.safetensors").stat().st_size < 400_000 and not (run0 / "policy.zip").exists()
    manifest = json.loads((run0 / "policy.json").read_text())
    assert manifest["scenario"] == "tiny-v1"
    # the masked learners train the task-head actor, myopically (train_rl.MASKED_HP)
    assert manifest["policy_class"] == "TaskHeadMaskablePolicy" and manifest["architecture"]["task_dims"] == 3
    assert json.loads((run0 / "settings.json").read_text())["hp"]["gamma"] == 0.0
    assert json.loads((run0 / "done.json").read_text())["env_steps"] == 80
    assert (out / "curves_tiny-v1.png").read_bytes()[:4] == b"\x89PNG"
    agg = _csv(out / "curves.csv")
    assert len(agg) == 3 and all(r["seeds"] == "2" for r in agg)
    assert float(agg[-1]["return_lo"]) <= float(agg[-1]["return_mean"]) <= float(agg[-1]["return_hi"])
    assert {r["agent"] for r in _csv(out / "references.csv")} == {"ucb_dual", "homolora"}

    # finished runs are skipped: training must not be called again
    def no_training(job: dict) -> dict:
        raise AssertionError(f"retrained {job['dir']}")

    monkeypatch.setattr(train_rl, "train_run", no_training)
    assert iov(["train", *TINY_RUN, "--env-steps", "80", "--out", str(out)]) == 0
    monkeypatch.undo()
    # other hyperparameters in the same folder: refused, not silently mixed into the old run
    assert iov(["train", *TINY_RUN[:-1], "n_epochs=2", "--seeds", "1", "--env-steps", "120", "--out", str(out)]) == 1
    assert "other settings" in capsys.readouterr().err
    # a larger budget resumes from the saved trainer: the first three evaluations stay as they were
    assert iov(["train", *TINY_RUN, "--seeds", "1", "--env-steps", "120", "--out", str(out)]) == 0
    longer = _csv(run0 / "curve.csv")
    assert [int(r["env_steps"]) for r in longer] == [0, 40, 80, 120] and longer[:3] == curve

    from agents import sb3

    def no_sb3_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the leaderboard trained instead of loading the checkpoint")

    monkeypatch.setattr(sb3, "train_decentralized", no_sb3_training)
    lb = tmp_path / "lb"
    assert iov(["leaderboard", "--scenarios", "tiny-v1", "--agents", "maskable_ppo_shared", "--seeds", "3",
                             "--reps", "20", "--no-plots", "--checkpoints", str(out), "--out", str(lb)]) == 0
    jobs = [json.loads(p.read_text())["job"] for p in (lb / "runs").glob("*.json")]
    stored = sorted(j["checkpoint"] for j in jobs if j["agent"] == "maskable_ppo_shared")
    assert [Path(c).parent.name for c in stored] == ["seed1000", "seed1000", "seed1001"]  # seed 2 cycles to run 0
    assert not any("checkpoint" in j for j in jobs if j["agent"] != "maskable_ppo_shared")
    rows = _csv(lb / "runs.csv")
    # random and oracle join as the normalised score's 0 and 1
    assert len(rows) == 9 and {r["agent"] for r in rows} == {"maskable_ppo_shared", "random", "oracle"}


def test_missing_checkpoints_and_unknown_agents_are_clear_errors(tmp_path: Path, capsys) -> None:
    """The leaderboard names the train_rl command to run; train_rl names the agents it knows."""
    assert iov(["leaderboard", "--scenarios", "tiny-v1", "--agents", "ppo_lag_shared", "--seeds", "2",
                          "--checkpoints", str(tmp_path), "--out", str(tmp_path / "lb")])
    assert "iov train" in capsys.readouterr().err
    assert iov(["leaderboard", "--agents", "rllib_ppo", "--out", str(tmp_path / "lb")]) == 1
    assert "--checkpoints" in capsys.readouterr().err
    assert iov(["train", "--agents", "sac_shared", "--out", str(tmp_path / "rl")]) == 1
    assert "maskable_ppo_shared" in capsys.readouterr().err
