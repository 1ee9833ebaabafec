"""Where vehicles are: a synthetic road grid, T-Drive traces or SUMO traffic; RSU placement, coverage, dwell time.

Every mobility model offers ``current_m`` and ``velocity_mps`` (N, 2), ``present`` (N,) (the vehicle is on
the road: always, except in SUMO where vehicles enter and leave), ``dwell_time_s(centres_m, radius_m)``
and ``step(dt_s)``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iov_env.config import MAX_MOBILITY_SUBSTEPS, ConfigError, IoVConfig, mobility_substeps
from iov_env.files import DataFormatError, iter_lines, shorten
from iov_env.lazy import lazy_import

if TYPE_CHECKING:
    from iov_env.sim.sumo import SumoTrace

kernels = lazy_import("iov_env.sim.kernels")  # compiled loops: numba loads on first use, not with iov_env

EARTH_RADIUS_M = 6_371_000.0
MAX_DWELL_S = 1.0e6  # a parked vehicle never leaves; keep the number finite for observations


# -- RSUs and coverage -------------------------------------------------------------------------------
def grid_rsu_positions_m(num_rsus: int, width_m: float, height_m: float) -> np.ndarray:
    """Place RSUs at the cell centres of a near-square grid that covers the map, row by row."""
    cols = max(1, math.ceil(math.sqrt(num_rsus * width_m / height_m)))
    rows = math.ceil(num_rsus / cols)
    out = []
    for i in range(num_rsus):
        r, c = divmod(i, cols)
        in_row = cols if r < rows - 1 else num_rsus - cols * (rows - 1)
        out.append(((c + 0.5) * width_m / in_row, (r + 0.5) * height_m / rows))
    return np.asarray(out, dtype=float)


def rsu_positions_m(config: IoVConfig) -> np.ndarray:
    """RSU coordinates from the config (grid placement or explicit list)."""
    if config.rsu.rsu_placement == "explicit":
        return np.asarray(config.rsu.rsu_positions_m, dtype=float).reshape(-1, 2)
    return grid_rsu_positions_m(config.rsu.num_rsus, config.map.width_m, config.map.height_m)


def attach(positions_m: np.ndarray, rsus_m: np.ndarray, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest RSU within ``radius_m`` for each vehicle (-1 if none) and the distance to it."""
    return kernels.nearest_within(_float_points(positions_m), _float_points(rsus_m), float(radius_m))


def predict_dwell_time_s(
    positions_m: np.ndarray, velocity_mps: np.ndarray, centre_m: np.ndarray, radius_m: float
) -> np.ndarray:
    """Time until a vehicle moving straight at constant velocity leaves the disc around ``centre_m``."""
    pos, centres = _float_points(positions_m), _float_points(centre_m)
    if centres.shape != pos.shape:  # one centre for every vehicle
        centres = np.broadcast_to(centres, pos.shape)
    return kernels.straight_dwell_s(pos, _float_points(velocity_mps), centres, float(radius_m), MAX_DWELL_S)


def _float_points(points: np.ndarray) -> np.ndarray:
    """``points`` as float64 (.., 2), without a copy when they already are."""
    return np.asarray(points, dtype=float).reshape(-1, 2)


class _StraightLine:
    """Vehicles that are always on the road and whose dwell is extrapolated along their current velocity."""

    @property
    def present(self) -> np.ndarray:
        """Every vehicle is on the road."""
        return np.ones(len(self.current_m), dtype=bool)

    def dwell_time_s(self, centres_m: np.ndarray, radius_m: float) -> np.ndarray:
        """Time before each vehicle leaves the disc around its row of ``centres_m`` (straight, constant velocity)."""
        return predict_dwell_time_s(self.current_m, self.velocity_mps, centres_m, radius_m)


# -- synthetic road grid -----------------------------------------------------------------------------
HEADINGS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # E, N, W, S


