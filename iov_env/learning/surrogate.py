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

import copy
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from iov_env.config import ConfigError, IoVConfig
from iov_env.files import DataFormatError, line_of_key, parse_json, read_text
from iov_env.lazy import lazy_import
from iov_env.learning.backend import FleetLayout, RoundPlan, RoundResult

loops = lazy_import("iov_env.learning.surrogate_loops")  # compiled round: numba loads on first use

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
# the curve parameters the compiled round reads, as columns of a (task or vehicle) x parameter matrix
CURVE_COLUMNS = (
    "floor", "ceiling", "rank_gap", "rank_half", "noniid_penalty", "sample_scale", "stale_penalty", "speed_rank_half",
)
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
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (
        floor, ceiling, rank_gap, rank_half, noniid_penalty, sample_scale, rank, samples)))
    out = np.empty(arrays[0].shape)
    loops.curve_points(*(np.ascontiguousarray(a).reshape(-1) for a in arrays), float(hetero), out.reshape(-1))
    return out


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


# Each parameter's allowed interval (closed unless the bool says the low end is open). Beyond making
# sense, the bounds keep the surrogate's arithmetic finite: a sample_scale of 0 divides by zero, a
# tokens_per_sample of 1e308 makes the round's energy infinite.
CURVE_LIMITS: dict[str, tuple[float, float, bool]] = {
    "floor": (0.0, 1.0, False),
    "ceiling": (0.0, 1.0, False),
    "rank_gap": (0.0, 1.0, False),
    "rank_half": (0.0, 1e6, False),
    "sample_scale": (0.0, 1e12, True),
    "speed_rank_half": (0.0, 1e6, False),
    "noniid_penalty": (0.0, 1.0, False),
    "stale_penalty": (0.0, 1.0, False),
    "noise_std": (0.0, 1.0, False),
    "tokens_per_sample": (0.0, 1e6, True),
    "zero_pad_penalty": (0.0, 1e3, False),
}


def calibration_path(config: IoVConfig) -> Path:
    """The calibration file for this config: explicit, else named after the base model, else default."""
    name = config.learning.calibration
    try:
        if name:
            p = Path(name)
            if p.suffix != ".json":
                p = CALIBRATION_DIR / f"{name}.json"
            if p.exists() and not p.is_file():  # a folder, or a link to one: say so, not "no file"
                raise ConfigError(
                    f"calibration={name!r:.120}: {str(p)!r:.160} is a directory, not a file; allowed: a JSON path "
                    f"or a name in {CALIBRATION_DIR}", "calibration",
                )
            if not p.is_file():
                raise ConfigError(
                    f"calibration={name!r:.120}: no file {str(p)!r:.160}; allowed: a JSON path or a name in "
                    f"{CALIBRATION_DIR}", "calibration",
                )
            return p
        model = Path(config.learning.model_name_or_path.rstrip("/")).name
        candidate = CALIBRATION_DIR / f"{model}.json"
        # a model may be calibrated in several LoRA regimes (<model>-<regime>.json): take the one measured in
        # this config's regime, so switching regime switches the fast world's curves with it
        for path in [candidate, *sorted(CALIBRATION_DIR.glob(f"{model}-*.json"))]:
            if path.is_file() and not regime_mismatch(path, config):
                return path
        return candidate if candidate.is_file() else CALIBRATION_DIR / "default.json"
    except OSError as exc:  # a name longer than the file system allows
        field = "calibration" if name else "model_name_or_path"
        value = name or config.learning.model_name_or_path
        raise ConfigError(f"{field}={value!r:.120} cannot name a calibration file: {exc.strerror or exc}; "
                          f"allowed: a JSON path or a name in {CALIBRATION_DIR}", field) from None


