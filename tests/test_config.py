"""IoVConfig: validation names the bad field, presets, overrides, files, round trips, random configs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import iov_env
from iov_env.config import FIELD_SECTION, PRESETS, SECTIONS, ConfigError, IoVConfig, preset

# (flat overrides on the tiny preset, substring the ConfigError message must contain)
INVALID: list[tuple[dict, str]] = [
    # top level and map
    ({"num_vehicles": 0}, "num_vehicles"),
    ({"num_vehicles": -3}, "num_vehicles"),
    ({"width_m": -1.0}, "width_m"),
    ({"height_m": 0.0}, "height_m"),
    # mobility
    ({"mobility_model": "bus"}, "mobility_model"),
    ({"road_spacing_m": 0.0}, "road_spacing_m"),
    ({"road_spacing_m": 700.0}, "road_spacing_m"),  # tiny map is 1000 x 600
    ({"speed_min_mps": 0.0}, "speed_min_mps"),
    ({"speed_max_mps": 5.0}, "speed_max_mps"),  # below speed_min_mps = 8
    ({"speed_max_mps": 150.0}, "speed_max_mps"),
    ({"turn_probability": 1.5}, "turn_probability"),
    ({"turn_probability": -0.1}, "turn_probability"),
    ({"round_duration_s": 0.0}, "round_duration_s"),
    ({"tdrive_max_speed_mps": -1.0}, "tdrive_max_speed_mps"),
    ({"tdrive_scale": 0.0}, "tdrive_scale"),
    ({"sumo_net_file": "city.osm"}, "sumo_net_file"),
    ({"sumo_route_file": "trips.csv"}, "sumo_route_file"),
    ({"sumo_vehicles_per_agent": 0.0}, "sumo_vehicles_per_agent"),
    ({"sumo_warmup_s": -1.0}, "sumo_warmup_s"),
    ({"sumo_step_length_s": 0.0}, "sumo_step_length_s"),
    ({"mobility_model": "sumo", "sumo_step_length_s": 60.0}, "sumo_step_length_s"),  # longer than a 30 s round
    ({"mobility_model": "sumo", "rounds": 10**6}, "rounds"),  # 3x10^7 SUMO steps at reset
    ({"mobility_model": "sumo", "road_spacing_m": 1.0}, "road_spacing_m"),  # a 600,000-junction grid
    ({"mobility_model": "sumo", "num_vehicles": 10**4, "sumo_vehicles_per_agent": 50.0}, "sumo_vehicles_per_agent"),
    ({"sumo_trace_pool": 10**7}, "sumo_trace_pool"),
    ({"head_lr_scale": 1e308}, "head_lr_scale"),
    ({"target_modules": ("all-linear", "query")}, "target_modules"),
    ({"sumo_backend": "veins"}, "sumo_backend"),
    ({"sumo_trace_pool": -1}, "sumo_trace_pool"),
    # rsu
    ({"num_rsus": 0}, "num_rsus"),
    ({"num_rsus": 61}, "num_rsus"),  # 10 x 6 cells of 100 m fit a 1000 x 600 map
    ({"num_rsus": 2, "rsu_min_spacing_m": 700.0}, "num_rsus"),  # fit = 1 x 0 = 0
    ({"rsu_placement": "ring"}, "rsu_placement"),
    ({"coverage_radius_m": 0.0}, "coverage_radius_m"),
    ({"rsu_min_spacing_m": -5.0}, "rsu_min_spacing_m"),
    ({"aggregation_latency_s": -0.1}, "aggregation_latency_s"),
    ({"rsu_placement": "explicit", "rsu_positions_m": ((100.0, 100.0),)}, "rsu_positions_m"),
    ({"rsu_placement": "explicit", "rsu_positions_m": ((100.0, 100.0), (1.0, 2.0, 3.0))}, "rsu_positions_m[1]"),
    ({"rsu_placement": "explicit", "rsu_positions_m": ((100.0, 100.0), (1200.0, 100.0))}, "rsu_positions_m[1]"),
    ({"rsu_placement": "explicit", "rsu_positions_m": ((100.0, 100.0), (10.0, -1.0))}, "outside the map"),
    # channel
    ({"channel_model": "free_space"}, "channel_model"),
    ({"rsu_bandwidth_hz": -1.0e6}, "rsu_bandwidth_hz"),
    ({"rsu_bandwidth_hz": 0.0}, "rsu_bandwidth_hz"),
    ({"noise_psd_dbm_per_hz": 10.0}, "noise_psd_dbm_per_hz"),
    ({"noise_figure_db": -1.0}, "noise_figure_db"),
    ({"pathloss_intercept_db": 400.0}, "pathloss_intercept_db"),
    ({"pathloss_slope_db_per_decade": -1.0}, "pathloss_slope_db_per_decade"),
    ({"fading": "rician"}, "fading"),
    ({"vehicle_tx_power_w": 0.0}, "vehicle_tx_power_w"),
    ({"rsu_tx_power_w": -2.0}, "rsu_tx_power_w"),
    ({"min_distance_m": 0.0}, "min_distance_m"),
    # compute
    ({"cpu_freq_min_hz": 0.0}, "cpu_freq_min_hz"),
    ({"cpu_freq_max_hz": 5.0e8}, "cpu_freq_max_hz"),  # below cpu_freq_min_hz
    ({"flops_per_cycle": 0.0}, "flops_per_cycle"),
    ({"kappa_j_per_cycle_hz2": -1e-28}, "kappa_j_per_cycle_hz2"),
    ({"memory_min_mb": 0.0}, "memory_min_mb"),
    ({"memory_max_mb": 100.0}, "memory_max_mb"),
    ({"bits_per_param": 12}, "bits_per_param"),
    # tasks
    ({"tasks": ()}, "task list is empty"),
    ({"tasks": ("sst2", "mnist")}, "unknown task 'mnist'"),
    ({"tasks": ("sst2", "sst2")}, "repeats a task"),
    ({"task_assignment": "random"}, "task_assignment"),
    ({"shard_size_min": 0}, "shard_size_min"),
    ({"shard_size_max": 100}, "shard_size_max"),
    ({"dirichlet_alpha": 0.0}, "dirichlet_alpha"),
    ({"local_val_fraction": 0.9}, "local_val_fraction"),
    # energy
    ({"energy_budget_j_per_vehicle_round": 0.0}, "energy_budget_j_per_vehicle_round"),
    ({"vehicle_energy_j": -1.0}, "vehicle_energy_j"),
    ({"allocation": "greedy"}, "allocation"),
    ({"realloc_period_rounds": 0}, "realloc_period_rounds"),
    ({"realloc_stop_round": -1}, "realloc_stop_round"),
    ({"difficulty_smoothing": 1.5}, "difficulty_smoothing"),
    ({"difficulty_exponent": 11.0}, "difficulty_exponent"),
    ({"budget_floor_fraction": 0.5}, "budget_floor_fraction"),  # > 1/3 with three tasks
    ({"budget_cap_fraction": 0.0}, "budget_cap_fraction"),  # below 1/num_tasks acts as 1/num_tasks; 0 is invalid
    ({"dual_step_size": -0.01}, "dual_step_size"),
    # learning
    ({"fidelity": "slow"}, "fidelity"),
    ({"model_name_or_path": ""}, "model_name_or_path"),
    ({"rank_set": ()}, "rank_set"),
    ({"rank_set": (0, 1, 2)}, "rank_set"),
    ({"rank_set": (4, 2, 1)}, "rank_set"),
    ({"rank_set": (1, 2, 2)}, "rank_set"),
    ({"rank_set": (1, 512)}, "model_hidden_dim"),  # 512 > hidden 384
    ({"lora_alpha": 0.0}, "lora_alpha"),
    ({"lora_dropout": 0.95}, "lora_dropout"),
    ({"target_modules": ()}, "target_modules"),
    ({"target_modules": ("all-linear", "query")}, "target_modules"),
    ({"target_modules": ("query", " ")}, "target_modules"),
    ({"lora_scaling": "sqrt"}, "lora_scaling"),
    ({"device": "gpu"}, "device"),
    ({"device": "cuda:x"}, "device"),
    ({"head_lr_scale": -1.0}, "head_lr_scale"),
    ({"engine": "parallel"}, "engine"),
    ({"engine_group_size": 0}, "engine_group_size"),
    ({"engine": "ray", "ray_engine": "ray"}, "ray_engine"),
    ({"engine": "ray", "ray_actors": -1}, "ray_actors"),
    ({"ray_actors": 2}, "ray_actors"),  # Ray settings without engine="ray" would do nothing
    ({"ray_address": "auto"}, "ray_address"),
    ({"engine": "ray", "ray_address": " auto"}, "ray_address"),
    ({"precision": "fp16"}, "precision"),
    ({"torch_threads": -1}, "torch_threads"),
    ({"head_dropout": 0.95}, "head_dropout"),
    ({"base_dropout": -0.5}, "base_dropout"),
    ({"base_dropout": 0.95}, "base_dropout"),
    ({"local_steps": 0}, "local_steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": 2.0}, "learning_rate"),
    ({"max_seq_len": 4}, "max_seq_len"),
    ({"aggregation": "mean"}, "aggregation"),
    ({"eval_subset_size": 0}, "eval_subset_size"),
    ({"model_hidden_dim": 4}, "model_hidden_dim"),
    ({"model_num_layers": 0}, "model_num_layers"),
    ({"layer_fraction": 0.0}, "layer_fraction"),
    ({"layer_fraction": 1.5}, "layer_fraction"),
    ({"model_intermediate_dim": 4}, "model_intermediate_dim"),
    # episode
    ({"rounds": 0}, "rounds"),
    ({"reward_mode": "sparse"}, "reward_mode"),
    ({"accuracy_weight": -1.0}, "accuracy_weight"),
    ({"latency_weight": -1.0}, "latency_weight"),
    ({"energy_weight": -1.0}, "energy_weight"),
    ({"lagrangian_weight": -1.0}, "lagrangian_weight"),
    ({"obs_type": "image"}, "obs_type"),
    ({"fault_tolerance": "always"}, "fault_tolerance"),
    ({"fault_latency_weight": -1.0}, "fault_latency_weight"),
    ({"fault_energy_weight": -1.0}, "fault_energy_weight"),
    ({"fault_accuracy_weight": -1.0}, "fault_accuracy_weight"),
    ({"history_rounds": -1}, "history_rounds"),
    # wrong types: never a numpy/TypeError from deep inside, always a ConfigError naming the field
    ({"num_vehicles": 2.5}, "num_vehicles"),
    ({"num_vehicles": True}, "num_vehicles"),
    ({"num_vehicles": "6"}, "num_vehicles"),
    ({"width_m": "1000"}, "width_m"),
    ({"width_m": float("nan")}, "width_m"),
    ({"rsu_bandwidth_hz": float("inf")}, "rsu_bandwidth_hz"),
    ({"rsu_bandwidth_hz": None}, "rsu_bandwidth_hz"),
    ({"fading": 1}, "fading"),
    ({"observation_noise": "yes"}, "observation_noise"),
    ({"rank_set": (1.0, 2.0)}, "rank_set"),
    ({"rank_set": (1, True)}, "rank_set"),
    ({"rank_set": 8}, "rank_set"),
    ({"tasks": "sst2"}, "tasks='sst2' has the wrong type"),
    ({"tasks": (1, 2)}, "tasks=(1, 2) has the wrong type"),
    ({"rsu_positions_m": (1.0, 2.0)}, "rsu_positions_m"),
]


@pytest.mark.parametrize(("override", "needle"), INVALID, ids=[f"{next(iter(o))}-{i}" for i, (o, _) in enumerate(INVALID)])
def test_validate_names_the_bad_field(override: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        IoVConfig.from_kwargs(preset="tiny", **override)
    msg = str(info.value)
    assert needle in msg
    assert "allowed" in msg, f"message does not say what is allowed: {msg}"


def test_every_field_is_touched_by_the_invalid_table() -> None:
    """Each validated leaf field appears in at least one invalid case above (guards against forgetting one)."""
    touched = {k for o, _ in INVALID for k in o}
    # fields with no invalid value (free-form strings / booleans checked by type only)
    free = {"tdrive_dir", "calibration"}
    missing = set(FIELD_SECTION) - touched - free
    assert not missing, f"no invalid case for {sorted(missing)}"


def test_lora_regime_knobs_accept_peft_spellings() -> None:
    """target_modules takes peft's "all-linear" string as well as a list; the regime knobs round-trip."""
    cfg = IoVConfig.from_kwargs(preset="tiny", target_modules="all-linear", lora_scaling="rslora", head_lr_scale=0.0)
    assert cfg.learning.target_modules == ("all-linear",)
    assert (cfg.learning.lora_scaling, cfg.learning.head_lr_scale) == ("rslora", 0.0)
    assert IoVConfig.from_dict(cfg.to_dict()) == cfg
    assert IoVConfig.from_kwargs(preset="tiny", target_modules=["query", "key"]).learning.target_modules == ("query", "key")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# -- presets -------------------------------------------------------------------------------------
