"""Configuration as data: frozen dataclasses, named presets, and one validation pass.

Defaults follow the paper's system model. Every field name is unique across sections so that a flat
keyword such as ``num_vehicles=100`` or ``rsu_bandwidth_hz=2e6`` overrides the right field, the
same way in ``parallel_env(...)``, ``env(...)`` and ``gym.make(...)``.

The package is split along its seams, and every name is re-exported here:

- ``schema``: the section dataclasses and ``IoVConfig`` (construction, flattening, overrides);
- ``presets``: named worlds and LoRA regimes;
- ``limits``: each numeric field's interval and the ``MAX_*`` bounds on one step's work;
- ``validation``: the one ``validate`` pass;
- ``file_io``: YAML/JSON config files;
- ``errors``: ``ConfigError`` and message formatting.
"""

from iov_env.config.errors import ConfigError
from iov_env.config.limits import (
    DEFAULT_FLOAT_LIMIT,
    DEFAULT_INT_LIMIT,
    LIMITS,
    MAX_CONFIG_FILE_BYTES,
    MAX_ITEMS,
    MAX_MOBILITY_SUBSTEPS,
    MAX_NESTING,
    MAX_PAIRS,
    MAX_ROUNDS,
    MAX_RSUS,
    MAX_STR_CHARS,
    MAX_SUMO_JUNCTIONS,
    MAX_SUMO_STEPS,
    MAX_SUMO_VEHICLES,
    MAX_TRACE_CELLS,
    MAX_VEHICLE_SUBSTEPS,
    MAX_VEHICLES,
    Limit,
    mobility_substeps,
)
from iov_env.config.presets import (
    DEFAULT_LORA_REGIME,
    LEGACY_V0_OVERRIDES,
    LORA_REGIMES,
    PRESETS,
    PRESETS_OVERRIDES,
    lora_regime,
    preset,
)
from iov_env.config.schema import (
    AGGREGATIONS,
    ALL_LINEAR,
    ENGINES,
    FIELD_SECTION,
    KNOWN_TASKS,
    LORA_SCALINGS,
    LORA_TARGET_LEAVES,
    MODEL_ALIASES,
    PRECISIONS,
    RAY_ENGINES,
    SECTIONS,
    ChannelConfig,
    ComputeConfig,
    EnergyConfig,
    EpisodeConfig,
    IoVConfig,
    LearningConfig,
    MapConfig,
    MobilityConfig,
    RSUConfig,
    TaskConfig,
)
from iov_env.config.validation import is_local_path

__all__ = [
    "AGGREGATIONS", "ALL_LINEAR", "DEFAULT_FLOAT_LIMIT", "DEFAULT_INT_LIMIT", "DEFAULT_LORA_REGIME", "ENGINES",
    "FIELD_SECTION", "KNOWN_TASKS", "LEGACY_V0_OVERRIDES", "LIMITS", "LORA_REGIMES", "LORA_SCALINGS", "LORA_TARGET_LEAVES", "MODEL_ALIASES",
    "MAX_CONFIG_FILE_BYTES", "MAX_ITEMS", "MAX_MOBILITY_SUBSTEPS", "MAX_NESTING", "MAX_PAIRS", "MAX_ROUNDS",
    "MAX_RSUS", "MAX_STR_CHARS", "MAX_SUMO_JUNCTIONS", "MAX_SUMO_STEPS", "MAX_SUMO_VEHICLES", "MAX_TRACE_CELLS",
    "MAX_VEHICLE_SUBSTEPS", "MAX_VEHICLES", "PRECISIONS", "PRESETS", "PRESETS_OVERRIDES", "RAY_ENGINES", "SECTIONS",
    "ChannelConfig", "ComputeConfig", "ConfigError", "EnergyConfig", "EpisodeConfig", "IoVConfig",
    "LearningConfig", "Limit", "MapConfig", "MobilityConfig", "RSUConfig", "TaskConfig", "lora_regime",
    "mobility_substeps", "is_local_path", "preset",
]
