"""The env on SUMO traffic: official checkers, determinism, agents active only on the road, the rendered road map."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test

import iov_env
from iov_env.render import ROAD_COLOUR, map_raster, render_figure
from iov_env.sim import sumo

MISSING = sumo.missing_reason()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def _rollout(env, seed: int) -> list:
    rng = np.random.default_rng(11)
    obs, infos = env.reset(seed=seed)
    out = [(obs, infos)]
    while env.agents:
        obs, rewards, _, _, infos = env.step({a: int(rng.integers(env.config.num_ranks)) for a in env.agents})
        out.append((obs, rewards, infos))
    return out


def test_tiny_preset_passes_parallel_api_test() -> None:
    """The issue's acceptance: ``parallel_env(preset="tiny", mobility_model="sumo")`` as it is, 20 rounds."""
    env = iov_env.parallel_env(preset="tiny", mobility_model="sumo")
    parallel_api_test(env, num_cycles=30)
    env.close()


def test_gymnasium_check_env() -> None:
    env = gym.make("iov_env/IoVRank-tiny-fast-v1", mobility_model="sumo", rounds=5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped, skip_render_check=False)
    finally:
        env.close()


def test_same_seed_identical_episode_other_seed_other_traffic() -> None:
    a = iov_env.parallel_env(preset="tiny", mobility_model="sumo", rounds=8)
    b = iov_env.parallel_env(preset="tiny", mobility_model="sumo", rounds=8)
    ta, tb = _rollout(a, 4), _rollout(b, 4)
    pos_a = a.simulator.positions_m.copy()
    for xa, xb in zip(ta, tb, strict=True):
        for da, db in zip(xa, xb, strict=True):
            for agent in da:
                va, vb = da[agent], db[agent]
                if isinstance(va, dict):
                    assert va.keys() == vb.keys()
                    for k in va:
                        np.testing.assert_array_equal(va[k], vb[k], err_msg=k)
                else:
                    np.testing.assert_array_equal(va, vb)
    _rollout(b, 5)
    assert not np.array_equal(b.simulator.positions_m, pos_a)
    a.close()
    b.close()


def test_agents_off_the_road_are_inactive_with_zero_reward_and_cost() -> None:
    env = iov_env.parallel_env(preset="tiny", mobility_model="sumo")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    off_road_rounds = 0
    while env.agents:
        present = env.simulator.mobility.present.copy()
        attached = env.simulator.state.vehicle_rsu >= 0
        assert np.all(attached <= present)  # nobody off the road is attached to an RSU
        _, rewards, _, _, infos = env.step({a: int(rng.integers(7)) for a in env.agents})
        for i, a in enumerate(env.possible_agents):
            if not present[i]:
                off_road_rounds += 1
                assert infos[a]["active"] is False and rewards[a] == 0.0 and infos[a]["cost"] == 0.0
    assert off_road_rounds >= 3
    env.close()


def test_dwell_comes_from_the_sumo_routes() -> None:
    env = iov_env.parallel_env(preset="tiny", mobility_model="sumo", rounds=10)
    env.reset(seed=1)
    sim = env.simulator
    seen = 0
    while env.agents:
        st, mob = sim.state, sim.mobility
        attached = st.vehicle_rsu >= 0
        expected = mob.dwell_time_s(sim.rsus_m[np.maximum(st.vehicle_rsu, 0)], sim.config.rsu.coverage_radius_m)
        np.testing.assert_array_equal(st.dwell_s[attached], expected[attached])
        assert np.all(st.dwell_s[attached] >= 0) and np.all(st.dwell_s[~attached] == 0)
        seen += int(attached.sum())
        env.step(dict.fromkeys(env.agents, 0))
    assert seen > 0
    env.close()


def test_trace_pool_reuses_traffic_across_seeds() -> None:
    env = iov_env.parallel_env(preset="tiny", mobility_model="sumo", rounds=3, sumo_trace_pool=2)
    env.reset(seed=0)
    first = env.simulator.mobility.trace
    env.reset(seed=2)  # 2 % 2 == 0: the same traffic draw, from the cache
    assert env.simulator.mobility.trace.xy_m.tobytes() == first.xy_m.tobytes()
    env.reset(seed=1)
    assert env.simulator.mobility.trace.xy_m.tobytes() != first.xy_m.tobytes()
    env.close()


def test_rendered_frame_shows_the_road_network_under_rsu_coverage() -> None:
    env = iov_env.parallel_env(preset="tiny", mobility_model="sumo", rounds=3, render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().ndim == 3
    assert "road (SUMO)" in [t.get_text() for t in render_figure(env.simulator, None).legends[0].get_texts()]
    frame = map_raster(env.simulator, None)  # the map layer, before the axes, labels and legend go around it
    grid = iov_env.parallel_env(preset="tiny", rounds=3, render_mode="rgb_array")
    grid.reset(seed=0)
    grid_frame = map_raster(grid.simulator, None)
    assert frame.shape == grid_frame.shape == (288, 480, 3) and frame.dtype == np.uint8
    # a road outside every coverage disc is drawn in ROAD_COLOUR; under a disc it is blended with the disc
    under = np.round(0.65 * ROAD_COLOUR.astype(float) + 0.35 * 200).astype(np.uint8)
    road = np.all(frame == ROAD_COLOUR, axis=-1)
    covered_road = np.all(frame == under, axis=-1)
    assert road.sum() > 100 and covered_road.sum() > 2000
    assert not np.all(grid_frame == ROAD_COLOUR, axis=-1).any()
    # the roads lie on the generated 200 m grid: the middle row of the map (y = 400 m) is a road
    y_px = 288 - 1 - round(400 * 0.48)
    assert covered_road[y_px - 1: y_px + 2].any(axis=0).mean() > 0.6
    env.close()
    grid.close()
