"""Stable-Baselines3 adapters: train PPO / A2C / DQN on iov-env and use the result as an ``Agent``.

Two ways to learn:

* **centralized** (``train_centralized``): one policy on the Gymnasium view, MultiDiscrete([|R|] * N)
  actions, flat joint observation, summed utility. PPO and A2C only: DQN needs a Discrete action space.
* **decentralized, shared parameters** (``train_decentralized``): SuperSuit turns the PettingZoo env into
  a vector env with one slot per vehicle, so one policy learns from every vehicle's experience and each
  vehicle acts on its own observation. PPO, A2C and DQN.

Rewards are O(100) (gamma * accuracy in percent); ``normalize_reward=True`` (default) wraps the training
env in ``VecNormalize(norm_obs=False)`` so value targets stay O(1). Observations are already bounded.
The learned policies ignore masks during training (the env corrects infeasible ranks and says so); the
``SB3Policy`` agent applies the mask at decision time, like every other agent here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.base import Agent, largest_feasible_at_most

ALGOS = ("PPO", "A2C", "DQN")


def _algo_class(algo: str) -> Any:
    """The SB3 class for a name (imported lazily: torch is heavy)."""
    import stable_baselines3 as sb3

    name = algo.upper()
    if name not in ALGOS:
        raise ValueError(f"algo={algo!r}; allowed: {ALGOS}")
    return getattr(sb3, name)


class SB3Policy(Agent):
    """A trained SB3 model as an Agent: shared per-vehicle policy, or one centralized joint policy."""

    name = "sb3"

    def __init__(self, model: Any, centralized: bool = False, deterministic: bool = True, label: str = "") -> None:
        super().__init__()
        self.model = model
        self.centralized = centralized
        self.deterministic = deterministic
        self.name = label or f"{type(model).__name__.lower()}_{'central' if centralized else 'shared'}"

    def __deepcopy__(self, memo: dict[int, Any]) -> SB3Policy:
        # per-vehicle copies share the trained network (parameter sharing); only the context differs
        clone = SB3Policy(self.model, self.centralized, self.deterministic, self.name)
        clone.aggregation, clone.env_overrides = self.aggregation, dict(self.env_overrides)
        return clone

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> Any:
        """The policy's rank (or ranks), moved down to the largest feasible one where the mask forbids it."""
        obs = observation["observation"] if isinstance(observation, Mapping) else observation
        action, _ = self.model.predict(np.asarray(obs, dtype=np.float32), deterministic=self.deterministic)
        if not self.centralized:
            k = int(np.asarray(action_mask).shape[-1])
            return largest_feasible_at_most(int(np.asarray(action).reshape(-1)[0]), action_mask, k)
        masks = np.asarray(action_mask)
        k = masks.shape[1]
        return np.array([largest_feasible_at_most(int(a), masks[i], k) for i, a in enumerate(np.asarray(action))])

    def state(self) -> dict[str, Any]:
        """Which model, how it decides."""
        return {"name": self.name, "algo": type(self.model).__name__, "centralized": self.centralized,
                "num_timesteps": int(getattr(self.model, "num_timesteps", 0))}


def _seedable_supersuit_vec(parallel_env: Any) -> Any:
    """SuperSuit's SB3 vector env with a working ``seed()`` (ConcatVecEnv lacks one SB3 2.x calls)."""
    import supersuit as ss
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    class SeededSB3VecEnv(SB3VecEnvWrapper):
        """Stores the seed SB3 hands over and applies it on the next reset."""

        _pending_seed: int | None = None

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._pending_seed = seed
            return [seed] * self.num_envs

        def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray:
            s = seed if seed is not None else self._pending_seed
            self._pending_seed = None
            observations, self.reset_infos = self.venv.reset(seed=s)
            return observations

    markov = ss.pettingzoo_env_to_vec_env_v1(parallel_env)
    concat = ss.concat_vec_envs_v1(markov, 1, num_cpus=0, base_class="gymnasium")
    return SeededSB3VecEnv(concat)


def _maybe_normalize(vec: Any, normalize_reward: bool) -> Any:
    if not normalize_reward:
        return vec
    from stable_baselines3.common.vec_env import VecNormalize

    return VecNormalize(vec, norm_obs=False, norm_reward=True)


def train_decentralized(
    algo: str = "PPO",
    env_kwargs: Mapping[str, Any] | None = None,
    total_timesteps: int = 10_000,
    seed: int = 0,
    normalize_reward: bool = True,
    **algo_kwargs: Any,
) -> SB3Policy:
    """Train one shared policy over all vehicles of the PettingZoo env (SuperSuit); returns the Agent."""
    import iov_env

    cls = _algo_class(algo)
    env = iov_env.parallel_env(**dict(env_kwargs or {"preset": "tiny"}))
    vec = _maybe_normalize(_seedable_supersuit_vec(env), normalize_reward)
    model = cls("MlpPolicy", vec, seed=seed, verbose=0, **algo_kwargs)
    model.learn(total_timesteps=total_timesteps)
    vec.close()
    return SB3Policy(model, centralized=False, label=f"{algo.lower()}_shared")


def train_centralized(
    algo: str = "PPO",
    env_kwargs: Mapping[str, Any] | None = None,
    total_timesteps: int = 10_000,
    seed: int = 0,
    normalize_reward: bool = True,
    **algo_kwargs: Any,
) -> SB3Policy:
    """Train one joint policy on the Gymnasium centralized view (PPO/A2C); returns the Agent."""
    if algo.upper() == "DQN":
        raise ValueError(
            "DQN needs a Discrete action space; the centralized view is MultiDiscrete([|R|] * N). "
            "Use train_decentralized('DQN', ...) (shared parameters, Discrete(|R|) per vehicle)."
        )
    from stable_baselines3.common.vec_env import DummyVecEnv

    from iov_env.envs.single import IoVRankEnv

    cls = _algo_class(algo)
    kwargs = dict(env_kwargs or {"preset": "tiny"})
    vec = _maybe_normalize(DummyVecEnv([lambda: IoVRankEnv(**kwargs)]), normalize_reward)
    model = cls("MlpPolicy", vec, seed=seed, verbose=0, **algo_kwargs)
    model.learn(total_timesteps=total_timesteps)
    vec.close()
    return SB3Policy(model, centralized=True, label=f"{algo.lower()}_central")
