"""Cloud energy allocation, RSU split, dual price, and the fault-tolerance choice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from iov_env.config import EnergyConfig
from iov_env.sim import faults, scheduler

# -- scheduler ----------------------------------------------------------------------------------


def test_static_allocation_by_vehicle_count() -> None:
    np.testing.assert_allclose(scheduler.static_allocation_j(45.0, np.array([3, 3, 3])), [15, 15, 15])
    np.testing.assert_allclose(scheduler.static_allocation_j(60.0, np.array([1, 2, 3])), [10, 20, 30])
    np.testing.assert_allclose(scheduler.static_allocation_j(30.0, np.array([0, 0, 0])), [10, 10, 10])
    np.testing.assert_allclose(scheduler.static_allocation_j(30.0, np.array([0, 2, 1])), [0, 20, 10])


def test_clip_and_conserve_by_hand() -> None:
    # total 100, floor 10, cap 50: [80, 15, 5] -> clip [50, 15, 10] (sum 75) -> 25 to the two free
    # entries below the cap: [50, 27.5, 22.5]
    x = scheduler.clip_and_conserve(np.array([80.0, 15.0, 5.0]), 100.0, 10.0, 50.0)
    np.testing.assert_allclose(x, [50.0, 27.5, 22.5])


@st.composite
def _budget_problem(draw: st.DrawFn) -> tuple[np.ndarray, float, float, float]:
    k = draw(st.integers(1, 8))
    total = draw(st.floats(1e-3, 1e6))
    floor_frac = draw(st.floats(0.0, 1.0 / k))
    cap_frac = draw(st.floats(1.0 / k, 1.0))
    values = np.array(draw(st.lists(st.floats(0.0, 2.0), min_size=k, max_size=k))) * total
    return values, total, floor_frac * total, cap_frac * total


@settings(max_examples=200, deadline=None)
@given(_budget_problem())
def test_clip_and_conserve_conserves_total_and_respects_bounds(problem) -> None:
    values, total, floor, cap = problem
    x = scheduler.clip_and_conserve(values, total, floor, cap)
    assert x.sum() == pytest.approx(total, rel=1e-9, abs=1e-9)
    tol = 1e-9 * max(total, 1.0)
    assert np.all(x >= floor - tol)
    assert np.all(x <= cap + tol)


@st.composite
def _tri_feedback_problem(draw: st.DrawFn):
    k = draw(st.integers(2, 6))
    alloc = np.array(draw(st.lists(st.floats(0.1, 100.0), min_size=k, max_size=k)))
    used = alloc * np.array(draw(st.lists(st.floats(0.0, 2.0), min_size=k, max_size=k)))
    diff = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k)))
    cfg = EnergyConfig(
        budget_floor_fraction=draw(st.floats(0.0, 1.0 / k)),
        budget_cap_fraction=draw(st.floats(1.0 / k, 1.0)),
        difficulty_exponent=draw(st.floats(0.0, 10.0)),
    )
    return alloc, used, diff, cfg


@settings(max_examples=200, deadline=None)
@given(_tri_feedback_problem())
@example(problem=(  # a budget under 1 J: conservation was once checked to 1e-9 J absolute, 2e-9 relative here
    np.array([0.25, 0.125, 0.125]), np.array([0.0, 0.0, 0.03125]), np.array([0.0, 0.25, 0.25]),
    EnergyConfig(budget_floor_fraction=0.0, budget_cap_fraction=1.0 / 3.0),
))
def test_tri_feedback_conserves_budget_and_never_starves(problem) -> None:
    alloc, used, difficulty, cfg = problem
    new = scheduler.tri_feedback_allocation_j(alloc, used, difficulty, cfg)
    total = alloc.sum()
    assert np.all(np.isfinite(new))
    assert new.sum() == pytest.approx(total, rel=1e-9)
    assert np.all(new >= cfg.budget_floor_fraction * total * (1 - 1e-9) - 1e-12)
    assert np.all(new <= cfg.budget_cap_fraction * total * (1 + 1e-9) + 1e-12)


def test_tri_feedback_moves_unused_budget_to_the_hard_busy_task() -> None:
    cfg = EnergyConfig(budget_floor_fraction=0.0, budget_cap_fraction=1.0, difficulty_exponent=2.0)
    # task 0 hard and used everything; task 1 easy and used half: the 5 J left over go mostly to task 0
    # weights: w0 = 0.8^2 * 1 = 0.64, w1 = 0.1^2 * 0.5 = 0.005 -> task 0 gets 10 + 5 * 0.64/0.645
    new = scheduler.tri_feedback_allocation_j(np.array([10.0, 10.0]), np.array([10.0, 5.0]), np.array([0.8, 0.1]), cfg)
    np.testing.assert_allclose(new, [10 + 5 * 0.64 / 0.645, 5 + 5 * 0.005 / 0.645])


def test_difficulty_ema() -> None:
    # xi = 0.9: 0.9 * 1.0 + 0.1 * (1 - 0.7) = 0.93
    np.testing.assert_allclose(scheduler.update_difficulty(np.array([1.0]), np.array([0.7]), 0.9), [0.93])
    # accuracies outside [0, 1] are clipped
    np.testing.assert_allclose(scheduler.update_difficulty(np.array([0.5]), np.array([1.5]), 0.0), [0.0])


def test_split_over_vehicles_by_data_size() -> None:
    task = np.array([0, 0, 0, 1, 1])
    shard = np.array([150, 300, 450, 100, 100])
    active = np.array([True, True, False, True, False])
    share = scheduler.split_over_vehicles_j(np.array([9.0, 4.0]), task, shard, active)
    # task 0: active shards 150 + 300 -> 3 J and 6 J; task 1: only vehicle 3 -> all 4 J
    np.testing.assert_allclose(share, [3.0, 6.0, 0.0, 4.0, 0.0])
    none_active = scheduler.split_over_vehicles_j(np.array([9.0, 4.0]), task, shard, np.zeros(5, bool))
    np.testing.assert_array_equal(none_active, np.zeros(5))


def test_dual_update_projection() -> None:
    # under budget from 0: projected back to 0; over budget by 50 %: 0 + 0.1 * 0.5 = 0.05;
    # a positive price falls by mu * relative slack: 0.2 + 0.1 * (5 - 10) / 10 = 0.15
    price = scheduler.dual_price_update(np.array([0.0, 0.0, 0.2]), np.array([5.0, 15.0, 5.0]), np.array([10.0, 10.0, 10.0]), 0.1)
    np.testing.assert_allclose(price, [0.0, 0.05, 0.15])
    # never negative however large the slack
    assert scheduler.dual_price_update(np.array([0.01]), np.array([0.0]), np.array([1e6]), 10.0)[0] == 0.0
    # zero budget does not divide by zero
    assert np.all(np.isfinite(scheduler.dual_price_update(np.array([0.0]), np.array([0.0]), np.array([0.0]), 0.1)))


def test_dual_price_diverges_under_persistent_violation() -> None:
    """PAPER failure signature: lambda is unbounded when the budget is always exceeded."""
    price = np.zeros(1)
    for _ in range(1000):
        price = scheduler.dual_price_update(price, np.array([20.0]), np.array([10.0]), 0.01)
    assert price[0] == pytest.approx(1000 * 0.01 * 1.0)


# -- faults -------------------------------------------------------------------------------------
W = {"latency_weight": 0.2, "energy_weight": 0.05, "accuracy_weight": 2.0}


def _decide(leaving, acc, best, used, peer, t_m, e_m, enabled=True) -> faults.FaultDecision:
    arr = lambda v: np.asarray(v, dtype=float)  # noqa: E731
    return faults.decide(
        np.asarray(leaving, dtype=bool), arr(acc), arr(best), arr(used), np.asarray(peer), arr(t_m), arr(e_m),
        enabled=enabled, **W,
    )


def test_nobody_leaving_is_what_decide_gives_without_leavers() -> None:
    """The simulator's shortcut for rounds in which no vehicle leaves agrees with the full decision."""
    full = _decide([False] * 3, [80.0, 70.0, 60.0], [81.0] * 3, [10.0] * 3, [1, 2, 0], [5.0] * 3, [1.0] * 3)
    quick = faults.FaultDecision.nobody_leaving(3)
    for name in ("option", "cost", "costs", "migrate_to", "migration_latency_s", "migration_energy_j"):
        got, want = getattr(quick, name), getattr(full, name)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.dtype.kind == want.dtype.kind and got.shape == want.shape, name
    assert not quick.any_leaving


