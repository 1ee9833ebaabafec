"""CPU threads as the user sets them, and each parallel worker's share of the cores.

Torch, numpy's BLAS and OpenMP each keep a thread pool sized to the machine by default. One env per
process is fine with that; a process pool or Ray running several real envs side by side is not: W
workers x all-cores threads each oversubscribe the CPU, and torch's spinning OpenMP threads then
slow every worker down by an order of magnitude (measured in ``benchmarks/studies/perf_real.py --threads``).

A runner calls :func:`worker_threads` once at the start of every worker::

    from concurrent.futures import ProcessPoolExecutor
    from iov_env.threads import worker_threads

    with ProcessPoolExecutor(max_workers=w, initializer=worker_threads, initargs=(w,)) as pool:
        ...

    # Ray: in the task or actor, before building the env
    @ray.remote(num_cpus=1)
    def run(job, num_workers):
        worker_threads(num_workers)
        ...

Nothing here imports torch: a limit set before torch loads reaches it through ``OMP_NUM_THREADS``,
and a torch that is already loaded is limited directly.
"""

from __future__ import annotations

import os
import sys

__all__ = ["THREAD_ENV_VARS", "apply_torch_threads", "available_cores", "user_threads", "worker_threads"]

# the variables OpenMP, MKL, OpenBLAS, Accelerate and numexpr read when their pools start
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def user_threads() -> int | None:
    """The thread count the user asked for through ``OMP_NUM_THREADS``, or None when unset."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        value = int(raw.split(",")[0])  # OpenMP allows a per-nesting-level list: the first level counts
    except ValueError:
        raise ValueError(f"OMP_NUM_THREADS={raw!r} is not a positive integer") from None
    if value < 1:
        raise ValueError(f"OMP_NUM_THREADS={raw!r} is not a positive integer")
    return value


def apply_torch_threads(num_threads: int = 0) -> int:
    """Set torch's intra-op threads to ``num_threads`` (> 0), else leave the user's setting; return the count.

    ``num_threads=0`` (``LearningConfig.torch_threads``' default) changes nothing: torch already sized its
    pool from ``OMP_NUM_THREADS`` at import, or the user called ``torch.set_num_threads`` themselves.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"num_threads={num_threads!r}; allowed: 0 (keep the user's setting) or a positive integer")
    import torch

    if num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return int(torch.get_num_threads())


def worker_threads(num_workers: int, cores: int | None = None) -> int:
    """Limit this process to its share of the cores, ``max(1, cores // num_workers)``; return the share.

    Call it first thing in each worker of a pool of ``num_workers`` processes. It sets the thread
    variables for libraries that start later (torch read at import), limits BLAS pools that already
    run (threadpoolctl, when installed) and torch when it is already imported.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers={num_workers!r}; allowed: a positive integer")
    total = available_cores() if cores is None else cores
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"cores={cores!r}; allowed: a positive integer or None (this process's CPU affinity)")
    share = max(1, total // num_workers)
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(share)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (seqeval)
        pass
    else:
        threadpool_limits(share)
    if "torch" in sys.modules:
        apply_torch_threads(share)
    return share