@dataclass
class GridMobility(_StraightLine):
    """Vehicles drive on a Manhattan grid of roads, turning at intersections, reflecting at the edges."""

    width_m: float
    height_m: float
    spacing_m: float
    speed_min_mps: float
    speed_max_mps: float
    turn_probability: float
    rng: np.random.Generator
    positions_m: np.ndarray = None  # type: ignore[assignment]
    heading: np.ndarray = None  # type: ignore[assignment]  # (N,) index into HEADINGS
    speed_mps: np.ndarray = None  # type: ignore[assignment]

    def place(self, start_m: np.ndarray) -> None:
        """Snap start points onto the nearest road and draw headings and speeds."""
        n = len(start_m)
        self.heading = self.rng.integers(0, 4, size=n)
        pos = start_m.copy()
        horizontal = self.heading % 2 == 0  # moving along x: y must sit on a road
        axis = np.where(horizontal, 1, 0)
        snapped = np.round(pos[np.arange(n), axis] / self.spacing_m) * self.spacing_m
        limit = np.where(axis == 1, self.height_m, self.width_m)
        pos[np.arange(n), axis] = np.clip(snapped, 0.0, limit)
        self.positions_m = pos
        self.speed_mps = self.rng.uniform(self.speed_min_mps, self.speed_max_mps, size=n)

    @property
    def current_m(self) -> np.ndarray:
        """Current positions."""
        return self.positions_m

    @property
    def velocity_mps(self) -> np.ndarray:
        """Current velocity vectors."""
        return HEADINGS[self.heading] * self.speed_mps[:, None]

    def step(self, dt_s: float) -> None:
        """Advance every vehicle by ``dt_s`` seconds (sub-steps no longer than one block)."""
        n_sub = mobility_substeps(self.speed_max_mps, dt_s, self.spacing_m)
        if n_sub > MAX_MOBILITY_SUBSTEPS:
            raise ValueError(
                f"a {dt_s} s step on {self.spacing_m} m blocks at up to {self.speed_max_mps} m/s needs {n_sub} "
                f"sub-steps; allowed: at most {MAX_MOBILITY_SUBSTEPS} (validation refuses such configs)"
            )
        dist_m = self.speed_mps * dt_s / n_sub
        draws = self.rng.random((n_sub, len(dist_m)))  # the same stream as one draw of N per sub-step
        pos, heading = self.positions_m.copy(), self.heading.copy()  # callers may hold the previous arrays
        kernels.grid_substeps(pos, heading, dist_m, draws < self.turn_probability, draws < 0.5 * self.turn_probability,
                      float(self.spacing_m), float(self.width_m), float(self.height_m))
        self.positions_m, self.heading = pos, heading
        jitter = self.rng.normal(0.0, 0.1 * (self.speed_max_mps - self.speed_min_mps + 1e-9), size=len(self.speed_mps))
        self.speed_mps = np.minimum(np.maximum(self.speed_mps + jitter, self.speed_min_mps), self.speed_max_mps)


# -- T-Drive -----------------------------------------------------------------------------------------
# Cleaning rules, applied per taxi file in this order (``read_tdrive`` reports the fixes each dropped):
#   invalid_coordinates  longitude outside [-180, 180], latitude outside [-90, 90], not finite, or (0, 0)
#   time_out_of_range    timestamp outside [TDRIVE_TIME_MIN, TDRIVE_TIME_MAX) (T-Drive is February 2008)
#   duplicate_time       a second fix at the same second (the first in file order is kept)
#   far_from_centre      more than OUTLIER_RADIUS_M from the taxi's median position
#   time_outlier         more than MAX_TIME_FROM_MEDIAN_S from the taxi's median timestamp
#   speed_jump           reached from the previous kept fix faster than tdrive_max_speed_mps; the chain of
#                        kept fixes runs forward and backward from the fix nearest the median position, so
#                        one bad first fix cannot discard the fixes after it
# A file left with fewer than two fixes is skipped and reported.
TDRIVE_TIME_MIN = np.datetime64("1990-01-01T00:00:00", "s").astype("int64")
TDRIVE_TIME_MAX = np.datetime64("2100-01-01T00:00:00", "s").astype("int64")
OUTLIER_RADIUS_M = 100_000.0  # a city's taxis stay within a few tens of km of their median position
MAX_TIME_FROM_MEDIAN_S = 31 * 86_400.0
MAX_TRACE_POINTS = 1_000_000  # resampled points per trace
MAX_TOTAL_TRACE_POINTS = 20_000_000  # over all loaded traces (320 MB of float64 positions)
DROP_RULES = ("invalid_coordinates", "time_out_of_range", "duplicate_time", "far_from_centre", "time_outlier",
              "speed_jump")
log = logging.getLogger(__name__)


class TDriveFormatError(DataFormatError):
    """A T-Drive file line does not match ``taxi_id,YYYY-MM-DD HH:MM:SS,lon,lat``."""