def test_early_upload_when_nearly_as_good_as_the_best() -> None:
    # C0 = 2 * (81 - 80) = 2; C1 = 0.2 * 100 + 0.05 * 100 = 25; C2 = 0.05 * 10 + 2 * 81 = 162.5
    d = _decide([True], [80.0], [81.0], [10.0], [3], [100.0], [100.0])
    assert d.option[0] == faults.EARLY_UPLOAD
    np.testing.assert_allclose(d.costs[0], [2.0, 25.0, 162.5])
    assert d.cost[0] == 2.0
    assert d.migrate_to[0] == -1 and d.migration_latency_s[0] == 0.0 and d.migration_energy_j[0] == 0.0


def test_migration_when_a_close_peer_is_cheap() -> None:
    # C0 = 2 * (90 - 20) = 140; C1 = 0.2 * 1 + 0.05 * 2 = 0.3; C2 = 0.05 * 10 + 180 = 180.5
    d = _decide([True], [20.0], [90.0], [10.0], [4], [1.0], [2.0])
    assert d.option[0] == faults.MIGRATION
    assert d.cost[0] == pytest.approx(0.3)
    assert d.migrate_to[0] == 4
    assert d.migration_latency_s[0] == 1.0 and d.migration_energy_j[0] == 2.0


def test_abandon_when_the_other_options_are_unavailable() -> None:
    # no peer (C1 = inf) and the own accuracy unknown (C0 = nan -> inf): abandonment, C2 = 0.5 + 2 * 50
    d = _decide([True], [np.nan], [50.0], [10.0], [-1], [np.inf], [np.inf])
    assert d.option[0] == faults.ABANDON
    assert d.cost[0] == pytest.approx(100.5)