def test_preset_tiny() -> None:
    cfg = preset("tiny")
    assert (cfg.num_vehicles, cfg.rsu.num_rsus, cfg.num_tasks, cfg.episode.rounds) == (6, 2, 3, 20)
    assert cfg.learning.fidelity == "fast"


def test_preset_paper_is_the_default() -> None:
    cfg = preset("paper")
    assert (cfg.num_vehicles, cfg.rsu.num_rsus, cfg.num_tasks, cfg.episode.rounds) == (9, 3, 3, 40)
    assert cfg.tasks.task_assignment == "by_rsu"
    assert (cfg.map.width_m, cfg.map.height_m) == (1000.0, 1000.0)
    assert IoVConfig.from_kwargs() == cfg
    # PAPER.md defaults
    assert cfg.learning.rank_set == (1, 2, 4, 8, 16, 32, 64)
    assert (cfg.episode.accuracy_weight, cfg.episode.latency_weight, cfg.episode.energy_weight) == (1.8, 0.16, 0.001)
    assert (cfg.episode.fault_latency_weight, cfg.episode.fault_energy_weight, cfg.episode.fault_accuracy_weight) == (
        0.2, 0.05, 2.0,
    )
    assert cfg.energy.dual_step_size == 0.1  # deliberate deviation from PAPER's 0.01: normalised violation
    assert (cfg.energy.realloc_period_rounds, cfg.energy.realloc_stop_round) == (6, 18)


