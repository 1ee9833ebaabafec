"""Renderings: rgb_array is a labelled map frame that follows the world; ansi names each task; videos.

The frame is a matplotlib figure around a bounded numpy raster of the map: these tests read both the
figure's artists (legend, axis labels, rank labels, energy bars) and the pixels (shape, colours, change).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import iov_env
from iov_env import render
from iov_env.render import CANVAS_WIDTH_PX, FRAME_LEFT_PX, FRAME_TOP_PX, TASK_COLOURS

pytest.importorskip("matplotlib", reason="rgb_array rendering needs matplotlib (the bench extra)")


def _texts(fig) -> list[str]:  # noqa: ANN001 - a matplotlib Figure
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


def _by_gid(fig, gid: str) -> list[str]:  # noqa: ANN001 - a matplotlib Figure
    """The texts of the visible artists tagged ``gid`` (hidden ones wait for a round to show)."""
    return [t.get_text() for t in fig.findobj(lambda a: getattr(a, "get_gid", lambda: None)() == gid)
            if t.get_visible() and t.get_text()]


def test_rgb_array_shape_dtype_and_change(make_parallel) -> None:
    env = make_parallel(preset="tiny", render_mode="rgb_array")
    env.reset(seed=0)
    frames = [env.render()]
    for _ in range(3):
        env.step(dict.fromkeys(env.agents, 6))
        frames.append(env.render())
    # tiny map 1000 x 600 m: the raster is 480 px wide, 288 px high; the frame adds axes, title and side panel
    assert render.map_raster(env.simulator, env.last_round).shape == (round(600 * CANVAS_WIDTH_PX / 1000), CANVAS_WIDTH_PX, 3)
    for f in frames:
        assert isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3
        assert f.shape == frames[0].shape, "every frame of an episode has one shape (videos need it)"
        assert f.shape[0] > 288 + FRAME_TOP_PX and f.shape[1] > CANVAS_WIDTH_PX + FRAME_LEFT_PX
        assert len(np.unique(f.reshape(-1, 3), axis=0)) > 50  # not a blank canvas: map, text, legend
    for a, b in zip(frames, frames[1:], strict=False):
        assert not np.array_equal(a, b), "the frame did not change between rounds"


def test_frame_has_legend_axes_in_metres_round_and_energy(make_parallel) -> None:
    env = make_parallel(preset="paper", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, 3))
    env.step(dict.fromkeys(env.agents, 4))
    fig = render.render_figure(env.simulator, env.last_round)
    texts = _texts(fig)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    for task in env.config.tasks.tasks:
        assert f"vehicle, task {task}" in legend
    assert "RSU" in legend and any(t.startswith("RSU coverage (350 m)") for t in legend)
    assert "vehicle, inactive" in legend
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x (m)" and ax.get_ylabel() == "y (m)"
    assert ax.get_xlim() == (0.0, 1000.0) and ax.get_ylim() == (0.0, 1000.0)
    fig.canvas.draw()
    ticks = {t.get_text() for t in ax.get_xticklabels()}
    assert {"0", "1000"} <= ticks, ticks
    assert any(t.startswith("round 2/40") for t in texts)
    # energy against budget, per task and for the fleet, with the numbers of the round just played
    m = env.last_round
    energy = _by_gid(fig, "energy-label")
    expected = [f"{m.task_energy_j[k]:.3g} / {m.task_budget_j[k]:.3g} J" for k in range(env.config.num_tasks)]
    assert energy == [*expected, f"{m.task_energy_j.sum():.3g} / {m.task_budget_j.sum():.3g} J"]
    used = sum(float(r.task_energy_j.sum()) for r in env.simulator.history)
    assert any(t.startswith("episode so far: ") and f"{used:,.0f} / " in t for t in texts)


def test_each_vehicle_on_the_map_is_labelled_with_its_executed_rank(make_parallel) -> None:
    env = make_parallel(preset="paper", render_mode="rgb_array")
    env.reset(seed=1)
    assert not _by_gid(render.render_figure(env.simulator, None), "rank-label"), "no rank before round 1"
    rng = np.random.default_rng(0)
    env.step({a: int(rng.integers(0, 7)) for a in env.agents})
    m = env.last_round
    fig = render.render_figure(env.simulator, m)
    labels = _by_gid(fig, "rank-label")
    present = np.flatnonzero(env.simulator.mobility.present)
    want = [str(int(m.rank[v])) if m.active[v] else "off" for v in present]
    assert sorted(labels) == sorted(want) and len(labels) == len(present) > 0
    assert len({int(r) for r in m.rank[m.active]}) > 1, "random ranks should differ (the test needs variety)"


def test_rank_labels_are_left_out_for_crowded_maps(make_parallel) -> None:
    env = make_parallel(preset="tiny", num_vehicles=render.MAX_RANK_LABELS + 6, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, 2))
    fig = render.render_figure(env.simulator, env.last_round)
    assert not _by_gid(fig, "rank-label")
    assert env.render().ndim == 3


def test_legend_markers_are_drawn_in_the_task_colours(make_parallel) -> None:
    env = make_parallel(preset="tiny", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, 3))
    frame = env.render()
    panel = frame[:, FRAME_LEFT_PX + CANVAS_WIDTH_PX + 5:].reshape(-1, 3).astype(int)
    for k in range(env.config.num_tasks):
        close = np.abs(panel - TASK_COLOURS[k].astype(int)).max(axis=1) <= 10
        assert close.sum() >= 10, f"legend marker of task {k} not drawn"


def test_rgb_array_same_seed_same_frame(make_parallel) -> None:
    a = make_parallel(preset="tiny", render_mode="rgb_array")
    b = make_parallel(preset="tiny", render_mode="rgb_array")
    a.reset(seed=2)
    b.reset(seed=2)
    np.testing.assert_array_equal(a.render(), b.render())


def test_ansi_names_each_task(make_parallel) -> None:
    env = make_parallel(preset="paper", render_mode="ansi")
    env.reset(seed=0)
    first = env.render()
    assert isinstance(first, str) and "round 0/40" in first
    env.step(dict.fromkeys(env.agents, 2))
    text = env.render()
    assert isinstance(text, str) and "round 1/40" in text
    for task in env.config.tasks.tasks:
        assert task in text
    assert text != first


def test_no_render_mode_renders_nothing(tiny_env) -> None:
    tiny_env.reset(seed=0)
    assert tiny_env.render() is None


def test_matplotlib_loads_only_when_a_frame_is_drawn() -> None:
    code = (
        "import sys, iov_env\n"
        "e = iov_env.parallel_env(preset='tiny', render_mode='rgb_array'); e.reset(seed=0); e.step(dict.fromkeys(e.agents, 1))\n"
        "assert 'matplotlib' not in sys.modules and 'imageio' not in sys.modules\n"
        "e.render()\n"
        "assert 'matplotlib' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("mode", ["rgb_array", "ansi"])
def test_gym_view_renders(mode: str) -> None:
    env = gym.make("iov_env/IoVRank-tiny-fast-v2", render_mode=mode)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    out = env.render()
    assert isinstance(out, np.ndarray if mode == "rgb_array" else str)
    env.close()


def test_aec_view_renders() -> None:
    env = iov_env.env(preset="tiny", render_mode="ansi")
    env.reset(seed=0)
    assert isinstance(env.render(), str)
    env.close()


# -- videos ---------------------------------------------------------------------------------------
def _read_frames(path: Path) -> np.ndarray:
    iio = pytest.importorskip("imageio.v3", reason="videos need imageio (the bench extra)")
    if path.suffix == ".mp4":
        return iio.imread(path, plugin="FFMPEG", index=None)
    return iio.imread(path, index=None)


def test_demo_video_has_one_frame_per_round(tmp_path: Path) -> None:
    pytest.importorskip("imageio", reason="videos need imageio (the bench extra)")
    from iov_env import demo

    gif = tmp_path / "episode.gif"
    assert demo.main(["--rounds", "4", "--out", str(tmp_path), "--video", str(gif)]) == 0
    frames = _read_frames(gif)
    png = _read_frames(tmp_path / "final_map.png")[..., :3]
    assert frames.shape[0] == 4 and frames.shape[1:] == png.shape
    assert not np.array_equal(frames[0], frames[-1])
    # the saved map is the video's last frame (up to the GIF's 256-colour palette on antialiased text edges)
    diff = np.abs(frames[-1].astype(int) - png.astype(int))
    assert (diff.max(axis=-1) > 0).mean() < 0.02 and diff.mean() < 1.0


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_write_video_round_trips(tmp_path: Path, make_parallel, suffix: str) -> None:
    if suffix == ".mp4":
        pytest.importorskip("imageio_ffmpeg", reason="MP4 needs imageio-ffmpeg (the bench extra)")
    env = make_parallel(preset="tiny", rounds=3, render_mode="rgb_array")
    env.reset(seed=0)
    frames = []
    while env.agents:
        env.step(dict.fromkeys(env.agents, 4))
        frames.append(env.render())
    out = render.write_video(frames, tmp_path / f"ep{suffix}", fps=2)
    back = _read_frames(out)
    assert back.shape[0] == 3 and back.shape[-1] == 3
    assert abs(back.shape[1] - frames[0].shape[0]) <= 1 and abs(back.shape[2] - frames[0].shape[1]) <= 1
    if suffix == ".gif":  # lossless palette for these few colours; MP4 is lossy
        assert np.abs(back.astype(int) - np.stack(frames).astype(int)).mean() < 2.0
    assert not list(tmp_path.glob(".*partial*")), "the temporary file was left behind"


def test_write_video_refuses_bad_input(tmp_path: Path) -> None:
    frame = np.zeros((4, 6, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="allowed: .gif, .mp4"):
        render.write_video([frame], tmp_path / "x.avi")
    with pytest.raises(ValueError, match="one \\(H, W, 3\\) shape"):
        render.write_video([frame, np.zeros((5, 6, 3), dtype=np.uint8)], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="no frames"):
        render.write_video([], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="fps"):
        render.write_video([frame], tmp_path / "x.gif", fps=0)
    assert not list(tmp_path.iterdir())


def test_a_frame_depends_only_on_its_own_env_state(make_parallel) -> None:
    """Frames are reused across envs of one layout: drawing another env in between must leave no trace."""
    a = make_parallel(preset="tiny", render_mode="rgb_array")
    b = make_parallel(preset="tiny", render_mode="rgb_array")
    a.reset(seed=0)
    b.reset(seed=5)
    a.step(dict.fromkeys(a.agents, 2))
    b.step(dict.fromkeys(b.agents, 6))
    first = a.render()
    other = b.render()
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(a.render(), first)
    c = make_parallel(preset="tiny", num_rsus=3, render_mode="rgb_array")  # another layout in between
    c.reset(seed=0)
    c.render()
    np.testing.assert_array_equal(a.render(), first)


def test_redrawn_frame_matches_a_full_draw(make_parallel) -> None:
    """Only the changing parts are redrawn each round; the result must be the figure drawn whole."""
    env = make_parallel(preset="paper", render_mode="rgb_array")
    env.reset(seed=0)
    for ranks in (1, 5, 3):
        env.step(dict.fromkeys(env.agents, ranks))
        fast = env.render()
    fig = render.render_figure(env.simulator, env.last_round)
    for artist in fig.findobj():  # every artist in the one full draw, whatever MapFrame counts as changing
        artist.set_animated(False)
    fig.canvas.draw()
    full = np.asarray(fig.canvas.buffer_rgba())[:, :, :3]
    assert full.shape == fast.shape
    # antialiased edges differ slightly; leaving out the 9 rank labels alone makes 0.08% of pixels differ
    differ = np.abs(full.astype(int) - fast.astype(int)).max(axis=-1) > 40
    assert differ.mean() < 0.0004, f"{differ.mean():.3%} of pixels differ from the full draw"
