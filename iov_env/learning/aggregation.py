"""Aggregation of heterogeneous-rank LoRA updates (pure numpy, no torch).

Every aggregator takes, for ONE adapted layer, the clients' factors ``(B_i, A_i)`` with
``B_i: (d_out, r_i)`` and ``A_i: (r_i, d_in)`` (the LoRA scaling already folded in, so the
layer's update is ``B_i @ A_i``) and their data sizes ``n_i``, and returns one pair ``(B, A)``
ordered so that a vehicle at rank ``r`` receives the prefix ``B[:, :r], A[:r]``:

- ``svd`` (paper / FlexLoRA): ``dW = sum_i w_i B_i A_i``, then SVD; the factors are
  ``U sqrt(S)`` and ``sqrt(S) V^T`` (sqrt(Sigma) on both sides keeps them balanced), so the prefix
  is the best rank-r approximation.
- ``zero_pad`` (HetLoRA): zero-pad every factor to the largest rank, average A and B separately
  with weights ``n_i * ||B_i A_i||_F``; the prefix is HetLoRA's truncation.
- ``fedavg`` (HomoLoRA): plain weighted average of A and B; all ranks must be equal.
- ``stacking`` (FLoRA): the exact sum ``[w_1 B_1 ... w_n B_n] @ [A_1; ...; A_n]``; its SVD is taken
  through QR of the thin stacked factors (never forming a dense d_out x d_in matrix).

Classifier heads are plain tensors: ``weighted_mean`` FedAvg-s them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Factors = tuple[np.ndarray, np.ndarray]  # (B: d_out x r, A: r x d_in)

__all__ = [
    "AGGREGATORS",
    "Factors",
    "aggregate",
    "fedavg",
    "stacking",
    "svd",
    "svd_factors",
    "truncate",
    "weighted_mean",
    "zero_pad",
]


def _weights(sizes: Sequence[float], count: int) -> np.ndarray:
    """Normalised non-negative weights (data sizes); equal weights if all are zero."""
    if len(sizes) != count:
        raise ValueError(f"got {count} clients but {len(sizes)} data sizes")
    if count == 0:
        raise ValueError("cannot aggregate an empty set of clients")
    w = np.asarray(sizes, dtype=np.float64)
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"data sizes must be finite and non-negative, got {list(sizes)}")
    total = w.sum()
    return np.full(count, 1.0 / count) if total <= 0 else w / total


def _check(clients: Sequence[Factors]) -> None:
    """Shapes must agree: B_i (d_out, r_i), A_i (r_i, d_in), the same d_out and d_in for all."""
    d_out, d_in = clients[0][0].shape[0], clients[0][1].shape[1]
    for i, (b, a) in enumerate(clients):
        if b.ndim != 2 or a.ndim != 2 or b.shape[1] != a.shape[0]:
            raise ValueError(f"client {i}: B{b.shape} and A{a.shape} are not a LoRA pair (B: d_out x r, A: r x d_in)")
        if b.shape[0] != d_out or a.shape[1] != d_in:
            raise ValueError(f"client {i}: layer shape {b.shape[0]}x{a.shape[1]} differs from {d_out}x{d_in}")


def svd_factors(delta: np.ndarray, max_rank: int | None = None) -> Factors:
    """Balanced factors of a dense update: ``B = U sqrt(S)``, ``A = sqrt(S) V^T`` (top ``max_rank``)."""
    u, s, vt = np.linalg.svd(np.asarray(delta, dtype=np.float64), full_matrices=False)
    k = len(s) if max_rank is None else min(max_rank, len(s))
    root = np.sqrt(s[:k])
    return (u[:, :k] * root).astype(np.float32), (root[:, None] * vt[:k]).astype(np.float32)


def truncate(factors: Factors, rank: int) -> Factors:
    """The rank-``rank`` prefix a vehicle receives, zero-padded if the global has fewer components."""
    b, a = factors
    if rank <= b.shape[1]:
        return b[:, :rank].copy(), a[:rank].copy()
    pad = rank - b.shape[1]
    return (
        np.concatenate([b, np.zeros((b.shape[0], pad), b.dtype)], axis=1),
        np.concatenate([a, np.zeros((pad, a.shape[1]), a.dtype)], axis=0),
    )


def svd(clients: Sequence[Factors], sizes: Sequence[float], max_rank: int | None = None) -> Factors:
    """Paper/FlexLoRA: SVD of the data-weighted average of ``B_i @ A_i``; prefix = best rank-r approximation.

    Computed through QR of the stacked thin factors: ``sum_i w_i B_i A_i`` has rank at most ``sum_i r_i``,
    so this is the exact SVD in O(d (sum r)^2), never a dense d_out x d_in decomposition, and it returns
    only the ``sum r_i`` components the average can hold (a dense SVD would add hundreds of noise-level
    components that a vehicle at a higher rank would load as near-zero, barely trainable slots).
    """
    return _stacked_svd(clients, sizes, max_rank)


def zero_pad(
    clients: Sequence[Factors], sizes: Sequence[float], norm_weighted: bool = True
) -> Factors:
    """HetLoRA: zero-pad to the largest rank, average A and B with weights n_i * ||B_i A_i||_F."""
    _check(clients)
    w = _weights(sizes, len(clients))
    if norm_weighted:
        norms = np.array([np.linalg.norm(b.astype(np.float64) @ a.astype(np.float64)) for b, a in clients])
        # all-zero updates (first round) carry no sparsity signal: fall back to data weights
        if norms.sum() > 0:
            w = w * norms / np.sum(w * norms)
    r_max = max(b.shape[1] for b, _ in clients)
    b_sum = np.zeros((clients[0][0].shape[0], r_max))
    a_sum = np.zeros((r_max, clients[0][1].shape[1]))
    for wi, (b, a) in zip(w, clients, strict=True):
        r = b.shape[1]
        b_sum[:, :r] += wi * b
        a_sum[:r] += wi * a
    return b_sum.astype(np.float32), a_sum.astype(np.float32)


def fedavg(clients: Sequence[Factors], sizes: Sequence[float]) -> Factors:
    """HomoLoRA: weighted average of A and of B; every client must use the same rank."""
    _check(clients)
    ranks = sorted({b.shape[1] for b, _ in clients})
    if len(ranks) > 1:
        raise ValueError(
            f"aggregation='fedavg' needs equal LoRA ranks, got ranks {ranks}; "
            "use 'svd', 'zero_pad' or 'stacking' for heterogeneous ranks"
        )
    return zero_pad(clients, sizes, norm_weighted=False)


def stacking(clients: Sequence[Factors], sizes: Sequence[float], max_rank: int | None = None) -> Factors:
    """FLoRA: the exact weighted sum by stacking factors, returned in SVD order (via QR, no dense matrix).

    In this prefix-ordered representation the stacked sum and the paper's SVD of the average are the
    same factors; both names stay, as the two methods' configurations.
    """
    return _stacked_svd(clients, sizes, max_rank)


def _stacked_svd(clients: Sequence[Factors], sizes: Sequence[float], max_rank: int | None) -> Factors:
    """Balanced SVD factors of ``sum_i w_i B_i A_i`` from QR of ``[w_1 B_1 ...]`` and ``[A_1; ...]``."""
    _check(clients)
    w = _weights(sizes, len(clients))
    b_stack = np.concatenate([wi * b.astype(np.float64) for wi, (b, _) in zip(w, clients, strict=True)], axis=1)
    a_stack = np.concatenate([a.astype(np.float64) for _, a in clients], axis=0)
    # B_s A_s = Qb Rb Ra^T Qa^T; the SVD of the small core Rb Ra^T gives the SVD of the product
    qb, rb = np.linalg.qr(b_stack)
    qa, ra = np.linalg.qr(a_stack.T)
    u, s, vt = np.linalg.svd(rb @ ra.T)
    k = len(s) if max_rank is None else min(max_rank, len(s))
    root = np.sqrt(s[:k])
    return (qb @ u[:, :k] * root).astype(np.float32), (root[:, None] * (vt[:k] @ qa.T)).astype(np.float32)


def weighted_mean(tensors: Sequence[np.ndarray], sizes: Sequence[float]) -> np.ndarray:
    """FedAvg of same-shaped arrays (classifier heads) weighted by data size."""
    w = _weights(sizes, len(tensors))
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"cannot average arrays of different shapes {sorted(shapes)}")
    return sum(wi * t.astype(np.float64) for wi, t in zip(w, tensors, strict=True)).astype(np.float32)


AGGREGATORS: dict[str, Callable[..., Factors]] = {
    "svd": svd,
    "zero_pad": zero_pad,
    "fedavg": fedavg,
    "stacking": stacking,
}


def aggregate(name: str, clients: Sequence[Factors], sizes: Sequence[float]) -> Factors:
    """Dispatch by ``config.learning.aggregation`` name."""
    try:
        fn = AGGREGATORS[name]
    except KeyError:
        raise ValueError(f"aggregation={name!r} is unknown; allowed: {sorted(AGGREGATORS)}") from None
    return fn(clients, sizes)
