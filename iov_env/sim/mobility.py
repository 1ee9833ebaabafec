"""Where vehicles are: T-Drive traces or a synthetic road grid, RSU placement, coverage and dwell time."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iov_env.config import MAX_MOBILITY_SUBSTEPS, ConfigError, IoVConfig, mobility_substeps
from iov_env.files import DataFormatError, iter_lines

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


ATTACH_BLOCK_PAIRS = 1_000_000  # vehicle-RSU distances held at once (16 MB of differences)


def attach(positions_m: np.ndarray, rsus_m: np.ndarray, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest RSU within ``radius_m`` for each vehicle (-1 if none) and the distance to it."""
    n, m = len(positions_m), len(rsus_m)
    rows = max(1, ATTACH_BLOCK_PAIRS // max(m, 1))
    idx = np.empty(n, dtype=np.intp)
    dist = np.empty(n)
    for lo in range(0, n, rows):  # blocks of vehicles: same numbers as one pass, bounded memory
        d = np.linalg.norm(positions_m[lo:lo + rows, None, :] - rsus_m[None, :, :], axis=-1)
        j = np.argmin(d, axis=1)
        idx[lo:lo + rows] = j
        dist[lo:lo + rows] = d[np.arange(len(j)), j]
    return np.where(dist <= radius_m, idx, -1), dist


def predict_dwell_time_s(
    positions_m: np.ndarray, velocity_mps: np.ndarray, centre_m: np.ndarray, radius_m: float
) -> np.ndarray:
    """Time until a vehicle moving straight at constant velocity leaves the disc around ``centre_m``."""
    rel = positions_m - centre_m
    a = np.einsum("ij,ij->i", velocity_mps, velocity_mps)
    b = np.einsum("ij,ij->i", rel, velocity_mps)
    c = np.einsum("ij,ij->i", rel, rel) - radius_m**2
    disc = np.maximum(b * b - a * c, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b + np.sqrt(disc)) / a
    t = np.where(a > 1e-12, t, MAX_DWELL_S)
    t = np.where(c > 0, 0.0, t)  # already outside
    return np.clip(t, 0.0, MAX_DWELL_S)


# -- synthetic road grid -----------------------------------------------------------------------------
HEADINGS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # E, N, W, S
HEADING_SIGN = np.array([1.0, 1.0, -1.0, -1.0])


@dataclass
class GridMobility:
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
        for _ in range(n_sub):
            self._advance(self.speed_mps * dt_s / n_sub)
        jitter = self.rng.normal(0.0, 0.1 * (self.speed_max_mps - self.speed_min_mps + 1e-9), size=len(self.speed_mps))
        self.speed_mps = np.clip(self.speed_mps + jitter, self.speed_min_mps, self.speed_max_mps)

    def _advance(self, dist_m: np.ndarray) -> None:
        n = len(dist_m)
        rows = np.arange(n)
        axis = self.heading & 1  # 0: along x, 1: along y
        sign = HEADING_SIGN[self.heading]
        coord = self.positions_m[rows, axis]
        new = coord + sign * dist_m
        # the next intersection in the driving direction, and whether this sub-step crosses it
        g = coord / self.spacing_m
        nxt_m = np.where(sign > 0, np.floor(g + 1e-9) + 1.0, np.ceil(g - 1e-9) - 1.0) * self.spacing_m
        crosses = (new - nxt_m) * sign >= 0
        u = self.rng.random(n)  # one draw decides both whether and which way to turn
        turn = crosses & (u < self.turn_probability)
        new_heading = np.where(turn, (self.heading + np.where(u < 0.5 * self.turn_probability, 1, 3)) & 3, self.heading)
        pos = self.positions_m.copy()
        pos[rows, axis] = np.where(turn, nxt_m, new)
        overshoot = np.where(turn, np.abs(new - nxt_m), 0.0)
        pos += HEADINGS[new_heading] * overshoot[:, None]
        # mirror back into the map; a vehicle that hit an edge turns around
        size = self._size
        over, under = pos > size, pos < 0
        hit = (over | under).any(axis=1)
        if hit.any():
            pos = np.where(over, 2 * size - pos, np.where(under, -pos, pos))
            pos = np.minimum(np.maximum(pos, 0.0), size)
            new_heading = np.where(hit, (new_heading + 2) & 3, new_heading)
        self.heading = new_heading
        self.positions_m = pos

    @property
    def _size(self) -> np.ndarray:
        return np.array([self.width_m, self.height_m])


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
            raise ConfigError(f"tdrive_dir={_short(str(folder))!r} {what}; allowed: a folder of T-Drive '*.txt' files")
        files = sorted(folder.glob("*.txt"), key=lambda p: (len(p.stem), p.stem))
    except OSError as exc:
        raise ConfigError(f"tdrive_dir={_short(str(folder))!r} cannot be read: {exc.strerror or exc}") from None
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
class TraceMobility:
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


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _reflect_into(pos: np.ndarray, width_m: float, height_m: float) -> np.ndarray:
    """Fold unbounded coordinates back into the map (mirror at each edge)."""
    size = np.array([width_m, height_m])
    period = 2 * size
    m = np.mod(pos, period)
    return np.where(m > size, period - m, m)
