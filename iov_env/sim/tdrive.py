"""T-Drive taxi traces (Beijing GPS fixes): parsing, cleaning (ranges and the outlier rules), resampling."""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iov_env.config import ConfigError, IoVConfig
from iov_env.files import DataFormatError, iter_lines, shorten

if TYPE_CHECKING:
    pass

EARTH_RADIUS_M = 6_371_000.0


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

