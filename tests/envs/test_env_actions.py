"""Bad actions get clear errors naming the agent and the allowed range, and change nothing."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

GOOD = 3


def _actions(env, **changes):
    acts = dict.fromkeys(env.agents, GOOD)
    acts.update(changes)
    return acts


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (2.0, TypeError),
        (np.float32(1.0), TypeError),
        ("2", TypeError),
        (None, TypeError),
        (True, TypeError),
        (np.bool_(False), TypeError),
        ([2], TypeError),
        (np.array([2]), TypeError),
        (-1, ValueError),
        (7, ValueError),  # 7 ranks: indices 0..6
        (np.int64(99), ValueError),
    ],
    ids=repr,
)
def test_bad_action_value_names_agent_and_range(tiny_env, bad, exc) -> None:
    tiny_env.reset(seed=0)
    with pytest.raises(exc) as info:
        tiny_env.step(_actions(tiny_env, vehicle_2=bad))
    msg = str(info.value)
    assert "vehicle_2" in msg
    assert "[0, 6]" in msg


@pytest.mark.parametrize("ok", [0, 6, np.int64(3), np.int8(2), np.array(5)], ids=repr)
def test_integer_like_actions_are_accepted(tiny_env, ok) -> None:
    tiny_env.reset(seed=0)
    _, _, _, _, infos = tiny_env.step(_actions(tiny_env, vehicle_1=ok))
    assert infos["vehicle_1"]["round"] == 0


def test_missing_agent(tiny_env) -> None:
    tiny_env.reset(seed=0)
    acts = _actions(tiny_env)
    del acts["vehicle_4"]
    with pytest.raises(ValueError, match="vehicle_4"):
        tiny_env.step(acts)


def test_unknown_agent(tiny_env) -> None:
    tiny_env.reset(seed=0)
    with pytest.raises(ValueError, match="vehicle_99"):
        tiny_env.step(_actions(tiny_env, vehicle_99=0))


def test_actions_must_be_a_mapping(tiny_env) -> None:
    tiny_env.reset(seed=0)
    with pytest.raises(TypeError, match="dict"):
        tiny_env.step([0] * 6)


def test_rejected_step_changes_nothing(make_parallel) -> None:
    a, b = make_parallel(preset="tiny"), make_parallel(preset="tiny")
    a.reset(seed=5)
    b.reset(seed=5)
    for bad in (_actions(a, vehicle_0=9), _actions(a, vehicle_5=1.5)):
        with pytest.raises((TypeError, ValueError)):
            a.step(bad)
    ra = a.step(_actions(a))
    rb = b.step(_actions(b))
    assert ra[1] == rb[1]
    for k in ra[0]:
        np.testing.assert_array_equal(ra[0][k], rb[0][k])
    assert a.simulator.round_index == b.simulator.round_index == 1


def test_step_before_reset_and_after_the_end(make_parallel) -> None:
    env = make_parallel(preset="tiny", rounds=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.reset(seed=0)
    env.step(_actions(env))
    env.step(_actions(env))
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"vehicle_0": 0})
    with pytest.raises(RuntimeError, match="reset"):
        env.simulator.step(np.zeros(6, dtype=int))


# -- gym (centralised) view ---------------------------------------------------------------------
@pytest.fixture
def gym_env():
    env = gym.make("iov_env/IoVRank-tiny-fast-v1")
    env.reset(seed=0)
    yield env
    env.close()


@pytest.mark.parametrize(
    ("action", "exc", "needle"),
    [
        (np.zeros(5, dtype=np.int64), ValueError, "(6,)"),
        (np.zeros((6, 1), dtype=np.int64), ValueError, "(6,)"),
        (np.zeros((), dtype=np.int64), ValueError, "(6,)"),
        (np.zeros(6, dtype=np.float32), TypeError, "dtype"),
        (np.array(["0"] * 6), TypeError, "dtype"),
        (np.array([0, 0, 0, 7, 0, 0]), ValueError, "vehicle_3"),
        (np.array([0, -1, 0, 0, 0, 0]), ValueError, "vehicle_1"),
    ],
)
def test_gym_view_rejects_wrong_shape_dtype_range(gym_env, action, exc, needle) -> None:
    with pytest.raises(exc, match=needle.replace("(", r"\(").replace(")", r"\)")):
        gym_env.step(action)


def test_gym_view_accepts_lists_and_int32(gym_env) -> None:
    gym_env.step([0, 1, 2, 3, 4, 5])
    gym_env.step(np.array([6] * 6, dtype=np.int32))
    assert gym_env.unwrapped.simulator.round_index == 2
