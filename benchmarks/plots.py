"""Figures of scored benchmark runs (matplotlib, imported only when a figure is drawn).

Rendering only: every number comes from ``benchmarks.scoring``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.scoring import (
    ENERGY_TOLERANCE,
    REFERENCE_HIGH,
    REFERENCE_LOW,
    F,
    Fields,
    certificate_of,
    certified_bound,
    ordered,
    run_index,
)


def finish(fig: Any, path: Path, title: str | None = None, fontsize: float | None = None) -> Path:
    """Title a figure, lay it out, write it atomically as PNG at ``path`` and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    from iov_env.results import save_figure_atomic

    if title is not None:
        fig.suptitle(title, **({} if fontsize is None else {"fontsize": fontsize}))
    fig.tight_layout()
    saved = save_figure_atomic(path, fig)
    plt.close(fig)
    return saved


def plot_return_vs_energy(
    scored: Sequence[Mapping[str, Any]], worlds: Sequence[Mapping[str, Any]], out: Path,
    high: str = REFERENCE_HIGH, low: str = REFERENCE_LOW, f: Fields = F, suffix: str = "-return-vs-energy",
) -> list[Path]:
    """Per world: normalised score against energy/budget, with the certified bound and the oracle's line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = run_index(scored, f)
    paths = []
    for world in ordered(worlds, "world"):
        rows = [r for r in worlds if r["world"] == world]
        fig, ax = plt.subplots(figsize=(7, 5))
        xmax = max([r["energy_ratio_hi"] if math.isfinite(r["energy_ratio_hi"]) else r["energy_ratio"] for r in rows]
                   + [1.2]) * 1.08
        grid = np.linspace(0.0, xmax, 200)
        oracle, rand = runs.get((world, high), {}), runs.get((world, low), {})
        bound_curves, lines = [], []
        for seed, o in oracle.items():
            if seed not in rand:
                continue
            span = float(o[f.reward]) - float(rand[seed][f.reward])
            if not span:
                continue
            budget, r_low = float(o[f.budget]), float(rand[seed][f.reward])
            cert = certificate_of(o)
            if cert is not None:
                bound_curves.append([(certified_bound(cert, x * budget) - r_low) / span for x in grid])
            mu = float(o.get("lagrange_mu") or 0.0)
            lines.append(1.0 + mu * (grid * budget - float(o[f.energy])) / span)
        if bound_curves:
            ax.plot(grid, np.mean(bound_curves, axis=0), color="k", lw=1.2, label="certified bound (mean over seeds)")
        if lines:
            ax.plot(grid, np.mean(lines, axis=0), color="k", lw=0.8, ls=":", label="oracle's Lagrangian line")
        ax.axvline(1.0, color="grey", lw=0.8, ls="--", label="budget")
        ax.axvline(ENERGY_TOLERANCE, color="grey", lw=0.8, ls="-.", label=f"tolerance {ENERGY_TOLERANCE}")
        for r in rows:
            color = "#4c72b0" if r["within_budget"] else "#c44e52"
            xerr = _err(r, "energy_ratio")
            yerr = _err(r, "score")
            ax.errorbar([r["energy_ratio"]], [r["score"]], xerr=xerr, yerr=yerr, fmt="o", color=color, ms=5, capsize=2)
            ax.annotate(str(r["agent"]), (r["energy_ratio"], r["score"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        finite = [r["score"] for r in rows if math.isfinite(r["score"])]
        if finite:
            ax.set_ylim(min(min(finite), 0.0) - 0.15, max(max(finite), 1.0) + 0.25)
        ax.set_xlim(0.0, xmax)
        ax.set_xlabel("episode energy / long-run budget")
        ax.set_ylabel("normalised score (random = 0, oracle = 1)")
        ax.set_title(f"{world}: return vs energy (mean, 95% CI; red: over budget)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        paths.append(finish(fig, out / f"{world}{suffix}.png"))
    return paths


def _err(r: Mapping[str, Any], name: str) -> np.ndarray | None:
    lo, hi = r[f"{name}_lo"], r[f"{name}_hi"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return np.array([[max(r[name] - lo, 0.0)], [max(hi - r[name], 0.0)]])
