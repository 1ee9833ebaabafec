"""The compiled loops: the same numbers as their plain-Python source (what runs without numba), and the
small-fleet peer search against a brute-force answer."""

from __future__ import annotations

import numpy as np
import pytest

from iov_env.config import preset
from iov_env.envs import kernels as env_kernels
from iov_env.envs.parallel import observation_layout
from iov_env.learning import surrogate_loops
from iov_env.sim import faults
from iov_env.sim import kernels as sim_kernels


def _python(fn):
    """The plain-Python function behind a numba dispatcher (the fallback without numba)."""
    return getattr(fn, "py_func", fn)


def _same(compiled_out, python_out) -> None:
    outs = compiled_out if isinstance(compiled_out, tuple) else (compiled_out,)
    refs = python_out if isinstance(python_out, tuple) else (python_out,)
    assert len(outs) == len(refs)
    for a, b in zip(outs, refs, strict=True):
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-12, atol=0)


def test_grid_substeps_compiled_equals_python() -> None:
    rng = np.random.default_rng(0)
    n, s = 50, 4
    pos = np.column_stack([rng.uniform(0, 1000, n), np.round(rng.uniform(0, 600, n) / 100) * 100])
    heading = np.zeros(n, dtype=np.int64)  # east: y on a road
    dist = rng.uniform(5, 90, n)
    draws = rng.random((s, n))
    outs = []
    for fn in (sim_kernels.grid_substeps, _python(sim_kernels.grid_substeps)):
        p, h = pos.copy(), heading.copy()
        fn(p, h, dist, draws < 0.4, draws < 0.2, 100.0, 1000.0, 600.0)
        outs.append((p, h))
    _same(outs[0], outs[1])
    assert (outs[0][1] != 0).any()  # some vehicles turned or bounced: the branches ran
    assert (outs[0][0] >= 0).all() and (outs[0][0][:, 0] <= 1000).all() and (outs[0][0][:, 1] <= 600).all()


def test_round_tables_and_costs_compiled_equal_python() -> None:
    rng = np.random.default_rng(1)
    n, r = 40, 5
    candidate = rng.random(n) < 0.8
    up, down = rng.uniform(0, 1e7, n), rng.uniform(0, 1e8, n)
    args = (candidate, up, down, rng.uniform(0, 30, n), rng.uniform(1e3, 1e4, n), rng.uniform(1e9, 3e9, n),
            rng.uniform(500, 4000, n), rng.uniform(0, 50, n), np.linspace(1e5, 4e6, r),
            np.linspace(1e8, 2e8, r), np.linspace(800, 1200, r), 8.0, 1e-28, 1.0, 0.2)
    tables = sim_kernels.round_tables(*args)
    _same(tables, _python(sim_kernels.round_tables)(*args))
    active = tables[6]
    assert 0 < active.sum() < n
    executed = rng.integers(0, r, n)
    task = rng.integers(0, 3, n)
    cost_args = (active, task, 3, executed, rng.uniform(1e3, 1e4, n), tables[2][np.arange(n), executed],
                 tables[3][np.arange(n), executed], rng.random(n) < 0.9, np.zeros(n), np.zeros(n),
                 tables[1][np.arange(n), executed], rng.random(n) < 0.2, np.linspace(1e8, 2e8, r), args[5],
                 8.0, 1e-28, 1.0, 0.2, 0.05)
    _same(sim_kernels.round_costs(*cost_args), _python(sim_kernels.round_costs)(*cost_args))


