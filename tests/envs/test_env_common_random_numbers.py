"""Common random numbers: seed s gives every policy the same mobility, channel and data draws.

Paired comparisons (an agent against the oracle or UCB-DUAL on the same seeds) are only valid if the
world's randomness does not depend on what the agents do. Each component owns its generator
(``SeedSequence.spawn``) and draws a fixed-size array every round whatever the ranks were, so the
generators' states after every round, the positions, distances, dwell times and the fleet must be
identical under very different policies and under the env systems that agents imply.
"""

from __future__ import annotations

import numpy as np
import pytest

import iov_env


def _world_trace(env_kwargs: dict, seed: int, policy: str) -> list[dict]:
    """Per round: everything exogenous the simulator drew or derived, under ``policy``'s actions."""
    env = iov_env.parallel_env(**env_kwargs)
    sim = env.unwrapped.simulator
    rng = np.random.default_rng(1234)  # the test's own generator for the random policy
    env.reset(seed=seed)
    fleet = {"cpu": sim.cpu_freq_hz.copy(), "memory": sim.memory_capacity_mb.copy(), "shard": sim.shard_size.copy()}
    trace = [fleet]
    r = env.config.num_ranks
    while env.agents:
        st = sim.state
        trace.append({
            "positions": sim.positions_m.copy(),
            "distance": st.distance_m.copy(),
            "dwell": st.dwell_s.copy(),
            "rsu": st.vehicle_rsu.copy(),
            "channel_rng": str(sim.rng_channel.bit_generator.state),
            "mobility_rng": str(sim.mobility.rng.bit_generator.state),
            "learning_rng": str(sim.backend.rng.bit_generator.state),
        })
        if policy == "smallest":
            actions = dict.fromkeys(env.agents, 0)
        elif policy == "largest":
            actions = dict.fromkeys(env.agents, r - 1)
        else:
            actions = {a: int(rng.integers(r)) for a in env.agents}
        env.step(actions)
    env.close()
    return trace


def _assert_same_world(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        for key in x:
            if isinstance(x[key], np.ndarray):
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"round {t}: {key}")
            else:
                assert x[key] == y[key], f"round {t}: {key}"


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_policies_share_every_draw_on_the_same_seed(preset: str) -> None:
    """Smallest ranks, largest ranks (many faults and corrections) and random ranks: one world per seed."""
    base = _world_trace({"preset": preset}, seed=5, policy="smallest")
    for policy in ("largest", "random"):
        _assert_same_world(base, _world_trace({"preset": preset}, seed=5, policy=policy))
    other = _world_trace({"preset": preset}, seed=6, policy="smallest")
    assert not np.array_equal(base[1]["positions"], other[1]["positions"])


@pytest.mark.parametrize(
    "system",
    [
        {"aggregation": "fedavg"},  # HomoLoRA: a task's ranks are truncated to its smallest
        {"aggregation": "zero_pad"},  # HetLoRA
        {"layer_fraction": 0.5},  # FedRA: layer subsets come from their own generator
        {"allocation": "tri_feedback"},  # budgets move with spending
        {"fault_tolerance": "none"},
        {"calibration": "default"},  # the rank-sensitive world
    ],
)
def test_systems_agents_imply_share_the_world(system: dict) -> None:
    """What an agent's implied config changes (aggregation, layers, allocation, faults) never shifts a draw."""
    base = _world_trace({"preset": "paper"}, seed=2, policy="random")
    _assert_same_world(base, _world_trace({"preset": "paper", **system}, seed=2, policy="largest"))
