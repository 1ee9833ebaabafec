"""engine="ray": real rounds on Ray actors give what one process gives; a dead actor changes nothing but time.

The tests marked ``ray`` need Ray (its own venv: ``make test-ray``); the first ones need neither Ray nor torch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import real_stack_or_skip

from iov_env.config import ConfigError, preset
from iov_env.learning.backend import FleetLayout, RoundPlan
from iov_env.learning.ray_engine import FAULT_FILE_ENV, amdahl, balance

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed here; run `make test-ray` (its own venv)")


# -- no Ray needed ---------------------------------------------------------------------------------------------
def test_balance_spreads_work_evenly_and_deterministically() -> None:
    costs = [5.0, 1.0, 4.0, 3.0, 3.0, 2.0]
    shares = balance(costs, 2)
    assert sorted(i for s in shares for i in s) == list(range(6))  # every job once
    assert [sum(costs[i] for i in s) for s in shares] == [9.0, 9.0]
    assert shares == balance(costs, 2) and all(s == sorted(s) for s in shares)
    assert balance([1.0], 3) == [[0], [], []]
    with pytest.raises(ValueError, match="bins=0"):
        balance(costs, 0)


def test_amdahl_projection_is_serial_plus_split_parallel_never_below_one_unit() -> None:
    assert amdahl(2.0, 80.0, 1.0, 1) == 82.0
    assert amdahl(2.0, 80.0, 1.0, 8) == 12.0
    assert amdahl(2.0, 80.0, 1.0, 128) == 3.0  # 90 vehicles cannot use 128 actors: the longest one bounds it
    with pytest.raises(ValueError, match="actors=0"):
        amdahl(1.0, 1.0, 0.1, 0)


def test_ray_settings_without_the_ray_engine_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"ray_actors=2 is set but engine='sequential' does not use Ray"):
        preset("tiny", fidelity="real", ray_actors=2)
    with pytest.raises(ConfigError, match="ray_engine"):
        preset("tiny", fidelity="real", engine="ray", ray_engine="ray")
    cfg = preset("tiny", fidelity="real", engine="ray", ray_actors=2, ray_engine="batched", ray_address="auto")
    assert (cfg.learning.ray_actors, cfg.learning.ray_engine, cfg.learning.ray_address) == (2, "batched", "auto")


def test_engine_ray_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_stack_or_skip()
    from iov_env.learning.real import RealBackend

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, installed or not
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("IOV_DATA_DIR", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'iov-env\[ray\]'"):
        RealBackend(preset("tiny", **_kw(engine="ray")))


# -- on Ray --------------------------------------------------------------------------------------------------
def _kw(**overrides: Any) -> dict[str, Any]:
    # dropout stays on: each vehicle seeds its own draws, so the sequential engine is exact wherever it runs
    kw = dict(fidelity="real", model_name_or_path="tiny-random-bert", rank_set=(1, 2, 4, 8), learning_rate=3e-3,
              local_steps=3, batch_size=8, max_seq_len=32, eval_subset_size=32, dirichlet_alpha=100.0, rounds=3)
    kw.update(overrides)
    return kw


LAYOUT = FleetLayout(np.array([0, 1, 2, 0, 1, 2]), np.array([30, 40, 36, 45, 30, 33]))


def _plans() -> list[RoundPlan]:
    n = 6
    mask = np.ones((n, 6), bool)
    mask[2, 3:] = False  # FedRA: vehicle 2 trains the tiny model's block 0 only
    return [
        RoundPlan(0, np.array([8, 8, 8, 8, 8, 8]), np.ones(n, bool), np.ones(n, bool), np.ones(n),
                  np.arange(n) % 2, np.ones((n, 6), bool)),
        RoundPlan(1, np.array([1, 2, 8, 4, 2, 8]), np.array([1, 1, 1, 1, 1, 0], bool), np.array([1, 1, 1, 1, 0, 1], bool),
                  np.array([1.0, 1.0, 1.0, 0.5, 0.0, 1.0]), np.arange(n) % 2, mask),
        RoundPlan(2, np.array([4, 4, 1, 2, 8, 8]), np.ones(n, bool), np.ones(n, bool), np.ones(n),
                  np.array([0, 0, 1, 1, 0, 1]), np.ones((n, 6), bool)),
    ]


def _episode(b: Any, plans: list[RoundPlan] | None = None) -> dict[str, Any]:
    """Results and committed state after each round: everything the env reads, as plain arrays."""
    b.reset(5, LAYOUT)
    out: list[dict[str, Any]] = []
    for plan in plans or _plans():
        r = b.train_round(plan)
        out.append(_snapshot(b, {
            "vehicle_accuracy": r.vehicle_accuracy, "vehicle_tokens": r.vehicle_tokens,
            "vehicle_loss": r.vehicle_loss, "task_accuracy": r.task_accuracy,
            "metrics": {t: {k: v for k, v in m.items() if k != "round_wall_s"} for t, m in r.task_metrics.items()}}))
    return {"rounds": out}


def _assert_same(got: dict[str, Any], want: dict[str, Any], atol: float = 1e-5) -> None:
    for r, (g, w) in enumerate(zip(got["rounds"], want["rounds"], strict=True)):
        np.testing.assert_array_equal(g["vehicle_tokens"], w["vehicle_tokens"])
        for key in ("vehicle_accuracy", "vehicle_loss", "task_accuracy"):
            np.testing.assert_allclose(g[key], w[key], atol=atol, rtol=0, err_msg=f"round {r} {key}")
        assert g["metrics"].keys() == w["metrics"].keys()
        for task in w["metrics"]:
            assert g["metrics"][task] == pytest.approx(w["metrics"][task], abs=atol), f"round {r} {task}"
        for k, (gf, wf) in enumerate(zip(g["factors"], w["factors"], strict=True)):
            assert gf.keys() == wf.keys()
            for name in wf:
                for gm, wm in zip(gf[name], wf[name], strict=True):
                    assert gm.shape == wm.shape, f"round {r} task {k} {name}"
                    np.testing.assert_allclose(gm, wm, atol=atol, rtol=0, err_msg=f"round {r} task {k} {name}")
        for k, (gh, wh) in enumerate(zip(g["heads"], w["heads"], strict=True)):
            for name in wh:
                np.testing.assert_allclose(gh[name], wh[name], atol=atol, rtol=0, err_msg=f"round {r} head {k} {name}")


@pytest.fixture(scope="module")
def ray_here(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray whose workers see this module's environment (synthetic data, offline, the fault file's path).

    Ray's workers inherit the environment of the process that starts Ray: a Ray started earlier in the session,
    with the user's IOV_DATA_DIR, would give the actors other data than the driver here (the pool refuses that).
    """
    if ray is None:
        pytest.skip("Ray is not installed here; run `make test-ray` (its own venv)")
    real_stack_or_skip()
    fault = tmp_path_factory.mktemp("ray_fault") / "die-once"
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.delenv("IOV_DATA_DIR", raising=False)
    mp.setenv(FAULT_FILE_ENV, str(fault))
    mp.setenv("OMP_NUM_THREADS", "1")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield fault
    ray.shutdown()
    mp.undo()