def test_preset_city() -> None:
    cfg = preset("city")
    assert (cfg.num_vehicles, cfg.rsu.num_rsus) == (1000, 50)
    assert set(PRESETS) >= {"tiny", "paper", "city"}


def test_preset_with_overrides() -> None:
    cfg = preset("tiny", num_vehicles=4, rounds=5)
    assert (cfg.num_vehicles, cfg.episode.rounds, cfg.rsu.num_rsus) == (4, 5, 2)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="huge") as info:
        IoVConfig.from_kwargs(preset="huge")
    assert "tiny" in str(info.value)


# -- overrides -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"num_vehicle": 3}, "num_vehicle"),
        ({"rsu.bandwidth": 3}, "rsu.bandwidth"),
        ({"channel.num_rsus": 3}, "channel.num_rsus"),  # real field, wrong section
        ({"nosuchsection.num_rsus": 3}, "nosuchsection.num_rsus"),
        ({"rsu": {"num_rsu": 3}}, "num_rsu"),
        ({"rsu": 5}, "rsu"),
    ],
)
def test_unknown_fields_are_rejected(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        IoVConfig.from_kwargs(preset="tiny", **overrides)


def test_flat_dotted_and_sectioned_overrides_agree() -> None:
    flat = IoVConfig.from_kwargs(preset="tiny", num_rsus=3, rsu_bandwidth_hz=2e6, rounds=7)
    dotted = IoVConfig.from_kwargs(preset="tiny", **{"rsu.num_rsus": 3, "channel.rsu_bandwidth_hz": 2e6, "episode.rounds": 7})
    sectioned = IoVConfig.from_kwargs(
        preset="tiny", rsu={"num_rsus": 3}, channel={"rsu_bandwidth_hz": 2e6}, episode={"rounds": 7}
    )
    replaced = preset("tiny").replace(rsu={"num_rsus": 3}, rsu_bandwidth_hz=2e6, **{"episode.rounds": 7})
    assert flat == dotted == sectioned == replaced
    assert flat.rsu.num_rsus == 3 and flat.channel.rsu_bandwidth_hz == 2e6 and flat.episode.rounds == 7
    # a sectioned override leaves the section's other fields at the preset's values
    assert sectioned.rsu.coverage_radius_m == preset("tiny").rsu.coverage_radius_m


def test_tasks_is_both_a_section_and_a_field() -> None:
    """``tasks=(...)`` flat sets the task list; ``tasks={...}`` is the section; both spellings agree."""
    flat = preset("tiny", tasks=("sst2", "copa"))
    sectioned = preset("tiny", tasks={"tasks": ("sst2", "copa")})
    dotted = preset("tiny", **{"tasks.tasks": ["sst2", "copa"]})
    assert flat == sectioned == dotted
    assert flat.num_tasks == 2 and flat.tasks.tasks == ("sst2", "copa")
    assert preset("tiny").replace(tasks=("conll2003", "sst2")).tasks.tasks == ("conll2003", "sst2")
    env = iov_env.parallel_env(preset="tiny", tasks=["copa", "sst2"])
    try:
        assert env.config.tasks.tasks == ("copa", "sst2")
    finally:
        env.close()


def test_replace_validates() -> None:
    with pytest.raises(ConfigError, match="num_rsus"):
        preset("tiny").replace(num_rsus=0)


def test_config_is_frozen_and_hashable() -> None:
    cfg = preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_vehicles = 3  # type: ignore[misc]
    assert hash(cfg) == hash(preset("tiny"))


def test_field_names_are_unique_across_sections() -> None:
    names = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names))
    assert set(FIELD_SECTION) == set(names) | {"num_vehicles"}


