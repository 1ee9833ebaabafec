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
import threading
from collections import OrderedDict
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


def static_raster(sim: IoVSimulator) -> np.ndarray:
    """The (H, W, 3) uint8 layers of the map that do not move within an episode: roads, coverage, RSUs."""
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
    return img


def draw_vehicles(img: np.ndarray, sim: IoVSimulator, last: RoundMetrics | None) -> np.ndarray:
    """Draw SUMO background traffic and the agents (coloured by task, sized by rank, grey when inactive) into ``img``."""
    cfg = sim.config
    scale, _, h = map_scale(sim)
    to_px = lambda p: (p[0] * scale, h - 1 - p[1] * scale)  # noqa: E731 - y grows upwards on the map
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


def map_raster(sim: IoVSimulator, last: RoundMetrics | None) -> np.ndarray:
    """The (H, W, 3) uint8 map of the service area: roads, coverage, RSUs, traffic and vehicles, no annotation."""
    return draw_vehicles(static_raster(sim), sim, last)


def _static_key(sim: IoVSimulator) -> tuple[Any, ...]:
    """What the static layers depend on: the map, the RSUs, the roads (a frame is reused only when these match)."""
    cfg = sim.config
    roads = getattr(sim.mobility, "roads_m", None)
    road_bytes = b"".join(np.ascontiguousarray(p).tobytes() for p in roads()) if roads is not None else b""
    return (cfg.map.width_m, cfg.map.height_m, cfg.mobility.mobility_model, cfg.mobility.road_spacing_m,
            cfg.rsu.coverage_radius_m, np.ascontiguousarray(sim.rsus_m).tobytes(), hash(road_bytes))


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


