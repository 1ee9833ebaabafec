"""Where vehicles are: a synthetic road grid, T-Drive traces or SUMO traffic; RSU placement, coverage, dwell time.

Every mobility model offers ``current_m`` and ``velocity_mps`` (N, 2), ``present`` (N,) (the vehicle is on
the road: always, except in SUMO where vehicles enter and leave), ``dwell_time_s(centres_m, radius_m)``
and ``step(dt_s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from iov_env.config import MAX_MOBILITY_SUBSTEPS, IoVConfig, mobility_substeps
from iov_env.lazy import lazy_import

if TYPE_CHECKING:
    pass

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
