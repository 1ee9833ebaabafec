"""SUMO traffic as a mobility source: road network, demand, one SUMO run per traffic draw, an on-disk trace cache.

SUMO is an external simulator, so it never runs inside ``step()``. One run per (config, traffic
seed) drives the whole episode and samples, at every round boundary, each vehicle's position,
speed, heading, route and place on it, plus every road's mean speed. Vehicles map to a fixed set of
agent slots: a vehicle entering the network takes a free slot (agent active again), a vehicle that
leaves frees it (agent inactive for at least one round, as if parked); vehicles without a slot are
background traffic. ``SumoMobility`` (``sim/mobility.py``) replays that ``SumoTrace`` round by round.

- Network: ``sumo_net_file``, or a grid generated with ``netgenerate`` that spans the map exactly
  (blocks of about ``road_spacing_m``, speed limit ``speed_max_mps``).
- Demand: ``sumo_route_file``, or ``randomTrips`` seeded with the traffic seed.
- Run: libsumo (in process), else traci (a SUMO subprocess over a socket); both give the same trace.
- Cache: ``$IOV_CACHE_DIR/sumo`` (default ``~/.cache/iov_env/sumo``); a trace file is named by the
  hash of everything that shapes it (SUMO version, network, demand, timing, fleet size, traffic
  seed), written atomically and checked on load, so a killed run leaves either no file or a whole one.
  Delete the folder at any time.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import io
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from iov_env.config import ConfigError, IoVConfig
from iov_env.files import check_regular_file
from iov_env.results import write_bytes_atomic

INSTALL_HINT = "pip install 'iov-env[sumo]'"
# part of every cache key: bump when anything that shapes a trace changes (sampling, the slot rule, demand
# sizing, the file layout), so that no cached trace from older code is replayed
TRACE_VERSION = 1
GRID_VERSION = 1  # bump when generate_grid changes: part of the network's cache key
# randomTrips demand is sized by Little's law: vehicles on the road = insertion rate x mean trip time.
# A trip is about the mean Manhattan distance between random points, (W + H) / 3, plus one block; it is
# driven at a share of the speed limit with a wait at every traffic-lit junction. Both constants were
# fitted on generated grids (6x4 and 6x6 at 12 and 20 m/s, 16x11) to within 10%.
CRUISE_SHARE_OF_LIMIT = 0.63
JUNCTION_DELAY_S = 17.0
MIN_TRIP_SHARE = 0.25  # randomTrips --min-distance as a share of (W + H): no trips of one block
_TRACI_CONNECT_TRIES = 1200  # x 25 ms: 30 s for SUMO to load a large network


class SumoUnavailableError(ImportError):
    """``mobility_model="sumo"`` was asked for but SUMO is not installed; the message says how to install it."""


# -- availability --------------------------------------------------------------------------------
def _importable(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None  # None marks a module known to be missing
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def sumo_home() -> Path | None:
    """SUMO's installation folder (binaries in bin/, tools in tools/): the eclipse-sumo wheel, else $SUMO_HOME."""
    if _importable("sumo"):
        import sumo

        home = getattr(sumo, "SUMO_HOME", None)
        if home and (Path(home) / "bin").is_dir():
            return Path(home)
    env = os.environ.get("SUMO_HOME")
    if env and (Path(env) / "bin").is_dir():
        return Path(env)
    return None


def missing_reason() -> str | None:
    """Why SUMO cannot run here, naming what is missing and how to install it; None when it can."""
    missing = []
    if sumo_home() is None:
        missing.append("the SUMO binaries (eclipse-sumo, or $SUMO_HOME)")
    for name in ("sumolib", "traci"):
        if not _importable(name):
            missing.append(name)
    if not missing:
        return None
    return f"mobility_model='sumo' needs SUMO, but {', '.join(missing)} is not installed; install it with: {INSTALL_HINT}"


def require() -> None:
    """Raise ``SumoUnavailableError`` with the install command unless the ``sumo`` extra is installed."""
    reason = missing_reason()
    if reason is not None:
        raise SumoUnavailableError(reason)


