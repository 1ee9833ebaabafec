"""A tiny stationary constrained bandit with known reward and cost means, for testing agents without the env."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.base import Agent


@dataclass
class BanditRun:
    """Actions and prices of one run."""

    actions: np.ndarray  # (T,) int
    lambdas: np.ndarray  # (T,) float: the agent's price after each round


def run_bandit(
    agent: Agent,
    reward_means: np.ndarray,
    cost_means: np.ndarray,
    budget: float,
    horizon: int,
    seed: int,
    reward_scale: float = 1.0,
    reward_shift: float = 0.0,
) -> BanditRun:
    """Play ``horizon`` rounds: reward = scale*(mean + U(-.1,.1)) + shift, cost = mean*(1 + U(-.2,.2))."""
    k = len(reward_means)
    rng = np.random.default_rng(seed)
    # noise drawn up front: the loop then costs only the agent's own work
    r_noise = rng.uniform(-0.1, 0.1, horizon)
    c_noise = rng.uniform(-0.2, 0.2, horizon)
    mask = np.ones(k, dtype=np.int8)
    info = {"budget": budget, "active": True, "task_index": 0}
    agent.reset(seed)
    actions = np.empty(horizon, dtype=np.int64)
    lambdas = np.empty(horizon)
    for t in range(horizon):
        a = agent.act(None, mask)
        actions[t] = a
        reward = reward_scale * (reward_means[a] + r_noise[t]) + reward_shift
        agent.update(a, reward, cost_means[a] * (1.0 + c_noise[t]), info)
        lambdas[t] = getattr(agent, "lam", 0.0)
    return BanditRun(actions, lambdas)


def lagrangian_regret(
    actions: np.ndarray, reward_means: np.ndarray, cost_means: np.ndarray, best: int, price: float
) -> np.ndarray:
    """Cumulative pseudo-regret of the Lagrangian mu - price*c against arm ``best`` (all gaps > 0 for a valid price)."""
    value = reward_means - price * cost_means
    gaps = value[best] - value
    return np.cumsum(gaps[actions])

