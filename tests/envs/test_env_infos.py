"""Per-agent infos and observations: lazy read-only dicts and rows equal to the eager plain dicts they replace.

The reference below is the eager code the env used before (``IoVParallelEnv._infos`` at 5217546), rebuilt
from the simulator's round; every value, key order and Python type must match it, also when read long
after the step (the lazy infos read the round's arrays on first access).
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import numpy as np
import pytest

import iov_env
from iov_env.envs.infos import AgentDict, ReadOnlyDict, WritableInfos, _LazyAgentDict, _LazyInfo
from iov_env.sim.faults import FAULT_NAMES

CASES = {
    "tiny_n50": {"preset": "tiny", "num_vehicles": 50, "rounds": 8},
    # vehicles leave mid-round: every fault option appears in the infos
    "faults": {"preset": "tiny", "num_vehicles": 40, "rounds": 10, "speed_min_mps": 25.0, "speed_max_mps": 30.0,
               "coverage_radius_m": 200.0, "round_duration_s": 20.0},
    "fedavg_dict": {"preset": "tiny", "num_vehicles": 20, "rounds": 6, "aggregation": "fedavg", "obs_type": "dict"},
}


def _reference_infos(env: Any, after_reset: bool) -> dict[str, dict[str, Any]]:
    """The infos as the eager code built them, from the env's state right after reset() / step()."""
    sim, st = env.simulator, env.simulator.state
    masks = st.mask.astype(np.int8)
    tasks = env.config.tasks.tasks
    task_of = sim.vehicle_task.tolist()
    agents = env.possible_agents
    if after_reset:
        active = st.active.tolist()
        return {a: {"active": active[i], "action_mask": masks[i], "task": tasks[task_of[i]], "task_index": task_of[i],
                    "round": 0, "budget": float(st.budget_j[i]), "dual_price": float(sim.dual_price[task_of[i]])}
                for i, a in enumerate(agents)}
    m = env.last_round
    out = {}
    for i, a in enumerate(agents):
        t = task_of[i]
        out[a] = {
            "active": m.active.tolist()[i], "action_mask": masks[i], "action_corrected": m.action_corrected.tolist()[i],
            "rank": m.rank.tolist()[i], "cost": m.energy_j.tolist()[i], "budget": m.budget_j.tolist()[i],
            "reward": m.reward.tolist()[i],
            "rewards": {k: m.reward_terms[k].tolist()[i] for k in ("accuracy", "latency", "energy")},
            "accuracy": m.accuracy.tolist()[i], "latency_s": m.latency_s.tolist()[i], "energy_j": m.energy_j.tolist()[i],
            "task": tasks[t], "task_index": t, "rsu": m.vehicle_rsu.tolist()[i], "dual_price": m.dual_price.tolist()[t],
            "task_energy_used_j": m.task_energy_j.tolist()[t], "task_budget_j": m.task_budget_j.tolist()[t],
            "task_accuracy": m.task_accuracy.tolist()[t], "task_latency_s": m.task_latency_s.tolist()[t],
            "fault": FAULT_NAMES[m.fault.tolist()[i]], "fault_energy_saved_j": m.fault_energy_saved_j.tolist()[i],
            "round": m.round_index,
        }
    return out


def _assert_same(info: Any, ref: dict[str, Any]) -> None:
    """Same keys in the same order, same values, same Python types; the mask equal and read-only."""
    assert isinstance(info, ReadOnlyDict) and isinstance(info, dict)
    assert list(info) == list(ref)
    for key, want in ref.items():
        got = info[key]
        if key == "action_mask":
            assert got.dtype == np.int8 and np.array_equal(got, want) and not got.flags.writeable
        elif key == "rewards":
            assert isinstance(got, ReadOnlyDict) and got == want
            assert all(type(got[k]) is type(v) for k, v in want.items())
        else:
            assert type(got) is type(want), (key, type(got), type(want))
            assert got == want, (key, got, want)


