"""RealBackend on a tiny random BERT and synthetic data: learning, determinism, atomic rounds."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_stack_or_skip

from iov_env.config import preset
from iov_env.learning.backend import FleetLayout, LearningBackend, RoundPlan

lora = real_stack_or_skip()

from iov_env.learning.real import RealBackend  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # no data folder and no hub: synthetic stand-ins, fast and deterministic (a named folder that lacks the
    # files is an error, not a fallback)
    monkeypatch.delenv("IOV_DATA_DIR", raising=False)


def _backend(**overrides) -> RealBackend:
    kw = dict(fidelity="real", model_name_or_path="tiny-random-bert", rank_set=(1, 2, 4, 8),
              learning_rate=3e-3, local_steps=5, batch_size=8, max_seq_len=32, eval_subset_size=64,
              dirichlet_alpha=100.0)
    kw.update(overrides)
    if len(kw.get("tasks", (0, 0, 0))) == 1:
        kw["budget_cap_fraction"] = 1.0  # config rule: the cap must be >= 1/num_tasks
    return RealBackend(preset("tiny", **kw))


def _plan(n: int, ranks, round_index: int = 0, rsu=None, layers: int = 6) -> RoundPlan:
    return RoundPlan(round_index, np.asarray(ranks), np.ones(n, bool), np.ones(n, bool), np.ones(n),
                     np.zeros(n, int) if rsu is None else np.asarray(rsu), np.ones((n, layers), bool))


def _layout(tasks, sizes) -> FleetLayout:
    return FleetLayout(np.asarray(tasks), np.asarray(sizes))


def test_protocol_and_describe() -> None:
    b = _backend(tasks=("sst2", "conll2003", "copa"))
    assert isinstance(b, LearningBackend)
    d = b.describe()
    assert d["fidelity"] == "real" and all(s.startswith("synthetic") for s in d["tasks"].values())
    assert any("differ from the config" in n for n in d["notes"])
    b.reset(0, _layout([0, 1, 2], [40, 40, 40]))
    res = b.train_round(_plan(3, [1, 2, 8], rsu=[0, 1, 0]))
    assert res.task_accuracy.shape == (3,) and np.all((0 <= res.task_accuracy) & (res.task_accuracy <= 1))
    assert np.all(res.vehicle_tokens > 0) and np.all(np.isfinite(res.vehicle_loss))
    assert set(res.task_metrics) == {"sst2", "conll2003", "copa"}
    assert "token_accuracy" in res.task_metrics["conll2003"]
    np.testing.assert_allclose(b.expected_tokens(np.array([0, 1, 2])),
                               5 * 8 * b.tokens_per_sample, rtol=1e-9)


def test_local_training_lowers_the_loss() -> None:
    b = _backend(tasks=("sst2",), local_steps=10)
    b.reset(0, _layout([0, 0], [120, 120]))
    losses = [np.mean(b.train_round(_plan(2, [4, 4], r)).vehicle_loss) for r in range(6)]
    assert losses[-1] < losses[0] - 0.05, losses


def test_same_seed_gives_identical_metrics() -> None:
    b = _backend(tasks=("sst2", "conll2003"))
    layout = _layout([0, 1, 0, 1], [30, 40, 50, 60])

    def run(seed: int) -> list[np.ndarray]:
        b.reset(seed, layout)
        out = []
        for r in range(2):
            res = b.train_round(_plan(4, [1, 2, 4, 8], r, rsu=[0, 0, 1, 1]))
            out += [res.vehicle_accuracy, res.vehicle_loss, res.vehicle_tokens, res.task_accuracy]
        return out

    first, second = run(5), run(5)
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(first, run(6), strict=True))


def test_an_exception_mid_round_leaves_no_half_update(monkeypatch: pytest.MonkeyPatch) -> None:
    b = _backend(tasks=("sst2",))
    layout = _layout([0, 0, 0], [30, 30, 30])
    b.reset(1, layout)
    b.train_round(_plan(3, [2, 4, 8], 0))
    before = ({k: (x.copy(), y.copy()) for k, (x, y) in b.state[0].factors.items()},
              {k: v.copy() for k, v in b.state[0].head.items()}, b.vehicle_accuracy.copy())
    calls = {"n": 0}
    original = b._train_vehicle

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure in the second vehicle")
        return original(*args, **kwargs)

    monkeypatch.setattr(b, "_train_vehicle", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        b.train_round(_plan(3, [2, 4, 8], 1))
    for k, (x, y) in before[0].items():
        np.testing.assert_array_equal(b.state[0].factors[k][0], x)
        np.testing.assert_array_equal(b.state[0].factors[k][1], y)
    for k, v in before[1].items():
        np.testing.assert_array_equal(b.state[0].head[k], v)
    np.testing.assert_array_equal(b.vehicle_accuracy, before[2])
    # a retry of the round gives what an undisturbed run gives
    monkeypatch.setattr(b, "_train_vehicle", original)
    retry = b.train_round(_plan(3, [2, 4, 8], 1))
    b.reset(1, layout)
    b.train_round(_plan(3, [2, 4, 8], 0))
    clean = b.train_round(_plan(3, [2, 4, 8], 1))
    np.testing.assert_array_equal(retry.task_accuracy, clean.task_accuracy)
    np.testing.assert_array_equal(retry.vehicle_loss, clean.vehicle_loss)


def test_fedavg_with_mixed_ranks_is_a_clear_error() -> None:
    b = _backend(tasks=("sst2",), aggregation="fedavg")
    b.reset(0, _layout([0, 0], [30, 30]))
    with pytest.raises(ValueError, match=r"fedavg.*ranks \[2, 4\]"):
        b.train_round(_plan(2, [2, 4]))
    res = b.train_round(_plan(2, [4, 4]))  # equal ranks are fine
    assert np.isfinite(res.task_accuracy).all()


@pytest.mark.parametrize("method", ["svd", "zero_pad", "stacking"])
def test_heterogeneous_ranks_aggregate_and_padded_slots_stay_zero(method: str) -> None:
    b = _backend(tasks=("sst2",), aggregation=method)
    b.reset(0, _layout([0, 0, 0], [30, 30, 30]))
    res = b.train_round(_plan(3, [1, 2, 8], rsu=[0, 1, 1]))
    assert np.isfinite(res.task_accuracy).all()
    # the shared adapter after the last vehicle (rank 8 of capacity 8) and a rank-2 training run
    out = b._train_vehicle(0, 0, 2, 3, {0, 1}, 1)
    for layer in b.layers:
        a_w = layer.module.lora_A[lora.ADAPTER].weight
        b_w = layer.module.lora_B[lora.ADAPTER].weight
        assert not a_w[2:].any() and not b_w[:, 2:].any()
    assert all(f[0].shape[1] == 2 for f in out["factors"].values())


def test_layer_mask_freezes_unselected_blocks() -> None:
    b = _backend(tasks=("sst2",))
    b.reset(0, _layout([0], [30]))
    b.train_round(_plan(1, [4]))
    start = {k: (x.copy(), y.copy()) for k, (x, y) in b.state[0].factors.items()}
    plan = _plan(1, [4], 1)
    plan.layer_mask[:] = False
    plan.layer_mask[0, :3] = True  # config has 6 layers, the tiny model 2: columns 0-2 -> block 0
    b.train_round(plan)
    for layer in b.layers:
        changed = not np.allclose(b.state[0].factors[layer.name][0] @ b.state[0].factors[layer.name][1],
                                  start[layer.name][0] @ start[layer.name][1], atol=1e-7)
        assert changed == (layer.block == 0), layer.name


def test_zero_train_fraction_trains_nothing() -> None:
    b = _backend(tasks=("sst2",))
    b.reset(0, _layout([0, 0], [30, 30]))
    plan = _plan(2, [2, 2])
    plan.train_fraction[:] = [0.0, 1.0]
    res = b.train_round(plan)
    assert res.vehicle_tokens[0] == 0 and np.isnan(res.vehicle_loss[0]) and res.vehicle_tokens[1] > 0


@pytest.mark.parametrize("targets", [("query", "value"), ("all-linear",)])
def test_adapter_size_matches_the_simulated_cost_model(targets) -> None:
    """The real adapter at rank r has exactly the parameters the simulator charges for (payload, FLOPs)."""
    from iov_env.sim import costs

    b = _backend(tasks=("sst2",), target_modules=targets, model_hidden_dim=64, model_num_layers=2,
                 model_intermediate_dim=128)
    ln = b.config.learning
    per_rank = sum(layer.module.lora_A[lora.ADAPTER].weight.shape[1] + layer.module.lora_B[lora.ADAPTER].weight.shape[0]
                   for layer in b.layers)
    equivalents = ln.model_num_layers * costs.adapted_matrix_equivalents(targets, 64, 128)
    assert costs.lora_param_count(np.array(4), 64, equivalents) == pytest.approx(4 * per_rank)
    assert len(b.layers) == (12 if targets == ("all-linear",) else 4)
    assert not any("pooler" in layer.name for layer in b.layers)


def test_lora_scaling_rules() -> None:
    assert lora.lora_scaling(32.0, 4, "standard") == 8.0
    assert lora.lora_scaling(32.0, 4, "rslora") == 16.0
    with pytest.raises(ValueError, match="rslora"):
        lora.lora_scaling(32.0, 4, "sqrt")


@pytest.mark.parametrize("mode", ["standard", "rslora"])
def test_load_then_read_returns_the_global_for_either_scaling(mode: str) -> None:
    """Stored factors carry the scaling folded in: load + read at any rank is the identity on B @ A."""
    b = _backend(tasks=("sst2",), lora_scaling=mode)
    rng = np.random.default_rng(0)
    factors = {layer.name: (rng.normal(size=(layer.module.lora_B[lora.ADAPTER].weight.shape[0], 4)).astype(np.float32),
                            rng.normal(size=(4, layer.module.lora_A[lora.ADAPTER].weight.shape[1])).astype(np.float32))
               for layer in b.layers}
    torch = pytest.importorskip("torch")
    lora.load_adapter(b.layers, factors, 4, 32.0, torch.Generator().manual_seed(0), scaling_mode=mode)
    back = lora.read_adapter(b.layers, 4, 32.0, mode)
    for name, (fb, fa) in factors.items():
        np.testing.assert_allclose(back[name][0] @ back[name][1], fb @ fa, rtol=1e-5, atol=1e-5)


def test_frozen_head_stays_at_its_initialisation() -> None:
    b = _backend(tasks=("sst2",), head_lr_scale=0.0)
    b.reset(0, _layout([0], [60]))
    before = {k: v.copy() for k, v in b.state[0].head.items()}
    b.train_round(_plan(1, [4]))
    for k, v in b.state[0].head.items():
        np.testing.assert_array_equal(v, before[k])
    trained = _backend(tasks=("sst2",))
    trained.reset(0, _layout([0], [60]))
    trained.train_round(_plan(1, [4]))
    assert any(not np.array_equal(trained.state[0].head[k], before[k]) for k in before)


def test_a_missing_accelerator_is_a_clear_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        _backend(tasks=("sst2",), device="cuda")


def test_a_task_without_uploads_keeps_its_metrics_without_reevaluating(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unchanged global scores what it scored last round on the same dev subset: no second evaluation."""
    b = _backend(tasks=("sst2",), rounds=3)
    b.reset(0, _layout([0, 0], [30, 30]))
    first = b.train_round(_plan(2, [2, 4], 0))
    calls = []
    original = b._evaluate_global
    monkeypatch.setattr(b, "_evaluate_global", lambda *a: calls.append(a[0]) or original(*a))
    silent = _plan(2, [2, 4], 1)
    silent.uploads[:] = False
    second = b.train_round(silent)
    assert calls == [] and second.task_accuracy.tolist() == first.task_accuracy.tolist()
    final = _plan(2, [2, 4], 2)  # the last round scores the full dev set: evaluated even when unchanged
    final.uploads[:] = False
    b.train_round(final)
    assert calls == [0] and b.last_task_metrics[0]["n"] == float(len(b.tokenized[0][1]))


