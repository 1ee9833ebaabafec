"""Calibration fit: recovers a known curve from noisy multi-seed runs, records regime and provenance."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.studies import calibration as calibrate
from iov_env.learning.surrogate import TaskCurve, predict_accuracy, rank_speed, samples_per_round

pytest.importorskip("scipy")

TRUE = TaskCurve(floor=0.5, ceiling=0.88, rank_gap=0.08, rank_half=4.0, sample_scale=1500.0, speed_rank_half=2.0,
                 noniid_penalty=0.03, stale_penalty=0.01, noise_std=0.0, tokens_per_sample=13.0, zero_pad_penalty=0.15)
REGIME = calibrate.regime_tag({"lora_scaling": "rslora", "target_modules": ["all-linear"], "learning_rate": 0.001})


def _rows(noise: float, seeds=(0, 1, 2)) -> list[dict]:
    rng = np.random.default_rng(0)
    hetero = 1.0 / (1.0 + 10.0)
    curve = replace(TRUE, ceiling=TRUE.ceiling)  # the fit reports the observed top, the prior's skew term aside
    rows = []
    for seed in seeds:
        for rank in (1, 4, 16, 64):
            for shard in (150, 450):
                for t in range(6):
                    samples = (t + 1) * samples_per_round(10, 16, np.array(shard)) * rank_speed(curve, np.array(rank))
                    y = float(predict_accuracy(curve, np.array(rank), samples, hetero)) + rng.normal(0, noise)
                    rows.append({"config_id": f"r{rank}_s{shard}", "task": "sst2", "metric_name": "accuracy",
                                 "rank": rank, "shard_size": shard, "local_steps": 10, "batch_size": 16, "round": t,
                                 "metric": round(y, 4), "n_eval": 872, "tokens_per_sample": 13.0,
                                 "dirichlet_alpha": 10.0, "round_wall_s": 1.0, "seed": seed, "regime": REGIME,
                                 "commit": "abc123"})
    return rows


def _write(path, rows) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=calibrate.RUN_FIELDS)
        w.writeheader()
        w.writerows(rows)


def test_fit_recovers_the_rank_effect_and_records_provenance(tmp_path) -> None:
    csv_path, json_path = tmp_path / "runs.csv", tmp_path / "model.json"
    _write(csv_path, _rows(noise=0.005))
    doc = calibrate.fit(csv_path, json_path, "model", [(4, 450), (16, 150)])
    fitted = doc["tasks"]["sst2"]
    rep = doc["fit"]["sst2"]
    # the held-out configurations are predicted within the injected noise
    assert rep["mae_heldout_points"] < 1.0 and rep["mae_heldout_seed_mean_points"] <= rep["mae_heldout_points"]
    assert rep["seeds"] == 3
    # the binomial floor of 872 examples near 80 %: 100 sqrt(0.8 * 0.2 / 872) ~ 1.35 points
    assert 1.0 < rep["binomial_noise_floor_points"] < 1.8
    # rank 64 ends above rank 1, as in the data
    top = TaskCurve(**fitted)
    late = 1e6
    assert float(predict_accuracy(top, np.array(64), np.array(late), 1 / 11) - predict_accuracy(
        top, np.array(1), np.array(late), 1 / 11)) > 0.04
    saved = json.loads(json_path.read_text())
    assert saved["regime"] == json.loads(REGIME) and saved["commit"] == ["abc123"] and saved["seeds"] == [0, 1, 2]


def test_seed_mean_mae_averages_seeds_before_the_error() -> None:
    rows = [{"rank": "1", "shard_size": "150", "round": "0", "metric": m} for m in (0.6, 0.8)]
    # per-seed errors are 0.1 each; the seed mean 0.7 equals the prediction
    assert calibrate.seed_mean_mae(rows, np.array([0.7, 0.7])) == pytest.approx(0.0)


def test_overrides_parse_yaml_scalars_and_lists() -> None:
    got = calibrate.parse_overrides(["learning_rate=1e-3", "target_modules=[query, value]", "lora_scaling=rslora"])
    assert got == {"learning_rate": 1e-3, "target_modules": ["query", "value"], "lora_scaling": "rslora"}
    with pytest.raises(ValueError, match="key=value"):
        calibrate.parse_overrides(["learning_rate"])
