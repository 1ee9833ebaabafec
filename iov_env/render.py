"""Renderings: a labelled map frame, an ANSI summary, and episode videos.

``rgb_array`` frames are drawn in two layers. The map itself (roads, RSU coverage discs, RSUs, SUMO
background traffic, vehicles coloured by task and sized by rank) is a numpy raster whose size and
work are bounded (``map_raster``; the limits are in the configuration docs). matplotlib then frames it
(``render_figure``): axes in metres, each vehicle's executed rank as a label, a legend of task
colours, RSUs and coverage, the round, and this round's energy against its budget per task. matplotlib
and imageio are imported only when a frame or a video is made, never with ``import iov_env``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from iov_env.sim.simulator import IoVSimulator, RoundMetrics

TASK_COLOURS = np.array([[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14]], dtype=np.uint8)
CANVAS_WIDTH_PX = 480  # the map raster's width; the frame adds FRAME_* margins around it
MAX_CANVAS_HEIGHT_PX = 1920  # a long thin map is scaled down to fit, never drawn as a giant array
MIN_ROAD_STEP_PX = 2.0  # roads closer than this on screen would paint the whole canvas: not drawn
COVERAGE_BUDGET_CANVASES = 16  # coverage shading stops after blending this many canvases' worth of pixels
ROAD_COLOUR = np.array([120, 120, 120], dtype=np.uint8)
TRAFFIC_COLOUR = np.array([40, 40, 40], dtype=np.uint8)
RSU_COLOUR = np.array([60, 60, 60], dtype=np.uint8)
COVERAGE_COLOUR = np.array([200, 200, 200], dtype=np.uint8)
COVERAGE_ALPHA = 0.35
INACTIVE_COLOUR = np.array([150, 150, 150], dtype=np.uint8)
BACKGROUND = 250

# the frame around the map, in pixels (drawn at FRAME_DPI): room for tick labels, the title and the side panel
FRAME_DPI = 100
FRAME_LEFT_PX = 62
FRAME_BOTTOM_PX = 46
FRAME_TOP_PX = 44
FRAME_PANEL_PX = 230
MIN_MAP_PX = 120  # a map raster thinner than this is drawn stretched to it, so axes and labels stay legible
MAX_RANK_LABELS = 64  # beyond this many vehicles on the road the labels would overlap: dot size alone shows rank
VIDEO_SUFFIXES = (".gif", ".mp4")


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


def map_scale(sim: IoVSimulator) -> tuple[float, int, int]:
    """Pixels per metre and the (width, height) in pixels of the map raster, bounded by the canvas limits."""
    cfg = sim.config
    scale = min(CANVAS_WIDTH_PX / cfg.map.width_m, MAX_CANVAS_HEIGHT_PX / cfg.map.height_m)
    w = min(max(int(round(cfg.map.width_m * scale)), 1), CANVAS_WIDTH_PX)
    h = min(max(int(round(cfg.map.height_m * scale)), 1), MAX_CANVAS_HEIGHT_PX)
    return scale, w, h


def vehicle_marker_radius_px(rank: np.ndarray, max_rank: int) -> np.ndarray:
    """A vehicle's dot radius in raster pixels: 2 px at rank 0 (no round yet), 7 px at the largest rank, log-spaced."""
    return 2.0 + 5.0 * np.log2(1 + np.asarray(rank, dtype=float)) / np.log2(1 + max_rank)


