"""Gymnasium centralised view: one controller picks every vehicle's rank (MultiDiscrete)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from iov_env.config import IoVConfig
from iov_env.envs.parallel import IoVParallelEnv


class IoVRankEnv(gym.Env):
    """Centralised control: observation = all vehicles' vectors, reward = sum of utilities, cost = total energy."""

    metadata = IoVParallelEnv.metadata

    def __init__(
        self, config: IoVConfig | dict[str, Any] | str | None = None, render_mode: str | None = None, **overrides: Any
    ) -> None:
        if "obs_type" in overrides and overrides["obs_type"] != "vector":
            raise ValueError("the centralised view has a flat vector observation; allowed obs_type: 'vector'")
        self.parallel = IoVParallelEnv(config, render_mode=render_mode, **overrides)
        self.config = self.parallel.config
        self.render_mode = render_mode
        n, r = self.config.num_vehicles, self.config.num_ranks
        self.action_space = spaces.MultiDiscrete(np.full(n, r, dtype=np.int64))
        self.observation_space = self.parallel.state_space
        self._agents = list(self.parallel.possible_agents)

    @property
    def simulator(self):  # noqa: ANN201 - re-exported for oracles and rendering
        """The underlying simulator."""
        return self.parallel.simulator

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """New episode; ``seed`` fixes everything."""
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(2**31 - 1))
        _, infos = self.parallel.reset(seed=seed, options=options)
        self.action_space.seed(int(self.np_random.integers(2**31 - 1)))
        return self.parallel.state(), self._info(infos, None)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One round with one rank index per vehicle."""
        arr = np.asarray(action)
        n = self.config.num_vehicles
        if arr.shape != (n,):
            raise ValueError(f"action has shape {arr.shape}; allowed: ({n},) rank indices, one per vehicle")
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"action has dtype {arr.dtype}; allowed: integer rank indices in [0, {self.config.num_ranks - 1}]")
        actions = dict(zip(self._agents, arr.tolist(), strict=True))
        _, rewards, _, truncs, infos = self.parallel.step(actions)
        m = self.parallel.last_round
        reward = float(sum(rewards.values()))
        return self.parallel.state(), reward, False, bool(truncs[self._agents[0]]), self._info(infos, m)

    def action_masks(self) -> np.ndarray:
        """sb3-contrib's masking convention for MultiDiscrete: N x |R| booleans, vehicle by vehicle, flattened.

        ``MaskablePPO`` finds it through ``gym.make``'s wrappers (``env.get_wrapper_attr("action_masks")``)
        and through SB3 vector envs (``env_method("action_masks")``). Row ``i`` is
        ``info["action_mask"][i]``: the ranks ``vehicle_i`` can execute in the coming round.
        """
        return self.parallel.action_masks().astype(bool).reshape(-1)

    def _info(self, infos: dict[str, dict], m: Any) -> dict[str, Any]:
        st = self.parallel.simulator.state
        out: dict[str, Any] = {"action_mask": st.mask.astype(np.int8), "agents": infos}
        if m is None:
            out.update(cost=0.0, budget=float(np.sum(st.budget_j)))
            return out
        out.update(
            cost=float(m.energy_j.sum()),
            budget=float(m.task_budget_j.sum()),
            rewards={k: float(v.sum()) for k, v in m.reward_terms.items()},
            task_accuracy=dict(zip(self.config.tasks.tasks, m.task_accuracy.tolist(), strict=True)),
            task_energy_j=m.task_energy_j.copy(),
            task_budget_j=m.task_budget_j.copy(),
            round_latency_s=float(m.task_latency_s.max(initial=0.0)),
            dual_price=m.dual_price.copy(),
        )
        return out

    def render(self) -> np.ndarray | str | None:
        """Same renderings as the parallel view."""
        return self.parallel.render()

    def close(self) -> None:
        """Release the learning backend."""
        self.parallel.close()