@pytest.mark.parametrize("case", sorted(CASES))
def test_infos_equal_the_eager_dicts_now_and_after_the_episode(case: str) -> None:
    env = iov_env.parallel_env(**CASES[case])
    rng = np.random.default_rng(3)
    obs, infos = env.reset(seed=7)
    kept = [(infos, _reference_infos(env, after_reset=True))]
    faults = set()
    while env.agents:
        obs, _, _, _, infos = env.step({a: int(rng.integers(env.config.num_ranks)) for a in env.agents})
        ref = _reference_infos(env, after_reset=False)
        for a in list(infos)[::3]:  # a third read at once, the rest only after the episode
            _assert_same(infos[a], ref[a])
        kept.append((infos, ref))
        faults |= {i["fault"] for i in ref.values()}
    if case == "faults":
        assert faults >= {None, "early_upload"}, faults
    env.reset(seed=8)  # a new episode must not change what the old one's infos say
    for infos, ref in kept:
        assert list(infos) == list(ref)
        for a in infos:
            _assert_same(infos[a], ref[a])
    env.close()


@pytest.mark.parametrize("obs_type", ["vector", "dict"])
def test_observations_are_read_only_rows_of_today_values(obs_type: str) -> None:
    env = iov_env.parallel_env(preset="tiny", num_vehicles=12, obs_type=obs_type)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(dict.fromkeys(env.agents, 1))
    state = env.state().reshape(12, -1)  # the same matrix, built afresh and writable
    for i, a in enumerate(env.agents):
        o = obs[a]
        vec = o["observation"] if obs_type == "dict" else o
        assert vec.dtype == np.float32 and np.array_equal(vec, state[i])
        with pytest.raises(ValueError, match="read-only"):
            vec[0] = 5.0
        if obs_type == "dict":
            assert isinstance(o, ReadOnlyDict) and list(o) == ["observation", "action_mask"]
            assert np.array_equal(o["action_mask"], env.action_masks()[i])
            with pytest.raises(TypeError, match="read-only"):
                o["observation"] = vec
            with pytest.raises(ValueError, match="read-only"):
                o["action_mask"][0] = 0
        assert env.observation_space(a).contains(o)
    env.close()


def _fresh_info(step: bool = True) -> tuple[Any, dict[str, Any]]:
    """The first agent's info as the unread infos dict holds it (taken past its methods, as C code could), and
    its eager reference: every read of it must fill it first."""
    env = iov_env.parallel_env(preset="tiny", num_vehicles=8)
    _, infos = env.reset(seed=2)
    if step:
        _, _, _, _, infos = env.step(dict.fromkeys(env.agents, 3))
    ref = _reference_infos(env, after_reset=not step)["vehicle_0"]
    env.close()
    assert type(infos) is _LazyAgentDict
    info = dict.__getitem__(infos, "vehicle_0")
    assert type(info) is _LazyInfo and dict.__len__(info) == 1  # only its first key so far
    return info, ref


def _mask_free(d: Any) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "action_mask"}


READS = {
    "getitem": lambda i, r: i["task"] == r["task"],
    "get": lambda i, r: i.get("round", -1) == r["round"] and i.get("nope", 7) == 7,
    "contains": lambda i, r: "task_index" in i and "nope" not in i,
    "len": lambda i, r: len(i) == len(r) and bool(i),
    "iter": lambda i, r: list(i) == list(r),
    "reversed": lambda i, r: list(reversed(i)) == list(reversed(r)),
    "keys": lambda i, r: i.keys() == r.keys(),
    "values": lambda i, r: len(list(i.values())) == len(r),
    "items": lambda i, r: _mask_free(dict(i.items())) == _mask_free(r),
    "dict": lambda i, r: _mask_free(dict(i)) == _mask_free(r),
    "unpack": lambda i, r: _mask_free({**i}) == _mask_free(r),
    "kwargs": lambda i, r: (lambda **kw: kw)(**i).keys() == r.keys(),
    "copy": lambda i, r: type(i.copy()) is dict and _mask_free(i.copy()) == _mask_free(r),
    "or": lambda i, r: type(i | {"x": 1}) is dict and (i | {"x": 1})["x"] == 1 and len(i | {}) == len(r),
    "ror": lambda i, r: len({"x": 1} | i) == len(r) + 1,
    "repr": lambda i, r: repr(i).startswith("{'active': ") and "'task'" in repr(i),
    "json": lambda i, r: json.loads(json.dumps(i, default=np.ndarray.tolist))["round"] == r["round"],
    "eq_reflected": lambda i, r: ({"a": 1} != i) and not ({"a": 1} == i),
}


@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.parametrize("step", [False, True], ids=["reset", "step"])
def test_every_first_read_of_a_lazy_info_sees_its_values(read: str, step: bool) -> None:
    info, ref = _fresh_info(step)
    assert READS[read](info, ref)
    _assert_same(info, ref)


