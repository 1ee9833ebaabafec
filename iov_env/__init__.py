"""iov-env: energy-constrained federated LoRA rank scheduling in edge-assisted IoV (arXiv 2508.09532).

``import iov_env`` stays light: it registers the Gymnasium ids (``iov_env.scenarios``: the env's ids and every
benchmark scenario) and defers numpy-heavy and torch
imports until an environment is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from iov_env.envs.parallel import IoVParallelEnv

from iov_env.scenarios import ENV_IDS, SCENARIOS, register


def parallel_env(**kwargs: Any) -> IoVParallelEnv:
    """PettingZoo ParallelEnv: ``parallel_env(preset="tiny", num_vehicles=100, fidelity="fast")``."""
    from iov_env.envs.parallel import IoVParallelEnv

    return IoVParallelEnv(**kwargs)


def env(**kwargs: Any) -> Any:
    """PettingZoo AEC env with the same keywords as ``parallel_env``."""
    from iov_env.envs.aec import env as _env

    return _env(**kwargs)


register()

__all__ = ["ENV_IDS", "SCENARIOS", "__version__", "env", "parallel_env", "register"]
