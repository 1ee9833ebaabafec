"""PettingZoo ParallelEnv: each vehicle picks its LoRA rank every federated round.

Observation layout (one ``Box`` float32 vector per vehicle, the single source of truth is
``observation_features``; ``observation_layout(config)`` maps names to slices):

==================== ====== ===========================================================
name                 size   value
==================== ====== ===========================================================
task_onehot          K      one-hot of the vehicle's fine-tuning task
uplink_rate          1      log10(1 + uplink rate in bit/s) / 10 (0 outside coverage)
dwell_time           1      predicted time before leaving the RSU, in rounds (cap 10)
compute_capability   1      CPU clock / cpu_freq_max_hz
energy_remaining     1      remaining battery / vehicle_energy_j
dual_price           1      the RSU's current dual price of the task's energy (cap 100)
budget_share         1      this round's per-vehicle energy budget / energy_budget_j_per_vehicle_round (cap 10)
last_accuracy        1      last round's local validation metric in [0, 1]
last_latency         1      last round's latency / round_duration_s (cap 10)
last_energy          1      last round's energy / energy_budget_j_per_vehicle_round (cap 10)
last_rank            1      last executed rank index / (|R| - 1)
data_size            1      local shard size / shard_size_max
active               1      1 if the vehicle can train this round, else 0
round_progress       1      round index / rounds
==================== ====== ===========================================================

Rewards, costs and per-agent ``info`` keys follow docs/design.md ("RL interface"); docs/environment.md lists them. Timing: after
``step()``, ``info[a]["active"]``, the reward, ``cost`` and the other metrics describe the round just
executed, while the observation (its ``active`` entry) and ``info[a]["action_mask"]`` describe the
next decision. After ``reset()``, ``info[a]["active"]`` describes the first round.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from iov_env.config import ConfigError, IoVConfig
from iov_env.envs import infos as _infos
from iov_env.envs.infos import ReadOnlyDict
from iov_env.lazy import lazy_import
from iov_env.sim.simulator import (
    IoVSimulator,
    NonFiniteError,
    ResetNeeded,
    RoundMetrics,
    largest_feasible_at_or_below,
)

OBS_CAP = 10.0
kernels = lazy_import("iov_env.envs.kernels")  # compiled loops: numba loads on first use, not with iov_env

# the action-correction rule is part of the API: agents mirror it to know what the env will execute
__all__ = [
    "IoVParallelEnv", "NonFiniteError", "ReadOnlyDict", "ResetNeeded", "largest_feasible_at_or_below", "observation_bounds",
    "observation_features", "observation_layout", "parallel_env", "resolve_config", "validate_actions",
]


def observation_features(config: IoVConfig) -> list[tuple[str, int, float, float]]:
    """(name, size, low, high) of each observation block, in order."""
    return [
        ("task_onehot", config.num_tasks, 0.0, 1.0),
        ("uplink_rate", 1, 0.0, 2.0),
        ("dwell_time", 1, 0.0, OBS_CAP),
        ("compute_capability", 1, 0.0, 1.0),
        ("energy_remaining", 1, 0.0, 1.0),
        ("dual_price", 1, 0.0, 100.0),
        ("budget_share", 1, 0.0, OBS_CAP),
        ("last_accuracy", 1, 0.0, 1.0),
        ("last_latency", 1, 0.0, OBS_CAP),
        ("last_energy", 1, 0.0, OBS_CAP),
        ("last_rank", 1, 0.0, 1.0),
        ("data_size", 1, 0.0, 1.0),
        ("active", 1, 0.0, 1.0),
        ("round_progress", 1, 0.0, 1.0),
    ]


def observation_layout(config: IoVConfig) -> dict[str, slice]:
    """Feature name -> slice of the per-vehicle observation vector."""
    out, start = {}, 0
    for name, size, _, _ in observation_features(config):
        out[name] = slice(start, start + size)
        start += size
    return out


def observation_bounds(config: IoVConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension low and high of the observation vector."""
    lows, highs = [], []
    for _, size, lo, hi in observation_features(config):
        lows += [lo] * size
        highs += [hi] * size
    return np.asarray(lows, dtype=np.float32), np.asarray(highs, dtype=np.float32)


