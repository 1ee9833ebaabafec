"""Episode-long invariants of the parallel and gym views under random actions (DESIGN "RL interface")."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import iov_env
from iov_env.envs.parallel import observation_layout

RESET_KEYS = {"active", "action_mask", "task", "task_index", "round", "budget", "dual_price"}
STEP_KEYS = {
    "active", "action_mask", "action_corrected", "rank", "cost", "budget", "rewards", "accuracy", "latency_s",
    "energy_j", "task", "task_index", "rsu", "dual_price", "task_energy_used_j", "task_budget_j", "fault",
    "fault_energy_saved_j", "round", "reward", "task_accuracy", "task_latency_s",
}
FAULTS = {None, "early_upload", "migration", "abandon"}


def _expected_executed(mask: np.ndarray, requested: int) -> int:
    """DESIGN: an infeasible rank is replaced by the largest feasible rank below it."""
    below = np.flatnonzero(mask[: requested + 1])
    return int(below[-1]) if len(below) else int(np.flatnonzero(mask)[0])


def _check_obs(env, obs: dict) -> None:
    for a, o in obs.items():
        assert np.all(np.isfinite(o)), a
        assert env.observation_space(a).contains(o), (a, o)


@pytest.mark.parametrize("preset", ["tiny", "paper"])
@pytest.mark.parametrize("seed", [0, 1])
def test_episode_invariants_random_actions(make_parallel, preset: str, seed: int) -> None:
    env = make_parallel(preset=preset)
    cfg = env.config
    rank_set = cfg.learning.rank_set
    layout = observation_layout(cfg)
    rng = np.random.default_rng(seed)
    obs, infos = env.reset(seed=seed)
    _check_obs(env, obs)
    assert set(obs) == set(infos) == set(env.possible_agents)
    for a in env.agents:
        assert set(infos[a]) == RESET_KEYS
        assert infos[a]["round"] == 0
    corrections = 0
    for t in range(cfg.episode.rounds):
        masks = {a: infos[a]["action_mask"] for a in env.agents}
        # the observation describes the coming round; after a step, info["active"] describes the round
        # just executed (with its reward and cost), so the coming round's activity is read from obs
        active_now = {a: bool(obs[a][layout["active"]][0] == 1.0) for a in env.agents}
        if t == 0:
            assert all(active_now[a] is infos[a]["active"] for a in env.agents)
        assert all(active_now[a] is bool(env.simulator.state.active[i]) for i, a in enumerate(env.agents))
        actions = {}
        for a in env.agents:
            m = masks[a]
            assert m.shape == (cfg.num_ranks,) and m.any(), (t, a, m)
            if not active_now[a]:
                assert m.tolist() == [1] + [0] * (cfg.num_ranks - 1)
            infeasible = np.flatnonzero(m == 0)
            # half the time provoke a correction: the largest rank the mask says is infeasible
            if active_now[a] and len(infeasible) and rng.random() < 0.5:
                actions[a] = int(infeasible[-1])
            else:
                actions[a] = int(rng.integers(cfg.num_ranks))
        obs, rewards, terms, truncs, infos = env.step(actions)
        last = t == cfg.episode.rounds - 1
        assert set(obs) == set(rewards) == set(terms) == set(truncs) == set(infos) == set(env.possible_agents)
        assert not any(terms.values())
        assert all(v is last for v in truncs.values()), (t, truncs)
        if not last:
            _check_obs(env, obs)
        for a, info in infos.items():
            assert set(info) == STEP_KEYS, set(info) ^ STEP_KEYS
            assert info["round"] == t
            r, c = rewards[a], info["cost"]
            assert math.isfinite(r) and math.isfinite(c) and c >= 0
            for v in (info["accuracy"], info["latency_s"], info["energy_j"], info["budget"], info["dual_price"]):
                assert math.isfinite(v)
            assert 0.0 <= info["accuracy"] <= 1.0 and info["latency_s"] >= 0 and info["dual_price"] >= 0
            assert info["fault"] in FAULTS
            assert info["task"] == cfg.tasks.tasks[info["task_index"]]
            assert r == pytest.approx(sum(info["rewards"].values()), abs=1e-9)
            assert info["reward"] == r
            assert 0.0 <= info["task_accuracy"] <= 1.0 and info["task_latency_s"] >= 0.0
            assert info["rewards"]["energy"] == 0.0  # constrained mode: energy is a cost, not in the reward
            assert info["cost"] == info["energy_j"]
            assert info["active"] is active_now[a]
            if not info["active"]:
                assert r == 0.0 and c == 0.0 and info["rank"] == 0 and not info["action_corrected"]
                assert info["fault"] is None
                continue
            want = _expected_executed(masks[a], actions[a])
            assert info["rank"] == rank_set[want], (t, a, masks[a], actions[a], info["rank"])
            assert info["action_corrected"] is (want != actions[a])
            corrections += int(info["action_corrected"])
    assert env.agents == []
    assert corrections > 0, "the episode never exercised an action correction"


def test_inactive_vehicles_outside_coverage(make_parallel) -> None:
    """A vehicle outside every RSU: info active False, reward 0, cost 0, mask [1, 0, ...]."""
    env = make_parallel(preset="tiny", coverage_radius_m=60.0, rounds=6)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    seen = 0
    while env.agents:
        st = env.simulator.state
        outside = st.vehicle_rsu < 0
        assert not np.any(st.active & outside)
        _, rewards, _, _, infos = env.step({a: int(rng.integers(7)) for a in env.agents})
        for i, a in enumerate(env.possible_agents):
            if outside[i]:
                seen += 1
                assert infos[a]["active"] is False and rewards[a] == 0.0 and infos[a]["cost"] == 0.0
                assert infos[a]["rsu"] == -1 and infos[a]["rank"] == 0
    assert seen > 0


def test_vehicles_without_energy_become_inactive(make_parallel) -> None:
    """A small battery runs out: the vehicle goes inactive while still covered, and never overspends."""
    env = make_parallel(preset="tiny", vehicle_energy_j=6.0, rounds=12)
    env.reset(seed=0)
    spent = dict.fromkeys(env.possible_agents, 0.0)
    drained = 0
    while env.agents:
        st = env.simulator.state
        covered_but_idle = (st.vehicle_rsu >= 0) & ~st.active
        _, rewards, _, _, infos = env.step(dict.fromkeys(env.agents, 6))
        for i, a in enumerate(env.possible_agents):
            spent[a] += infos[a]["cost"]
            if covered_but_idle[i]:
                drained += 1
                assert infos[a]["active"] is False and rewards[a] == 0.0 and infos[a]["cost"] == 0.0
    assert drained > 0, "no vehicle ran out of energy: make the battery smaller"
    assert max(spent.values()) <= 6.0 + 1e-9, spent
    assert np.all(env.simulator.energy_remaining_j >= 0)


def test_action_correction_on_a_constructed_case(make_parallel) -> None:
    """Pick, for an active vehicle, the largest rank the mask marks infeasible: it runs the largest feasible below."""
    env = make_parallel(preset="tiny")
    for seed in range(20):
        _, infos = env.reset(seed=seed)
        cands = [a for a in env.agents if infos[a]["active"] and not infos[a]["action_mask"].all()]
        if cands:
            break
    else:
        pytest.fail("no active vehicle with an infeasible rank in 20 seeds")
    a = cands[0]
    mask = infos[a]["action_mask"]
    bad = int(np.flatnonzero(mask == 0)[-1])
    want = int(np.flatnonzero(mask[:bad])[-1])
    actions = dict.fromkeys(env.agents, 0)
    actions[a] = bad
    _, _, _, _, out = env.step(actions)
    assert out[a]["action_corrected"] is True
    assert out[a]["rank"] == env.config.learning.rank_set[want]
    assert all(out[b]["action_corrected"] is False for b in env.agents if b != a)


@pytest.mark.parametrize("mode", ["lagrangian", "code"])
def test_reward_modes_fold_energy(make_parallel, mode: str) -> None:
    env = make_parallel(preset="tiny", reward_mode=mode, lagrangian_weight=0.5, energy_weight=0.01)
    env.reset(seed=0)
    _, rewards, _, _, infos = env.step(dict.fromkeys(env.agents, 2))
    w = 0.5 if mode == "lagrangian" else 0.01
    for a, i in infos.items():
        assert i["rewards"]["energy"] == pytest.approx(-w * i["cost"])
        assert rewards[a] == pytest.approx(sum(i["rewards"].values()))


def test_truncation_exactly_after_rounds(make_parallel) -> None:
    env = make_parallel(preset="tiny", rounds=3)
    env.reset(seed=0)
    flags = []
    while env.agents:
        _, _, terms, truncs, _ = env.step(dict.fromkeys(env.agents, 0))
        flags.append((any(terms.values()), all(truncs.values())))
    assert flags == [(False, False), (False, False), (False, True)]
    assert env.agents == [] and env.simulator.done


@pytest.mark.parametrize("env_id", ["iov_env/IoVRank-tiny-fast-v1", "iov_env/IoVRank-paper-fast-v1"])
def test_gym_view_reward_and_cost_are_sums(env_id: str) -> None:
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    n = env.unwrapped.config.num_vehicles
    assert info["cost"] == 0.0 and info["action_mask"].shape == (n, 7)
    steps = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 7, size=n))
        steps += 1
        agents = info["agents"]
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
        assert reward == pytest.approx(sum(agents[a]["rewards"]["accuracy"] + agents[a]["rewards"]["latency"]
                                           + agents[a]["rewards"]["energy"] for a in agents))
        assert info["cost"] == pytest.approx(sum(a["cost"] for a in agents.values()))
        assert info["cost"] == pytest.approx(float(np.sum(info["task_energy_j"])))
        assert info["rewards"]["accuracy"] == pytest.approx(sum(a["rewards"]["accuracy"] for a in agents.values()))
        assert info["action_mask"].any(axis=1).all()
        assert terminated is False
        if truncated:
            break
    assert steps == env.unwrapped.config.episode.rounds
    env.close()


def test_gym_view_matches_parallel_view() -> None:
    """The centralised reward is exactly the sum of the decentralised rewards on the same seed and actions."""
    g = gym.make("iov_env/IoVRank-tiny-fast-v1")
    p = iov_env.parallel_env(preset="tiny")
    g.reset(seed=8)
    p.reset(seed=8)
    rng = np.random.default_rng(1)
    for _ in range(5):
        act = rng.integers(0, 7, size=6)
        _, rew, _, _, info = g.step(act)
        _, rewards, _, _, infos = p.step({f"vehicle_{i}": int(x) for i, x in enumerate(act)})
        assert rew == pytest.approx(sum(rewards.values()), rel=1e-12)
        assert info["cost"] == pytest.approx(sum(i["cost"] for i in infos.values()), rel=1e-12)
    g.close()
    p.close()
