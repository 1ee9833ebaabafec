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
