"""UCB-DUAL's options beyond the paper's rule, by hand on small bandits; the tuned and deployed presets; best_fixed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agents.base import AgentContext
from agents.baselines import AGENTS, FixedRank, make_agent
from agents.oracle import BestFixed
from agents.runner import run_decentralized
from agents.ucb_dual import (
    DEPLOYED_BY_FAMILY,
    DEPLOYED_SETTING,
    TUNED_BY_FAMILY,
    TUNED_SETTING,
    TaskMemory,
    UCBDual,
    UCBDualDeployed,
    UCBDualTuned,
)

ALL = np.ones(3, dtype=np.int8)
NO_TOP = np.array([1, 1, 0], dtype=np.int8)
FREE = {"budget": 1.0, "active": True, "task_index": 0}  # cost 0 against budget 1: the local price stays 0


def plain(**kw: object) -> UCBDual:
    """Three arms, rewards read as they are (fixed scale 1), the agent's own price."""
    agent = UCBDual(dual_source="local", normalization="fixed", reward_scale=1.0, num_actions=3, **kw)  # type: ignore[arg-type]
    agent.reset(0)
    return agent


def play(agent: UCBDual, mask: np.ndarray, arm: int, reward: float, cost: float = 0.0) -> None:
    """One round: the agent sees ``mask`` and the env executes ``arm`` (the runner credits the executed arm)."""
    agent.act(None, mask)
    agent.update(arm, reward, cost, FREE)


def test_sleeping_counts_use_each_ranks_own_availability_by_hand() -> None:
    """Rank 2 allowed in 1 of 4 rounds: its bonus uses t_2 = 1 (no bonus), not t = 4, and the choice changes."""
    out = {}
    for counts in ("all", "sleeping"):
        agent = plain(counts=counts)
        play(agent, NO_TOP, 0, 0.5)
        play(agent, NO_TOP, 1, 0.3)
        play(agent, ALL, 2, 0.4)
        play(agent, NO_TOP, 0, 0.7)
        assert agent.state()["counts"] == [2.0, 1.0, 1.0] and agent.t == 4.0
        out[counts] = (agent.indices(), agent.state()["available"], agent.act(None, ALL))
    b = math.sqrt(2 * math.log(4))
    u, available, choice = out["sleeping"]
    assert available == [4.0, 4.0, 1.0]
    np.testing.assert_allclose(u, [0.6 + b / math.sqrt(2), 0.3 + b, 0.4 + 0.0])
    assert choice == 1
    u, _, choice = out["all"]
    np.testing.assert_allclose(u, [0.6 + b / math.sqrt(2), 0.3 + b, 0.4 + b])
    assert choice == 2  # t = all rounds: the rarely allowed rank keeps the largest bonus


def test_price_aware_sweep_goes_cheapest_first_and_skips_a_rank_that_cannot_win_by_hand() -> None:
    """Cheapest unplayed rank first; an unplayed rank whose optimistic priced index is below the best is skipped."""
    agent = plain(sweep="price", exploration=0.0, dual_step_size=0.0)
    assert agent.act(None, ALL) == 0  # nothing played: the cheapest rank
    agent.update(0, 0.5, 0.2, FREE)
    assert agent.act(None, ALL) == 1  # optimistic 1 - 0 * 0.2 >= best played 0.5: rank 1 next, before rank 2
    agent.update(1, 0.6, 0.8, FREE)
    # price 1: played indices 0.5 - 0.2 = 0.3 and 0.6 - 0.8 = -0.2; rank 2's optimistic index is at most
    # 1 - 1 * 0.8 (its energy is at least rank 1's) = 0.2 < 0.3, so it is not forced
    agent.lambdas[0] = 1.0
    np.testing.assert_allclose(agent.indices()[:2], [0.3, -0.2])
    assert agent.act(None, ALL) == 0
    # price 0.5: optimistic 1 - 0.4 = 0.6 >= best 0.5 - 0.1 = 0.4: rank 2 is tried
    agent.lambdas[0] = 0.5
    assert agent.act(None, ALL) == 2
    # the paper's sweep forces rank 2 whatever the price
    paper = plain(exploration=0.0, dual_step_size=0.0)
    paper.update(0, 0.5, 0.2, FREE)
    paper.update(1, 0.6, 0.8, FREE)
    paper.lambdas[0] = 1.0
    assert paper.act(None, ALL) == 2
    # the sweep respects the mask: the cheapest *feasible* rank
    fresh = plain(sweep="price")
    assert fresh.act(None, np.array([0, 1, 1], dtype=np.int8)) == 1
    # the skip sweep: the same test, unplayed ranks in random order
    skip = plain(sweep="skip", exploration=0.0, dual_step_size=0.0)
    skip.update(0, 0.5, 0.2, FREE)
    skip.update(1, 0.6, 0.8, FREE)
    skip.lambdas[0] = 1.0
    assert skip.act(None, ALL) == 0
    orders = set()
    for seed in range(12):
        agent = UCBDual(sweep="skip", num_actions=3)
        agent.reset(seed)
        orders.add(agent.act(None, ALL))
    assert orders == {0, 1, 2}  # not cheapest-first


