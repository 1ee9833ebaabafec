"""UCB-DUAL vs the paper's baselines and its own ablations on the fast env, with bootstrap CIs.

    iov compare --out results/compare            # tiny + paper presets, 10 seeds
    iov compare --presets tiny --seeds 3 --out /tmp/c

Protocol (the paper's framing: the mechanisms are part of the proposed system):

* ``UCB-DUAL``            allocation="tri_feedback", fault_tolerance="paper", SVD aggregation.
* baselines               allocation="static", fault_tolerance="none" (docs/method.md: "baselines without
                          the mechanism always upload early"), each with its own aggregation.
* ``UCB-DUAL w/o tri-feedback``      allocation="static",       fault_tolerance="paper".
* ``UCB-DUAL w/o fault tolerance``   allocation="tri_feedback", fault_tolerance="none".
* ``UCB-DUAL (agent only)``          allocation="static", fault_tolerance="none": the agent alone, under
                          exactly the baselines' system, to separate what the bandit does from what the
                          cloud and fault mechanisms do.
* references, never the "best baseline": ``Greedy`` (reads the simulator's expectations, myopic),
  ``Oracle`` (the upper bound of ``agents/oracle.py``) under the baselines' system, and
  ``Oracle (full system)`` under UCB-DUAL's (the fault mechanism changes the world, the allocation does
  not change rewards or energy).

Per run: final accuracy (mean over tasks of the global model's metric after the last round, in points),
end-to-end latency (sum of synchronous round latencies), total energy, energy / long-run budget,
budget-violation rate (share of task-rounds spending over the task's budget), cumulative reward and
the normalised score (Random = 0, Oracle = 1 on the same seed). Statistics come from
``benchmarks/scoring.py``, shared with the leaderboard: 95% percentile bootstrap of the mean over seeds,
stratified by preset (rliable), plus IQM; paired differences use the same seeds (same world); the
constraint-aware ranking, headroom and the oracle's check as in the leaderboard.

Outputs (written atomically: temp file + ``os.replace``): ``runs.csv`` (one row per run),
``summary.csv`` (method x metric with CIs) and ``compare.md`` (tables + the paper's claims).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.base import Agent
from agents.baselines import FlexLoRA, Greedy, HetLoRA, HomoLoRA, Oracle, RandomRank
from agents.oracle import covers
from agents.runner import env_config_for, run_decentralized
from agents.ucb_dual import UCB1, UCBDual
from benchmarks import learnability, report, runs, scoring
from benchmarks.errors import BenchmarkError
from iov_env.results import write_csv_atomic, write_text_atomic

FULL_SYSTEM = {"allocation": "tri_feedback", "fault_tolerance": "paper"}
BASELINE_SYSTEM = {"allocation": "static", "fault_tolerance": "none"}
METRICS = (
    ("accuracy_pts", "final accuracy (pts)", +1),
    ("latency_s", "end-to-end latency (s)", -1),
    ("energy_j", "energy (J)", -1),
    ("energy_ratio", "energy / budget", -1),
    ("violation_rate", "budget-violation rate", -1),
    ("score", "score (Random 0, Oracle 1)", +1),
)
REFERENCES = ("Random", "Oracle")
PAPER_ACC_GAIN_PTS = 2.5
PAPER_LATENCY_CUT = 0.24


@dataclass
class Method:
    """One row of the comparison: an agent factory and the env system it runs under."""

    label: str
    make: Callable[[], Agent]
    system: dict[str, Any]
    role: str  # "proposed" | "baseline" | "ablation" | "reference"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def methods() -> list[Method]:
    """The comparison's rows, in display order."""
    return [
        Method("UCB-DUAL", UCBDual, FULL_SYSTEM, "proposed", "tri-feedback + fault tolerance"),
        Method("HomoLoRA", HomoLoRA, BASELINE_SYSTEM, "baseline", "rank 8, fedavg"),
        Method("HetLoRA", HetLoRA, BASELINE_SYSTEM, "baseline", "data-size ranks, zero-pad, pruning"),
        Method("FlexLoRA", FlexLoRA, BASELINE_SYSTEM, "baseline", "capability ranks, svd"),
        Method("Random", RandomRank, BASELINE_SYSTEM, "baseline", "uniform feasible rank, svd"),
        Method("UCB1", UCB1, BASELINE_SYSTEM, "baseline", "UCB-DUAL without the price"),
        Method("UCB-DUAL w/o tri-feedback", UCBDual, {**FULL_SYSTEM, "allocation": "static"}, "ablation"),
        Method("UCB-DUAL w/o fault tolerance", UCBDual, {**FULL_SYSTEM, "fault_tolerance": "none"}, "ablation"),
        Method("UCB-DUAL (agent only)", UCBDual, BASELINE_SYSTEM, "ablation", "baselines' system"),
        Method("Greedy", Greedy, BASELINE_SYSTEM, "reference", "knows expected outcomes, myopic"),
        Method("Oracle", Oracle, BASELINE_SYSTEM, "reference", "upper bound, plans the episode"),
        Method("Oracle (full system)", Oracle, FULL_SYSTEM, "reference", "upper bound under UCB-DUAL's system"),
    ]


