"""The oracle: the scoring anchor, an upper bound on what any rank policy can earn (fast fidelity only).

What it bounds
--------------
Fix a seed. Mobility, fading and the surrogate's noise are drawn the same whatever the ranks (common
random numbers, ``tests/envs/test_env_common_random_numbers.py``), so an episode is a deterministic
function of the rank schedule, and a planner that reads the simulator can optimise the schedule
itself. A budget-respecting policy cannot be expected to out-earn one that overspends (HetLoRA spends
its way to reward), so the oracle does not bound "reward"; it maximises the Lagrangian

    J(schedule) = R - mu * E        R: cumulative reward, E: fleet energy over the episode (J)

with the smallest ``mu >= 0`` whose plan keeps E within the fleet's long-run budget (the task budgets
summed over tasks and rounds; the cloud's re-allocation moves budget between tasks but keeps the sum).
Maximising J means that for every policy pi on that seed, adaptive or not,

    R(pi) <= R(oracle) + mu * (E(pi) - E(oracle)):

no policy spending at most the oracle's energy earns more, and a policy that spends more earns at most
``mu`` per extra joule. With ``mu = 0`` (the budget does not bind) it is the best reward outright.
Policies covered: any choice of executed ranks under the oracle's system (SVD or stacking aggregation,
the scenario's layers, allocation and fault tolerance). HomoLoRA's fedavg (equal ranks) and HetLoRA's
zero-padding (lower aggregation efficiency) only remove options, so they are covered; FedRA changes the
adapted layers, hence the cost tables, and is not.

How it is computed
------------------
* **Forecast.** A copy of the simulator plays the rest of the episode once; by common random numbers
  its activity, masks, latency and energy tables and noise are the ones every policy will meet. Each
  real round is checked against it (a mismatch triggers a new forecast and plan).
* **Dynamic programming per task.** Given mu the tasks separate, and within a task the ranks change
  only the samples S it has absorbed. Every accuracy is ``floor + (top(r) - floor)(1 - h) gate`` with
  ``h = exp(-S / sample_scale)`` (form 2: h before the round times the vehicle's own round's factor,
  ``exp(-s_v(r) / sample_scale)``), so the planner runs backward induction over rounds on a grid in h
  (values are close to linear in h; linear interpolation between grid points). Each round's joint
  ranks of the task's vehicles are enumerated exactly up to ``MAX_EXACT_COMBINATIONS``; bigger tasks
  (30 vehicles in ``scale-90``) use a mean-field fixed point (each vehicle against the marginal value
  of samples) on the grid and coordinate ascent for the decision actually executed.
* **mu** by bisection on the planned energy.

Known model error: a vehicle predicted to leave coverage has its rank forced to the smallest by the
mask, but which fault-tolerance option it takes depends on past accuracies; the plan uses the
forecast's option. ``state()`` reports the plan against the realised episode.

The certificate
---------------
Independent of the planner, ``state()["bound_reward"]`` holds ``B(mu_i) = sum over vehicle-rounds of
max over feasible ranks of [u - mu_i e]`` on a grid of multipliers, where u takes the accuracy each
rank would reach if the task had absorbed the most samples any schedule can give by then, the noise
that will be drawn, and the least latency and energy the round can cost. Every policy has
``R(pi) - mu E(pi) <= B(mu)`` for every mu, so ``min_i B(mu_i) + mu_i E`` is a proven upper bound on
the reward of any policy spending E (``certified_upper_bound``); it holds when no battery can run
out within the episode (``state()["certified"]``).
"""

from __future__ import annotations

import copy
import itertools
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.base import Agent, AgentContext, largest_feasible_at_most, require_fast_env

MAX_EXACT_COMBINATIONS = 2401  # 7 ranks ^ 4 vehicles: enumerate; above, mean field
GRID_EXACT = 48  # h-grid points where every joint choice is enumerated
GRID_MEAN_FIELD = 24
MEAN_FIELD_ITERATIONS = 8
# the certificate's multipliers (reward per joule); any set of values gives a valid bound
BOUND_MU = np.concatenate([[0.0], np.geomspace(1e-4, 1e4, 64)])
SUPPORTED_AGGREGATIONS = ("svd", "stacking")  # efficiency 1 in the surrogate, ranks free per vehicle


