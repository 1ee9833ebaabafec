"""Task definitions, data loading and non-IID partitioning for the real fidelity (torch-free).

Data source order per task: ``$IOV_DATA_DIR`` (layout of ``shared/data``: ``sst2/{train,dev}.tsv``,
``conll2003/{train,valid,test}.txt``, ``copa/{train,val,test}.jsonl``), then the Hugging Face hub
when reachable, then a clearly labelled synthetic stand-in. Raw splits are ``datasets.Dataset``
objects; tokenisation takes any Hugging Face tokenizer and is cached in-process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iov_env.files import DataFormatError, MissingDataError, iter_lines, parse_json

__all__ = [
    "TASK_SPECS",
    "DataFormatError",
    "MissingDataError",
    "TaskData",
    "TaskSpec",
    "TokenizedSplit",
    "VehicleShard",
    "dev_subset",
    "hub_reachable",
    "load_task",
    "partition",
    "read_conll",
    "read_copa_jsonl",
    "read_sst2_tsv",
    "tokenize_task",
]

CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
IGNORE_INDEX = -100  # label of special tokens and non-first sub-words (torch CrossEntropyLoss default)


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its input kind, label set and primary metric."""

    name: str
    kind: str  # "sequence" | "token" | "multiple_choice"
    num_labels: int  # classes (sequence/token) or choices (multiple_choice)
    metric: str  # primary metric name reported as the task accuracy
    label_names: tuple[str, ...] = ()
    chance: float = 0.0  # metric of a constant/random predictor (for reporting)


TASK_SPECS: dict[str, TaskSpec] = {
    "sst2": TaskSpec("sst2", "sequence", 2, "accuracy", ("negative", "positive"), 0.5),
    "conll2003": TaskSpec("conll2003", "token", len(CONLL_TAGS), "entity_f1", CONLL_TAGS, 0.0),
    "copa": TaskSpec("copa", "multiple_choice", 2, "accuracy", ("choice1", "choice2"), 0.5),
}


