"""Benchmark scenarios: the registry of ``iov_env.scenarios`` (each id is also a Gymnasium id), and whether
one can run on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from iov_env.scenarios import (
    LATEST,
    LEGACY_V0,
    SCENARIOS,
    V2_CALIBRATION,
    VERSION_OVERRIDES,
    WORLDS,
    UnknownScenarioError,
    gym_id,
    scenario,
)

__all__ = ["LATEST", "LEGACY_V0", "SCENARIOS", "V2_CALIBRATION", "VERSION_OVERRIDES", "WORLDS", "UnknownScenarioError", "gym_id", "scenario",
           "unavailable_reason"]


def unavailable_reason(scenario_id: str) -> str | None:
    """Why a scenario cannot run on this machine (missing data or the SUMO extra), or None when it can."""
    kwargs = scenario(scenario_id)
    if kwargs.get("mobility_model") == "tdrive":
        data = os.environ.get("IOV_DATA_DIR")
        if not data or not any((Path(data) / "tdrive").glob("*.txt")):
            return "needs T-Drive traces in $IOV_DATA_DIR/tdrive"
    if kwargs.get("mobility_model") == "sumo":
        from iov_env.sim.sumo import missing_reason

        return missing_reason()
    return None
