"""engine="batched" trains exactly what engine="sequential" trains (every dropout off), only in shared passes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_stack_or_skip

from iov_env.config import preset
from iov_env.learning.backend import FleetLayout, RoundPlan

torch = pytest.importorskip("torch")
lora = real_stack_or_skip()

from iov_env.learning import batched  # noqa: E402
from iov_env.learning.real import RealBackend  # noqa: E402

# dropout draws differ between one shared pass and one pass per vehicle: equivalence needs all of it off.
# The two engines sum in different orders (other matmul shapes), so they agree to float rounding, and AdamW
# divides every gradient element by its own RMS: an element whose gradient is near eps turns a 1e-7 rounding
# difference into an lr-sized one. At lr 1e-3 the adapters agree to 3e-7 here; at 3e-3 one element of one
# rank-8 vehicle drifted by 1.3e-5 after 4 steps.
DETERMINISTIC = dict(lora_dropout=0.0, head_dropout=0.0, base_dropout=0.0, learning_rate=1e-3)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # no data folder and no hub: synthetic stand-ins, fast and deterministic (a named folder that lacks the
    # files is an error, not a fallback)
    monkeypatch.delenv("IOV_DATA_DIR", raising=False)


def _backend(**overrides) -> RealBackend:
    kw = dict(fidelity="real", model_name_or_path="tiny-random-bert", rank_set=(1, 2, 4, 8), local_steps=4, batch_size=8, max_seq_len=32, eval_subset_size=32,
              dirichlet_alpha=100.0, **DETERMINISTIC)
    kw.update(overrides)
    if len(kw.get("tasks", (0, 0, 0))) == 1:
        kw["budget_cap_fraction"] = 1.0
    return RealBackend(preset("tiny", **kw))


def _plan(ranks, round_index, fraction=None, layer_mask=None) -> RoundPlan:
    n = len(ranks)
    return RoundPlan(round_index, np.asarray(ranks), np.ones(n, bool), np.ones(n, bool),
                     np.ones(n) if fraction is None else np.asarray(fraction, float), np.arange(n) % 2,
                     np.ones((n, 6), bool) if layer_mask is None else layer_mask)


def _specs(b: RealBackend, plan: RoundPlan):
    out = []
    for v in range(len(plan.rank)):
        steps = int(round(b.config.learning.local_steps * plan.train_fraction[v]))
        out.append((v, int(b.layout.vehicle_task[v]), int(plan.rank[v]), steps, b.layer_blocks(plan.layer_mask[v])))
    return out


def _assert_same(seq: dict, bat: dict, atol: float = 1e-5) -> None:
    assert seq.keys() == bat.keys()
    for v in seq:
        s, t = seq[v], bat[v]
        assert s["tokens"] == t["tokens"]
        np.testing.assert_allclose(s["loss"], t["loss"], rtol=1e-5, atol=1e-6)
        assert s["metric"] == pytest.approx(t["metric"], abs=1e-9)
        for name, (fb, fa) in s["factors"].items():
            gb, ga = t["factors"][name]
            assert fb.shape == gb.shape and fa.shape == ga.shape  # exactly the vehicle's rank
            np.testing.assert_allclose(gb, fb, atol=atol, rtol=0, err_msg=f"vehicle {v} {name} B")
            np.testing.assert_allclose(ga, fa, atol=atol, rtol=0, err_msg=f"vehicle {v} {name} A")
        for name, w in s["head"].items():
            np.testing.assert_allclose(t["head"][name], w, atol=atol, rtol=0, err_msg=f"vehicle {v} head {name}")


QV = {"lora_scaling": "standard", "target_modules": ("query", "value")}  # the regime before rsLoRA became default


@pytest.mark.parametrize(("tasks", "regime"), [
    (("sst2", "conll2003", "copa"), QV),  # three head kinds: unequal rows per vehicle (split path)
    (("sst2",), {"lora_scaling": "rslora", "target_modules": ("all-linear",)}),  # equal rows (bmm path)
    # the regime the lead makes the default: rsLoRA, every linear layer, lr 3e-4, on all three heads
    (("sst2", "conll2003", "copa"), {"lora_scaling": "rslora", "target_modules": ("all-linear",),
                                     "learning_rate": 3e-4}),
    (("sst2", "copa"), {**QV, "head_lr_scale": 0.0}),  # frozen heads: only the adapters train, in both engines
])
def test_batched_matches_sequential_with_mixed_ranks(tasks, regime) -> None:
    """Mixed ranks, uneven step counts, FedRA-frozen blocks, a trained global: adapters agree within 1e-5."""
    b = _backend(tasks=tasks, **regime)
    n = 5
    vt = np.arange(n) % len(tasks)
    b.reset(3, FleetLayout(vt, np.array([30, 40, 50, 35, 45])))
    b.train_round(_plan([8, 8, 8, 8, 8], 0))  # a non-zero global, so round 1 starts from loaded factors
    mask = np.ones((n, 6), bool)
    mask[2, 3:] = False  # vehicle 2 trains block 0 only (config columns 3-5 map to the tiny model's block 1)
    plan = _plan([1, 2, 8, 4, 2], 1, fraction=[1.0, 1.0, 1.0, 0.5, 0.0], layer_mask=mask)
    specs = _specs(b, plan)
    seq = {s[0]: b._train_vehicle(*s, 1) for s in specs}
    bat = b._train_batched(specs, 1)
    _assert_same(seq, bat)
    if regime.get("head_lr_scale") == 0.0:  # a frozen head leaves every vehicle with its task's global head
        for v, k, *_ in specs:
            for name, w in b.state[k].head.items():
                np.testing.assert_array_equal(bat[v]["head"][name], w)
    # the FedRA-frozen block and the vehicle without steps kept their starting factors
    start = {s[0]: b._train_vehicle(*s[:3], 0, s[4], 1)["factors"] for s in specs}
    for layer in b.layers:
        frozen = layer.block == 1
        assert np.array_equal(bat[2]["factors"][layer.name][1], start[2][layer.name][1]) == frozen
        assert np.array_equal(bat[4]["factors"][layer.name][1], start[4][layer.name][1])


def test_groups_smaller_than_the_round_give_the_same_round() -> None:
    """engine_group_size only changes how many vehicles share a pass, never what they learn."""
    b = _backend(tasks=("sst2", "conll2003"))
    layout = FleetLayout(np.array([0, 1, 0, 1]), np.array([30, 40, 30, 40]))
    results = []
    for engine, size in (("sequential", 16), ("batched", 16), ("batched", 3)):
        b.config = b.config.replace(engine=engine, engine_group_size=size)
        b.reset(0, layout)
        rounds = [b.train_round(_plan([1, 4, 8, 2], r)) for r in range(2)]
        results.append((rounds, b.state))
    (ref_rounds, ref_state) = results[0]
    for rounds, state in results[1:]:
        for x, y in zip(ref_rounds, rounds, strict=True):
            np.testing.assert_allclose(y.vehicle_loss, x.vehicle_loss, rtol=1e-5)
            np.testing.assert_array_equal(y.vehicle_tokens, x.vehicle_tokens)
            np.testing.assert_allclose(y.vehicle_accuracy, x.vehicle_accuracy, atol=1e-9)
            np.testing.assert_allclose(y.task_accuracy, x.task_accuracy, atol=1e-9)
        for k, st in enumerate(state):
            for name, (fb, fa) in st.factors.items():
                gb, ga = ref_state[k].factors[name]
                np.testing.assert_allclose(fb @ fa, gb @ ga, atol=1e-5)


def test_batched_with_dropout_is_reproducible_from_the_seed() -> None:
    """With dropout on, the shared pass draws its masks from the episode seed: same seed, same round."""
    layout = FleetLayout(np.array([0, 0, 0]), np.array([40, 40, 40]))

    def run(seed: int, p: float = 0.1) -> list[np.ndarray]:
        b = _backend(tasks=("sst2",), engine="batched", lora_dropout=p, head_dropout=p, base_dropout=p)
        b.reset(seed, layout)
        res = [b.train_round(_plan([2, 4, 8], r)) for r in range(2)]
        return [x for r in res for x in (r.vehicle_loss, r.vehicle_accuracy, r.task_accuracy)]

    first = run(1)
    for x, y in zip(first, run(1), strict=True):
        np.testing.assert_array_equal(x, y)
    # dropout acts: the deterministic twin of the same round trains on other activations
    assert not np.allclose(run(1, p=0.0)[0], first[0])


def test_grouped_delta_matches_a_loop_over_groups() -> None:
    """The bmm path (equal groups) and the split path (unequal groups) both compute sum_g x_g A_g^T B_g^T s_g."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 6, generator=g)
    b = torch.randn(3, 5, 4, generator=g)
    a[0, 2:] = 0.0  # group 0 at rank 2, padded
    b[0, :, 2:] = 0.0
    scale = torch.tensor([2.0, 0.5, 1.0])
    for rows in ([2, 2, 2], [1, 3, 2]):
        x = torch.randn(sum(rows), 7, 6, generator=g)
        got = batched.grouped_delta(x, a, b, scale, rows)
        parts, start = [], 0
        for i, n in enumerate(rows):
            parts.append(x[start:start + n] @ a[i].T @ b[i].T * scale[i])
            start += n
        torch.testing.assert_close(got, torch.cat(parts))


