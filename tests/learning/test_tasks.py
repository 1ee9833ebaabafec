"""Task loaders (local fixtures, shared data, synthetic fallback), error messages and partitions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from iov_env.learning import tasks

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """``$IOV_DATA_DIR``, else the repo-relative ``../shared/data``, else None."""
    for c in (os.environ.get("IOV_DATA_DIR"), str(REPO_ROOT.parent / "shared" / "data")):
        if c and (Path(c) / "sst2" / "train.tsv").is_file():
            return Path(c)
    return None


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A tiny data folder in the layout of shared/data."""
    (tmp_path / "sst2").mkdir()
    rows = "sentence\tlabel\n" + "".join(f"a {'good' if i % 2 else 'bad'} film {i} \t{i % 2}\n" for i in range(40))
    (tmp_path / "sst2" / "train.tsv").write_text(rows)
    (tmp_path / "sst2" / "dev.tsv").write_text("sentence\tlabel\nfine \t1\nawful \t0\n")
    (tmp_path / "conll2003").mkdir()
    conll = ("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
             "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n")
    for split in ("train", "valid", "test"):
        (tmp_path / "conll2003" / f"{split}.txt").write_text(conll)
    (tmp_path / "copa").mkdir()
    row = {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He sang.", "question": "cause"}
    lines = "".join(json.dumps(dict(row, label=i % 2, idx=i)) + "\n" for i in range(6))
    for split in ("train", "val"):
        (tmp_path / "copa" / f"{split}.jsonl").write_text(lines)
    return tmp_path


def test_local_loaders_read_the_fixture(data_dir: Path) -> None:
    sst = tasks.load_task("sst2", data_dir, allow_hub=False)
    assert sst.source.startswith("local:") and len(sst.train) == 40 and len(sst.dev) == 2
    assert sst.train[1] == {"sentence": "a good film 1", "label": 1}
    ner = tasks.load_task("conll2003", data_dir, allow_hub=False)
    assert len(ner.train) == 2  # -DOCSTART- skipped
    assert ner.train[0]["tokens"] == ["EU", "rejects", "German"]
    assert [tasks.CONLL_TAGS[t] for t in ner.train[1]["ner_tags"]] == ["B-PER", "I-PER"]
    assert list(ner.partition_labels()) == [2, 1]  # ORG+MISC tie -> first (PER=1, ORG=2), PER
    copa = tasks.load_task("copa", data_dir, allow_hub=False)
    assert len(copa.train) == 6 and copa.train[0]["label"] == 0


def test_shared_data_via_iov_data_dir() -> None:
    root = shared_data_dir()
    if root is None:
        pytest.skip("real data not present (set IOV_DATA_DIR to a folder in the layout of shared/data)")
    sizes = {"sst2": (67349, 872), "conll2003": (14041, 3250), "copa": (400, 100)}
    for name, (n_train, n_dev) in sizes.items():
        td = tasks.load_task(name, root, allow_hub=False)
        assert td.source.startswith("local:")
        assert (len(td.train), len(td.dev)) == (n_train, n_dev)


@pytest.mark.parametrize(
    ("rel", "content", "line"),
    [
        ("sst2/train.tsv", "sentence\tlabel\nok \t1\nbroken \t7\n", 3),
        ("sst2/train.tsv", "sentence\tlabel\nok \t1\nno tab here\n", 3),
        ("conll2003/train.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nbad NNP B-NP\n", 4),
        ("conll2003/train.txt", "EU NNP B-NP B-ORG\nx NN O B-FOO\n", 2),
        ("copa/train.jsonl", '{"premise": "a", "choice1": "b", "choice2": "c", "question": "cause", "label": 0}\n{oops\n', 2),
    ],
)
def test_malformed_files_name_the_file_and_line(data_dir: Path, rel: str, content: str, line: int) -> None:
    path = data_dir / rel
    path.write_text(content)
    with pytest.raises(tasks.DataFormatError) as exc:
        tasks.load_task(rel.split("/")[0], data_dir, allow_hub=False)
    assert f"{path}:{line}:" in str(exc.value)


def test_synthetic_fallback_is_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a data folder (IOV_DATA_DIR unset) and without the hub, the stand-in says what it is."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("IOV_DATA_DIR", raising=False)
    for name in tasks.TASK_SPECS:
        td = tasks.load_task(name)
        assert td.source.startswith("synthetic") and "NOT the real data set" in td.source
        assert any("IOV_DATA_DIR unset" in n for n in td.notes) and any("hub" in n for n in td.notes)
        assert len(td.train) > 100 and len(set(td.partition_labels().tolist())) > 1


def _labels(n: int, classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(classes, size=n)


def test_dirichlet_partition_sizes_disjointness_and_determinism() -> None:
    labels = [_labels(5000, 2), _labels(3000, 5)]
    vt = np.array([0, 1, 0, 1, 0])
    sizes = np.array([150, 200, 250, 300, 450])
    shards = tasks.partition(labels, vt, sizes, 0.5, 0.2, np.random.default_rng(1))
    for s, k, n in zip(shards, vt, sizes, strict=True):
        assert s.task_index == k and len(s.train_idx) == n
        assert len(s.val_idx) == round(n * 0.25)  # val is 20% of the vehicle's local data
        assert not set(s.train_idx) & set(s.val_idx)
    for k in (0, 1):
        mine = [np.concatenate([s.train_idx, s.val_idx]) for s in shards if s.task_index == k]
        allidx = np.concatenate(mine)
        assert len(np.unique(allidx)) == len(allidx)  # disjoint across vehicles while the pool lasts
    again = tasks.partition(labels, vt, sizes, 0.5, 0.2, np.random.default_rng(1))
    assert all(np.array_equal(a.train_idx, b.train_idx) for a, b in zip(shards, again, strict=True))


def test_small_alpha_skews_labels_more_than_large_alpha() -> None:
    labels = [_labels(20000, 4)]
    vt = np.zeros(20, dtype=int)
    sizes = np.full(20, 200)

    def max_share(alpha: float) -> float:
        shards = tasks.partition(labels, vt, sizes, alpha, 0.2, np.random.default_rng(0))
        return float(np.mean([np.bincount(labels[0][s.train_idx], minlength=4).max() / 200 for s in shards]))

    assert max_share(0.1) > 0.7 > max_share(100.0)
    assert max_share(100.0) < 0.4


def test_small_pool_is_reused_and_clipped_without_repeats_inside_a_vehicle() -> None:
    labels = [_labels(100, 2)]
    shards = tasks.partition(labels, np.zeros(3, int), np.array([60, 60, 200]), 1.0, 0.2, np.random.default_rng(0))
    for s in shards:
        both = np.concatenate([s.train_idx, s.val_idx])
        assert len(np.unique(both)) == len(both) <= 100
    assert len(shards[2].train_idx) + len(shards[2].val_idx) == 100


def test_dev_subset_is_fixed() -> None:
    a = tasks.dev_subset(872, 200)
    assert len(a) == 200 and np.array_equal(a, tasks.dev_subset(872, 200))
    assert np.array_equal(tasks.dev_subset(100, 200), np.arange(100))


def test_tokenisation_aligns_ner_labels_to_first_subwords_and_is_cached(data_dir: Path) -> None:
    lora = pytest.importorskip("iov_env.learning.lora")
    try:
        _, tok, _ = lora.load_base_model(lora.TINY)
    except lora.ModelLoadError as exc:
        pytest.skip(str(exc))
    td = tasks.load_task("conll2003", data_dir, allow_hub=False)
    train, dev = tasks.tokenize_task(td, tok, 32)
    assert tasks.tokenize_task(td, tok, 32)[0] is train
    lab = train.labels[1]  # "Peter Blackburn": [CLS] peter black ##burn [SEP]
    firsts = lab[lab != tasks.IGNORE_INDEX]
    assert [tasks.CONLL_TAGS[t] for t in firsts] == ["B-PER", "I-PER"]
    assert (train.word_ids[1] >= 0).sum() == 2
    copa = tasks.load_task("copa", data_dir, allow_hub=False)
    ctr, _ = tasks.tokenize_task(copa, tok, 32)
    assert ctr.num_choices == 2 and len(ctr.input_ids) == 2 * len(ctr)


def test_loaders_and_aggregators_import_without_torch() -> None:
    """The fast fidelity may reuse these modules: they must not pull torch, transformers or peft in."""
    import subprocess
    import sys

    code = ("import sys, iov_env, iov_env.learning.tasks, iov_env.learning.aggregation\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
