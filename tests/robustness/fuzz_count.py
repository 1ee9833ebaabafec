"""Count fuzz outcomes per failure class: ``PYTHONPATH=. python tests/robustness/fuzz_count.py [--json out.json]``.

Runs every hostile value of every config field, random multi-field combinations (derandomised
hypothesis), config files and ``config=`` arguments, corrupted data files for every loader,
calls before ``reset()``, a long episode's history and a data folder with a missing file. Each case
runs under a per-case alarm (a hang is counted, not waited for) and an address-space limit (a
memory bomb becomes a ``MemoryError``). Works on any version of the package on ``sys.path``, so the
same command counts the code before and after a fix (``PYTHONPATH`` picks the checkout; without it the
installed package is counted, which the first line of output names). Larger budgets: ``--random``, ``--sumo``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzzing  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

import iov_env  # noqa: E402

timed = fuzzing.timed


def main() -> None:
    """Run every section and print counts per outcome class."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, help="write counts and failing examples here")
    ap.add_argument("--limit-s", type=int, default=10, help="per-case alarm (hang threshold)")
    ap.add_argument("--mem-gib", type=float, default=4.0, help="address-space limit")
    ap.add_argument("--random", type=int, default=300, help="random multi-field combinations")
    ap.add_argument("--sumo", type=int, default=20, help="random SUMO-traffic configs (skipped without SUMO)")
    ap.add_argument("--sections", nargs="*", default=None)
    args = ap.parse_args()
    limit = int(args.mem_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import datasets  # noqa: F401  - imported before the cases so its own start-up is not counted

    print(f"iov_env from {iov_env.__file__}", flush=True)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[str, list[str]] = collections.defaultdict(list)

    def record(section: str, label: str, outcome: tuple[str, str]) -> None:
        cls, detail = outcome
        counts[section][cls] += 1
        if cls not in ("ok", "refused") and len(examples[section]) < 400:
            examples[section].append(f"{cls:<24} {label[:90]:<90} {detail[:160]}")

    want = set(args.sections) if args.sections else None
    tmp = Path(tempfile.mkdtemp(prefix="iov_fuzz_"))
    try:
        if want is None or "fields" in want:
            for leaf in fuzzing.config_leaves():
                for value in fuzzing.hostile_values(leaf):
                    label = f"{leaf.name}={value!r}"[:90]
                    record("fields", label, timed(fuzzing.run_config_case, {leaf.name: value}, limit_s=args.limit_s))
            print("fields done", dict(counts["fields"]), flush=True)

        def drawn(section: str, strategy: Any, examples: int) -> None:
            """``examples`` configs drawn (derandomised) from ``strategy``, each run as one case."""
            @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(overrides=strategy)
            def cases(overrides: dict) -> None:
                record(section, repr(overrides), timed(fuzzing.run_config_case, overrides, limit_s=args.limit_s))

            cases()
            print(f"{section} done", dict(counts[section]), flush=True)

        if want is None or "random" in want:
            drawn("random", fuzzing.config_overrides(), args.random)
        if (want is None or "sumo" in want) and args.sumo > 0 and _sumo_available():
            drawn("sumo", fuzzing.sumo_overrides(), args.sumo)

        if want is None or "config_files" in want:
            for name, content, expect in fuzzing.CONFIG_FILE_CASES:
                for as_path in (False, True):
                    label = f"{name} as {'Path' if as_path else 'str'}"
                    record("config_files", label,
                           timed(fuzzing.run_config_file_case, tmp, name, content, expect, as_path, limit_s=args.limit_s))
            for label, arg, expect in fuzzing.config_arg_cases(tmp):
                record("config_files", f"config={label}", timed(fuzzing.run_config_arg_case, label, arg, expect,
                                                                 limit_s=args.limit_s))
            print("config_files done", dict(counts["config_files"]), flush=True)

        if want is None or "loaders" in want:
            bases = {"sst2": fuzzing.SST2_OK, "conll": fuzzing.CONLL_OK, "copa": fuzzing.COPA_OK,
                     "tdrive": fuzzing.TDRIVE_OK, "config_yaml": "preset: tiny\nnum_vehicles: 4\nrounds: 3\n",
                     "config_json": '{"preset": "tiny",\n"num_vehicles": 4,\n"rounds": 3}\n'}
            for kind, base in bases.items():
                for j, rep in enumerate(fuzzing.LINE_MUTATIONS):
                    for line in (0, 2):
                        content = fuzzing.mutated(base, line, rep)
                        record("loaders", f"{kind} line {line} <- mutation {j}",
                               timed(fuzzing.run_loader_case, kind, content, tmp, limit_s=args.limit_s))
            for j, content in enumerate(fuzzing.calibration_mutations()):
                record("calibration", f"calibration mutation {j}",
                       timed(fuzzing.run_loader_case, "calibration", content, tmp, limit_s=args.limit_s))
            for label, folder in fuzzing.tdrive_dir_cases(tmp):
                case = {"mobility_model": "tdrive", "tdrive_dir": folder}
                record("loaders", f"tdrive_dir {label}", timed(fuzzing.run_config_case, case, limit_s=args.limit_s))
            if _sumo_available():
                for label, case in fuzzing.sumo_file_cases(tmp):
                    record("loaders", label, timed(fuzzing.run_config_case, case, limit_s=args.limit_s))
            long_name = {"calibration": "c" * 5000}
            record("calibration", "calibration='c'*5000", timed(fuzzing.run_config_case, long_name, limit_s=args.limit_s))
            print("loaders done", dict(counts["loaders"]), dict(counts["calibration"]), flush=True)

        if want is None or "pre_reset" in want:
            for label, call in fuzzing.pre_reset_calls():
                record("pre_reset", label, timed(fuzzing.run_pre_reset_case, call, limit_s=args.limit_s))

        if want is None or "history" in want:
            record("history", "tiny, 300 rounds", timed(_history_case, limit_s=60))

        if want is None or "data_dir" in want:
            for missing in ("sst2/dev.tsv", "conll2003/valid.txt", "copa/train.jsonl", "sst2"):
                record("data_dir", f"IOV_DATA_DIR without {missing}",
                       timed(_missing_data_case, tmp, missing, limit_s=args.limit_s))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    classes = sorted({c for cnt in counts.values() for c in cnt})
    print(f"| section | cases | {' | '.join(classes)} |")
    print(f"|---|---:|{'---:|' * len(classes)}")
    for section, cnt in counts.items():
        print(f"| {section} | {sum(cnt.values())} | {' | '.join(str(cnt.get(c, 0)) for c in classes)} |")
    for section, lines in examples.items():
        print(f"\n## {section}: failures")
        for line in lines:
            print("  ", line)
    if args.json:
        args.json.write_text(json.dumps({"counts": {k: dict(v) for k, v in counts.items()}, "examples": examples},
                                        indent=1), encoding="utf-8")


def _sumo_available() -> bool:
    try:
        from iov_env.sim import sumo
    except ImportError:  # a version of the package from before SUMO mobility
        return False
    return sumo.missing_reason() is None


def _history_case() -> tuple[str, str]:
    env = iov_env.parallel_env(preset="tiny", rounds=300)
    try:
        env.reset(seed=0)
        while env.agents:
            env.step({a: 0 for a in env.agents})
        kept = len(env.simulator.history)
    finally:
        env.close()
    return ("silent", f"history keeps all {kept} rounds") if kept >= 300 else ("ok", f"{kept} rounds kept")


def _missing_data_case(tmp: Path, missing: str) -> tuple[str, str]:
    from iov_env.learning import tasks

    root = tmp / f"data_{missing.replace('/', '_')}"
    if root.exists():
        shutil.rmtree(root)
    for rel, text in (("sst2/train.tsv", fuzzing.SST2_OK), ("sst2/dev.tsv", fuzzing.SST2_OK),
                      ("conll2003/train.txt", fuzzing.CONLL_OK), ("conll2003/valid.txt", fuzzing.CONLL_OK),
                      ("copa/train.jsonl", fuzzing.COPA_OK), ("copa/val.jsonl", fuzzing.COPA_OK)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    target = root / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    task = {"sst2": "sst2", "conll2003": "conll2003", "copa": "copa"}[missing.split("/")[0]]
    old = os.environ.get("IOV_DATA_DIR")
    os.environ["IOV_DATA_DIR"] = str(root)
    try:
        td = tasks.load_task(task, allow_hub=False)
    except Exception as exc:
        return ("refused", str(exc)[:200]) if missing.split("/")[-1] in str(exc) else ("vague", str(exc)[:200])
    finally:
        if old is None:
            os.environ.pop("IOV_DATA_DIR", None)
        else:
            os.environ["IOV_DATA_DIR"] = old
    return "silent", f"fell back to {td.source}"


if __name__ == "__main__":
    main()
