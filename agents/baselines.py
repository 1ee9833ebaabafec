"""The paper's baselines and reference policies, each declaring the env configuration it implies.

* ``FixedRank(r)``   one rank for the whole episode (rank sweep), FedAvg (ranks are homogeneous).
* ``HomoLoRA``       one rank for all vehicles, plain FedAvg of A and B (code: 33 on a 768-wide ViT; here the
                     middle of the rank set, 8).
* ``HetLoRA``        initial rank grows with the local data size (min 8, max 64 in the code), zero-padding
                     aggregation, local rank self-pruning with gamma = 0.99.
* ``FlexLoRA``       rank from the vehicle's compute capability (the largest its resources allow), SVD
                     redistribution of the aggregated update.
* ``FedRA``          a random subset of layers per vehicle each round (``layer_fraction`` < 1), fixed rank.
* ``RandomRank``     a uniformly random feasible rank each round.
* ``UCB1``           UCB-DUAL without the price (re-exported from ``agents.ucb_dual``).
* ``ucb_dual_tuned``  UCB-DUAL with the options ``iov study ucb-tuning`` chose on training seeds; ``ucb_dual``
                     stays the paper's rule.
* ``ucb_dual_deployed`` the deployed scheduler: per-task statistics kept across episodes, evaluated after a
                     warm-up on training seeds.
* ``BestFixed``      the hindsight-best fixed rank per task on the evaluation episode (``agents.oracle``; a
                     reference, fast fidelity only).
* ``Greedy``         reads the simulator's expected utility and energy of every rank for the coming round
                     and picks the best rank within the vehicle's energy budget: a myopic heuristic with
                     privileged information (fast fidelity only), not a bound. The bound is
                     ``agents.oracle.Oracle`` (registered as ``oracle``).

Every policy respects the action mask itself (largest feasible rank at or below its target), so the env's
correction never has to step in for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.base import (
    Agent,
    AgentContext,
    feasible_indices,
    largest_feasible_at_most,
    nearest_rank_index,
    require_fast_env,
)
from agents.oracle import BestFixed, Oracle
from agents.ucb_dual import UCB1, UCBDual, UCBDualDeployed, UCBDualTuned

__all__ = [
    "FixedRank",
    "HomoLoRA",
    "HetLoRA",
    "FlexLoRA",
    "FedRA",
    "RandomRank",
    "UCB1",
    "UCBDual",
    "UCBDualTuned",
    "UCBDualDeployed",
    "BestFixed",
    "Greedy",
    "Oracle",
    "make_agent",
    "AGENTS",
]


class FixedRank(Agent):
    """Always the same rank (the largest feasible one at or below it when the mask forbids it)."""

    name = "fixed"
    aggregation = "fedavg"

    def __init__(self, rank: int = 8) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank={rank!r}; allowed: a positive rank from the env's rank_set")
        self.rank = int(rank)
        self.name = f"fixed_r{self.rank}" if type(self) is FixedRank else self.name
        self._target = 0

    def bind(self, context: AgentContext) -> None:
        """Resolve the rank to an index of the env's rank set."""
        super().bind(context)
        if self.rank not in context.rank_set:
            raise ValueError(f"rank={self.rank} is not in the env's rank_set {context.rank_set}")
        self._target = context.rank_set.index(self.rank)

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """The fixed rank, or the largest feasible one below it."""
        return largest_feasible_at_most(self._target, action_mask, len(self.rank_set))

    def state(self) -> dict[str, Any]:
        """The configured rank."""
        return {"name": self.name, "rank": self.rank}


class HomoLoRA(FixedRank):
    """HomoLoRA: one rank for every vehicle, plain FedAvg."""

    name = "homolora"
    aggregation = "fedavg"

    def __init__(self, rank: int = 8) -> None:
        super().__init__(rank)


