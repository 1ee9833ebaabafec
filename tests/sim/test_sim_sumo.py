"""SUMO traffic: a grid sized to the map, seeded demand, agent slots, route-based dwell, the on-disk trace cache.

Tests that run SUMO use the ``tiny`` map (a 6 x 4 junction grid, 1000 x 600 m) and skip, with the install
command as the reason, when the ``sumo`` extra is missing; the rest (install hint, dwell geometry, cache
file handling) need no SUMO.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

import iov_env
from iov_env.config import ConfigError, preset
from iov_env.sim import mobility, sumo
from iov_env.sim.sumo.mobility import SumoMobility

MISSING = sumo.missing_reason()
needs_sumo = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
needs_libsumo = pytest.mark.skipif(
    MISSING is not None or not sumo.importable("libsumo"), reason=MISSING or "libsumo is not installed"
)
SMALL = {"mobility_model": "sumo", "rounds": 6}


# -- without SUMO ------------------------------------------------------------------------------------
def _hide_sumo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this interpreter look like one without the extra: the packages cannot be imported, no SUMO_HOME."""
    for name in ("sumo", "sumolib", "traci", "libsumo"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delenv("SUMO_HOME", raising=False)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_sumo(monkeypatch)
    reason = sumo.missing_reason()
    assert reason is not None and "pip install 'iov-env[sumo]'" in reason and "traci" in reason
    with pytest.raises(sumo.SumoUnavailableError, match=r"pip install 'iov-env\[sumo\]'") as info:
        iov_env.parallel_env(preset="tiny", mobility_model="sumo")
    assert isinstance(info.value, ImportError)
    iov_env.parallel_env(preset="tiny").close()  # the other mobility models do not need it


def test_scenario_reports_the_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.scenarios import SCENARIOS, unavailable_reason

    assert SCENARIOS["paper-sumo-v1"] == {"preset": "paper", "fidelity": "fast", "mobility_model": "sumo"}
    assert unavailable_reason("paper-sumo-v1") == MISSING
    _hide_sumo(monkeypatch)
    assert "iov-env[sumo]" in (unavailable_reason("paper-sumo-v1") or "")
    assert unavailable_reason("paper-v1") is None


def test_grid_layout_spans_the_map() -> None:
    assert sumo.grid_layout(1000.0, 600.0, 200.0) == (6, 4, 200.0, 200.0)
    nx, ny, lx, ly = sumo.grid_layout(1000.0, 1000.0, 300.0)  # 3.33 blocks -> 3 blocks of 333.3 m
    assert (nx, ny) == (4, 4) and lx == pytest.approx(1000.0 / 3) and ly == pytest.approx(1000.0 / 3)
    assert sumo.grid_layout(100.0, 100.0, 100.0)[:2] == (2, 2)


def test_demand_follows_littles_law() -> None:
    cfg = preset("tiny", mobility_model="sumo")
    # trip (1000 + 600) / 3 + 200 = 733.3 m at 0.63 * 20 m/s, plus 17 s at each of 3.67 blocks: 120.5 s;
    # 2 vehicles per agent x 6 agents on the road -> one departure every 10.04 s
    trip_s = 733.333 / (0.63 * 20.0) + 17.0 * 733.333 / 200.0
    assert sumo.demand_period_s(cfg, 1000.0, 600.0) == pytest.approx(trip_s / 12.0, rel=1e-5)
    assert sumo.demand_period_s(cfg.replace(sumo_vehicles_per_agent=4.0), 1000.0, 600.0) == pytest.approx(trip_s / 24.0, rel=1e-5)


def test_traffic_seed_pool() -> None:
    rng = np.random.default_rng(0)
    own = preset("tiny", mobility_model="sumo")
    pooled = own.replace(sumo_trace_pool=3)
    assert [sumo.traffic_seed(pooled, s, rng) for s in (0, 1, 2, 3, 7)] == [0, 1, 2, 0, 1]
    assert all(0 <= sumo.traffic_seed(pooled, None, rng) < 3 for _ in range(20))
    draws = {sumo.traffic_seed(own, 5, np.random.default_rng(s)) for s in range(5)}
    assert len(draws) == 5  # pool 0: the episode's own generator decides


# -- route-based dwell on a hand-made trace -------------------------------------------------------------
def _straight_trace(speed_mps: float, lane_pos_m: float, edge_speed_mps: tuple[float, float, float],
                    route_pos: int = 0) -> sumo.SumoTrace:
    """One agent on a route east along y = 0 (0 -> 200 -> 400 m), then north up x = 400 (to y = 200)."""
    shapes = [np.array([[0.0, 0.0], [200.0, 0.0]]), np.array([[200.0, 0.0], [400.0, 0.0]]),
              np.array([[400.0, 0.0], [400.0, 200.0]])]
    return sumo.SumoTrace(
        present=np.array([[True]]), xy_m=np.array([[[200.0 * route_pos + lane_pos_m, 0.0]]]),
        speed_mps=np.array([[speed_mps]]), angle_deg=np.array([[90.0]]), route=np.array([[0]]),
        route_pos=np.array([[route_pos]]),
        lane_pos_m=np.array([[lane_pos_m]]), edge_speed_mps=np.array([edge_speed_mps]),
        edge_ptr=np.array([0, 2, 4, 6]), edge_xy_m=np.concatenate(shapes), edge_length_m=np.array([200.0, 200.0, 200.0]),
        route_ptr=np.array([0, 3]), route_edges=np.array([0, 1, 2]), background_ptr=np.array([0, 0]),
        background_xy_m=np.zeros((0, 2)), extent_m=np.array([400.0, 200.0]),
    )


def test_dwell_follows_the_route_at_sumo_speeds() -> None:
    # at x = 50, 10 m/s (the edge averages 8): RSU at (100, 0), r = 150 -> leaves at x = 250 on edge 2:
    # 150 m at max(10, 8) = 10 m/s, then 50 m at edge 2's mean 5 m/s -> 15 + 10 = 25 s
    m = SumoMobility(_straight_trace(10.0, 50.0, (8.0, 5.0, 20.0)), 1000.0, 1000.0)
    assert m.dwell_time_s(np.array([[100.0, 0.0]]), 150.0)[0] == pytest.approx(25.0)
    # a disc holding the whole rest of the route: the vehicle leaves the network at the route's end,
    # 150 m at 10 + 200 m at 5 + 200 m at 20 = 15 + 40 + 10 s
    assert m.dwell_time_s(np.array([[300.0, 0.0]]), 500.0)[0] == pytest.approx(65.0)
    # already outside the disc: 0
    assert m.dwell_time_s(np.array([[300.0, 300.0]]), 100.0)[0] == 0.0
    # at x = 350 on edge 1; the route turns north at (400, 0): RSU at (400, 0), r = 100 -> leaves at (400, 100):
    # 50 m at max(10, 5) + 100 m at 20 = 5 + 5 = 10 s (a straight line east would say 150 m / 10 = 15 s)
    m = SumoMobility(_straight_trace(10.0, 150.0, (8.0, 5.0, 20.0), route_pos=1), 1000.0, 1000.0)
    assert m.dwell_time_s(np.array([[400.0, 0.0]]), 100.0)[0] == pytest.approx(10.0)
    straight = mobility.predict_dwell_time_s(m.current_m, m.velocity_mps, np.array([[400.0, 0.0]]), 100.0)
    assert straight[0] == pytest.approx(15.0)


def test_dwell_of_a_stopped_vehicle_uses_the_edge_average() -> None:
    # waiting at a light (own speed 0) on an edge that averaged 4 m/s: 150 m / 4 + 50 m / 5 = 47.5 s
    m = SumoMobility(_straight_trace(0.0, 50.0, (4.0, 5.0, 20.0)), 1000.0, 1000.0)
    assert m.dwell_time_s(np.array([[100.0, 0.0]]), 150.0)[0] == pytest.approx(47.5)
    # an edge standing still all round: speeds floored at DWELL_MIN_SPEED_MPS keep the time finite
    m = SumoMobility(_straight_trace(0.0, 50.0, (0.0, 5.0, 20.0)), 1000.0, 1000.0)
    assert m.dwell_time_s(np.array([[100.0, 0.0]]), 150.0)[0] == pytest.approx(150.0 / sumo.mobility.DWELL_MIN_SPEED_MPS + 10.0)


def test_absent_vehicles_have_no_dwell_and_no_velocity() -> None:
    tr = _straight_trace(10.0, 50.0, (8.0, 5.0, 20.0))
    tr = replace(tr, present=np.array([[False]]), speed_mps=np.array([[0.0]]), route=np.array([[-1]]))
    m = SumoMobility(tr, 1000.0, 1000.0)
    assert m.dwell_time_s(np.array([[100.0, 0.0]]), 150.0)[0] == 0.0
    np.testing.assert_array_equal(m.velocity_mps, [[0.0, 0.0]])


def test_velocity_from_sumo_heading() -> None:
    tr = _straight_trace(10.0, 50.0, (8.0, 5.0, 20.0))
    for angle, v in ((90.0, (10.0, 0.0)), (0.0, (0.0, 10.0)), (180.0, (0.0, -10.0)), (270.0, (-10.0, 0.0))):
        m = SumoMobility(replace(tr, angle_deg=np.array([[angle]])), 1000.0, 1000.0)
        np.testing.assert_allclose(m.velocity_mps, [v], atol=1e-9)


# -- the trace file ------------------------------------------------------------------------------------
def test_trace_bytes_round_trip_and_reject_damage() -> None:
    tr = _straight_trace(10.0, 50.0, (8.0, 5.0, 20.0))
    meta = {"format": 1, "seed": 3}
    data = tr.to_bytes(meta)
    back = sumo.SumoTrace.from_bytes(data, meta)
    for f in fields(tr):
        np.testing.assert_array_equal(getattr(back, f.name), getattr(tr, f.name))
    with pytest.raises(ValueError, match="another configuration"):
        sumo.SumoTrace.from_bytes(data, {**meta, "seed": 4})
    for damaged in (data[: len(data) // 2], b"", b"garbage" * 100):
        with pytest.raises(ValueError, match="not a readable trace"):
            sumo.SumoTrace.from_bytes(damaged, meta)
    with pytest.raises(ValueError, match="inconsistent"):
        sumo.SumoTrace.from_bytes(replace(tr, route=np.zeros((2, 1), dtype=int)).to_bytes(meta), meta)


def test_cache_key_holds_what_shapes_traffic_and_nothing_else() -> None:
    base = preset("tiny", mobility_model="sumo")
    key = sumo.trace_key(sumo.trace_meta(base, 0))
    assert key == sumo.trace_key(sumo.trace_meta(preset("tiny", mobility_model="sumo"), 0))
    for change in ({"rounds": 7}, {"road_spacing_m": 100.0}, {"num_vehicles": 7}, {"speed_max_mps": 15.0},
                   {"round_duration_s": 20.0}, {"sumo_warmup_s": 100.0}, {"sumo_vehicles_per_agent": 3.0}):
        assert sumo.trace_key(sumo.trace_meta(base.replace(**change), 0)) != key, change
    assert sumo.trace_key(sumo.trace_meta(base, 1)) != key
    for same in ({"rsu_bandwidth_hz": 2e6}, {"coverage_radius_m": 200.0}, {"num_rsus": 3}, {"sumo_backend": "traci"},
                 {"dirichlet_alpha": 0.5}, {"fading": "none"}):
        assert sumo.trace_key(sumo.trace_meta(base.replace(**same), 0)) == key, same


def test_orphaned_temporary_files_are_swept(tmp_path: Path) -> None:
    old, fresh, trace = tmp_path / ".a.npz.x1.tmp", tmp_path / ".b.npz.x2.tmp", tmp_path / "c.npz"
    for p in (old, fresh, trace):
        p.write_bytes(b"x")
    os.utime(old, (1.0, 1.0))
    os.utime(trace, (1.0, 1.0))
    assert sumo.sweep_orphans(tmp_path) == 1
    assert not old.exists() and fresh.exists() and trace.exists()  # a live writer's file and traces stay


def test_user_files_change_the_key_by_content(tmp_path: Path) -> None:
    routes = tmp_path / "r.rou.xml"
    routes.write_text("<routes/>", encoding="utf-8")
    cfg = preset("tiny", mobility_model="sumo", sumo_route_file=str(routes))
    before = sumo.trace_key(sumo.trace_meta(cfg, 0))
    routes.write_text("<routes> </routes>", encoding="utf-8")
    os.utime(routes, ns=(1, 1))  # a new mtime as well: the digest memo is keyed on it
    assert sumo.trace_key(sumo.trace_meta(cfg, 0)) != before


# -- with SUMO -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_trace() -> tuple[sumo.SumoTrace, sumo.RunStats]:
    """A 20-round SUMO run on the tiny map (one SUMO process for the tests below)."""
    if MISSING:
        pytest.skip(MISSING)
    return sumo.build_trace(preset("tiny", mobility_model="sumo"), 3)


@needs_sumo
def test_generated_grid_spans_the_map(tmp_path: Path) -> None:
    cfg = preset("tiny", mobility_model="sumo")
    net = sumo.network_file(cfg, tmp_path)
    assert sumo.net_boundary_m(net) == (0.0, 0.0, 1000.0, 600.0)
    assert "cache" in str(net) or str(net).startswith(str(tmp_path))
    text = net.read_text()
    assert text.count('type="traffic_light"') == 6 * 4  # every junction of the 6 x 4 grid
    assert 'speed="20.00"' in text  # speed_max_mps is the speed limit


@needs_sumo
def test_trace_shapes_and_positions_on_the_roads(small_trace) -> None:
    tr, stats = small_trace
    n, t_count = 6, 21
    assert tr.present.shape == (t_count, n) and tr.xy_m.shape == (t_count, n, 2)
    assert stats.sumo_steps == round(300 + 20 * 30.0) and stats.vehicles_departed > n
    np.testing.assert_array_equal(tr.extent_m, [1000.0, 600.0])
    assert np.all((tr.xy_m > -2.0) & (tr.xy_m < np.array([1002.0, 602.0])))  # outer lanes sit 1.6 m out
    p = tr.present
    assert np.all(tr.speed_mps[p] >= 0) and np.all(tr.speed_mps[p] <= 20.0 * 1.2 + 1e-9)  # limit x speedFactor cap
    assert np.all(tr.speed_mps[~p] == 0) and np.all(tr.route[~p] == -1) and np.all(tr.route[p] >= 0)
    # a vehicle in the middle of an edge sits on that edge's lane at its lane position, heading along it
    checked = 0
    for t, i in zip(*np.nonzero(p), strict=True):
        r, j = tr.route[t, i], tr.route_pos[t, i]
        e = tr.route_edges[tr.route_ptr[r] + j]
        a, b = tr.edge_xy_m[tr.edge_ptr[e]], tr.edge_xy_m[tr.edge_ptr[e + 1] - 1]
        length = tr.edge_length_m[e]
        if not 5.0 < tr.lane_pos_m[t, i] < length - 5.0:
            continue
        along = (b - a) / np.linalg.norm(b - a)
        np.testing.assert_allclose(tr.xy_m[t, i], a + along * tr.lane_pos_m[t, i] * np.linalg.norm(b - a) / length,
                                   atol=0.05)
        heading = math.degrees(math.atan2(along[0], along[1])) % 360.0  # 0 = north, clockwise
        assert abs((tr.angle_deg[t, i] - heading + 180.0) % 360.0 - 180.0) < 1e-3
        checked += 1
    assert checked >= 20
    # background traffic, and SUMO's edge speeds bounded by the limit
    assert len(tr.background_xy_m) > 0 and np.all((tr.edge_speed_mps >= 0) & (tr.edge_speed_mps <= 20.0 * 1.2))
    assert np.any(tr.edge_speed_mps < 20.0)  # some edges were driven (slower than the limit) in some round


def _reference_dwell_s(tr: sumo.SumoTrace, t: int, i: int, here: np.ndarray, centre: np.ndarray, radius: float) -> float:
    """Walk the route edge by edge in 0.05 m steps of driven metres: an independent, brute-force dwell."""
    if np.sum((here - centre) ** 2) > radius**2:
        return 0.0
    r, j = tr.route[t, i], tr.route_pos[t, i]
    edges = tr.route_edges[tr.route_ptr[r]: tr.route_ptr[r + 1]]
    total = 0.0
    for pos in range(j, len(edges)):
        e = edges[pos]
        shape = tr.edge_xy_m[tr.edge_ptr[e]: tr.edge_ptr[e + 1]]
        geo = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(shape, axis=0), axis=1))])
        length = tr.edge_length_m[e]
        v = max(tr.edge_speed_mps[t, e], tr.speed_mps[t, i] if pos == j else 0.0, sumo.mobility.DWELL_MIN_SPEED_MPS)
        start = min(tr.lane_pos_m[t, i], length) if pos == j else 0.0
        d = np.append(np.arange(start, length, 0.05), length)
        g = d * geo[-1] / length
        p = np.stack([np.interp(g, geo, shape[:, 0]), np.interp(g, geo, shape[:, 1])], axis=1)
        out = np.flatnonzero(np.sum((p - centre) ** 2, axis=1) > radius**2)
        if len(out):
            return total + (d[out[0]] - start) / v
        total += (length - start) / v
    return total


