"""What several studies share: the data folder they default to, ``key=value`` config overrides, provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "benchmarks" / "data"


def default_data_dir() -> str:
    """``$IOV_DATA_DIR``, else the repo-relative ``../shared/data`` when it exists, else empty."""
    if os.environ.get("IOV_DATA_DIR"):
        return os.environ["IOV_DATA_DIR"]
    cand = REPO_ROOT.parent / "shared" / "data"
    return str(cand) if (cand / "sst2").is_dir() else ""


def use_default_data_dir() -> str:
    """Point ``IOV_DATA_DIR`` at ``default_data_dir()`` for this process, or warn that data is synthetic."""
    data_dir = default_data_dir()
    if data_dir:
        os.environ["IOV_DATA_DIR"] = data_dir
    else:
        print("# WARNING: no IOV_DATA_DIR and no ../shared/data: tasks fall back to synthetic data", file=sys.stderr)
    return data_dir


def child_env() -> dict[str, str]:
    """The environment of a measuring child process: offline hub, and the default data folder when there is one."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    data_dir = default_data_dir()
    if data_dir:
        env.setdefault("IOV_DATA_DIR", data_dir)
    return env


class OverrideError(ValueError):
    """A ``--set`` item is not of the form ``key=value``."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs, values read as JSON, else YAML (``1e-3``, ``target_modules=[query,value]``)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OverrideError(f"--set {item!r}: allowed form key=value")
        try:
            out[key.strip()] = json.loads(value)  # YAML 1.1 would read 1e-3 as a string
        except ValueError:
            out[key.strip()] = yaml.safe_load(value)
    return out


def git_commit() -> str:
    """HEAD's commit of this checkout, ``+dirty`` when tracked files differ, or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