class FedRA(FixedRank):
    """FedRA: fixed rank, each vehicle adapts a random subset of layers every round."""

    name = "fedra"
    aggregation = "fedavg"

    def __init__(self, rank: int = 8, layer_fraction: float = 0.5) -> None:
        super().__init__(rank)
        if not 0.0 < layer_fraction <= 1.0:
            raise ValueError(f"layer_fraction={layer_fraction!r}; allowed: (0, 1]")
        self.layer_fraction = float(layer_fraction)
        # the env samples the layer subset (the simulator owns the model layout); the agent only asks for it
        self.env_overrides = {"layer_fraction": self.layer_fraction}


class HetLoRA(Agent):
    """HetLoRA: data-size-proportional initial rank, zero-padding aggregation, rank self-pruning.

    Self-pruning in HetLoRA drops the adapter's tail ranks once their contribution is small. Agents see
    no adapter weights here, so the trigger is a proxy: a round in which the vehicle's local accuracy did
    not improve by ``prune_tolerance`` (its adapter has stopped gaining from its current rank) shrinks the
    continuous rank by gamma; the executed rank is the largest rank of the set not above it. (The
    authors' code prunes int(r * (1 - gamma)) ranks, i.e. none at all for r < 100.)
    """

    name = "hetlora"
    aggregation = "zero_pad"

    def __init__(self, min_rank: int = 8, max_rank: int = 64, gamma: float = 0.99, prune_tolerance: float = 0.0) -> None:
        super().__init__()
        if not 0 < min_rank <= max_rank:
            raise ValueError(f"min_rank={min_rank}, max_rank={max_rank}; allowed: 0 < min_rank <= max_rank")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma={gamma!r}; allowed: (0, 1]")
        self.min_rank, self.max_rank, self.gamma = int(min_rank), int(max_rank), float(gamma)
        self.prune_tolerance = float(prune_tolerance)
        self.rank_cont: float | None = None
        self.last_acc: float | None = None
        self.prunes = 0

    def reset(self, seed: int | None = None) -> None:
        """Forget the rank: it is set from the data size at the first round."""
        super().reset(seed)
        self.rank_cont, self.last_acc, self.prunes = None, None, 0

    def initial_rank(self, observation: Any) -> float:
        """max_rank x (shard size / largest shard size), clipped to [min_rank, max_rank]."""
        frac = self.context.obs_field(observation, "data_size") if self.context else None
        f = float(frac[0]) if frac is not None and frac.size else 1.0
        return float(np.clip(self.max_rank * f, self.min_rank, self.max_rank))

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """The (pruned) data-size rank, or the largest feasible rank below it."""
        if self.rank_cont is None:
            self.rank_cont = self.initial_rank(observation)
        target = nearest_rank_index(self.rank_cont, self.rank_set)
        return largest_feasible_at_most(target, action_mask, len(self.rank_set))

    def update(self, action: Any, reward: float, cost: float, info: Mapping[str, Any]) -> None:
        """Prune by gamma after a round without local accuracy gain."""
        if not info.get("active", False) or self.rank_cont is None:
            return
        acc = float(info.get("accuracy", 0.0))
        if self.last_acc is not None and acc - self.last_acc <= self.prune_tolerance:
            self.rank_cont = max(self.gamma * self.rank_cont, float(self.rank_set[0]))
            self.prunes += 1
        self.last_acc = acc

    def state(self) -> dict[str, Any]:
        """Current continuous rank and pruning count."""
        return {"name": self.name, "rank_cont": self.rank_cont, "prunes": self.prunes}


class FlexLoRA(Agent):
    """FlexLoRA-style: each vehicle trains at the largest rank its compute capability allows; SVD aggregation.

    Capability c = CPU clock / the fleet's maximum clock (observation ``compute_capability``) maps
    linearly onto the rank set's indices: the fastest vehicles take the largest rank.
    """

    name = "flexlora"
    aggregation = "svd"

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """Capability-scaled rank, or the largest feasible rank below it."""
        k = len(self.rank_set)
        cap = self.context.obs_field(observation, "compute_capability") if self.context else None
        c = float(np.clip(cap[0], 0.0, 1.0)) if cap is not None and cap.size else 1.0
        target = int(np.floor(c * (k - 1) + 1e-9))
        return largest_feasible_at_most(target, action_mask, k)

    def state(self) -> dict[str, Any]:
        """No learned state."""
        return {"name": self.name}