def run_all(
    presets: Sequence[str], seeds: Sequence[int], rows: Sequence[Method], env_overrides: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every (preset, method, seed) episode as one flat record."""
    out = []
    for preset in presets:
        oracles = {m.label: env_config_for(m.make(), {"preset": preset, **(env_overrides or {}), **m.system, **m.extra})
                   for m in rows if m.make is Oracle}
        for m in rows:
            for s in seeds:
                r = run_decentralized(m.make, {"preset": preset, **(env_overrides or {}), **m.system, **m.extra}, seed=s)
                bounded_by = next((label for label, kw in oracles.items() if covers(r["env_kwargs"], kw)), "")
                out.append(runs.run_record(
                    preset, m.label, s, r, bounded_by=bounded_by,
                    role=m.role,
                    aggregation=r["env_kwargs"].get("aggregation", ""),
                    allocation=m.system.get("allocation", ""),
                    fault_tolerance=m.system.get("fault_tolerance", ""),
                    best_accuracy_pts=100.0 * r["best_accuracy"],
                    vehicle_violation_rate=r["vehicle_violation_rate"],
                    mean_rank=float(np.mean([x for row in r["rank_trace"] for x in row if x > 0] or [0])),
                ))
    return scoring.score_runs(out, *REFERENCES)


# -- statistics --------------------------------------------------------------------------------------
def summarise(records: list[dict[str, Any]], presets: Sequence[str], reps: int) -> list[dict[str, Any]]:
    """Per preset (and all presets pooled, stratified) x method x metric: mean, 95% CI, IQM."""
    scopes = [*presets, "all"] if len(presets) > 1 else list(presets)
    rows = scoring.metric_summary(records, [k for k, _, _ in METRICS], "agent", scopes, reps=reps)
    role = {r["agent"]: r["role"] for r in records}
    return [{**r, "role": role[r["agent"]]} for r in rows]


def paired_difference(
    records: list[dict[str, Any]], preset: str, a: str, b: str, key: str, relative: bool, reps: int
) -> tuple[float, float, float]:
    """Mean over seeds of (a - b) (or mean(a)/mean(b) - 1 when relative), with a bootstrap CI over seeds."""
    return scoring.paired_difference(records, preset, a, b, key, relative=relative, reps=reps)


def bound_checks(records: list[dict[str, Any]], rows: Sequence[Method]) -> list[dict[str, Any]]:
    """The oracle's check for each method against the oracle whose bound covers its system (the fault mode
    matters, the allocation does not); the scale is Random's, which runs without the fault mechanism."""
    out = []
    for oracle in [m.label for m in rows if m.make is Oracle]:
        covered = {r["agent"] for r in records if r["bounded_by"] == oracle} | {oracle}
        sel = [r for r in records if r["agent"] in covered or r["agent"] == "Random"]
        out += [c for c in scoring.oracle_checks(sel, high=oracle, low="Random") if c["agent"] in covered]
    return out


