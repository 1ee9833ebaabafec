"""The decision study's analysis and the form-2 fit: hand-computed gaps and noise, a fit that recovers its truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import decision_analysis as da
from benchmarks import decision_fit, report
from benchmarks.decision_study import _part
from iov_env.config import preset


def _cell(seed, rnd, vehicle, rank, u_dev, noise=0.0, feasible=True, metric=0.7, n=50.0, task="sst2"):
    return da.DecisionCell(seed, rnd, vehicle, task, rank, feasible, u_dev + noise, u_dev, metric, n)


def test_gaps_are_paired_within_a_vehicle_and_ordered_by_the_other_vehicles() -> None:
    # three vehicles, three ranks; rank 16 infeasible for vehicle 2
    u = {0: (10.0, 14.0, 12.0), 1: (20.0, 25.0, 21.0), 2: (30.0, 33.0, 31.0)}
    cells = [_cell(0, 0, v, r, u[v][j], feasible=not (v == 2 and r == 16)) for v in u for j, r in enumerate((1, 4, 16))]
    (row,) = da.decision_rows(cells, 1.8, noise={"sst2": (2.0, 1.0, 0.5)})
    assert row.best_rank == 4 and row.units == 3
    # leave one out: vehicle 0 orders by vehicles 1-2 (r1 25, r4 29, r16 21: vehicle 2 cannot run it) -> 4 then 1;
    # vehicle 1 by 0 and 2 (r1 20, r4 23.5, r16 12) -> 4 then 1; vehicle 2 runs only 1 and 4 -> 4 then 1
    assert row.gap_second[0] == pytest.approx((4 + 5 + 3) / 3)
    assert row.gap_second[1] == pytest.approx(4.303 * 1.0 / math.sqrt(3))  # t(2) x SD / sqrt(n)
    # to the mean of each vehicle's feasible ranks: 14 - 12, 25 - 22, 33 - 31.5
    assert row.gap_mean[0] == pytest.approx((2 + 3 + 1.5) / 3)
    assert row.noise_rest == pytest.approx(math.sqrt(3.0))
    assert row.pulls_needed == pytest.approx(8 * (2.0 / 4.0) ** 2) and row.gap_per_noise == pytest.approx(2.0)


def test_measured_noise_splits_rank_specific_round_and_persistent_parts() -> None:
    rng = np.random.default_rng(0)
    cells = []
    for unit in range(40):
        offset = rng.normal(0, 3.0)
        for rnd in (0, 2):
            shift = rng.normal(0, 2.0)
            for rank in (1, 4, 16, 64):
                cells.append(_cell(unit // 2, rnd, unit, rank, 0.0, offset + shift + rng.normal(0, 1.0)))
    rows = {r.round: r for r in da.decision_rows(cells, 1.8)}
    # per pull: rank-specific (1) and round-to-round (2); persistent (3) cancels within the vehicle
    assert rows[0].noise_pull == pytest.approx(math.sqrt(1 + 4), rel=0.25)
    assert rows[0].noise_persistent == pytest.approx(math.sqrt(9 + 4 / 2 + 1 / 8), rel=0.3)
    assert rows[0].noise_binomial == pytest.approx(1.8 * 100 * math.sqrt(0.7 * 0.3 / 50))


def test_the_form2_fit_recovers_the_curve_that_made_its_data() -> None:
    cfg = preset("tiny", fidelity="fast", rounds=20)
    truth = {"floor": 0.0, "ceiling": 0.74, "rank_gap": 0.1, "rank_half": 8.0, "sample_scale": 300.0,
             "speed_rank_half": 24.0, "speed_exponent": 2.0, "onset_samples": 90.0, "onset_steepness": 6.0,
             "federation_exponent": 0.5,
             "noniid_penalty": 0.05}
    hetero = 1 / 11
    fleet = decision_fit.fleets(cfg, [0])
    task = fleet[0].task
    rng = np.random.default_rng(1)
    study, ranks = [], [1, 2, 4, 8, 16, 32, 64]
    executed = {(t, v): int(rng.choice(ranks)) for t in range(6) for v in range(len(task))}
    for t in range(6):
        for v in np.flatnonzero(task == 1):
            study.append({"kind": "episode", "seed": "0", "round": str(t), "vehicle": str(v), "task": "conll2003",
                          "active": "1", "rank": str(executed[(t, v)])})
    data = decision_fit.TaskData("conll2003", [], study, fleet, 1)
    for t in (0, 2, 5):
        s_before = data.samples_before(0, t, truth)
        for v in np.flatnonzero(task == 1):
            for r in ranks:
                own = fleet[0].samples[v] * decision_fit.speed(np.array([r]), truth)[0]
                y = decision_fit.predict(truth, hetero, np.array([float(r)]), np.array([s_before + own]))[0]
                study.append({"kind": "counterfactual", "seed": "0", "round": str(t), "vehicle": str(v),
                              "task": "conll2003", "rank": str(r), "dev_metric": str(y), "local_metric": str(y),
                              "local_n": "50"})
    grid = []
    for r in (1, 4, 16, 64):
        for t in range(6):
            s = (t + 1) * 160 * (1 - math.exp(-150 / 160)) * decision_fit.speed(np.array([r]), truth)[0]
            y = decision_fit.predict(truth, hetero, np.array([float(r)]), np.array([s]))[0]
            grid.append({"task": "conll2003", "rank": str(r), "round": str(t), "shard_size": "150", "local_steps": "10",
                         "batch_size": "16", "metric": str(y), "n_eval": "300", "seed": "0"})
    data = decision_fit.TaskData("conll2003", grid, study, fleet, 1)
    base = dict(truth, stale_penalty=0.0, noise_std=0.0, tokens_per_sample=20.0, zero_pad_penalty=0.0)
    params, _ = decision_fit.fit_task(data, base, hetero)
    pred = decision_fit.counterfactual_prediction(data, params, hetero)
    assert np.max(np.abs(pred - data.c_dev)) < 0.02  # the decisions it was fitted on, within 2 points
    # the early rank effect is there: at round 0 rank 64 learns far more than rank 1
    first = data.c_round == 0
    assert pred[first & (data.c_rank == 64)].mean() - pred[first & (data.c_rank == 1)].mean() > 0.1


def test_the_learnability_columns_sit_beside_the_headroom() -> None:
    rooms = [{"world": "tiny-v2", "gap": 10.0, "gap_lo": 8.0, "gap_hi": 12.0, "gap_sd": 3.0, "headroom_se": 20.0,
              "kept": True}]
    learn = {"tiny-v2": {"median_gap_per_noise": 0.05, "median_pulls": 3200.0, "real_median_gap_per_noise": 0.2,
                         "real_median_pulls": 200.0}}
    md = report.scores_markdown([], rooms, [], [], [], sections=("headroom",), learnability=learn)
    assert "| tiny-v2 | 10.0 [8.0, 12.0] | 3.0 | 20.0 | yes | 0.050 | 3,200 | 0.200 | 200 |" in md
    plain = report.scores_markdown([], rooms, [], [], [], sections=("headroom",))
    assert "pulls" not in plain


def test_part_argument_names_what_is_allowed() -> None:
    assert _part("1/3") == (1, 3)
    import argparse

    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(argparse.ArgumentTypeError, match="allowed: I/N with 0 <= I < N"):
            _part(bad)