# -- dicts and files -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "paper", "city"])
def test_to_dict_round_trip(name: str) -> None:
    cfg = preset(name, rsu_placement="explicit", num_rsus=2, rsu_positions_m=((100.0, 100.0), (300.0, 200.0)))
    data = cfg.to_dict()
    assert IoVConfig.from_dict(data) == cfg
    # through JSON: lists come back and must become tuples again
    assert IoVConfig.from_dict(json.loads(json.dumps(data))) == cfg


def test_from_dict_with_preset_and_overrides() -> None:
    cfg = IoVConfig.from_dict({"preset": "tiny", "num_vehicles": 4, "channel": {"fading": "none"}})
    assert cfg == preset("tiny", num_vehicles=4, fading="none")
    with pytest.raises(ConfigError, match="mapping"):
        IoVConfig.from_dict([("num_vehicles", 3)])  # type: ignore[arg-type]


def test_from_file_yaml_and_json_agree(tmp_path) -> None:
    yaml_path = tmp_path / "cfg.yaml"
    yaml_path.write_text(
        "preset: tiny\nnum_vehicles: 4\nchannel:\n  rsu_bandwidth_hz: 2.0e+6\nlearning:\n  rank_set: [1, 4, 16]\n",
        encoding="utf-8",
    )
    json_path = tmp_path / "cfg.json"
    json_path.write_text(
        json.dumps({"preset": "tiny", "num_vehicles": 4, "rsu_bandwidth_hz": 2e6, "learning.rank_set": [1, 4, 16]}),
        encoding="utf-8",
    )
    expected = preset("tiny", num_vehicles=4, rsu_bandwidth_hz=2e6, rank_set=(1, 4, 16))
    assert IoVConfig.from_file(yaml_path) == expected
    assert IoVConfig.from_file(json_path) == expected
    assert IoVConfig.from_file(str(json_path)).learning.rank_set == (1, 4, 16)