ConfigLike = IoVConfig | Mapping[str, Any] | str | os.PathLike | None


def resolve_config(config: ConfigLike = None, **overrides: Any) -> IoVConfig:
    """One way to build a config everywhere: an IoVConfig, a mapping, a YAML/JSON path (str or os.PathLike),
    or ``None`` for preset + keywords; keywords override on top. Anything else is a ``TypeError``."""
    if config is None:
        preset = overrides.pop("preset", None)
        return IoVConfig.from_kwargs(preset=preset, **overrides)
    if isinstance(config, Mapping):
        return IoVConfig.from_dict({**config, **overrides})
    if isinstance(config, IoVConfig) or isinstance(config, (str, os.PathLike)):
        if "preset" in overrides:
            raise ConfigError(
                f"preset={overrides['preset']!r} cannot be combined with config={type(config).__name__}: that config "
                "is already complete; allowed: put the preset in the config file/mapping, or pass no config",
                "preset",
            )
        cfg = config if isinstance(config, IoVConfig) else IoVConfig.from_file(config)
        return cfg.replace(**overrides) if overrides else cfg
    raise TypeError(
        f"config={config!r:.60} ({type(config).__name__}); allowed: an IoVConfig, a mapping of config fields, "
        "a YAML/JSON file path (str or os.PathLike), or None"
    )


def validate_actions(actions: Any, agents: list[str], num_ranks: int) -> np.ndarray:
    """Rank indices from an agent->action mapping; clear errors for missing agents, wrong types, bad ranges."""
    if not hasattr(actions, "items"):
        raise TypeError(f"actions must be a dict agent -> rank index, got {type(actions).__name__}")
    if len(actions) != len(agents) or not all(map(actions.__contains__, agents)):
        index = set(agents)
        unknown = [a for a in actions if a not in index]
        if unknown:
            raise ValueError(f"actions for unknown or finished agents {unknown[:5]}; allowed agents: {agents[:3]}...")
        missing = [a for a in agents if a not in actions]
        raise ValueError(f"actions missing for agents {missing[:5]} ({len(missing)} in all); every live agent must act")
    values = list(map(actions.__getitem__, agents))
    # one type check per distinct type (not per agent): bool is refused, Python and numpy integers pass
    if all(t is int or issubclass(t, np.integer) for t in set(map(type, values))):
        arr = np.asarray(values)
        if arr.dtype.kind in "iu" and arr.shape == (len(agents),) and (
                len(agents) == 0 or (arr.min() >= 0 and arr.max() < num_ranks)):
            return arr.astype(np.int64, copy=False)
    # slow path only to name the offending agent precisely
    return np.asarray([_as_rank_index(v, num_ranks, a) for a, v in zip(agents, values, strict=True)], dtype=np.int64)


def _as_rank_index(action: Any, num_ranks: int, who: str) -> int:
    """One action as an int in [0, num_ranks); TypeError for non-integers, ValueError out of range."""
    if isinstance(action, np.ndarray) and action.shape == () or isinstance(action, np.generic):
        action = action.item()
    if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
        raise TypeError(
            f"action for {who} is {action!r} ({type(action).__name__}); allowed: an integer rank index in [0, {num_ranks - 1}]"
        )
    if not 0 <= action < num_ranks:
        raise ValueError(f"action for {who} is {action}; allowed: rank index in [0, {num_ranks - 1}]")
    return int(action)