class MapFrame:
    """The annotated frame of one environment: built once, then updated and redrawn every round.

    The axes, tick labels, legend and panel titles are drawn once and kept as a background; each frame
    redraws only what changes (the map raster, the rank labels, the round line, the energy bars and
    their labels), which makes a frame several times cheaper than drawing the figure from scratch. The
    figure's size in pixels depends only on the config, so every frame of an episode has one shape.
    It keeps no reference to a simulator, so envs with the same layout can share it (``render_rgb``).
    """

    def __init__(self, sim: IoVSimulator) -> None:
        _require("matplotlib", "bench")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        cfg = sim.config
        scale, w, h = map_scale(sim)
        self.scale = scale
        map_w, map_h = max(w, MIN_MAP_PX), max(h, MIN_MAP_PX)
        tasks = cfg.tasks.tasks
        is_sumo = getattr(sim.mobility, "roads_m", None) is not None
        legend_rows = len(tasks) + 3 + (2 if is_sumo else 0)
        panel_h = 20 * legend_rows + 22 * (len(tasks) + 2) + 70
        fig_w = FRAME_LEFT_PX + map_w + FRAME_PANEL_PX
        fig_h = FRAME_TOP_PX + max(map_h, panel_h) + FRAME_BOTTOM_PX
        self.fig = fig = Figure(figsize=(fig_w / FRAME_DPI, fig_h / FRAME_DPI), dpi=FRAME_DPI, facecolor="white")
        self.canvas = FigureCanvasAgg(fig)
        map_bottom = fig_h - FRAME_TOP_PX - map_h
        self.ax = ax = fig.add_axes((FRAME_LEFT_PX / fig_w, map_bottom / fig_h, map_w / fig_w, map_h / fig_h))
        width_m, height_m = cfg.map.width_m, cfg.map.height_m
        blank = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
        self.image = ax.imshow(blank, extent=(0.0, width_m, 0.0, height_m), origin="upper", interpolation="nearest",
                               aspect="auto", animated=True)
        ax.set_xlim(0.0, width_m)
        ax.set_ylim(0.0, height_m)
        ax.set_xlabel("x (m)", fontsize=8)
        ax.set_ylabel("y (m)", fontsize=8)
        ax.tick_params(labelsize=7)

        self.status = fig.text(FRAME_LEFT_PX / fig_w, 1 - 14 / fig_h, "", fontsize=10, weight="bold", va="top",
                               ha="left", animated=True)
        fig.text(FRAME_LEFT_PX / fig_w, 1 - 32 / fig_h,
                 f"{cfg.num_vehicles} vehicles, {len(sim.rsus_m)} RSUs, {cfg.mobility.mobility_model} mobility; "
                 "label = executed LoRA rank (off: did not train)", fontsize=7.5, va="top", ha="left", color="0.3")
        # one label per vehicle, hidden until it has a rank to show; none at all for crowded maps
        n_labels = cfg.num_vehicles if cfg.num_vehicles <= MAX_RANK_LABELS else 0
        self.rank_labels = [ax.text(0.0, 0.0, "", fontsize=7, ha="left", va="bottom", color="black", clip_on=True,
                                    gid="rank-label", visible=False, animated=True) for _ in range(n_labels)]

        handles: list[Any] = [
            Line2D([], [], marker="o", linestyle="", markersize=7, label=f"vehicle, task {task}",
                   color=_mpl_colour(TASK_COLOURS[k % len(TASK_COLOURS)])) for k, task in enumerate(tasks)
        ]
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=7, color=_mpl_colour(INACTIVE_COLOUR),
                              label="vehicle, inactive"))
        handles.append(Line2D([], [], marker="s", linestyle="", markersize=6, color=_mpl_colour(RSU_COLOUR),
                              label="RSU"))
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

        legend_px = 20 * legend_rows + 20
        bars_h = 22 * (len(tasks) + 1)
        bars_bottom = max(fig_h - FRAME_TOP_PX - legend_px - 24 - bars_h, FRAME_BOTTOM_PX)
        self.bax = bax = fig.add_axes((panel_left + 58 / fig_w, bars_bottom / fig_h, panel_w - 58 / fig_w,
                                       bars_h / fig_h))
        bax.set_title("energy / budget, this round", fontsize=7.5, loc="left")
        labels = [*tasks, "fleet"]
        y = np.arange(len(labels))[::-1]
        self.bars = list(bax.barh(y, np.zeros(len(labels)), height=0.6, animated=True))
        self.energy_labels = [bax.text(0.03, yi, "", fontsize=6.5, va="center", ha="left", gid="energy-label",
                                       animated=True) for yi in y]
        bax.set_yticks(y, labels, fontsize=7)
        bax.axvline(1.0, color="black", linewidth=0.8)
        bax.set_xlim(0.0, 2.0)
        bax.set_ylim(-0.5, len(labels) - 0.5)
        bax.set_xticks([0.0, 1.0, 2.0], ["0", "budget", "2x"], fontsize=6.5)
        for side in ("top", "right"):
            bax.spines[side].set_visible(False)
        self.no_round = bax.text(0.5, 0.5, "no round yet", fontsize=7, ha="center", va="center",
                                 transform=bax.transAxes, animated=True)
        self.episode = fig.text(panel_left, (bars_bottom - 30) / fig_h, "", fontsize=7.5, va="top", ha="left",
                                animated=True)
        self._background: Any = None
        self._static: np.ndarray = blank
        self._static_key: tuple[Any, ...] | None = None

    def dynamic_artists(self) -> list[Any]:
        """What changes between frames, in drawing order (the map first, labels over it)."""
        return [self.image, *self.ax.spines.values(), *self.rank_labels, self.status, *self.bars,
                *self.energy_labels, self.no_round, self.episode]

    def update(self, sim: IoVSimulator, last: RoundMetrics | None) -> MapFrame:
        """Set every changing artist from the simulator's state and the round just played."""
        cfg = sim.config
        key = _static_key(sim)
        if key != self._static_key:
            self._static, self._static_key = static_raster(sim), key
        self.image.set_data(draw_vehicles(self._static.copy(), sim, last))
        if last is None:
            status = "no round played yet"
        elif sim.done:
            status = "episode over"
        else:
            status = f"{int(np.asarray(sim.state.active).sum())}/{cfg.num_vehicles} vehicles active next round"
        self.status.set_text(f"round {sim.round_index}/{cfg.episode.rounds}  ·  {status}")

        present = np.asarray(sim.mobility.present, dtype=bool)
        pos = sim.positions_m
        offset_m = 8.0 / max(self.scale, 1e-12)  # 8 raster px beside the dot
        for v, label in enumerate(self.rank_labels):
            shown = last is not None and bool(present[v])
            label.set_visible(shown)
            if shown:
                label.set_position((float(pos[v, 0]) + offset_m, float(pos[v, 1]) + offset_m))
                label.set_text(str(int(last.rank[v])) if last.active[v] else "off")

        rows = energy_summary(sim, last)
        self.no_round.set_visible(not rows)
        for bar, text, row in zip(self.bars, self.energy_labels, rows or [None] * len(self.bars), strict=True):
            if row is None:
                bar.set_width(0.0)
                text.set_text("")
                continue
            _, used, budget = row
            ratio = used / budget if budget > 0 else math.inf
            bar.set_width(min(ratio, 2.0) if math.isfinite(ratio) else 2.0)
            bar.set_color("#f1948a" if ratio > 1.0 else "#85c1e9")  # red over budget, blue within
            text.set_text(f"{used:.3g} / {budget:.3g} J")
        used, budget, n = episode_energy(sim)
        span = "episode so far" if n == sim.round_index else f"last {n} rounds"
        if not n:
            self.episode.set_text("")
        elif budget > 0:
            self.episode.set_text(f"{span}: {used:,.0f} / {budget:,.0f} J ({used / budget:.0%})")
        else:
            self.episode.set_text(f"{span}: {used:,.0f} J, no budget")
        return self

    def rgb(self) -> np.ndarray:
        """The frame's pixels, (H, W, 3) uint8: the static background once, then only the changing artists."""
        if self._background is None:
            self.canvas.draw()  # animated artists are left out: this is the background
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
        self.canvas.restore_region(self._background)
        for artist in self.dynamic_artists():
            if artist.get_visible():
                self.fig.draw_artist(artist)
        return np.asarray(self.canvas.buffer_rgba())[:, :, :3].copy()