@dataclass
class TaskData:
    """Raw train/dev splits of one task and where they came from."""

    spec: TaskSpec
    train: Any  # datasets.Dataset
    dev: Any  # datasets.Dataset
    source: str  # "local:<dir>" | "hub:<id>" | "synthetic (stand-in, not the real data set)"
    notes: list[str] = field(default_factory=list)

    def partition_labels(self) -> np.ndarray:
        """One integer class per train example used by the Dirichlet split (NER: dominant entity type)."""
        if self.spec.kind != "token":
            return np.asarray(self.train["label"], dtype=np.int64)
        # 0 = no entity, 1..4 = PER/ORG/LOC/MISC, whichever begins most often in the sentence
        out = np.zeros(len(self.train), dtype=np.int64)
        for i, tags in enumerate(self.train["ner_tags"]):
            counts = np.bincount([(t + 1) // 2 for t in tags if t % 2 == 1], minlength=5)
            out[i] = int(np.argmax(counts)) if counts.sum() else 0
        return out


# -- file readers -------------------------------------------------------------------------------
def read_sst2_tsv(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """GLUE SST-2 TSV with header ``sentence<TAB>label``; labels 0/1."""
    p = Path(path)
    sentences: list[str] = []
    labels: list[int] = []
    lines = iter_lines(p)
    header = next(lines, (1, ""))[1].split("\t")
    if [h.strip() for h in header[:2]] != ["sentence", "label"]:
        raise DataFormatError(f"{p}:1: expected header 'sentence<TAB>label', got {header[:3]!r:.120}")
    for lineno, line in lines:
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataFormatError(f"{p}:{lineno}: expected 2 tab-separated columns, got {len(parts)}")
        if parts[1].strip() not in ("0", "1"):
            raise DataFormatError(f"{p}:{lineno}: label must be 0 or 1, got {parts[1]!r:.60}")
        if not parts[0].strip():
            raise DataFormatError(f"{p}:{lineno}: field 'sentence' is empty; allowed: a non-empty sentence")
        sentences.append(parts[0].strip())
        labels.append(int(parts[1]))
    if len(set(labels)) == 1:  # a classifier trained on one class learns nothing, and its accuracy is meaningless
        raise DataFormatError(f"{p}: field 'label' is {labels[0]} on all {len(labels)} rows; allowed: both labels "
                              "0 and 1 present")
    return {"sentence": sentences, "label": labels}


def read_conll(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """CoNLL-2003 four-column IOB2 (``TOKEN POS CHUNK NER``), blank-line separated, -DOCSTART- skipped."""
    p = Path(path)
    tag_index = {t: i for i, t in enumerate(CONLL_TAGS)}
    all_tokens: list[list[str]] = []
    all_tags: list[list[int]] = []
    tokens: list[str] = []
    tags: list[int] = []
    for lineno, line in iter_lines(p):
        parts = line.split()
        if not parts:
            if tokens:
                all_tokens.append(tokens)
                all_tags.append(tags)
                tokens, tags = [], []
            continue
        if parts[0] == "-DOCSTART-":
            continue
        if len(parts) != 4:
            raise DataFormatError(f"{p}:{lineno}: expected 4 columns 'TOKEN POS CHUNK NER', got {len(parts)}")
        if parts[3] not in tag_index:
            raise DataFormatError(f"{p}:{lineno}: unknown NER tag {parts[3]!r:.60}; allowed: {CONLL_TAGS}")
        tokens.append(parts[0])
        tags.append(tag_index[parts[3]])
    if tokens:
        all_tokens.append(tokens)
        all_tags.append(tags)
    return {"tokens": all_tokens, "ner_tags": all_tags}


def read_copa_jsonl(path: str | os.PathLike[str], require_label: bool = True) -> dict[str, list[Any]]:
    """SuperGLUE COPA JSON lines (premise, choice1, choice2, question cause|effect, label 0/1)."""
    p = Path(path)
    cols: dict[str, list[Any]] = {k: [] for k in ("premise", "choice1", "choice2", "question", "label")}
    for lineno, line in iter_lines(p):
        if not line.strip():
            continue
        row = parse_json(line, str(p), first_line=lineno)
        if not isinstance(row, dict):
            raise DataFormatError(f"{p}:{lineno}: expected a JSON object, got a {type(row).__name__}")
        for key in ("premise", "choice1", "choice2", "question"):
            if not isinstance(row.get(key), str):
                raise DataFormatError(f"{p}:{lineno}: field {key!r} missing or not a string")
            if not row[key].strip():
                raise DataFormatError(f"{p}:{lineno}: field {key!r} is empty; allowed: a non-empty string")
        if row["question"] not in ("cause", "effect"):
            raise DataFormatError(f"{p}:{lineno}: question must be 'cause' or 'effect', got {row['question']!r:.60}")
        label = row.get("label")
        # exactly the integers 0 and 1: true/1.0 compare equal to 1 but would mix types in the Arrow column
        if type(label) is not int or label not in (0, 1):
            if require_label:
                raise DataFormatError(f"{p}:{lineno}: label must be the integer 0 or 1, got {label!r:.60}")
            label = -1
        for key in ("premise", "choice1", "choice2", "question"):
            cols[key].append(row[key])
        cols["label"].append(label)
    return cols


# -- sources ------------------------------------------------------------------------------------
_LOCAL_FILES = {
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", read_sst2_tsv),
    "conll2003": ("conll2003/train.txt", "conll2003/valid.txt", read_conll),
    "copa": ("copa/train.jsonl", "copa/val.jsonl", read_copa_jsonl),
}
# parquet-backed hub ids (script-based datasets no longer load in datasets >= 3)
_HUB_IDS = {
    "sst2": ("stanfordnlp/sst2", None, "train", "validation"),
    "conll2003": ("eriktks/conll2003", None, "train", "validation"),
    "copa": ("aps/super_glue", "copa", "train", "validation"),
}
_HUB_REACHABLE: bool | None = None


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers (False at once if HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set)."""
    global _HUB_REACHABLE
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    if _HUB_REACHABLE is None:
        try:
            with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
                _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


def _from_local(name: str, data_dir: Path, origin: str) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Both splits from a named data folder; a missing file is an error, never a silent fallback."""
    train_rel, dev_rel, reader = _LOCAL_FILES[name]
    # exists(), not is_file(): a folder (or a link to one) where a file belongs is reported as such by the reader
    missing = [rel for rel in (train_rel, dev_rel) if not (data_dir / rel).exists()]
    if missing:
        raise MissingDataError(
            f"{origin}={str(data_dir)!r} is set but {missing} are missing (task {name!r}); allowed: the layout "
            f"{sorted(r for t in _LOCAL_FILES.values() for r in t[:2])}, or unset {origin} to use the Hugging Face "
            "hub or the labelled synthetic stand-in"
        )
    return reader(data_dir / train_rel), reader(data_dir / dev_rel)


def _from_hub(name: str) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    import datasets

    repo, subset, train_split, dev_split = _HUB_IDS[name]
    ds = datasets.load_dataset(repo, subset)
    cols = {"sst2": ("sentence", "label"), "conll2003": ("tokens", "ner_tags"),
            "copa": ("premise", "choice1", "choice2", "question", "label")}[name]
    return ({c: list(ds[train_split][c]) for c in cols}, {c: list(ds[dev_split][c]) for c in cols})


# synthetic stand-ins: learnable (label-correlated tokens), small, deterministic
_FILLER = ("the a of and to in is was it that this with for on as at by from an be".split()
           + "movie film story car road city day time people way thing part place world".split())
_POS = "good great fine excellent wonderful lovely superb brilliant charming enjoyable".split()
_NEG = "bad awful poor terrible boring dull weak tedious clumsy lifeless".split()
_ENTITIES = {
    "PER": ["Alice Smith", "Bob Jones", "Carla Diaz", "Dmitri Petrov", "Emma Brown", "Farid Khan"],
    "ORG": ["Acme Corp", "Globex", "United Nations", "Reuters", "Initech Ltd", "Red Cross"],
    "LOC": ["Paris", "Berlin", "New York", "Lake Geneva", "Tokyo", "Cape Town"],
    "MISC": ["German", "Olympic Games", "English", "World Cup", "Nobel Prize", "Euro"],
}
_COPA_PAIRS = [("rain", "wet"), ("fire", "smoke"), ("exam", "studied"), ("hungry", "ate"), ("cold", "coat"),
               ("tired", "slept"), ("dark", "lamp"), ("late", "ran"), ("sick", "doctor"), ("thirsty", "drank"),
               ("broke", "repaired"), ("dirty", "washed"), ("lost", "searched"), ("loud", "covered"),
               ("bored", "played"), ("hot", "fan")]
SYNTHETIC_SOURCE = "synthetic (stand-in, NOT the real data set)"


def _synthetic(name: str, seed: int = 0, n_train: int = 3000, n_dev: int = 300) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)

    def sst(n: int) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"sentence": [], "label": []}
        for _ in range(n):
            label = int(rng.integers(2))
            words = list(rng.choice(_FILLER, size=int(rng.integers(5, 14))))
            cue = _POS if label else _NEG
            for _ in range(int(rng.integers(1, 3))):
                words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(cue)))
            out["sentence"].append(" ".join(words))
            out["label"].append(label if rng.random() > 0.05 else 1 - label)  # 5% label noise
        return out

    def ner(n: int) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"tokens": [], "ner_tags": []}
        tag_index = {t: i for i, t in enumerate(CONLL_TAGS)}
        for _ in range(n):
            toks: list[str] = []
            tags: list[int] = []
            for _ in range(int(rng.integers(4, 12))):
                if rng.random() < 0.2:
                    kind = str(rng.choice(list(_ENTITIES)))
                    for j, w in enumerate(str(rng.choice(_ENTITIES[kind])).split()):
                        toks.append(w)
                        tags.append(tag_index[("B-" if j == 0 else "I-") + kind])
                else:
                    toks.append(str(rng.choice(_FILLER)))
                    tags.append(0)
            out["tokens"].append(toks)
            out["ner_tags"].append(tags)
        return out

    def copa(n: int) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("premise", "choice1", "choice2", "question", "label")}
        for _ in range(n):
            i, j = rng.choice(len(_COPA_PAIRS), size=2, replace=False)
            question = "effect" if rng.random() < 0.5 else "cause"
            cause, effect = _COPA_PAIRS[i]
            wrong = _COPA_PAIRS[j][1] if question == "effect" else _COPA_PAIRS[j][0]
            premise, right = (f"It was {cause} .", f"They {effect} .") if question == "effect" else \
                (f"They {effect} .", f"It was {cause} .")
            wrong_s = f"They {wrong} ." if question == "effect" else f"It was {wrong} ."
            label = int(rng.integers(2))
            c1, c2 = (right, wrong_s) if label == 0 else (wrong_s, right)
            for k, v in zip(("premise", "choice1", "choice2", "question", "label"),
                            (premise, c1, c2, question, label), strict=True):
                out[k].append(v)
        return out

    make = {"sst2": sst, "conll2003": ner, "copa": copa}[name]
    return make(n_train), make(n_dev)


