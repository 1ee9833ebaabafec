"""Load a trained agent from its checkpoint, whichever library trained it.

A checkpoint is a JSON manifest (``kind``, the algorithm, the agent's name, how it decides) beside the
library's own files: ``<stem>.json`` + ``<stem>.zip`` for Stable-Baselines3 (``SB3Policy.save``), or a
folder with ``manifest.json`` and the RLModule for RLlib (``RLlibPolicy.save``). ``load_agent`` reads the
manifest and hands over to the right class, so the leaderboard evaluates trained policies through the
agent contract without knowing, or importing, the library that trained them until it is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.base import Agent

KINDS = ("sb3", "rllib")


def manifest_path(path: str | Path) -> Path:
    """The manifest of a checkpoint given as its manifest, its stem, its model file or its folder."""
    p = Path(path)
    if p.is_dir():
        return p / "manifest.json"
    return p.with_suffix(".json")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The checkpoint's manifest; a clear error when there is none or its kind is unknown."""
    mp = manifest_path(path)
    if not mp.exists():
        raise FileNotFoundError(f"no checkpoint manifest at {mp}; expected one written by an agent's save()")
    manifest = json.loads(mp.read_text())
    if manifest.get("kind") not in KINDS:
        raise ValueError(f"{mp}: kind={manifest.get('kind')!r}; allowed: {KINDS}")
    return manifest


def load_agent(path: str | Path) -> Agent:
    """The trained agent saved at ``path`` (SB3 or RLlib), ready for ``run_decentralized``/``run_centralized``."""
    kind = read_manifest(path)["kind"]
    if kind == "sb3":
        from agents.sb3 import SB3Policy

        return SB3Policy.load(path)
    from agents.rllib import RLlibPolicy

    return RLlibPolicy.load(path)
