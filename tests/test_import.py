"""Import hygiene and Gymnasium registration: light import, idempotent register, spawn-safe ids."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys

import gymnasium as gym
import pytest

import iov_env
from iov_env.config import ConfigError


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_import_does_not_load_torch() -> None:
    """DESIGN: heavy imports only with the real fidelity; ``import iov_env`` must not pull torch in."""
    proc = _run(
        "import sys, iov_env\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'numba') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_compiled_loops_load_with_the_first_round_not_with_the_env() -> None:
    """numba (the fast fidelity's compiled loops) loads on first use: building an env does not need it."""
    proc = _run(
        "import sys, iov_env\n"
        "p = iov_env.parallel_env(preset='tiny')\n"
        "assert 'numba' not in sys.modules\n"
        "p.reset(seed=0)\n"
        "assert 'numba' in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_building_and_stepping_a_fast_env_does_not_load_torch() -> None:
    """The fast surrogate path (parallel, AEC, gym views) never imports torch."""
    proc = _run(
        "import sys, gymnasium as gym, iov_env\n"
        "p = iov_env.parallel_env(preset='tiny'); p.reset(seed=0)\n"
        "p.step({a: 0 for a in p.agents})\n"
        "a = iov_env.env(preset='tiny'); a.reset(seed=0)\n"
        "g = gym.make('iov_env/IoVRank-tiny-fast-v1'); g.reset(seed=0); g.step(g.action_space.sample())\n"
        "assert 'torch' not in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_version_and_public_api() -> None:
    assert isinstance(iov_env.__version__, str) and iov_env.__version__.count(".") >= 2
    for name in ("env", "parallel_env", "register", "ENV_IDS"):
        assert name in iov_env.__all__
        assert hasattr(iov_env, name)


def test_every_id_is_registered_with_its_preset_and_fidelity() -> None:
    for env_id, kwargs in iov_env.ENV_IDS.items():
        spec = gym.spec(env_id)
        assert spec.entry_point == "iov_env.envs.single:IoVRankEnv"
        assert spec.kwargs["preset"] == kwargs["preset"]
        assert spec.kwargs["fidelity"] == kwargs["fidelity"]
    # DESIGN "RL interface": the two headline ids exist, with the right fidelity
    assert iov_env.ENV_IDS["iov_env/IoVRank-v1"]["fidelity"] == "real"
    assert iov_env.ENV_IDS["iov_env/IoVRank-fast-v1"]["fidelity"] == "fast"


def test_register_is_idempotent() -> None:
    """Calling register() again neither raises nor re-registers (gymnasium would warn on a re-register)."""
    before = {i: gym.spec(i) for i in iov_env.ENV_IDS}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iov_env.register()
        iov_env.register()
    after = {i: gym.spec(i) for i in iov_env.ENV_IDS}
    assert all(before[i] is after[i] for i in iov_env.ENV_IDS)


def test_gym_make_kwargs_reach_the_config() -> None:
    env = gym.make("iov_env/IoVRank-tiny-fast-v1", num_vehicles=4, rounds=3)
    try:
        cfg = env.unwrapped.config
        assert cfg.num_vehicles == 4 and cfg.episode.rounds == 3 and cfg.learning.fidelity == "fast"
        assert env.action_space.shape == (4,)
    finally:
        env.close()


def test_gym_make_rejects_bad_kwargs_with_config_error() -> None:
    with pytest.raises(ConfigError, match="num_vehicles"):
        gym.make("iov_env/IoVRank-tiny-fast-v1", num_vehicles=0)
    with pytest.raises(ConfigError, match="no_such_field"):
        gym.make("iov_env/IoVRank-tiny-fast-v1", no_such_field=1)


def _make_in_child(env_id: str) -> tuple[tuple[int, ...], int]:
    import gymnasium as gym

    import iov_env  # noqa: F401 - registers the ids in the fresh interpreter

    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    env.close()
    return tuple(obs.shape), int(env.action_space.shape[0])


def test_registration_works_in_a_spawned_process() -> None:
    """A fresh interpreter (spawn, as SB3 SubprocVecEnv uses) sees the ids after ``import iov_env``."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        shape, n = pool.apply(_make_in_child, ("iov_env/IoVRank-tiny-fast-v1",))
    assert n == 6
    assert shape == (6 * (3 + 13),)