def map_raster(sim: IoVSimulator, last: RoundMetrics | None) -> np.ndarray:
    """The (H, W, 3) uint8 map of the service area: roads, coverage, RSUs, traffic and vehicles, no annotation."""
    cfg = sim.config
    scale, w, h = map_scale(sim)
    img = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
    to_px = lambda p: (p[0] * scale, h - 1 - p[1] * scale)  # noqa: E731 - y grows upwards on the map
    step = cfg.mobility.road_spacing_m * scale
    if cfg.mobility.mobility_model == "grid" and step >= MIN_ROAD_STEP_PX:
        for x in np.arange(0.0, w, step):
            img[:, int(x)] = 232
        for y in np.arange(0.0, h, step):
            img[h - 1 - int(y), :] = 232
    roads = getattr(sim.mobility, "roads_m", None)
    if roads is not None:  # SUMO: the real road network, drawn under the coverage discs
        _polylines(img, [np.stack(to_px(p.T), axis=1) for p in roads()], ROAD_COLOUR)
    radius_px = cfg.rsu.coverage_radius_m * scale
    budget = COVERAGE_BUDGET_CANVASES * h * w  # thousands of map-sized discs would take minutes: shade the first
    for rsu in sim.rsus_m:
        x, y = to_px(rsu)
        area = (min(x + radius_px, w) - max(x - radius_px, 0)) * (min(y + radius_px, h) - max(y - radius_px, 0))
        budget -= max(area, 0.0)
        if budget < 0:
            break
        _disc(img, x, y, radius_px, COVERAGE_COLOUR, alpha=COVERAGE_ALPHA)
    for rsu in sim.rsus_m:
        x, y = to_px(rsu)
        img[max(int(y) - 3, 0): int(y) + 4, max(int(x) - 3, 0): int(x) + 4] = RSU_COLOUR
    for p in getattr(sim.mobility, "background_m", ()):  # SUMO vehicles that are not agents
        x, y = to_px(p)
        _disc(img, x, y, 2.0, TRAFFIC_COLOUR)
    ranks = last.rank if last is not None else np.zeros(cfg.num_vehicles, dtype=int)
    sizes = vehicle_marker_radius_px(ranks, max(cfg.learning.rank_set))
    present = sim.mobility.present
    for v, p in enumerate(sim.positions_m):
        if not present[v]:  # off the road (SUMO): parked between trips, not drawn
            continue
        x, y = to_px(p)
        colour = TASK_COLOURS[sim.vehicle_task[v] % len(TASK_COLOURS)]
        if not sim.state.active[v]:
            colour = INACTIVE_COLOUR
        _disc(img, x, y, sizes[v], colour)
    return img


def energy_summary(sim: IoVSimulator, last: RoundMetrics | None) -> list[tuple[str, float, float]]:
    """(label, energy J, budget J) per task for the round just played, then the fleet's total; empty before round 1."""
    if last is None:
        return []
    rows = [(task, float(last.task_energy_j[k]), float(last.task_budget_j[k]))
            for k, task in enumerate(sim.config.tasks.tasks)]
    rows.append(("fleet", float(last.task_energy_j.sum()), float(last.task_budget_j.sum())))
    return rows


def episode_energy(sim: IoVSimulator) -> tuple[float, float, int]:
    """Energy and budget (J) summed over the rounds ``sim.history`` still holds, and how many rounds that is."""
    rounds = list(sim.history)
    used = float(sum(m.task_energy_j.sum() for m in rounds))
    budget = float(sum(m.task_budget_j.sum() for m in rounds))
    return used, budget, len(rounds)


def _mpl_colour(rgb: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(c) / 255.0 for c in rgb)  # type: ignore[return-value]


