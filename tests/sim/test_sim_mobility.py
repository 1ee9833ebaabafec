"""RSU placement, attachment, dwell prediction, the road-grid model and the T-Drive loader."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, real_tdrive_dir

from iov_env.config import ConfigError, preset
from iov_env.sim import mobility, tdrive

# -- RSUs ---------------------------------------------------------------------------------------


def test_grid_rsu_positions_by_hand() -> None:
    # 3 RSUs on 1000 x 1000: cols = ceil(sqrt(3)) = 2, rows = 2; the last row holds one RSU, centred
    pos = mobility.grid_rsu_positions_m(3, 1000.0, 1000.0)
    np.testing.assert_allclose(pos, [[250, 250], [750, 250], [500, 750]])
    # tiny map 1000 x 600, 2 RSUs: cols = ceil(sqrt(2 * 1000 / 600)) = 2, one row
    np.testing.assert_allclose(mobility.grid_rsu_positions_m(2, 1000.0, 600.0), [[250, 300], [750, 300]])
    np.testing.assert_allclose(mobility.grid_rsu_positions_m(1, 1000.0, 600.0), [[500, 300]])


@pytest.mark.parametrize(("n", "w", "h"), [(50, 5000.0, 5000.0), (7, 1000.0, 300.0), (12, 200.0, 2000.0), (1, 10.0, 10.0)])
def test_grid_rsu_positions_inside_and_distinct(n: int, w: float, h: float) -> None:
    pos = mobility.grid_rsu_positions_m(n, w, h)
    assert pos.shape == (n, 2)
    assert np.all((pos[:, 0] > 0) & (pos[:, 0] < w) & (pos[:, 1] > 0) & (pos[:, 1] < h))
    assert len({tuple(p) for p in np.round(pos, 6)}) == n


def test_explicit_rsu_positions_are_used() -> None:
    cfg = preset("tiny", rsu_placement="explicit", rsu_positions_m=((100.0, 200.0), (900.0, 500.0)))
    np.testing.assert_array_equal(mobility.rsu_positions_m(cfg), [[100, 200], [900, 500]])


def test_attach_nearest_within_radius() -> None:
    rsus = np.array([[0.0, 0.0], [1000.0, 0.0]])
    veh = np.array([[100.0, 0.0], [900.0, 0.0], [500.0, 400.0], [600.0, 0.0], [1000.0, 350.0]])
    idx, dist = mobility.attach(veh, rsus, radius_m=350.0)
    np.testing.assert_array_equal(idx, [0, 1, -1, -1, 1])  # 400 m > 350 m: out; exactly 350 m: in
    np.testing.assert_allclose(dist, [100.0, 100.0, math.hypot(500, 400), 400.0, 350.0])


# -- dwell --------------------------------------------------------------------------------------
def test_dwell_time_straight_out_of_a_disc() -> None:
    centre = np.array([[0.0, 0.0]])
    pos = np.array([[0.0, 0.0], [50.0, 0.0], [50.0, 0.0], [0.0, 60.0], [200.0, 0.0], [10.0, 10.0]])
    vel = np.array([[10.0, 0.0], [10.0, 0.0], [-10.0, 0.0], [10.0, 0.0], [-10.0, 0.0], [0.0, 0.0]])
    t = mobility.predict_dwell_time_s(pos, vel, centre, radius_m=100.0)
    # centre -> edge: 100 m / 10 = 10 s; from x=50 outward: 5 s; inward: 150 m / 10 = 15 s;
    # chord at y=60: x leaves at sqrt(100^2 - 60^2) = 80 m -> 8 s; already outside: 0; parked: capped
    np.testing.assert_allclose(t[:5], [10.0, 5.0, 15.0, 8.0, 0.0])
    assert t[5] == mobility.MAX_DWELL_S


def test_dwell_time_diagonal() -> None:
    # moving along (3, 4) at 5 m/s from the centre: radius 100 m -> 20 s
    t = mobility.predict_dwell_time_s(np.zeros((1, 2)), np.array([[3.0, 4.0]]), np.zeros((1, 2)), 100.0)
    assert float(t[0]) == pytest.approx(20.0)


# -- road grid ----------------------------------------------------------------------------------
def _grid(seed: int = 0, spacing: float = 100.0) -> mobility.GridMobility:
    g = mobility.GridMobility(1000.0, 600.0, spacing, 8.0, 20.0, 0.3, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    g.place(np.column_stack([rng.uniform(0, 1000, 40), rng.uniform(0, 600, 40)]))
    return g


def _on_road(pos: np.ndarray, spacing: float) -> np.ndarray:
    off = np.abs(pos / spacing - np.round(pos / spacing)) * spacing
    return off.min(axis=1) < 1e-6


def test_grid_mobility_stays_on_roads_inside_the_map_and_moves() -> None:
    g = _grid()
    assert np.all(_on_road(g.current_m, 100.0))
    start = g.current_m.copy()
    for _ in range(30):
        before = g.current_m.copy()
        g.step(30.0)
        pos = g.current_m
        assert np.all((pos >= 0) & (pos <= [1000.0, 600.0]))
        assert np.all(_on_road(pos, 100.0))
        assert np.all((g.speed_mps >= 8.0) & (g.speed_mps <= 20.0))
        # never faster than the top speed (Manhattan distance bounds the travelled path from below)
        assert np.all(np.abs(pos - before).sum(axis=1) <= 20.0 * 30.0 + 1e-6)
    assert np.linalg.norm(g.current_m - start, axis=1).max() > 100.0
    # velocity is axis-aligned with the current speed
    v = g.velocity_mps
    assert np.all((v == 0).any(axis=1))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), g.speed_mps)


def test_grid_mobility_is_reproducible() -> None:
    a, b = _grid(3), _grid(3)
    for _ in range(5):
        a.step(30.0)
        b.step(30.0)
    np.testing.assert_array_equal(a.current_m, b.current_m)


# -- T-Drive ------------------------------------------------------------------------------------
# 0.001 deg of longitude at 39.9 N: 6,371,000 * pi/180 * 0.001 * cos(39.9 deg) = 85.305 m
DX_M = 6_371_000.0 * math.pi / 180.0 * 0.001 * math.cos(math.radians(39.9))
DY_M = 6_371_000.0 * math.pi / 180.0 * 0.001  # 111.195 m


def test_parse_tdrive_file_reads_every_wellformed_line() -> None:
    t, lon, lat = tdrive.parse_tdrive_file(FIXTURES / "tdrive" / "1.txt")
    assert len(t) == 8  # 9 lines, one blank
    assert t[1] - t[0] == 600.0
    assert lon[5] == 117.0 and lat[6] == 0.0


def test_clean_trajectory_drops_duplicates_disorder_jumps_and_null_fixes() -> None:
    t, lon, lat = tdrive.parse_tdrive_file(FIXTURES / "tdrive" / "1.txt")
    ct, xy = tdrive.clean_trajectory(t, lon, lat, max_speed_mps=50.0)
    np.testing.assert_array_equal(ct - ct[0], [0, 600, 1200, 1800, 2400])
    assert DX_M == pytest.approx(85.305, abs=1e-3)
    np.testing.assert_allclose(np.diff(xy[:, 0]), DX_M, rtol=1e-9)
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-9)
    # projected around the median of the fixes (the dropped jump still counts): lon 116.4025
    np.testing.assert_allclose(xy[2], [-DX_M / 2, 0.0], atol=1e-6)


def test_tdrive_malformed_line_names_file_and_line() -> None:
    bad = FIXTURES / "tdrive_bad" / "3.txt"
    with pytest.raises(tdrive.TDriveFormatError, match=r"3\.txt:4: expected 4 comma-separated fields, got 3"):
        tdrive.parse_tdrive_file(bad)
    with pytest.raises(ValueError, match=r"3\.txt:4"):
        tdrive.load_tdrive(bad.parent, 30.0, 50.0)


def test_tdrive_bad_timestamp_names_file_and_line(tmp_path) -> None:
    p = tmp_path / "9.txt"
    p.write_text("9,2008-02-02 15:00:00,116.4,39.9\n9,2008-13-45 99:00:00,116.4,39.9\n", encoding="utf-8")
    with pytest.raises(tdrive.TDriveFormatError, match=r"9\.txt:2"):
        tdrive.parse_tdrive_file(p)
    p.write_text("9,2008-02-02 15:00:00,east,39.9\n", encoding="utf-8")
    with pytest.raises(tdrive.TDriveFormatError, match=r"9\.txt:1"):
        tdrive.parse_tdrive_file(p)


def test_load_tdrive_fixture_resamples_each_taxi() -> None:
    traces = tdrive.load_tdrive(FIXTURES / "tdrive", dt_s=300.0, max_speed_mps=50.0)
    assert len(traces) == 2
    one, two = traces
    # 15:00 .. 15:40 every 5 min: 9 points, half a 10-minute step apart
    assert one.shape == (9, 2)
    np.testing.assert_allclose(np.diff(one[:, 0]), DX_M / 2, rtol=1e-9)
    # taxi 2: 15:00 .. 15:20 north: 5 points
    assert two.shape == (5, 2)
    np.testing.assert_allclose(np.diff(two[:, 1]), DY_M / 2, rtol=1e-6)
    np.testing.assert_allclose(two[:, 0], two[0, 0], atol=1e-6)


def test_resample_keeps_the_last_fix_at_unix_time_magnitudes() -> None:
    t0 = 1_201_964_400.0  # 2008-02-02 15:00 UTC
    out = tdrive.resample(np.array([t0, t0 + 60.0]), np.array([[0.0, 0.0], [60.0, 0.0]]), dt_s=30.0)
    np.testing.assert_allclose(out, [[0, 0], [30, 0], [60, 0]])


def test_load_tdrive_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="holds no T-Drive"):
        tdrive.load_tdrive(tmp_path, 30.0, 50.0)
    (tmp_path / "5.txt").write_text("5,2008-02-02 15:00:00,116.4,39.9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no trace has two valid points"):
        tdrive.load_tdrive(tmp_path, 30.0, 50.0)


def test_tdrive_directory_resolution(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("IOV_DATA_DIR", raising=False)
    with pytest.raises(ConfigError, match="IOV_DATA_DIR"):
        tdrive.tdrive_directory(preset("tiny", mobility_model="tdrive"))
    monkeypatch.setenv("IOV_DATA_DIR", str(tmp_path))
    assert tdrive.tdrive_directory(preset("tiny", mobility_model="tdrive")) == tmp_path / "tdrive"
    explicit = preset("tiny", mobility_model="tdrive", tdrive_dir=str(FIXTURES / "tdrive"))
    assert tdrive.tdrive_directory(explicit) == FIXTURES / "tdrive"


def test_trace_mobility_replays_without_teleporting() -> None:
    traces = tdrive.load_tdrive(FIXTURES / "tdrive", dt_s=30.0, max_speed_mps=50.0)
    start = np.array([[500.0, 300.0], [100.0, 100.0], [900.0, 500.0]])
    scale = 3.0
    tm = mobility.TraceMobility.build(traces, start, 1000.0, 600.0, 30.0, scale, np.random.default_rng(0))
    max_step = max(float(np.linalg.norm(np.diff(tr, axis=0), axis=1).max()) for tr in traces) * scale
    np.testing.assert_allclose(tm.current_m[0], start[0])  # round 0: at the start point
    moved = 0.0
    for _ in range(60):
        before = tm.current_m
        tm.step(30.0)
        pos = tm.current_m
        assert np.all((pos >= 0) & (pos <= [1000.0, 600.0]))
        assert np.linalg.norm(pos - before, axis=1).max() <= max_step + 1e-6
        moved += float(np.linalg.norm(pos - before, axis=1).sum())
    assert moved > 0


@pytest.mark.skipif(real_tdrive_dir() is None, reason="no T-Drive data: set IOV_DATA_DIR or provide ../shared/data/tdrive")
def test_load_real_tdrive() -> None:
    folder = real_tdrive_dir()
    traces, report = tdrive.read_tdrive(folder, dt_s=30.0, max_speed_mps=50.0)
    assert len(traces) >= 1
    if report.files_read == 2:  # the shared 2-taxi sample (shared/data/tdrive/SOURCE.md): what cleaning drops
        assert (report.fixes_read, report.fixes_kept) == (2262, 2134)
        assert report.dropped == {"invalid_coordinates": 0, "time_out_of_range": 0, "duplicate_time": 126,
                                  "far_from_centre": 0, "time_outlier": 0, "speed_jump": 2}
    for tr in traces:
        assert tr.ndim == 2 and tr.shape[1] == 2 and len(tr) >= 2
        assert np.all(np.isfinite(tr))
        # resampled at 30 s from cleaned points: no step faster than the 50 m/s cap
        assert np.linalg.norm(np.diff(tr, axis=0), axis=1).max() <= 50.0 * 30.0 + 1e-6


def test_tdrive_env_steps_on_the_fixture(make_parallel) -> None:
    env = make_parallel(preset="tiny", mobility_model="tdrive", tdrive_dir=str(FIXTURES / "tdrive"), tdrive_scale=20.0)
    _assert_tdrive_episode(env)


@pytest.mark.skipif(real_tdrive_dir() is None, reason="no T-Drive data: set IOV_DATA_DIR or provide ../shared/data/tdrive")
def test_tdrive_env_steps_on_real_data(make_parallel, monkeypatch) -> None:
    monkeypatch.setenv("IOV_DATA_DIR", str(real_tdrive_dir().parent))
    env = make_parallel(preset="tiny", mobility_model="tdrive")
    _assert_tdrive_episode(env)


def _assert_tdrive_episode(env) -> None:
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    positions = [env.simulator.positions_m.copy()]
    while env.agents:
        obs, rewards, _, _, infos = env.step({a: int(rng.integers(env.config.num_ranks)) for a in env.agents})
        assert all(np.all(np.isfinite(o)) for o in obs.values())
        assert all(math.isfinite(r) for r in rewards.values())
        positions.append(env.simulator.positions_m.copy())
    pos = np.stack(positions)
    assert pos.shape[0] == env.config.episode.rounds + 1
    assert np.all((pos >= 0) & (pos <= [env.config.map.width_m, env.config.map.height_m]))
    assert np.abs(np.diff(pos, axis=0)).max() > 0  # vehicles do move


def test_tdrive_fixture_is_copied_not_mutated(tmp_path) -> None:
    """Loading never writes next to the traces (the data folder may be read-only)."""
    dst = tmp_path / "tdrive"
    shutil.copytree(FIXTURES / "tdrive", dst)
    before = sorted(p.name for p in dst.iterdir())
    tdrive.load_tdrive(dst, 30.0, 50.0)
    assert sorted(p.name for p in dst.iterdir()) == before