def test_detrended_reward_removes_the_task_models_accuracy_by_hand() -> None:
    """reward - (accuracy term / accuracy) * task accuracy: the rank's own part of the round's reward."""
    agent = UCBDual(reward_signal="detrended", dual_source="local", num_actions=3)
    agent.reset(0)
    info = {**FREE, "accuracy": 0.7, "rewards": {"accuracy": 126.0, "latency": -1.0}, "task_accuracy": 0.69}
    agent.update(1, 125.0, 0.0, info)
    assert agent.state()["reward_means"][1] == pytest.approx(125.0 - 180.0 * 0.69)
    # a round without accuracy (the vehicle did not train) keeps the weight seen last
    agent.update(2, 10.0, 0.0, {**FREE, "accuracy": 0.0, "rewards": {"accuracy": 0.0}, "task_accuracy": 0.5})
    assert agent.state()["reward_means"][2] == pytest.approx(10.0 - 180.0 * 0.5)


def test_state_persists_across_reset_only_in_the_deployed_variant() -> None:
    """reset() clears statistics and prices of the paper's and the tuned agent; the deployed one keeps them."""
    info = {"budget": 1.0, "active": True, "task_index": 1, "task_energy_used_j": 30.0, "task_budget_j": 20.0}
    kept = {}
    for cls in (UCBDual, UCBDualTuned, UCBDualDeployed):
        agent = cls(num_actions=3, dual_source="local", dual_step_size=0.5)
        agent.reset(0)
        a = agent.act(None, ALL, info)
        agent.update(a, 1.0, 2.0, info)
        before = agent.state()
        agent.reset(1)
        agent.task = 1  # the next episode's first info says the task; the same task here
        kept[cls.name] = (agent.state()["counts"] == before["counts"], agent.lam, before["lambda"])
    assert kept["ucb_dual"][:2] == (False, 0.0)
    assert kept["ucb_dual_tuned"][:2] == (False, 0.0)
    assert kept["ucb_dual_deployed"][0] is True
    assert kept["ucb_dual_deployed"][1] == pytest.approx(kept["ucb_dual_deployed"][2]) and kept["ucb_dual_deployed"][1] > 0
    assert UCBDualDeployed().persist and not UCBDualTuned().persist and not UCBDual().persist


def test_a_shared_memory_pools_the_vehicles_of_a_task_and_keeps_tasks_apart() -> None:
    """Two vehicles of task 0 write one table; a vehicle of task 1 another; copies are independent."""
    memory = TaskMemory(3)
    a, b, c = (UCBDual(persist=True, memory=memory, dual_source="local") for _ in range(3))
    for agent in (a, b, c):
        agent.reset(0)
    a.update(0, 1.0, 0.1, {**FREE, "task_index": 0})
    b.update(2, 1.0, 0.1, {**FREE, "task_index": 0})
    c.update(1, 1.0, 0.1, {**FREE, "task_index": 1})
    assert memory.stats(0).counts.tolist() == [1.0, 0.0, 1.0] and memory.stats(1).counts.tolist() == [0.0, 1.0, 0.0]
    snapshot = memory.copy()
    a.update(0, 1.0, 0.1, {**FREE, "task_index": 0})
    assert snapshot.stats(0).counts.tolist() == [1.0, 0.0, 1.0] and memory.stats(0).counts[0] == 2.0
    with pytest.raises(ValueError, match="persist=True"):
        UCBDual(memory=memory)
    with pytest.raises(ValueError, match="rank set"):
        UCBDual(persist=True, memory=memory).bind(AgentContext(rank_set=(1, 2, 4, 8)))


