"""RealBackend: actual peft LoRA training and evaluation of every federated round (torch on CPU).

One frozen base encoder with one max-rank LoRA adapter is shared by all vehicles and tasks (see
``lora.py``); each task has a small head. Per task the backend keeps the global update as factors
``(B, A)`` in "prefix order" (a vehicle at rank r receives ``B[:, :r], A[:r]``; for ``svd`` and
``stacking`` that prefix IS the top-r SVD truncation) and the global head. A round:

1. every training vehicle loads its task's global truncated to its rank, trains
   ``round(local_steps * train_fraction)`` AdamW steps on its shard with only the transformer blocks
   in ``layer_mask[v]`` trainable (FedRA), is evaluated on its local validation split, and reads its
   factors and head back;
2. per (RSU, task) the uploads are aggregated with ``config.learning.aggregation`` (per layer, over
   the uploaders that trained that layer); the cloud merges the RSU models per task weighted by data;
3. each task's global model is evaluated on a fixed dev subset (full dev in the episode's last round).

Everything is computed into temporaries and committed at the end: an exception leaves the backend
as it was before the round.

Engines (``LearningConfig.engine``) differ only in where step 1 runs: ``sequential`` one vehicle after
another, ``batched`` groups of vehicles in shared passes (``batched.py``), ``ray`` on Ray actors that
each run one of the two (``ray_engine.py``); all of them call ``train_local``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from iov_env.config import IoVConfig
from iov_env.learning import aggregation as agg
from iov_env.learning import batched, lora
from iov_env.learning.backend import FleetLayout, RoundPlan, RoundResult
from iov_env.learning.tasks import (
    TASK_SPECS,
    TaskData,
    TokenizedSplit,
    VehicleShard,
    dev_subset,
    load_task,
    partition,
    tokenize_task,
)
from iov_env.threads import apply_torch_threads

EVAL_BATCH_SIZE = 64
WEIGHT_DECAY = 0.0  # keeps padded (zero) adapter slots exactly zero and matches peft's LoRA recipes


@dataclass
class _TaskState:
    """Global model of one task: prefix-ordered factors per adapted layer, and the head."""

    factors: dict[str, agg.Factors]
    head: dict[str, np.ndarray]


@dataclass
class _Upload:
    """What one vehicle sends to its RSU."""

    vehicle: int
    task: int
    rsu: int
    size: float
    blocks: set[int]
    factors: dict[str, agg.Factors]
    head: dict[str, np.ndarray]


class RealBackend:
    """LearningBackend with real LoRA fine-tuning (SST-2, CoNLL-2003, COPA) on a shared frozen base."""

    def __init__(self, config: IoVConfig, data_dir: str | None = None) -> None:
        self.config = config
        ln = config.learning
        self.torch_threads = apply_torch_threads(ln.torch_threads)  # 0 keeps the user's own setting
        t0 = time.perf_counter()
        base, self.tokenizer, self.model_source = lora.load_base_model(ln.model_name_or_path)
        lora.set_base_dropout(base, ln.base_dropout)
        self.hidden_dim = int(base.config.hidden_size)
        self.num_layers = int(base.config.num_hidden_layers)
        self.max_rank = int(ln.rank_set[-1])
        if self.max_rank > self.hidden_dim:
            raise ValueError(f"rank_set's largest rank {self.max_rank} exceeds the model's hidden size {self.hidden_dim}")
        self.device = _torch_device(ln.device)
        self.model = lora.attach_lora(base, self.max_rank, ln.lora_alpha, ln.lora_dropout, ln.target_modules)
        self.model.to(self.device)
        self.layers = lora.adapted_layers(self.model)
        self.grouped = batched.GroupedLoRA(self.model, self.layers, ln.lora_dropout)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.tasks: list[TaskData] = [load_task(t, data_dir) for t in config.tasks.tasks]
        self.tokenized: list[tuple[TokenizedSplit, TokenizedSplit]] = [
            tokenize_task(td, self.tokenizer, ln.max_seq_len) for td in self.tasks
        ]
        self.heads = [lora.TaskHead(td.spec, self.hidden_dim, ln.head_dropout).to(self.device) for td in self.tasks]
        self.tokens_per_sample = np.array([tr.tokens_per_example().mean() for tr, _ in self.tokenized])
        self.dev_idx = [dev_subset(len(dv), ln.eval_subset_size) for _, dv in self.tokenized]
        self._ray: Any = None
        if ln.engine == "ray":  # after the driver's own setup: a bad model or data path fails before Ray starts
            from iov_env.learning.ray_engine import RayPool

            self._ray = RayPool(config, data_dir, self.data_fingerprint())
        self.setup_s = time.perf_counter() - t0
        self.layout: FleetLayout | None = None
        self.seed = 0
        self.round_wall_s: list[float] = []
        self.last_timing_s: dict[str, float] = {}  # last round's phases: train, validate, aggregate, evaluate
        self._validate_s = 0.0

    # -- protocol -----------------------------------------------------------------------------
    def reset(self, seed: int, layout: FleetLayout) -> None:
        """New episode: zero global adapters, fresh heads, Dirichlet partitions, all from ``seed``."""
        n = len(layout.vehicle_task)
        if len(layout.vehicle_shard_size) != n:
            raise ValueError("FleetLayout.vehicle_task and vehicle_shard_size differ in length")
        k = len(self.tasks)
        if n and (layout.vehicle_task.min() < 0 or layout.vehicle_task.max() >= k):
            raise ValueError(f"vehicle_task must index config.tasks.tasks (0..{k - 1})")
        self.seed = int(seed)
        self.layout = layout
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)
        ss = np.random.SeedSequence(self.seed)
        part_rng = np.random.default_rng(ss.spawn(1)[0])
        self.shards: list[VehicleShard] = partition(
            [td.partition_labels() for td in self.tasks], layout.vehicle_task, layout.vehicle_shard_size,
            self.config.tasks.dirichlet_alpha, self.config.tasks.local_val_fraction, part_rng,
        )
        self.state: list[_TaskState] = []
        for head in self.heads:
            for p in head.parameters():  # fresh head from the episode seed
                if p.dim() > 1:
                    torch.nn.init.normal_(p, std=0.02)
                else:
                    torch.nn.init.zeros_(p)
            empty = {
                layer.name: (np.zeros((layer.module.lora_B[lora.ADAPTER].weight.shape[0], 0), np.float32),
                             np.zeros((0, layer.module.lora_A[lora.ADAPTER].weight.shape[1]), np.float32))
                for layer in self.layers
            }
            self.state.append(_TaskState(empty, lora.head_state(head)))
        self.last_task_metrics: list[dict[str, float]] = [{} for _ in self.tasks]
        # before any training a vehicle holds the untrained model: its head's chance-level metric
        self.vehicle_accuracy = np.array([self.tasks[int(t)].spec.chance for t in layout.vehicle_task], float)
        self.round_wall_s = []
        if self._ray is not None:
            self._ray.reset(self.seed, layout)

    def data_fingerprint(self) -> dict[str, Any]:
        """What a Ray actor must hold to train as this process does: model dims, task data sizes and label digests.

        Sources are compared by kind (``local``, ``hub``, ``synthetic``), not by path: a node's data folder
        may sit elsewhere, but must hold the same examples.
        """
        import hashlib

        tasks = []
        for td, (train, dev) in zip(self.tasks, self.tokenized, strict=True):
            digest = hashlib.sha1(np.ascontiguousarray(td.partition_labels()).tobytes()).hexdigest()[:12]
            tasks.append((td.spec.name, td.source.split(":", 1)[0], len(train), len(dev), digest))
        return {"hidden": self.hidden_dim, "layers": self.num_layers, "adapted": len(self.layers),
                "vocab": len(self.tokenizer), "tasks": tasks}

    def expected_tokens(self, task_index: np.ndarray) -> np.ndarray:
        """Tokens of one full local round: steps x batch x mean non-pad tokens per example of the task."""
        ln = self.config.learning
        return ln.local_steps * ln.batch_size * self.tokens_per_sample[np.asarray(task_index, dtype=int)]

    def train_round(self, plan: RoundPlan) -> RoundResult:
        """Train, aggregate (RSU then cloud), evaluate; commit only when all of it succeeded."""
        if self.layout is None:
            raise RuntimeError("reset(seed, layout) before train_round()")
        t0 = time.perf_counter()
        layout = self.layout
        n = len(layout.vehicle_task)
        self._check_plan(plan, n)
        ln = self.config.learning
        veh_acc = self.vehicle_accuracy.copy()
        veh_tokens = np.zeros(n)
        veh_loss = np.full(n, np.nan)
        uploads: list[_Upload] = []
        jobs = []
        self._validate_s = 0.0  # local validation inside the training phase, timed apart
        for v in np.flatnonzero(plan.training):
            v = int(v)
            steps = max(0, int(round(ln.local_steps * float(plan.train_fraction[v]))))
            blocks = self.layer_blocks(plan.layer_mask[v]) if plan.layer_mask.size else set(range(self.num_layers))
            jobs.append((v, int(layout.vehicle_task[v]), int(plan.rank[v]), steps, blocks))
        remote_timing: dict[str, float] = {}
        if ln.engine == "ray":
            # share by work: a training step is about three forward passes of its batch, validation one of its split
            tps = self.tokens_per_sample
            costs = [tps[k] * (3.0 * steps * ln.batch_size + len(self.shards[v].val_idx)) for v, k, _, steps, _ in jobs]
            outs, remote_timing = self._ray_pool().train(self.state, jobs, plan.round_index, costs)
            self._validate_s = remote_timing.pop("validate")
        else:
            outs = self.train_local(jobs, plan.round_index)
        for v, k, _, steps, blocks in jobs:
            out = outs[v]
            veh_acc[v], veh_tokens[v], veh_loss[v] = out["metric"], out["tokens"], out["loss"]
            if plan.uploads[v] and int(plan.vehicle_rsu[v]) >= 0:
                uploads.append(_Upload(v, k, int(plan.vehicle_rsu[v]), float(len(self.shards[v].train_idx)),
                                       blocks if steps > 0 else set(range(self.num_layers)),
                                       out["factors"], out["head"]))
        t_train = time.perf_counter()
        new_state = [self._aggregate_task(k, [u for u in uploads if u.task == k]) for k in range(len(self.tasks))]
        t_agg = time.perf_counter()
        final = plan.round_index >= self.config.episode.rounds - 1
        task_metrics = [self._evaluate_global(k, st, final) if st is not self.state[k] or not self._subset_metrics(k, final)
                        else self.last_task_metrics[k] for k, st in enumerate(new_state)]
        t_eval = time.perf_counter()

        # commit
        self.state = new_state
        self.vehicle_accuracy = veh_acc
        self.last_task_metrics = task_metrics
        wall = time.perf_counter() - t0
        self.round_wall_s.append(wall)
        if ln.engine == "ray":
            # "train" is the whole fan-out (broadcast + remote, the actors' validation inside it, in parallel), so
            # train + aggregate + evaluate is the wall as in one process; "validate" sums the actors' validation
            self.last_timing_s = {"train": t_train - t0, **remote_timing, "aggregate": t_agg - t_train,
                                  "evaluate": t_eval - t_agg, "validate": self._validate_s}
        else:
            self.last_timing_s = {"train": t_train - t0 - self._validate_s, "validate": self._validate_s,
                                  "aggregate": t_agg - t_train, "evaluate": t_eval - t_agg}
        task_acc = np.array([m[td.spec.metric] for m, td in zip(task_metrics, self.tasks, strict=True)])
        metrics = {td.spec.name: dict(m, metric=m[td.spec.metric], round_wall_s=wall)
                   for m, td in zip(task_metrics, self.tasks, strict=True)}
        return RoundResult(veh_acc.copy(), veh_tokens, veh_loss, task_acc, metrics)

    def probe_local_round(self, vehicle: int, rank: int, round_index: int, dev_examples: int = 0,
                          train_fraction: float = 1.0) -> dict[str, float]:
        """A counterfactual local round: what ``vehicle`` would report after training at ``rank`` now.

        The vehicle loads its task's current global model truncated to ``rank`` and trains the local
        round it would train in round ``round_index`` (same batches and dropout seeds as ``train_round``'s
        sequential engine), then its adapter is scored on its local validation split, the reward's input,
        and, when ``dev_examples > 0``, on a fixed subset of the task's dev split (the same adapter, a
        de-noised view of it). Nothing is committed: the global models, heads and vehicle metrics stay as
        they were, so every rank can be probed from one state.

        Returns ``local_metric`` and ``local_n`` (examples), ``dev_metric`` and ``dev_n`` (nan/0 without
        ``dev_examples``), ``tokens`` and ``loss``.
        """
        if self.layout is None:
            raise RuntimeError("reset(seed, layout) before probe_local_round()")
        n = len(self.layout.vehicle_task)
        if not 0 <= vehicle < n:
            raise ValueError(f"vehicle={vehicle}; allowed: 0..{n - 1}")
        if not 1 <= rank <= self.max_rank:
            raise ValueError(f"rank={rank}; allowed: 1..{self.max_rank} (rank_set's largest)")
        if dev_examples < 0:
            raise ValueError(f"dev_examples={dev_examples}; allowed: >= 0")
        k = int(self.layout.vehicle_task[vehicle])
        steps = max(0, int(round(self.config.learning.local_steps * float(train_fraction))))
        saved_validate_s = self._validate_s
        out = self._train_vehicle(vehicle, k, int(rank), steps, set(range(self.num_layers)), int(round_index))
        self._validate_s = saved_validate_s
        result = {"local_metric": float(out["metric"]), "local_n": float(len(self.shards[vehicle].val_idx)),
                  "dev_metric": math.nan, "dev_n": 0.0, "tokens": float(out["tokens"]), "loss": float(out["loss"])}
        if dev_examples:
            # the model still holds the vehicle's trained adapter and head: score that same local model
            _, dev = self.tokenized[k]
            idx = dev_subset(len(dev), int(dev_examples))
            m = lora.evaluate(self.model, self.heads[k], dev, idx, self.pad_id, EVAL_BATCH_SIZE,
                              self.config.learning.precision)
            result["dev_metric"], result["dev_n"] = float(m[self.tasks[k].spec.metric]), float(m["n"])
        return result

    def describe(self) -> dict[str, Any]:
        """Provenance: fidelity, model (and dims vs the config's cost dims), data source per task."""
        ln = self.config.learning
        out: dict[str, Any] = {
            "fidelity": "real",
            "model": ln.model_name_or_path,
            "model_source": self.model_source,
            "device": str(self.device),
            "model_hidden_dim": self.hidden_dim,
            "model_num_layers": self.num_layers,
            "adapter": f"one shared peft LoRA adapter at rank {self.max_rank} on {list(ln.target_modules)} "
                       f"({len(self.layers)} layers), {ln.lora_scaling} scaling, alpha {ln.lora_alpha}; "
                       "vehicles at rank r use its first r components",
            "aggregation": ln.aggregation,
            "tasks": {td.spec.name: td.source for td in self.tasks},
            "metrics": {td.spec.name: td.spec.metric for td in self.tasks},
            "data_notes": {td.spec.name: list(td.notes) for td in self.tasks if td.notes},
            "head_lr_scale": ln.head_lr_scale,
            "engine": _describe_engine(ln.engine, ln.engine_group_size),
            "precision": ln.precision,
            "torch_threads": self.torch_threads,
            "setup_s": round(self.setup_s, 2),
        }
        if self._ray is not None:
            out["engine"] = (f"ray ({self._ray.num_actors} actors at {self._ray.address}, each "
                             f"{_describe_engine(ln.ray_engine, ln.engine_group_size)})")
        notes = []
        if self.hidden_dim != ln.model_hidden_dim or self.num_layers != ln.model_num_layers:
            notes.append(
                f"model dims (hidden {self.hidden_dim}, {self.num_layers} layers) differ from the config's "
                f"(hidden {ln.model_hidden_dim}, {ln.model_num_layers} layers): simulated costs use the config's dims"
            )
        if any(td.source.startswith("synthetic") for td in self.tasks):
            notes.append("some tasks use SYNTHETIC stand-in data (see 'tasks')")
        out["notes"] = notes
        return out

    def close(self) -> None:
        """Drop the model and data references; stop the Ray actors (and a Ray this backend started)."""
        self.layout = None
        self.state = []
        if self._ray is not None:
            self._ray.close()
            self._ray = None

    # -- local training -----------------------------------------------------------------------
    def train_local(self, jobs: list[tuple[int, int, int, int, set[int]]],
                    round_index: int) -> dict[int, dict[str, Any]]:
        """The local rounds of ``jobs`` ``(vehicle, task, rank, steps, blocks)`` from this backend's task globals.

        The one function every engine trains vehicles with: ``sequential`` and ``batched`` call it in this
        process, ``ray`` in its actors (``ray_engine.py``), each actor on its share of the round's jobs. A
        vehicle's result depends only on the episode seed, the round, the vehicle and the globals, never on
        which vehicles were trained before it or where. Returns per vehicle ``metric``, ``tokens``, ``loss``,
        ``factors`` and ``head``.
        """
        engine = self.config.learning.engine  # in a Ray actor: the driver's ray_engine (RayPool's actor config)
        if engine == "batched":
            return self._train_batched(jobs, round_index)
        if engine == "sequential":
            return {j[0]: self._train_vehicle(*j, round_index) for j in jobs}
        raise ValueError(f"engine={engine!r} trains no vehicles in this process; allowed: 'sequential', 'batched'")

    def _ray_pool(self) -> Any:
        """The Ray actors of ``engine="ray"`` (started with the backend; see ``ray_engine.RayPool``)."""
        if self._ray is None:
            raise RuntimeError("engine='ray' but the Ray actors are gone: the backend was closed")
        return self._ray

    # -- one vehicle --------------------------------------------------------------------------
    def _vehicle_seed(self, round_index: int, v: int) -> np.random.SeedSequence:
        return np.random.SeedSequence([self.seed, 7919, int(round_index), int(v)])

    def local_batches(self, v: int, round_index: int, steps: int) -> tuple[int, list[np.ndarray]]:
        """(torch seed, example indices of each local step) of one vehicle's round; both engines use these."""
        ss = self._vehicle_seed(round_index, v)
        torch_seed, np_seed = ss.generate_state(2)
        rng = np.random.default_rng(int(np_seed))
        train_idx = self.shards[v].train_idx
        bs = self.config.learning.batch_size
        order, pos = rng.permutation(train_idx), 0
        batches = []
        for _ in range(steps):
            if pos + bs > len(order):  # a new epoch over the shard
                order, pos = rng.permutation(train_idx), 0
            batches.append(order[pos:pos + bs])
            pos += bs
        return int(torch_seed), batches

    def _train_vehicle(self, v: int, k: int, rank: int, steps: int, blocks: set[int],
                       round_index: int) -> dict[str, Any]:
        """Sequential engine: load the rank-truncated global, train ``steps`` steps, evaluate locally, read back."""
        ln = self.config.learning
        torch_seed, batches = self.local_batches(v, round_index, steps)
        torch.manual_seed(torch_seed)  # dropout: same seed -> identical round
        gen = torch.Generator().manual_seed(torch_seed)
        head = self.heads[k]
        state = self.state[k]
        lora.load_adapter(self.layers, state.factors, rank, ln.lora_alpha, gen, scaling_mode=ln.lora_scaling)
        lora.load_head(head, state.head)
        train_split, _ = self.tokenized[k]
        params = lora.set_trainable(self.layers, blocks)
        groups = [{"params": params, "lr": ln.learning_rate}]
        head_trains = ln.head_lr_scale > 0
        for p in head.parameters():
            p.requires_grad_(head_trains)
        if head_trains:
            groups.append({"params": list(head.parameters()), "lr": ln.learning_rate * ln.head_lr_scale})
        opt = torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)
        self.model.train()
        head.train()
        tokens = 0
        losses = []
        for idx in batches:
            cpu_batch = lora.collate(train_split, idx, self.pad_id)
            tokens += cpu_batch.tokens  # counted on the host: no device sync per step
            batch = cpu_batch.to(self.device)
            with lora.autocast(self.device, ln.precision):
                loss = lora.loss_fn(lora.forward(self.model, head, batch), batch.labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        t_val = time.perf_counter()
        local = lora.evaluate(self.model, head, train_split, self.shards[v].val_idx, self.pad_id, EVAL_BATCH_SIZE,
                              ln.precision)
        self._validate_s += time.perf_counter() - t_val
        for p in params:
            p.requires_grad_(False)
        return {
            "metric": local[head.spec.metric],
            "tokens": float(tokens),
            "loss": _mean_loss(losses),
            "factors": lora.read_adapter(self.layers, rank, ln.lora_alpha, ln.lora_scaling),
            "head": lora.head_state(head),
        }

    def _train_batched(self, specs: list[tuple[int, int, int, int, set[int]]],
                       round_index: int) -> dict[int, dict[str, Any]]:
        """Batched engine: groups of vehicles share each forward/backward pass (see ``batched.py``)."""
        ln = self.config.learning
        out: dict[int, dict[str, Any]] = {}
        size = ln.engine_group_size
        for first in range(0, len(specs), size):
            group = specs[first:first + size]
            jobs = []
            for v, k, rank, steps, blocks in group:
                torch_seed, batches_idx = self.local_batches(v, round_index, steps)
                gen = torch.Generator().manual_seed(torch_seed)
                scaling = lora.lora_scaling(ln.lora_alpha, rank, ln.lora_scaling)
                start = {layer.name: lora.initial_factors(self.state[k].factors[layer.name], rank, scaling, gen)
                         for layer in self.layers}
                jobs.append(batched.VehicleJob(
                    v, rank, scaling, blocks, self.tokenized[k][0], batches_idx, self.shards[v].val_idx,
                    batched.head_copy(self.heads[k], self.state[k].head), start))
            # one dropout stream per group, from the episode seed, the round and the group's first vehicle
            torch.manual_seed(int(np.random.SeedSequence([self.seed, 7919, int(round_index), 1, group[0][0]])
                                  .generate_state(1)[0]))
            batched.prepare(jobs, self.layers, self.device)
            batched.train_group(jobs, self.model, self.grouped, self.pad_id, ln.learning_rate, ln.head_lr_scale,
                                WEIGHT_DECAY, self.device, ln.precision)
            t_val = time.perf_counter()
            local = batched.evaluate_group(jobs, self.model, self.grouped, self.pad_id, EVAL_BATCH_SIZE,
                                           self.device, ln.precision)
            self._validate_s += time.perf_counter() - t_val
            for j, m in zip(jobs, local, strict=True):
                out[j.vehicle] = {
                    "metric": m[j.head.spec.metric],
                    "tokens": float(j.tokens),
                    "loss": _mean_loss(j.losses),
                    "factors": j.factors(self.layers),
                    "head": lora.head_state(j.head),
                }
        return out

    # -- aggregation --------------------------------------------------------------------------
    def _aggregate_task(self, k: int, ups: list[_Upload]) -> _TaskState:
        """RSU-level aggregation per layer, then the cloud merges RSUs weighted by data."""
        old = self.state[k]
        if not ups:
            return old
        method = self.config.learning.aggregation
        factors: dict[str, agg.Factors] = {}
        for layer in self.layers:
            trained = [u for u in ups if layer.block in u.blocks]
            if not trained:  # FedRA: nobody trained this layer this round
                factors[layer.name] = old.factors[layer.name]
            elif method in ("svd", "stacking"):
                # the data-weighted sum of B_i A_i over RSUs of RSU sums IS the flat weighted sum:
                # aggregate once (one SVD per layer instead of one per RSU plus one at the cloud)
                factors[layer.name] = agg.aggregate(method, [u.factors[layer.name] for u in trained],
                                                    [u.size for u in trained])
            else:  # zero_pad / fedavg: per RSU, then the cloud FedAvg-s the (padded) RSU models by data
                per_rsu: list[agg.Factors] = []
                rsu_sizes: list[float] = []
                for rsu in sorted({u.rsu for u in trained}):
                    mine = [u for u in trained if u.rsu == rsu]
                    per_rsu.append(agg.aggregate(method, [u.factors[layer.name] for u in mine],
                                                 [u.size for u in mine]))
                    rsu_sizes.append(sum(u.size for u in mine))
                width = max(b.shape[1] for b, _ in per_rsu)
                factors[layer.name] = (per_rsu[0] if len(per_rsu) == 1 else agg.zero_pad(
                    [agg.truncate(f, width) for f in per_rsu], rsu_sizes, norm_weighted=False))
        head = {name: agg.weighted_mean([u.head[name] for u in ups], [u.size for u in ups]) for name in old.head}
        return _TaskState(factors, head)

    # -- evaluation ---------------------------------------------------------------------------
    def _evaluate_global(self, k: int, st: _TaskState, final: bool) -> dict[str, float]:
        """Global model of task k (full update merged into the base, adapter off) on the dev subset."""
        _, dev = self.tokenized[k]
        idx = np.arange(len(dev)) if final else self.dev_idx[k]
        head = self.heads[k]
        lora.load_head(head, st.head)
        deltas = {name: b @ a for name, (b, a) in st.factors.items()}
        with lora.merged_deltas(self.model, self.layers, deltas):
            return lora.evaluate(self.model, head, dev, idx, self.pad_id, EVAL_BATCH_SIZE, self.config.learning.precision)

    def _subset_metrics(self, k: int, final: bool) -> bool:
        """Whether task k's last metrics are of its dev subset, so an unchanged global can reuse them."""
        last = self.last_task_metrics[k]
        return not final and bool(last) and last.get("n") == float(len(self.dev_idx[k]))

    # -- helpers ------------------------------------------------------------------------------
    def layer_blocks(self, mask_row: np.ndarray) -> set[int]:
        """Map a config-sized layer mask onto the model's blocks (proportionally when sizes differ)."""
        cols = len(mask_row)
        return {i for i in range(self.num_layers) if bool(mask_row[min(cols - 1, i * cols // self.num_layers)])}

    def _check_plan(self, plan: RoundPlan, n: int) -> None:
        for name in ("rank", "training", "uploads", "train_fraction", "vehicle_rsu"):
            arr = np.asarray(getattr(plan, name))
            if arr.shape != (n,):
                raise ValueError(f"RoundPlan.{name} has shape {arr.shape}; expected ({n},)")
        if plan.layer_mask.size and plan.layer_mask.shape[0] != n:
            raise ValueError(f"RoundPlan.layer_mask has shape {plan.layer_mask.shape}; expected ({n}, L)")
        bad = [int(r) for r in plan.rank[plan.training] if int(r) < 1 or int(r) > self.max_rank]
        if bad:
            raise ValueError(f"ranks {sorted(set(bad))} outside [1, {self.max_rank}] (rank_set's largest)")
        if self.config.learning.aggregation == "fedavg":
            for k, td in enumerate(self.tasks):
                sel = plan.training & plan.uploads & (self.layout.vehicle_task == k)
                ranks = sorted({int(r) for r in plan.rank[sel]})
                if len(ranks) > 1:
                    raise ValueError(
                        f"aggregation='fedavg' needs equal LoRA ranks, task {td.spec.name!r} got ranks {ranks}; "
                        "use 'svd', 'zero_pad' or 'stacking' for heterogeneous ranks"
                    )


def _describe_engine(engine: str, group_size: int) -> str:
    return engine if engine == "sequential" else f"batched (up to {group_size} vehicles a pass)"


def _mean_loss(losses: list[torch.Tensor]) -> float:
    """Mean of the per-step losses (one device-to-host transfer for the whole round); nan without steps."""
    if not losses:
        return math.nan
    return float(np.mean(torch.stack(losses).float().cpu().numpy().astype(np.float64)))


def _torch_device(name: str) -> torch.device:
    """The configured device, or a clear error when this machine lacks it."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} but torch sees no CUDA GPU here (torch {torch.__version__}); use device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device={name!r} but the MPS backend is not available here; use device='cpu'")
    return dev


__all__ = ["TASK_SPECS", "RealBackend"]
