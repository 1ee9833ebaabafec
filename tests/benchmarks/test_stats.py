"""benchmarks/stats.py: rliable-backed interval estimates, stratification and IQM."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.stats import interval_estimate, iqm, stratify


def test_stratified_bootstrap_covers_the_mean_and_respects_strata() -> None:
    """Point = statistic of the data; CI brackets it; stratifying removes between-stratum resampling noise."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 10), rng.normal(100, 1, 10)])
    strata = ["a"] * 10 + ["b"] * 10
    point, lo, hi = interval_estimate(stratify(x, strata), reps=500)
    assert point == pytest.approx(x.mean()) and lo < point < hi
    _, lo_u, hi_u = interval_estimate(x, reps=500)
    assert (hi - lo) < 0.2 * (hi_u - lo_u)  # unstratified resampling mixes the two presets' levels
    assert interval_estimate(np.full(5, 3.0), reps=50) == pytest.approx((3.0, 3.0, 3.0))


def test_same_seed_same_interval() -> None:
    """Bootstrap CIs are seeded: identical inputs give identical intervals."""
    x = np.random.default_rng(1).normal(size=12)
    assert interval_estimate(x, reps=300, seed=4) == interval_estimate(x, reps=300, seed=4)


def test_stratify_rejects_unequal_strata() -> None:
    """rliable's layout needs the same number of runs per stratum; the error says so."""
    with pytest.raises(ValueError, match="equal numbers of runs"):
        stratify([1.0, 2.0, 3.0], ["a", "a", "b"])
    assert stratify([1.0, 2.0, 3.0, 4.0], ["a", "b", "a", "b"]).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_iqm_ignores_the_tails() -> None:
    """IQM of 1..8 with outliers at both ends is the mean of the middle half."""
    x = np.array([-1000.0, 2, 3, 4, 5, 6, 7, 1000.0])
    assert iqm(x) == pytest.approx(4.5)


def test_probability_of_improvement_orders_and_brackets() -> None:
    """P(X > Y) is 1 when X always wins, 0.5 for identical scores, and its CI brackets the point."""
    from benchmarks.stats import probability_of_improvement

    rng = np.random.default_rng(0)
    x, y = rng.normal(5, 1, (8, 3)), rng.normal(0, 1, (8, 3))
    assert probability_of_improvement(x, y, reps=50)[0] == pytest.approx(1.0)
    assert probability_of_improvement(y, x, reps=50)[0] == pytest.approx(0.0)
    assert probability_of_improvement(x, x, reps=50)[0] == pytest.approx(0.5)
    z = x + rng.normal(0, 3, x.shape)
    point, lo, hi = probability_of_improvement(z, x, reps=100)
    assert lo <= point <= hi and 0.0 <= lo and hi <= 1.0
    with pytest.raises(ValueError, match="same strata"):
        probability_of_improvement(x, y[:, :2])
