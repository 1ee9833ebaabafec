"""iov_env.threads: torch threads follow the user, and each pool worker gets its share of the cores."""

from __future__ import annotations

import os

import pytest

from iov_env import threads


@pytest.fixture
def restore_threads(monkeypatch: pytest.MonkeyPatch):
    """Thread variables and torch's thread count come back as they were."""
    for var in threads.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


@pytest.mark.parametrize(("workers", "cores", "share"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 16, 8), (3, 16, 5)])
def test_worker_threads_gives_each_worker_its_share(restore_threads, workers, cores, share) -> None:
    torch = restore_threads
    assert threads.worker_threads(workers, cores=cores) == share
    assert all(os.environ[var] == str(share) for var in threads.THREAD_ENV_VARS)
    assert torch.get_num_threads() == share  # torch was already imported: limited directly


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_worker_threads_rejects_bad_counts(bad) -> None:
    with pytest.raises(ValueError, match="num_workers"):
        threads.worker_threads(bad)
    with pytest.raises(ValueError, match="cores"):
        threads.worker_threads(1, cores=bad)


def test_apply_torch_threads_keeps_the_users_setting_unless_told(restore_threads) -> None:
    torch = restore_threads
    torch.set_num_threads(1)
    assert threads.apply_torch_threads(0) == 1 and torch.get_num_threads() == 1
    assert threads.apply_torch_threads(2) == 2 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="num_threads"):
        threads.apply_torch_threads(-1)


def test_user_threads_reads_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.user_threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.user_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # OpenMP's per-level list: the outer level counts
    assert threads.user_threads() == 4
    for bad in ("0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
            threads.user_threads()


def test_available_cores_is_this_processes_affinity() -> None:
    cores = threads.available_cores()
    assert 1 <= cores <= (os.cpu_count() or cores)


def test_real_backend_leaves_the_users_threads_alone(restore_threads, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The backend once forced 2 threads; now torch_threads=0 keeps the user's 1 and torch_threads=2 sets 2."""
    torch = restore_threads
    from conftest import real_stack_or_skip

    real_stack_or_skip()
    from iov_env.config import preset
    from iov_env.learning.real import RealBackend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("IOV_DATA_DIR", raising=False)  # synthetic stand-ins (an empty named folder is an error)
    kw = dict(fidelity="real", model_name_or_path="tiny-random-bert", rank_set=(1, 2), tasks=("sst2",),
              budget_cap_fraction=1.0, max_seq_len=16)
    torch.set_num_threads(1)
    b = RealBackend(preset("tiny", **kw))
    assert torch.get_num_threads() == 1 and b.describe()["torch_threads"] == 1
    RealBackend(preset("tiny", torch_threads=2, **kw))
    assert torch.get_num_threads() == 2
