"""The agent contract every rank-selection policy implements (MABWiser-style: one contract, injected RNG).

One ``Agent`` instance decides for one vehicle (decentralized) unless it sets ``centralized = True``,
in which case it decides the whole fleet's ranks at once on the Gymnasium view. The runner drives it:

1. ``bind(context)`` once per environment: the rank set, the observation layout, the vehicle index and,
   only for oracles, the environment itself (agents must otherwise use only what the env API exposes);
2. ``reset(seed)`` at the start of every episode: forgets what was learned and re-seeds the Generator;
3. each round ``act(observation, action_mask, info=...)`` -> action index into ``rank_set``;
4. each round ``update(action, reward, cost, info)`` with the action the env *executed* (the runner maps
   ``info["rank"]`` back to its index, so an infeasible choice that the env corrected is credited to the
   arm that actually ran) and the vehicle's per-agent info dict.

``aggregation`` and ``env_overrides`` declare the env configuration a method implies (HetLoRA means
zero-padding aggregation, FedRA means a layer fraction below one); the runner applies them as defaults
under any explicit user overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iov_env.envs.parallel import largest_feasible_at_or_below
from iov_env.files import shorten


@dataclass
class AgentContext:
    """What an agent may know about the environment before the first round."""

    rank_set: tuple[int, ...]
    obs_layout: Mapping[str, slice] = field(default_factory=dict)  # name -> slice of the obs vector
    agent_id: str = "vehicle_0"
    index: int = 0  # vehicle index in 0..N-1
    num_agents: int = 1
    config: Any = None  # the env's IoVConfig (read-only facts such as rounds, shard sizes)
    env: Any = None  # the env itself: only privileged references (greedy, oracle) may look inside

    @property
    def num_actions(self) -> int:
        """Size of the action space (number of candidate ranks)."""
        return len(self.rank_set)

    def obs_field(self, observation: Any, name: str) -> np.ndarray | None:
        """The named slice of a (vector or dict) observation, or None when the layout lacks it."""
        sl = self.obs_layout.get(name)
        if sl is None:
            return None
        vec = observation["observation"] if isinstance(observation, Mapping) else observation
        return np.asarray(vec)[sl]


class Agent:
    """Base class: a rank-selection policy for one vehicle (or the whole fleet when ``centralized``)."""

    name: str = "agent"
    aggregation: str | None = None  # env aggregation the method implies; None: the env's default
    env_overrides: Mapping[str, Any] = {}  # further env config the method implies
    centralized: bool = False  # True: act() returns one action per vehicle on the Gymnasium view

    def __init__(self) -> None:
        self.context: AgentContext | None = None
        self.rng: np.random.Generator = np.random.default_rng(0)

    # -- lifecycle ------------------------------------------------------------------------------
    def bind(self, context: AgentContext) -> None:
        """Attach to an environment (called once, before ``reset``)."""
        self.context = context

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: re-seed the Generator and forget episode state."""
        self.rng = np.random.default_rng(seed)

    # -- decisions ------------------------------------------------------------------------------
    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> Any:
        """Pick an action index into ``rank_set`` among those with ``action_mask == 1`` (``None``: all allowed)."""
        raise NotImplementedError

    def update(self, action: Any, reward: float, cost: float, info: Mapping[str, Any]) -> None:
        """Learn from the executed action's reward and cost (no-op for non-learning policies)."""

    def state(self) -> dict[str, Any]:
        """Internals as plain data (counts, means, prices) for logging and tests."""
        return {"name": self.name}

    def save(self, path: Any) -> Any:
        """Write a checkpoint that ``agents.checkpoints.load_agent`` reads back (learned agents only)."""
        raise NotImplementedError(
            f"{type(self).__name__} keeps no trained parameters to save; checkpoints are for trained policies "
            "(agents.sb3.SB3Policy, agents.rllib.RLlibPolicy)"
        )

    def implied_env_overrides(self) -> dict[str, Any]:
        """The env configuration this method implies: aggregation plus ``env_overrides``."""
        out: dict[str, Any] = dict(self.env_overrides)
        if self.aggregation is not None:
            out["aggregation"] = self.aggregation
        return out

    # -- helpers for subclasses -----------------------------------------------------------------
    @property
    def rank_set(self) -> tuple[int, ...]:
        """Candidate ranks (requires ``bind``)."""
        if self.context is None:
            raise RuntimeError(f"{type(self).__name__}: call bind(context) before using the agent")
        return self.context.rank_set


def require_fast_env(context: AgentContext, who: str) -> None:
    """For privileged references that read the simulator: the env must be given and run the fast surrogate."""
    if context.env is None:
        raise ValueError(f"{who} needs the env in its AgentContext (it reads the simulator)")
    cfg = context.config
    if cfg is not None and cfg.learning.fidelity != "fast":
        raise ValueError(f"{who} needs fidelity='fast' (it reads the surrogate's expectations); got {cfg.learning.fidelity!r}")


def feasible_indices(action_mask: np.ndarray | None, num_actions: int) -> np.ndarray:
    """Indices allowed by the mask; ValueError for a mask of the wrong length or type, or one that allows none.

    ``action_mask=None`` means every action is allowed: an agent used as a plain bandit, outside the
    env, has no feasibility to respect (the env itself always passes its mask). A mask must hold one
    0/1 (or boolean) entry per action: a shorter one used to be read as "the rest are forbidden" and a
    longer one was cut, so a mask built for another rank set steered the agent silently.
    The env always leaves at least the smallest rank feasible (also for inactive vehicles), so an all-zero
    mask means the caller built it wrongly; returning some index anyway would hide that.
    """
    if action_mask is None:
        return np.arange(num_actions)
    mask = np.asarray(action_mask)
    if mask.ndim != 1 or mask.shape[0] != num_actions:
        raise ValueError(
            f"action_mask has shape {mask.shape}; allowed: one entry per action, shape ({num_actions},)"
        )
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not np.all((mask == 0) | (mask == 1)):
            raise ValueError(
                f"action_mask {shorten(str(mask.tolist()))} (dtype {mask.dtype}); allowed: booleans or the numbers 0 and 1"
            )
    idx = np.flatnonzero(mask)
    if not idx.size:
        raise ValueError(
            f"action_mask {mask.tolist()} allows no action; allowed: at least one of the "
            f"{num_actions} entries set (the env always leaves the smallest rank feasible)"
        )
    return idx


def largest_feasible_at_most(target: int, action_mask: np.ndarray | None, num_actions: int) -> int:
    """The largest feasible index <= target, else the smallest feasible one: the env's own correction rule."""
    mask = np.zeros((1, num_actions), dtype=bool)
    mask[0, feasible_indices(action_mask, num_actions)] = True
    return int(largest_feasible_at_or_below(mask, np.array([target]))[0])


def nearest_rank_index(rank: float, rank_set: tuple[int, ...]) -> int:
    """Index of the largest rank in ``rank_set`` not above ``rank`` (the smallest rank if all are above)."""
    arr = np.asarray(rank_set)
    below = np.flatnonzero(arr <= rank + 1e-9)
    return int(below[-1]) if below.size else 0