def test_abandon_is_reachable_with_in_range_inputs() -> None:
    """With the paper's costs C2 >= C0 for every A >= 0: abandonment wins only when early upload cannot
    finish before the vehicle leaves and no hand-over peer is reachable in time."""
    rng = np.random.default_rng(0)
    n = 2_000
    best = rng.uniform(0, 100, n)
    args = (np.ones(n, bool), rng.uniform(0, 100, n), best, rng.uniform(0, 1e3, n), np.full(n, -1),
            np.full(n, np.inf), np.full(n, np.inf))
    feasible = rng.random(n) < 0.5
    d = faults.decide(*args, enabled=True, early_upload_feasible=feasible, **W)
    np.testing.assert_array_equal(d.option, np.where(feasible, faults.EARLY_UPLOAD, faults.ABANDON))
    assert not (faults.decide(*args, enabled=True, **W).option == faults.ABANDON).any()


def test_infeasible_early_upload_is_ignored_without_the_mechanism() -> None:
    """Baselines always pay the early-upload cost, whether or not the upload can finish."""
    d = faults.decide(np.array([True]), np.array([10.0]), np.array([90.0]), np.array([5.0]), np.array([2]),
                      np.array([1.0]), np.array([1.0]), enabled=False, early_upload_feasible=np.array([False]), **W)
    assert d.option[0] == faults.EARLY_UPLOAD and d.cost[0] == pytest.approx(160.0)


def test_not_leaving_means_no_fault_and_no_cost() -> None:
    d = _decide([False, True], [10.0, 80.0], [90.0, 81.0], [5.0, 5.0], [1, 0], [0.1, 100.0], [0.1, 100.0])
    assert d.option[0] == faults.NONE and d.cost[0] == 0.0
    assert np.all(np.isinf(d.costs[0]))
    assert faults.FAULT_NAMES[int(d.option[0])] is None


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(0, 100), st.floats(0, 100), st.floats(0, 1e3), st.floats(0, 1e3)),
        min_size=1, max_size=10,
    )
)
def test_disabled_mechanism_always_uploads_early(rows) -> None:
    leaving, acc, best, used, t_m = (np.array(c) for c in zip(*rows, strict=True))
    d = _decide(leaving, acc, best, used, np.arange(len(rows)), t_m, t_m, enabled=False)
    np.testing.assert_array_equal(d.option, np.where(leaving, faults.EARLY_UPLOAD, faults.NONE))
    np.testing.assert_allclose(d.cost, np.where(leaving, 2.0 * np.maximum(0.0, best - acc), 0.0))
    assert np.all(d.migrate_to == -1)


def test_nearest_peer_same_task_only_and_never_itself() -> None:
    pos = np.array([[0.0, 0.0], [10.0, 0.0], [3.0, 0.0], [50.0, 0.0], [1.0, 0.0]])
    task = np.array([0, 0, 1, 0, 1])
    candidate = np.array([True, True, True, True, False])
    leaving = np.array([True, False, False, False, True])
    peer, dist = faults.nearest_peer(pos, task, candidate, leaving)
    # vehicle 0 (task 0): vehicle 2 is closer but task 1 -> vehicle 1 at 10 m
    # vehicle 4 (task 1): only candidate of task 1 is vehicle 2 at 2 m
    np.testing.assert_array_equal(peer, [1, -1, -1, -1, 2])
    np.testing.assert_allclose(dist[[0, 4]], [10.0, 2.0])
    assert np.all(np.isinf(dist[[1, 2, 3]]))
    # no candidate of the task: none
    peer2, dist2 = faults.nearest_peer(pos, task, np.array([False, False, False, False, False]), leaving)
    assert np.all(peer2 == -1) and np.all(np.isinf(dist2))