def load_calibration(path: Path) -> dict[str, TaskCurve]:
    """Task curves from a calibration JSON; every error is a ``DataFormatError`` naming the file and line."""
    text = read_text(path, DataFormatError, "calibration file")
    data = parse_json(text, str(path))

    def fail(line: int | None, problem: str) -> DataFormatError:
        return DataFormatError(f"calibration file {path}:{line or 1}: {problem}")

    if not isinstance(data, dict):
        raise fail(1, f"holds a {type(data).__name__}; allowed: an object with a 'tasks' object")
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise fail(line_of_key(text, "tasks"), "'tasks' is missing or not a non-empty object of task -> curve parameters")
    names = [f.name for f in fields(TaskCurve)]
    curves = {}
    for task, params in tasks.items():
        if not isinstance(params, dict):
            raise fail(line_of_key(text, "tasks", task), f"tasks.{task} is a {type(params).__name__}; allowed: an object "
                       f"with {names}")
        missing = [n for n in names if n not in params]
        if missing:
            raise fail(line_of_key(text, "tasks", task), f"task {task!r} lacks {missing}")
        for n in names:
            v = params[n]
            lo, hi, lo_open = CURVE_LIMITS[n]
            try:
                real = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            except OverflowError:  # an integer too large for a float
                real = False
            if not real or not ((lo < v) if lo_open else (lo <= v)) or v > hi:
                interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
                raise fail(line_of_key(text, "tasks", task, n), f"tasks.{task}.{n}={v!r:.60}; allowed: a number in {interval}")
        curves[task] = TaskCurve(**{n: float(params[n]) for n in names})
    return curves


@dataclass(frozen=True)
class SurrogateView:
    """What an oracle reads of the surrogate: per task (K) and rank (R), and per vehicle (N).

    A vehicle at rank index j of task k that trains and uploads adds ``vehicle_samples * speed[k, j]``
    (times its train fraction, layer share and the aggregation's efficiency) to the task's samples S;
    its accuracy after the round is ``floor + (top[k, j] - floor) * (1 - exp(-S / sample_scale))``.
    """

    floor: np.ndarray  # (K,)
    top: np.ndarray  # (K, R) the accuracy each rank tends to with unlimited data
    speed: np.ndarray  # (K, R) per-sample learning efficiency of each rank, in (0, 1)
    sample_scale: np.ndarray  # (K,)
    samples: np.ndarray  # (K,) effective samples absorbed so far
    vehicle_samples: np.ndarray  # (N,) fresh-equivalent samples of one full local round


