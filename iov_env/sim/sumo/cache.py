"""The on-disk trace cache: a trace file is named by the hash of everything that shapes it, written
atomically and checked on load, so a killed run leaves either no file or a whole one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from iov_env.config import IoVConfig
from iov_env.results import write_bytes_atomic
from iov_env.sim.sumo.install import resolve_backend, sumo_version
from iov_env.sim.sumo.network import (
    GRID_VERSION,
    MIN_TRIP_SHARE,
    check_config,
    demand_period_s,
    generate_grid,
    grid_layout,
    net_boundary_m,
    random_trips,
)
from iov_env.sim.sumo.run import RunStats, SumoTrace, describe, run_sumo

# part of every cache key: bump when anything that shapes a trace changes (sampling, the slot rule, demand
# sizing, the file layout), so that no cached trace from older code is replayed
TRACE_VERSION = 1


def cache_dir() -> Path:
    """Where traces and generated networks are cached: ``$IOV_CACHE_DIR/sumo``, default ``~/.cache/iov_env/sumo``."""
    root = os.environ.get("IOV_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "iov_env")
    return Path(root) / "sumo"


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: str) -> str:
    """sha256 of a user file, memoised on (path, size, mtime): a changed file is a new cache key."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _FILE_DIGESTS[key] = h.hexdigest()
    return _FILE_DIGESTS[key]


def _network_spec(config: IoVConfig) -> dict[str, Any]:
    m, mob = config.map, config.mobility
    if mob.sumo_net_file:
        return {"net_sha256": _file_digest(mob.sumo_net_file)}
    return {"grid": list(grid_layout(m.width_m, m.height_m, mob.road_spacing_m)), "speed_limit_mps": mob.speed_max_mps,
            "generator": GRID_VERSION}


def trace_meta(config: IoVConfig, traffic_seed: int) -> dict[str, Any]:
    """Everything that shapes a trace, and nothing else (RSUs, channel, learning do not): the cache key's content."""
    m, mob = config.map, config.mobility
    demand: dict[str, Any]
    if mob.sumo_route_file:
        demand = {"routes_sha256": _file_digest(mob.sumo_route_file)}
    else:
        demand = {"random_trips": True, "vehicles_per_agent": mob.sumo_vehicles_per_agent,
                  "map_m": [m.width_m, m.height_m], "road_spacing_m": mob.road_spacing_m,
                  "speed_max_mps": mob.speed_max_mps}
    return {
        "format": TRACE_VERSION, "sumo": sumo_version(), "network": _network_spec(config), "demand": demand,
        "num_vehicles": config.num_vehicles, "rounds": config.episode.rounds,
        "round_duration_s": mob.round_duration_s, "warmup_s": mob.sumo_warmup_s,
        "step_length_s": mob.sumo_step_length_s, "seed": int(traffic_seed),
    }


def trace_key(meta: dict[str, Any]) -> str:
    """File name stem of a cached trace: sha256 of its canonical JSON meta."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:32]


ORPHAN_AGE_S = 3600.0


def sweep_orphans(folder: Path, max_age_s: float = ORPHAN_AGE_S) -> int:
    """Delete temporary files a killed writer left behind (older than ``max_age_s``); returns how many."""
    removed = 0
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
                removed += 1
    return removed


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except OSError:
        return False


def network_file(config: IoVConfig, scratch: Path) -> Path:
    """The user's network, or the generated grid (cached under ``cache_dir()/nets`` when writable)."""
    mob, m = config.mobility, config.map
    if mob.sumo_net_file:
        return Path(mob.sumo_net_file)
    spec = {"sumo": sumo_version(), **_network_spec(config)}
    name = f"grid-{hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]}.net.xml"
    folder = cache_dir() / "nets"
    cached = folder / name
    if cached.is_file() and _net_is_whole(cached):
        return cached
    built = generate_grid(scratch / name, m.width_m, m.height_m, mob.road_spacing_m, mob.speed_max_mps)
    if _writable(folder):
        write_bytes_atomic(cached, built.read_bytes())
        return cached
    return built


