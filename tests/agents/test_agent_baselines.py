"""Baselines and the runner on the fast env: full episodes, declared env configuration, policy rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.base import AgentContext
from agents.baselines import (
    AGENTS,
    FedRA,
    FixedRank,
    FlexLoRA,
    Greedy,
    HetLoRA,
    HomoLoRA,
    Oracle,
    RandomRank,
    make_agent,
)
from agents.runner import SUMMARY_METRICS, run_centralized, run_decentralized
from agents.ucb_dual import UCBDual
from iov_env.config import IoVConfig
from iov_env.envs.parallel import observation_layout

RANKS = (1, 2, 4, 8, 16, 32, 64)
TINY = {"preset": "tiny"}


def _context(**cfg_overrides: object) -> AgentContext:
    cfg = IoVConfig.from_kwargs(preset="tiny", **cfg_overrides)
    return AgentContext(RANKS, observation_layout(cfg), config=cfg)


def _obs(ctx: AgentContext, **values: float) -> np.ndarray:
    size = max(sl.stop for sl in ctx.obs_layout.values())
    vec = np.zeros(size, dtype=np.float32)
    for name, v in values.items():
        vec[ctx.obs_layout[name]] = v
    return vec


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_runs_a_full_fast_episode(name: str) -> None:
    """20 rounds of the tiny preset; metrics finite and in range; masks respected (no env corrections)."""
    out = run_decentralized(lambda: make_agent(name), TINY, seed=3)
    assert out["rounds"] == 20 and len(out["rank_trace"]) == 20
    assert all(len(row) == 6 for row in out["rank_trace"])
    assert set(np.unique(out["rank_trace"])) <= {0, *RANKS}
    for key in SUMMARY_METRICS:
        assert math.isfinite(out[key]), key
    assert 0.0 < out["final_accuracy"] <= 1.0 and out["best_accuracy"] >= out["final_accuracy"] - 1e-12
    assert out["end_to_end_latency_s"] > 0 and out["total_energy_j"] > 0
    assert 0.0 <= out["budget_violation_rate"] <= 1.0
    if out["env_kwargs"].get("aggregation") != "fedavg":
        # fedavg legitimately truncates a task to its smallest rank; elsewhere the policy respects the mask
        assert out["action_corrections"] == 0
    assert out["end_to_end_latency_s"] == pytest.approx(sum(out["round_latency_s"]))


def test_runner_applies_the_agents_implied_config_under_explicit_overrides() -> None:
    """HetLoRA implies zero-padding, FedRA a layer fraction; an explicit caller override wins."""
    assert run_decentralized(HetLoRA, TINY, 0)["env_kwargs"]["aggregation"] == "zero_pad"
    assert run_decentralized(FlexLoRA, TINY, 0)["env_kwargs"]["aggregation"] == "svd"
    assert HomoLoRA().implied_env_overrides() == {"aggregation": "fedavg"}
    assert FedRA(layer_fraction=0.5).implied_env_overrides() == {"layer_fraction": 0.5, "aggregation": "fedavg"}
    out = run_decentralized(UCBDual, {**TINY, "aggregation": "zero_pad"}, 0)
    assert out["env_kwargs"]["aggregation"] == "zero_pad"


def test_same_seed_same_episode() -> None:
    """Env and agent seeds both derive from the episode seed."""
    a = run_decentralized(UCBDual, TINY, seed=11)
    b = run_decentralized(UCBDual, TINY, seed=11)
    c = run_decentralized(UCBDual, TINY, seed=12)
    assert a["rank_trace"] == b["rank_trace"] and a["cumulative_reward"] == b["cumulative_reward"]
    assert a["rank_trace"] != c["rank_trace"]


def test_fixed_rank_runs_its_rank_whenever_feasible() -> None:
    """Executed ranks never exceed the fixed rank and equal it in most active rounds."""
    out = run_decentralized(lambda: FixedRank(4), {**TINY, "aggregation": "zero_pad"}, seed=1)
    executed = np.array(out["rank_trace"])
    active = executed[executed > 0]
    assert active.max() == 4 and np.mean(active == 4) > 0.8


def test_hetlora_initial_rank_grows_with_data_size_and_prunes() -> None:
    """Rank ∝ shard size clipped to [8, 64]; stalled accuracy shrinks it by gamma each round."""
    ctx = _context()
    mask = np.ones(7, np.int8)
    picks = []
    for frac in (0.1, 0.34, 0.5, 1.0):
        agent = HetLoRA()
        agent.bind(ctx)
        agent.reset(0)
        picks.append(RANKS[agent.act(_obs(ctx, data_size=frac), mask)])
    assert picks == [8, 16, 32, 64]
    agent = HetLoRA(gamma=0.5)
    agent.bind(ctx)
    agent.reset(0)
    assert RANKS[agent.act(_obs(ctx, data_size=1.0), mask)] == 64
    agent.update(6, 0.0, 0.0, {"active": True, "accuracy": 0.6})
    agent.update(6, 0.0, 0.0, {"active": True, "accuracy": 0.7})  # improved: keep
    assert agent.state()["rank_cont"] == 64
    agent.update(6, 0.0, 0.0, {"active": True, "accuracy": 0.69})  # stalled: prune
    assert agent.state()["rank_cont"] == 32 and RANKS[agent.act(None, mask)] == 32
    # the mask still wins over the target
    assert RANKS[agent.act(None, np.array([1, 1, 1, 0, 0, 0, 0], np.int8))] == 4


def test_flexlora_rank_follows_compute_capability() -> None:
    """Fastest vehicle -> largest rank, slowest -> smallest, linear in between."""
    ctx = _context()
    agent = FlexLoRA()
    agent.bind(ctx)
    agent.reset(0)
    mask = np.ones(7, np.int8)
    assert [RANKS[agent.act(_obs(ctx, compute_capability=c), mask)] for c in (0.0, 0.5, 1.0)] == [1, 8, 64]


def test_random_rank_is_uniform_over_feasible() -> None:
    """Only feasible ranks, all of them, in roughly equal shares."""
    agent = RandomRank()
    agent.bind(_context())
    agent.reset(5)
    mask = np.array([0, 1, 1, 0, 1, 0, 0], np.int8)
    picks = np.array([agent.act(None, mask) for _ in range(3000)])
    counts = np.bincount(picks, minlength=7)
    assert set(np.flatnonzero(counts)) == {1, 2, 4}
    assert np.all(np.abs(counts[[1, 2, 4]] / 3000 - 1 / 3) < 0.04)


def test_greedy_refuses_real_fidelity_and_keeps_budgets() -> None:
    """Clear error on fidelity='real'; on the fast env it violates budgets far less than random ranks."""
    ctx = _context(fidelity="real")
    ctx.env = object()
    with pytest.raises(ValueError, match="fidelity='fast'"):
        Greedy().bind(ctx)
    with pytest.raises(ValueError, match="needs the env"):
        Greedy().bind(_context())
    greedy = [run_decentralized(Greedy, TINY, s)["vehicle_violation_rate"] for s in range(3)]
    random = [run_decentralized(RandomRank, TINY, s)["vehicle_violation_rate"] for s in range(3)]
    assert np.mean(greedy) < 0.5 * np.mean(random)


def test_ucb_dual_follows_the_rsu_price_in_the_env() -> None:
    """Default mode: the agent's lambda is the env's task price; a tight budget raises it."""
    out = run_decentralized(UCBDual, {**TINY, "energy_budget_j_per_vehicle_round": 1.0}, seed=2)
    state = out["agent_state_vehicle_0"]
    assert state["dual_source_effective"] == "rsu"
    task = state["task"]
    assert state["lambda"] == pytest.approx(out["dual_price_trace"][-1][task])
    assert out["dual_price_trace"][-1][task] > out["dual_price_trace"][0][task] > 0


def test_ucb_dual_no_rank_collapse_with_loose_budget() -> None:
    """With a budget no rank can exhaust, the price stays 0 and ranks spread well above the smallest."""
    out = run_decentralized(UCBDual, {**TINY, "energy_budget_j_per_vehicle_round": 1e4}, seed=4)
    ranks = np.array(out["rank_trace"])
    active = ranks[ranks > 0]
    assert max(max(row) for row in out["dual_price_trace"]) == 0.0
    assert np.mean(active == 1) < 0.3 and np.median(active) >= 4
    assert out["budget_violation_rate"] == 0.0


def test_unknown_agent_name_is_refused() -> None:
    """make_agent names the allowed agents."""
    with pytest.raises(ValueError, match="allowed"):
        make_agent("nope")


@pytest.mark.parametrize("agent_cls", [UCBDual, Greedy, Oracle, HomoLoRA])
def test_centralized_view_reproduces_the_decentralized_episode(agent_cls: type) -> None:
    """Same seed, same config: per-vehicle copies on the Gymnasium view make the same choices and metrics."""
    import gymnasium as gym

    import iov_env  # noqa: F401 - registers the ids

    env = gym.make("iov_env/IoVRank-tiny-fast-v1")
    try:
        cen = run_centralized(agent_cls(), env, seed=3)
    finally:
        env.close()
    dec = run_decentralized(agent_cls, {**TINY, "aggregation": "svd"}, seed=3)
    assert cen["rank_trace"] == dec["rank_trace"]
    assert cen["cumulative_reward"] == pytest.approx(dec["cumulative_reward"])
    assert cen["final_accuracy"] == pytest.approx(dec["final_accuracy"])
    # the joint env was built without the agent's implied config: said, not hidden
    implied = agent_cls().implied_env_overrides().get("aggregation")
    assert cen["config_mismatch"] == ({} if implied in (None, "svd") else {"aggregation": implied})