def _require(module: str, extra: str) -> Any:
    """Import an optional rendering dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is needed for this rendering and is not installed; allowed: pip install 'iov-env[{extra}]' "
            f"(or pip install {module.split('.')[0]})"
        ) from exc


def render_figure(sim: IoVSimulator, last: RoundMetrics | None) -> Figure:
    """The annotated frame as a matplotlib ``Figure`` (Agg canvas, no pyplot state): map, labels, legend, energy.

    Its size in pixels depends only on the config, so every frame of an episode has the same shape.
    """
    _require("matplotlib", "bench")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cfg = sim.config
    raster = map_raster(sim, last)
    scale, w, h = map_scale(sim)
    map_w, map_h = max(w, MIN_MAP_PX), max(h, MIN_MAP_PX)
    tasks = cfg.tasks.tasks
    is_sumo = getattr(sim.mobility, "roads_m", None) is not None
    legend_rows = len(tasks) + 3 + (2 if is_sumo else 0)
    panel_h = 20 * legend_rows + 22 * (len(tasks) + 2) + 70
    fig_w = FRAME_LEFT_PX + map_w + FRAME_PANEL_PX
    fig_h = FRAME_TOP_PX + max(map_h, panel_h) + FRAME_BOTTOM_PX
    fig = Figure(figsize=(fig_w / FRAME_DPI, fig_h / FRAME_DPI), dpi=FRAME_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    map_bottom = fig_h - FRAME_TOP_PX - map_h
    ax = fig.add_axes((FRAME_LEFT_PX / fig_w, map_bottom / fig_h, map_w / fig_w, map_h / fig_h))
    width_m, height_m = cfg.map.width_m, cfg.map.height_m
    ax.imshow(raster, extent=(0.0, width_m, 0.0, height_m), origin="upper", interpolation="nearest", aspect="auto")
    ax.set_xlim(0.0, width_m)
    ax.set_ylim(0.0, height_m)
    ax.set_xlabel("x (m)", fontsize=8)
    ax.set_ylabel("y (m)", fontsize=8)
    ax.tick_params(labelsize=7)

    round_text = f"round {sim.round_index}/{cfg.episode.rounds}"
    active = int(np.asarray(sim.state.active).sum())
    if last is None:
        status = "no round played yet"
    elif sim.done:
        status = "episode over"
    else:
        status = f"{active}/{cfg.num_vehicles} vehicles active next round"
    fig.text(FRAME_LEFT_PX / fig_w, 1 - 14 / fig_h, f"{round_text}  ·  {status}", fontsize=10, weight="bold",
             va="top", ha="left")
    fig.text(FRAME_LEFT_PX / fig_w, 1 - 32 / fig_h,
             f"{cfg.num_vehicles} vehicles, {len(sim.rsus_m)} RSUs, {cfg.mobility.mobility_model} mobility; "
             "label = executed LoRA rank (off: did not train)", fontsize=7.5, va="top", ha="left", color="0.3")

    present = np.asarray(sim.mobility.present, dtype=bool)
    if last is not None and int(present.sum()) <= MAX_RANK_LABELS:
        pos = sim.positions_m
        offset_m = 8.0 / max(scale, 1e-12)  # 8 raster px beside the dot
        for v in np.flatnonzero(present):
            label = str(int(last.rank[v])) if last.active[v] else "off"
            ax.text(float(pos[v, 0]) + offset_m, float(pos[v, 1]) + offset_m, label, fontsize=7,
                    ha="left", va="bottom", color="black", clip_on=True, gid="rank-label")

    handles: list[Any] = [
        Line2D([], [], marker="o", linestyle="", markersize=7, color=_mpl_colour(TASK_COLOURS[k % len(TASK_COLOURS)]),
               label=f"vehicle, task {task}") for k, task in enumerate(tasks)
    ]
    handles.append(Line2D([], [], marker="o", linestyle="", markersize=7, color=_mpl_colour(INACTIVE_COLOUR),
                          label="vehicle, inactive"))
    handles.append(Line2D([], [], marker="s", linestyle="", markersize=6, color=_mpl_colour(RSU_COLOUR), label="RSU"))
    handles.append(Patch(facecolor=_mpl_colour(COVERAGE_COLOUR), alpha=COVERAGE_ALPHA + 0.3, edgecolor="0.6",
                         label=f"RSU coverage ({cfg.rsu.coverage_radius_m:g} m)"))
    if is_sumo:
        handles.append(Line2D([], [], color=_mpl_colour(ROAD_COLOUR), linewidth=2, label="road (SUMO)"))
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=3, color=_mpl_colour(TRAFFIC_COLOUR),
                              label="background traffic"))
    panel_left = (FRAME_LEFT_PX + map_w + 12) / fig_w
    panel_w = (FRAME_PANEL_PX - 20) / fig_w
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(panel_left, 1 - FRAME_TOP_PX / fig_h),
               fontsize=7.5, frameon=False, title="dot size grows with rank", title_fontsize=7.5,
               alignment="left", borderaxespad=0.0)

    rows = energy_summary(sim, last)
    legend_px = 20 * legend_rows + 20
    bars_h = 22 * (len(tasks) + 1)
    bars_bottom = fig_h - FRAME_TOP_PX - legend_px - 24 - bars_h
    bax = fig.add_axes((panel_left + 58 / fig_w, max(bars_bottom, FRAME_BOTTOM_PX) / fig_h,
                        panel_w - 58 / fig_w, bars_h / fig_h))
    bax.set_title("energy / budget, this round", fontsize=7.5, loc="left")
    if rows:
        labels = [r[0] for r in rows]
        ratios = [r[1] / r[2] if r[2] > 0 else math.inf for r in rows]
        shown = [min(r, 2.0) if math.isfinite(r) else 2.0 for r in ratios]
        colours = ["#f1948a" if r > 1.0 else "#85c1e9" for r in ratios]  # red over budget, blue within
        y = np.arange(len(rows))[::-1]
        bax.barh(y, shown, color=colours, height=0.6)
        bax.axvline(1.0, color="black", linewidth=0.8)
        bax.set_yticks(y, labels, fontsize=7)
        for yi, (_, used, budget) in zip(y, rows, strict=True):
            bax.text(0.03, yi, f"{used:.3g} / {budget:.3g} J", fontsize=6.5, va="center", ha="left", gid="energy-label")
    else:
        bax.set_yticks([])
        bax.text(0.5, 0.5, "no round yet", fontsize=7, ha="center", va="center", transform=bax.transAxes)
    bax.set_xlim(0.0, 2.0)
    bax.set_xticks([0.0, 1.0, 2.0], ["0", "budget", "2x"], fontsize=6.5)
    for side in ("top", "right"):
        bax.spines[side].set_visible(False)
    used, budget, n = episode_energy(sim)
    if n:
        span = "episode so far" if n == sim.round_index else f"last {n} rounds"
        fig.text(panel_left, (max(bars_bottom, FRAME_BOTTOM_PX) - 30) / fig_h,
                 f"{span}: {used:,.0f} / {budget:,.0f} J ({used / budget:.0%})" if budget > 0 else
                 f"{span}: {used:,.0f} J, no budget", fontsize=7.5, va="top", ha="left")
    return fig


def figure_rgb(fig: Figure) -> np.ndarray:
    """Draw a figure on its Agg canvas and return its pixels as an (H, W, 3) uint8 array."""
    canvas = fig.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def render_rgb(sim: IoVSimulator, last: RoundMetrics | None) -> np.ndarray:
    """The annotated frame (``render_mode="rgb_array"``) as an (H, W, 3) uint8 array."""
    return figure_rgb(render_figure(sim, last))


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


def write_video(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 2.0) -> Path:
    """Write frames (same-shape (H, W, 3) uint8 arrays) as a GIF or an MP4, chosen by the suffix; returns the path.

    GIFs loop forever and show each frame ``1 / fps`` seconds. MP4 uses imageio's ffmpeg plugin (the
    ``imageio-ffmpeg`` package ships the binary); its frames are padded to even sizes, as H.264 needs.
    The file is written under a temporary name and renamed, so a killed run leaves no partial video.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"video path {str(out)!r} has suffix {suffix!r}; allowed: {', '.join(VIDEO_SUFFIXES)}")
    if not frames:
        raise ValueError("no frames to write; allowed: at least one (H, W, 3) uint8 frame")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or next(iter(shapes))[-1:] != (3,):
        raise ValueError(f"frames have shapes {sorted(shapes)[:3]}; allowed: one (H, W, 3) shape for every frame")
    if not fps > 0:
        raise ValueError(f"fps={fps!r}; allowed: a positive number")
    iio = _require("imageio.v3", "bench")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{suffix}")
    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    try:
        if suffix == ".gif":
            iio.imwrite(tmp, stack, extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            _require("imageio_ffmpeg", "bench")
            hh, ww = stack.shape[1:3]
            stack = np.pad(stack, ((0, 0), (0, hh % 2), (0, ww % 2), (0, 0)), constant_values=255)
            iio.imwrite(tmp, stack, extension=".mp4", plugin="FFMPEG", fps=fps, codec="libx264",
                        macro_block_size=1, pixelformat="yuv420p")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