def test_from_file_empty_yaml_is_the_default(tmp_path) -> None:
    p = tmp_path / "empty.yml"
    p.write_text("", encoding="utf-8")
    assert IoVConfig.from_file(p) == IoVConfig.from_kwargs()


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("bad.json", "{not json", "could not be parsed"),
        ("bad.yaml", "a: [1, 2", "could not be parsed"),
        ("list.yaml", "- 1\n- 2\n", "mapping"),
        ("cfg.toml", "num_vehicles = 3", "suffix"),
        ("wrong.json", '{"num_vehicles": 0}', "num_vehicles"),
        ("typo.yaml", "num_vehicels: 3\n", "num_vehicels"),
    ],
)
def test_from_file_errors(tmp_path, name: str, text: str, needle: str) -> None:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        IoVConfig.from_file(p)


def test_from_file_missing(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        IoVConfig.from_file(tmp_path / "nope.yaml")


# -- property: random configs --------------------------------------------------------------------
# field -> (valid values on the tiny preset, invalid values); each drawn field is invalid with p = 0.2
FIELD_VALUES = {
    "num_vehicles": (st.integers(1, 12), st.one_of(st.integers(-2, 0), st.just(2.5), st.just(True))),
    "num_rsus": (st.integers(1, 6), st.sampled_from([0, -1, 61])),
    "coverage_radius_m": (st.floats(1.0, 2000.0), st.sampled_from([0.0, -10.0, float("nan")])),
    "rsu_bandwidth_hz": (st.floats(1e3, 1e8), st.sampled_from([0.0, -1.0, float("inf")])),
    "rank_set": (
        st.lists(st.integers(1, 384), min_size=1, max_size=6, unique=True).map(lambda v: tuple(sorted(v))),
        st.lists(st.integers(-1, 600), min_size=0, max_size=5).map(tuple),  # mostly unsorted/out of range
    ),
    "tasks": (
        st.lists(st.sampled_from(["sst2", "conll2003", "copa"]), min_size=1, max_size=3, unique=True).map(tuple),
        st.sampled_from([(), ("mnist",), ("sst2", "sst2")]),
    ),
    "rounds": (st.integers(1, 4), st.integers(-1, 0)),
    "width_m": (st.floats(300.0, 6000.0), st.floats(-100.0, 50.0)),
    "energy_budget_j_per_vehicle_round": (st.floats(1e-3, 50.0), st.floats(-1.0, 0.0)),
    "vehicle_energy_j": (st.floats(1e-3, 1e5), st.just(0.0)),
    "allocation": (st.sampled_from(["static", "tri_feedback"]), st.just("greedy")),
    "realloc_period_rounds": (st.integers(1, 3), st.just(0)),
    "fading": (st.sampled_from(["rayleigh", "none"]), st.just("rician")),
    "channel_model": (st.sampled_from(["pathloss", "authors"]), st.just("free")),
    "fault_tolerance": (st.sampled_from(["paper", "none"]), st.just(True)),
    "reward_mode": (st.sampled_from(["constrained", "lagrangian", "code"]), st.just(None)),
    "obs_type": (st.sampled_from(["vector", "dict"]), st.just("image")),
    "speed_max_mps": (st.floats(8.0, 100.0), st.floats(0.0, 7.9)),
    "task_assignment": (st.sampled_from(["round_robin", "by_rsu"]), st.just("random")),
    "layer_fraction": (st.floats(0.01, 1.0), st.just(0.0)),
    "memory_max_mb": (st.floats(512.0, 4000.0), st.floats(1.0, 511.0)),
    "aggregation": (st.sampled_from(["svd", "zero_pad", "stacking", "fedavg"]), st.just("mean")),
}


@st.composite
def random_overrides(draw: st.DrawFn) -> dict:
    keys = draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, max_size=5, unique=True))
    out = {}
    for k in keys:
        valid, invalid = FIELD_VALUES[k]
        out[k] = draw(invalid if draw(st.integers(0, 9)) < 2 else valid)
    return out