def load_task(name: str, data_dir: str | os.PathLike[str] | None = None, allow_hub: bool = True) -> TaskData:
    """Load ``name`` from ``data_dir`` (default ``$IOV_DATA_DIR``), else the hub, else synthetic.

    A data folder that is named but lacks one of the task's files raises ``MissingDataError``: asking
    for local data and silently getting a stand-in would corrupt an experiment.
    """
    import datasets

    if name not in TASK_SPECS:
        raise ValueError(f"task {name!r} is unknown; allowed: {sorted(TASK_SPECS)}")
    notes: list[str] = []
    root = data_dir if data_dir is not None else os.environ.get("IOV_DATA_DIR", "")
    splits = None
    source = ""
    if root:
        splits = _from_local(name, Path(root), "data_dir" if data_dir is not None else "IOV_DATA_DIR")
        source = f"local:{Path(root).resolve() / name}"
    else:
        notes.append("no data folder (IOV_DATA_DIR unset)")
    if splits is None and allow_hub:
        if hub_reachable():
            try:
                splits = _from_hub(name)
                source = f"hub:{_HUB_IDS[name][0]}"
            except Exception as exc:  # the hub is optional; any failure falls through to synthetic
                notes.append(f"hub load of {_HUB_IDS[name][0]} failed: {type(exc).__name__}: {exc}")
        else:
            notes.append("Hugging Face hub not reachable (or HF_HUB_OFFLINE set)")
    if splits is None:
        splits = _synthetic(name)
        source = SYNTHETIC_SOURCE
    train, dev = (datasets.Dataset.from_dict(s) for s in splits)
    if len(train) == 0 or len(dev) == 0:
        raise DataFormatError(f"task {name!r} from {source}: empty train ({len(train)}) or dev ({len(dev)}) split")
    return TaskData(TASK_SPECS[name], train, dev, source, notes)