def test_base_dropout_overrides_every_base_dropout_but_not_loras() -> None:
    b = _backend(tasks=("sst2",), base_dropout=0.25, lora_dropout=0.05)
    base_ps = {m.p for name, m in b.model.named_modules()
               if isinstance(m, torch.nn.Dropout) and "lora_dropout" not in name}
    lora_ps = {m.p for name, m in b.model.named_modules()
               if isinstance(m, torch.nn.Dropout) and "lora_dropout" in name}
    assert base_ps == {0.25} and lora_ps == {0.05}


@pytest.mark.parametrize("engine", ["sequential", "batched"])
def test_bf16_autocast_trains_on_the_cpu_too(engine: str) -> None:
    """precision="bf16" (meant for GPUs) also runs on the CPU: finite, seeded, and not the fp32 numbers."""
    layout = FleetLayout(np.array([0, 0, 0]), np.array([30, 40, 50]))
    losses = []
    for precision in ("bf16", "bf16", "fp32"):
        b = _backend(tasks=("sst2",), engine=engine, precision=precision)
        b.reset(0, layout)
        losses.append(b.train_round(_plan([1, 4, 8], 0)).vehicle_loss)
    assert np.isfinite(losses[0]).all()
    np.testing.assert_array_equal(losses[0], losses[1])
    assert not np.array_equal(losses[0], losses[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_batched_matches_sequential_on_cuda_and_bf16_runs() -> None:  # pragma: no cover - GPU machines
    tasks = ("sst2", "conll2003", "copa")
    b = _backend(tasks=tasks, device="cuda")
    b.reset(0, FleetLayout(np.arange(4) % 3, np.array([30, 40, 50, 35])))
    specs = _specs(b, _plan([1, 2, 8, 4], 0))
    _assert_same({s[0]: b._train_vehicle(*s, 0) for s in specs}, b._train_batched(specs, 0), atol=1e-4)
    bf = _backend(tasks=tasks, device="cuda", precision="bf16", engine="batched")
    bf.reset(0, FleetLayout(np.arange(4) % 3, np.array([30, 40, 50, 35])))
    res = bf.train_round(_plan([1, 2, 8, 4], 0))
    assert np.isfinite(res.vehicle_loss).all() and np.isfinite(res.task_accuracy).all()


def test_passes_by_width_bounds_the_padding_of_a_pass() -> None:
    """Narrowest first; a batch joins a pass only while at most ``slack`` times its narrowest; every index once."""
    widths = [64, 12, 14, 30, 15, 64, 37]
    passes = batched.passes_by_width(widths, slack=1.25)
    assert passes == [[1, 2, 4], [3, 6], [0, 5]]
    assert sorted(g for p in passes for g in p) == list(range(len(widths)))
    for p in passes:
        assert max(widths[g] for g in p) <= 1.25 * min(widths[g] for g in p)
    assert batched.passes_by_width([8, 8, 9], slack=1.0) == [[0, 1], [2]]
    assert batched.passes_by_width([]) == []
    with pytest.raises(ValueError, match="slack"):
        batched.passes_by_width([8], slack=0.5)