def _finite_obs(obs: dict) -> bool:
    for o in obs.values():
        arr = o["observation"] if isinstance(o, dict) else o
        if not np.all(np.isfinite(arr)):
            return False
    return True


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=random_overrides(), seed=st.integers(0, 2**16))
def test_random_configs_build_and_step_or_raise_config_error(overrides: dict, seed: int) -> None:
    """Valid configs step with finite numbers; invalid ones raise ConfigError; nothing else escapes."""
    try:
        cfg = IoVConfig.from_kwargs(preset="tiny", **overrides)
    except ConfigError:
        event("invalid config")
        return
    event("valid config")
    env = iov_env.parallel_env(config=cfg)
    try:
        obs, infos = env.reset(seed=seed)
        assert _finite_obs(obs)
        rng = np.random.default_rng(seed)
        for _ in range(min(2, cfg.episode.rounds)):
            actions = {a: int(rng.integers(cfg.num_ranks)) for a in env.agents}
            obs, rewards, _, _, infos = env.step(actions)
            assert _finite_obs(obs)
            assert all(math.isfinite(r) for r in rewards.values())
            assert all(math.isfinite(i["cost"]) and i["cost"] >= 0 for i in infos.values())
            for o in obs.values():
                assert env.observation_space("vehicle_0").contains(o)
    finally:
        env.close()