# -- tokenisation -------------------------------------------------------------------------------
@dataclass
class TokenizedSplit:
    """Ragged token ids of one split; for multiple choice each example holds ``num_choices`` sequences."""

    input_ids: list[np.ndarray]  # per sequence (multiple choice: example i, choice c at i*C + c)
    token_type_ids: list[np.ndarray]
    labels: list[Any]  # int per example, or (token task) int array aligned with input_ids (-100 = ignore)
    word_ids: list[np.ndarray] = field(default_factory=list)  # token task: word index of first sub-words, else -1
    gold_tags: list[list[str]] = field(default_factory=list)  # token task: word-level gold IOB2 tags
    num_choices: int = 1

    def __len__(self) -> int:
        return len(self.labels)

    def tokens_per_example(self) -> np.ndarray:
        """Non-pad tokens each example costs (all choices summed)."""
        lens = np.array([len(x) for x in self.input_ids], dtype=np.float64)
        return lens.reshape(-1, self.num_choices).sum(axis=1)


_TOKEN_CACHE: dict[tuple[Any, ...], tuple[TokenizedSplit, TokenizedSplit]] = {}


def _tokenize_split(spec: TaskSpec, ds: Any, tokenizer: Any, max_len: int) -> TokenizedSplit:
    if spec.kind == "sequence":
        enc = tokenizer(list(ds["sentence"]), truncation=True, max_length=max_len)
        return TokenizedSplit(
            [np.asarray(x, np.int64) for x in enc["input_ids"]],
            [np.asarray(x, np.int64) for x in enc.get("token_type_ids", [[0] * len(y) for y in enc["input_ids"]])],
            [int(v) for v in ds["label"]],
        )
    if spec.kind == "token":
        tokens = [list(t) for t in ds["tokens"]]
        enc = tokenizer(tokens, is_split_into_words=True, truncation=True, max_length=max_len)
        ids, tts, labels, wids, gold = [], [], [], [], []
        for i, tags in enumerate(ds["ner_tags"]):
            word_ids = enc.word_ids(i)
            lab = np.full(len(word_ids), IGNORE_INDEX, np.int64)
            first = np.full(len(word_ids), -1, np.int64)
            prev = None
            for j, w in enumerate(word_ids):
                if w is not None and w != prev:  # label only the first sub-word of each word
                    lab[j] = tags[w]
                    first[j] = w
                prev = w
            ids.append(np.asarray(enc["input_ids"][i], np.int64))
            tts.append(np.asarray(enc["token_type_ids"][i], np.int64) if "token_type_ids" in enc
                       else np.zeros(len(word_ids), np.int64))
            labels.append(lab)
            wids.append(first)
            gold.append([CONLL_TAGS[t] for t in tags])
        return TokenizedSplit(ids, tts, labels, wids, gold)
    # multiple choice: (premise, connective + choice) pairs, one sequence per choice
    firsts: list[str] = []
    seconds: list[str] = []
    for prem, c1, c2, q in zip(ds["premise"], ds["choice1"], ds["choice2"], ds["question"], strict=True):
        conn = "because" if q == "cause" else "so"
        for choice in (c1, c2):
            firsts.append(prem)
            seconds.append(f"{conn} {choice[:1].lower()}{choice[1:]}")
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_len)
    return TokenizedSplit(
        [np.asarray(x, np.int64) for x in enc["input_ids"]],
        [np.asarray(x, np.int64) for x in enc.get("token_type_ids", [[0] * len(y) for y in enc["input_ids"]])],
        [int(v) for v in ds["label"]],
        num_choices=2,
    )


