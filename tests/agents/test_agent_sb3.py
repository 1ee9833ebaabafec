"""SB3 adapters: a few hundred training steps per algorithm, then a full episode through the runner."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

from agents.runner import run_centralized, run_decentralized  # noqa: E402
from agents.sb3 import SB3Policy, train_centralized, train_decentralized  # noqa: E402

TINY = {"preset": "tiny"}
SMALL = {
    "PPO": {"n_steps": 40, "batch_size": 40, "n_epochs": 2},
    "A2C": {"n_steps": 20},
    "DQN": {"learning_starts": 60, "buffer_size": 1000},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _check_episode(out: dict) -> None:
    assert out["rounds"] == 20 and out["action_corrections"] == 0
    assert 0 < out["final_accuracy"] <= 1 and math.isfinite(out["cumulative_reward"])


@pytest.mark.parametrize("algo", ["PPO", "A2C", "DQN"])
def test_shared_parameter_training_then_episode(algo: str) -> None:
    """SuperSuit vector env over the 6 vehicles: training counts every vehicle's step; the policy then plays."""
    policy = train_decentralized(algo, TINY, total_timesteps=240, seed=0, **SMALL[algo])
    assert isinstance(policy, SB3Policy) and not policy.centralized
    assert policy.state()["num_timesteps"] >= 240
    out = run_decentralized(lambda: policy, TINY, seed=1)
    _check_episode(out)


@pytest.mark.parametrize("algo", ["PPO", "A2C"])
def test_centralized_training_then_episode(algo: str) -> None:
    """Joint MultiDiscrete policy on the Gymnasium view."""
    import gymnasium as gym

    policy = train_centralized(algo, TINY, total_timesteps=200, seed=0, **SMALL[algo])
    assert policy.centralized and policy.state()["num_timesteps"] >= 200
    env = gym.make("iov_env/IoVRank-tiny-fast-v0")
    try:
        out = run_centralized(policy, env, seed=1)
    finally:
        env.close()
    _check_episode(out)


def test_dqn_centralized_and_unknown_algo_are_refused() -> None:
    """Clear errors instead of SB3 tracebacks."""
    with pytest.raises(ValueError, match="Discrete"):
        train_centralized("DQN", TINY, total_timesteps=10)
    with pytest.raises(ValueError, match="allowed"):
        train_decentralized("SAC", TINY, total_timesteps=10)


def test_sb3_policy_respects_the_mask_and_shares_its_model() -> None:
    """A forbidden prediction moves down to the largest feasible rank; copies share one network."""
    import copy

    class Fixed:
        def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
            return (np.array([6, 6]) if obs.ndim > 1 or obs.size > 16 else np.array(6)), None

    pol = SB3Policy(Fixed())
    assert pol.act(np.zeros(16, np.float32), np.array([1, 1, 1, 0, 0, 0, 0], np.int8)) == 2
    assert copy.deepcopy(pol).model is pol.model
    central = SB3Policy(Fixed(), centralized=True)
    masks = np.array([[1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, 0]], np.int8)
    assert central.act(np.zeros(32, np.float32), masks).tolist() == [6, 0]