@pytest.fixture(scope="module")
def sequential(ray_here: Path) -> dict[str, Any]:
    from iov_env.learning.real import RealBackend

    b = RealBackend(preset("tiny", **_kw()))
    try:
        return _episode(b)
    finally:
        b.close()


@pytest.mark.ray
@needs_ray
@pytest.mark.parametrize("actors", [1, 2, 3])
def test_ray_rounds_equal_one_process(ray_here: Path, sequential: dict[str, Any], actors: int) -> None:
    """Three tasks, mixed ranks, a FedRA-frozen block, a vehicle without steps and one without upload, dropout on."""
    from iov_env.learning.real import RealBackend

    b = RealBackend(preset("tiny", **_kw(engine="ray", ray_actors=actors)))
    try:
        assert b.describe()["engine"].startswith(f"ray ({actors} actors")
        got = _episode(b)
        assert b.last_timing_s["retried_shares"] == 0.0
        assert b.last_timing_s["shares"] == min(actors, 6)
        assert b.last_timing_s["remote"] >= b.last_timing_s["actor_busy_max"] > 0
    finally:
        b.close()
    _assert_same(got, sequential)


@pytest.mark.ray
@needs_ray
def test_more_actors_than_the_cluster_holds_is_a_clear_error_not_a_hang(ray_here: Path, one_torch_thread: None) -> None:
    """And ray_actors=0 sizes the pool from the cluster."""
    from iov_env.learning.real import RealBackend

    with pytest.raises(RuntimeError, match=r"ray_actors=4 needs 4 CPUs .* has 3; allowed: at most 3 actors"):
        RealBackend(preset("tiny", **_kw(engine="ray", ray_actors=4)))
    assert ray.is_initialized()  # the test's own Ray: the backend did not start it, so it does not stop it
    # ray_actors=0: one actor per group of torch_threads cores; 3 CPUs in groups of 2 make 1 actor of 2 CPUs
    b = RealBackend(preset("tiny", **_kw(engine="ray", ray_actors=0, torch_threads=2)))
    try:
        assert (b._ray.num_actors, b._ray.cpus) == (1, 2)
        assert ray.available_resources().get("CPU", 0) == 1.0  # the actor holds 2 of the 3
    finally:
        b.close()


@pytest.mark.ray
@needs_ray
def test_ray_with_the_batched_engine_inside_equals_the_batched_engine(ray_here: Path) -> None:
    """Batched groups travel whole: the same groups share the same passes and dropout draws as in one process."""
    from iov_env.learning.real import RealBackend

    kw = _kw(engine_group_size=2)
    here = RealBackend(preset("tiny", **dict(kw, engine="batched")))
    try:
        want = _episode(here)
    finally:
        here.close()
    b = RealBackend(preset("tiny", **dict(kw, engine="ray", ray_engine="batched", ray_actors=2)))
    try:
        got = _episode(b)
    finally:
        b.close()
    _assert_same(got, want)