def test_probe_local_round_is_the_rounds_own_local_model_and_commits_nothing() -> None:
    """A counterfactual at the executed rank reproduces the round's reading; probing changes no state."""
    b = _backend(tasks=("sst2", "conll2003", "copa"))
    b.reset(3, _layout([0, 1, 2, 0], [40, 40, 40, 60]))
    b.train_round(_plan(4, [1, 2, 4, 8], round_index=0, rsu=[0, 1, 0, 1]))  # a non-trivial global state
    before = [({k: (f[0].copy(), f[1].copy()) for k, f in st.factors.items()}, {k: v.copy() for k, v in st.head.items()})
              for st in b.state]
    acc_before = b.vehicle_accuracy.copy()
    probes = {(v, r): b.probe_local_round(v, r, round_index=1, dev_examples=32) for v in range(4) for r in (1, 8)}
    for st, (factors, head) in zip(b.state, before, strict=True):  # the federation is where it was
        for k, (bb, aa) in factors.items():
            np.testing.assert_array_equal(st.factors[k][0], bb)
            np.testing.assert_array_equal(st.factors[k][1], aa)
        for k, v in head.items():
            np.testing.assert_array_equal(st.head[k], v)
    np.testing.assert_array_equal(b.vehicle_accuracy, acc_before)
    res = b.train_round(_plan(4, [8, 1, 8, 1], round_index=1, rsu=[0, 1, 0, 1]))
    for v, r in enumerate([8, 1, 8, 1]):  # the same batches and seeds as the round itself
        assert probes[(v, r)]["local_metric"] == pytest.approx(res.vehicle_accuracy[v], abs=1e-9)
        assert probes[(v, r)]["tokens"] == res.vehicle_tokens[v]
        assert probes[(v, r)]["dev_n"] == 32.0 and 0.0 <= probes[(v, r)]["dev_metric"] <= 1.0
        assert probes[(v, r)]["local_n"] == float(len(b.shards[v].val_idx))
    with pytest.raises(ValueError, match="rank=9; allowed: 1..8"):
        b.probe_local_round(0, 9, round_index=2)
    with pytest.raises(ValueError, match="vehicle=4; allowed: 0..3"):
        b.probe_local_round(4, 1, round_index=2)
