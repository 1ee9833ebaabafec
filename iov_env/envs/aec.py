"""AEC view: the parallel environment turned turn-based with PettingZoo's own converter."""

from __future__ import annotations

from typing import Any

from pettingzoo.utils import parallel_to_aec, wrappers
from pettingzoo.utils.env import AECEnv

from iov_env.envs.parallel import IoVParallelEnv


def env(**kwargs: Any) -> AECEnv:
    """PettingZoo AEC environment (same keywords as ``parallel_env``), with order enforcing."""
    aec = parallel_to_aec(IoVParallelEnv(**kwargs))
    return wrappers.OrderEnforcingWrapper(aec)
