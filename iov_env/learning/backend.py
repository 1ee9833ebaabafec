"""The seam between the simulated world and how accuracy evolves.

The simulator decides who trains, at which rank, for how much of the round and where the update
goes; a ``LearningBackend`` turns that plan into accuracies and token counts. ``FastBackend``
(surrogate learning curves) and ``RealBackend`` (peft LoRA training) both implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from iov_env.config import IoVConfig


@dataclass(frozen=True)
class FleetLayout:
    """Static per-episode facts about vehicles that learning depends on."""

    vehicle_task: np.ndarray  # (N,) int: index into config.tasks.tasks
    vehicle_shard_size: np.ndarray  # (N,) int: local training samples

    @classmethod
    def one_per_task(cls, num_tasks: int, shard_size: int) -> FleetLayout:
        """One vehicle per task, each holding ``shard_size`` samples (the studies' centralised client per task)."""
        return cls(np.arange(num_tasks), np.full(num_tasks, shard_size))

    @classmethod
    def round_robin(cls, config: IoVConfig, shards: str = "fleet") -> FleetLayout:
        """Vehicle ``i`` on task ``i % K``, shard sizes linear from ``shard_size_min`` to ``shard_size_max``.

        ``shards="fleet"`` spreads the sizes over the whole fleet in vehicle order; ``shards="task"``
        spreads them within each task, the simulator's own rule (``linear_shards``).
        """
        n, k, tk = config.num_vehicles, config.num_tasks, config.tasks
        vehicle_task = np.arange(n) % k
        if shards == "fleet":
            return cls(vehicle_task, np.rint(np.linspace(tk.shard_size_min, tk.shard_size_max, n)).astype(int))
        if shards == "task":
            return cls(vehicle_task, linear_shards(vehicle_task, k, tk.shard_size_min, tk.shard_size_max))
        raise ValueError(f"shards={shards!r}; allowed: 'fleet' or 'task'")


def linear_shards(vehicle_task: np.ndarray, num_tasks: int, lo: int, hi: int) -> np.ndarray:
    """Within each task, shard sizes grow linearly from ``lo`` to ``hi`` (the authors' 150/300/450)."""
    sizes = np.zeros(len(vehicle_task), dtype=int)
    for t in range(num_tasks):
        idx = np.flatnonzero(vehicle_task == t)
        if len(idx):
            sizes[idx] = np.round(np.linspace(lo, hi, len(idx)) if len(idx) > 1 else [(lo + hi) / 2]).astype(int)
    return sizes


@dataclass(frozen=True)
class RoundPlan:
    """What the simulator asks the learning backend to execute in one federated round."""

    round_index: int
    rank: np.ndarray  # (N,) int: LoRA rank used by each vehicle this round (ignored if not training)
    training: np.ndarray  # (N,) bool: receives the global update and trains locally
    uploads: np.ndarray  # (N,) bool: its update reaches the RSU aggregator
    train_fraction: np.ndarray  # (N,) float in [0, 1]: share of local steps completed (early upload < 1)
    vehicle_rsu: np.ndarray  # (N,) int: RSU that aggregates this vehicle's update (-1: none)
    layer_mask: np.ndarray  # (N, L) bool: transformer layers whose adapters train this round (FedRA < all)

    @classmethod
    def uniform(cls, round_index: int, rank: np.ndarray, num_layers: int, vehicle_rsu: np.ndarray | None = None,
                train_fraction: float = 1.0) -> RoundPlan:
        """Every vehicle trains at ``rank[i]`` on all ``num_layers`` layers and uploads: the studies' round.

        ``vehicle_rsu`` defaults to every vehicle on RSU 0; ``train_fraction`` is the share of local
        steps each completes.
        """
        rank = np.asarray(rank)
        n = len(rank)
        rsu = np.zeros(n, int) if vehicle_rsu is None else np.asarray(vehicle_rsu)
        return cls(round_index, rank, np.ones(n, bool), np.ones(n, bool), np.full(n, float(train_fraction)), rsu,
                   np.ones((n, num_layers), bool))


@dataclass
class RoundResult:
    """What one round of learning produced."""

    vehicle_accuracy: np.ndarray  # (N,) float in [0, 1]: metric on the vehicle's local validation split
    vehicle_tokens: np.ndarray  # (N,) float: tokens processed in local training (drives compute cost)
    vehicle_loss: np.ndarray  # (N,) float: mean local training loss (nan where it did not train)
    task_accuracy: np.ndarray  # (K,) float in [0, 1]: global model's primary dev metric per task
    task_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # extra metrics per task


@runtime_checkable
class LearningBackend(Protocol):
    """Turns a round plan into learning outcomes; ``FastBackend`` and ``RealBackend`` implement it."""

    config: IoVConfig

    def reset(self, seed: int, layout: FleetLayout) -> None:
        """Start a new episode: fresh adapters/curves, data partitions from ``seed``."""
        ...

    def expected_tokens(self, task_index: np.ndarray) -> np.ndarray:
        """Tokens one local round is expected to process per vehicle (used before training, for masks)."""
        ...

    def train_round(self, plan: RoundPlan) -> RoundResult:
        """Execute one federated round; must leave no vehicle half-updated if it raises."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance: fidelity, model, data source per task."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


def make_backend(config: IoVConfig) -> LearningBackend:
    """The backend the config's fidelity asks for; the real one is imported only when needed."""
    if config.learning.fidelity == "fast":
        from iov_env.learning.surrogate import FastBackend

        return FastBackend(config)
    from iov_env.learning.real import RealBackend  # heavy: torch, transformers, peft, datasets

    return RealBackend(config)
