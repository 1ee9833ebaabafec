"""iov_env/results.py: atomic writers leave either the old or the new file, never a half one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from iov_env.results import save_png_atomic, write_bytes_atomic, write_csv_atomic, write_text_atomic


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    """The target holds the new text; parents are created; no temp files are left behind."""
    target = tmp_path / "sub" / "x.md"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["x.md"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    """A payload that cannot be written raises and leaves the previous content and no temp file."""
    target = tmp_path / "x.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_csv_columns_are_the_union_of_keys(tmp_path: Path) -> None:
    """Rows with different keys produce one header in first-seen order, blanks where missing."""
    path = write_csv_atomic(tmp_path / "r.csv", [{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["a", "b", "c"]
    assert rows[1] == {"a": "3", "b": "", "c": "4"}


def test_png_is_a_png(tmp_path: Path) -> None:
    """An RGB array round-trips to a file that starts with the PNG signature."""
    img = np.zeros((4, 5, 3), dtype=np.uint8)
    path = save_png_atomic(tmp_path / "m.png", img)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
