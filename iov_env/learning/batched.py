"""Batched multi-vehicle LoRA training: the round's vehicles share every forward and backward pass.

``engine="batched"`` trains a group of vehicles (``engine_group_size`` at most) together: each local step
concatenates the vehicles' batches of similar width (``passes_by_width``) into one batch, runs the frozen
base once per such pass (one backward for the step), and adds each vehicle's
own LoRA update to its own rows through forward hooks on the adapted layers (peft's adapter is
switched off meanwhile). The per-vehicle factors of one layer are stacked, zero-padded to the
group's largest rank, and applied with two ``torch.bmm`` when every vehicle contributes the same
number of rows, else with one matmul pair per vehicle. Padded slots are constants, not parameters,
so they stay exactly zero.

Why it is the same training as ``engine="sequential"``:

- every vehicle owns leaf tensors of exactly its rank, initialised by ``lora.initial_factors`` from
  the same generator draws, parameterised as in peft (``B' (A' x) * scaling``);
- the loss is the sum of the vehicles' own mean losses, so each vehicle's gradient is the gradient of
  its own loss (the base is frozen; nothing trainable is shared);
- one ``torch.optim.AdamW`` holds every vehicle's factors and head in its own parameter groups with
  per-parameter state (moments and step count); a vehicle with no step left, or a layer FedRA
  froze, has no gradient and is skipped, exactly as if it were not in the optimizer;
- each vehicle's rows are sliced back to its own padded width before its head; attention masks
  make the extra padding invisible to real tokens.

Dropout is the one difference: a shared pass draws one mask for all rows, so with dropout on the
two engines train on different (equally distributed) masks. With every dropout at 0
(``lora_dropout``, ``head_dropout``, ``base_dropout``) the adapters agree to float rounding
(``tests/learning/test_batched_engine.py``: within 1e-5 after several AdamW steps with mixed ranks).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from iov_env.learning import lora
from iov_env.learning.aggregation import Factors
from iov_env.learning.tasks import TokenizedSplit

__all__ = ["GroupedLoRA", "VehicleJob", "evaluate_group", "grouped_delta", "passes_by_width", "train_group"]


@dataclass
class VehicleJob:
    """One vehicle's local round: where it starts, what it trains on, and (after training) what it holds."""

    vehicle: int
    rank: int
    scaling: float
    blocks: set[int]
    split: TokenizedSplit
    batches: list[np.ndarray]  # example indices of each local step
    val_idx: np.ndarray
    head: lora.TaskHead  # the vehicle's own copy, loaded with the task's global head
    start: dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (B / sqrt(s), A / sqrt(s)), exact rank
    a: list[torch.Tensor] = field(default_factory=list)  # per adapted layer, (rank, d_in)
    b: list[torch.Tensor] = field(default_factory=list)  # per adapted layer, (d_out, rank)
    losses: list[torch.Tensor] = field(default_factory=list)  # per step, detached (read once at the end)
    tokens: int = 0

    def factors(self, layers: Sequence[lora.AdaptedLayer]) -> dict[str, Factors]:
        """The trained factors with the scaling folded in (``B @ A`` is the update), as numpy."""
        root = math.sqrt(self.scaling)
        return {layer.name: ((bt.detach() * root).cpu().numpy().astype(np.float32),
                             (at.detach() * root).cpu().numpy().astype(np.float32))
                for layer, at, bt in zip(layers, self.a, self.b, strict=True)}


def grouped_delta(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor,
                  rows: Sequence[int]) -> torch.Tensor:
    """Each row group's LoRA update ``(x_g A_g^T) B_g^T s_g``; ``x`` holds the groups' rows in order.

    ``a``: (G, r, d_in), ``b``: (G, d_out, r), ``scale``: (G,), ``rows``: rows of ``x``'s first dim per group.
    """
    lead = x.shape[:-1]
    if len(set(rows)) == 1:  # one bmm pair over (G, rows*tokens, d)
        xg = x.reshape(len(rows), -1, x.shape[-1])
        h = torch.bmm(xg, a.transpose(1, 2).to(xg.dtype))
        y = torch.bmm(h, b.transpose(1, 2).to(h.dtype)) * scale.view(-1, 1, 1).to(h.dtype)
        return y.reshape(*lead, b.shape[1])
    parts = [(p @ a[g].T.to(p.dtype)) @ b[g].T.to(p.dtype) * scale[g].to(p.dtype)
             for g, p in enumerate(torch.split(x, list(rows)))]
    return torch.cat(parts)