def resolve_backend(name: str) -> str:
    """``"auto"`` -> libsumo when it imports, else traci (the fallback); an explicit choice must work."""
    require()
    if name == "traci":
        return name
    problem = None
    if not _importable("libsumo"):
        problem = "libsumo is not installed"
    else:
        try:
            _import_libsumo()
        except (ImportError, OSError) as exc:  # e.g. a wheel built against other system libraries
            problem = f"libsumo does not import ({type(exc).__name__}: {exc})"
    if problem is None:
        return "libsumo"
    if name == "auto":
        return "traci"
    raise SumoUnavailableError(f"sumo_backend='libsumo' but {problem}; install it with: {INSTALL_HINT} "
                               "(or use sumo_backend='traci' or 'auto')")


def sumo_version() -> str:
    """The installed SUMO version (part of every cache key: another SUMO moves vehicles differently)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("eclipse-sumo", "sumolib"):
        with contextlib.suppress(PackageNotFoundError):
            return version(dist)
    return "unknown"  # pragma: no cover - sumolib is required


def binary(name: str) -> str:
    """Path of a SUMO executable (``sumo``, ``netgenerate``)."""
    home = sumo_home()
    if home is None:
        require()
    exe = Path(home) / "bin" / name  # type: ignore[arg-type]
    return str(exe.with_suffix(".exe") if os.name == "nt" else exe)


# -- the trace -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SumoTrace:
    """One SUMO run sampled at each round boundary (T = rounds + 1 samples), in map metres, per agent slot."""

    present: np.ndarray  # (T, N) bool: the slot's vehicle is on the road
    xy_m: np.ndarray  # (T, N, 2) position; an absent slot keeps where its vehicle left (or will enter)
    speed_mps: np.ndarray  # (T, N)
    angle_deg: np.ndarray  # (T, N) SUMO heading: 0 = north (+y), clockwise
    route: np.ndarray  # (T, N) int: index into the route table, -1 when absent
    route_pos: np.ndarray  # (T, N) int: index of the current edge within the route
    lane_pos_m: np.ndarray  # (T, N) distance driven along the current edge
    edge_speed_mps: np.ndarray  # (T, E) SUMO's mean speed on each edge (its speed limit when empty)
    edge_ptr: np.ndarray  # (E + 1,) offsets into edge_xy_m
    edge_xy_m: np.ndarray  # (P, 2) shape of each edge's first lane
    edge_length_m: np.ndarray  # (E,)
    route_ptr: np.ndarray  # (R + 1,) offsets into route_edges
    route_edges: np.ndarray  # edge indices of every route, concatenated
    background_ptr: np.ndarray  # (T + 1,) offsets into background_xy_m
    background_xy_m: np.ndarray  # (B, 2) vehicles on the road that hold no agent slot
    extent_m: np.ndarray  # (2,) width and height of the road network

    @property
    def num_rounds(self) -> int:
        """Number of samples (rounds + 1)."""
        return int(self.present.shape[0])

    def to_bytes(self, meta: dict[str, Any]) -> bytes:
        """Compressed ``.npz`` bytes with ``meta`` (cache key, format) stored beside the arrays."""
        buf = io.BytesIO()
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        np.savez_compressed(buf, __meta__=np.array(json.dumps(meta, sort_keys=True)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, meta: dict[str, Any]) -> SumoTrace:
        """Parse ``to_bytes`` output; ``ValueError`` unless it is whole and was written for ``meta``."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                stored = json.loads(str(z["__meta__"]))
                arrays = {f.name: z[f.name] for f in fields(cls)}
        except Exception as exc:  # a truncated or foreign file: any parse error means "not a trace"
            raise ValueError(f"not a readable trace file ({type(exc).__name__}: {exc})") from exc
        if stored != meta:
            raise ValueError("trace file was written for another configuration")
        trace = cls(**arrays)
        trace.check()
        return trace

    def check(self) -> None:
        """Shapes agree with each other (guards the cache against a file from a buggy writer)."""
        t, n = self.present.shape
        e = len(self.edge_length_m)
        ok = (
            self.xy_m.shape == (t, n, 2) and self.route.shape == (t, n) and self.edge_speed_mps.shape == (t, e)
            and len(self.edge_ptr) == e + 1 and len(self.background_ptr) == t + 1
            and int(self.edge_ptr[-1]) == len(self.edge_xy_m) and int(self.route_ptr[-1]) == len(self.route_edges)
            and int(self.background_ptr[-1]) == len(self.background_xy_m)
        )
        if not ok:
            raise ValueError("trace arrays have inconsistent shapes")


