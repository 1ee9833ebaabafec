"""UCB-DUAL against a textbook UCB1 on stationary bandits, driven directly through the agent contract.

    iov study bandit                       # 7 arms, means 0.1..0.7, T = 2e4, 8 paired seeds
    iov study bandit --horizon 100000 --seeds 4

Both see the same reward draws on each seed (a (T, K) matrix drawn up front), so the regret ratio is
paired. Bernoulli rewards, and Gaussian rewards with sigma 0.1 (the reviewer's instance in issue 9).
UCB-DUAL runs without a cost (its price stays 0), once per reward normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.base import Agent
from agents.ucb_dual import NORMALIZATIONS, UCBDual
from benchmarks.errors import BenchmarkError

MEANS = np.linspace(0.1, 0.7, 7)


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


def pseudo_regret(actions: np.ndarray, means: np.ndarray) -> float:
    """Sum over rounds of the best mean minus the played arm's mean."""
    return float(np.sum(means.max() - means[actions]))


def compare(kind: str, normalization: str, horizon: int, seeds: Sequence[int], means: np.ndarray = MEANS
            ) -> tuple[float, float]:
    """(UCB-DUAL's total regret, UCB1's) over ``seeds``, paired by reward draws."""
    ours = ref = 0.0
    for seed in seeds:
        rewards = reward_matrix(kind, means, horizon, seed)
        agent = UCBDual(dual_source="local", normalization=normalization, num_actions=len(means),
                        reward_scale=1.0 if normalization == "fixed" else None)
        ours += pseudo_regret(agent_actions(agent, rewards, seed), means)
        ref += pseudo_regret(ucb1_actions(rewards), means)
    return ours, ref


def regret_table(horizon: int, num_seeds: int, command: str) -> str:
    """A markdown table of UCB-DUAL's and UCB1's pseudo-regret, per reward kind and normalisation, on paired seeds."""
    if horizon < len(MEANS) or num_seeds < 1:
        raise BenchmarkError(f"--horizon must be >= {len(MEANS)} and --seeds >= 1")
    seeds = list(range(num_seeds))
    lines = [f"`{command}`: 7 arms, means 0.1..0.7, T = {horizon}, seeds {seeds} (paired draws)\n",
             "| rewards | normalisation | UCB-DUAL regret | UCB1 regret | ratio |\n|---|---|---:|---:|---:|"]
    for kind in ("bernoulli", "gaussian"):
        for norm in NORMALIZATIONS:
            ours, ref = compare(kind, norm, horizon, seeds)
            lines.append(f"| {kind} | {norm} | {ours / len(seeds):.1f} | {ref / len(seeds):.1f} | {ours / ref:.2f} |")
    return "\n".join(lines)
