"""Aggregate statistics for benchmark runs: means, IQM and stratified bootstrap CIs, via rliable."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np


def stratify(values: Sequence[float], strata: Sequence[object]) -> np.ndarray:
    """Arrange runs as a (runs x strata) matrix, rliable's layout; every stratum needs the same run count."""
    values, strata = np.asarray(values, dtype=float), np.asarray(strata)
    groups = [values[strata == g] for g in dict.fromkeys(strata.tolist())]
    sizes = {len(g) for g in groups}
    if len(sizes) != 1:
        raise ValueError(f"strata must hold equal numbers of runs for a stratified bootstrap, got sizes {sorted(sizes)}")
    return np.stack(groups, axis=1)


def interval_estimate(
    scores: np.ndarray, stat: Callable[[np.ndarray], float] = np.mean, reps: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(point, lo, hi) of ``stat`` over a (runs x strata) matrix: rliable's stratified percentile bootstrap."""
    from rliable import library as rly

    matrix = np.asarray(scores, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    # rliable's StratifiedBootstrap draws indices from numpy's global RNG, ignoring random_state:
    # seed it for the call and restore it, so same seed -> same interval without side effects
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch deprecates RandomState, which rliable still passes
            warnings.simplefilter("ignore", FutureWarning)
            point, interval = rly.get_interval_estimates(
                {"x": matrix}, lambda m: np.array([stat(m)]), reps=reps, confidence_interval_size=level,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(saved)
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def probability_of_improvement(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(point, lo, hi) of P(X > Y) averaged over strata (rliable; Mann-Whitney per stratum, stratified bootstrap).

    ``x`` and ``y`` are (runs x strata) matrices with the strata in the same order.
    """
    from rliable import library as rly
    from rliable import metrics as rl_metrics

    mx, my = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mx, my = (mx[:, None] if mx.ndim == 1 else mx), (my[:, None] if my.ndim == 1 else my)
    if mx.shape[1] != my.shape[1]:
        raise ValueError(f"x and y must have the same strata (columns), got {mx.shape[1]} and {my.shape[1]}")
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            point, interval = rly.get_interval_estimates(
                {"p": [mx, my]}, lambda a, b: np.array([rl_metrics.probability_of_improvement(a, b)]), reps=reps,
                confidence_interval_size=level, random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(saved)
    return float(point["p"][0]), float(interval["p"][0, 0]), float(interval["p"][1, 0])


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean over all runs (rliable's robust aggregate)."""
    from rliable import metrics as rl_metrics

    return float(rl_metrics.aggregate_iqm(np.asarray(scores, dtype=float).reshape(-1, 1)))