@dataclass(frozen=True)
class RunStats:
    """How a trace was produced (not cached: for benchmarks and logs)."""

    backend: str
    sumo_steps: int
    sumo_wall_s: float
    vehicles_departed: int  # vehicles seen on the road at some round boundary


# -- network -------------------------------------------------------------------------------------
def grid_layout(width_m: float, height_m: float, spacing_m: float) -> tuple[int, int, float, float]:
    """Junctions per axis and block lengths of a grid that spans the map exactly with blocks near ``spacing_m``."""
    nx = max(2, round(width_m / spacing_m) + 1)
    ny = max(2, round(height_m / spacing_m) + 1)
    return nx, ny, width_m / (nx - 1), height_m / (ny - 1)


_BOUNDARY = re.compile(rb'convBoundary="([^"]+)"')


def net_boundary_m(path: str | os.PathLike[str]) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a SUMO network, read from its ``<location convBoundary=...>`` header."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise ConfigError(f"sumo_net_file={str(path)!r} cannot be read ({exc}); allowed: a SUMO .net.xml file") from exc
    m = _BOUNDARY.search(head)
    try:
        x0, y0, x1, y1 = (float(v) for v in m.group(1).split(b",")) if m else ()
    except ValueError:
        m = None
    if m is None:
        raise ConfigError(f"sumo_net_file={str(path)!r} has no <location convBoundary=...>; allowed: a network "
                          "written by netconvert/netgenerate")
    return x0, y0, x1, y1


def _check_user_file(field: str, value: str, allowed: str) -> None:
    """A ConfigError naming the field when ``value`` is missing, a folder, or a name the OS refuses (too long)."""
    try:
        check_regular_file(value, ConfigError, f"{field}=")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; allowed: {allowed}", field) from None


def check_config(config: IoVConfig) -> None:
    """Fail early, with the field named: SUMO installed, user files present, a user network that fits the map."""
    require()
    mob, m = config.mobility, config.map
    if mob.sumo_route_file:
        _check_user_file("sumo_route_file", mob.sumo_route_file, "an existing SUMO route/trip file, or empty for "
                         "seeded randomTrips demand")
    if mob.sumo_net_file:
        _check_user_file("sumo_net_file", mob.sumo_net_file, "an existing .net.xml, or empty for a generated grid")
        x0, y0, x1, y1 = net_boundary_m(mob.sumo_net_file)
        w, h = x1 - x0, y1 - y0
        if w > m.width_m + 1.0 or h > m.height_m + 1.0:
            raise ConfigError(
                f"sumo_net_file={mob.sumo_net_file!r} spans {w:.0f} x {h:.0f} m, more than the map "
                f"({m.width_m:.0f} x {m.height_m:.0f} m); allowed: width_m >= {math.ceil(w)} and height_m >= {math.ceil(h)}"
            )
    resolve_backend(mob.sumo_backend)


def generate_grid(path: Path, width_m: float, height_m: float, spacing_m: float, speed_limit_mps: float) -> Path:
    """Write a two-way, one-lane-per-direction grid with traffic lights, spanning (0, 0)-(width_m, height_m)."""
    nx, ny, lx, ly = grid_layout(width_m, height_m, spacing_m)
    cmd = [
        binary("netgenerate"), "--grid", "--grid.x-number", str(nx), "--grid.y-number", str(ny),
        "--grid.x-length", repr(lx), "--grid.y-length", repr(ly), "--default.speed", repr(speed_limit_mps),
        "--default.lanenumber", "1", "--default-junction-type", "traffic_light", "--seed", "0", "--xml-validation", "never", "--no-warnings", "true",
        "--output-file", str(path),
    ]
    _run_tool(cmd, "netgenerate")
    return path