def test_an_inactive_vehicle_still_steps_its_local_price() -> None:
    """The task's spending reaches every vehicle of the task: the local price moves, no arm is credited."""
    agent = UCBDual(dual_source="local", dual_step_size=0.5, num_actions=3)
    agent.reset(0)
    agent.update(1, 0.0, 0.0, {"active": False, "budget": 1.0, "task_index": 0, "task_energy_used_j": 30.0,
                               "task_budget_j": 20.0})
    assert agent.lam == pytest.approx(0.5 * 10.0 / 20.0)
    assert agent.state()["counts"] == [0.0, 0.0, 0.0]


def test_bad_options_are_refused() -> None:
    """The new options name the bad value and what is allowed."""
    with pytest.raises(ValueError, match="counts='often'.*'sleeping'"):
        UCBDual(counts="often")
    with pytest.raises(ValueError, match="sweep='up'.*'price'"):
        UCBDual(sweep="up")
    with pytest.raises(ValueError, match="reward_signal='x'.*'detrended'"):
        UCBDual(reward_signal="x")


def test_presets_are_the_settings_the_tuning_study_chose() -> None:
    """ucb_dual_tuned and ucb_dual_deployed run exactly what `iov study ucb-tuning` selected (its saved choice)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "tuning" / "ucb_tuning_choice.json"
    choice = json.loads(path.read_text())
    assert TUNED_SETTING == choice["episodic"]["options"]
    assert DEPLOYED_SETTING == choice["deployed"]["options"]
    assert TUNED_BY_FAMILY == {f: c["options"] for f, c in choice["episodic_by_family"].items()}
    assert DEPLOYED_BY_FAMILY == {f: c["options"] for f, c in choice["deployed_by_family"].items()}
    assert set(TUNED_BY_FAMILY) == set(DEPLOYED_BY_FAMILY) == {"tiny", "paper", "paper-tight", "paper-rank-prior", "scale-90"}
    assert choice["tuning_seeds"][0] >= 1000  # never the leaderboard's evaluation seeds 0..99
    assert min(choice["deployed_reevaluation"]["warmup_seed_bases"]) >= 1000
    assert UCBDualDeployed.warmup_seed_base >= 1000
    assert AGENTS["ucb_dual"] is UCBDual  # the paper's rule stays under its name


@pytest.mark.parametrize("cls", [UCBDualTuned, UCBDualDeployed])
def test_a_family_preset_runs_its_family_setting_and_falls_back_to_the_pooled_one(cls: type) -> None:
    """family= picks the family's options; None and an untuned world's family give the pooled ones; unknown: refused."""
    for family, options in cls.by_family.items():
        agent = cls(family=family)
        assert agent.state()["family"] == family
        assert agent.exploration == options["exploration"] and agent.counts_mode == options.get("counts", "all")
        assert agent.dual_source == options["dual_source"] and agent.sweep == options.get("sweep", "random")
        assert cls.family_for(f"{family}-v2") == family and cls.setting(family) == options
    pooled = cls()
    assert pooled.state()["family"] is None and cls.setting() == cls.pooled
    assert pooled.exploration == cls.pooled["exploration"]
    assert cls.family_for("paper-sumo-v2") is None  # not tuned: the pooled default, not paper's
    assert cls(family="paper", exploration=7.0).exploration == 7.0  # explicit options still win
    with pytest.raises(ValueError, match=r"family='paper-v2'.*allowed: \['paper', 'paper-rank-prior'"):
        cls(family="paper-v2")
    assert cls(family="paper").persist is (cls is UCBDualDeployed)


def test_the_family_presets_differ_where_the_search_said_they_should() -> None:
    """The per-family choice is not the pooled one everywhere: paper-rank-prior's episodic setting explores (c > 0)."""
    assert TUNED_BY_FAMILY["paper-rank-prior"]["exploration"] > 0 == TUNED_SETTING["exploration"]
    assert any(v != DEPLOYED_SETTING for v in DEPLOYED_BY_FAMILY.values())


def test_the_leaderboard_runs_each_world_with_its_family_preset_and_keys_runs_on_it() -> None:
    """jobs_for keys a preset run on the setting it runs (a re-tuned preset reruns); agent_factory builds that preset."""
    from benchmarks import leaderboard

    jobs = leaderboard.jobs_for(["paper-rank-prior-v2", "paper-sumo-v2"], ["ucb_dual_tuned", "ucb_dual"], [0], 0)
    keys = {(j["scenario"], j["agent"]): j.get("preset") for j in jobs}
    assert keys[("paper-rank-prior-v2", "ucb_dual")] is None
    assert keys[("paper-rank-prior-v2", "ucb_dual_tuned")] == "paper-rank-prior:" + json.dumps(
        TUNED_BY_FAMILY["paper-rank-prior"], sort_keys=True)
    assert keys[("paper-sumo-v2", "ucb_dual_tuned")].startswith("pooled:")
    kwargs = leaderboard.scenario("paper-rank-prior-v2")
    agent = leaderboard.agent_factory("ucb_dual_tuned", kwargs, 0, 0, scenario_id="paper-rank-prior-v2")()
    assert agent.state()["family"] == "paper-rank-prior"
    assert leaderboard.agent_factory("ucb_dual_tuned", kwargs, 0, 0)().state()["family"] is None


