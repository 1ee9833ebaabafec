"""Renderings: an RGB map (RSU coverage, vehicles coloured by task, sized by rank) and an ANSI summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from iov_env.sim.simulator import IoVSimulator, RoundMetrics

TASK_COLOURS = np.array([[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14]], dtype=np.uint8)
CANVAS_WIDTH_PX = 480
ROAD_COLOUR = np.array([120, 120, 120], dtype=np.uint8)
TRAFFIC_COLOUR = np.array([40, 40, 40], dtype=np.uint8)


def _disc(img: np.ndarray, cx: float, cy: float, radius: float, colour: np.ndarray, alpha: float = 1.0) -> None:
    """Blend a filled disc into ``img`` (only the bounding box is touched)."""
    h, w, _ = img.shape
    x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 1, w)
    y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    patch = img[y0:y1, x0:x1].astype(float)
    patch[inside] = (1 - alpha) * patch[inside] + alpha * colour
    img[y0:y1, x0:x1] = patch.astype(np.uint8)


def _polylines(img: np.ndarray, lines: list[np.ndarray], colour: np.ndarray, width_px: int = 2) -> None:
    """Draw pixel polylines (x right, y down) ``width_px`` thick, sampling each segment every half pixel."""
    h, w, _ = img.shape
    xs, ys = [], []
    for pts in lines:
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            n = max(int(np.ceil(2 * np.hypot(*(b - a)))), 1) + 1
            u = np.linspace(0.0, 1.0, n)[:, None]
            p = a + u * (b - a)
            xs.append(p[:, 0])
            ys.append(p[:, 1])
    if not xs:
        return
    x, y = np.concatenate(xs), np.concatenate(ys)
    for dx in range(width_px):
        for dy in range(width_px):
            xi = np.clip(np.round(x - 0.5 * (width_px - 1) + dx).astype(int), 0, w - 1)
            yi = np.clip(np.round(y - 0.5 * (width_px - 1) + dy).astype(int), 0, h - 1)
            img[yi, xi] = colour


def render_rgb(sim: IoVSimulator, last: RoundMetrics | None) -> np.ndarray:
    """An (H, W, 3) uint8 map of the service area."""
    cfg = sim.config
    scale = CANVAS_WIDTH_PX / cfg.map.width_m
    h = max(int(round(cfg.map.height_m * scale)), 1)
    img = np.full((h, CANVAS_WIDTH_PX, 3), 250, dtype=np.uint8)
    to_px = lambda p: (p[0] * scale, h - 1 - p[1] * scale)  # noqa: E731 - y grows upwards on the map
    if cfg.mobility.mobility_model == "grid":
        step = cfg.mobility.road_spacing_m * scale
        for x in np.arange(0.0, CANVAS_WIDTH_PX, step):
            img[:, int(x)] = 232
        for y in np.arange(0.0, h, step):
            img[h - 1 - int(y), :] = 232
    roads = getattr(sim.mobility, "roads_m", None)
    if roads is not None:  # SUMO: the real road network, drawn under the coverage discs
        _polylines(img, [np.stack(to_px(p.T), axis=1) for p in roads()], ROAD_COLOUR)
    for rsu in sim.rsus_m:
        x, y = to_px(rsu)
        _disc(img, x, y, cfg.rsu.coverage_radius_m * scale, np.array([200, 200, 200]), alpha=0.35)
    for rsu in sim.rsus_m:
        x, y = to_px(rsu)
        img[max(int(y) - 3, 0): int(y) + 4, max(int(x) - 3, 0): int(x) + 4] = (60, 60, 60)
    for p in getattr(sim.mobility, "background_m", ()):  # SUMO vehicles that are not agents
        x, y = to_px(p)
        _disc(img, x, y, 2.0, TRAFFIC_COLOUR)
    ranks = last.rank if last is not None else np.zeros(cfg.num_vehicles, dtype=int)
    max_rank = max(cfg.learning.rank_set)
    present = sim.mobility.present
    for v, p in enumerate(sim.positions_m):
        if not present[v]:  # off the road (SUMO): parked between trips, not drawn
            continue
        x, y = to_px(p)
        size = 2.0 + 5.0 * np.log2(1 + ranks[v]) / np.log2(1 + max_rank)
        colour = TASK_COLOURS[sim.vehicle_task[v] % len(TASK_COLOURS)]
        if not sim.state.active[v]:
            colour = np.array([150, 150, 150], dtype=np.uint8)
        _disc(img, x, y, size, colour)
    return img


def render_ansi(sim: IoVSimulator, last: RoundMetrics | None) -> str:
    """A few lines: round, per-task accuracy, latency, energy vs budget, dual price."""
    cfg = sim.config
    lines = [f"round {sim.round_index}/{cfg.episode.rounds}  active {int(sim.state.active.sum())}/{cfg.num_vehicles}"]
    if last is None:
        for k, task in enumerate(cfg.tasks.tasks):
            lines.append(f"  {task:<10} budget {sim.task_budget_j[k]:7.2f} J  (no round yet)")
    else:
        for k, task in enumerate(cfg.tasks.tasks):
            lines.append(
                f"  {task:<10} acc {last.task_accuracy[k]:.3f}  latency {last.task_latency_s[k]:6.2f} s  "
                f"energy {last.task_energy_j[k]:7.2f}/{last.task_budget_j[k]:7.2f} J  price {last.dual_price[k]:.3f}"
            )
    return "\n".join(lines)