def covers(run_env_kwargs: Mapping[str, Any], oracle_env_kwargs: Mapping[str, Any]) -> bool:
    """Whether the bound of an oracle run under ``oracle_env_kwargs`` covers a policy run under ``run_env_kwargs``.

    The same world except the aggregation (any of them: fedavg and zero-padding only remove options) and
    the cloud's allocation (budgets change what agents see, not rewards or energy).
    """
    from iov_env.envs.parallel import resolve_config

    neutral = {"aggregation": "svd", "allocation": "static"}
    run, oracle = resolve_config(None, **dict(run_env_kwargs)), resolve_config(None, **dict(oracle_env_kwargs))
    return run.replace(**neutral) == oracle.replace(**neutral)


def certified_upper_bound(bound_mu: Sequence[float], bound_reward: Sequence[float], energy_j: float) -> float:
    """min over the certificate's multipliers of B(mu) + mu * E: no policy spending ``energy_j`` earns more."""
    mu, b = np.asarray(bound_mu, dtype=float), np.asarray(bound_reward, dtype=float)
    return float(np.min(b + mu * float(energy_j)))


@dataclass
class Forecast:
    """The rest of the episode as every policy will meet it, from round ``t0``: (T, N[, R]) arrays."""

    t0: int
    active: np.ndarray
    mask: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    download_s: np.ndarray
    download_energy_j: np.ndarray
    dwell_s: np.ndarray
    leaving: np.ndarray  # predicted to leave even at the smallest rank: the mask forces that rank
    leave_latency_s: np.ndarray  # the forecast's outcome for leaving vehicles (fault option taken)
    leave_energy_j: np.ndarray
    leave_contribution: np.ndarray  # train fraction, 0 when the update never reached the aggregator
    leave_trained: np.ndarray
    noise: np.ndarray  # (T, N) observation noise on each vehicle's accuracy
    budget_j: np.ndarray  # (T,) fleet budget of each round

    def matches(self, sim: Any) -> bool:
        """True when the simulator's current round is the one forecast (same masks and cost tables)."""
        t = sim.round_index - self.t0
        if not 0 <= t < len(self.active):
            return False
        st = sim.state
        return (
            np.array_equal(st.active, self.active[t]) and np.array_equal(st.mask, self.mask[t])
            and np.array_equal(st.latency_table_s, self.latency_s[t])
            and np.array_equal(st.energy_table_j, self.energy_j[t])
        )


def forecast(sim: Any) -> Forecast:
    """Play a copy of the simulator to the end with the smallest ranks and record what is exogenous."""
    fc = _copy_simulator(sim)
    n = sim.config.num_vehicles
    keys = ("active", "mask", "latency_s", "energy_j", "download_s", "download_energy_j", "dwell_s", "leaving",
            "leave_latency_s", "leave_energy_j", "leave_contribution", "leave_trained", "noise", "budget_j")
    rec: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    rsu_power_w = sim.config.channel.rsu_tx_power_w
    t0 = sim.round_index
    while not fc.done:
        st = fc.state
        rec["budget_j"].append(np.asarray(fc.task_budget_j.sum()))
        rec["noise"].append(fc.backend.next_round_noise()[1])
        m = fc.step(np.zeros(n, dtype=int))
        leaving = m.fault != 0
        rec["active"].append(st.active)
        rec["mask"].append(st.mask)
        rec["latency_s"].append(st.latency_table_s)
        rec["energy_j"].append(st.energy_table_j)
        rec["download_s"].append(st.download_s)
        rec["download_energy_j"].append(rsu_power_w * st.download_s)
        rec["dwell_s"].append(st.dwell_s)
        rec["leaving"].append(leaving)
        rec["leave_latency_s"].append(m.latency_s)
        rec["leave_energy_j"].append(m.energy_j)
        rec["leave_contribution"].append(np.where(m.uploaded, m.train_fraction, 0.0))
        rec["leave_trained"].append(m.active & (m.train_fraction > 0))
    return Forecast(t0=t0, **{k: np.asarray(v) for k, v in rec.items()})


@dataclass
class _Round:
    """One round of one task: the vehicles that choose, those forced, and every rank's cost and gain."""

    choices: list[np.ndarray]  # feasible rank indices of each choosing vehicle
    samples: np.ndarray  # (n_f, R) samples each choosing vehicle adds at each rank
    latency_s: np.ndarray  # (n_f, R)
    energy_j: np.ndarray  # (n_f, R)
    noise: np.ndarray  # (n_f,)
    leave_samples: float  # samples the forced (leaving) vehicles add
    leave_latency_s: np.ndarray  # (n_l,)
    leave_energy_j: np.ndarray
    leave_noise: np.ndarray
    leave_trained: np.ndarray  # (n_l,) bool
    leave_own_samples: np.ndarray  # (n_l,) samples each forced vehicle's own round adds (form 2's own model)
    discount: float  # what the task keeps of the round's samples: n ** -federation_exponent with n > 1 uploaders
    vehicles: np.ndarray  # global indices of the choosing vehicles

    @property
    def combinations(self) -> int:
        """Number of joint choices."""
        return math.prod(len(c) for c in self.choices)  # Python ints: 7**30 must not wrap around


