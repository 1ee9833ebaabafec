"""FastBackend: calibrated learning curves in place of LoRA training, thousands of times faster.

Per task ``k`` the global model has absorbed ``n_k`` effective samples. Its accuracy at rank r is

    acc_k(r, n) = floor + (ceiling_k(r) - floor) * (1 - exp(-n / sample_scale)) * gate(n)
    ceiling_k(r) = ceiling - rank_gap * rank_half / (rank_half + r) - noniid_penalty * H
    gate(n) = 1 - exp(-(n / onset_samples) ** onset_steepness)      (1 when onset_samples is 0)

with non-IID heterogeneity ``H = 1 / (1 + dirichlet_alpha)``: diminishing returns in data, a
lower ceiling at small ranks, a penalty for skewed partitions, and an onset: a model that has absorbed
fewer than about ``onset_samples`` has not left its plateau yet (CoNLL: no entity found until then). A
round adds, per uploading vehicle, ``samples * train_fraction * speed(r) * layer_fraction * agg_eff`` with
``speed(r) = r^a / (r^a + speed_rank_half^a)``, ``a = speed_exponent``; with n > 1 uploaders the round's
sum is divided by ``n ** federation_exponent`` (0: their data adds up; 1: the average of their models
learns what one of them did), where
``samples = steps*batch*(1 - exp(-shard/(steps*batch)))`` (re-visiting a small shard is worth less).
Parameters live in ``calibration/<model>.json``; the file's ``form`` says which model of a vehicle's
reported metric it was fitted for:

* form 1 (the v0/v1 worlds, frozen): a training vehicle reports the curve at its own rank on the task's
  samples after the round, plus Gaussian noise of SD ``noise_std`` drawn afresh every vehicle-round (the
  calibration fit's whole residual). Its stale penalty is computed after the staleness is reset, so it
  is always 0; kept as published.
* form 2 (the v2 worlds): a training vehicle reports its own local model, as the real backend does: the
  task's samples before the round plus what its own local round added at its rank, less
  ``stale_penalty`` per round it missed before this one (at most 10). Its noise has the structure the real
  runs show. A vehicle's local validation split is one fixed sample for the whole episode, so its
  binomial measurement error, ``sqrt(p (1 - p) / n_val)`` at the task's mid-curve metric
  ``p = (floor + ceiling) / 2``, is drawn once per episode, with the rest of the per-vehicle offset (SD
  ``vehicle_persistent_std``); what changes from pull to pull is a round-to-round part (SD ``round_std``,
  how differently successive adapters score on the same examples). The sizes do not depend on the
  action, so every policy meets the same draws. The task metric gets a per-episode offset (SD
  ``task_persistent_std``) and binomial noise at ``eval_subset_size`` each round.
"""

from __future__ import annotations

import copy
import math
from dataclasses import MISSING, dataclass, fields
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
    "onset_samples", "onset_steepness", "speed_exponent", "federation_exponent",
)
FORMS = (1, 2)  # see the module docstring
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
    # form 2 (older files omit them: their curves are exponential and their noise is noise_std alone)
    onset_samples: float = 0.0
    onset_steepness: float = 1.0
    speed_exponent: float = 1.0
    federation_exponent: float = 0.0
    vehicle_persistent_std: float = 0.0
    round_std: float = 0.0
    task_persistent_std: float = 0.0

    @property
    def mid_metric(self) -> float:
        """The metric halfway up the curve, at which form 2's binomial measurement noise is taken."""
        return 0.5 * (self.floor + self.ceiling)


def heterogeneity(dirichlet_alpha: float) -> float:
    """Label skew of a Dirichlet(alpha) partition mapped to [0, 1): 0 is IID."""
    return 1.0 / (1.0 + dirichlet_alpha)


