"""Learnability beside headroom: how hard one vehicle's best rank is to find from its own rewards.

Headroom says whether a world separates policies (oracle - random in paired SE); learnability says whether
a learner can get there from what it observes. Per scenario, in the fast world under the random policy, at
the decision study's rounds (0, 2, 5 and 10: early, mid and late decisions, so that the real figure beside
it is measured alike): the gap between the best and second-best feasible rank of each active vehicle
(expected reward), against the per-pull noise of its reward; the median over task x round cells of
gap/noise and of the pulls per rank needed to tell the two apart at 2 sigma
(``benchmarks.decision_analysis``). Where the decision study measured the same in real fine-tuning (the
``tiny`` world), that figure is shown beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks import decision_analysis as da

DEFAULT_SEEDS = (0, 1, 2)


def fast_learnability(env_kwargs: Mapping[str, Any], seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, float]:
    """Median per-pull gap/noise and pulls needed in the fast world of ``env_kwargs`` (every round)."""
    from iov_env.envs.parallel import resolve_config

    cfg = resolve_config(None, **dict(env_kwargs))
    cells, sim = da.fast_cells(cfg, seeds, [t for t in da.DECISION_ROUNDS if t < cfg.episode.rounds])
    rows = da.decision_rows(cells, cfg.episode.accuracy_weight, noise=da.fast_noise(sim))
    sim.close()
    return da.summarise(rows)


def real_learnability(study_rows: Sequence[Mapping[str, str]], accuracy_weight: float) -> dict[str, float]:
    """The same medians from the decision study's real counterfactual rounds (nan without rows)."""
    cells = da.cells_from_rows(study_rows, accuracy_weight)
    if not cells:
        return {"median_gap_per_noise": math.nan, "median_pulls": math.nan}
    return da.summarise(da.decision_rows(cells, accuracy_weight))


def measured_real(world_ids: Sequence[str], is_tiny: Any = None) -> dict[str, dict[str, float]]:
    """The decision study's real figure for each id whose world is ``tiny`` (where it was measured), if stored."""
    from benchmarks.decision_study import DATA_DIR, read_rows
    from iov_env.config import EpisodeConfig

    rows = read_rows(sorted(DATA_DIR.glob("decision_study.part*.csv")))
    if not rows:
        return {}
    figure = real_learnability(rows, EpisodeConfig().accuracy_weight)
    tiny = is_tiny or (lambda wid: str(wid).split("-v")[0] == "tiny")
    return {wid: figure for wid in world_ids if tiny(wid)}


def learnability_table(scenario_ids: Sequence[str], env_kwargs: Mapping[str, Mapping[str, Any]],
                       real: Mapping[str, Mapping[str, float]] | None = None,
                       seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, dict[str, float]]:
    """Per scenario: the fast world's medians, and ``real_*`` where ``real`` has a figure for its world."""
    out: dict[str, dict[str, float]] = {}
    for sid in scenario_ids:
        row = dict(fast_learnability(env_kwargs[sid], seeds))
        measured = (real or {}).get(sid)
        if measured:
            row.update({f"real_{k}": v for k, v in measured.items()})
        out[sid] = row
    return out


__all__ = ["fast_learnability", "learnability_table", "measured_real", "real_learnability"]