class _FixedSvd(FixedRank):
    """One rank for every vehicle under the oracle's aggregation (what best_fixed chooses among, uniform across tasks)."""

    aggregation = "svd"


def test_best_fixed_is_the_best_per_task_rank_within_budget_in_hindsight() -> None:
    """On a fast world: per-task ranks; no uniform rank within budget earns more; the plan is what is played."""
    from benchmarks.scenarios import scenario

    kwargs = scenario("paper-v2")
    out = run_decentralized(lambda: make_agent("best_fixed"), kwargs, seed=3)
    st = out["agent_state_vehicle_0"]
    assert len(st["task_ranks"]) == 3 and st["within_budget"]
    assert out["total_energy_j"] <= out["total_budget_j"] * (1 + 1e-9)
    assert out["cumulative_reward"] == pytest.approx(st["played_reward"], rel=1e-9)
    # the per-task tables are the uniform-rank episodes, task by task
    for j, rank in enumerate((1, 4, 64)):
        uniform = run_decentralized(lambda r=rank: _FixedSvd(r), kwargs, seed=3)
        assert uniform["cumulative_reward"] == pytest.approx(sum(row[[1, 2, 4, 8, 16, 32, 64].index(rank)]
                                                                 for row in st["task_reward"]), rel=1e-9), j
        if uniform["total_energy_j"] <= uniform["total_budget_j"]:
            assert out["cumulative_reward"] >= uniform["cumulative_reward"] - 1e-6


def test_best_fixed_refuses_the_real_fidelity() -> None:
    """It reads the surrogate: the real fidelity and a missing env are refused up front."""
    from iov_env.config import IoVConfig
    from iov_env.envs.parallel import observation_layout

    cfg = IoVConfig.from_kwargs(preset="tiny", fidelity="real")
    with pytest.raises(ValueError, match="fidelity='fast'"):
        BestFixed().bind(AgentContext((1, 2, 4, 8, 16, 32, 64), observation_layout(cfg), config=cfg, env=object()))
    with pytest.raises(ValueError, match="needs the env"):
        BestFixed().bind(AgentContext((1, 2)))


def test_leaderboard_runs_the_deployed_warm_up_on_training_seeds_once_per_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up runs on seeds 1000.. only, once per scenario; the same job gives the same numbers."""
    import agents.runner
    from benchmarks import leaderboard

    monkeypatch.setattr(UCBDualDeployed, "warmup_episodes", 2)
    leaderboard._warmed_memory.cache_clear()
    seen: list[int] = []
    original = agents.runner.run_decentralized

    def spy(*args: object, **kw: object) -> dict:
        seen.append(int(kw["seed"]))  # type: ignore[arg-type]
        return original(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(agents.runner, "run_decentralized", spy)
    jobs = leaderboard.jobs_for(["tiny-v2"], ["ucb_dual_deployed", "ucb_dual"], [0, 1], 0)
    assert [j.get("warmup") for j in jobs] == ["2 episodes from seed 1000"] * 2 + [None] * 2
    first = [leaderboard.run_one(j) for j in jobs[:2]]
    again = leaderboard.run_one(jobs[0])
    assert seen == [1000, 1001]  # one warm-up for both evaluation seeds and the rerun
    assert again["cumulative_reward"] == first[0]["cumulative_reward"]
    memory = leaderboard._warmed_memory("ucb_dual_deployed", json.dumps(leaderboard.scenario("tiny-v2"), sort_keys=True),
                                        "tiny")  # the warm-up the jobs used: tiny-v2 runs the tiny family's preset
    assert seen == [1000, 1001]
    assert sum(s.counts.sum() for s in memory.tasks.values()) > 0  # the evaluation episodes did not write into it
    before = {k: v.counts.copy() for k, v in memory.tasks.items()}
    leaderboard.run_one(jobs[1])
    assert all(np.array_equal(before[k], v.counts) for k, v in memory.tasks.items())
    leaderboard._warmed_memory.cache_clear()
