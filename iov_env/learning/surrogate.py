"""FastBackend: calibrated learning curves in place of LoRA training, thousands of times faster.

Per task ``k`` the global model has absorbed ``n_k`` effective samples. Its accuracy at rank r is

    acc_k(r, n) = floor + (ceiling_k(r) - floor) * (1 - exp(-n / sample_scale))
    ceiling_k(r) = ceiling - rank_gap * rank_half / (rank_half + r) - noniid_penalty * H

with non-IID heterogeneity ``H = 1 / (1 + dirichlet_alpha)``: diminishing returns in data, a
lower ceiling at small ranks, a penalty for skewed partitions. A round adds, per uploading
vehicle, ``samples * train_fraction * r / (r + speed_rank_half) * layer_fraction * agg_eff``
where ``samples = steps*batch*(1 - exp(-shard/(steps*batch)))`` (re-visiting a small shard is
worth less). A vehicle that missed ``s`` rounds loses ``stale_penalty * s`` (capped at 10
rounds); observations carry Gaussian noise. Parameters live in ``calibration/<model>.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from iov_env.config import ConfigError, IoVConfig
from iov_env.learning.backend import FleetLayout, RoundPlan, RoundResult

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
MAX_STALENESS_ROUNDS = 10


@dataclass(frozen=True)
class TaskCurve:
    """Surrogate parameters of one task (metric in [0, 1])."""

    floor: float
    ceiling: float
    rank_gap: float
    rank_half: float
    sample_scale: float
    speed_rank_half: float
    noniid_penalty: float
    stale_penalty: float
    noise_std: float
    tokens_per_sample: float
    zero_pad_penalty: float


def heterogeneity(dirichlet_alpha: float) -> float:
    """Label skew of a Dirichlet(alpha) partition mapped to [0, 1): 0 is IID."""
    return 1.0 / (1.0 + dirichlet_alpha)


def curve_value(
    floor: np.ndarray, ceiling: np.ndarray, rank_gap: np.ndarray, rank_half: np.ndarray,
    noniid_penalty: np.ndarray, sample_scale: np.ndarray, rank: np.ndarray, samples: np.ndarray, hetero: float,
) -> np.ndarray:
    """The learning-curve formula on broadcastable parameter arrays (see the module docstring)."""
    r = np.asarray(rank, dtype=float)
    top = ceiling - rank_gap * rank_half / (rank_half + r) - noniid_penalty * hetero
    top = np.maximum(top, floor)
    return floor + (top - floor) * (1.0 - np.exp(-np.asarray(samples, dtype=float) / sample_scale))


def predict_accuracy(curve: TaskCurve, rank: np.ndarray, effective_samples: np.ndarray, hetero: float) -> np.ndarray:
    """Noise-free metric of a model at ``rank`` after absorbing ``effective_samples``."""
    return curve_value(
        curve.floor, curve.ceiling, curve.rank_gap, curve.rank_half, curve.noniid_penalty, curve.sample_scale,
        rank, effective_samples, hetero,
    )


def rank_speed(curve: TaskCurve, rank: np.ndarray) -> np.ndarray:
    """Per-sample learning efficiency of a rank-``r`` adapter, in (0, 1)."""
    return rank_speed_table(np.asarray(curve.speed_rank_half), np.asarray(rank, dtype=float))


def samples_per_round(local_steps: int, batch_size: int, shard_size: np.ndarray) -> np.ndarray:
    """Fresh-equivalent samples in one local round: re-visiting a small shard is worth less."""
    seen = float(local_steps * batch_size)
    return seen * (1.0 - np.exp(-np.asarray(shard_size, dtype=float) / seen))


def calibration_path(config: IoVConfig) -> Path:
    """The calibration file for this config: explicit, else named after the base model, else default."""
    name = config.learning.calibration
    if name:
        p = Path(name)
        if p.suffix != ".json":
            p = CALIBRATION_DIR / f"{name}.json"
        if not p.is_file():
            raise ConfigError(f"calibration={name!r}: no file {str(p)!r}; allowed: a JSON path or a name in {CALIBRATION_DIR}")
        return p
    model = Path(config.learning.model_name_or_path.rstrip("/")).name
    candidate = CALIBRATION_DIR / f"{model}.json"
    return candidate if candidate.is_file() else CALIBRATION_DIR / "default.json"


def load_calibration(path: Path) -> dict[str, TaskCurve]:
    """Task curves from a calibration JSON; errors name the file and the missing field."""
    data = json.loads(path.read_text(encoding="utf-8"))
    names = [f.name for f in fields(TaskCurve)]
    curves = {}
    for task, params in data["tasks"].items():
        missing = [n for n in names if n not in params]
        if missing:
            raise ConfigError(f"calibration {str(path)!r}: task {task!r} lacks {missing}")
        curves[task] = TaskCurve(**{n: float(params[n]) for n in names})
    return curves


def regime_mismatch(path: Path, config: IoVConfig) -> list[str]:
    """Learning fields where ``config`` differs from the regime the calibration was measured in."""
    try:
        regime = json.loads(path.read_text(encoding="utf-8")).get("regime")
    except (OSError, ValueError, AttributeError):
        return []  # load_calibration reports unreadable files; a file without a regime is hand-set priors
    if not isinstance(regime, dict):
        return []
    out = []
    for name, measured in regime.items():
        mine = getattr(config.learning, name, None)
        mine = list(mine) if isinstance(mine, tuple) else mine
        if mine is not None and mine != measured:
            out.append(f"{name}={mine!r} (calibrated at {measured!r})")
    return out


class FastBackend:
    """Surrogate learning backend: vectorised over vehicles, no torch."""

    def __init__(self, config: IoVConfig) -> None:
        self.config = config
        self.calibration_file = calibration_path(config)
        curves = load_calibration(self.calibration_file)
        missing = [t for t in config.tasks.tasks if t not in curves]
        if missing:
            raise ConfigError(f"calibration {str(self.calibration_file)!r} has no curve for tasks {missing}")
        self.curves = [curves[t] for t in config.tasks.tasks]
        self._param = {
            f.name: np.array([getattr(c, f.name) for c in self.curves]) for f in fields(TaskCurve)
        }
        self.hetero = heterogeneity(config.tasks.dirichlet_alpha)
        self.regime_mismatch = regime_mismatch(self.calibration_file, config)
        self.rng = np.random.default_rng(0)
        self.layout: FleetLayout | None = None

    # -- protocol -----------------------------------------------------------------------------
    def reset(self, seed: int, layout: FleetLayout) -> None:
        """Fresh curves: nothing learned yet, every vehicle up to date."""
        self.rng = np.random.default_rng(seed)
        self.layout = layout
        k = len(self.curves)
        self.samples = np.zeros(k)
        self.global_rank = np.full(k, float(self.config.learning.rank_set[0]))
        self.staleness = np.zeros(len(layout.vehicle_task))
        self.vehicle_accuracy = self._p("floor")[layout.vehicle_task].astype(float)

    def expected_tokens(self, task_index: np.ndarray) -> np.ndarray:
        """Tokens of one full local round: steps x batch x mean tokens per sample of the task."""
        ln = self.config.learning
        return ln.local_steps * ln.batch_size * self._p("tokens_per_sample")[task_index]

    def train_round(self, plan: RoundPlan) -> RoundResult:
        """Advance each task's curve by the effective samples its uploaders contributed."""
        assert self.layout is not None, "reset() before train_round()"
        task = self.layout.vehicle_task
        k = len(self.curves)
        contrib = self._contribution(plan)
        agg_eff = self._aggregation_efficiency(plan)
        samples = self.samples + np.bincount(task, weights=contrib, minlength=k) * agg_eff
        uploaded_rank = np.where(plan.uploads, plan.rank, 0).astype(float)
        round_max = np.zeros(k)
        np.maximum.at(round_max, task, uploaded_rank)
        global_rank = np.where(round_max > 0, round_max, self.global_rank)

        noise = self.config.learning.observation_noise
        task_acc = self._accuracy(np.arange(k), global_rank, samples[np.arange(k)])
        if noise:
            task_acc = task_acc + self.rng.normal(0.0, self._p("noise_std"))
        trained = plan.training & (plan.train_fraction > 0)
        staleness = np.where(trained, 0.0, self.staleness + 1.0)
        veh = self._accuracy(task, plan.rank, samples[task]) - self._p("stale_penalty")[task] * np.minimum(
            staleness, MAX_STALENESS_ROUNDS
        )
        if noise:
            veh = veh + self.rng.normal(0.0, self._p("noise_std")[task])
        veh = np.where(trained, veh, self.vehicle_accuracy)
        tokens = np.where(plan.training, self.expected_tokens(task) * plan.train_fraction, 0.0)
        loss = np.where(trained, -np.log(np.clip(veh, 1e-3, 1.0)), np.nan)

        # commit only once everything is computed: an exception above leaves state untouched
        self.samples, self.global_rank, self.staleness = samples, global_rank, staleness
        self.vehicle_accuracy = np.clip(veh, 0.0, 1.0)
        task_acc = np.clip(task_acc, 0.0, 1.0)
        metrics = {t: {"metric": float(a)} for t, a in zip(self.config.tasks.tasks, task_acc, strict=True)}
        return RoundResult(self.vehicle_accuracy.copy(), tokens, loss, task_acc, metrics)

    def describe(self) -> dict[str, Any]:
        """Provenance of the surrogate."""
        out: dict[str, Any] = {
            "fidelity": "fast",
            "calibration": str(self.calibration_file.name),
            "tasks": {t: "surrogate" for t in self.config.tasks.tasks},
            "notes": [],
        }
        if self.regime_mismatch:
            out["notes"].append("the LoRA regime differs from the one the calibration was measured in: "
                                + ", ".join(self.regime_mismatch) + "; the surrogate's curves do not follow it")
        return out

    def close(self) -> None:
        """Nothing to release."""

    # -- oracle access ------------------------------------------------------------------------
    def expected_vehicle_accuracy(self, ranks: np.ndarray) -> np.ndarray:
        """(N, R) noise-free accuracy each vehicle would report after training alone at each rank."""
        assert self.layout is not None, "reset() before expected_vehicle_accuracy()"
        task = self.layout.vehicle_task
        ln = self.config.learning
        r = np.asarray(ranks, dtype=float)[None, :]
        own = samples_per_round(ln.local_steps, ln.batch_size, self.layout.vehicle_shard_size)[:, None]
        speed = rank_speed_table(self._p("speed_rank_half")[task][:, None], r)
        n_after = self.samples[task][:, None] + own * speed * ln.layer_fraction
        return self._accuracy(task[:, None], r, n_after)

    # -- internals ----------------------------------------------------------------------------
    def _p(self, name: str) -> np.ndarray:
        return self._param[name]

    def _accuracy(self, task: np.ndarray, rank: np.ndarray, samples: np.ndarray) -> np.ndarray:
        p = self._p
        return curve_value(
            p("floor")[task], p("ceiling")[task], p("rank_gap")[task], p("rank_half")[task],
            p("noniid_penalty")[task], p("sample_scale")[task], rank, samples, self.hetero,
        )

    def _contribution(self, plan: RoundPlan) -> np.ndarray:
        assert self.layout is not None
        task = self.layout.vehicle_task
        ln = self.config.learning
        base = samples_per_round(ln.local_steps, ln.batch_size, self.layout.vehicle_shard_size)
        speed = rank_speed_table(self._p("speed_rank_half")[task], plan.rank.astype(float))
        layers = plan.layer_mask.mean(axis=1) if plan.layer_mask.size else 1.0
        return np.where(plan.uploads & plan.training, base * plan.train_fraction * speed * layers, 0.0)

    def _aggregation_efficiency(self, plan: RoundPlan) -> np.ndarray:
        """Per-task factor: heterogeneous ranks cost zero-padding some efficiency; fedavg needs equal ranks."""
        assert self.layout is not None
        task = self.layout.vehicle_task
        k = len(self.curves)
        up = plan.uploads & plan.training
        eff = np.ones(k)
        method = self.config.learning.aggregation
        if method not in ("zero_pad", "fedavg"):
            return eff
        for t in range(k):
            ranks = plan.rank[up & (task == t)]
            if len(ranks) < 2:
                continue
            if method == "fedavg" and len(set(ranks.tolist())) > 1:
                raise ValueError(
                    f"aggregation='fedavg' needs equal ranks, task {self.config.tasks.tasks[t]!r} got "
                    f"{sorted(set(ranks.tolist()))}; use aggregation='svd', 'zero_pad' or 'stacking'"
                )
            if method == "zero_pad":
                cv = float(np.std(ranks) / max(np.mean(ranks), 1e-9))
                eff[t] = max(0.0, 1.0 - self.curves[t].zero_pad_penalty * cv)
        return eff


def rank_speed_table(speed_rank_half: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Vectorised ``r / (r + speed_rank_half)`` with broadcasting."""
    return rank / (rank + speed_rank_half)