@needs_sumo
def test_vectorised_dwell_matches_a_brute_force_walk(small_trace) -> None:
    tr, _ = small_trace
    m = SumoMobility(tr, 1000.0, 600.0)
    rsus = np.array([[250.0, 300.0], [750.0, 300.0]])
    checked = 0
    for t in range(0, tr.num_rounds, 4):
        m.t = t
        here = m.current_m
        nearest = np.argmin(np.linalg.norm(here[:, None] - rsus[None], axis=2), axis=1)
        got = m.dwell_time_s(rsus[nearest], 350.0)
        for i in np.flatnonzero(tr.present[t]):
            want = _reference_dwell_s(tr, t, i, here[i], rsus[nearest[i]], 350.0)
            # the walk takes a straight line from the vehicle to its lane's next shape point; the table does too
            assert got[i] == pytest.approx(want, abs=0.06 / sumo.mobility.DWELL_MIN_SPEED_MPS + 0.01 * want), (t, i)
            checked += int(want > 0)
    assert checked >= 10


@needs_sumo
def test_vehicles_enter_and_leave_a_fixed_set_of_agents(small_trace) -> None:
    tr, _ = small_trace
    p = tr.present
    assert np.all(p[0])  # after the warm-up every agent has a vehicle
    left = p[:-1] & ~p[1:]
    back = ~p[:-1] & p[1:]
    assert left.sum() >= 3 and back.sum() >= 3  # agents go inactive and become active again
    # a slot whose vehicle left stays empty for the next round, then a new vehicle may take it
    for t, i in zip(*np.nonzero(left), strict=True):
        assert not p[t + 1, i]
    assert 0.5 < p.mean() < 1.0