class RandomRank(Agent):
    """A uniformly random feasible rank every round (heterogeneous ranks: SVD aggregation)."""

    name = "random"
    aggregation = "svd"

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """Uniform over the feasible ranks."""
        return int(self.rng.choice(feasible_indices(action_mask, len(self.rank_set))))


class Greedy(Agent):
    """Knows each rank's expected utility and energy for the coming round; best utility within the budget.

    Reads ``env.unwrapped.simulator.expected_outcomes()`` (fast fidelity only): information no deployable
    agent has, so it is a reference, not a competitor. Myopic: it ignores what a rank's samples are worth in
    later rounds and what the other vehicles of the task add this round, so it is not an upper bound (the
    ``oracle`` is). Budget = this round's per-vehicle share (observation ``budget_share`` x the reference
    budget; the info's ``budget`` describes the round just played); when no rank fits, the cheapest
    feasible one.
    """

    name = "greedy"
    aggregation = "svd"

    def __init__(self, respect_budget: bool = True) -> None:
        super().__init__()
        self.respect_budget = respect_budget
        self._cache_round: tuple[int, int, int] | None = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def bind(self, context: AgentContext) -> None:
        """Needs the env itself; refuses the real fidelity up front."""
        super().bind(context)
        require_fast_env(context, "Greedy")

    def _outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        env = self.context.env  # type: ignore[union-attr]
        sim = env.unwrapped.simulator
        key = (id(sim), int(sim.round_index), id(sim.state))
        if self._cache_round != key:  # one simulator query per round, not one per rank
            self._cache = sim.expected_outcomes()
            self._cache_round = key
        return self._cache  # type: ignore[return-value]

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> Any:
        """Best expected utility among feasible ranks whose expected energy fits the budget."""
        utility, energy = self._outcomes()
        i = self.context.index  # type: ignore[union-attr]
        budget = self._budget(observation, info) if self.respect_budget else np.inf
        u, e = utility[i], energy[i]
        feas = feasible_indices(action_mask, len(self.rank_set))
        if np.isfinite(budget):
            fits = feas[e[feas] <= budget]
            if fits.size == 0:
                return int(feas[np.argmin(e[feas])])
            feas = fits
        return int(feas[np.argmax(u[feas])])

    def _budget(self, observation: Any, info: Mapping[str, Any] | None) -> float:
        """This round's budget: the observation's budget share (current) before the info's (last round's)."""
        ctx = self.context
        share = ctx.obs_field(observation, "budget_share") if ctx is not None and observation is not None else None
        if share is not None and share.size and ctx.config is not None:  # type: ignore[union-attr]
            return float(share[0]) * ctx.config.energy.energy_budget_j_per_vehicle_round  # type: ignore[union-attr]
        return float(info.get("budget", np.inf)) if info else np.inf

    def state(self) -> dict[str, Any]:
        """No learned state."""
        return {"name": self.name, "respect_budget": self.respect_budget}


AGENTS: dict[str, type[Agent]] = {
    "ucb_dual": UCBDual,
    "ucb_dual_tuned": UCBDualTuned,
    "ucb_dual_deployed": UCBDualDeployed,
    "ucb1": UCB1,
    "homolora": HomoLoRA,
    "hetlora": HetLoRA,
    "flexlora": FlexLoRA,
    "fedra": FedRA,
    "random": RandomRank,
    "fixed": FixedRank,
    "greedy": Greedy,
    "best_fixed": BestFixed,
    "oracle": Oracle,
}
# privileged policies that read the simulator: listed as references, never ranked among the learners
REFERENCE_AGENTS = ("oracle", "best_fixed", "greedy", "random")


def make_agent(name: str, **kwargs: Any) -> Agent:
    """An agent by registry name (``AGENTS``) with constructor keywords."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; allowed: {sorted(AGENTS)}")
    return AGENTS[name](**kwargs)
