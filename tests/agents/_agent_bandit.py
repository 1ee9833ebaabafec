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


def reward_matrix(kind: str, means: np.ndarray, horizon: int, seed: int, sigma: float = 0.1) -> np.ndarray:
    """(T, K) rewards of every arm at every round: Bernoulli(mean) or Normal(mean, sigma)."""
    rng = np.random.default_rng(seed)
    if kind == "bernoulli":
        return (rng.random((horizon, len(means))) < means).astype(float)
    if kind == "gaussian":
        return rng.normal(means, sigma, (horizon, len(means)))
    raise ValueError(f"kind={kind!r}; allowed: 'bernoulli' or 'gaussian'")


def ucb1_actions(rewards: np.ndarray) -> np.ndarray:
    """Textbook UCB1 (Auer et al. 2002) on a reward matrix: each arm once, then argmax mean + sqrt(2 ln t / n)."""
    horizon, k = rewards.shape
    counts, sums = np.zeros(k), np.zeros(k)
    actions = np.empty(horizon, dtype=np.int64)
    for t in range(horizon):
        a = t if t < k else int(np.argmax(sums / counts + np.sqrt(2.0 * np.log(t) / counts)))
        actions[t] = a
        counts[a] += 1
        sums[a] += rewards[t, a]
    return actions


def agent_actions(agent: Agent, rewards: np.ndarray, seed: int) -> np.ndarray:
    """Drive ``agent`` through a reward matrix with no cost (an unconstrained bandit)."""
    horizon, k = rewards.shape
    mask = np.ones(k, dtype=np.int8)
    info = {"budget": 1.0, "active": True, "task_index": 0}
    agent.reset(seed)
    actions = np.empty(horizon, dtype=np.int64)
    for t in range(horizon):
        a = agent.act(None, mask)
        actions[t] = a
        agent.update(a, rewards[t, a], 0.0, info)
    return actions