# -- reporting ---------------------------------------------------------------------------------------
def _fmt(mean: float, lo: float, hi: float, key: str) -> str:
    spec = ".1f" if key in ("latency_s", "energy_j") else ".2f"
    return report.fmt_ci(mean, lo, hi, spec)


def claims(records: list[dict[str, Any]], presets: Sequence[str], reps: int) -> list[dict[str, Any]]:
    """The paper's two headline claims, per preset, against the best (non-oracle) baseline."""
    out = []
    for preset in presets:
        base = [r for r in records if r["scenario"] == preset and r["role"] == "baseline"]
        labels = sorted({r["agent"] for r in base})

        def mean_of(label: str, key: str, _p: str = preset) -> float:
            return float(np.mean([r[key] for r in records if r["scenario"] == _p and r["agent"] == label]))

        best_acc = max(labels, key=lambda m: mean_of(m, "accuracy_pts"))
        best_lat = min(labels, key=lambda m: mean_of(m, "latency_s"))
        d_acc = paired_difference(records, preset, "UCB-DUAL", best_acc, "accuracy_pts", False, reps)
        d_lat_acc = paired_difference(records, preset, "UCB-DUAL", best_acc, "latency_s", True, reps)
        d_lat = paired_difference(records, preset, "UCB-DUAL", best_lat, "latency_s", True, reps)
        energy = {
            m: f"{mean_of(m, 'energy_ratio'):.2f}, {mean_of(m, 'violation_rate'):.2f}" for m in [*labels, "UCB-DUAL"]
        }
        out.append({
            "preset": preset,
            "energy": energy,
            "best_accuracy_baseline": best_acc,
            "accuracy_gain_pts": d_acc,
            "accuracy_claim_met": d_acc[0] >= PAPER_ACC_GAIN_PTS,
            "latency_change_vs_best_accuracy_baseline": d_lat_acc,
            "fastest_baseline": best_lat,
            "latency_change_vs_fastest_baseline": d_lat,
            "latency_claim_met": d_lat_acc[0] <= -PAPER_LATENCY_CUT,
        })
    return out