def tokenize_task(task: TaskData, tokenizer: Any, max_len: int) -> tuple[TokenizedSplit, TokenizedSplit]:
    """(train, dev) token ids, computed once per (tokenizer, task, source, max_len) in this process."""
    key = (getattr(tokenizer, "name_or_path", ""), len(tokenizer), task.spec.name, task.source,
           len(task.train), len(task.dev), max_len)
    if key not in _TOKEN_CACHE:
        _TOKEN_CACHE[key] = (_tokenize_split(task.spec, task.train, tokenizer, max_len),
                             _tokenize_split(task.spec, task.dev, tokenizer, max_len))
    return _TOKEN_CACHE[key]


# -- partitioning -------------------------------------------------------------------------------
@dataclass(frozen=True)
class VehicleShard:
    """Indices into a task's train split: local training data and the local validation split."""

    task_index: int
    train_idx: np.ndarray
    val_idx: np.ndarray


def partition(
    labels_per_task: Sequence[np.ndarray],
    vehicle_task: np.ndarray,
    vehicle_shard_size: np.ndarray,
    alpha: float,
    val_fraction: float,
    rng: np.random.Generator,
) -> list[VehicleShard]:
    """Dirichlet(alpha)-over-labels non-IID split; disjoint across vehicles while the pool lasts.

    Vehicle v gets ``vehicle_shard_size[v]`` training examples plus ``val_fraction`` of its local
    data (so val = n * f / (1 - f), at least 1) as a local validation split. Small ``alpha`` gives
    each vehicle few classes. When a task's pool is too small (COPA has 400 examples) later
    vehicles draw from the whole pool again; a single vehicle never repeats an example unless
    its local data exceeds the pool, in which case its shard is clipped to the pool.
    """
    if alpha <= 0:
        raise ValueError(f"dirichlet_alpha={alpha} must be positive")
    shards: list[VehicleShard] = []
    used = [np.zeros(len(lab), dtype=bool) for lab in labels_per_task]
    for v, (k, n_train) in enumerate(zip(vehicle_task, vehicle_shard_size, strict=True)):
        labels = labels_per_task[int(k)]
        pool = len(labels)
        n_val = max(1, int(round(int(n_train) * val_fraction / (1.0 - val_fraction))))
        need = min(int(n_train) + n_val, pool)
        if need < 2:
            raise ValueError(f"vehicle {v}: task {int(k)} has only {pool} training examples")
        classes = np.unique(labels)
        mix = rng.dirichlet(np.full(len(classes), alpha))
        available = np.flatnonzero(~used[int(k)])
        if len(available) < need:
            available = np.arange(pool)
        cls_of = np.searchsorted(classes, labels[available])
        counts = np.bincount(cls_of, minlength=len(classes)).astype(np.float64)
        # per-example probability = class share / class count (floor keeps every example drawable)
        p = mix[cls_of] / np.maximum(counts[cls_of], 1.0) + 1e-12
        chosen = rng.choice(available, size=need, replace=False, p=p / p.sum())
        used[int(k)][chosen] = True
        n_val_eff = max(1, int(round(need * val_fraction))) if need < int(n_train) + n_val else n_val
        shards.append(VehicleShard(int(k), np.sort(chosen[n_val_eff:]), np.sort(chosen[:n_val_eff])))
    return shards


def dev_subset(dev_size: int, subset_size: int, seed: int = 0) -> np.ndarray:
    """A fixed (seed 0 by default, independent of the episode) subset of dev indices."""
    if subset_size >= dev_size:
        return np.arange(dev_size)
    return np.sort(np.random.default_rng(seed).choice(dev_size, size=subset_size, replace=False))
