"""SUMO traffic as a mobility source (the subpackage): road network, demand, one SUMO run per traffic draw, an on-disk trace cache.

SUMO is an external simulator, so it never runs inside ``step()``. One run per (config, traffic
seed) drives the whole episode and samples, at every round boundary, each vehicle's position,
speed, heading, route and place on it, plus every road's mean speed. Vehicles map to a fixed set of
agent slots: a vehicle entering the network takes a free slot (agent active again), a vehicle that
leaves frees it (agent inactive for at least one round, as if parked); vehicles without a slot are
background traffic. ``SumoMobility`` (``mobility``) replays that ``SumoTrace`` round by round.

- Network: ``sumo_net_file``, or a grid generated with ``netgenerate`` that spans the map exactly
  (blocks of about ``road_spacing_m``, speed limit ``speed_max_mps``).
- Demand: ``sumo_route_file``, or ``randomTrips`` seeded with the traffic seed.
- Run: libsumo (in process), else traci (a SUMO subprocess over a socket); both give the same trace.
- Cache: ``$IOV_CACHE_DIR/sumo`` (default ``~/.cache/iov_env/sumo``); a trace file is named by the
  hash of everything that shapes it (SUMO version, network, demand, timing, fleet size, traffic
  seed), written atomically and checked on load, so a killed run leaves either no file or a whole one.
  Delete the folder at any time.

Modules: ``install`` (is SUMO there, which backend), ``network`` (network and demand), ``run`` (one SUMO
run sampled into a ``SumoTrace``), ``cache`` (the trace cache and the episode's traffic seed),
``mobility`` (``SumoMobility``).
"""

from iov_env.sim.sumo.cache import (
    ORPHAN_AGE_S,
    TRACE_VERSION,
    build_trace,
    cache_dir,
    load_trace,
    network_file,
    prepare_inputs,
    sweep_orphans,
    trace_key,
    trace_meta,
    traffic_report,
    traffic_seed,
)
from iov_env.sim.sumo.install import (
    INSTALL_HINT,
    SumoUnavailableError,
    binary,
    import_libsumo,
    importable,
    missing_reason,
    require,
    resolve_backend,
    sumo_home,
    sumo_version,
)
from iov_env.sim.sumo.network import (
    GRID_VERSION,
    check_config,
    demand_period_s,
    grid_layout,
    net_boundary_m,
)
from iov_env.sim.sumo.run import RunStats, SumoTrace, describe, libsumo_busy, run_sumo, start_sumo

__all__ = [
    "GRID_VERSION", "INSTALL_HINT", "ORPHAN_AGE_S", "TRACE_VERSION", "RunStats", "SumoTrace", "SumoUnavailableError",
    "import_libsumo", "importable", "binary", "build_trace", "cache_dir", "check_config", "demand_period_s",
    "describe", "traffic_report", "grid_layout", "libsumo_busy", "load_trace", "missing_reason",
    "net_boundary_m", "network_file", "prepare_inputs", "require", "resolve_backend", "run_sumo",
    "start_sumo", "sumo_home", "sumo_version", "sweep_orphans", "trace_key", "trace_meta", "traffic_seed",
]
