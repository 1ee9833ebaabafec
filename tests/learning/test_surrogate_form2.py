"""The surrogate's form 2 (the v2 worlds): what a vehicle reports, its noise structure, the onset, the stale penalty."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import iov_env
from iov_env.config import preset
from iov_env.files import DataFormatError
from iov_env.learning.backend import FleetLayout, RoundPlan
from iov_env.learning.surrogate import (
    FastBackend,
    binomial_sd,
    calibration_form,
    curve_value,
    local_validation_examples,
    rank_speed_table,
)

FORM2 = str(Path(__file__).resolve().parents[1] / "fixtures" / "calibration_form2.json")


def _plan(n: int, ranks, training, round_index: int) -> RoundPlan:
    training = np.asarray(training, bool)
    return RoundPlan(round_index, np.asarray(ranks), training, training.copy(), np.ones(n), np.zeros(n, int),
                     np.ones((n, 6), bool))


def test_form2_vehicle_reports_its_own_local_model_plus_the_drawn_noise() -> None:
    env = iov_env.parallel_env(preset="paper", calibration=FORM2)
    obs, infos = env.reset(seed=3)
    sim = env.simulator
    rng = np.random.default_rng(0)
    for _ in range(4):
        expected = sim.backend.expected_vehicle_accuracy(sim.rank_set)
        noise = sim.backend.next_round_noise()[1]
        actions = {a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in env.agents}
        obs, rewards, term, trunc, infos = env.step(actions)
        m = sim.history[-1]
        full = m.active & (m.train_fraction == 1.0)
        assert full.sum() >= 5
        want = np.clip(expected[np.arange(len(full)), m.rank_index] + noise, 0, 1)
        np.testing.assert_allclose(m.accuracy[full], want[full], rtol=0, atol=1e-12)


def test_form2_noise_has_a_persistent_part_that_stays_with_the_vehicle(tmp_path: Path) -> None:
    # huge local validation splits make the binomial part vanish; no round-to-round part: only the offset is left
    doc = json.loads(Path(FORM2).read_text())
    for task in doc["tasks"].values():
        task.update(vehicle_persistent_std=0.2, round_std=0.0)
    path = tmp_path / "persistent.json"
    path.write_text(json.dumps(doc))
    b = FastBackend(preset("paper", calibration=str(path)))
    b.reset(7, FleetLayout(np.arange(30) % 3, np.full(30, 400_000)))
    draws = []
    for _ in range(6):
        draws.append(b.next_round_noise()[1])
        b._draw_noise(b.rng)  # advance the episode's stream as a round does
    draws = np.array(draws)
    assert draws.std(axis=0).max() < 0.01  # the same offset every round
    assert 0.1 < draws[0].std() < 0.3  # and a different one per vehicle, at the file's SD


def test_form2_measurement_noise_is_binomial_at_the_local_validation_size_and_fixed_for_the_episode() -> None:
    cfg = preset("tiny", calibration=FORM2)
    b = FastBackend(cfg)
    n = 6000
    layout = FleetLayout(np.zeros(n, int), np.where(np.arange(n) % 2, 450, 150))
    b.reset(0, layout)
    val = local_validation_examples(layout.vehicle_shard_size[:2], cfg.tasks.local_val_fraction)
    np.testing.assert_array_equal(val, [38, 112])  # tasks.partition's rule: n f / (1 - f)
    sd = b.vehicle_noise_sd()
    np.testing.assert_array_equal(sd["pull"], 0.01)  # per pull: the round-to-round part alone
    np.testing.assert_allclose(sd["offset"][:2], np.hypot(0.02, sd["binomial"][:2]), rtol=1e-12)
    mid = b.curves[0].mid_metric
    for parity, n_val in ((0, 38), (1, 112)):  # the validation sample's error is in the per-episode offset
        offsets = b._vehicle_offset[parity::2]
        assert offsets.std() == pytest.approx(float(np.hypot(0.02, binomial_sd(mid, n_val))), rel=0.05)
    assert binomial_sd(0.5, 100) == pytest.approx(0.05)


def test_form2_stale_penalty_counts_the_rounds_missed_before_this_one_form1_never_did() -> None:
    for calibration, form in ((FORM2, 2), ("default", 1)):
        cfg = preset("tiny", calibration=calibration, observation_noise=False, num_vehicles=2, tasks=("sst2",),
                     budget_cap_fraction=1.0)
        b = FastBackend(cfg)
        assert b.form == form
        b.reset(0, FleetLayout(np.array([0, 0]), np.array([200, 200])))
        b.train_round(_plan(2, [4, 4], [False, True], 0))
        b.train_round(_plan(2, [4, 4], [False, True], 1))
        expected = b.expected_vehicle_accuracy(np.array([4]))[0, 0]
        res = b.train_round(_plan(2, [4, 4], [True, True], 2))
        stale = b.curves[0].stale_penalty
        if form == 2:
            assert res.vehicle_accuracy[0] == pytest.approx(expected, abs=1e-12)  # the expectation includes it
            # vehicle 1: same task, rank and shard, never missed a round; vehicle 0 missed two
            assert stale > 0 and res.vehicle_accuracy[0] == pytest.approx(res.vehicle_accuracy[1] - 2 * stale, abs=1e-12)
        else:  # v1's published behaviour: the penalty is computed after the reset, so it is always 0
            assert res.vehicle_accuracy[0] == pytest.approx(res.vehicle_accuracy[1], abs=1e-12)


def test_the_onset_gate_and_the_rank_speed_exponent() -> None:
    args = dict(floor=0.0, ceiling=0.8, rank_gap=0.0, rank_half=1.0, noniid_penalty=0.0, sample_scale=100.0)
    n = np.array([0.0, 30.0, 60.0, 120.0, 1e9])
    plain = curve_value(**args, rank=8.0, samples=n, hetero=0.0)
    np.testing.assert_allclose(plain, 0.8 * (1 - np.exp(-n / 100.0)), rtol=1e-15)  # no onset: the exponential
    gated = curve_value(**args, rank=8.0, samples=n, hetero=0.0, onset_samples=60.0, onset_steepness=8.0)
    gate = 1 - np.exp(-((n / 60.0) ** 8.0))
    np.testing.assert_allclose(gated, plain * gate, rtol=1e-12)
    assert gated[1] < 0.01 * plain[1] and gated[3] == pytest.approx(plain[3], rel=1e-9)
    r = np.array([1.0, 16.0, 64.0])
    np.testing.assert_array_equal(rank_speed_table(4.0, r), r / (r + 4.0))  # exponent 1: v1's formula, bit for bit
    steep = rank_speed_table(32.0, r, 3.0)
    np.testing.assert_allclose(steep, r ** 3 / (r ** 3 + 32.0 ** 3), rtol=1e-12)
    assert steep[2] / steep[1] > 5 > (r / (r + 32.0))[2] / (r / (r + 32.0))[1]


def test_calibration_form_is_validated(tmp_path: Path) -> None:
    assert calibration_form(Path(FORM2)) == 2
    bad = tmp_path / "bad.json"
    doc = json.loads(Path(FORM2).read_text())
    doc["form"] = 3
    bad.write_text(json.dumps(doc, indent=1))
    with pytest.raises(DataFormatError, match=r"bad.json:\d+: form=3; allowed: one of \[1, 2\]"):
        calibration_form(bad)