class GroupedLoRA:
    """Forward hooks that add each row group's own LoRA update to every adapted layer's output."""

    def __init__(self, model: nn.Module, layers: Sequence[lora.AdaptedLayer], dropout: float) -> None:
        self.model, self.layers, self.dropout = model, list(layers), float(dropout)
        self._stacks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._scale: torch.Tensor | None = None
        self._rows: list[int] = []

    def set_groups(self, jobs: Sequence[VehicleJob], rows: Sequence[int], device: torch.device) -> None:
        """The vehicles whose rows the next forward holds, in order, and each one's number of rows."""
        r_pad = max(j.rank for j in jobs)

        def pad_a(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[0] == r_pad else F.pad(t, (0, 0, 0, r_pad - t.shape[0]))

        def pad_b(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[1] == r_pad else F.pad(t, (0, r_pad - t.shape[1]))

        self._stacks = [(torch.stack([pad_a(j.a[i]) for j in jobs]), torch.stack([pad_b(j.b[i]) for j in jobs]))
                        for i in range(len(self.layers))]
        self._scale = torch.tensor([j.scaling for j in jobs], dtype=torch.float32, device=device)
        self._rows = list(rows)

    def _hook(self, index: int) -> Any:
        def add_update(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            x = args[0]
            if self.dropout > 0:
                x = F.dropout(x, self.dropout, module.training)
            a, b = self._stacks[index]
            return output + grouped_delta(x, a, b, self._scale, self._rows).to(output.dtype)
        return add_update

    @contextlib.contextmanager
    def active(self) -> Iterator[GroupedLoRA]:
        """peft's own adapter off, the grouped updates on (for the duration of the block)."""
        handles = []
        with self.model.disable_adapter():
            try:
                for i, layer in enumerate(self.layers):
                    handles.append(layer.module.register_forward_hook(self._hook(i)))
                yield self
            finally:
                for h in handles:
                    h.remove()
                self._stacks = []


def prepare(jobs: Sequence[VehicleJob], layers: Sequence[lora.AdaptedLayer], device: torch.device) -> None:
    """Create every vehicle's leaf factors (trainable only in its FedRA blocks) from its start tensors."""
    for j in jobs:
        j.a, j.b = [], []
        for layer in layers:
            b0, a0 = j.start[layer.name]
            on = layer.block in j.blocks
            j.a.append(a0.to(device=device, dtype=torch.float32).clone().requires_grad_(on))
            j.b.append(b0.to(device=device, dtype=torch.float32).clone().requires_grad_(on))


PASS_WIDTH_SLACK = 1.25  # a shared pass pads every batch to its widest: at most 25% wider than its narrowest


def passes_by_width(widths: Sequence[int], slack: float = PASS_WIDTH_SLACK) -> list[list[int]]:
    """Indices of ``widths`` split into shared passes of similar width, narrowest first.

    One pass pads every vehicle's batch to the pass's widest; vehicles of a short-text task padded to
    a long one's width computed up to twice the tokens they hold (profiled in ``benchmarks/studies/perf_real.py
    --profile batched``). A batch joins the current pass while it is at most ``slack`` times as wide
    as the pass's narrowest, so padding costs at most ``1 - 1/slack`` of a pass.
    """
    if slack < 1.0:
        raise ValueError(f"slack={slack!r}; allowed: >= 1 (1 puts only equal widths in one pass)")
    passes: list[list[int]] = []
    for g in sorted(range(len(widths)), key=lambda i: (widths[i], i)):
        if passes and widths[g] <= slack * widths[passes[-1][0]]:
            passes[-1].append(g)
        else:
            passes.append([g])
    return passes


def _combined(batches: Sequence[lora.Batch], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The groups' batches stacked row-wise at the widest group's width."""
    width = max(bt.input_ids.shape[1] for bt in batches)

    def cat(name: str, value: int) -> torch.Tensor:
        return torch.cat([F.pad(getattr(bt, name), (0, width - bt.input_ids.shape[1]), value=value)
                          for bt in batches]).to(device)

    return {"input_ids": cat("input_ids", pad_id), "attention_mask": cat("attention_mask", 0),
            "token_type_ids": cat("token_type_ids", 0)}


def _per_group(hidden: torch.Tensor, batches: Sequence[lora.Batch]) -> Iterator[tuple[int, torch.Tensor]]:
    """Each group's slice of the hidden states, cut back to its own width."""
    start = 0
    for g, bt in enumerate(batches):
        n, w = bt.input_ids.shape
        yield g, hidden[start:start + n, :w]
        start += n


def _shared_logits(jobs: Sequence[VehicleJob], batches: Sequence[lora.Batch], model: nn.Module,
                   grouped: GroupedLoRA, pad_id: int, device: torch.device,
                   precision: str) -> Iterator[tuple[int, torch.Tensor]]:
    """Each batch's index and its own job's head logits, batches of similar width in one shared forward.

    ``batches[g]`` is ``jobs[g]``'s. The caller's work on a yielded pair runs inside the pass's autocast
    (so the training loss is computed there, as in the sequential engine), and under the caller's grad mode.
    """
    for sub in passes_by_width([bt.input_ids.shape[1] for bt in batches]):
        bts = [batches[g] for g in sub]
        grouped.set_groups([jobs[g] for g in sub], [bt.input_ids.shape[0] for bt in bts], device)
        with lora.autocast(device, precision):
            hidden = model(**_combined(bts, pad_id, device)).last_hidden_state
            for i, h in _per_group(hidden, bts):
                g = sub[i]
                yield g, jobs[g].head(h, batches[g].attention_mask.to(device))


def train_group(jobs: Sequence[VehicleJob], model: nn.Module, grouped: GroupedLoRA, pad_id: int,
                learning_rate: float, head_lr_scale: float, weight_decay: float, device: torch.device,
                precision: str) -> None:
    """Train every job's own adapter and head on its own batches, all vehicles in each shared pass."""
    groups: list[dict[str, Any]] = []
    for j in jobs:
        params = [t for t in (*j.a, *j.b) if t.requires_grad]
        if params:
            groups.append({"params": params, "lr": learning_rate})
        head_trains = head_lr_scale > 0
        for p in j.head.parameters():
            p.requires_grad_(head_trains)
        if head_trains:
            groups.append({"params": list(j.head.parameters()), "lr": learning_rate * head_lr_scale})
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay) if groups else None
    model.train()
    for j in jobs:
        j.head.train()
    steps = max((len(j.batches) for j in jobs), default=0)
    with grouped.active():
        for s in range(steps):
            act = [j for j in jobs if s < len(j.batches)]
            batches = [lora.collate(j.split, j.batches[s], pad_id) for j in act]
            losses: list[torch.Tensor] = [torch.empty(0)] * len(act)
            for g, logits in _shared_logits(act, batches, model, grouped, pad_id, device, precision):
                losses[g] = lora.loss_fn(logits, batches[g].labels.to(device))
            total = torch.stack([loss.float() for loss in losses]).sum()
            if opt is not None:
                opt.zero_grad(set_to_none=True)
                if total.requires_grad:
                    total.backward()
                    opt.step()
            for j, bt, loss in zip(act, batches, losses, strict=True):
                j.tokens += bt.tokens
                j.losses.append(loss.detach())
    for j in jobs:
        for t in (*j.a, *j.b):
            t.requires_grad_(False)


@torch.no_grad()
def evaluate_group(jobs: Sequence[VehicleJob], model: nn.Module, grouped: GroupedLoRA, pad_id: int,
                   batch_size: int, device: torch.device, precision: str) -> list[dict[str, float]]:
    """Each job's metrics on its own local validation split, every vehicle in each shared forward."""
    chunks = [lora.batches_by_length(j.split, np.asarray(j.val_idx), batch_size) for j in jobs]
    scorers = [lora.Scorer(j.head.spec, j.split) for j in jobs]
    was_training = model.training
    model.eval()
    for j in jobs:
        j.head.eval()
    try:
        with grouped.active():
            for i in range(max((len(c) for c in chunks), default=0)):
                act = [g for g in range(len(jobs)) if i < len(chunks[g])]
                batches = [lora.collate(jobs[g].split, chunks[g][i], pad_id) for g in act]
                for p, logits in _shared_logits([jobs[g] for g in act], batches, model, grouped, pad_id, device,
                                                precision):
                    g = act[p]
                    scorers[g].add(logits, batches[p].labels, chunks[g][i])
    finally:
        model.train(was_training)
    return [s.result() for s in scorers]


def head_copy(head: lora.TaskHead, state: dict[str, np.ndarray]) -> lora.TaskHead:
    """A vehicle's own head: a copy of the task head's module holding ``state`` (no RNG drawn)."""
    own = copy.deepcopy(head)
    lora.load_head(own, state)
    return own