@needs_sumo
def test_same_seed_same_trace_other_seed_other_traffic(small_trace) -> None:
    tr, _ = small_trace
    again, _ = sumo.build_trace(preset("tiny", mobility_model="sumo"), 3)
    for f in fields(tr):
        np.testing.assert_array_equal(getattr(again, f.name), getattr(tr, f.name), err_msg=f.name)
    other, _ = sumo.build_trace(preset("tiny", mobility_model="sumo"), 4)
    assert not np.array_equal(other.xy_m, tr.xy_m)


@needs_libsumo
def test_libsumo_and_traci_give_the_same_trace() -> None:
    cfg = preset("tiny", **SMALL)
    a, sa = sumo.build_trace(cfg, 5, "libsumo")
    b, sb = sumo.build_trace(cfg, 5, "traci")
    assert (sa.backend, sb.backend) == ("libsumo", "traci")
    for f in fields(a):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)


@needs_sumo
def test_cache_builds_once_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOV_CACHE_DIR", str(tmp_path))
    cfg = preset("tiny", **SMALL)
    first = sumo.load_trace(cfg, 1)
    files = list((tmp_path / "sumo" / "traces").glob("*.npz"))
    assert [f.stem for f in files] == [sumo.trace_key(sumo.trace_meta(cfg, 1))]
    assert len(list((tmp_path / "sumo" / "nets").glob("*.net.xml"))) == 1

    def no_sumo(*args, **kwargs):
        raise AssertionError("SUMO ran although the trace was cached")

    monkeypatch.setattr(sumo.cache, "build_trace", no_sumo)  # load_trace calls it inside the cache module
    second = sumo.load_trace(cfg.replace(rsu_bandwidth_hz=2e6), 1)  # RSUs do not shape traffic: same file
    for f in fields(first):
        np.testing.assert_array_equal(getattr(second, f.name), getattr(first, f.name))