def _run_tool(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_tool_env())
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    home = sumo_home()
    if home is not None:
        env.setdefault("SUMO_HOME", str(home))
    return env


# -- demand --------------------------------------------------------------------------------------
_RANDOM_TRIPS: Any = None


def _random_trips_module() -> Any:
    """SUMO's tools/randomTrips.py, loaded once in process (a subprocess per episode costs ~0.5 s of start-up)."""
    global _RANDOM_TRIPS
    if _RANDOM_TRIPS is None:
        path = Path(sumo_home() or "") / "tools" / "randomTrips.py"
        if not path.is_file():
            raise SumoUnavailableError(f"SUMO's randomTrips.py is missing at {path}; install it with: {INSTALL_HINT}")
        os.environ.setdefault("SUMO_HOME", str(sumo_home()))
        spec = importlib.util.spec_from_file_location("_iov_env_randomTrips", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        saved_path = list(sys.path)
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path[:] = saved_path  # it appends $SUMO_HOME/tools to sys.path
        _RANDOM_TRIPS = module
    return _RANDOM_TRIPS


def random_trips(net: Path, out: Path, seed: int, end_s: float, period_s: float, min_distance_m: float,
                 validate: bool) -> Path:
    """Seeded randomTrips demand from t = 0 to ``end_s``, one departure every ``period_s`` (no global side effects)."""
    module = _random_trips_module()
    args = [
        "--net-file", str(net), "--output-trip-file", str(out), "--seed", str(seed),
        "--begin", "0", "--end", repr(end_s), "--period", repr(period_s), "--min-distance", repr(min_distance_m),
        "--trip-attributes", 'departLane="best" departSpeed="max"',
        "--validate" if validate else "--no-validate",
    ]
    state, saved_path = random.getstate(), list(sys.path)
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            ok = module.main(module.get_options(args))
    except (Exception, SystemExit) as exc:
        raise RuntimeError(f"randomTrips failed on {net}: {exc} {err.getvalue().strip()}") from exc
    finally:
        random.setstate(state)  # randomTrips seeds Python's global random module
        sys.path[:] = saved_path
    if not ok or not out.is_file():
        raise RuntimeError(f"randomTrips made no trips on {net}: {err.getvalue().strip()}")
    return out


def demand_period_s(config: IoVConfig, width_m: float, height_m: float) -> float:
    """Seconds between randomTrips departures so that about ``sumo_vehicles_per_agent * N`` vehicles are on the road.

    On a user network, ``road_spacing_m`` stands for its typical block length (the distance between junctions).
    """
    mob = config.mobility
    trip_m = (width_m + height_m) / 3.0 + mob.road_spacing_m
    trip_s = trip_m / (CRUISE_SHARE_OF_LIMIT * mob.speed_max_mps) + JUNCTION_DELAY_S * trip_m / mob.road_spacing_m
    return trip_s / (mob.sumo_vehicles_per_agent * config.num_vehicles)


# -- running SUMO --------------------------------------------------------------------------------
def _import_libsumo() -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # its import warns about pyarrow, which we do not use
        import libsumo
    return libsumo


def libsumo_busy() -> bool:
    """Whether this process already runs a libsumo simulation (libsumo holds one; a second start replaces it)."""
    return "libsumo" in sys.modules and sys.modules["libsumo"] is not None and bool(
        sys.modules["libsumo"].simulation.isLoaded())


def _start(backend: str, cmd: list[str]) -> Any:
    """A started simulation exposing the TraCI API: the libsumo module, or a traci connection."""
    if backend == "libsumo":
        libsumo = _import_libsumo()
        libsumo.start(cmd)
        return libsumo
    import traci
    from sumolib.miscutils import getFreeSocketPort

    port = getFreeSocketPort()
    proc = subprocess.Popen([*cmd, "--remote-port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_tool_env())
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # traci prints every retry
            return traci.connect(port, numRetries=_TRACI_CONNECT_TRIES, proc=proc, waitBetweenRetries=0.025)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise


def run_sumo(config: IoVConfig, net: Path, routes: Path, seed: int, backend: str) -> tuple[SumoTrace, RunStats]:
    """Run SUMO once and sample it at every round boundary into a ``SumoTrace`` (see the module docstring)."""
    from traci import constants as tc

    mob, ep = config.mobility, config.episode
    round_s, warmup_s = mob.round_duration_s, mob.sumo_warmup_s
    x0, y0, x1, y1 = net_boundary_m(net)
    offset = np.array([x0, y0])
    end_s = warmup_s + ep.rounds * round_s
    with tempfile.TemporaryDirectory(prefix="iov_sumo_run_") as tmp:
        error_log, edge_data = Path(tmp) / "errors.log", Path(tmp) / "edgedata.xml"
        # SUMO averages each edge's speed over every round itself (edgeData): a travel-time estimate that spans
        # traffic-light cycles, where a one-step snapshot would read a queue waiting at red as standing still
        first = warmup_s - math.floor(warmup_s / round_s) * round_s
        additional = Path(tmp) / "edgedata.add.xml"
        additional.write_text(f'<additional><edgeData id="iov" period="{round_s!r}" begin="{first!r}" '
                              f'file={quoteattr(str(edge_data))} excludeEmpty="true"/></additional>', encoding="utf-8")
        cmd = [
            binary("sumo"), "--net-file", str(net), "--route-files", str(routes), "--additional-files", str(additional),
            "--begin", "0", "--end", repr(end_s + mob.sumo_step_length_s), "--step-length", repr(mob.sumo_step_length_s),
            "--seed", str(seed), "--no-step-log", "true", "--no-warnings", "true", "--duration-log.disable", "true",
            "--ignore-route-errors", "true", "--xml-validation", "never", "--error-log", str(error_log),
        ]
        if backend == "libsumo" and libsumo_busy():
            backend = "traci"  # never replace a simulation someone else runs in this process
        t0 = time.perf_counter()
        try:
            api = _start(backend, cmd)
        except Exception as exc:
            raise RuntimeError(f"SUMO could not start on {net} with {routes}: {_log(error_log) or exc}") from exc
        try:
            sampled = _sample(api, tc, config.num_vehicles, ep.rounds, warmup_s, round_s, offset)
            steps = round(float(api.simulation.getTime()) / mob.sumo_step_length_s)
        except Exception as exc:
            with contextlib.suppress(Exception):
                api.close()  # a SUMO process has finished writing its error log once it is closed
            raise RuntimeError(f"SUMO failed while running {net} with {routes}: {_log(error_log) or exc}") from exc
        api.close()  # also flushes the edgeData file
        wall = time.perf_counter() - t0
        edge_speed = _edge_speeds(edge_data, sampled.pop("edge_ids"), sampled.pop("speed_limit_mps"),
                                  warmup_s, round_s, ep.rounds + 1)
    departed = sampled.pop("vehicles_departed")
    trace = SumoTrace(**sampled, edge_speed_mps=edge_speed, extent_m=np.array([x1 - x0, y1 - y0]))
    return trace, RunStats(backend, steps, wall, departed)


def _log(path: Path) -> str:
    return path.read_text(errors="replace").strip() if path.exists() else ""


def _edge_speeds(path: Path, edge_ids: list[str], limit_mps: np.ndarray, warmup_s: float, round_s: float,
                 t_count: int) -> np.ndarray:
    """(T, E): each edge's mean speed over the round that ends at sample t; its speed limit if nobody drove it."""
    import xml.etree.ElementTree as ET

    out = np.tile(limit_mps, (t_count, 1))
    index = {e: i for i, e in enumerate(edge_ids)}
    for _, interval in ET.iterparse(path):
        if interval.tag != "interval":
            continue
        t = round((float(interval.get("end", "nan")) - warmup_s) / round_s)
        if 0 <= t < t_count:
            for edge in interval.iter("edge"):
                i, v = index.get(edge.get("id", "")), edge.get("speed")
                if i is not None and v is not None:
                    out[t, i] = float(v)
        interval.clear()
    return out


def _sample(api: Any, tc: Any, n: int, rounds: int, warmup_s: float, round_s: float,
            offset: np.ndarray) -> dict[str, Any]:
    """Step SUMO to each round boundary, record every vehicle, and map vehicles to agent slots."""
    edge_ids = [e for e in api.edge.getIDList() if not e.startswith(":")]  # ":..." are junction internals
    edge_index = {e: i for i, e in enumerate(edge_ids)}
    shapes = [np.asarray(api.lane.getShape(f"{e}_0"), dtype=float).reshape(-1, 2) - offset for e in edge_ids]
    lengths = np.array([api.lane.getLength(f"{e}_0") for e in edge_ids], dtype=float)
    limits = np.array([api.lane.getMaxSpeed(f"{e}_0") for e in edge_ids], dtype=float)
    var = [tc.VAR_POSITION, tc.VAR_SPEED, tc.VAR_ANGLE, tc.VAR_ROAD_ID, tc.VAR_ROUTE_INDEX, tc.VAR_LANEPOSITION]

    t_count = rounds + 1
    present = np.zeros((t_count, n), dtype=bool)
    xy = np.full((t_count, n, 2), np.nan)
    speed = np.zeros((t_count, n))
    angle = np.zeros((t_count, n))
    route = np.full((t_count, n), -1, dtype=np.int64)
    route_pos = np.zeros((t_count, n), dtype=np.int64)
    lane_pos = np.zeros((t_count, n))
    route_table: dict[tuple[int, ...], int] = {}
    vehicle_route: dict[str, tuple[int, ...]] = {}
    slot_of: dict[str, int] = {}
    free = list(range(n))  # slots open to a vehicle that enters the network, lowest first
    freed: list[int] = []
    background: list[np.ndarray] = []

    for t in range(t_count):
        target = warmup_s + t * round_s
        if target > api.simulation.getTime() + 1e-9:
            api.simulationStep(target)
        ids = list(api.vehicle.getIDList())  # insertion order: deterministic
        entered = [v for v in ids if v not in vehicle_route]
        for vid in entered:
            api.vehicle.subscribe(vid, var)
            vehicle_route[vid] = tuple(edge_index[e] for e in api.vehicle.getRoute(vid))
        # a slot whose vehicle left stays empty for one round (the agent is seen inactive, as if parked);
        # only vehicles that entered since the last round take slots, in the order SUMO inserted them
        free = sorted(free + freed)
        on_road = set(ids)
        freed = [slot_of.pop(v) for v in [v for v in slot_of if v not in on_road]]
        for vid in entered:
            if not free:
                break
            slot_of[vid] = free.pop(0)
        results = api.vehicle.getAllSubscriptionResults()
        bg = []
        for vid in ids:
            r = results[vid]
            pos = np.asarray(r[tc.VAR_POSITION], dtype=float) - offset
            slot = slot_of.get(vid)
            if slot is None:
                bg.append(pos)
                continue
            key = vehicle_route[vid]
            idx = min(max(int(r[tc.VAR_ROUTE_INDEX]), 0), len(key) - 1)
            present[t, slot] = True
            xy[t, slot] = pos
            speed[t, slot] = r[tc.VAR_SPEED]
            angle[t, slot] = r[tc.VAR_ANGLE]
            route[t, slot] = route_table.setdefault(key, len(route_table))  # agents' routes only
            route_pos[t, slot] = idx
            # on a junction's internal lane the vehicle has just finished route edge idx
            on_edge = r[tc.VAR_ROAD_ID] in edge_index
            lane_pos[t, slot] = r[tc.VAR_LANEPOSITION] if on_edge else lengths[key[idx]]
        background.append(np.asarray(bg, dtype=float).reshape(-1, 2))

    _fill_absent_positions(xy)
    route_list = sorted(route_table, key=route_table.__getitem__)
    return {
        "present": present, "xy_m": xy, "speed_mps": speed, "angle_deg": angle, "route": route,
        "route_pos": route_pos, "lane_pos_m": lane_pos, "edge_ptr": _offsets(len(s) for s in shapes),
        "edge_xy_m": np.concatenate(shapes) if shapes else np.zeros((0, 2)), "edge_length_m": lengths,
        "route_ptr": _offsets(len(r) for r in route_list),
        "route_edges": np.array([e for r in route_list for e in r], dtype=np.int64),
        "background_ptr": _offsets(len(b) for b in background), "background_xy_m": np.concatenate(background),
        "edge_ids": edge_ids, "speed_limit_mps": limits, "vehicles_departed": len(vehicle_route),
    }


def _offsets(sizes: Any) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(list(sizes), dtype=np.int64)]).astype(np.int64)


def _fill_absent_positions(xy: np.ndarray) -> None:
    """An absent slot stays where its last vehicle left, or before its first vehicle, where that one enters."""
    t_count, n, _ = xy.shape
    for i in range(n):
        seen = np.flatnonzero(~np.isnan(xy[:, i, 0]))
        if len(seen) == 0:
            xy[:, i] = 0.0  # never on the road: never attached, the position is only drawn
            continue
        last = xy[seen[0], i].copy()
        for t in range(t_count):
            if np.isnan(xy[t, i, 0]):
                xy[t, i] = last
            else:
                last = xy[t, i].copy()


# -- cache and entry point -------------------------------------------------------------------------
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


# -- inspecting traffic --------------------------------------------------------------------------------
def describe(trace: SumoTrace, config: IoVConfig) -> dict[str, float]:
    """How busy a trace is: vehicles on the road per agent, the share of agent-rounds on the road, trips per agent."""
    n = config.num_vehicles
    on_road = trace.present.sum(axis=1) + np.diff(trace.background_ptr)
    entries = int(np.sum(~trace.present[:-1] & trace.present[1:]))
    return {
        "vehicles_on_road_per_agent": float(on_road.mean() / n),
        "demand_target_per_agent": config.mobility.sumo_vehicles_per_agent,
        "agent_rounds_on_road": float(trace.present.mean()),
        "trips_per_agent": float((entries + trace.present[0].sum()) / n),
        "background_vehicles_per_round": float(np.diff(trace.background_ptr).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run SUMO for a preset and print how busy its traffic is (one line per traffic seed)."""
    import argparse

    from iov_env.config import preset

    p = argparse.ArgumentParser(description="Build SUMO traces (no cache) and describe them.")
    p.add_argument("--preset", default="paper")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--backend", default="auto", choices=("auto", "libsumo", "traci"))
    args = p.parse_args(argv)
    cfg = preset(args.preset, mobility_model="sumo")
    print(f"preset {args.preset}: {cfg.num_vehicles} agents, {cfg.episode.rounds} rounds of {cfg.mobility.round_duration_s} s, "
          f"map {cfg.map.width_m:.0f} x {cfg.map.height_m:.0f} m, SUMO {sumo_version()}")
    print("\n| seed | on road per agent (target) | agent-rounds on road | trips per agent | background per round | SUMO s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for seed in args.seeds:
        trace, stats = build_trace(cfg, seed, args.backend)
        d = describe(trace, cfg)
        print(f"| {seed} | {d['vehicles_on_road_per_agent']:.2f} ({d['demand_target_per_agent']:.1f}) | "
              f"{d['agent_rounds_on_road']:.2f} | {d['trips_per_agent']:.1f} | {d['background_vehicles_per_round']:.1f} | "
              f"{stats.sumo_wall_s:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