@dataclass
class TDriveReport:
    """What ``read_tdrive`` read, kept and dropped, per cleaning rule (summed over files)."""

    directory: str
    files_read: int = 0
    traces_kept: int = 0
    fixes_read: int = 0
    fixes_kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_RULES, 0))
    skipped_files: list[str] = field(default_factory=list)  # fewer than two fixes left after cleaning

    def summary(self) -> str:
        """One line: files, traces, fixes kept, and the non-zero drop counts per rule."""
        drops = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"
        skipped = f"; skipped {len(self.skipped_files)} file(s): {self.skipped_files[:3]}" if self.skipped_files else ""
        return (f"T-Drive {self.directory}: {self.traces_kept} trace(s) from {self.files_read} file(s), "
                f"{self.fixes_kept}/{self.fixes_read} fixes kept; dropped: {drops}{skipped}")


_TDRIVE_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def parse_tdrive_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one T-Drive file into (unix time s, lon deg, lat deg) arrays; errors name file and line."""
    times, lons, lats = [], [], []
    for lineno, line in iter_lines(path, TDriveFormatError):
        line = line.strip()
        if not line:
            continue
        parts = line.split(",")
        if len(parts) != 4:
            raise TDriveFormatError(f"{path}:{lineno}: expected 4 comma-separated fields, got {len(parts)}")
        # the whole "date time" is required: numpy reads a bare date as midnight, and interpolating across the
        # hours that vanish invents a trace (issue 22: a 15.6 h gap)
        if not _TDRIVE_STAMP.fullmatch(parts[1].strip()):
            raise TDriveFormatError(f"{path}:{lineno}: timestamp {shorten(parts[1].strip(), 40)!r} is not a date and time "
                                    "(field 'time'); "
                                    "allowed: YYYY-MM-DD HH:MM:SS")
        try:
            stamp = np.datetime64(parts[1].strip().replace(" ", "T"), "s")
            lon, lat = float(parts[2]), float(parts[3])
        except (ValueError, OverflowError) as exc:
            raise TDriveFormatError(f"{path}:{lineno}: {exc}") from exc
        if np.isnat(stamp):  # 'NaT' parses, and as an integer it is -2**63 seconds
            raise TDriveFormatError(f"{path}:{lineno}: timestamp {parts[1].strip()!r} is not a date; "
                                    "allowed: YYYY-MM-DD HH:MM:SS")
        times.append(stamp.astype("int64"))
        lons.append(lon)
        lats.append(lat)
    return np.asarray(times, dtype=float), np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)


def project_to_metres(lon_deg: np.ndarray, lat_deg: np.ndarray, lat0_deg: float, lon0_deg: float) -> np.ndarray:
    """Equirectangular projection around (lat0, lon0): accurate to < 0.1% over a city."""
    x = np.radians(lon_deg - lon0_deg) * EARTH_RADIUS_M * math.cos(math.radians(lat0_deg))
    y = np.radians(lat_deg - lat0_deg) * EARTH_RADIUS_M
    return np.stack([x, y], axis=1)


def clean_trajectory(
    time_s: np.ndarray, lon_deg: np.ndarray, lat_deg: np.ndarray, max_speed_mps: float,
    dropped: dict[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the cleaning rules above and project to metres; per-rule drop counts are added to ``dropped``."""
    counts = dropped if dropped is not None else {}

    def drop(rule: str, keep: np.ndarray) -> None:
        counts[rule] = counts.get(rule, 0) + int(np.count_nonzero(~keep))

    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(lat_deg) & np.isfinite(lon_deg) & (np.abs(lat_deg) <= 90) & (np.abs(lon_deg) <= 180)
              & ((lat_deg != 0) | (lon_deg != 0)))
    drop("invalid_coordinates", ok)
    time_s, lon_deg, lat_deg = time_s[ok], lon_deg[ok], lat_deg[ok]
    ok = (time_s >= TDRIVE_TIME_MIN) & (time_s < TDRIVE_TIME_MAX)
    drop("time_out_of_range", ok)
    time_s, lon_deg, lat_deg = time_s[ok], lon_deg[ok], lat_deg[ok]
    order = np.argsort(time_s, kind="stable")
    time_s, lon_deg, lat_deg = time_s[order], lon_deg[order], lat_deg[order]
    _, first = np.unique(time_s, return_index=True)
    counts["duplicate_time"] = counts.get("duplicate_time", 0) + len(time_s) - len(first)
    time_s, lon_deg, lat_deg = time_s[first], lon_deg[first], lat_deg[first]
    if len(time_s) == 0:
        return time_s, np.zeros((0, 2))
    xy = project_to_metres(lon_deg, lat_deg, float(np.median(lat_deg)), float(np.median(lon_deg)))
    radius = np.hypot(xy[:, 0], xy[:, 1])  # from the median position, the projection's origin
    ok = radius <= OUTLIER_RADIUS_M
    drop("far_from_centre", ok)
    time_s, xy, radius = time_s[ok], xy[ok], radius[ok]
    if len(time_s) == 0:
        return time_s, np.zeros((0, 2))
    ok = np.abs(time_s - np.median(time_s)) <= MAX_TIME_FROM_MEDIAN_S
    drop("time_outlier", ok)
    time_s, xy, radius = time_s[ok], xy[ok], radius[ok]
    keep = _speed_chain(time_s, xy, int(np.argmin(radius)), max_speed_mps)
    drop("speed_jump", keep)
    return time_s[keep], xy[keep]