@pytest.mark.ray
@needs_ray
def test_an_actor_killed_mid_round_is_restarted_and_the_round_is_the_same(ray_here: Path,
                                                                        sequential: dict[str, Any]) -> None:
    """An actor process exits hard after its first vehicle of round 1; Ray restarts it and re-runs its share."""
    from iov_env.learning.real import RealBackend

    b = RealBackend(preset("tiny", **_kw(engine="ray", ray_actors=2)))
    try:
        pids_before = set(ray.get([a.prepare.remote(0, (5, LAYOUT)) for a in b._ray.actors]))
        plans = _plans()
        b.reset(5, LAYOUT)
        rounds = [b.train_round(plans[0])]
        ray_here.write_text("die once\n")
        rounds.append(b.train_round(plans[1]))
        assert not ray_here.exists()  # an actor took the file: it died in round 1
        pids_after = set(ray.get([a.prepare.remote(0, (5, LAYOUT)) for a in b._ray.actors]))
        assert len(pids_after - pids_before) == 1  # exactly one actor is a new process
        rounds.append(b.train_round(plans[2]))
        got, final = rounds, _snapshot(b, sequential["rounds"][-1])
    finally:
        ray_here.unlink(missing_ok=True)
        b.close()
    # only the final state is at hand here: compare it and every round's results
    want = sequential["rounds"]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.vehicle_accuracy, w["vehicle_accuracy"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(g.vehicle_loss, w["vehicle_loss"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(g.task_accuracy, w["task_accuracy"], atol=1e-5, rtol=0)
    _assert_same({"rounds": [final]}, {"rounds": [want[-1]]})


@pytest.mark.ray
@needs_ray
def test_a_lost_actor_hands_its_vehicles_to_another_and_losing_all_commits_nothing(ray_here: Path,
                                                                                 sequential: dict[str, Any]) -> None:
    """Gone for good (no restart left): its share goes to a live actor; with none left the round raises."""
    from iov_env.learning.real import RealBackend

    b = RealBackend(preset("tiny", **_kw(engine="ray", ray_actors=2)))
    try:
        plans = _plans()
        b.reset(5, LAYOUT)
        rounds = [b.train_round(plans[0])]
        ray.kill(b._ray.actors[0], no_restart=True)
        rounds.append(b.train_round(plans[1]))
        assert b.last_timing_s["retried_shares"] == 1.0
        for g, w in zip(rounds, sequential["rounds"], strict=False):
            np.testing.assert_allclose(g.vehicle_loss, w["vehicle_loss"], atol=1e-5, rtol=0)
            np.testing.assert_allclose(g.task_accuracy, w["task_accuracy"], atol=1e-5, rtol=0)
        before = _snapshot(b, sequential["rounds"][1])
        acc_before = b.vehicle_accuracy.copy()
        ray.kill(b._ray.actors[1], no_restart=True)
        with pytest.raises(RuntimeError, match="round 2: every Ray actor .* died .*the round was not committed"):
            b.train_round(plans[2])
        _assert_same({"rounds": [_snapshot(b, sequential["rounds"][1])]}, {"rounds": [before]}, atol=0.0)
        np.testing.assert_array_equal(b.vehicle_accuracy, acc_before)
    finally:
        b.close()


@pytest.mark.ray
@needs_ray
def test_env_rewards_on_ray_equal_one_process(ray_here: Path) -> None:
    """The env's own view: rewards, costs and infos of two real rounds, engine='ray' (2 actors) vs sequential."""
    import iov_env

    def run(**kw: Any) -> list[Any]:
        env = iov_env.parallel_env(preset="tiny", **_kw(**kw))
        try:
            env.reset(seed=3)
            out = []
            for step in range(2):
                actions = {a: (i + step) % 4 for i, a in enumerate(env.agents)}
                _, rewards, _, _, infos = env.step(actions)
                out.append((rewards, {a: infos[a]["cost"] for a in infos}))
            return out
        finally:
            env.close()

    want, got = run(), run(engine="ray", ray_actors=2)
    assert len({round(float(v), 6) for v in want[1][0].values()}) > 1  # rewards that differ: a comparison that can fail
    for (gr, gc), (wr, wc) in zip(got, want, strict=True):
        assert gr.keys() == wr.keys()
        for a in wr:
            assert gr[a] == pytest.approx(wr[a], abs=1e-5) and gc[a] == pytest.approx(wc[a], abs=1e-9)


def _snapshot(b: Any, like: dict[str, Any]) -> dict[str, Any]:
    """``like`` plus the backend's committed factors and heads (copied), in ``_episode``'s form of a round.

    Given another backend's round as ``like``, its results fields are carried along, not compared.
    """
    return {**like, "factors": [{n: (fb.copy(), fa.copy()) for n, (fb, fa) in st.factors.items()} for st in b.state],
            "heads": [{n: w.copy() for n, w in st.head.items()} for st in b.state]}

