"""Drive agents through whole episodes and summarise them as plain data.

``run_decentralized(make_agent, env_kwargs, seed)`` builds the PettingZoo env (configured with what the
agent implies: its aggregation and ``env_overrides``, under any explicit ``env_kwargs``), gives every
vehicle its own agent instance, and plays one episode. ``run_centralized(agent, env, seed)`` plays one
episode on the Gymnasium centralized view, with a centralized agent or with one copy of a per-vehicle
agent for each vehicle. Both return the same summary (see ``EpisodeRecorder.summary``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agents.base import Agent, AgentContext

SUMMARY_METRICS = (
    "final_accuracy",
    "best_accuracy",
    "mean_accuracy",
    "end_to_end_latency_s",
    "total_energy_j",
    "total_budget_j",
    "energy_ratio",
    "budget_violation_rate",
    "vehicle_violation_rate",
    "cumulative_reward",
)


class EpisodeRecorder:
    """Accumulates per-round metrics from per-agent infos (plus the env's task metrics when exposed)."""

    def __init__(self, agent_ids: Sequence[str], tasks: Sequence[str], rank_set: Sequence[int]) -> None:
        self.agent_ids = list(agent_ids)
        self.tasks = list(tasks)
        self.rank_set = list(rank_set)
        self.task_accuracy: list[list[float]] = []
        self.task_latency_s: list[list[float]] = []
        self.round_latency_s: list[float] = []
        self.round_energy_j: list[float] = []
        self.round_budget_j: list[float] = []
        self.round_reward: list[float] = []
        self.task_violation: list[list[bool]] = []
        self.vehicle_violations = 0
        self.vehicle_active_rounds = 0
        self.rank_trace: list[list[int]] = []
        self.executed_ranks: list[int] = []  # the rank each active vehicle-round ran (after the env's corrections)
        self.dual_price_trace: list[list[float]] = []
        self.corrections = 0
        self.faults: dict[str, int] = {}
        self._last_task_acc = np.zeros(len(self.tasks))

    def record(self, rewards: Mapping[str, float], infos: Mapping[str, Mapping[str, Any]], env: Any = None) -> None:
        """Add one round: the per-agent rewards and infos that ``step`` returned."""
        k = len(self.tasks)
        acc_sum, acc_n = np.zeros(k), np.zeros(k)
        lat = np.zeros(k)
        used, budget = np.full(k, np.nan), np.full(k, np.nan)
        cost_sum = np.zeros(k)
        price = np.full(k, np.nan)
        ranks = []
        for a in self.agent_ids:
            info = infos.get(a, {})
            t = int(info.get("task_index", 0))
            ranks.append(int(info.get("rank", 0)))
            if "dual_price" in info:
                price[t] = float(info["dual_price"])
            if "task_energy_used_j" in info:
                used[t] = float(info["task_energy_used_j"])
                budget[t] = float(info["task_budget_j"])
            if not info.get("active", False):
                continue
            self.vehicle_active_rounds += 1
            self.executed_ranks.append(ranks[-1])
            acc_sum[t] += float(info.get("accuracy", 0.0))
            acc_n[t] += 1
            lat[t] = max(lat[t], float(info.get("latency_s", 0.0)))
            cost = float(info.get("cost", 0.0))
            cost_sum[t] += cost
            if cost > float(info.get("budget", np.inf)) * (1 + 1e-9):
                self.vehicle_violations += 1
            self.corrections += int(bool(info.get("action_corrected", False)))
            fault = info.get("fault")
            if fault:
                self.faults[str(fault)] = self.faults.get(str(fault), 0) + 1
        used = np.where(np.isnan(used), cost_sum, used)
        # prefer the env's own per-task metrics (global model accuracy, synchronous round latency incl.
        # aggregation) from the infos; then the env's last round; then aggregates of the vehicles' infos
        env_acc, env_lat = np.full(k, np.nan), np.full(k, np.nan)
        for a in self.agent_ids:
            info = infos.get(a, {})
            if "task_accuracy" in info:
                t = int(info.get("task_index", 0))
                env_acc[t] = float(info["task_accuracy"])
                env_lat[t] = float(info.get("task_latency_s", lat[t]))
        last = getattr(getattr(env, "unwrapped", env), "last_round", None) if env is not None else None
        if np.isnan(env_acc).any() and last is not None and getattr(last, "task_accuracy", None) is not None:
            env_acc = np.where(np.isnan(env_acc), np.asarray(last.task_accuracy, dtype=float), env_acc)
            env_lat = np.where(np.isnan(env_lat), np.asarray(last.task_latency_s, dtype=float), env_lat)
        fallback = np.where(acc_n > 0, acc_sum / np.maximum(acc_n, 1), self._last_task_acc)
        task_acc = np.where(np.isnan(env_acc), fallback, env_acc)
        lat = np.where(np.isnan(env_lat), lat, env_lat)
        self._last_task_acc = task_acc
        self.task_accuracy.append(task_acc.tolist())
        self.task_latency_s.append(lat.tolist())
        # tasks run in parallel at their RSUs; the round ends when the slowest task has aggregated
        self.round_latency_s.append(float(lat.max(initial=0.0)))
        self.round_energy_j.append(float(used.sum()))
        self.round_budget_j.append(float(np.nansum(budget)))
        self.round_reward.append(float(sum(float(rewards.get(a, 0.0)) for a in self.agent_ids)))
        self.task_violation.append([bool(u > b * (1 + 1e-9)) for u, b in zip(used, budget, strict=True) if not np.isnan(b)])
        self.rank_trace.append(ranks)
        self.dual_price_trace.append(price.tolist())

    def summary(self) -> dict[str, Any]:
        """The episode as plain data: headline metrics plus per-round traces."""
        acc = np.asarray(self.task_accuracy) if self.task_accuracy else np.zeros((0, len(self.tasks)))
        viol = [v for row in self.task_violation for v in row]
        return {
            "rounds": len(self.round_latency_s),
            "tasks": self.tasks,
            "rank_set": self.rank_set,
            # accuracies in [0, 1]; headline numbers average the tasks
            "final_accuracy": float(acc[-1].mean()) if len(acc) else float("nan"),
            "best_accuracy": float(acc.max(axis=0).mean()) if len(acc) else float("nan"),
            "mean_accuracy": float(acc.mean()) if len(acc) else float("nan"),
            "end_to_end_latency_s": float(np.sum(self.round_latency_s)),
            "total_energy_j": float(np.sum(self.round_energy_j)),
            # the fleet's long-run budget: the task budgets summed over tasks and rounds (the cloud's
            # re-allocation moves budget between tasks but keeps this sum)
            "total_budget_j": float(np.sum(self.round_budget_j)),
            "energy_ratio": energy_ratio(float(np.sum(self.round_energy_j)), float(np.sum(self.round_budget_j))),
            "budget_violation_rate": float(np.mean(viol)) if viol else 0.0,
            "vehicle_violation_rate": self.vehicle_violations / max(self.vehicle_active_rounds, 1),
            "cumulative_reward": float(np.sum(self.round_reward)),
            "action_corrections": self.corrections,
            # what a policy actually ran: fedavg truncates a task to its smallest executed rank, so a fixed-rank
            # baseline can run far below its name (HomoLoRA "rank 8" runs rank 1 in most of scale-90)
            "median_executed_rank": float(np.median(self.executed_ranks)) if self.executed_ranks else float("nan"),
            "faults": dict(self.faults),
            "task_accuracy": acc.tolist(),
            "task_latency_s": self.task_latency_s,
            "round_latency_s": self.round_latency_s,
            "round_energy_j": self.round_energy_j,
            "round_budget_j": self.round_budget_j,
            "round_reward": self.round_reward,
            "rank_trace": self.rank_trace,
            "dual_price_trace": self.dual_price_trace,
        }


def energy_ratio(used: float, budget: float) -> float:
    """Energy used / the budget, NaN when no budget was reported: the one definition every record and score uses."""
    return used / budget if budget > 0 else float("nan")


def executed_action(info: Mapping[str, Any], chosen: int, rank_set: Sequence[int]) -> int:
    """Index of the rank the env actually ran (its correction of an infeasible choice), else the choice."""
    rank = info.get("rank")
    if info.get("active", False) and rank in rank_set:
        return list(rank_set).index(rank)
    return int(chosen)


def agent_seeds(seed: int, n: int) -> list[int]:
    """Independent per-vehicle agent seeds derived from the episode seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence([seed, 0xA6E17]).spawn(n)]


def env_config_for(agent: Agent, env_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The env kwargs for ``agent``: its implied overrides, then the caller's explicit ones on top."""
    return {**agent.implied_env_overrides(), **dict(env_kwargs or {})}


def run_decentralized(
    make_agent: Callable[[], Agent],
    env_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    record_states: bool = False,
) -> dict[str, Any]:
    """One episode on the PettingZoo env with one ``make_agent()`` instance per vehicle; returns the summary."""
    import iov_env
    from iov_env.envs.parallel import observation_layout

    probe = make_agent()
    kwargs = env_config_for(probe, env_kwargs)
    env = iov_env.parallel_env(**kwargs)
    try:
        cfg = env.unwrapped.config
        ids = list(env.possible_agents)
        rank_set = tuple(cfg.learning.rank_set)
        layout = observation_layout(cfg)
        agents: dict[str, Agent] = {}
        seen: set[int] = set()
        for i, a in enumerate(ids):
            ag = probe if i == 0 else make_agent()
            if id(ag) in seen:  # a factory that hands out one shared object: give each vehicle its own copy
                ag = copy.deepcopy(ag)
            seen.add(id(ag))
            ag.bind(AgentContext(rank_set, layout, a, i, len(ids), cfg, env))
            agents[a] = ag
        obs, infos = env.reset(seed=seed)
        for a, s in zip(ids, agent_seeds(seed, len(ids)), strict=True):
            agents[a].reset(s)
        rec = EpisodeRecorder(ids, cfg.tasks.tasks, rank_set)
        while env.agents:
            live = list(env.agents)
            actions = {a: int(agents[a].act(obs[a], _mask(obs[a], infos[a]), infos[a])) for a in live}
            obs, rewards, terms, truncs, infos = env.step(actions)
            for a in live:
                info = infos[a]
                agents[a].update(executed_action(info, actions[a], rank_set), rewards[a], info.get("cost", 0.0), info)
            rec.record(rewards, infos, env)
            if all(terms[a] or truncs[a] for a in live):
                break
        out = rec.summary()
        out.update(_header(probe, kwargs, seed, "decentralized"))
        if record_states:
            out["agent_states"] = {a: agents[a].state() for a in ids}
        else:
            out["agent_state_vehicle_0"] = agents[ids[0]].state()
        return out
    finally:
        env.close()


def run_centralized(agent: Agent, env: Any, seed: int = 0, *, record_states: bool = False) -> dict[str, Any]:
    """One episode on the Gymnasium centralized view (MultiDiscrete ranks); per-vehicle agents are copied N times."""
    from iov_env.envs.parallel import observation_layout

    base = env.unwrapped
    cfg = base.config
    n = cfg.num_vehicles
    ids = [f"vehicle_{i}" for i in range(n)]
    rank_set = tuple(cfg.learning.rank_set)
    layout = observation_layout(cfg)
    # the joint view knows its env already; declared overrides can only be checked, not applied
    implied = agent.implied_env_overrides()
    mismatched = {k: v for k, v in implied.items() if _config_value(cfg, k) not in (v, None)}
    if agent.centralized:
        agent.bind(AgentContext(rank_set, layout, "all", -1, n, cfg, env))
        agent.reset(seed)
        members: list[Agent] = []
    else:
        members = [copy.deepcopy(agent) for _ in range(n)]
        for i, (m, s) in enumerate(zip(members, agent_seeds(seed, n), strict=True)):
            m.bind(AgentContext(rank_set, layout, ids[i], i, n, cfg, env))
            m.reset(s)
    obs, info = env.reset(seed=seed)
    rec = EpisodeRecorder(ids, cfg.tasks.tasks, rank_set)
    done = False
    while not done:
        masks = np.asarray(info["action_mask"])
        per = _per_agent_infos(info, ids)
        if agent.centralized:
            joint = np.asarray(agent.act(obs, masks, info), dtype=np.int64)
        else:
            vec = np.asarray(obs["observation"] if isinstance(obs, Mapping) else obs).reshape(n, -1)
            joint = np.array([m.act(vec[i], masks[i], per[ids[i]]) for i, m in enumerate(members)], dtype=np.int64)
        obs, reward, terminated, truncated, info = env.step(joint)
        per = _per_agent_infos(info, ids)
        rewards = {a: _agent_reward(per[a]) for a in ids}
        if agent.centralized:
            agent.update(joint, float(reward), float(info.get("cost", 0.0)), info)
        else:
            for i, m in enumerate(members):
                pa = per[ids[i]]
                m.update(executed_action(pa, int(joint[i]), rank_set), rewards[ids[i]], pa.get("cost", 0.0), pa)
        rec.record(rewards, per, env)
        done = bool(terminated or truncated)
    out = rec.summary()
    out.update(_header(agent, {}, seed, "centralized"))
    out["config_mismatch"] = mismatched
    if record_states:
        out["agent_states"] = [m.state() for m in members] if members else [agent.state()]
    return out


def _mask(obs: Any, info: Mapping[str, Any]) -> np.ndarray:
    """The action mask from the info (vector obs) or the dict observation."""
    if "action_mask" in info:
        return np.asarray(info["action_mask"])
    return np.asarray(obs["action_mask"])


def _per_agent_infos(info: Mapping[str, Any], ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    """info["agents"] as agent id -> dict, whether the view gives a mapping or a list."""
    agents = info.get("agents", {})
    if isinstance(agents, Mapping):
        return {a: agents.get(a, {}) for a in ids}
    return {a: agents[i] if i < len(agents) else {} for i, a in enumerate(ids)}


def _agent_reward(info: Mapping[str, Any]) -> float:
    """A vehicle's reward on the joint view: ``info["reward"]`` if present, else the sum of its reward terms."""
    if "reward" in info:
        return float(info["reward"])
    return float(sum(info.get("rewards", {}).values())) if info.get("active", False) else 0.0


def _config_value(cfg: Any, name: str) -> Any:
    """A flat config field's value (None when unknown)."""
    for section in ("learning", "energy", "episode", "tasks", "rsu", "channel", "compute", "mobility", "map"):
        sec = getattr(cfg, section, None)
        if sec is not None and hasattr(sec, name):
            return getattr(sec, name)
    return getattr(cfg, name, None)


def _header(agent: Agent, env_kwargs: Mapping[str, Any], seed: int, mode: str) -> dict[str, Any]:
    """Who ran, where, how."""
    return {"agent": agent.name, "seed": int(seed), "mode": mode, "env_kwargs": dict(env_kwargs)}