def _speed_chain(time_s: np.ndarray, xy: np.ndarray, anchor: int, max_speed_mps: float) -> np.ndarray:
    """Fixes reachable from their kept neighbour within the speed cap, chained both ways from ``anchor``."""
    keep = np.zeros(len(time_s), dtype=bool)
    keep[anchor] = True
    for direction in (1, -1):  # sequential: a jump is judged against the last kept fix
        j = anchor
        for i in range(anchor + direction, len(time_s) if direction > 0 else -1, direction):
            dist = float(np.linalg.norm(xy[i] - xy[j]))
            if dist / abs(time_s[i] - time_s[j]) <= max_speed_mps:
                keep[i] = True
                j = i
    return keep


def resample(time_s: np.ndarray, xy_m: np.ndarray, dt_s: float) -> np.ndarray:
    """Linear interpolation of a trajectory onto a regular grid of step ``dt_s``."""
    if len(time_s) < 2:
        return xy_m.copy()
    # offsets from the first fix: at unix-time magnitudes (~1e9 s) a +1e-9 tolerance is lost and the
    # last point fell off the grid
    grid = time_s[0] + np.arange(0.0, time_s[-1] - time_s[0] + 1e-6, dt_s)
    return np.stack([np.interp(grid, time_s, xy_m[:, 0]), np.interp(grid, time_s, xy_m[:, 1])], axis=1)


