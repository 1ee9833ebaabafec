"""``SumoMobility``: replays a SUMO trace round by round; dwell follows each vehicle's route."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from iov_env.sim.mobility import MAX_DWELL_S

if TYPE_CHECKING:
    from iov_env.sim.sumo.run import SumoTrace


DWELL_MIN_SPEED_MPS = 1.0  # a vehicle stopped at a light or in a queue is assumed to creep on, not to stay


class SumoMobility:
    """Replays a SUMO trace round by round (``sumo.run`` runs SUMO); dwell follows each vehicle's route.

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
