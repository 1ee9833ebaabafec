"""Renderings: rgb_array is an (H, W, 3) uint8 map that follows the world; ansi names each task."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import iov_env
from iov_env.render import CANVAS_WIDTH_PX


def test_rgb_array_shape_dtype_and_change(make_parallel) -> None:
    env = make_parallel(preset="tiny", render_mode="rgb_array")
    env.reset(seed=0)
    frames = [env.render()]
    for _ in range(3):
        env.step(dict.fromkeys(env.agents, 6))
        frames.append(env.render())
    for f in frames:
        assert isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3
        # tiny map 1000 x 600 m drawn 480 px wide: 288 px high
        assert f.shape == (round(600 * CANVAS_WIDTH_PX / 1000), CANVAS_WIDTH_PX, 3)
        assert len(np.unique(f.reshape(-1, 3), axis=0)) > 3  # not a blank canvas
    for a, b in zip(frames, frames[1:], strict=False):
        assert not np.array_equal(a, b), "the map did not change between rounds"


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


@pytest.mark.parametrize("mode", ["rgb_array", "ansi"])
def test_gym_view_renders(mode: str) -> None:
    env = gym.make("iov_env/IoVRank-tiny-fast-v1", render_mode=mode)
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