def _net_is_whole(path: Path) -> bool:
    """A cached network is whole: SUMO writes the closing ``</net>`` last."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 64))
            return b"</net>" in fh.read()
    except OSError:
        return False


def prepare_inputs(config: IoVConfig, traffic_seed: int, scratch: Path) -> tuple[Path, Path]:
    """(network, routes) for one SUMO run: the user's files, or the generated grid and seeded randomTrips demand."""
    mob = config.mobility
    net = network_file(config, scratch)
    if mob.sumo_route_file:
        return net, Path(mob.sumo_route_file)
    x0, y0, x1, y1 = net_boundary_m(net)
    w, h = x1 - x0, y1 - y0
    routes = random_trips(
        net, scratch / "trips.xml", traffic_seed, mob.sumo_warmup_s + config.episode.rounds * mob.round_duration_s,
        demand_period_s(config, w, h), MIN_TRIP_SHARE * (w + h),
        validate=bool(mob.sumo_net_file),  # a generated grid is strongly connected: no need to route-check
    )
    return net, routes


def build_trace(config: IoVConfig, traffic_seed: int, backend: str | None = None) -> tuple[SumoTrace, RunStats]:
    """Run SUMO for ``config`` and one traffic seed, bypassing the trace cache (benchmarks, tests)."""
    check_config(config)
    backend = resolve_backend(backend or config.mobility.sumo_backend)
    with tempfile.TemporaryDirectory(prefix="iov_sumo_") as tmp:
        net, routes = prepare_inputs(config, traffic_seed, Path(tmp))
        return run_sumo(config, net, routes, traffic_seed, backend)


def load_trace(config: IoVConfig, traffic_seed: int) -> SumoTrace:
    """The trace for ``config`` and ``traffic_seed``: from the cache when a whole one is there, else SUMO (then cached)."""
    check_config(config)
    meta = trace_meta(config, traffic_seed)
    folder = cache_dir() / "traces"
    path = folder / f"{trace_key(meta)}.npz"
    if path.is_file():
        try:
            return SumoTrace.from_bytes(path.read_bytes(), meta)
        except (OSError, ValueError):
            pass  # unreadable or foreign: rebuild and replace it
    trace, _ = build_trace(config, traffic_seed)
    if _writable(folder):
        sweep_orphans(folder)
        try:
            write_bytes_atomic(path, trace.to_bytes(meta))
        except OSError as exc:
            warnings.warn(f"SUMO trace not cached in {folder}: {exc}", RuntimeWarning, stacklevel=2)
    else:
        warnings.warn(f"SUMO trace cache {folder} is not writable; set IOV_CACHE_DIR to cache traces",
                      RuntimeWarning, stacklevel=2)
    return trace


def traffic_seed(config: IoVConfig, episode_seed: int | None, rng: np.random.Generator) -> int:
    """The seed of an episode's SUMO run: its own draw, or one of ``sumo_trace_pool`` shared draws."""
    pool = config.mobility.sumo_trace_pool
    if pool == 0:
        return int(rng.integers(2**31 - 1))
    if episode_seed is None:
        return int(rng.integers(pool))
    return int(episode_seed) % pool



def traffic_report(preset_name: str, seeds: list[int], backend: str = "auto") -> Iterator[str]:
    """Markdown lines describing how busy a preset's SUMO traffic is, one row per traffic seed (traces not cached).

    A generator, so that a caller prints each row as its SUMO run ends.
    """
    from iov_env.config import preset

    cfg = preset(preset_name, mobility_model="sumo")
    yield (f"preset {preset_name}: {cfg.num_vehicles} agents, {cfg.episode.rounds} rounds of "
           f"{cfg.mobility.round_duration_s} s, map {cfg.map.width_m:.0f} x {cfg.map.height_m:.0f} m, SUMO {sumo_version()}")
    yield "\n| seed | on road per agent (target) | agent-rounds on road | trips per agent | background per round | SUMO s |"
    yield "|---:|---:|---:|---:|---:|---:|"
    for seed in seeds:
        trace, stats = build_trace(cfg, seed, backend)
        d = describe(trace, cfg)
        yield (f"| {seed} | {d['vehicles_on_road_per_agent']:.2f} ({d['demand_target_per_agent']:.1f}) | "
               f"{d['agent_rounds_on_road']:.2f} | {d['trips_per_agent']:.1f} | {d['background_vehicles_per_round']:.1f} | "
               f"{stats.sumo_wall_s:.2f} |")