def test_two_unread_infos_compare_by_content() -> None:
    first, _ = _fresh_info()
    second, _ = _fresh_info()
    # both hold masks, so == reaches numpy's ambiguous truth value, as it did for the eager dicts; an unfilled
    # right-hand side (one key) would have compared unequal by length, without getting that far
    with pytest.raises(ValueError, match="truth value"):
        first == second  # noqa: B015 - the comparison itself is the test
    assert type(first) is ReadOnlyDict and type(second) is ReadOnlyDict
    assert _mask_free(first) == _mask_free(second)
    assert ReadOnlyDict(x=1) == {"x": 1} and {"x": 1} == ReadOnlyDict(x=1)


MUTATIONS = {
    "setitem": lambda d: d.__setitem__("cost", 0.0),
    "delitem": lambda d: d.__delitem__("cost"),
    "clear": lambda d: d.clear(),
    "pop": lambda d: d.pop("cost"),
    "popitem": lambda d: d.popitem(),
    "setdefault": lambda d: d.setdefault("new", 1),
    "update": lambda d: d.update(cost=0.0),
    "ior": lambda d: d.__ior__({"cost": 0.0}),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("filled", [False, True])
def test_infos_refuse_every_change(mutation: str, filled: bool) -> None:
    info, ref = _fresh_info()
    if filled:
        len(info)
    with pytest.raises(TypeError, match="ReadOnlyDict is read-only"):  # a lazy one is filled, then refuses
        MUTATIONS[mutation](info)
    _assert_same(info, ref)  # and nothing changed
    with pytest.raises(TypeError, match="read-only"):
        MUTATIONS[mutation](info["rewards"])
    with pytest.raises(ValueError, match="read-only"):
        info["action_mask"][0] = 0
    plain = dict(info)  # the documented way to a mutable copy
    plain["cost"] = -1.0
    assert info["cost"] == ref["cost"]


def _fresh_infos() -> tuple[Any, dict[str, dict[str, Any]], list[str]]:
    """One step's infos of a tiny env before any read, their eager reference and the agents."""
    env = iov_env.parallel_env(preset="tiny", num_vehicles=7)
    env.reset(seed=5)
    _, _, _, _, infos = env.step(dict.fromkeys(env.agents, 4))
    ref, agents = _reference_infos(env, after_reset=False), list(env.possible_agents)
    env.close()
    assert type(infos) is _LazyAgentDict
    return infos, ref, agents


OUTER_READS = {
    "getitem_last": lambda d, r, a: _mask_free(d[a[-1]]) == _mask_free(r[a[-1]]),
    "get": lambda d, r, a: d.get(a[3])["rank"] == r[a[3]]["rank"] and d.get("nobody") is None,
    "contains": lambda d, r, a: a[-1] in d and "nobody" not in d,
    "len": lambda d, r, a: len(d) == len(a),
    "iter": lambda d, r, a: list(d) == a,
    "reversed": lambda d, r, a: list(reversed(d)) == a[::-1],
    "keys": lambda d, r, a: list(d.keys()) == a,
    "values": lambda d, r, a: [i["round"] for i in d.values()] == [r[x]["round"] for x in a],
    "items": lambda d, r, a: [k for k, _ in d.items()] == a,
    "dict": lambda d, r, a: list(dict(d)) == a,
    "unpack": lambda d, r, a: list({**d}) == a,
    "copy": lambda d, r, a: type(d.copy()) is dict and list(d.copy()) == a,
    "or": lambda d, r, a: list(d | {"x": 1}) == [*a, "x"],
    "ror": lambda d, r, a: list({"x": 1} | d) == ["x", *a],
    "repr": lambda d, r, a: repr(d).startswith("{'vehicle_0': {'active': "),
    "json": lambda d, r, a: list(json.loads(json.dumps(d, default=np.ndarray.tolist))) == a,
    "pickle": lambda d, r, a: list(pickle.loads(pickle.dumps(d))) == a,
    "eq": lambda d, r, a: d != {} and not (d == {"x": 1}),
}


@pytest.mark.parametrize("read", sorted(OUTER_READS))
def test_every_first_read_of_the_infos_sees_every_agent_in_order(read: str) -> None:
    infos, ref, agents = _fresh_infos()
    assert OUTER_READS[read](infos, ref, agents)
    assert type(infos) is AgentDict and list(infos) == agents
    for a in agents:
        assert infos[a] is infos[a]  # one object per agent, kept
        _assert_same(infos[a], ref[a])


@pytest.mark.parametrize("write", ["setitem", "delitem", "pop", "update", "setdefault", "clear", "ior"])
def test_the_infos_dict_itself_stays_mutable_as_before(write: str) -> None:
    infos, ref, agents = _fresh_infos()
    extra = {"note": 1}
    if write == "setitem":
        infos["common"] = extra
    elif write == "delitem":
        del infos[agents[2]]
    elif write == "pop":
        assert infos.pop(agents[2])["rank"] == ref[agents[2]]["rank"]
    elif write == "update":
        infos.update(common=extra)
    elif write == "setdefault":
        assert infos.setdefault("common", extra) is extra
    elif write == "clear":
        infos.clear()
        assert infos == {}
        return
    else:
        infos |= {"common": extra}
    want = [a for a in agents if a != agents[2]] if write in ("delitem", "pop") else [*agents, "common"]
    assert list(infos) == want
    for a in want:
        if a != "common":
            _assert_same(infos[a], ref[a])


def test_two_lazy_infos_dicts_compare_entry_by_entry() -> None:
    first, _, agents = _fresh_infos()
    second, _, _ = _fresh_infos()
    # dict == compares the masks (arrays) too, ambiguous for any dict holding arrays: compare what gymnasium does
    from gymnasium.utils.env_checker import data_equivalence

    assert type(first) is type(second) is _LazyAgentDict
    assert data_equivalence(first, second)
    assert list(first) == list(second) == agents


def test_infos_dict_refuses_a_second_initialisation() -> None:
    infos, _, agents = _fresh_infos()
    with pytest.raises(TypeError, match="initialised once"):
        infos.__init__(agents, None)


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy", "cloudpickle"])
@pytest.mark.parametrize("filled", [False, True])
def test_infos_round_trip_as_equal_read_only_dicts(how: str, filled: bool) -> None:
    info, ref = _fresh_info()
    if filled:
        info["cost"]
    if how == "pickle":
        back = pickle.loads(pickle.dumps(info))
    elif how == "copy":
        back = copy.copy(info)
    elif how == "deepcopy":
        back = copy.deepcopy(info)
    else:
        cloudpickle = pytest.importorskip("cloudpickle")
        back = pickle.loads(cloudpickle.dumps(info))
    assert back is not info and type(back) is ReadOnlyDict
    _assert_same(info, ref)
    for key, want in ref.items():  # the mask comes back equal, and writable only in the copy: numpy's rule
        assert np.array_equal(back[key], want) if key == "action_mask" else back[key] == want
    with pytest.raises(TypeError, match="read-only"):
        back["cost"] = 0.0


def test_the_whole_step_pickles() -> None:
    env = iov_env.parallel_env(preset="tiny", num_vehicles=10)
    env.reset(seed=0)
    step = env.step(dict.fromkeys(env.agents, 0))
    env.close()
    obs, rewards, terms, truncs, infos = pickle.loads(pickle.dumps(step))
    assert obs.keys() == infos.keys() == rewards.keys()
    assert all(np.array_equal(obs[a], step[0][a]) for a in obs)
    assert all(_mask_free(infos[a]) == _mask_free(step[4][a]) for a in infos)


def test_writable_infos_hands_plain_dicts_and_forwards_the_env() -> None:
    env = WritableInfos(iov_env.parallel_env(preset="tiny", num_vehicles=5, rounds=2))
    _, infos = env.reset(seed=1)
    assert all(type(i) is dict for i in infos.values())
    while env.agents:
        obs, _, _, _, infos = env.step(dict.fromkeys(env.agents, 1))
        for a, info in infos.items():
            assert type(info) is dict and info["round"] == env.unwrapped.last_round.round_index
            info["terminal_observation"] = obs[a]  # what SuperSuit writes at the end of an episode
    assert env.action_masks().shape == (5, env.config.num_ranks)
    env.close()


def test_infos_dict_fills_after_its_first_info_was_read_past_it() -> None:
    """C code can take the held first info without the dict's methods; reading it first must not break the dict."""
    infos, ref, agents = _fresh_infos()
    first = dict.__getitem__(infos, agents[0])
    assert first["rank"] == ref[agents[0]]["rank"] and type(first) is ReadOnlyDict
    assert list(infos) == agents and infos[agents[0]] is first
    for a in agents:
        _assert_same(infos[a], ref[a])
