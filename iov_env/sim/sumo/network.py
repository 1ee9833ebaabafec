"""The road network and the demand of a SUMO run: a generated grid (netgenerate), or the user's files checked
against the map, and seeded randomTrips demand sized by Little's law."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from iov_env.config import ConfigError, IoVConfig
from iov_env.files import check_regular_file
from iov_env.sim.sumo.install import (
    INSTALL_HINT,
    SumoUnavailableError,
    binary,
    require,
    resolve_backend,
    sumo_home,
)

GRID_VERSION = 1  # bump when generate_grid changes: part of the network's cache key
# randomTrips demand is sized by Little's law: vehicles on the road = insertion rate x mean trip time.
# A trip is about the mean Manhattan distance between random points, (W + H) / 3, plus one block; it is
# driven at a share of the speed limit with a wait at every traffic-lit junction. Both constants were
# fitted on generated grids (6x4 and 6x6 at 12 and 20 m/s, 16x11) to within 10%.
CRUISE_SHARE_OF_LIMIT = 0.63
JUNCTION_DELAY_S = 17.0
MIN_TRIP_SHARE = 0.25  # randomTrips --min-distance as a share of (W + H): no trips of one block


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
    done = subprocess.run(cmd, capture_output=True, text=True, env=tool_env())
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def tool_env() -> dict[str, str]:
    """The environment SUMO's tools run in: ours, with ``SUMO_HOME`` set when it is known."""
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