def markdown(
    summary: list[dict[str, Any]], claim_rows: list[dict[str, Any]], presets: Sequence[str], seeds: Sequence[int],
    rows: Sequence[Method], elapsed_s: float, command: str, scores: dict[str, Any] | None = None,
    learn: dict[str, dict[str, float]] | None = None,
) -> str:
    """Tables (mean [95% CI]) per preset, the constraint-aware ranking, the claims check, and the protocol."""
    buf = io.StringIO()
    w = buf.write
    w("# UCB-DUAL vs baselines (fast fidelity)\n\n")
    w(f"Command: `{command}`  \nSeeds: {list(seeds)}; presets: {list(presets)}; {elapsed_s:.0f} s wall.  \n")
    w("Cells: mean over seeds [95% stratified-bootstrap CI]. Accuracy: final-round global accuracy, mean over "
      "tasks, in points. Latency: sum of synchronous round latencies. Energy / budget: episode energy over the "
      "fleet's long-run budget. Violation: share of task-rounds over the task's energy budget. Score: Random = 0, "
      "Oracle = 1 on the same seed (paired); rows under the full system are on the same scale, and their bound is "
      "'Oracle (full system)'. Every method runs the same seeds: the same mobility, channel and data world.\n\n")
    notes = {m.label: m for m in rows}
    for scope in [*presets, *(["all"] if len(presets) > 1 else [])]:
        w(f"## preset `{scope}`\n\n" if scope != "all" else "## all presets pooled (stratified by preset)\n\n")
        w("| method | role | " + " | ".join(lbl for _, lbl, _ in METRICS) + " | system |\n")
        w("|---|---|" + "---|" * len(METRICS) + "---|\n")
        for m in rows:
            cells = []
            for key, _, _ in METRICS:
                hit = [s for s in summary if s["scenario"] == scope and s["agent"] == m.label and s["metric"] == key]
                cells.append(_fmt(hit[0]["mean"], hit[0]["ci_lo"], hit[0]["ci_hi"], key) if hit else "")
            sysdesc = f"{m.system.get('allocation')}, ft={m.system.get('fault_tolerance')}"
            if notes[m.label].note:
                sysdesc += f"; {notes[m.label].note}"
            w(f"| {m.label} | {m.role} | " + " | ".join(cells) + f" | {sysdesc} |\n")
        w("\n")
    if scores is not None:
        w(report.scores_markdown(scores["scored"], scores["headroom"], scores["agents"], scores["checks"], scores["worlds"],
                         baseline="UCB-DUAL", world_label="preset", references=REFERENCES,
                         sections=("ranking", "headroom", "checks"),
                         reference_names=[m.label for m in rows if m.role == "reference"], learnability=learn))
        w("\n")
    w("## The paper's claims vs this run\n\n")
    w("Paired by seed (same world for both methods); energy / budget and the share of task-rounds over budget of "
      "each side beside it.\n\n")
    w("| preset | claim (paper) | measured | met | UCB-DUAL energy / budget, over budget | baseline energy / budget, "
      "over budget |\n|---|---|---|---|---|---|\n")
    for c in claim_rows:
        g = c["accuracy_gain_pts"]
        ours, theirs = c["energy"]["UCB-DUAL"], c["energy"][c["best_accuracy_baseline"]]
        side = f" | {ours} | {theirs} |\n"
        w(f"| {c['preset']} | accuracy >= +{PAPER_ACC_GAIN_PTS} pts vs best baseline ({c['best_accuracy_baseline']}) | "
          f"{g[0]:+.2f} pts [{g[1]:+.2f}, {g[2]:+.2f}] | {'yes' if c['accuracy_claim_met'] else 'no'}" + side)
        d = c["latency_change_vs_best_accuracy_baseline"]
        w(f"| {c['preset']} | latency <= -{PAPER_LATENCY_CUT:.0%} vs best baseline ({c['best_accuracy_baseline']}) | "
          f"{d[0]:+.1%} [{d[1]:+.1%}, {d[2]:+.1%}] | {'yes' if c['latency_claim_met'] else 'no'}" + side)
        f = c["latency_change_vs_fastest_baseline"]
        w(f"| {c['preset']} | (context) latency vs fastest baseline ({c['fastest_baseline']}) | "
          f"{f[0]:+.1%} [{f[1]:+.1%}, {f[2]:+.1%}] | - | {ours} | {c['energy'][c['fastest_baseline']]} |\n")
    return buf.getvalue()


def run(args: Any) -> int:
    """Run every method on the presets, and write runs.csv, summary.csv and compare.md.

    ``args`` holds the options of its ``iov`` command, named as its flags (``iov`` builds it).
    """
    if args.seeds < 2:
        raise BenchmarkError("--seeds must be >= 2 for confidence intervals")
    seeds = list(range(args.seeds))
    rows = methods()
    t0 = time.perf_counter()
    overrides = {"calibration": args.calibration} if args.calibration else {}
    records = run_all(args.presets, seeds, rows, overrides)
    summary = summarise(records, args.presets, args.reps)
    claim_rows = claims(records, args.presets, args.reps)
    scores = scoring.score_all(records, reps=args.reps, baseline="UCB-DUAL", references=REFERENCES)
    scores["checks"] = bound_checks(records, rows)
    elapsed = time.perf_counter() - t0
    command = args.command
    worlds = {p: {"preset": p, **overrides} for p in args.presets}
    learn = learnability.learnability_table(args.presets, worlds, learnability.measured_real(args.presets, lambda p: p == "tiny"))
    md = markdown(summary, claim_rows, args.presets, seeds, rows, elapsed, command, scores, learn)
    write_csv_atomic(args.out / "runs.csv", records)
    write_csv_atomic(args.out / "summary.csv", summary)
    write_text_atomic(args.out / "compare.md", md)
    print(md)
    return 0

