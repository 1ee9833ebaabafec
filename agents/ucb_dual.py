"""UCB-DUAL, the reference agent: a primal-dual UCB bandit over LoRA ranks (docs/method.md, "UCB-DUAL").

Per vehicle, arms are the candidate ranks. After a round played at arm r the agent updates n(r), the
mean reward g(r) and the mean cost e(r), and next picks, among the ranks the env marks feasible,

    U(r) = g~(r) - lambda_k * e~(r) + c * sqrt(2 ln t / n(r)),     unplayed feasible arms first,

where lambda_k is the dual price of the vehicle's task k and t the number of rounds played so far.

Choices made, and why:

* **Normalised reward** g~ = (g - lo) / span. The env's reward is gamma*q - alpha*tau with q in
  percent, i.e. O(100); a bonus of order sqrt(ln t / n) next to that would never explore (the
  authors' code has exactly this flaw; docs/method.md says why not to copy it). The scale must be learned
  from the rewards themselves (the agent does not know the env's weights), and it must not be set by
  single extreme samples: with Gaussian rewards the running min/max keeps widening like
  sigma*sqrt(2 ln n), the bonus grows with it, and regret was 1.4x a textbook UCB1 at T = 2e4.
  Default ``normalization="robust"``: span = max_a(mean_a + 2 sd_a) - min_a(mean_a - 2 sd_a), each
  end capped by the observed extremes. For rewards in {0, 1} (Bernoulli) that is exactly [0, 1], as
  in UCB1; for Gaussian rewards it is the arms' 95% band, not their record values; for env-sized
  rewards it scales with them, so decisions do not depend on the reward's units.
  ``normalization="minmax"`` keeps the running extremes (the former default);
  ``normalization="fixed"`` divides by ``reward_scale`` (e.g. gamma*100 = 180).
* **Normalised cost** e~ = cost / budget of the round it was spent in, so a price lambda is
  dimensionless, "reward range per budget", and budgets that the cloud re-allocates between rounds
  (tri-feedback) do not corrupt the means. With ``resource="rank"`` (the authors' code variant) the
  cost is the executed rank and the budget ``rank_budget``.
* **Dual price.** ``dual_source="rsu"`` (default with ``resource="energy"``) reads lambda_k from
  ``info["dual_price"]``: the env's RSU updates it by projected subgradient
  lambda <- max(0, lambda + mu (E_used - E_budget)/E_budget) from the task's actual spending, which is
  the paper's placement of the dual (one price per task, shared by its vehicles). ``dual_source=
  "local"`` runs the same update inside the agent from ``info["task_energy_used_j"]`` /
  ``info["task_budget_j"]`` (falling back to the vehicle's own ``cost`` / ``budget``), for use
  outside this env or with ``resource="rank"`` (the env prices energy, not rank, so rank pricing is
  always local). mu = ``dual_step_size`` = 0.01 (the paper's, docs/method.md) for the local update; with the RSU's price
  the step in use is the env's ``energy.dual_step_size``, and ``state()["dual_step_size"]`` reports
  that one. When ``dual_source="rsu"`` but the info has no ``dual_price`` the agent falls back to local
  and says so in ``state()["dual_source_effective"]``.
* **Inputs are checked.** ``update()`` refuses a non-finite reward, cost, budget or price and an action
  outside ``0..K-1`` with a ``ValueError`` naming the value (a NaN would otherwise poison the means,
  and a negative index would silently credit the last arm); ``act()`` refuses an action mask with no
  feasible rank (the env always leaves one; nothing sensible can be returned otherwise).
* **Exploration constant** c = 1.0: UCB1's constant for rewards in [0, 1].
* **Decision period** 1 (a fresh choice every round). The authors' code re-decides every 3 rounds;
  with 7 ranks and 20-40-round episodes that spends most of an episode on the initial sweep, so we
  re-decide every round and keep ``decision_period=3`` as the code's variant. Statistics and the local
  dual update happen every round either way (each round is a sample).
* **Unplayed arms in random order** (the injected Generator), not ascending: federated accuracy rises
  over rounds, so sweeping ranks small-to-large would systematically credit large ranks with the
  later, higher accuracies. Ties in U are broken at random too.
* **Dual divergence is reported, not hidden.** No cap on lambda by default (``lambda_max=None``). When
  lambda * (cheapest mean normalised cost) exceeds the whole normalised reward range while spending
  still exceeds the budget, no further rise of the price can change a decision: the budget is
  infeasible and ``state()["dual_diverged"]`` turns True (with the violation streak that led to it).
* ``discount`` < 1 gives discounted UCB (Garivier & Moulines) for non-stationary rewards; the default
  1.0 is the paper's stationary rule.

``UCB1`` (``use_dual=False``) is the ablation: the same index without the price.

Options beyond the paper's rule (all off by default, so ``UCBDual()`` is the paper's agent; the tuned and
deployed presets in ``agents.baselines`` switch them on):

* ``counts="sleeping"``: the bonus of rank r uses t_r = the rounds in which the mask allowed r (sleeping
  bandits, Kleinberg, Niculescu-Mizil & Sharma 2010) instead of t = all rounds. With t = all rounds a rank
  the mask rarely allows keeps a large bonus exactly because it is rarely allowed, so it is over-played
  whenever it is (rank 64 at 7.1% of the rounds against random's 2.1% in ``paper-v1``).
* ``sweep="price"``: unplayed ranks are tried cheapest first (smallest rank first: a round's energy grows
  with the rank, payload and compute both being linear in r), and an unplayed rank is skipped while even
  its most optimistic priced index, the top of the reward band plus the bonus of one pull minus the price
  times the largest mean cost seen at a smaller rank, cannot beat the best played rank. The paper's sweep
  forces every rank once whatever the price: the first 7 rounds of ``paper-tight-v1`` spent 1.57x the budget.
  ``sweep="skip"`` applies the same test but tries the remaining unplayed ranks in random order: accuracy rises
  within an episode, and the ascending order credits the large ranks with the later, higher accuracies.
* ``dual_source="local"`` with ``dual_step_size`` mu: the agent runs the RSU's own update on the task's
  spending (``info["task_energy_used_j"]`` / ``info["task_budget_j"]``) with its own step, so a step size can
  be tuned per agent without changing the env every agent is compared in. The task's spending is reported to
  every vehicle of the task, so an inactive vehicle steps its price too.
* ``persist=True`` (the deployed scheduler): the statistics live in a ``TaskMemory``, one table of arm
  statistics per task, which ``reset()`` does not clear. Agents handed the same ``memory`` pool their task's
  statistics, as a roadside unit would: a vehicle's task changes from one episode to the next (``paper`` assigns
  tasks by home RSU), so what can be kept across episodes is what a rank is worth *for a task*, not for a
  vehicle slot. The local price of a task is carried over too (the last value any vehicle of the task left).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.base import Agent, AgentContext, feasible_indices

_EPS = 1e-12
NORMALIZATIONS = ("robust", "minmax", "fixed")
# info entries the agent reads as numbers: each must be finite and non-negative
_INFO_NUMBERS = ("budget", "dual_price", "task_energy_used_j", "task_budget_j")
ROBUST_SPREAD_SD = 2.0  # half-width of each arm's reward band, in standard deviations


COUNTS = ("all", "sleeping")
REWARD_SIGNALS = ("reward", "improvement", "detrended")
SWEEPS = ("random", "price", "skip")


class ArmStats:
    """One table of arm statistics: pulls, reward sums and squares, normalised-cost sums, availability, t, extremes."""

    def __init__(self, num_actions: int) -> None:
        k = int(num_actions)
        self.counts = np.zeros(k)
        self.reward_sums = np.zeros(k)
        self.reward_sq_sums = np.zeros(k)
        self.cost_sums = np.zeros(k)  # sums of cost / budget
        self.available = np.zeros(k)  # rounds each arm was allowed by the mask (sleeping counts)
        self.t = 0.0  # rounds played (discounted when discount < 1)
        self.r_min = math.inf
        self.r_max = -math.inf

    def discount(self, gamma: float) -> None:
        """Shrink every count and sum by ``gamma`` (discounted UCB); the extremes are records and stay."""
        for arr in (self.counts, self.reward_sums, self.reward_sq_sums, self.cost_sums, self.available):
            arr *= gamma
        self.t *= gamma


class TaskMemory:
    """Arm statistics and local prices per task: what a roadside unit running for weeks keeps between episodes.

    Shared by reference: every agent given the same memory reads and writes the same per-task tables, so the
    vehicles of a task pool their observations (``UCBDual(persist=True, memory=...)``).
    """

    def __init__(self, num_actions: int) -> None:
        if num_actions < 1:
            raise ValueError(f"TaskMemory: num_actions={num_actions!r}; allowed: >= 1")
        self.num_actions = int(num_actions)
        self.tasks: dict[int, ArmStats] = {}
        self.prices: dict[int, float] = {}

    def stats(self, task: int) -> ArmStats:
        """The task's table (created empty on first use)."""
        table = self.tasks.get(task)
        if table is None:
            table = self.tasks[task] = ArmStats(self.num_actions)
        return table

    def copy(self) -> TaskMemory:
        """An independent copy (each evaluation episode starts from the same warmed-up memory)."""
        return copy.deepcopy(self)

    def summary(self) -> dict[str, Any]:
        """Per task: pulls per arm and the carried price, as plain data."""
        return {int(k): {"counts": v.counts.tolist(), "price": self.prices.get(k)} for k, v in sorted(self.tasks.items())}


