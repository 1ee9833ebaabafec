"""Shared fixtures for the foundation suite: small envs, a seeded random rollout, data locations."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import iov_env
from iov_env.envs.parallel import IoVParallelEnv

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
FIXTURES = TESTS_DIR / "fixtures"
FAST_IDS = sorted(i for i, kw in iov_env.ENV_IDS.items() if kw["fidelity"] == "fast")
REAL_IDS = sorted(i for i, kw in iov_env.ENV_IDS.items() if kw["fidelity"] == "real")


def real_tdrive_dir() -> Path | None:
    """``$IOV_DATA_DIR/tdrive``, else the repo-relative ``../shared/data/tdrive``, else None."""
    candidates = []
    if os.environ.get("IOV_DATA_DIR"):
        candidates.append(Path(os.environ["IOV_DATA_DIR"]) / "tdrive")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "tdrive")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.txt")):
            return c
    return None


def real_stack_or_skip() -> Any:
    """``iov_env.learning.lora`` where torch, peft and the tiny model's tokenizer are here; else skip the module."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    lora = pytest.importorskip("iov_env.learning.lora")
    try:
        lora._minilm_dir()  # the tiny model borrows the MiniLM tokenizer
    except lora.ModelLoadError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(str(exc), allow_module_level=True)
    return lora


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """SUMO traces are cached under $IOV_CACHE_DIR: the suite writes a folder of its own, never the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("IOV_CACHE_DIR", str(tmp_path_factory.mktemp("iov_cache")))
    yield
    mp.undo()


def random_actions(env: IoVParallelEnv, rng: np.random.Generator) -> dict[str, int]:
    """One uniformly random rank index per live agent, from a test-owned generator."""
    return {a: int(rng.integers(env.config.num_ranks)) for a in env.agents}


@pytest.fixture
def make_parallel() -> Iterator[Callable[..., IoVParallelEnv]]:
    """Factory for parallel envs that are closed after the test."""
    made: list[IoVParallelEnv] = []

    def _make(**kwargs: Any) -> IoVParallelEnv:
        env = iov_env.parallel_env(**kwargs)
        made.append(env)
        return env

    yield _make
    for e in made:
        e.close()


@pytest.fixture
def tiny_env(make_parallel: Callable[..., IoVParallelEnv]) -> IoVParallelEnv:
    """The tiny preset, fast fidelity, vector observations."""
    return make_parallel(preset="tiny")


@pytest.fixture
def fixture_tdrive_dir() -> Path:
    """A hand-written T-Drive folder (two taxis) with duplicates, disorder and an impossible jump."""
    return FIXTURES / "tdrive"


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """One small local Ray for every test that needs it (its start-up dominates their cost); skip without Ray."""
    ray = pytest.importorskip("ray", reason="Ray is not installed here; run `make test-ray` (its own venv)")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Two shared cores: keep torch off the other engineers' CPU, and restore afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