def test_small_kernels_compiled_equal_python() -> None:
    rng = np.random.default_rng(2)
    pos, rsus = rng.uniform(0, 1000, (60, 2)), rng.uniform(0, 1000, (5, 2))
    for fn, args in (
        (sim_kernels.nearest_within, (pos, rsus, 250.0)),
        (sim_kernels.straight_dwell_s, (pos, rng.normal(0, 10, (60, 2)), rsus[rng.integers(0, 5, 60)], 250.0, 1e6)),
        (sim_kernels.largest_feasible_at_or_below, (rng.random((60, 6)) < 0.5, rng.integers(0, 6, 60))),
        (sim_kernels.shared_bandwidth_hz, (rng.integers(-1, 5, 60), 5, 1e6)),
        (sim_kernels.split_over_vehicles_j, (rng.uniform(1, 9, 3), rng.integers(0, 3, 60),
                                             rng.uniform(100, 500, 60), rng.random(60) < 0.7)),
    ):
        _same(fn(*args), _python(fn)(*args))


def test_surrogate_round_and_observation_rows_compiled_equal_python() -> None:
    rng = np.random.default_rng(3)
    n, k = 30, 3
    task = rng.integers(0, k, n)
    curve = np.column_stack([rng.uniform(0.3, 0.5, k), rng.uniform(0.8, 0.9, k), rng.uniform(0, 0.2, k),
                             rng.uniform(1, 8, k), rng.uniform(0, 0.1, k), rng.uniform(100, 900, k),
                             rng.uniform(0, 0.02, k), rng.uniform(1, 8, k), rng.uniform(0, 200, k), rng.uniform(1, 10, k),
                             rng.uniform(0.5, 3, k), rng.uniform(0, 1, k)])
    args = (task, rng.choice([1, 4, 16, 64], n), rng.random(n) < 0.8, rng.random(n) < 0.7, rng.uniform(0, 1, n),
            np.ones(n), np.ones(k), rng.uniform(0, 500, k), np.full(k, 4.0), rng.integers(0, 5, n).astype(float),
            rng.uniform(0.3, 0.9, n), rng.normal(0, 0.01, k), rng.normal(0, 0.01, n), curve, curve[task],
            rng.uniform(50, 160, n), rng.uniform(1e3, 5e3, n), 0.5, 10.0)
    for form in (1, 2):  # both reported-metric models: v1's and v2's
        _same(surrogate_loops.surrogate_round(*args, form), _python(surrogate_loops.surrogate_round)(*args, form))

    layout = observation_layout(preset("paper", tasks=("sst2", "conll2003", "copa")[:k]))
    d = max(sl.stop for sl in layout.values())
    at = np.array([layout[f].start for f in env_kernels.ROUND_FEATURES], dtype=np.int64)
    cols = np.zeros((n, d))
    obs_args = (at, rng.uniform(0, 50, n), 10.0, rng.uniform(0, 1e4, n), 1e4, rng.uniform(0, 3, k), task,
                rng.uniform(0, 20, n), 12.0, rng.random(n), rng.uniform(0, 30, n), rng.uniform(0, 40, n),
                rng.integers(0, 6, n), 5, rng.random(n) < 0.5, 0.3, np.zeros(d, np.float32), np.full(d, 10, np.float32))
    out, finite = env_kernels.observation_rows(cols.copy(), *obs_args)
    ref, ref_finite = _python(env_kernels.observation_rows)(cols.copy(), *obs_args)
    np.testing.assert_array_equal(out, ref)
    assert finite and ref_finite and out.dtype == np.float32 and out.max() <= 10.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_fleet_peer_search_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 80
    pos = rng.uniform(0, 1000, (n, 2))
    group = rng.integers(0, 4, n)
    leaving = rng.random(n) < 0.3
    candidate = rng.random(n) < 0.6
    peer, dist = faults.nearest_peer(pos, group, candidate, leaving)
    for i in range(n):
        targets = [j for j in range(n) if candidate[j] and not leaving[j] and group[j] == group[i]]
        if not leaving[i] or not targets:
            assert peer[i] == -1 and dist[i] == np.inf
            continue
        d = [float(np.hypot(*(pos[i] - pos[j]))) for j in targets]
        assert peer[i] == targets[int(np.argmin(d))]
        assert dist[i] == pytest.approx(min(d), rel=1e-12)