def layout_key(sim: IoVSimulator) -> tuple[Any, ...]:
    """What a frame's fixed parts depend on (size, axes, legend, labels): envs that agree share one ``MapFrame``."""
    cfg = sim.config
    return (cfg.map.width_m, cfg.map.height_m, tuple(cfg.tasks.tasks), cfg.num_vehicles, len(sim.rsus_m),
            cfg.rsu.coverage_radius_m, cfg.mobility.mobility_model, getattr(sim.mobility, "roads_m", None) is not None)


FRAME_CACHE_SIZE = 8  # frames kept for reuse (a few MB each), least recently used dropped first
_FRAMES: OrderedDict[tuple[Any, ...], MapFrame] = OrderedDict()
_FRAMES_LOCK = threading.Lock()  # matplotlib artists are not thread-safe: one frame is drawn at a time


def render_figure(sim: IoVSimulator, last: RoundMetrics | None) -> Figure:
    """The annotated frame as a fresh matplotlib ``Figure`` (Agg canvas, no pyplot state), for inspection or saving.

    Its artists: the map axes (``x (m)``, ``y (m)``), rank labels (gid ``rank-label``), the legend, and the
    energy bars with their labels (gid ``energy-label``).
    """
    frame = MapFrame(sim).update(sim, last)
    for artist in frame.dynamic_artists():  # drawn with the rest, so that savefig and canvas.draw show them
        artist.set_animated(False)
    return frame.fig


def render_rgb(sim: IoVSimulator, last: RoundMetrics | None) -> np.ndarray:
    """The annotated frame (``render_mode="rgb_array"``) as an (H, W, 3) uint8 array.

    Frames are built once per layout (``layout_key``) and reused, by every round of an episode and by
    other envs of the same layout, so only the changing parts are drawn each time.
    """
    key = layout_key(sim)
    with _FRAMES_LOCK:
        frame = _FRAMES.pop(key, None) or MapFrame(sim)
        _FRAMES[key] = frame
        while len(_FRAMES) > FRAME_CACHE_SIZE:
            _FRAMES.popitem(last=False)
        return frame.update(sim, last).rgb()


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
