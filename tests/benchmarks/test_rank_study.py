"""Rank study: intervals and paired gaps by hand, calibration runs as federated rows, a tiny end-to-end run."""

from __future__ import annotations

import argparse
import csv
import json
import math

import pytest

from benchmarks.studies import calibration as calibrate
from benchmarks.studies import rank as rank_study
from iov_env.cli import main as iov

pytest.importorskip("scipy")


def _row(rank: int, seed: int, metric: float, round_index: int = 0, task: str = "sst2") -> dict:
    return {"mode": "centralised", "regime": "rslora/all-linear/lr3e-04/s10/h10/a32", "rank": rank, "seed": seed,
            "task": task, "round": round_index, "metric": metric}


def test_t_interval_by_hand() -> None:
    """Mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.732 = 2.484."""
    mean, lo, hi = rank_study.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and math.isclose(hi - mean, 2.484, abs_tol=1e-3) and math.isclose(mean - lo, hi - mean)
    one = rank_study.t_interval([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])


def test_summary_uses_each_runs_last_round_and_pairs_by_seed() -> None:
    """Gap = rank 64 minus rank 1 of the same seed, from the last round only."""
    rows = [_row(1, s, 0.9, round_index=0) for s in range(3)]  # an early round that must be ignored
    rows += [_row(1, s, m, round_index=1) for s, m in zip(range(3), (0.70, 0.72, 0.74), strict=True)]
    rows += [_row(64, s, m, round_index=1) for s, m in zip(range(3), (0.75, 0.76, 0.80), strict=True)]
    (entry,) = rank_study.summarise(rows)
    assert math.isclose(entry["ranks"][1][0], 72.0) and entry["ranks"][1][3] == 3
    lo_r, hi_r, gap_mean, gap_lo, gap_hi, n = entry["gap"]
    # per-seed gaps 5, 4, 6 points: mean 5, sd 1, half-width 2.484
    assert (lo_r, hi_r, n) == (1, 64, 3)
    assert math.isclose(gap_mean, 5.0, abs_tol=1e-9) and math.isclose(gap_hi - gap_mean, 2.484, abs_tol=1e-3)
    assert gap_lo > 0
    md = rank_study.markdown([entry])
    assert "### centralised" in md and "r64-r1: 5.0 [2.5, 7.5]" in md


def test_calibration_runs_become_federated_rows(tmp_path) -> None:
    """Rows with a regime are kept and named by shard and horizon; rows without one are not."""
    regime = {"lora_scaling": "rslora", "target_modules": ["all-linear"], "learning_rate": 3e-4, "local_steps": 10,
              "head_lr_scale": 10.0, "lora_alpha": 32.0}
    path = tmp_path / "calibration_runs_m.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=calibrate.RUN_FIELDS)
        w.writeheader()
        for t in range(3):
            w.writerow({"config_id": "r4_s150", "task": "sst2", "metric_name": "accuracy", "rank": 4, "shard_size": 150,
                        "round": t, "metric": 0.6 + t / 10, "seed": 0, "regime": json.dumps(regime)})
        w.writerow({"config_id": "r4_s150", "task": "sst2", "metric_name": "accuracy", "rank": 4, "shard_size": 150,
                    "round": 0, "metric": 0.1, "seed": 1, "regime": ""})
    rows = rank_study.calibration_rows([path])
    assert len(rows) == 3
    assert {r["mode"] for r in rows} == {"federated s150 x3"}
    assert {r["regime"] for r in rows} == {"rslora/all-linear/lr3e-04/s10/h10/a32"}
    (entry,) = rank_study.summarise(rows)
    assert math.isclose(entry["ranks"][4][0], 80.0)


def test_report_writes_tables_and_one_plot_per_mode(tmp_path) -> None:
    """report: markdown with every mode and a PNG per mode, nothing else."""
    study = tmp_path / "study.csv"
    with study.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=rank_study.FIELDS, extrasaction="ignore")
        w.writeheader()
        for s in range(2):
            w.writerow(_row(1, s, 0.7 + s / 100))
            w.writerow(_row(64, s, 0.8 + s / 100))
    out = tmp_path / "out"
    text = rank_study.report(argparse.Namespace(csv=[str(study)], calibration=[], out=str(out)))
    assert "r64-r1: 10.0 [10.0, 10.0]" in text
    assert (out / "rank_study.md").read_text().startswith("### centralised")
    assert (out / "rank_study_centralised.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "rank_study_federated.png").exists()


def test_bad_part_is_refused(tmp_path, capsys) -> None:
    """--part must be I/N with 0 <= I < N."""
    assert iov(["study", "rank", "run", "--mode", "centralised", "--part", "2/2", "--csv", str(tmp_path / "x.csv")]) == 1
    assert "allowed I/N" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("mode", ["centralised", "federated"])
def test_tiny_real_run_end_to_end(tmp_path, monkeypatch, mode: str) -> None:
    """A real (tiny random BERT, synthetic data) run writes one row per task and round; a rerun resumes."""
    monkeypatch.delenv("IOV_DATA_DIR", raising=False)
    monkeypatch.setattr("benchmarks.studies.common.default_data_dir", lambda: None)
    out = tmp_path / "s.csv"
    argv = ["run", "--mode", mode, "--model", "tiny-random-bert", "--ranks", "1", "2", "--scalings", "rslora",
            "--targets", "query,value", "--lrs", "1e-3", "--steps", "2", "--seeds", "0", "--rounds", "2",
            "--shard", "32", "--eval-subset", "16", "--rank-set", "1", "2", "--threads", "1", "--csv", str(out)]
    assert iov(["study", "rank", *argv]) == 0
    rows = rank_study.read_rows([out])
    tasks = {"sst2", "conll2003"}
    assert {r["task"] for r in rows} == tasks and {r["mode"] for r in rows} == {mode}
    assert len(rows) == 2 * 2 * len(tasks)  # ranks x rounds x tasks
    assert all(0.0 <= float(r["metric"]) <= 1.0 for r in rows)
    assert {float(r["executed_rank"]) for r in rows if r["rank"] == "2"} == {2.0}
    before = out.read_bytes()
    assert iov(["study", "rank", *argv]) == 0  # every run already there: nothing redone
    assert out.read_bytes() == before