def read_tdrive(
    directory: str | os.PathLike[str], dt_s: float, max_speed_mps: float, max_traces: int | None = None,
) -> tuple[list[np.ndarray], TDriveReport]:
    """Cleaned traces of the ``*.txt`` files in ``directory``, resampled to ``dt_s`` (each (T, 2) metres), and
    a report of what was dropped. ``max_traces`` stops after that many usable traces (vehicles cycle over them)."""
    folder = Path(directory)
    report = TDriveReport(str(folder))
    try:
        if not folder.is_dir():
            what = "does not exist" if not folder.exists() else "is not a folder"
            raise ConfigError(f"tdrive_dir={shorten(str(folder))!r} {what}; allowed: a folder of T-Drive '*.txt' files")
        files = sorted(folder.glob("*.txt"), key=lambda p: (len(p.stem), p.stem))
    except OSError as exc:
        raise ConfigError(f"tdrive_dir={shorten(str(folder))!r} cannot be read: {exc.strerror or exc}") from None
    if not files:
        raise ConfigError(f"tdrive_dir={str(folder)!r} holds no T-Drive '*.txt' files")
    traces: list[np.ndarray] = []
    total = 0
    for f in files:
        if max_traces is not None and len(traces) >= max_traces:
            break
        t, lon, lat = parse_tdrive_file(f)
        report.files_read += 1
        report.fixes_read += len(t)
        file_drops: dict[str, int] = {}
        t, xy = clean_trajectory(t, lon, lat, max_speed_mps, file_drops)
        for rule, count in file_drops.items():
            report.dropped[rule] = report.dropped.get(rule, 0) + count
        outliers = sum(file_drops.get(r, 0) for r in DROP_RULES if r != "duplicate_time")
        if outliers:
            log.info("%s: dropped %s", f, {k: v for k, v in file_drops.items() if v})
        if len(t) < 2:
            report.skipped_files.append(f.name)
            continue
        points = int((t[-1] - t[0]) // dt_s) + 1
        if points > MAX_TRACE_POINTS:
            raise ConfigError(
                f"{f}: the cleaned trace spans {(t[-1] - t[0]) / 86_400:.1f} days, {points:,} rounds at "
                f"round_duration_s={dt_s}; allowed: at most {MAX_TRACE_POINTS:,} rounds per trace "
                "(raise round_duration_s)"
            )
        total += points
        if total > MAX_TOTAL_TRACE_POINTS:
            raise ConfigError(
                f"tdrive_dir={str(folder)!r}: {len(traces) + 1} traces resampled at round_duration_s={dt_s} exceed "
                f"{MAX_TOTAL_TRACE_POINTS:,} points; allowed: fewer vehicles (each loads one trace) or a longer "
                "round_duration_s"
            )
        report.fixes_kept += len(t)
        traces.append(resample(t, xy, dt_s))
    report.traces_kept = len(traces)
    if not traces:
        raise ConfigError(f"tdrive_dir={str(folder)!r}: no trace has two valid points ({report.summary()})")
    log.info(report.summary())
    return traces, report


def load_tdrive(directory: str | os.PathLike[str], dt_s: float, max_speed_mps: float) -> list[np.ndarray]:
    """All ``*.txt`` traces in ``directory``, cleaned and resampled to ``dt_s``; each (T, 2) metres."""
    return read_tdrive(directory, dt_s, max_speed_mps)[0]


def tdrive_directory(config: IoVConfig) -> Path:
    """Where T-Drive traces live: ``tdrive_dir``, else ``$IOV_DATA_DIR/tdrive``."""
    if config.mobility.tdrive_dir:
        return Path(config.mobility.tdrive_dir)
    data = os.environ.get("IOV_DATA_DIR")
    if not data:
        raise ConfigError(
            "mobility_model='tdrive' needs traces: set tdrive_dir or IOV_DATA_DIR (with a tdrive/ folder); "
            "allowed alternative: mobility_model='grid'"
        )
    return Path(data) / "tdrive"


@dataclass
class TraceMobility(_StraightLine):
    """Replays T-Drive displacements: each vehicle follows a trace from a random offset, from its start point.

    Displacements are accumulated one round at a time, so memory does not grow with the episode length.
    """

    width_m: float
    height_m: float
    positions_m: np.ndarray  # (N, 2) start points
    dt_s: float
    scale: float
    flat_m: np.ndarray  # (sum of trace lengths, 2): every trace, concatenated
    first: np.ndarray  # (N,) index in flat_m of the vehicle's trace start
    length: np.ndarray  # (N,) length of the vehicle's trace
    offset: np.ndarray  # (N,) the vehicle's random starting index in its trace
    t: int = 0
    cum_m: np.ndarray = None  # type: ignore[assignment]  # (N, 2) unscaled displacement after t rounds
    _next_m: np.ndarray | None = None

    @classmethod
    def build(
        cls, traces: list[np.ndarray], start_m: np.ndarray, width_m: float, height_m: float,
        dt_s: float, scale: float, rng: np.random.Generator,
    ) -> TraceMobility:
        """Assign traces to vehicles (cycled) with random offsets into them."""
        n = len(start_m)
        lengths = np.array([len(tr) for tr in traces])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        which = np.arange(n) % len(traces)
        # one draw per vehicle, in vehicle order: the offsets of earlier versions for the same seed
        offset = np.array([int(rng.integers(0, max(1, lengths[w] - 1))) for w in which], dtype=np.int64)
        return cls(width_m, height_m, start_m.copy(), dt_s, scale, np.concatenate(traces, axis=0), starts[which],
                   lengths[which], offset, cum_m=np.zeros((n, 2)))

    def _step_m(self, t: int) -> np.ndarray:
        """Unscaled displacement from round t-1 to round t; a wrap back to the trace start is no move."""
        idx = (self.offset + t) % self.length
        prev = (self.offset + t - 1) % self.length
        step = self.flat_m[self.first + idx] - self.flat_m[self.first + prev]
        step[idx == 0] = 0.0
        return step

    def _next(self) -> np.ndarray:
        if self._next_m is None:
            self._next_m = self.cum_m + self._step_m(self.t + 1)
        return self._next_m

    def _place(self, cum_m: np.ndarray) -> np.ndarray:
        return _reflect_into(self.positions_m + cum_m * self.scale, self.width_m, self.height_m)

    @property
    def current_m(self) -> np.ndarray:
        """Positions at the current round."""
        return self._place(self.cum_m)

    @property
    def velocity_mps(self) -> np.ndarray:
        """Velocity estimated from the displacement to the next round."""
        return (self._place(self._next()) - self._place(self.cum_m)) / self.dt_s

    def step(self, dt_s: float) -> None:
        """Advance one round."""
        self.cum_m = self._next()
        self._next_m = None
        self.t += 1


def _reflect_into(pos: np.ndarray, width_m: float, height_m: float) -> np.ndarray:
    """Fold unbounded coordinates back into the map (mirror at each edge)."""
    size = np.array([width_m, height_m])
    period = 2 * size
    m = np.mod(pos, period)
    return np.where(m > size, period - m, m)


# -- SUMO --------------------------------------------------------------------------------------------
DWELL_MIN_SPEED_MPS = 1.0  # a vehicle stopped at a light or in a queue is assumed to creep on, not to stay


class SumoMobility:
    """Replays a SUMO trace round by round (``sim/sumo.py`` runs SUMO); dwell follows each vehicle's route.

    Agent ``i`` is a vehicle that drives a trip, leaves the network (``present`` False: inactive), and later
    enters again on a new trip. Its dwell under an RSU is the time to drive along its SUMO route until the
    route leaves the coverage disc, or ends (the vehicle leaves the network), at SUMO's speeds: each edge's
    mean speed over the last round (SUMO's edgeData, the limit on an empty edge), and on the current edge
    the vehicle's own speed where it is faster.
    """

    def __init__(self, trace: SumoTrace, width_m: float, height_m: float) -> None:
        self.trace = trace
        self.size_m = np.array([width_m, height_m])
        self.t = 0
        self._build_route_table()

    def _build_route_table(self) -> None:
        """Every route as one padded row of points: position, driven metres, edge, and index of that edge in the route."""
        tr = self.trace
        lengths, ptr, xy = tr.edge_length_m, tr.edge_ptr, tr.edge_xy_m
        count = np.diff(ptr)
        edge_of_point = np.repeat(np.arange(len(lengths)), count)
        # arc length along each edge's shape, rescaled to SUMO's lane length ("driven metres")
        step = np.zeros(len(xy))
        if len(xy) > 1:
            step[1:] = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        step[ptr[:-1][count > 0]] = 0.0  # a new edge starts at 0
        arc = np.cumsum(step)
        arc -= arc[ptr[:-1]][edge_of_point] if len(xy) else 0.0
        geo = np.zeros(len(lengths))
        np.maximum.at(geo, edge_of_point, arc)
        arc *= np.divide(lengths, geo, out=np.zeros_like(geo), where=geo > 0)[edge_of_point]

        rptr, redges = tr.route_ptr, tr.route_edges
        n_routes = len(rptr) - 1
        route_of_entry = np.repeat(np.arange(n_routes), np.diff(rptr))
        entry_pos = np.arange(len(redges)) - rptr[route_of_entry]  # index of the edge within its route
        done = np.cumsum(lengths[redges])  # driven metres at the end of each route entry...
        self._entry_start_m = done - lengths[redges] - (done - lengths[redges])[rptr[:-1]][route_of_entry]
        pts_per_entry = count[redges]
        entry_of = np.repeat(np.arange(len(redges)), pts_per_entry)
        flat_ptr = np.concatenate([[0], np.cumsum(pts_per_entry)])
        point = ptr[redges][entry_of] + np.arange(flat_ptr[-1]) - flat_ptr[entry_of]
        route_of = route_of_entry[entry_of]
        per_route = np.bincount(route_of, minlength=n_routes)
        col = np.arange(len(point)) - np.concatenate([[0], np.cumsum(per_route)])[route_of]
        width = max(int(per_route.max(initial=0)), 1)
        self._pts = np.zeros((n_routes, width, 2))
        self._arc = np.zeros((n_routes, width))
        self._edge = np.zeros((n_routes, width), dtype=np.int64)
        self._pos = np.zeros((n_routes, width), dtype=np.int64)
        self._valid = np.zeros((n_routes, width), dtype=bool)
        self._pts[route_of, col] = xy[point]
        self._arc[route_of, col] = self._entry_start_m[entry_of] + arc[point]
        self._edge[route_of, col] = redges[entry_of]
        self._pos[route_of, col] = entry_pos[entry_of]
        self._valid[route_of, col] = True

    @property
    def current_m(self) -> np.ndarray:
        """Positions this round, inside the map (a boundary road's outer lane sits a metre or two outside)."""
        return np.clip(self.trace.xy_m[self.t], 0.0, self.size_m)

    @property
    def present(self) -> np.ndarray:
        """Whether each agent's vehicle is on the road this round."""
        return self.trace.present[self.t]

    @property
    def speed_mps(self) -> np.ndarray:
        """SUMO speed of each agent's vehicle (0 when absent)."""
        return self.trace.speed_mps[self.t]

    @property
    def heading_deg(self) -> np.ndarray:
        """SUMO heading: 0 = north (+y), clockwise."""
        return self.trace.angle_deg[self.t]

    @property
    def velocity_mps(self) -> np.ndarray:
        """Velocity vectors from SUMO's speed and heading."""
        a = np.radians(self.heading_deg)
        return self.speed_mps[:, None] * np.stack([np.sin(a), np.cos(a)], axis=1)

    @property
    def background_m(self) -> np.ndarray:
        """Vehicles on the road that are not agents (traffic), this round."""
        tr = self.trace
        return tr.background_xy_m[tr.background_ptr[self.t]: tr.background_ptr[self.t + 1]]

    def roads_m(self) -> list[np.ndarray]:
        """Polyline of every road (edge), for drawing."""
        tr = self.trace
        return [tr.edge_xy_m[a:b] for a, b in zip(tr.edge_ptr[:-1], tr.edge_ptr[1:], strict=True)]

    def step(self, dt_s: float) -> None:
        """Advance one round (the trace was sampled every ``round_duration_s``)."""
        self.t = min(self.t + 1, self.trace.num_rounds - 1)

    def dwell_time_s(self, centres_m: np.ndarray, radius_m: float) -> np.ndarray:
        """Time before each present vehicle's route leaves the disc around its row of ``centres_m`` (0 if absent)."""
        tr, t = self.trace, self.t
        out = np.zeros(len(centres_m))
        who = np.flatnonzero(self.present)
        if len(who) == 0:
            return out
        here, centre = self.current_m[who], centres_m[who]
        r, j = tr.route[t, who], tr.route_pos[t, who]
        entry = tr.route_ptr[r] + j
        s0 = self._entry_start_m[entry] + np.minimum(tr.lane_pos_m[t, who], tr.edge_length_m[tr.route_edges[entry]])
        pts, arc, valid = self._pts[r], self._arc[r], self._valid[r]
        ahead = valid & (arc > s0[:, None])  # the route still to drive, after the vehicle's own position
        r2 = radius_m * radius_m
        outside = ahead & (np.sum((pts - centre[:, None, :]) ** 2, axis=2) > r2)
        exits = outside.any(axis=1)
        k = np.argmax(outside, axis=1)
        rows = np.arange(len(who))
        # the exit lies on the segment into point k, which starts at point k - 1 or, if that is behind, the vehicle
        from_vehicle = (k == 0) | ~ahead[rows, np.maximum(k - 1, 0)]
        a = np.where(from_vehicle[:, None], here, pts[rows, np.maximum(k - 1, 0)])
        ab, ac = pts[rows, k] - a, a - centre
        qa, qb, qc = np.sum(ab * ab, axis=1), 2 * np.sum(ab * ac, axis=1), np.sum(ac * ac, axis=1) - r2
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.clip((-qb + np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa), 0.0, 1.0)
        u = np.where(qa > 0, u, 1.0)
        # driven metres of each segment ending at a point ahead, weighted 1 before the exit, u on its segment
        before = np.concatenate([np.full((len(who), 1), -np.inf), arc[:, :-1]], axis=1)
        ds = np.where(ahead, arc - np.maximum(before, s0[:, None]), 0.0)
        col = np.arange(arc.shape[1])[None, :]
        weight = np.where(exits[:, None], (col < k[:, None]) + (col == k[:, None]) * u[:, None], 1.0)
        speed = tr.edge_speed_mps[t, self._edge[r]]
        own = self._pos[r] == j[:, None]
        speed = np.where(own, np.maximum(tr.speed_mps[t, who][:, None], speed), speed)
        time_s = np.sum(ds * weight / np.maximum(speed, DWELL_MIN_SPEED_MPS), axis=1)
        inside = np.sum((here - centre) ** 2, axis=1) <= r2
        out[who] = np.where(inside, np.minimum(time_s, MAX_DWELL_S), 0.0)
        return out