@needs_sumo
def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOV_CACHE_DIR", str(tmp_path))
    cfg = preset("tiny", **SMALL)
    good = sumo.load_trace(cfg, 2)
    path = tmp_path / "sumo" / "traces" / f"{sumo.trace_key(sumo.trace_meta(cfg, 2))}.npz"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 3])  # what a torn write would leave
    rebuilt = sumo.load_trace(cfg, 2)
    np.testing.assert_array_equal(rebuilt.xy_m, good.xy_m)
    assert path.read_bytes() == whole


@needs_sumo
@pytest.mark.parametrize(("folder", "suffix"), [("nets", ".net.xml"), ("traces", ".npz")])
def test_a_run_killed_while_caching_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            folder: str, suffix: str) -> None:
    """SIGKILL after the temporary file is written, before its rename: no cached file, the next run builds one."""
    code = (
        "import os, signal, iov_env.results as r\n"
        "real = r.os.replace\n"
        f"r.os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL) if str(b).endswith({suffix!r}) else real(a, b)\n"
        "from iov_env.config import preset\nfrom iov_env.sim import sumo\n"
        "sumo.load_trace(preset('tiny', mobility_model='sumo', rounds=6), 8)\n"
    )
    scratch = tmp_path / "tmp"  # the killed run cannot remove its scratch folder: keep it out of /tmp
    scratch.mkdir()
    env = {**os.environ, "IOV_CACHE_DIR": str(tmp_path), "TMPDIR": str(scratch)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    where = tmp_path / "sumo" / folder
    assert [p.name.endswith(".tmp") for p in where.iterdir()] == [True]  # only the orphaned temporary file
    monkeypatch.setenv("IOV_CACHE_DIR", str(tmp_path))
    tr = sumo.load_trace(preset("tiny", **SMALL), 8)
    assert tr.present.shape == (7, 6) and len(list(where.glob(f"*{suffix}"))) == 1


@needs_sumo
def test_user_network_and_routes(tmp_path: Path) -> None:
    """A user's .net.xml and route file: three vehicles take agent slots 0-2 in insertion order, slots 3-5 stay empty."""
    net = tmp_path / "mine.net.xml"
    net.write_bytes(sumo.network_file(preset("tiny", mobility_model="sumo"), tmp_path).read_bytes())
    routes = tmp_path / "mine.rou.xml"
    routes.write_text(
        '<routes><vType id="car" maxSpeed="10" speedFactor="1" speedDev="0"/>'
        '<vehicle id="east" type="car" depart="0"><route edges="A0B0 B0C0 C0D0 D0E0 E0F0"/></vehicle>'
        '<vehicle id="north" type="car" depart="1"><route edges="A0A1 A1A2 A2A3"/></vehicle>'
        '<vehicle id="west" type="car" depart="2"><route edges="F3E3 E3D3 D3C3 C3B3 B3A3"/></vehicle></routes>',
        encoding="utf-8",
    )
    cfg = preset("tiny", mobility_model="sumo", rounds=3, round_duration_s=10.0, sumo_warmup_s=10.0,
                 sumo_net_file=str(net), sumo_route_file=str(routes))
    tr, stats = sumo.build_trace(cfg, 0)
    assert stats.vehicles_departed == 3
    np.testing.assert_array_equal(tr.present[0], [True, True, True, False, False, False])
    assert tr.xy_m[0, 0, 1] == pytest.approx(-1.6)  # eastbound along y = 0, on the right-hand lane
    assert tr.xy_m[0, 1, 0] == pytest.approx(1.6)  # northbound along x = 0
    assert tr.xy_m[0, 2, 1] == pytest.approx(601.6)  # westbound along y = 600
    assert np.all(np.diff(tr.xy_m[:, 0, 0]) > 0) and np.all(np.diff(tr.xy_m[:, 2, 0]) < 0)
    assert np.all(tr.speed_mps[1:, :3] <= 10.0 + 1e-9)


@needs_sumo
def test_user_file_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sumo_net_file=.*does not exist"):
        iov_env.parallel_env(preset="tiny", mobility_model="sumo", sumo_net_file=str(tmp_path / "nope.net.xml"))
    with pytest.raises(ConfigError, match="sumo_route_file=.*does not exist"):
        iov_env.parallel_env(preset="tiny", mobility_model="sumo", sumo_route_file=str(tmp_path / "nope.rou.xml"))
    big = tmp_path / "big.net.xml"
    big.write_text('<net><location netOffset="0,0" convBoundary="0.00,0.00,2400.00,900.00"/></net>', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"spans 2400 x 900 m.*width_m >= 2400 and height_m >= 900"):
        iov_env.parallel_env(preset="tiny", mobility_model="sumo", sumo_net_file=str(big))
    bare = tmp_path / "bare.net.xml"
    bare.write_text("<net/>", encoding="utf-8")
    with pytest.raises(ConfigError, match="convBoundary"):
        iov_env.parallel_env(preset="tiny", mobility_model="sumo", sumo_net_file=str(bare))


@needs_sumo
def test_random_trips_leaves_no_global_state_behind() -> None:
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    path = list(sys.path)
    sumo.build_trace(preset("tiny", **SMALL), 9)
    assert random.random() == expected and sys.path == path


@needs_libsumo
def test_a_libsumo_simulation_of_the_user_is_left_alone(tmp_path: Path) -> None:
    """libsumo holds one simulation per process and a second start would replace it: SUMO then runs over traci."""
    libsumo = sumo.import_libsumo()
    net = sumo.network_file(preset("tiny", mobility_model="sumo"), tmp_path)
    libsumo.start([sumo.binary("sumo"), "--net-file", str(net), "--no-step-log", "true"])
    try:
        libsumo.simulationStep(42.0)
        _, stats = sumo.build_trace(preset("tiny", **SMALL), 0, "libsumo")
        assert stats.backend == "traci"
        assert libsumo.simulation.getTime() == 42.0
    finally:
        libsumo.close()
    _, stats = sumo.build_trace(preset("tiny", **SMALL), 0, "libsumo")
    assert stats.backend == "libsumo"


def test_describe_counts_by_hand() -> None:
    tr = _straight_trace(10.0, 50.0, (8.0, 5.0, 20.0))
    # 3 rounds: on the road, off, on again (a second trip); 2, 0 and 1 background vehicles
    tr = replace(tr, present=np.array([[True], [False], [True]]), background_ptr=np.array([0, 2, 2, 3]),
                 background_xy_m=np.zeros((3, 2)))
    d = sumo.describe(tr, preset("tiny", mobility_model="sumo", num_vehicles=1))
    assert d["vehicles_on_road_per_agent"] == pytest.approx((3 + 0 + 2) / 3)
    assert d["agent_rounds_on_road"] == pytest.approx(2 / 3)
    assert d["trips_per_agent"] == 2.0 and d["background_vehicles_per_round"] == 1.0


@needs_sumo
def test_traffic_report_has_one_row_per_seed() -> None:
    lines = list(sumo.traffic_report("tiny", [0, 1]))
    rows = [line for line in lines if line.startswith("| 0 |") or line.startswith("| 1 |")]
    assert len(rows) == 2


@needs_sumo
@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_sumo_errors_carry_sumos_own_message(tmp_path: Path, backend: str) -> None:
    if backend == "libsumo" and not sumo.importable("libsumo"):
        pytest.skip("libsumo is not installed")
    routes = tmp_path / "bad.rou.xml"
    routes.write_text('<routes><vehicle id="x" depart="0"><route edges="NOPE"/></vehicle></routes>', encoding="utf-8")
    cfg = preset("tiny", **SMALL, sumo_route_file=str(routes))
    with pytest.raises(RuntimeError, match="The edge 'NOPE' within the route for vehicle 'x' is not known"):
        sumo.build_trace(cfg, 0, backend)


@needs_sumo
def test_traci_is_the_fallback_when_libsumo_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libsumo", None)
    assert sumo.resolve_backend("auto") == "traci"
    with pytest.raises(sumo.SumoUnavailableError, match="sumo_backend='libsumo' but libsumo is not installed"):
        sumo.resolve_backend("libsumo")
    _, stats = sumo.build_trace(preset("tiny", **SMALL), 0)
    assert stats.backend == "traci"
