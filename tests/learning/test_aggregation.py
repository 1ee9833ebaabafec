"""Aggregators: exactness, equivalences and the fedavg rank check (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from iov_env.learning import aggregation as agg


def _client(rng: np.random.Generator, rank: int, d_out: int = 12, d_in: int = 10) -> agg.Factors:
    return rng.normal(size=(d_out, rank)).astype(np.float32), rng.normal(size=(rank, d_in)).astype(np.float32)


def test_svd_at_full_rank_reproduces_the_weighted_product() -> None:
    rng = np.random.default_rng(0)
    clients = [_client(rng, 3), _client(rng, 5)]
    sizes = [100.0, 300.0]
    b, a = agg.svd(clients, sizes)
    expected = 0.25 * clients[0][0] @ clients[0][1] + 0.75 * clients[1][0] @ clients[1][1]
    np.testing.assert_allclose(b @ a, expected, rtol=1e-4, atol=1e-4)
    single = agg.svd([clients[0]], [1.0])
    np.testing.assert_allclose(single[0] @ single[1], clients[0][0] @ clients[0][1], atol=1e-4)


def test_svd_prefix_is_the_best_rank_r_approximation_with_balanced_factors() -> None:
    rng = np.random.default_rng(1)
    clients = [_client(rng, 4), _client(rng, 4)]
    b, a = agg.svd(clients, [1.0, 1.0])
    dense = b @ a
    s = np.linalg.svd(dense, compute_uv=False)
    for r in (1, 2, 5):
        br, ar = agg.truncate((b, a), r)
        err = np.linalg.norm(dense - br @ ar)
        assert err == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-3, abs=1e-4)
    # sqrt(Sigma) on both sides: column norms of B equal row norms of A
    np.testing.assert_allclose(np.linalg.norm(b, axis=0), np.linalg.norm(a, axis=1), rtol=1e-4)


def test_svd_returns_only_the_components_the_average_can_hold() -> None:
    """sum r_i components, no noise-level tail: a vehicle at a higher rank gets empty (re-initialised) slots."""
    rng = np.random.default_rng(2)
    b, a = agg.svd([_client(rng, 1), _client(rng, 2)], [1.0, 1.0])
    assert b.shape == (12, 3) and a.shape == (3, 10)
    padded_b, padded_a = agg.truncate((b, a), 8)
    assert not padded_b[:, 3:].any() and not padded_a[3:].any()


def test_truncate_pads_with_zeros_beyond_the_available_rank() -> None:
    b, a = _client(np.random.default_rng(2), 2)
    bp, ap = agg.truncate((b, a), 5)
    assert bp.shape == (12, 5) and ap.shape == (5, 10)
    assert not bp[:, 2:].any() and not ap[2:].any()
    np.testing.assert_allclose(bp @ ap, b @ a, atol=1e-5)


def test_zero_pad_with_equal_ranks_equals_fedavg() -> None:
    rng = np.random.default_rng(3)
    clients = [_client(rng, 4) for _ in range(3)]
    sizes = [10.0, 20.0, 70.0]
    fa = agg.fedavg(clients, sizes)
    zp = agg.zero_pad(clients, sizes, norm_weighted=False)
    np.testing.assert_allclose(zp[0], fa[0], atol=1e-6)
    np.testing.assert_allclose(zp[1], fa[1], atol=1e-6)
    # with norm weighting, clients of equal ||B A||_F also reduce to fedavg
    same = [(c[0] / np.linalg.norm(c[0] @ c[1]) ** 0.5, c[1] / np.linalg.norm(c[0] @ c[1]) ** 0.5) for c in clients]
    np.testing.assert_allclose(agg.zero_pad(same, sizes)[0], agg.fedavg(same, sizes)[0], atol=1e-5)


def test_zero_pad_mixed_ranks_pads_to_the_largest_rank() -> None:
    rng = np.random.default_rng(4)
    clients = [_client(rng, 2), _client(rng, 6)]
    b, a = agg.zero_pad(clients, [1.0, 1.0])
    assert b.shape == (12, 6) and a.shape == (6, 10)
    norms = np.array([np.linalg.norm(x @ y) for x, y in clients])
    w = norms / norms.sum()
    np.testing.assert_allclose(a[2:], w[1] * clients[1][1][2:], rtol=1e-4)


def test_stacking_reproduces_the_weighted_sum_exactly() -> None:
    rng = np.random.default_rng(5)
    clients = [_client(rng, r) for r in (1, 3, 8)]
    sizes = [5.0, 3.0, 2.0]
    b, a = agg.stacking(clients, sizes)
    expected = sum(w * (x.astype(np.float64) @ y) for w, (x, y) in zip([0.5, 0.3, 0.2], clients, strict=True))
    np.testing.assert_allclose(b @ a, expected, rtol=1e-5, atol=1e-5)
    # prefix order: the rank-1 prefix is the best rank-1 approximation
    s = np.linalg.svd(expected, compute_uv=False)
    err = np.linalg.norm(expected - b[:, :1] @ a[:1])
    assert err == pytest.approx(np.sqrt(np.sum(s[1:] ** 2)), rel=1e-4)


def test_fedavg_with_mixed_ranks_raises_naming_the_ranks() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"ranks \[2, 4\]"):
        agg.fedavg([_client(rng, 2), _client(rng, 4)], [1.0, 1.0])


def test_bad_inputs_get_clear_errors() -> None:
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match="data sizes"):
        agg.svd([_client(rng, 2)], [1.0, 2.0])
    with pytest.raises(ValueError, match="not a LoRA pair"):
        agg.svd([(np.zeros((4, 2)), np.zeros((3, 5)))], [1.0])
    with pytest.raises(ValueError, match="unknown"):
        agg.aggregate("mean", [_client(rng, 2)], [1.0])


def test_weighted_mean_of_heads() -> None:
    out = agg.weighted_mean([np.zeros(3), np.ones(3)], [1.0, 3.0])
    np.testing.assert_allclose(out, np.full(3, 0.75))
