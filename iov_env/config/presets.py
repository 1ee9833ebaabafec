"""Named worlds: the presets (``tiny``, ``paper``, ``city``) and the LoRA regimes, as config overrides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iov_env.config.errors import ConfigError

if TYPE_CHECKING:
    from iov_env.config.schema import IoVConfig


# -- LoRA regimes ----------------------------------------------------------------------------------
# Named fine-tuning recipes with a measured calibration of the fast world (benchmarks/studies/rank.py and
# benchmarks/studies/calibration.py; README "Rank that matters"). Pass one as overrides: preset("paper", **LORA_REGIMES[k]).
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
    from iov_env.config.schema import IoVConfig  # schema imports this module at its top

    return IoVConfig.from_kwargs(preset=name, **overrides)
