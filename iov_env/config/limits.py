"""Every numeric field's allowed interval, and the bounds on one step's work (the ``MAX_*`` constants).

The docs' limits table is generated from ``LIMITS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from iov_env.config.errors import format_number


@dataclass(frozen=True)
class Limit:
    """The closed interval ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``) a numeric field must lie in."""

    lo: float
    hi: float
    lo_open: bool = False
    note: str = ""

    def contains(self, v: float) -> bool:
        """Whether ``v`` lies inside (ints of any size compare exactly, without overflow)."""
        return (self.lo < v if self.lo_open else self.lo <= v) and v <= self.hi

    def describe(self) -> str:
        """``[lo, hi]`` or ``(lo, hi]``, plus the note."""
        text = f"{'(' if self.lo_open else '['}{format_number(self.lo)}, {format_number(self.hi)}]"
        return f"{text}; {self.note}" if self.note else text


# Bounds on one step's work: each is a documented limit (README "Validation limits").
MAX_VEHICLES = 100_000
MAX_RSUS = 10_000
MAX_PAIRS = 10_000_000  # vehicle-RSU distances and vehicle-rank cost tables computed per round
MAX_MOBILITY_SUBSTEPS = 1_000  # grid mobility sub-steps per round (no sub-step crosses more than one block)
MAX_VEHICLE_SUBSTEPS = 10_000_000  # vehicles x sub-steps per round
MAX_ROUNDS = 10**9
MAX_STR_CHARS = 4096
MAX_ITEMS = 100_000  # entries in one list-valued field (nested lists counted in full)
MAX_NESTING = 2  # list depth of any field (rsu_positions_m is a list of pairs)
MAX_CONFIG_FILE_BYTES = 2**20
MAX_SUMO_STEPS = 10_000_000  # SUMO steps of one episode's run (warm-up + rounds), simulated at reset
MAX_SUMO_VEHICLES = 100_000
MAX_SUMO_JUNCTIONS = 100_000  # junctions of the grid network generated for SUMO  # randomTrips demand: vehicles on the road at once
MAX_TRACE_CELLS = 10**8  # (rounds + 1) x vehicles samples a replayed SUMO trace holds per array

# Every number's allowed interval. Beyond keeping values physical, the bounds keep every product the
# simulator forms (energy = kappa f^2 cycles, rewards, budgets x vehicles) finite: the property test
# in tests/robustness checks that any accepted config yields finite observations, rewards and infos.
LIMITS: dict[str, Limit] = {
    "num_vehicles": Limit(1, MAX_VEHICLES),
    "width_m": Limit(1.0, 1e6),
    "height_m": Limit(1.0, 1e6),
    "road_spacing_m": Limit(0.0, 1e6, lo_open=True),
    "speed_min_mps": Limit(0.0, 100.0, lo_open=True),
    "speed_max_mps": Limit(0.0, 100.0, lo_open=True),
    "turn_probability": Limit(0.0, 1.0),
    "round_duration_s": Limit(1e-3, 1e6),
    "tdrive_max_speed_mps": Limit(0.0, 1000.0, lo_open=True),
    "tdrive_scale": Limit(0.0, 1000.0, lo_open=True),
    "sumo_vehicles_per_agent": Limit(0.1, 100.0),
    "sumo_warmup_s": Limit(0.0, 86_400.0),
    "sumo_step_length_s": Limit(1e-3, 1e6, note="and at most round_duration_s"),
    "sumo_trace_pool": Limit(0, 10**6, note="0: every episode seed draws its own traffic"),
    "num_rsus": Limit(1, MAX_RSUS),
    "coverage_radius_m": Limit(0.0, 1e7, lo_open=True),
    "rsu_min_spacing_m": Limit(1e-3, 1e6),
    "aggregation_latency_s": Limit(0.0, 1e6),
    "rsu_bandwidth_hz": Limit(1.0, 1e12),
    "noise_psd_dbm_per_hz": Limit(-250.0, 0.0),
    "noise_figure_db": Limit(0.0, 30.0),
    "pathloss_intercept_db": Limit(0.0, 300.0),
    "pathloss_slope_db_per_decade": Limit(0.0, 100.0),
    "vehicle_tx_power_w": Limit(0.0, 1e6, lo_open=True),
    "rsu_tx_power_w": Limit(0.0, 1e6, lo_open=True),
    "min_distance_m": Limit(1e-3, 1e6),
    "cpu_freq_min_hz": Limit(1.0, 1e11),
    "cpu_freq_max_hz": Limit(1.0, 1e11),
    "flops_per_cycle": Limit(1e-3, 1e6),
    "kappa_j_per_cycle_hz2": Limit(0.0, 1e-20, lo_open=True),
    "memory_min_mb": Limit(0.0, 1e7, lo_open=True),
    "memory_max_mb": Limit(0.0, 1e7, lo_open=True),
    "shard_size_min": Limit(1, 10**7),
    "shard_size_max": Limit(1, 10**7),
    "dirichlet_alpha": Limit(1e-3, 1e6),
    "local_val_fraction": Limit(0.05, 0.5),
    "energy_budget_j_per_vehicle_round": Limit(1e-6, 1e9),
    "vehicle_energy_j": Limit(1e-6, 1e12),
    "realloc_period_rounds": Limit(1, MAX_ROUNDS),
    "realloc_stop_round": Limit(0, MAX_ROUNDS),
    "difficulty_smoothing": Limit(0.0, 1.0),
    "difficulty_exponent": Limit(0.0, 10.0),
    "budget_floor_fraction": Limit(0.0, 1.0),
    "budget_cap_fraction": Limit(0.0, 1.0, lo_open=True, note="below 1/num_tasks it acts as 1/num_tasks"),
    "dual_step_size": Limit(0.0, 1e3),
    "lora_alpha": Limit(0.0, 1e6, lo_open=True),
    "lora_dropout": Limit(0.0, 0.9),
    "head_lr_scale": Limit(0.0, 1e3, note="0 freezes the task head"),
    "local_steps": Limit(1, 100_000),
    "batch_size": Limit(1, 65_536),
    "learning_rate": Limit(1e-7, 1.0),
    "max_seq_len": Limit(8, 512),
    "eval_subset_size": Limit(1, 10**7),
    "model_hidden_dim": Limit(8, 16_384),
    "model_num_layers": Limit(1, 256),
    "model_intermediate_dim": Limit(8, 65_536),
    "layer_fraction": Limit(1e-6, 1.0),
    "engine_group_size": Limit(1, 4096),
    "ray_actors": Limit(0, 4096, note="0: one per GPU, or one per torch_threads cores of the Ray cluster"),
    "torch_threads": Limit(0, 1024, note="0 follows OMP_NUM_THREADS / torch's default"),
    "head_dropout": Limit(0.0, 0.9),
    "base_dropout": Limit(-1.0, 0.9, note="-1 keeps the base model's own dropout"),
    "rounds": Limit(1, MAX_ROUNDS),
    "accuracy_weight": Limit(0.0, 1e6),
    "latency_weight": Limit(0.0, 1e6),
    "energy_weight": Limit(0.0, 1e6),
    "lagrangian_weight": Limit(0.0, 1e6),
    "fault_latency_weight": Limit(0.0, 1e6),
    "fault_energy_weight": Limit(0.0, 1e6),
    "fault_accuracy_weight": Limit(0.0, 1e6),
    "history_rounds": Limit(0, MAX_ROUNDS, note="0 keeps every round"),
}
# a numeric field without an entry above (a new field) still gets a bound that keeps arithmetic finite
DEFAULT_INT_LIMIT = Limit(-(10**9), 10**9)
DEFAULT_FLOAT_LIMIT = Limit(-1e15, 1e15)


def mobility_substeps(speed_max_mps: float, duration_s: float, spacing_m: float) -> int:
    """Sub-steps grid mobility takes to cover ``duration_s``, so that no sub-step crosses more than one block."""
    ratio = speed_max_mps * duration_s / spacing_m if spacing_m > 0 else math.inf
    if not ratio < 2.0**62:  # inf or astronomically many: report a number, never raise OverflowError
        return 2**62
    return max(1, math.ceil(ratio))

