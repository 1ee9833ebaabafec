"""Writing result files atomically: a temporary file in the same folder, then ``os.replace``.

Readers never see a half-written file, and a failure leaves the previous file untouched.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created, file mode 0644)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], fields: list[str] | None = None) -> Path:
    """Write dict rows as CSV atomically; columns are ``fields`` or the union of keys in first-seen order."""
    rows = list(rows)
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def read_csv_rows(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, str]]:
    """Every row of the given CSV files as dicts, in order; files that do not exist are skipped (nothing run yet)."""
    rows: list[dict[str, str]] = []
    for p in map(Path, paths):
        if p.is_file():
            with p.open(newline="") as fh:
                rows.extend(csv.DictReader(fh))
    return rows


def save_png_atomic(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Save an RGB(A) array as PNG atomically (matplotlib's writer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    plt.imsave(buf, image, format="png")
    return write_bytes_atomic(path, buf.getvalue())


def save_figure_atomic(path: str | os.PathLike[str], figure: Any, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return write_bytes_atomic(path, buf.getvalue())