class _TaskPlanner:
    """Backward induction over rounds x an h-grid for one task, at a given price mu."""

    def __init__(self, sim: Any, fc: Forecast, view: Any, task: int, layer_share: float) -> None:
        self.sim = sim
        self.view, self.task, self.form = view, task, view.form
        self.floor = float(view.floor[task])
        self.gain = view.top[task] - self.floor  # (R,) accuracy gain of each rank over the floor
        self.scale = float(view.sample_scale[task])
        self.h0 = float(np.exp(-view.samples[task] / self.scale))
        vehicles = np.flatnonzero(sim.vehicle_task == task)
        base = view.vehicle_samples * layer_share
        speed = view.speed[task]
        self.rounds: list[_Round] = []
        max_samples = 0.0
        for t in range(len(fc.active)):
            act = fc.active[t, vehicles]
            leave = act & fc.leaving[t, vehicles]
            free = vehicles[act & ~leave]
            forced = vehicles[leave]
            d = base[free, None] * speed[None, :]
            lc = fc.leave_contribution[t, forced]
            uploaders = len(free) + int(np.count_nonzero(lc > 0))
            fed = float(view.federation_exponent[task])
            discount = float(uploaders) ** -fed if fed > 0 and uploaders > 1 else 1.0
            self.rounds.append(_Round(
                choices=[np.flatnonzero(fc.mask[t, v]) for v in free],
                samples=d,
                latency_s=fc.latency_s[t, free],
                energy_j=fc.energy_j[t, free],
                noise=fc.noise[t, free],
                leave_samples=float(np.sum(base[forced] * lc * speed[0])),
                leave_latency_s=fc.leave_latency_s[t, forced],
                leave_energy_j=fc.leave_energy_j[t, forced],
                leave_noise=fc.noise[t, forced],
                leave_trained=fc.leave_trained[t, forced],
                leave_own_samples=base[forced] * lc * speed[0],
                discount=discount,
                vehicles=free,
            ))
            best = [d[i, c].max() for i, c in enumerate(self.rounds[-1].choices)]
            max_samples += float(np.sum(best)) + self.rounds[-1].leave_samples
        h_lo = max(self.h0 * float(np.exp(-max_samples / self.scale)), 1e-12)
        exact = all(r.combinations <= MAX_EXACT_COMBINATIONS for r in self.rounds)
        g = GRID_EXACT if exact else GRID_MEAN_FIELD
        # uniform and geometric points: values are near-linear in h, and late rounds live near h = 0
        self.grid = np.unique(np.concatenate([np.linspace(h_lo, self.h0, g // 2), np.geomspace(h_lo, self.h0, g // 2)]))
        self.combos = [self._combos(r) for r in self.rounds]
        # the mu-independent part of every exact round, once per episode
        self._pre: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [
            self.evaluate(r, self.grid, c) if c is not None else None for r, c in zip(self.rounds, self.combos, strict=True)
        ]
        self.values: np.ndarray | None = None
        self.exact_rounds = sum(c is not None for c in self.combos)

    @staticmethod
    def _combos(r: _Round) -> np.ndarray | None:
        if r.combinations > MAX_EXACT_COMBINATIONS:
            return None
        combos = list(itertools.product(*r.choices))
        return np.array(combos, dtype=int).reshape(len(combos), len(r.choices))

    # -- the model of one round ------------------------------------------------------------------
    def evaluate(self, r: _Round, h: np.ndarray, ranks: np.ndarray, extra_samples: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reward (G, C), energy (B, C) and next h (G, C) of joint ``ranks`` ((B, C, n_f) or (C, n_f)) from ``h`` (G,)."""
        ranks = ranks if ranks.ndim == 3 else ranks[None]
        rows = np.arange(len(r.choices))
        ds = (r.samples[rows, ranks].sum(-1) + r.leave_samples) * r.discount + extra_samples  # (B, C)
        hp = h[:, None] * np.exp(-ds / self.scale)  # (G, C)
        progress = self._reported_progress(h[:, None, None], r.samples[rows, ranks], hp[..., None])
        acc = np.clip(self.floor + self.gain[ranks] * progress + r.noise, 0.0, 1.0)
        lat, en = r.latency_s[rows, ranks], r.energy_j[rows, ranks]
        reward = self.sim.utility(acc, lat, en).sum(-1)
        energy = en.sum(-1) + r.leave_energy_j.sum()
        if len(r.leave_noise):
            # forced vehicles train at the smallest rank; one that could not train keeps an older accuracy,
            # modelled as the smallest rank's before this round
            after = self.floor + self.gain[0] * self._reported_progress(h[:, None, None], r.leave_own_samples,
                                                                        hp[..., None])
            before = self.floor + self.gain[0] * self._progress(h)[:, None, None]
            acc_l = np.clip(np.where(r.leave_trained, after, before) + r.leave_noise, 0.0, 1.0)
            reward = reward + self.sim.utility(acc_l, r.leave_latency_s, r.leave_energy_j).sum(-1)
        return reward, np.broadcast_to(energy, ds.shape), hp

    def _progress(self, h: np.ndarray) -> np.ndarray:
        return self.view.progress(self.task, h)

    def _reported_progress(self, h_before: np.ndarray, own_samples: np.ndarray, h_after: np.ndarray) -> np.ndarray:
        """Progress of the model a vehicle reports: its own local one (form 2: ``h`` before the round times its own
        samples' factor) or the task's after the round (form 1); the arguments broadcast together."""
        if self.form == 2:
            return self._progress(h_before * np.exp(-own_samples / self.scale))
        return self._progress(h_after)

    def _next_value(self, t: int, hp: np.ndarray) -> np.ndarray:
        assert self.values is not None
        return np.interp(hp, self.grid, self.values[t + 1])

    # -- planning ----------------------------------------------------------------------------------
    def backward(self, mu: float) -> None:
        """Value of every grid point at every round under price ``mu``."""
        self.values = np.zeros((len(self.rounds) + 1, len(self.grid)))
        for t in range(len(self.rounds) - 1, -1, -1):
            pre = self._pre[t]
            if pre is not None:
                reward, energy, hp = pre
                q = reward - mu * energy + self._next_value(t, hp)
            else:
                ranks = self._mean_field(t, self.grid, mu)
                reward, energy, hp = self.evaluate(self.rounds[t], self.grid, ranks[:, None, :])
                q = reward - mu * energy + self._next_value(t, hp)
            self.values[t] = q.max(axis=1)

    def decide(self, t: int, h: float, mu: float, polish: bool = True) -> tuple[np.ndarray, float, float, float]:
        """Ranks of the choosing vehicles at ``h``, with the round's reward, energy and next h.

        Exact rounds compare every joint choice; others take the mean-field choice, improved by
        coordinate ascent when ``polish`` (the executed decisions; the price search skips it).
        """
        r = self.rounds[t]
        hv = np.array([h])
        combos = self.combos[t]
        if combos is None:
            combos = self._mean_field(t, hv, mu)
            if polish:
                combos = self._coordinate_ascent(t, h, mu, combos[0])[None]
        reward, energy, hp = self.evaluate(r, hv, combos)
        q = reward[0] - mu * energy[0] + self._next_value(t, hp[0])
        best = int(np.argmax(q))
        return combos[best], float(reward[0, best]), float(energy[0, best]), float(hp[0, best])

    def rollout(self, mu: float) -> tuple[float, float]:
        """Planned (reward, energy) of following the plan from the forecast's first round."""
        h, reward, energy = self.h0, 0.0, 0.0
        for t in range(len(self.rounds)):
            _, rw, en, h = self.decide(t, h, mu, polish=False)
            reward += rw
            energy += en
        return reward, energy

    def _mean_field(self, t: int, h: np.ndarray, mu: float) -> np.ndarray:
        """(G, n_f) ranks: each vehicle best-responds to the marginal value of the task's samples."""
        r = self.rounds[t]
        n_f = len(r.choices)
        ranks = np.tile(np.array([c[0] for c in r.choices], dtype=int), (len(h), 1))
        if n_f == 0:
            return ranks
        feasible = np.zeros(r.samples.shape, dtype=bool)
        for i, c in enumerate(r.choices):
            feasible[i, c] = True
        best, best_q = ranks.copy(), np.full(len(h), -np.inf)
        step = 1e-3 * self.scale
        for _ in range(MEAN_FIELD_ITERATIONS):
            reward, energy, hp = self.evaluate(r, h, ranks[:, None, :])
            q = (reward - mu * energy + self._next_value(t, hp))[:, 0]
            better = q > best_q + 1e-12
            if not better.any():
                break
            best[better], best_q[better] = ranks[better], q[better]
            # marginal value of one more sample for the task this round: a finite difference at fixed ranks
            reward2, _, hp2 = self.evaluate(r, h, best[:, None, :], extra_samples=step)
            reward1, _, hp1 = self.evaluate(r, h, best[:, None, :])
            slope = ((reward2 + self._next_value(t, hp2)) - (reward1 + self._next_value(t, hp1)))[:, 0] / step
            # each vehicle's own reward at every rank given the round's h', plus what its samples are worth
            progress = self._reported_progress(h[:, None, None], r.samples[None], hp1[:, :, None])
            own = np.clip(self.floor + self.gain[None, None, :] * progress + r.noise[None, :, None], 0, 1)
            score = self.sim.utility(own, r.latency_s[None], r.energy_j[None]) - mu * r.energy_j[None]
            score = np.where(feasible[None], score + slope[:, None, None] * r.samples[None] * r.discount, -np.inf)
            ranks = np.argmax(score, axis=2)
        return best

    def _coordinate_ascent(self, t: int, h: float, mu: float, start: np.ndarray) -> np.ndarray:
        """Improve one vehicle at a time, with the exact round value, until no single change helps."""
        r = self.rounds[t]
        ranks = start.copy()
        hv = np.array([h])
        for _ in range(10):
            changed = False
            for i, c in enumerate(r.choices):
                trial = np.repeat(ranks[None], len(c), axis=0)
                trial[:, i] = c
                reward, energy, hp = self.evaluate(r, hv, trial)
                q = reward[0] - mu * energy[0] + self._next_value(t, hp[0])
                pick = int(c[int(np.argmax(q))])
                if pick != ranks[i] and q.max() > q[list(c).index(ranks[i])] + 1e-9:
                    ranks[i] = pick
                    changed = True
            if not changed:
                break
        return ranks


class OraclePlanner:
    """One plan per episode and simulator, shared by the oracle's per-vehicle instances."""

    def __init__(self, sim: Any, budget_ratio: float = 1.0) -> None:
        cfg = sim.config
        if cfg.learning.fidelity != "fast":
            raise ValueError(f"the oracle needs fidelity='fast' (it plans on the surrogate); got {cfg.learning.fidelity!r}")
        if cfg.learning.aggregation not in SUPPORTED_AGGREGATIONS:
            raise ValueError(
                f"the oracle plans per-vehicle ranks under aggregation in {SUPPORTED_AGGREGATIONS}; "
                f"got {cfg.learning.aggregation!r}"
            )
        self.sim = sim
        self.history = sim.history  # identifies the episode: reset() makes a new list
        self.budget_ratio = float(budget_ratio)
        self.replans = 0
        self.mismatches = 0
        self._decided: dict[int, np.ndarray] = {}
        self._plan()
        self.certificate = self._certificate()

    def _plan(self) -> None:
        sim = self.sim
        self.fc = forecast(sim)
        view = sim.backend.oracle_view(sim.rank_set)
        layer_share = sim.num_layers_adapted / sim.config.learning.model_num_layers
        self.view = view
        self.tasks = [_TaskPlanner(sim, self.fc, view, k, layer_share) for k in range(sim.config.num_tasks)]
        spent = float(sum(m.energy_j.sum() for m in sim.history))
        total_budget = self.budget_ratio * float(np.sum(self.fc.budget_j)) + self.budget_ratio * sum(
            float(m.task_budget_j.sum()) for m in sim.history
        )
        self.budget_j = total_budget
        self.mu, (self.planned_reward, self.planned_energy_j) = self._price(total_budget - spent)

    def _evaluate(self, mu: float) -> tuple[float, float]:
        reward = energy = 0.0
        for tp in self.tasks:
            tp.backward(mu)
            rw, en = tp.rollout(mu)
            reward += rw
            energy += en
        return reward, energy

    def _price(self, budget_j: float) -> tuple[float, tuple[float, float]]:
        """The smallest mu (within 1% of the budget) whose plan fits ``budget_j``, and that plan's (reward, energy)."""
        free = self._evaluate(0.0)
        if free[1] <= budget_j:
            return 0.0, free
        lo, hi = 0.0, 1e-3
        plan = self._evaluate(hi)
        while plan[1] > budget_j and hi < 1e6:
            lo, hi = hi, hi * 8.0
            plan = self._evaluate(hi)
        for _ in range(30):
            if plan[1] >= 0.99 * budget_j or hi - lo <= 1e-6 * hi:
                break
            mid = 0.5 * (lo + hi)
            trial = self._evaluate(mid)
            if trial[1] <= budget_j:
                hi, plan = mid, trial
            else:
                lo = mid
        self._evaluate(hi)  # leave every task's value function at the chosen price
        return hi, plan

    # -- acting ----------------------------------------------------------------------------------
    def joint_action(self) -> np.ndarray:
        """(N,) rank index per vehicle for the simulator's current round."""
        sim = self.sim
        t_abs = sim.round_index
        if t_abs in self._decided:
            return self._decided[t_abs]
        if not self.fc.matches(sim):
            self.mismatches += 1
            self.replans += 1
            self._plan()
        t = t_abs - self.fc.t0
        action = np.zeros(sim.config.num_vehicles, dtype=int)
        samples = sim.backend.oracle_view(sim.rank_set).samples
        for k, tp in enumerate(self.tasks):
            h = float(np.exp(-samples[k] / tp.scale))
            ranks, *_ = tp.decide(t, h, self.mu)
            action[tp.rounds[t].vehicles] = ranks
        self._decided = {t_abs: action}
        return action

    # -- the certificate -------------------------------------------------------------------------
    def _certificate(self) -> dict[str, Any]:
        """B(mu) on ``BOUND_MU``: an upper bound on R - mu E of every policy (see the module docstring)."""
        sim, fc, view = self.sim, self.fc, self.view
        task = sim.vehicle_task
        layer_share = sim.num_layers_adapted / sim.config.learning.model_num_layers
        mask = fc.mask & fc.active[:, :, None]
        speed = view.speed[task]  # (N, R)
        best_speed = np.where(mask, speed[None], 0.0).max(axis=2)  # (T, N)
        per_task = np.zeros((len(fc.active), sim.config.num_tasks))
        np.add.at(per_task.T, task, (view.vehicle_samples * layer_share * best_speed).T)
        s_max = view.samples[None, :] + np.cumsum(per_task, axis=0)  # most samples absorbable by each round's end
        h_min = np.exp(-s_max / view.sample_scale[None, :])[:, task]  # (T, N)
        floor = view.floor[task]
        gain = view.top[task] - floor[:, None]  # (N, R)
        # the most progress any schedule can give each vehicle's model by each round's end (either form)
        progress = view.progress(task[None, :], h_min)
        acc = np.clip(floor[None, :, None] + gain[None] * progress[:, :, None] + fc.noise[:, :, None], 0.0, 1.0)
        # a vehicle that cannot train this round (it leaves before its download ends; that depends on its
        # dwell time and the fault mode, not on ranks) keeps the accuracy of its last training round
        best = np.where(mask, acc, 0.0).max(axis=2)  # (T, N)
        trains = fc.active & (~fc.leaving | fc.leave_trained)
        last = sim.backend.vehicle_accuracy.copy()
        older = np.empty_like(best)
        for t in range(len(best)):
            older[t] = last
            last = np.where(trains[t], best[t], last)
        stuck = (fc.active & ~trains)[:, :, None]
        acc = np.where(stuck, older[:, :, None], acc)
        leave = fc.leaving[:, :, None]
        # a leaving vehicle's round lasts until it leaves (early upload, abandonment) or longer (migration),
        # and never less than its download; its energy is at least the download's
        lat = np.where(leave, np.maximum(fc.dwell_s[:, :, None], fc.download_s), fc.latency_s)
        en = np.where(leave, fc.download_energy_j, fc.energy_j)
        util = sim.utility(acc, lat, en)
        lagr = util[None] - BOUND_MU[:, None, None, None] * en[None]
        bound = np.where(mask[None], lagr, -np.inf).max(axis=3)
        bound = np.where(fc.active[None], bound, 0.0).sum(axis=(1, 2))
        earned = float(sum(m.reward.sum() for m in sim.history))
        spent = float(sum(m.energy_j.sum() for m in sim.history))
        # batteries: masks and activity depend on spending only if a battery could run out
        battery = sim.energy_remaining_j
        certified = bool(np.all(battery - fc.energy_j.max(axis=2).sum(axis=0) >= fc.energy_j.max(axis=(0, 2))))
        return {
            "bound_mu": BOUND_MU.tolist(),
            "bound_reward": (bound + earned - BOUND_MU * spent).tolist(),
            "certified": certified,
        }

    def summary(self) -> dict[str, Any]:
        """The plan and the certificate as plain data."""
        return {
            "mu": self.mu,
            "budget_j": self.budget_j,
            "budget_ratio": self.budget_ratio,
            "planned_reward": self.planned_reward,
            "planned_energy_j": self.planned_energy_j,
            "exact_rounds": sum(tp.exact_rounds for tp in self.tasks),
            "mean_field_rounds": sum(len(tp.rounds) - tp.exact_rounds for tp in self.tasks),
            "replans": self.replans,
            "upper_bound_at_budget": certified_upper_bound(
                self.certificate["bound_mu"], self.certificate["bound_reward"], self.budget_j
            ),
            **self.certificate,
        }


# one planner per (simulator, settings); the simulator going away frees it
_PLANNERS: weakref.WeakKeyDictionary[Any, dict[tuple, OraclePlanner]] = weakref.WeakKeyDictionary()


class Oracle(Agent):
    """Reads the simulator, plans the whole episode (see the module docstring); one instance per vehicle."""

    name = "oracle"
    aggregation = "svd"

    def __init__(self, budget_ratio: float = 1.0) -> None:
        super().__init__()
        if not np.isfinite(budget_ratio) or budget_ratio <= 0:
            raise ValueError(f"budget_ratio={budget_ratio!r}; allowed: a finite number > 0 (1.0: spend the budget)")
        self.budget_ratio = float(budget_ratio)
        self.mismatched_masks = 0

    def bind(self, context: AgentContext) -> None:
        """Needs the env (it reads the simulator) and the fast fidelity, checked up front."""
        super().bind(context)
        require_fast_env(context, "Oracle")
        cfg = context.config
        if cfg is not None and cfg.learning.aggregation not in SUPPORTED_AGGREGATIONS:
            raise ValueError(
                f"Oracle plans per-vehicle ranks under aggregation in {SUPPORTED_AGGREGATIONS}; got "
                f"{cfg.learning.aggregation!r} (fedavg forces equal ranks, zero_pad loses efficiency: both are bounded "
                "by the oracle run under 'svd')"
            )

    def planner(self) -> OraclePlanner:
        """The episode's shared plan (built on first use after each reset)."""
        sim = self.context.env.unwrapped.simulator  # type: ignore[union-attr]
        plans = _PLANNERS.setdefault(sim, {})
        key = (self.budget_ratio,)
        plan = plans.get(key)
        if plan is None or plan.history is not sim.history:
            plan = OraclePlanner(sim, self.budget_ratio)
            plans[key] = plan
        return plan

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """This vehicle's rank in the plan (the mask was forecast, so it is feasible)."""
        choice = int(self.planner().joint_action()[self.context.index])  # type: ignore[union-attr]
        mask = np.asarray(action_mask) if action_mask is not None else None
        if mask is not None and not mask[choice]:
            self.mismatched_masks += 1
            return largest_feasible_at_most(choice, mask, len(self.rank_set))
        return choice

    def state(self) -> dict[str, Any]:
        """The plan, its price and the certificate (episode-level, the same for every vehicle)."""
        out: dict[str, Any] = {"name": self.name, "mismatched_masks": self.mismatched_masks}
        sim = self.context.env.unwrapped.simulator if self.context is not None and self.context.env is not None else None
        plan = _PLANNERS.get(sim, {}).get((self.budget_ratio,)) if sim is not None else None
        if plan is not None:
            out.update(plan.summary())
        return out


def _copy_simulator(sim: Any) -> Any:
    """A copy of the simulator that plays on from its current round (shares the read-only taxi traces)."""
    return copy.deepcopy(sim, memo={id(sim._traces): sim._traces, id(sim.history): []})


class FixedRankPlan:
    """The hindsight-best fixed rank per task on the simulator's episode (see ``BestFixed``)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.history = sim.history
        k, n_ranks = sim.config.num_tasks, len(sim.rank_set)
        task = np.asarray(sim.vehicle_task)
        self.task_reward = np.zeros((k, n_ranks))  # (task, rank index): the task's episode reward at that rank
        self.task_energy_j = np.zeros((k, n_ranks))
        budget = None
        for j in range(n_ranks):
            reward, energy, budget_j = self._play(np.full(sim.config.num_vehicles, j, dtype=int))
            np.add.at(self.task_reward[:, j], task, reward)
            self.task_energy_j[:, j] = energy
            budget = budget_j if budget is None else budget
        # past rounds count for every schedule alike; the long-run budget is the fleet's (the cloud moves budget
        # between tasks but keeps the sum), as the oracle's
        self.budget_j = float(budget) + float(sum(m.task_budget_j.sum() for m in sim.history))
        spent = float(sum(m.task_energy_j.sum() for m in sim.history))
        combos = np.array(list(itertools.product(range(n_ranks), repeat=k)), dtype=int)
        rows = np.arange(k)
        rewards = self.task_reward[rows, combos].sum(axis=1)
        energies = self.task_energy_j[rows, combos].sum(axis=1) + spent
        fits = energies <= self.budget_j
        best = int(np.flatnonzero(fits)[np.argmax(rewards[fits])]) if fits.any() else int(np.argmin(energies))
        self.ranks = combos[best]  # rank index per task
        self.within_budget = bool(fits.any())
        self.planned_reward = float(rewards[best])  # the sum of the per-task parts (tasks assumed independent)
        # the chosen combination played as one episode: what the tasks' coupling (shared RSUs, the cloud's
        # re-allocation) changes against the sum of the parts
        reward, energy, _ = self._play(self.ranks[task])
        self.played_reward = float(reward.sum())
        self.played_energy_j = float(energy.sum()) + spent

    def _play(self, requested: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Per-vehicle reward, per-task energy (J) and the fleet budget (J) of the rest of the episode at ``requested``."""
        fc = _copy_simulator(self.sim)
        reward = np.zeros(fc.config.num_vehicles)
        energy = np.zeros(fc.config.num_tasks)
        budget = 0.0
        while not fc.done:
            m = fc.step(requested)  # the simulator runs the largest feasible rank at or below the request
            reward += m.reward
            energy += m.task_energy_j
            budget += float(np.sum(m.task_budget_j))
        return reward, energy, budget

    def summary(self) -> dict[str, Any]:
        """The chosen ranks and what they were chosen from, as plain data."""
        rank_set = list(self.sim.rank_set)
        return {
            "task_ranks": [int(rank_set[j]) for j in self.ranks],
            "within_budget": self.within_budget,
            "budget_j": self.budget_j,
            "planned_reward": self.planned_reward,
            "played_reward": self.played_reward,
            "played_energy_j": self.played_energy_j,
            "task_reward": self.task_reward.tolist(),
            "task_energy_j": self.task_energy_j.tolist(),
        }


_FIXED_PLANS: weakref.WeakKeyDictionary[Any, FixedRankPlan] = weakref.WeakKeyDictionary()


class BestFixed(Agent):
    """Reference: the best fixed rank per task in hindsight, on the evaluation episode itself (fast fidelity only).

    How "hindsight" is computed: at the first round of the episode, copies of the simulator play the whole
    episode once per rank of the rank set with every vehicle requesting that rank (the simulator runs the
    largest feasible rank at or below it, as a fixed-rank policy under the mask does). By common random
    numbers those copies meet exactly the mobility, channel and noise of the real episode. Each task's reward
    and energy are read off per rank, and the per-task combination with the largest summed reward whose
    summed energy fits the fleet's long-run budget (the oracle's budget) is chosen by enumeration (7^3 = 343
    combinations in ``paper``); with no combination within budget, the cheapest one.

    Tasks interact only through what they share (RSU bandwidth, the cloud's budget re-allocation, which moves
    prices, not rewards): the sum of the per-task parts is the plan, and the chosen combination is played
    once more as a whole to measure the coupling (``state()["played_reward"]`` against ``planned_reward``).
    Aggregation is SVD (the oracle's system, so its bound covers this reference). It reads the simulator, so it is
    a reference beside ``oracle`` and ``greedy``, not a competitor.
    """

    name = "best_fixed"
    aggregation = "svd"

    def bind(self, context: AgentContext) -> None:
        """Needs the env (it reads the simulator) and the fast fidelity, checked up front."""
        super().bind(context)
        require_fast_env(context, "BestFixed")

    def plan(self) -> FixedRankPlan:
        """The episode's shared plan (built on the first use after each reset)."""
        sim = self.context.env.unwrapped.simulator  # type: ignore[union-attr]
        plan = _FIXED_PLANS.get(sim)
        if plan is None or plan.history is not sim.history:
            plan = FixedRankPlan(sim)
            _FIXED_PLANS[sim] = plan
        return plan

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """The task's chosen rank, or the largest feasible rank below it."""
        plan = self.plan()
        task = int(plan.sim.vehicle_task[self.context.index])  # type: ignore[union-attr]
        return largest_feasible_at_most(int(plan.ranks[task]), action_mask, len(self.rank_set))

    def state(self) -> dict[str, Any]:
        """The chosen ranks per task and the plan's figures."""
        out: dict[str, Any] = {"name": self.name}
        sim = self.context.env.unwrapped.simulator if self.context is not None and self.context.env is not None else None
        plan = _FIXED_PLANS.get(sim) if sim is not None else None
        if plan is not None and plan.history is sim.history:
            out.update(plan.summary())
        return out
