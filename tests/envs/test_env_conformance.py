"""Official checkers: gymnasium check_env over every fast id, PettingZoo api/parallel/seed tests."""

from __future__ import annotations

import warnings

import gymnasium as gym
import pytest
from conftest import FAST_IDS, REAL_IDS
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

import iov_env


def test_fast_and_real_ids_are_listed() -> None:
    assert "iov_env/IoVRank-fast-v1" in FAST_IDS
    assert "iov_env/IoVRank-city-fast-v1" in FAST_IDS
    assert REAL_IDS and set(FAST_IDS).isdisjoint(REAL_IDS)


@pytest.mark.parametrize("env_id", FAST_IDS)
def test_gymnasium_check_env(env_id: str) -> None:
    """check_env on the unwrapped env; the city preset (1000 vehicles) runs at full size, it is quick."""
    env = gym.make(env_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # checker warnings (dtype, bounds, determinism) are failures
            check_env(env.unwrapped, skip_render_check=False)
        assert env.unwrapped.config.learning.fidelity == "fast"
        preset = iov_env.ENV_IDS[env_id]["preset"]
        assert env.unwrapped.config.num_vehicles == {"tiny": 6, "paper": 9, "city": 1000}[preset]
    finally:
        env.close()


# real fidelity: the registered ids with a tiny random BERT and short rounds, so each step really trains
REAL_SMALL = {"model_name_or_path": "tiny-random-bert", "rounds": 2, "local_steps": 2, "eval_subset_size": 16}


@pytest.mark.parametrize("env_id", REAL_IDS)
def test_gymnasium_check_env_real(env_id: str) -> None:
    """check_env on the real ids: peft training and evaluation run inside every step it takes."""
    env = gym.make(env_id, **REAL_SMALL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", category=UserWarning)
            check_env(env.unwrapped, skip_render_check=True)
        assert env.unwrapped.config.learning.fidelity == "real"
        assert env.unwrapped.simulator.backend.describe()["fidelity"] == "real"
    finally:
        env.close()


def test_pettingzoo_parallel_api_real() -> None:
    """parallel_api_test on the real tiny world: truncation after two really trained rounds."""
    env = iov_env.parallel_env(preset="tiny", fidelity="real", **REAL_SMALL)
    parallel_api_test(env, num_cycles=5)
    env.close()


@pytest.mark.parametrize("env_id", ["iov_env/IoVRank-tiny-fast-v1"])
@pytest.mark.parametrize("render_mode", ["rgb_array", "ansi"])
def test_gymnasium_check_env_with_render(env_id: str, render_mode: str) -> None:
    env = gym.make(env_id, render_mode=render_mode)
    try:
        check_env(env.unwrapped, skip_render_check=False)
    finally:
        env.close()


@pytest.mark.filterwarnings("ignore:Observation space for each agent probably should be")  # dict obs: by design
@pytest.mark.filterwarnings("ignore:Observation is not a NumPy array")
@pytest.mark.parametrize("obs_type", ["vector", "dict"])
def test_pettingzoo_aec_api(obs_type: str) -> None:
    env = iov_env.env(preset="tiny", obs_type=obs_type)
    api_test(env, num_cycles=60)
    env.close()


@pytest.mark.parametrize("obs_type", ["vector", "dict"])
def test_pettingzoo_parallel_api(obs_type: str) -> None:
    env = iov_env.parallel_env(preset="tiny", obs_type=obs_type)
    parallel_api_test(env, num_cycles=60)
    env.close()


@pytest.mark.parametrize("obs_type", ["vector", "dict"])
def test_pettingzoo_seed_test(obs_type: str) -> None:
    seed_test(lambda: iov_env.env(preset="tiny", obs_type=obs_type), num_cycles=40)


@pytest.mark.parametrize("obs_type", ["vector", "dict"])
def test_pettingzoo_parallel_seed_test(obs_type: str) -> None:
    parallel_seed_test(lambda: iov_env.parallel_env(preset="tiny", obs_type=obs_type), num_cycles=40)


def test_dict_observation_carries_the_mask() -> None:
    env = iov_env.parallel_env(preset="tiny", obs_type="dict")
    obs, infos = env.reset(seed=0)
    for a in env.agents:
        assert set(obs[a]) == {"observation", "action_mask"}
        assert obs[a]["action_mask"].dtype.name == "int8"
        assert (obs[a]["action_mask"] == infos[a]["action_mask"]).all()
        assert env.observation_space(a).contains(obs[a])
    env.close()


def test_gym_view_rejects_dict_observations() -> None:
    with pytest.raises(ValueError, match="obs_type"):
        gym.make("iov_env/IoVRank-tiny-fast-v1", obs_type="dict")


def test_render_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="render_mode"):
        iov_env.parallel_env(preset="tiny", render_mode="human")


def test_spaces_match_the_config() -> None:
    env = iov_env.parallel_env(preset="tiny", rank_set=(1, 4, 16))
    assert env.possible_agents == [f"vehicle_{i}" for i in range(6)]
    for a in env.possible_agents:
        assert env.action_space(a).n == 3
        assert env.observation_space(a).shape == (3 + 13,)
        assert env.observation_space(a) is env.observation_space(a)
    assert env.state_space.shape == (6 * 16,)
    env.reset(seed=0)
    assert env.state().shape == (6 * 16,) and env.state_space.contains(env.state())
    env.close()