def test_env_accepts_config_object_dict_and_file(tmp_path) -> None:
    """One resolution path everywhere: IoVConfig, mapping, YAML/JSON path, or preset + keywords (+ overrides)."""
    p = tmp_path / "c.yaml"
    p.write_text("preset: tiny\nnum_vehicles: 5\n", encoding="utf-8")
    want = preset("tiny", num_vehicles=5, rounds=3)
    for cfg_arg, kw in (
        (preset("tiny", num_vehicles=5), {"rounds": 3}),
        ({"preset": "tiny", "num_vehicles": 5}, {"rounds": 3}),
        (str(p), {"rounds": 3}),
        (None, {"preset": "tiny", "num_vehicles": 5, "rounds": 3}),
    ):
        env = iov_env.parallel_env(config=cfg_arg, **kw)
        try:
            assert env.config == want
            assert len(env.possible_agents) == 5
        finally:
            env.close()


def test_numpy_scalars_and_arrays_are_accepted_as_plain_values() -> None:
    """Sweeps driven by numpy pass np.int64 / np.float64 / arrays; they normalise to Python types."""
    cfg = IoVConfig.from_kwargs(preset="tiny", num_vehicles=np.int64(5), width_m=np.float64(900.0),
                                rank_set=np.array([1, 4, 16]))
    assert cfg.num_vehicles == 5 and type(cfg.num_vehicles) is int
    assert cfg.learning.rank_set == (1, 4, 16) and all(type(r) is int for r in cfg.learning.rank_set)
    assert type(cfg.map.width_m) is float


def test_single_task_config_builds_with_the_default_cap() -> None:
    """A cap below 1/num_tasks cannot hold the whole budget; with one task it acts as 1, not an error."""
    cfg = IoVConfig.from_kwargs(preset="tiny", tasks=("sst2",), allocation="tri_feedback")
    assert cfg.num_tasks == 1