def regime_mismatch(path: Path, config: IoVConfig) -> list[str]:
    """Learning fields where ``config`` differs from the regime the calibration was measured in."""
    try:
        regime = parse_json(read_text(path, DataFormatError, "calibration file"), str(path)).get("regime")
    except (OSError, DataFormatError, AttributeError):
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
            raise ConfigError(f"calibration {str(self.calibration_file)!r} has no curve for tasks {missing}; allowed: "
                              f"tasks among {sorted(curves)}", "tasks")
        self.curves = [curves[t] for t in config.tasks.tasks]
        self._param = {
            f.name: np.array([getattr(c, f.name) for c in self.curves]) for f in fields(TaskCurve)
        }
        self._task_curve = np.column_stack([self._param[name] for name in CURVE_COLUMNS]).astype(float)
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
        # fixed for the episode: each vehicle's curve parameters and the fresh samples of a full local round
        self._vehicle_curve = self._task_curve[layout.vehicle_task]
        self._vehicle_noise_std = self._p("noise_std")[layout.vehicle_task]
        ln = self.config.learning
        self._vehicle_samples = samples_per_round(ln.local_steps, ln.batch_size, layout.vehicle_shard_size)
        self._vehicle_tokens = np.asarray(self.expected_tokens(layout.vehicle_task), dtype=float)

    def expected_tokens(self, task_index: np.ndarray) -> np.ndarray:
        """Tokens of one full local round: steps x batch x mean tokens per sample of the task."""
        ln = self.config.learning
        return ln.local_steps * ln.batch_size * self._p("tokens_per_sample")[task_index]

    def train_round(self, plan: RoundPlan) -> RoundResult:
        """Advance each task's curve by the effective samples its uploaders contributed."""
        assert self.layout is not None, "reset() before train_round()"
        layers = plan.layer_mask
        full = not layers.size or np.logical_and.reduce(layers, axis=None)
        layer_share = np.ones(len(plan.rank)) if full else layers.mean(axis=1)  # FedRA: the share trained
        task_noise, vehicle_noise = self._draw_noise(self.rng)
        samples, global_rank, task_acc, staleness, vehicle_acc, tokens, loss = loops.surrogate_round(
            self.layout.vehicle_task, np.asarray(plan.rank), np.asarray(plan.training, dtype=bool),
            np.asarray(plan.uploads, dtype=bool), np.asarray(plan.train_fraction, dtype=float), layer_share,
            self._aggregation_efficiency(plan), self.samples, self.global_rank, self.staleness,
            self.vehicle_accuracy, task_noise, vehicle_noise, self._task_curve, self._vehicle_curve,
            self._vehicle_samples, self._vehicle_tokens, self.hetero, float(MAX_STALENESS_ROUNDS),
        )
        # commit only once everything is computed: an exception above leaves state untouched
        self.samples, self.global_rank, self.staleness, self.vehicle_accuracy = samples, global_rank, staleness, vehicle_acc
        metrics = {t: {"metric": a} for t, a in zip(self.config.tasks.tasks, task_acc.tolist(), strict=True)}
        return RoundResult(vehicle_acc.copy(), tokens, loss, task_acc, metrics)

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
    def next_round_noise(self) -> tuple[np.ndarray, np.ndarray]:
        """(K,) task and (N,) vehicle observation noise that the next ``train_round`` will add (for oracles).

        Drawn from a copy of the generator, so the episode is not disturbed; the draws are fixed-size
        every round (common random numbers), so this is what any policy will see.
        """
        return self._draw_noise(copy.deepcopy(self.rng))

    def oracle_view(self, ranks: np.ndarray) -> SurrogateView:
        """The learning curves as an oracle needs them: each task's ceiling and learning speed per rank."""
        assert self.layout is not None, "reset() before oracle_view()"
        r = np.asarray(ranks, dtype=float)[None, :]
        p = self._p
        k = len(self.curves)
        col = (slice(None), None)
        # the curve's limit (infinitely many samples) at each rank, through the one formula
        top = curve_value(
            p("floor")[col], p("ceiling")[col], p("rank_gap")[col], p("rank_half")[col],
            p("noniid_penalty")[col], p("sample_scale")[col], r, np.full((k, 1), np.inf), self.hetero,
        )
        return SurrogateView(
            floor=p("floor").astype(float),
            top=top,
            speed=rank_speed_table(p("speed_rank_half")[col], r),
            sample_scale=p("sample_scale").astype(float),
            samples=self.samples.copy(),
            vehicle_samples=self._vehicle_samples.copy(),
        )

    def expected_vehicle_accuracy(self, ranks: np.ndarray) -> np.ndarray:
        """(N, R) noise-free accuracy each vehicle would report after training alone at each rank."""
        assert self.layout is not None, "reset() before expected_vehicle_accuracy()"
        task = self.layout.vehicle_task
        ln = self.config.learning
        r = np.asarray(ranks, dtype=float)[None, :]
        speed = rank_speed_table(self._vehicle_curve[:, None, CURVE_COLUMNS.index("speed_rank_half")], r)
        n_after = self.samples[task][:, None] + self._vehicle_samples[:, None] * speed * ln.layer_fraction
        return self._accuracy(task[:, None], r, n_after)

    # -- internals ----------------------------------------------------------------------------
    def _p(self, name: str) -> np.ndarray:
        return self._param[name]

    def _draw_noise(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One round's (K,) task and (N,) vehicle noise; zeros without observation noise (nothing drawn)."""
        assert self.layout is not None
        task = self.layout.vehicle_task
        if not self.config.learning.observation_noise:
            return np.zeros(len(self.curves)), np.zeros(len(task))
        # normal(0, s) draws s * standard_normal(): the same numbers, without the per-call parameter checks
        task_noise = rng.standard_normal(len(self.curves)) * self._p("noise_std")
        return task_noise, rng.standard_normal(len(task)) * self._vehicle_noise_std

    def _accuracy(self, task: np.ndarray, rank: np.ndarray, samples: np.ndarray) -> np.ndarray:
        return _curve({name: p[task] for name, p in self._param.items()}, rank, samples, self.hetero)

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


def _curve(param: dict[str, np.ndarray], rank: np.ndarray, samples: np.ndarray, hetero: float) -> np.ndarray:
    """``curve_value`` on a dict of parameter arrays already laid out like ``rank`` and ``samples``."""
    return curve_value(
        param["floor"], param["ceiling"], param["rank_gap"], param["rank_half"], param["noniid_penalty"],
        param["sample_scale"], rank, samples, hetero,
    )


def rank_speed_table(speed_rank_half: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Vectorised ``r / (r + speed_rank_half)`` with broadcasting (compiled for scalars in the surrogate's round)."""
    return rank / (rank + speed_rank_half)