def curve_value(
    floor: np.ndarray, ceiling: np.ndarray, rank_gap: np.ndarray, rank_half: np.ndarray,
    noniid_penalty: np.ndarray, sample_scale: np.ndarray, rank: np.ndarray, samples: np.ndarray, hetero: float,
    onset_samples: np.ndarray | float = 0.0, onset_steepness: np.ndarray | float = 1.0,
) -> np.ndarray:
    """The learning-curve formula on broadcastable parameter arrays (see the module docstring)."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (
        floor, ceiling, rank_gap, rank_half, noniid_penalty, sample_scale, rank, samples, onset_samples,
        onset_steepness)))
    out = np.empty(arrays[0].shape)
    flat = [np.array(a, dtype=float).reshape(-1) for a in arrays]  # copies: broadcast views are read-only
    loops.curve_points(*flat[:8], float(hetero), flat[8], flat[9], out.reshape(-1))
    return out


def predict_accuracy(curve: TaskCurve, rank: np.ndarray, effective_samples: np.ndarray, hetero: float) -> np.ndarray:
    """Noise-free metric of a model at ``rank`` after absorbing ``effective_samples``."""
    return curve_value(
        curve.floor, curve.ceiling, curve.rank_gap, curve.rank_half, curve.noniid_penalty, curve.sample_scale,
        rank, effective_samples, hetero, curve.onset_samples, curve.onset_steepness,
    )


def binomial_sd(metric: np.ndarray | float, examples: np.ndarray | float) -> np.ndarray:
    """SD of a proportion ``metric`` measured on ``examples`` independent examples (first principles)."""
    p = np.clip(np.asarray(metric, dtype=float), 0.0, 1.0)
    return np.sqrt(p * (1.0 - p) / np.maximum(np.asarray(examples, dtype=float), 1.0))


def local_validation_examples(shard_size: np.ndarray, val_fraction: float) -> np.ndarray:
    """Examples in a vehicle's local validation split: ``val_fraction`` of its local data, at least 1.

    The same rule as ``tasks.partition`` (a shard of n training examples comes with n f / (1 - f) more).
    """
    n = np.asarray(shard_size, dtype=float)
    return np.maximum(1.0, np.round(n * val_fraction / (1.0 - val_fraction)))


def rank_speed(curve: TaskCurve, rank: np.ndarray) -> np.ndarray:
    """Per-sample learning efficiency of a rank-``r`` adapter, in (0, 1)."""
    return rank_speed_table(np.asarray(curve.speed_rank_half), np.asarray(rank, dtype=float),
                            np.asarray(curve.speed_exponent))


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
    "onset_samples": (0.0, 1e12, False),
    "onset_steepness": (0.1, 100.0, False),
    "speed_exponent": (0.1, 10.0, False),
    "federation_exponent": (0.0, 1.0, False),
    "vehicle_persistent_std": (0.0, 1.0, False),
    "round_std": (0.0, 1.0, False),
    "task_persistent_std": (0.0, 1.0, False),
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
    required = [f.name for f in fields(TaskCurve) if f.default is MISSING]
    curves = {}
    for task, params in tasks.items():
        if not isinstance(params, dict):
            raise fail(line_of_key(text, "tasks", task), f"tasks.{task} is a {type(params).__name__}; allowed: an object "
                       f"with {required}")
        missing = [n for n in required if n not in params]
        if missing:
            raise fail(line_of_key(text, "tasks", task), f"task {task!r} lacks {missing}")
        present = [n for n in names if n in params]
        for n in present:
            v = params[n]
            lo, hi, lo_open = CURVE_LIMITS[n]
            try:
                real = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            except OverflowError:  # an integer too large for a float
                real = False
            if not real or not ((lo < v) if lo_open else (lo <= v)) or v > hi:
                interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
                raise fail(line_of_key(text, "tasks", task, n), f"tasks.{task}.{n}={v!r:.60}; allowed: a number in {interval}")
        curves[task] = TaskCurve(**{n: float(params[n]) for n in present})
    return curves


def calibration_form(path: Path) -> int:
    """The ``form`` a calibration file was fitted for (1 when it names none; see the module docstring)."""
    text = read_text(path, DataFormatError, "calibration file")
    data = parse_json(text, str(path))
    form = data.get("form", 1) if isinstance(data, dict) else 1
    if form not in FORMS or isinstance(form, bool):
        raise DataFormatError(f"calibration file {path}:{line_of_key(text, 'form') or 1}: form={form!r:.60}; "
                              f"allowed: one of {list(FORMS)}")
    return int(form)


@dataclass(frozen=True)
class SurrogateView:
    """What an oracle reads of the surrogate: per task (K) and rank (R), and per vehicle (N).

    A vehicle at rank index j of task k that trains and uploads adds ``vehicle_samples * speed[k, j]``
    (times its train fraction, layer share and the aggregation's efficiency) to the task's samples S.
    With ``h = exp(-S / sample_scale)`` its reported accuracy is ``floor + (top[k, j] - floor) * progress(k, h)``,
    where S is the task's samples after the round (form 1) or before it plus the vehicle's own (form 2).
    """

    floor: np.ndarray  # (K,)
    top: np.ndarray  # (K, R) the accuracy each rank tends to with unlimited data
    speed: np.ndarray  # (K, R) per-sample learning efficiency of each rank, in (0, 1)
    sample_scale: np.ndarray  # (K,)
    samples: np.ndarray  # (K,) effective samples absorbed so far
    vehicle_samples: np.ndarray  # (N,) fresh-equivalent samples of one full local round
    onset_samples: np.ndarray  # (K,) the curve's onset (0: none)
    onset_steepness: np.ndarray  # (K,)
    federation_exponent: np.ndarray  # (K,) a round's samples are divided by n ** this with n > 1 uploaders
    form: int  # 1: a vehicle reports the task's model after the round; 2: its own local model (module docstring)

    def progress(self, task: int | np.ndarray, h: np.ndarray) -> np.ndarray:
        """The share of each rank's gain reached at ``h = exp(-S / sample_scale)``: ``(1 - h) gate(S)``.

        ``task`` is a task index or an array of them broadcasting with ``h``.
        """
        h = np.asarray(h, dtype=float)
        onset = self.onset_samples[task]
        if not np.any(onset > 0):
            return 1.0 - h  # every form-1 file: the exponential curve, bit for bit
        with np.errstate(divide="ignore"):
            samples = -self.sample_scale[task] * np.log(h)  # h = 0 is infinitely many samples: the gate is open
        ratio = np.divide(samples, onset, out=np.full(np.broadcast(samples, onset).shape, np.inf), where=onset > 0)
        return (1.0 - h) * (1.0 - np.exp(-(ratio ** self.onset_steepness[task])))


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
        self.form = calibration_form(self.calibration_file)
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
        ln = self.config.learning
        self._vehicle_samples = samples_per_round(ln.local_steps, ln.batch_size, layout.vehicle_shard_size)
        self._vehicle_tokens = np.asarray(self.expected_tokens(layout.vehicle_task), dtype=float)
        self._vehicle_sd = self._vehicle_noise_sd(layout)
        if self.form == 2:
            # form 2's persistent parts are drawn once, here, from the episode's generator
            mid = np.array([c.mid_metric for c in self.curves])
            self._task_round_sd = binomial_sd(mid, self.config.learning.eval_subset_size)
            on = float(bool(self.config.learning.observation_noise))
            self._task_offset = on * self.rng.standard_normal(k) * self._p("task_persistent_std")
            self._vehicle_offset = on * self.rng.standard_normal(len(layout.vehicle_task)) * self._vehicle_sd["offset"]

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
            self._vehicle_samples, self._vehicle_tokens, self.hetero, float(MAX_STALENESS_ROUNDS), self.form,
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
            "surrogate_form": self.form,
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
            speed=rank_speed_table(p("speed_rank_half")[col], r, p("speed_exponent")[col]),
            sample_scale=p("sample_scale").astype(float),
            samples=self.samples.copy(),
            vehicle_samples=self._vehicle_samples.copy(),
            onset_samples=p("onset_samples").astype(float),
            onset_steepness=p("onset_steepness").astype(float),
            federation_exponent=p("federation_exponent").astype(float),
            form=self.form,
        )

    def expected_vehicle_accuracy(self, ranks: np.ndarray) -> np.ndarray:
        """(N, R) noise-free accuracy each vehicle would report after training alone at each rank."""
        assert self.layout is not None, "reset() before expected_vehicle_accuracy()"
        task = self.layout.vehicle_task
        ln = self.config.learning
        r = np.asarray(ranks, dtype=float)[None, :]
        speed = rank_speed_table(self._vehicle_curve[:, None, CURVE_COLUMNS.index("speed_rank_half")], r,
                                 self._vehicle_curve[:, None, CURVE_COLUMNS.index("speed_exponent")])
        n_after = self.samples[task][:, None] + self._vehicle_samples[:, None] * speed * ln.layer_fraction
        acc = self._accuracy(task[:, None], r, n_after)
        if self.form == 2:  # form 2 reports this local model, less the rounds the vehicle missed
            stale = self._p("stale_penalty")[task] * np.minimum(self.staleness, MAX_STALENESS_ROUNDS)
            acc = acc - stale[:, None]
        return acc

    def vehicle_noise_sd(self) -> dict[str, np.ndarray]:
        """(N,) SDs of each vehicle's observation noise this episode: ``pull`` (drawn every round), ``offset``
        (drawn once per episode) and ``binomial``, the measurement part of a reading at its local validation size
        (form 2 puts it in the offset; form 1 has no separate part: 0)."""
        assert self.layout is not None, "reset() before vehicle_noise_sd()"
        return {k: v.copy() for k, v in self._vehicle_sd.items()}

    # -- internals ----------------------------------------------------------------------------
    def _vehicle_noise_sd(self, layout: FleetLayout) -> dict[str, np.ndarray]:
        """The noise sizes of ``vehicle_noise_sd`` for a fleet: one formula for the draws and for whoever reads them."""
        task = layout.vehicle_task
        if self.form == 1:  # the fit's whole residual, drawn afresh each vehicle-round
            zeros = np.zeros(len(task))
            return {"pull": self._p("noise_std")[task], "offset": zeros, "binomial": zeros.copy()}
        mid = np.array([c.mid_metric for c in self.curves])[task]
        val = local_validation_examples(layout.vehicle_shard_size, self.config.tasks.local_val_fraction)
        binomial = binomial_sd(mid, val)
        # the validation split is one fixed sample for the episode: its binomial error is in the offset
        return {"pull": self._p("round_std")[task], "binomial": binomial,
                "offset": np.hypot(self._p("vehicle_persistent_std")[task], binomial)}

    def _p(self, name: str) -> np.ndarray:
        return self._param[name]

    def _draw_noise(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One round's (K,) task and (N,) vehicle noise; zeros without observation noise (nothing drawn)."""
        assert self.layout is not None
        task = self.layout.vehicle_task
        if not self.config.learning.observation_noise:
            return np.zeros(len(self.curves)), np.zeros(len(task))
        if self.form == 2:
            # fixed-size draws every round (common random numbers), scaled by sizes that no action changes
            task_noise = self._task_offset + rng.standard_normal(len(self.curves)) * self._task_round_sd
            return task_noise, self._vehicle_offset + rng.standard_normal(len(task)) * self._vehicle_sd["pull"]
        # normal(0, s) draws s * standard_normal(): the same numbers, without the per-call parameter checks
        task_noise = rng.standard_normal(len(self.curves)) * self._p("noise_std")
        return task_noise, rng.standard_normal(len(task)) * self._vehicle_sd["pull"]

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
        param["sample_scale"], rank, samples, hetero, param["onset_samples"], param["onset_steepness"],
    )


def rank_speed_table(speed_rank_half: np.ndarray, rank: np.ndarray, speed_exponent: np.ndarray | float = 1.0) -> np.ndarray:
    """Per-sample learning efficiency ``r^a / (r^a + speed_rank_half^a)``, broadcasting (compiled for scalars too).

    ``a = speed_exponent``; at 1 (every form-1 file) it is ``r / (r + speed_rank_half)`` exactly: ``x ** 1.0 == x``.
    A larger ``a`` makes the step from one rank to the next steeper (CoNLL: only rank 64 finds entities in one round).
    """
    ra = rank ** speed_exponent
    return ra / (ra + speed_rank_half ** speed_exponent)