class UCBDual(Agent):
    """Primal-dual UCB over ranks: normalised reward UCB minus the task's dual price times normalised cost."""

    name = "ucb_dual"
    aggregation = "svd"  # the paper's aggregation: weighted sum of B_v A_v, SVD-truncated per rank

    def __init__(
        self,
        exploration: float = 1.0,
        dual_step_size: float = 0.01,
        decision_period: int = 1,
        dual_source: str = "rsu",
        resource: str = "energy",
        rank_budget: float | None = None,
        normalization: str = "robust",
        reward_scale: float | None = None,
        use_dual: bool = True,
        lambda_init: float = 0.0,
        lambda_max: float | None = None,
        discount: float = 1.0,
        divergence_patience: int = 5,
        reward_signal: str = "reward",
        num_actions: int | None = None,
        counts: str = "all",
        sweep: str = "random",
        persist: bool = False,
        memory: TaskMemory | None = None,
    ) -> None:
        super().__init__()
        if exploration < 0:
            raise ValueError(f"exploration={exploration!r}; allowed: >= 0")
        if dual_step_size < 0:
            raise ValueError(f"dual_step_size={dual_step_size!r}; allowed: >= 0")
        if decision_period < 1:
            raise ValueError(f"decision_period={decision_period!r}; allowed: integer >= 1")
        if dual_source not in ("rsu", "local"):
            raise ValueError(f"dual_source={dual_source!r}; allowed: 'rsu' or 'local'")
        if resource not in ("energy", "rank"):
            raise ValueError(f"resource={resource!r}; allowed: 'energy' or 'rank'")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={normalization!r}; allowed: {', '.join(map(repr, NORMALIZATIONS))}")
        if normalization == "fixed" and not (reward_scale and reward_scale > 0):
            raise ValueError("normalization='fixed' needs reward_scale > 0 (e.g. accuracy_weight * 100)")
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount={discount!r}; allowed: 0 < discount <= 1")
        if reward_signal not in REWARD_SIGNALS:
            raise ValueError(f"reward_signal={reward_signal!r}; allowed: {', '.join(map(repr, REWARD_SIGNALS))}")
        if rank_budget is not None and rank_budget <= 0:
            raise ValueError(f"rank_budget={rank_budget!r}; allowed: > 0")
        if counts not in COUNTS:
            raise ValueError(f"counts={counts!r}; allowed: {', '.join(map(repr, COUNTS))}")
        if sweep not in SWEEPS:
            raise ValueError(f"sweep={sweep!r}; allowed: {', '.join(map(repr, SWEEPS))}")
        if memory is not None and not persist:
            raise ValueError("memory= is the deployed scheduler's table; allowed only with persist=True")
        if memory is not None and num_actions is not None and memory.num_actions != num_actions:
            raise ValueError(f"memory has {memory.num_actions} arms, num_actions={num_actions}; allowed: the same")
        self.exploration = float(exploration)
        self.dual_step_size = float(dual_step_size)
        self.decision_period = int(decision_period)
        # the env's RSU prices energy; a rank price can only be kept by the agent itself
        self.dual_source = "local" if resource == "rank" else dual_source
        self.resource = resource
        self.rank_budget = rank_budget
        self.normalization = normalization
        self.reward_scale = reward_scale
        self.use_dual = use_dual
        self.lambda_init = float(lambda_init)
        self.lambda_max = lambda_max
        self.discount = float(discount)
        self.divergence_patience = int(divergence_patience)
        self.reward_signal = reward_signal
        self.counts_mode = counts
        self.sweep = sweep
        self.persist = bool(persist)
        self._num_actions = num_actions or (memory.num_actions if memory is not None else None)
        self.memory = memory
        self.memory_shared = memory is not None  # handed in (an RSU's table), not this agent's own
        self._alloc(self._num_actions or 1)

    # -- lifecycle ------------------------------------------------------------------------------
    def bind(self, context: AgentContext) -> None:
        """Attach to an env: the arm count comes from its rank set."""
        super().bind(context)
        if self.memory_shared and self.memory.num_actions != context.num_actions:  # type: ignore[union-attr]
            raise ValueError(f"memory has {self.memory.num_actions} arms, the env's rank set {context.num_actions}; "
                             "allowed: a memory built for this rank set")
        self._num_actions = context.num_actions
        if self.resource == "rank" and self.rank_budget is None:
            # the authors' code prices rank against a budget in rank units; default: the median rank
            self.rank_budget = float(np.median(context.rank_set))

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: re-seed the tie-breaking Generator; forget statistics and prices unless ``persist``."""
        super().reset(seed)
        if self._num_actions is None:
            raise RuntimeError("UCBDual: bind(context) or pass num_actions= before reset()")
        self._alloc(self._num_actions)

    def _alloc(self, k: int) -> None:
        # the paper's agent forgets everything at reset (a fresh private table); a persistent one keeps its memory,
        # created here once or handed in to be shared
        if not (self.persist and self.memory is not None and self.memory.num_actions == k):
            self.memory = TaskMemory(k)
        self.lambdas: dict[int, float] = {}
        self.task = 0
        self.held: int | None = None
        self.hold_left = 0
        self.violation_streak = 0
        self.dual_updates = 0
        self.lambda_peak = self.lambda_init
        self.dual_source_effective = self.dual_source
        self.last_index: np.ndarray | None = None
        self.last_accuracy_term: float | None = None
        self.last_feasible: np.ndarray | None = None
        self.accuracy_weight: float | None = None

    # -- the statistics of the vehicle's task (one private table unless ``persist``) ----------------
    @property
    def stats(self) -> ArmStats:
        """The arm statistics the index reads: the current task's table in ``memory``."""
        return self.memory.stats(self.task)  # type: ignore[union-attr]

    @property
    def counts(self) -> np.ndarray:
        """Pulls per arm (discounted when ``discount`` < 1)."""
        return self.stats.counts

    @property
    def reward_sums(self) -> np.ndarray:
        """Sum of rewards per arm."""
        return self.stats.reward_sums

    @property
    def reward_sq_sums(self) -> np.ndarray:
        """Sum of squared rewards per arm."""
        return self.stats.reward_sq_sums

    @property
    def cost_sums(self) -> np.ndarray:
        """Sum of normalised costs (cost / budget) per arm."""
        return self.stats.cost_sums

    @property
    def t(self) -> float:
        """Rounds played, all arms together."""
        return self.stats.t

    @property
    def r_min(self) -> float:
        """Smallest reward seen."""
        return self.stats.r_min

    @property
    def r_max(self) -> float:
        """Largest reward seen."""
        return self.stats.r_max

    # -- decisions ------------------------------------------------------------------------------
    @property
    def lam(self) -> float:
        """The dual price of the vehicle's current task (a deployed agent starts from the price its task was left at)."""
        if self.task in self.lambdas:
            return self.lambdas[self.task]
        if self.persist and self.memory is not None:
            return self.memory.prices.get(self.task, self.lambda_init)
        return self.lambda_init

    def indices(self) -> np.ndarray:
        """U(r) for every arm (inf for unplayed arms)."""
        n = self.counts
        played = n > _EPS
        means = np.divide(self.reward_sums, n, out=np.zeros_like(n), where=played)
        if self.normalization == "fixed":
            g = means / float(self.reward_scale)
        else:
            lo, hi = self.reward_band()
            span = hi - lo
            g = (means - lo) / span if span > _EPS else np.full_like(means, 0.5)
        u = g.copy()
        if self.use_dual:
            costs = np.divide(self.cost_sums, n, out=np.zeros_like(n), where=played)
            u -= self.lam * costs
        u += self.bonus(n)
        u[~played] = np.inf
        return u

    def bonus(self, pulls: np.ndarray | float) -> np.ndarray:
        """c sqrt(2 ln t / n) per arm at ``pulls`` (n = 1 for unplayed arms); t per arm with sleeping counts."""
        n = np.maximum(np.broadcast_to(np.asarray(pulls, dtype=float), self.counts.shape), 0.0)
        if self.exploration <= 0:
            return np.zeros_like(n)
        t = self.stats.available if self.counts_mode == "sleeping" else np.full_like(n, self.t)
        log_t = np.log(np.maximum(t, 1.0))
        return self.exploration * np.sqrt(2.0 * log_t / np.where(n > _EPS, n, 1.0))

    def sweep_candidates(self, feas: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The unplayed feasible arms to try now, in order; the price-aware sweep drops those that cannot win.

        Random sweep (the paper's): every unplayed feasible arm, tried before any played one. Price sweep: an
        unplayed arm r stays a candidate only while its most optimistic priced index, 1 (the top of the
        normalised reward band) + the bonus of one pull - lambda * (the largest mean normalised cost seen at
        a smaller rank: energy does not fall with rank), reaches the best played feasible arm's index; the
        candidates are returned cheapest (smallest rank) first. Skip sweep: the same test, the candidates tried in
        random order (the ascending order credits large ranks with the later, higher accuracies).
        """
        unplayed = feas[np.isinf(u[feas])]
        if self.sweep == "random" or not unplayed.size:
            return unplayed
        played = feas[~np.isinf(u[feas])]
        if not played.size:
            # nothing to beat yet: the cheapest rank first (price), any unplayed rank (skip)
            return unplayed[:1] if self.sweep == "price" else unplayed
        n = self.counts
        seen = n > _EPS
        means = np.divide(self.cost_sums, n, out=np.zeros_like(n), where=seen)
        best = float(u[played].max())
        one_pull = self.bonus(np.ones_like(n))
        keep = []
        for r in unplayed:
            below = seen[:r]
            cost_lb = float(means[:r][below].max()) if below.any() else 0.0
            optimistic = 1.0 + float(one_pull[r]) - (self.lam * cost_lb if self.use_dual else 0.0)
            if optimistic >= best:
                keep.append(int(r))
        return np.asarray(keep[:1] if self.sweep == "price" else keep, dtype=int)

    def reward_band(self) -> tuple[float, float]:
        """(lo, hi) of the rewards that set the normalisation scale (see ``normalization``)."""
        if self.normalization != "robust":
            return self.r_min, self.r_max
        played = self.counts > _EPS
        if not played.any():
            return self.r_min, self.r_max
        n = self.counts[played]
        mean = self.reward_sums[played] / n
        sd = np.sqrt(np.maximum(self.reward_sq_sums[played] / n - mean**2, 0.0))
        lo = max(self.r_min, float(np.min(mean - ROBUST_SPREAD_SD * sd)))
        hi = min(self.r_max, float(np.max(mean + ROBUST_SPREAD_SD * sd)))
        return lo, hi

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """The feasible arm with the largest index; random among unplayed arms and among ties."""
        if info:
            self._read_task_and_price(info, count_violation=False)
        k = len(self.counts)
        feas = feasible_indices(action_mask, k)
        if self.held is not None and self.hold_left > 0 and self.held in feas:
            self.hold_left -= 1
            return self.held
        self.last_feasible = feas
        u = self.indices()
        self.last_index = u
        sweep = self.sweep_candidates(feas, u)
        if sweep.size:
            ties = sweep
        else:
            played = feas[~np.isinf(u[feas])]
            uf = u[played]
            best = uf.max()
            ties = played[uf >= best - 1e-12 * max(1.0, abs(best))]
        choice = int(ties[0] if ties.size == 1 else self.rng.choice(ties))
        self.held, self.hold_left = choice, self.decision_period - 1
        return choice

    def update(self, action: Any, reward: float, cost: float, info: Mapping[str, Any]) -> None:
        """Credit the executed arm with its reward and normalised cost; move the dual price."""
        info = info or {}
        a = self._check_update(action, reward, cost, info)  # before any state changes
        self._read_task_and_price(info, count_violation=True)
        if not info.get("active", True):
            # the env ignored the action: nothing was learned about any arm; the task's spending is still news
            if (self.use_dual and self.dual_source_effective == "local" and self.resource == "energy"
                    and "task_energy_used_j" in info and "task_budget_j" in info):
                self._dual_step(float(info["task_energy_used_j"]), float(info["task_budget_j"]))
            return
        if self.resource == "rank":
            rank = info.get("rank")
            spent = float(rank if rank is not None else self.rank_set[a])
            budget = float(self.rank_budget)  # type: ignore[arg-type]
        else:
            spent = float(cost)
            budget = float(info.get("budget", 0.0) or 0.0)
            if budget <= 0:
                budget = 1.0  # no budget known: treat cost as already normalised (pure bandit use)
        r: float | None = float(reward)
        if self.reward_signal == "improvement":
            terms = info.get("rewards") or {}
            acc_term = float(terms.get("accuracy", reward))
            previous, self.last_accuracy_term = self.last_accuracy_term, acc_term
            # the round's accuracy gain plus its latency/energy terms; nothing to difference on the first
            # active round, so that arm stays unplayed and is tried again
            r = None if previous is None else r - previous
        elif self.reward_signal == "detrended":
            r = self._detrended(float(reward), info)
        if r is not None:
            st = self.stats
            if self.discount < 1.0:
                st.discount(self.discount)
            st.counts[a] += 1.0
            st.reward_sums[a] += r
            st.reward_sq_sums[a] += r * r
            st.cost_sums[a] += spent / budget
            st.t += 1.0
            # sleeping counts: the arms this round's mask allowed (all of them when act() saw no mask)
            if self.last_feasible is not None:
                st.available[self.last_feasible] += 1.0
            else:
                st.available += 1.0
            st.r_min = min(st.r_min, r)
            st.r_max = max(st.r_max, r)
        if self.use_dual and self.dual_source_effective == "local":
            if self.resource == "rank":
                used, allowed = spent, budget
            else:
                used = float(info.get("task_energy_used_j", spent))
                allowed = float(info.get("task_budget_j", budget) or budget)
            self._dual_step(used, allowed)

    def _detrended(self, reward: float, info: Mapping[str, Any]) -> float:
        """The reward less the task model's accuracy of the round, in reward units: what the rank adds, not the round.

        Accuracy rises through an episode for every rank alike, so raw rewards credit a rank with the round it
        was played in; statistics kept across episodes (the deployed scheduler) compare a rank sampled late with
        one sampled early. The env's accuracy weight is read from the info (accuracy term / accuracy); a round
        that reports no accuracy keeps the last weight seen (none seen: the raw reward).
        """
        terms = info.get("rewards") or {}
        acc, term = info.get("accuracy"), terms.get("accuracy")
        if acc is not None and term is not None and float(acc) > 0:
            self.accuracy_weight = float(term) / float(acc)
        task_acc = info.get("task_accuracy")
        if task_acc is None or self.accuracy_weight is None:
            return reward
        return reward - self.accuracy_weight * float(task_acc)

    def _check_update(self, action: Any, reward: float, cost: float, info: Mapping[str, Any]) -> int:
        """The action as an arm index; ValueError naming any non-finite number or out-of-range action."""
        k = len(self.counts)
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not 0 <= action < k:
            raise ValueError(f"UCBDual.update: action={action!r}; allowed: an integer arm index in [0, {k - 1}]")
        checks = {"reward": reward, "cost": cost}
        checks.update({key: info[key] for key in _INFO_NUMBERS if info.get(key) is not None})
        for key, value in checks.items():
            try:
                x = float(value)
            except (TypeError, ValueError):
                x = math.nan
            if not math.isfinite(x) or (key != "reward" and x < 0):
                allowed = "a finite number" if key == "reward" else "a finite number >= 0"
                raise ValueError(f"UCBDual.update: {key}={value!r}; allowed: {allowed}")
        return int(action)

    def _read_task_and_price(self, info: Mapping[str, Any], count_violation: bool) -> None:
        """Track the vehicle's task and, in rsu mode, adopt the RSU's price for it."""
        if "task_index" in info:
            self.task = int(info["task_index"])
        if self.dual_source == "rsu":
            if "dual_price" in info:
                self.dual_source_effective = "rsu"
                lam = float(info["dual_price"])
                if not (math.isfinite(lam) and lam >= 0):
                    raise ValueError(f"UCBDual: info['dual_price']={info['dual_price']!r}; allowed: a finite number >= 0")
                if self.lambda_max is not None:
                    lam = min(lam, self.lambda_max)
                self.lambdas[self.task] = lam
                self.lambda_peak = max(self.lambda_peak, lam)
                if count_violation and "task_energy_used_j" in info and "task_budget_j" in info:
                    over = float(info["task_energy_used_j"]) > float(info["task_budget_j"])
                    self.violation_streak = self.violation_streak + 1 if over else 0
            else:
                self.dual_source_effective = "local"

    def _dual_step(self, used: float, allowed: float) -> None:
        """Projected subgradient step on the task's price: lambda <- max(0, lambda + mu (used - allowed)/allowed)."""
        lam = self.lam + self.dual_step_size * (used - allowed) / max(allowed, _EPS)
        lam = max(0.0, lam)
        if self.lambda_max is not None:
            lam = min(lam, self.lambda_max)
        self.lambdas[self.task] = lam
        if self.persist and self.memory is not None:
            self.memory.prices[self.task] = lam  # the task's price, carried to the next episode
        self.lambda_peak = max(self.lambda_peak, lam)
        self.dual_updates += 1
        self.violation_streak = self.violation_streak + 1 if used > allowed else 0

    # -- introspection --------------------------------------------------------------------------
    def dual_diverged(self) -> bool:
        """True when the price already outweighs the whole reward range and spending still exceeds the budget."""
        if not self.use_dual or self.violation_streak < self.divergence_patience:
            return False
        played = self.counts > _EPS
        if not played.any():
            return False
        cheapest = float(np.min(self.cost_sums[played] / self.counts[played]))
        return self.lam * cheapest > 1.0

    def dual_step_size_in_use(self) -> float | None:
        """The mu that moves this agent's price: the env's ``dual_step_size`` when it follows the RSU's price.

        None when the price comes from an RSU whose step size the agent was not told (no config bound).
        """
        if not self.use_dual:
            return 0.0
        if self.dual_source_effective == "rsu":
            cfg = self.context.config if self.context is not None else None
            return float(cfg.energy.dual_step_size) if cfg is not None else None
        return self.dual_step_size

    def state(self) -> dict[str, Any]:
        """Counts, means, prices and the divergence flag as plain data."""
        n = self.counts
        played = n > _EPS
        return {
            "name": self.name,
            "t": float(self.t),
            "counts": n.tolist(),
            "reward_means": np.divide(self.reward_sums, n, out=np.full_like(n, np.nan), where=played).tolist(),
            "cost_means": np.divide(self.cost_sums, n, out=np.full_like(n, np.nan), where=played).tolist(),
            "reward_range": [self.r_min, self.r_max],
            "lambda": self.lam if self.use_dual else 0.0,
            "lambdas": dict(self.lambdas),
            "lambda_peak": self.lambda_peak,
            "task": self.task,
            "dual_source": self.dual_source,
            "dual_source_effective": self.dual_source_effective,
            "resource": self.resource,
            "violation_streak": self.violation_streak,
            "dual_diverged": self.dual_diverged(),
            "exploration": self.exploration,
            "dual_step_size": self.dual_step_size_in_use(),
            "dual_step_size_local": self.dual_step_size,
            "decision_period": self.decision_period,
            "counts_mode": self.counts_mode,
            "available": self.stats.available.tolist(),
            "sweep": self.sweep,
            "discount": self.discount,
            "persist": self.persist,
            "memory_tasks": sorted(self.memory.tasks) if self.memory is not None else [],
        }


class UCB1(UCBDual):
    """The ablation: UCB-DUAL's normalised UCB index without any price on energy."""

    name = "ucb1"

    def __init__(self, exploration: float = 1.0, **kwargs: Any) -> None:
        kwargs["use_dual"] = False
        super().__init__(exploration=exploration, **kwargs)


def family_of(scenario_id: str) -> str:
    """A world's family: its scenario id without the version (``paper-rank-prior-v2`` -> ``paper-rank-prior``)."""
    return re.sub(r"-v\d+$", "", scenario_id)


WARMUP_EPISODES = 20  # the deployed scheduler's history before it is evaluated
WARMUP_SEED_BASE = 1000  # training seeds (benchmarks.train_rl.TRAIN_SEED_BASE): disjoint from evaluation seeds 0..99


def warm_up(env_kwargs: Mapping[str, Any], agent_kwargs: Mapping[str, Any] | None = None,
            episodes: int = WARMUP_EPISODES, seed_base: int = WARMUP_SEED_BASE,
            agent_class: type[UCBDual] | None = None) -> TaskMemory:
    """The memory a deployed UCB-DUAL holds after ``episodes`` episodes on seeds ``seed_base ..``: deterministic.

    Every vehicle of every episode shares one ``TaskMemory`` (the roadside units' per-task tables); the episodes run
    one after another, each starting from what the previous ones left.
    """
    from agents.runner import env_config_for, run_decentralized
    from iov_env.envs.parallel import resolve_config

    if episodes < 0:
        raise ValueError(f"episodes={episodes!r}; allowed: >= 0")
    cls = agent_class or UCBDual
    kwargs = {**dict(agent_kwargs or {}), "persist": True}
    cfg_kwargs = env_config_for(cls(**kwargs), env_kwargs)
    memory = TaskMemory(len(resolve_config(None, **cfg_kwargs).learning.rank_set))
    for k in range(episodes):
        run_decentralized(lambda: cls(**{**kwargs, "memory": memory}), env_kwargs, seed=seed_base + k)
    return memory


# The presets' settings are the ones `iov study ucb-tuning` selected on training seeds
# (benchmarks/data/tuning/ucb_tuning_choice.json; tests/agents/test_agent_ucb_variants.py keeps them equal).
# Pooled: one setting for every tuning world, the default of a world whose family has no preset (paper-sumo-v2:
# the paper world under SUMO mobility was not tuned, so it gets the pooled setting rather than paper's).
TUNED_SETTING: dict[str, Any] = {"exploration": 0.0, "counts": "all", "sweep": "random", "discount": 1.0, "dual_source": "rsu"}
DEPLOYED_SETTING: dict[str, Any] = {"exploration": 0.5, "counts": "all", "sweep": "price", "dual_source": "rsu",
                                    "reward_signal": "detrended"}
# Per world family (scenario id without -vN): the best setting within budget on that family's tuning world; the
# deployed ones after re-evaluating each family's top three under five independent warm-ups (docs/studies.md).
TUNED_BY_FAMILY: dict[str, dict[str, Any]] = {
    "tiny": {"exploration": 0.0, "counts": "all", "sweep": "random", "discount": 1.0, "dual_source": "local", "dual_step_size": 0.3},
    "paper": {"exploration": 0.1, "counts": "all", "sweep": "random", "discount": 1.0, "dual_source": "rsu"},
    "paper-tight": {"exploration": 0.1, "counts": "all", "sweep": "random", "discount": 1.0, "dual_source": "rsu"},
    "paper-rank-prior": {"exploration": 1.0, "counts": "all", "sweep": "random", "discount": 1.0, "dual_source": "rsu"},
    "scale-90": {"exploration": 0.0, "counts": "all", "sweep": "random", "discount": 0.95, "dual_source": "local", "dual_step_size": 1.0},
}
DEPLOYED_BY_FAMILY: dict[str, dict[str, Any]] = {
    "tiny": {"exploration": 0.5, "counts": "all", "sweep": "price", "dual_source": "rsu", "reward_signal": "detrended"},
    "paper": {"exploration": 0.1, "counts": "sleeping", "sweep": "price", "dual_source": "local", "dual_step_size": 0.3},
    "paper-tight": {"exploration": 0.5, "counts": "sleeping", "sweep": "price", "dual_source": "rsu"},
    "paper-rank-prior": {"exploration": 0.25, "counts": "all", "sweep": "price", "dual_source": "rsu"},
    "scale-90": {"exploration": 0.0, "counts": "all", "sweep": "price", "dual_source": "rsu"},
}


class _Preset(UCBDual):
    """A tuned preset: the setting of a world family (``family=``), or the pooled setting (``family=None``)."""

    pooled: dict[str, Any] = {}
    by_family: dict[str, dict[str, Any]] = {}

    def __init__(self, family: str | None = None, **kwargs: Any) -> None:
        self.family = family
        super().__init__(**{**self.setting(family), **kwargs})

    @classmethod
    def setting(cls, family: str | None = None) -> dict[str, Any]:
        """The options of ``family`` (None: the pooled default); an unknown family is refused, naming the known ones."""
        if family is None:
            return dict(cls.pooled)
        if family not in cls.by_family:
            raise ValueError(f"family={family!r} has no {cls.name} preset; allowed: {sorted(cls.by_family)} "
                             "or None (the pooled setting)")
        return dict(cls.by_family[family])

    @classmethod
    def family_for(cls, scenario_id: str) -> str | None:
        """The preset family of a scenario id: its family if tuned, else None (the pooled default)."""
        fam = family_of(scenario_id)
        return fam if fam in cls.by_family else None

    def state(self) -> dict[str, Any]:
        """UCB-DUAL's state and the preset's family (None: pooled)."""
        return {**super().state(), "family": self.family}


class UCBDualTuned(_Preset):
    """UCB-DUAL with the options the tuning study chose on training seeds; forgets at reset.

    ``family`` picks the setting of a world family (``TUNED_BY_FAMILY``); None runs the pooled ``TUNED_SETTING``.
    """

    name = "ucb_dual_tuned"
    pooled = TUNED_SETTING
    by_family = TUNED_BY_FAMILY


class UCBDualDeployed(_Preset):
    """The deployed scheduler: per-task statistics kept across episodes (``persist=True``), tuned per family.

    ``family`` picks ``DEPLOYED_BY_FAMILY[family]``; None runs the pooled ``DEPLOYED_SETTING``. Evaluated after
    ``warmup_episodes`` episodes on the training seeds ``warmup_seed_base ..`` (``warmed_memory``): every evaluation
    episode starts from a copy of the same warmed memory, so evaluation seeds stay independent and the warm-up never
    sees them.
    """

    name = "ucb_dual_deployed"
    pooled = DEPLOYED_SETTING
    by_family = DEPLOYED_BY_FAMILY
    warmup_episodes = WARMUP_EPISODES
    warmup_seed_base = WARMUP_SEED_BASE

    def __init__(self, family: str | None = None, **kwargs: Any) -> None:
        super().__init__(family, **{"persist": True, **kwargs})

    @classmethod
    def warmup_label(cls) -> str:
        """The warm-up as a short label (part of a leaderboard run's key)."""
        return f"{cls.warmup_episodes} episodes from seed {cls.warmup_seed_base}"

    @classmethod
    def warmed_memory(cls, env_kwargs: Mapping[str, Any], family: str | None = None) -> TaskMemory:
        """The memory after the stated warm-up, played by the preset of ``family``, on the world ``env_kwargs``."""
        return warm_up(env_kwargs, {"family": family}, episodes=cls.warmup_episodes, seed_base=cls.warmup_seed_base,
                       agent_class=cls)
