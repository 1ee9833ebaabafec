"""IoVSimulator end to end: feasibility correction, budgets, faults and accounting over episodes."""

from __future__ import annotations

import numpy as np
import pytest

from iov_env.config import preset
from iov_env.sim import faults
from iov_env.sim.simulator import IoVSimulator, largest_feasible_at_or_below


def testlargest_feasible_at_or_below() -> None:
    mask = np.array(
        [
            [1, 1, 0, 1, 0],  # request 4 -> 3; request 2 -> 1
            [1, 1, 0, 1, 0],
            [0, 0, 1, 1, 0],  # nothing feasible at or below 1 -> smallest feasible, 2
            [1, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    got = largest_feasible_at_or_below(mask, np.array([4, 2, 1, 4]))
    np.testing.assert_array_equal(got, [3, 1, 2, 0])


def _run(sim: IoVSimulator, seed: int, rng_seed: int = 0, action: int | None = None):
    rng = np.random.default_rng(rng_seed)
    sim.reset(seed)
    out = []
    while not sim.done:
        n, r = sim.config.num_vehicles, sim.config.num_ranks
        a = np.full(n, action) if action is not None else rng.integers(0, r, n)
        out.append(sim.step(a))
    return out


def test_static_budget_total_and_vehicle_split() -> None:
    cfg = preset("paper", rounds=6)
    sim = IoVSimulator(cfg)
    rounds = _run(sim, seed=0)
    total = cfg.energy.energy_budget_j_per_vehicle_round * cfg.num_vehicles  # 5 J x 9 = 45 J per round
    for m in rounds:
        assert m.task_budget_j.sum() == pytest.approx(total)
        # each task's budget is shared among its active vehicles only
        for k in range(cfg.num_tasks):
            in_task = sim.vehicle_task == k
            if (m.active & in_task).any():
                assert m.budget_j[in_task].sum() == pytest.approx(m.task_budget_j[k])
        assert np.all(m.budget_j[~m.active] == 0.0)
        np.testing.assert_allclose(m.task_energy_j, np.bincount(sim.vehicle_task, weights=m.energy_j, minlength=3))


def test_tri_feedback_keeps_the_total_and_the_floor_in_the_simulator() -> None:
    cfg = preset("paper", allocation="tri_feedback", realloc_period_rounds=2, realloc_stop_round=12, rounds=14)
    sim = IoVSimulator(cfg)
    rounds = _run(sim, seed=3, action=6)
    total = cfg.num_vehicles * cfg.energy.energy_budget_j_per_vehicle_round  # 9 vehicles x the per-vehicle budget
    budgets = np.stack([m.task_budget_j for m in rounds])
    np.testing.assert_allclose(budgets.sum(axis=1), total)
    assert budgets.min() >= cfg.energy.budget_floor_fraction * total - 1e-9
    assert budgets.max() <= cfg.energy.budget_cap_fraction * total + 1e-9
    # it does re-allocate (the budget moves) and stops after realloc_stop_round
    assert not np.allclose(budgets[0], budgets[-1])
    np.testing.assert_allclose(sim.task_budget_j, budgets[-1])
    np.testing.assert_allclose(budgets[12], budgets[13])


def test_dual_price_follows_the_projected_update() -> None:
    cfg = preset("tiny", energy_budget_j_per_vehicle_round=0.01, dual_step_size=0.05, rounds=3)
    sim = IoVSimulator(cfg)
    rounds = _run(sim, seed=0, action=6)
    price = np.zeros(cfg.num_tasks)
    for m in rounds:
        price = np.maximum(0.0, price + 0.05 * (m.task_energy_j - m.task_budget_j) / m.task_budget_j)
        np.testing.assert_allclose(m.dual_price, price)
    assert np.all(price > 0)  # a 0.01 J budget is always exceeded


def _fault_counts(fault_tolerance: str, seeds=range(4)) -> dict[int, int]:
    cfg = preset("tiny", fault_tolerance=fault_tolerance, speed_min_mps=30.0, speed_max_mps=40.0,
                 coverage_radius_m=200.0, rsu_bandwidth_hz=2e5)
    sim = IoVSimulator(cfg)
    counts: dict[int, int] = {}
    for s in seeds:
        for m in _run(sim, seed=s, action=6):
            assert np.all(m.fault[~m.active] == faults.NONE)
            assert np.all(m.fault_cost[m.fault == faults.NONE] == 0.0)
            assert np.all(m.train_fraction[~m.active] == 0.0)
            assert np.all((m.train_fraction >= 0) & (m.train_fraction <= 1))
            for f, c in zip(*np.unique(m.fault, return_counts=True), strict=True):
                counts[int(f)] = counts.get(int(f), 0) + int(c)
    return counts


def test_fast_vehicles_trigger_fault_tolerance() -> None:
    counts = _fault_counts("paper")
    assert counts.get(faults.EARLY_UPLOAD, 0) > 0
    assert counts.get(faults.MIGRATION, 0) > 0  # a same-task peer nearby is cheaper than a stale upload


def test_without_the_mechanism_leavers_always_upload_early() -> None:
    counts = _fault_counts("none")
    assert counts.get(faults.EARLY_UPLOAD, 0) > 0
    assert counts.get(faults.MIGRATION, 0) == 0 and counts.get(faults.ABANDON, 0) == 0


def test_energy_and_latency_accounting() -> None:
    cfg = preset("tiny", rounds=5)
    sim = IoVSimulator(cfg)
    remaining = np.full(cfg.num_vehicles, cfg.energy.vehicle_energy_j)
    sim.reset(0)
    for _ in range(5):
        st = sim.state
        m = sim.step(np.full(cfg.num_vehicles, 3))
        remaining = np.maximum(remaining - m.energy_j, 0.0)
        np.testing.assert_allclose(sim.energy_remaining_j, remaining)
        assert np.all(m.latency_s[~m.active] == 0) and np.all(m.energy_j[~m.active] == 0)
        assert np.all(m.latency_s[m.active] > 0) and np.all(m.energy_j[m.active] > 0)
        # synchronous round: a task waits for its slowest participant plus aggregation
        for k in range(cfg.num_tasks):
            sel = (sim.vehicle_task == k) & m.active
            if sel.any():
                assert m.task_latency_s[k] == pytest.approx(m.latency_s[sel].max() + cfg.rsu.aggregation_latency_s)
        # executed ranks respect the mask shown before the round
        assert np.all(st.mask[np.arange(cfg.num_vehicles), m.rank_index] | ~m.active)


def test_expected_outcomes_shapes_and_inactive_zero() -> None:
    sim = IoVSimulator(preset("tiny", coverage_radius_m=100.0))
    sim.reset(1)
    util, energy = sim.expected_outcomes()
    assert util.shape == energy.shape == (6, 7)
    assert np.all(np.isfinite(util)) and np.all(energy >= 0)
    assert np.all(util[~sim.state.active] == 0) and np.all(energy[~sim.state.active] == 0)


def test_finiteness_check_names_the_bad_quantity_and_passes_huge_finite_values() -> None:
    """One fused sum screens a round; an overflow of that sum alone is not an error, a NaN or inf is."""
    from iov_env.sim.simulator import NonFiniteError, _require_finite

    _require_finite(3, energy_j=np.array([1e308, 1e308]), latency_s=np.array([1.0]))  # the sum overflows: fine
    with pytest.raises(NonFiniteError, match=r"round 3: latency_s became non-finite"):
        _require_finite(3, energy_j=np.array([1.0]), latency_s=np.array([0.0, np.nan]))


def test_reward_of_huge_terms_within_the_limits_raises_no_overflow_warning() -> None:
    """Issue 22: ``np.zeros_like(acc_term * lat_term)`` overflowed (RuntimeWarning) at large weights and latency.

    Both weights at their documented maximum (1e6) and a latency that a stalled upload can reach: the
    reward is finite, the energy term 0, and no warning is raised.
    """
    import warnings

    cfg = preset("tiny", accuracy_weight=1e6, latency_weight=1e6)
    sim = IoVSimulator(cfg)
    acc, lat = np.array([0.9, 0.5]), np.array([1e296, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        terms, reward = sim._reward(acc, lat, np.zeros(2), np.array([True, True]))
    np.testing.assert_array_equal(terms["energy"], [0.0, 0.0])
    np.testing.assert_allclose(reward, [9e7 - 1e302, 5e7 - 2e6], rtol=1e-12)
    assert np.all(np.isfinite(reward))