class IoVParallelEnv(ParallelEnv):
    """Decentralised view: one agent per vehicle, ``Discrete(|R|)`` rank actions, utility rewards, energy costs."""

    metadata = {"name": "iov_rank_v0", "render_modes": ["rgb_array", "ansi"], "is_parallelizable": True, "render_fps": 2}

    def __init__(self, config: ConfigLike = None, render_mode: str | None = None, **overrides: Any) -> None:
        self.config = resolve_config(config, **overrides)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}; allowed: {self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self.simulator = IoVSimulator(self.config)
        n = self.config.num_vehicles
        self.possible_agents = [f"vehicle_{i}" for i in range(n)]
        self.agents: list[str] = []
        self.obs_type = self.config.episode.obs_type
        low, high = observation_bounds(self.config)
        self._low, self._high = low, high
        box = spaces.Box(low, high, dtype=np.float32)
        if self.obs_type == "dict":
            mask_space = spaces.Box(0, 1, (self.config.num_ranks,), dtype=np.int8)
            obs_space: spaces.Space = spaces.Dict({"observation": box, "action_mask": mask_space})
        else:
            obs_space = box
        self._obs_spaces = {a: obs_space for a in self.possible_agents}
        self._act_spaces = {a: spaces.Discrete(self.config.num_ranks) for a in self.possible_agents}
        self.state_space = spaces.Box(np.tile(low, n), np.tile(high, n), dtype=np.float32)
        self._seed_rng = np.random.default_rng()
        self._layout = observation_layout(self.config)
        self.last_round: RoundMetrics | None = None
        self._obs_cols: np.ndarray | None = None  # (N, D) features; per-episode columns filled at reset
        self._round_columns: np.ndarray | None = None  # column of each kernels.ROUND_FEATURES entry, from the layout

    # PettingZoo requires the same space object on every call
    def observation_space(self, agent: str) -> spaces.Space:
        """The observation space of ``agent``."""
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        """The action space of ``agent``: an index into ``config.learning.rank_set``."""
        return self._act_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """New episode; ``seed`` fixes mobility, channel, partitions and learning."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise TypeError(f"seed={seed!r:.60}; allowed: a non-negative integer or None")
        if seed is not None:
            self._seed_rng = np.random.default_rng(seed)
            episode_seed = int(seed)
        else:
            episode_seed = int(self._seed_rng.integers(2**31 - 1))
        for sp in self._act_spaces.values():
            sp.seed(int(self._seed_rng.integers(2**31 - 1)))
        self.simulator.reset(episode_seed)
        self._obs_cols = None  # the new episode's fleet fills it afresh
        self.agents = list(self.possible_agents)
        self.last_round = None
        obs_matrix = self._observation_matrix()
        masks = self._masks()
        return self._per_agent_obs(obs_matrix, masks), self._infos(None, masks)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One federated round: every live agent's rank index in, per-agent utilities and infos out."""
        self.simulator.require_reset("step()")
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset()")
        idx = validate_actions(actions, self.agents, self.config.num_ranks)
        m = self.simulator.step(idx)
        self.last_round = m
        obs_matrix = self._observation_matrix()
        truncated = self.simulator.done
        agents = self.agents
        rewards = dict(zip(agents, m.reward.tolist(), strict=True))
        terms = dict.fromkeys(agents, False)
        truncs = dict.fromkeys(agents, truncated)
        masks = self._masks()
        obs = self._per_agent_obs(obs_matrix, masks)
        infos = self._infos(m, masks)
        if truncated:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def action_masks(self) -> np.ndarray:
        """Feasible ranks for the next decision, one int8 row per vehicle in ``possible_agents`` order.

        The same masks as ``info[a]["action_mask"]`` (and the dict observation's ``"action_mask"``), for
        vectorising wrappers (SuperSuit, RLlib) that keep one slot per vehicle: row ``i`` belongs to
        ``vehicle_i``. Every row allows at least the smallest rank.
        """
        self.simulator.require_reset("action_masks()")
        return self.simulator.state.mask.astype(np.int8)

    def state(self) -> np.ndarray:
        """Global state: all vehicles' observation vectors, concatenated."""
        self.simulator.require_reset("state()")
        return self._observation_matrix().reshape(-1)

    def render(self) -> np.ndarray | str | None:
        """``rgb_array``: map of RSU coverage and vehicles; ``ansi``: a text summary."""
        from iov_env import render as _render

        if self.render_mode is not None:
            self.simulator.require_reset("render()")
        if self.render_mode == "rgb_array":
            return _render.render_rgb(self.simulator, self.last_round)
        if self.render_mode == "ansi":
            return _render.render_ansi(self.simulator, self.last_round)
        return None

    def close(self) -> None:
        """Release the learning backend."""
        self.simulator.close()

    # -- formatting ---------------------------------------------------------------------------
    def _observation_matrix(self) -> np.ndarray:
        sim, cfg, st = self.simulator, self.config, self.simulator.state
        uplink = self._layout["uplink_rate"].start
        cols = self._obs_static(sim)
        np.log10(1.0 + st.uplink_bps, out=cols[:, uplink])
        cols[:, uplink] /= 10.0
        if self._round_columns is None:
            self._round_columns = np.array([self._layout[f].start for f in kernels.ROUND_FEATURES], dtype=np.int64)
        out, finite = kernels.observation_rows(
            cols, self._round_columns, st.dwell_s, float(cfg.mobility.round_duration_s), sim.energy_remaining_j,
            float(cfg.energy.vehicle_energy_j), sim.dual_price, sim.vehicle_task, st.budget_j,
            float(cfg.energy.energy_budget_j_per_vehicle_round), sim.last_accuracy, sim.last_latency_s,
            sim.last_energy_j, sim.last_rank_index, max(cfg.num_ranks - 1, 1), st.active,
            min(sim.round_index / cfg.episode.rounds, 1.0), self._low, self._high,
        )
        if not finite:
            # validation keeps every input finite: this is a bug, not a case to mask
            bad = [name for name, sl in self._layout.items() if not np.isfinite(cols[:, sl]).all()]
            raise NonFiniteError(f"round {sim.round_index}: observation features {bad} became non-finite; "
                                 "the config should have been refused by validation, please report it")
        return out

    def _obs_static(self, sim: IoVSimulator) -> np.ndarray:
        """The feature matrix, whose per-episode columns (task one-hot, compute, data size) are filled once per reset."""
        if self._obs_cols is None:
            cfg, at = self.config, self._layout
            n = cfg.num_vehicles
            cols = np.zeros((n, len(self._low)), dtype=np.float64)
            cols[np.arange(n), at["task_onehot"].start + sim.vehicle_task] = 1.0
            cols[:, at["compute_capability"].start] = sim.cpu_freq_hz / cfg.compute.cpu_freq_max_hz
            cols[:, at["data_size"].start] = sim.shard_size / cfg.tasks.shard_size_max
            self._obs_cols = cols
        return self._obs_cols

    def _masks(self) -> np.ndarray:
        """The next decision's masks as one read-only int8 array, shared by the infos and dict observations."""
        return _infos.read_only(self.simulator.state.mask.astype(np.int8))

    def _per_agent_obs(self, obs_matrix: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
        # read-only rows of one fresh matrix: cheap to hand out, and no reader can change another's
        rows = _infos.read_only(obs_matrix)
        agents = self.agents
        if self.obs_type == "dict":
            return {a: ReadOnlyDict(observation=o, action_mask=k) for a, o, k in zip(agents, rows, masks, strict=True)}
        return dict(zip(agents, rows, strict=True))

    def _infos(self, m: RoundMetrics | None, masks: np.ndarray) -> dict[str, dict[str, Any]]:
        """Per-agent infos of the round ``m`` (``None``: after reset), each a lazy read-only dict (``envs.infos``)."""
        sim, tasks = self.simulator, self.config.tasks.tasks
        if m is None:  # after reset: nothing executed yet
            return _infos.reset_infos(self.agents, masks, tasks, sim.vehicle_task, sim.state.active, sim.state.budget_j,
                                      sim.dual_price)
        return _infos.step_infos(self.agents, masks, tasks, sim.vehicle_task, m)


def parallel_env(**kwargs: Any) -> IoVParallelEnv:
    """PettingZoo parallel environment: ``parallel_env(preset="tiny", num_vehicles=100)``."""
    return IoVParallelEnv(**kwargs)
