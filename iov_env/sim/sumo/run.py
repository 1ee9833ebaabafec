"""One SUMO run per traffic draw, sampled at every round boundary into a ``SumoTrace``."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from iov_env.config import IoVConfig
from iov_env.sim.sumo.install import binary, import_libsumo
from iov_env.sim.sumo.network import net_boundary_m, tool_env

_TRACI_CONNECT_TRIES = 1200  # x 25 ms: 30 s for SUMO to load a large network


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


# -- running SUMO --------------------------------------------------------------------------------
def libsumo_busy() -> bool:
    """Whether this process already runs a libsumo simulation (libsumo holds one; a second start replaces it)."""
    return "libsumo" in sys.modules and sys.modules["libsumo"] is not None and bool(
        sys.modules["libsumo"].simulation.isLoaded())


def start_sumo(backend: str, cmd: list[str]) -> Any:
    """A started simulation exposing the TraCI API: the libsumo module, or a traci connection."""
    if backend == "libsumo":
        libsumo = import_libsumo()
        libsumo.start(cmd)
        return libsumo
    import traci
    from sumolib.miscutils import getFreeSocketPort

    port = getFreeSocketPort()
    proc = subprocess.Popen([*cmd, "--remote-port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=tool_env())
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
            api = start_sumo(backend, cmd)
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


