"""``engine="ray"``: the vehicles of a real round train on Ray actors; aggregation and evaluation stay here.

The driver (``RealBackend`` with ``engine="ray"``) starts ``RayPool``: ``ray_actors`` actors (0: one per
GPU with ``device="cuda"``, else one per ``torch_threads`` cores of the cluster), each a
``VehicleTrainer`` that builds its own ``RealBackend`` once: the frozen base model, the task heads and the
task data, loaded from its own ``IOV_DATA_DIR`` (or the hub, or the labelled synthetic stand-in, as here).
The driver checks at start that every actor holds the same model dimensions and the same examples
(``RealBackend.data_fingerprint``): an actor on a node with other data would train other numbers.

Each round the driver puts the task globals (factors and heads) into Ray's object store once
(``ray.put``) and sends every actor the same object ref with its share of the round's jobs (vehicle,
task, rank, step count, FedRA blocks). The actor trains them with ``RealBackend.train_local``, the very
function the in-process engines use (``ray_engine`` chooses ``sequential`` or ``batched``; a batched group
is never split across actors), and returns factors, heads, metrics, tokens and its busy seconds. An actor
keeps nothing between rounds but what it loaded once and the episode's data shards, which it derives
from the episode seed and layout (also one object ref): a vehicle's result depends only on the seed,
the round, the vehicle and the globals, so any actor, restarted or not, computes the same numbers.

Faults. Actors are created with Ray's ``max_restarts`` and ``max_task_retries`` (``MAX_RESTARTS``): an
actor process that dies mid-round is restarted by Ray (it reloads model and data) and its call is
re-run. When an actor is gone for good (its restarts spent, its node lost), the driver catches the
``RayActorError`` and sends that actor's share to the next live actor. The round commits only after
every vehicle's result is in (``RealBackend.train_round`` computes into temporaries): a round that
cannot complete raises, and the backend stays as it was before it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from iov_env.config import IoVConfig

MAX_RESTARTS = 3  # per actor, Ray's own: a restart reloads the model and data (seconds to a minute)
# fault injection for tests and drills: an actor that finds this file removes it and exits hard after its first
# unit of the round (os.remove is atomic: exactly one actor dies per file)
FAULT_FILE_ENV = "IOV_RAY_FAULT_FILE"

Job = tuple[int, int, int, int, set[int]]  # (vehicle, task, rank, steps, FedRA blocks), as RealBackend.train_local


def import_ray() -> Any:
    """``ray``, or an error naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "engine='ray' needs Ray: pip install 'iov-env[ray]' (in its own venv, `make setup-ray`: "
            "ray[rllib] pins gymnasium 1.2.2)"
        ) from exc
    return ray


class VehicleTrainer:
    """A Ray actor's body: one ``RealBackend`` (its own model, heads and data) that trains the jobs it is sent."""

    def __init__(self, config: IoVConfig, data_dir: str | None) -> None:
        from iov_env.learning.real import RealBackend

        self.backend = RealBackend(config, data_dir)
        self.episode_key: int | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What this actor loaded (model dims, data sizes and label digests), to compare with the driver's."""
        return self.backend.data_fingerprint()

    def prepare(self, episode_key: int, episode: tuple[int, Any]) -> int:
        """The episode's shards from its seed and layout (once per episode; a restarted actor redoes it); its pid."""
        if self.episode_key != episode_key:
            seed, layout = episode
            self.backend.reset(int(seed), layout)
            self.episode_key = episode_key
        return os.getpid()

    def train(self, episode_key: int, episode: tuple[int, Any], states: list[Any], units: list[list[Job]],
              round_index: int) -> tuple[dict[int, dict[str, Any]], dict[str, float]]:
        """Train ``units`` (lists of jobs; a batched group is one unit) from the round's globals ``states``."""
        from iov_env.learning.real import _TaskState

        t0 = time.perf_counter()
        self.prepare(episode_key, episode)
        b = self.backend
        # the object store hands out read-only arrays: the globals are small next to the model, copy them
        b.state = [_TaskState({n: (fb.copy(), fa.copy()) for n, (fb, fa) in st.factors.items()},
                              {n: w.copy() for n, w in st.head.items()}) for st in states]
        b._validate_s = 0.0
        out: dict[int, dict[str, Any]] = {}
        longest = 0.0
        for i, unit in enumerate(units):
            t = time.perf_counter()
            out.update(b.train_local(unit, round_index))
            longest = max(longest, time.perf_counter() - t)
            if i == 0:
                _maybe_fail()
        return out, {"busy": time.perf_counter() - t0, "validate": b._validate_s, "longest_unit": longest}


def _maybe_fail() -> None:
    path = os.environ.get(FAULT_FILE_ENV)
    if not path:
        return
    try:
        os.remove(path)
    except FileNotFoundError:
        return
    os._exit(1)  # a crash, not an exception: no cleanup, no reply


def balance(costs: Sequence[float], bins: int) -> list[list[int]]:
    """Indices of ``costs`` in ``bins`` lists of near-equal sums (longest first onto the least loaded; ties by index).

    Deterministic, and each list keeps its indices in ascending order.
    """
    if bins < 1:
        raise ValueError(f"bins={bins}; allowed: >= 1")
    load = [0.0] * bins
    out: list[list[int]] = [[] for _ in range(bins)]
    for i in sorted(range(len(costs)), key=lambda j: (-float(costs[j]), j)):
        b = min(range(bins), key=lambda j: (load[j], j))
        out[b].append(i)
        load[b] += float(costs[i])
    return [sorted(x) for x in out]


class RayPool:
    """The driver's side of ``engine="ray"``: the actors, the episode and the round's fan-out (see the module)."""

    def __init__(self, config: IoVConfig, data_dir: str | None, fingerprint: dict[str, Any]) -> None:
        ray = import_ray()
        ln = config.learning
        self.config = config
        self.started = not ray.is_initialized()
        if self.started:
            # a local Ray inherits this process's environment (PYTHONPATH, IOV_DATA_DIR); on a cluster every node
            # needs iov-env installed and its data reachable: Ray ships the call, not the package
            ray.init(address=ln.ray_address or None, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True)
        self.address = ln.ray_address or "a local Ray"
        gpu = ln.device.startswith("cuda")
        self.cpus = max(1, ln.torch_threads)
        resources = ray.cluster_resources()
        n = ln.ray_actors
        if n == 0:
            n = int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 1)) // self.cpus
            if n < 1:
                self.close()
                raise RuntimeError(
                    f"ray_actors=0 means one actor per {'GPU' if gpu else f'{self.cpus} cores'}, and the Ray cluster "
                    f"at {self.address} has {resources.get('GPU' if gpu else 'CPU', 0)}; allowed: a cluster with some, "
                    "or ray_actors > 0")
        need, kind = (n, "GPU") if gpu else (n * self.cpus, "CPU")
        if need > resources.get(kind, 0):
            # Ray would wait for resources that never come: refuse instead of hanging
            self.close()
            raise RuntimeError(
                f"ray_actors={n} needs {need} {kind}s ({'one GPU' if gpu else f'{self.cpus} CPUs'} per actor); the "
                f"Ray cluster at {self.address} has {resources.get(kind, 0):g}; allowed: at most "
                f"{int(resources.get(kind, 0)) // (1 if gpu else self.cpus)} actors, or ray_actors=0")
        self.num_actors = n
        # each actor: Ray pins its GPU (CUDA_VISIBLE_DEVICES), so inside it the device is plain "cuda"
        actor_cfg = config.replace(engine=ln.ray_engine, ray_engine="sequential", ray_address="", ray_actors=0,
                                   torch_threads=self.cpus, device="cuda" if gpu else ln.device)
        remote = ray.remote(VehicleTrainer).options(
            num_cpus=self.cpus, num_gpus=1 if gpu else 0, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
        self.actors = [remote.remote(actor_cfg, data_dir) for _ in range(n)]
        self.episode_key = 0
        self.episode_ref: Any = None
        self.dead: set[int] = set()  # actors gone for good (Ray's restarts spent): no more shares for them
        try:
            theirs = ray.get([a.fingerprint.remote() for a in self.actors])
        except Exception:
            self.close()
            raise
        for i, fp in enumerate(theirs):
            if fp != fingerprint:
                self.close()
                raise RuntimeError(
                    f"Ray actor {i} loaded other model or data than this process: {fp} != {fingerprint}; allowed: "
                    "the same base model and data sets on every node (IOV_DATA_DIR, or the hub on all of them)")

    def reset(self, seed: int, layout: Any) -> None:
        """A new episode: its seed and layout go to the object store once; every actor derives the shards now."""
        ray = import_ray()
        self.episode_key += 1
        self.episode_ref = ray.put((int(seed), layout))
        ray.get([a.prepare.remote(self.episode_key, self.episode_ref)
                 for i, a in enumerate(self.actors) if i not in self.dead])

    def train(self, states: list[Any], jobs: list[Job], round_index: int,
              costs: Sequence[float] | None = None) -> tuple[dict[int, dict[str, Any]], dict[str, float]]:
        """Every job's local round on the actors, from the globals ``states``; results by vehicle, and timings.

        ``costs`` (one per job, any unit) balance the actors' shares; None counts steps.
        """
        ray = import_ray()
        from ray.exceptions import RayActorError

        if self.episode_ref is None:
            raise RuntimeError("reset(seed, layout) before train()")
        t0 = time.perf_counter()
        states_ref = ray.put(states)  # one broadcast: every actor gets the same ref
        t_put = time.perf_counter()
        ln = self.config.learning
        size = ln.engine_group_size if ln.ray_engine == "batched" else 1
        units = [jobs[i:i + size] for i in range(0, len(jobs), size)]  # batched: the in-process engine's groups
        job_cost = [float(j[3]) + 1.0 for j in jobs] if costs is None else [float(c) for c in costs]
        unit_cost = [sum(job_cost[i:i + size]) for i in range(0, len(jobs), size)]
        live = [a for a in range(len(self.actors)) if a not in self.dead]
        if not live:
            raise RuntimeError(f"round {round_index}: every Ray actor died earlier; the round was not committed")
        shares = [[units[u] for u in share] for share in balance(unit_cost, len(live)) if share]

        def submit(actor: int, share: list[list[Job]]) -> Any:
            return self.actors[actor].train.remote(self.episode_key, self.episode_ref, states_ref, share, round_index)

        pending = {submit(live[i % len(live)], share): (live[i % len(live)], share, 1)
                   for i, share in enumerate(shares)}
        outs: dict[int, dict[str, Any]] = {}
        busy: list[float] = []
        validate = longest = 0.0
        retried = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            actor, share, tries = pending.pop(ref)
            try:
                out, info = ray.get(ref)
            except RayActorError as exc:
                # Ray's own restarts and retries are spent: this actor is gone, its share goes to the next live one
                if actor in live:
                    live.remove(actor)
                    self.dead.add(actor)
                if not live or tries > len(self.actors):
                    raise RuntimeError(
                        f"round {round_index}: every Ray actor that could take vehicles "
                        f"{sorted(j[0] for u in share for j in u)} died ({type(exc).__name__}); the round was not "
                        "committed") from exc
                nxt = min(live, key=lambda a: (a - actor) % len(self.actors))  # the next live one, cyclically
                pending[submit(nxt, share)] = (nxt, share, tries + 1)
                retried += 1
                continue
            outs.update(out)
            busy.append(info["busy"])
            validate += info["validate"]
            longest = max(longest, info["longest_unit"])
        t_done = time.perf_counter()
        return outs, {"broadcast": t_put - t0, "remote": t_done - t_put, "actor_busy_sum": float(sum(busy)),
                      "actor_busy_max": float(max(busy, default=0.0)), "longest_unit": longest, "validate": validate,
                      "shares": float(len(shares)), "retried_shares": float(retried)}

    def close(self) -> None:
        """Stop the actors, and Ray itself when this pool started it."""
        try:
            ray = import_ray()
        except ImportError:  # pragma: no cover - the pool could not have started
            return
        for a in getattr(self, "actors", []):
            try:
                ray.kill(a)
            except Exception:  # an actor already gone is what close wants
                pass
        self.actors = []
        if self.started and ray.is_initialized():
            ray.shutdown()
        self.started = False


def amdahl(serial_s: float, parallel_s: float, longest_unit_s: float, actors: int) -> float:
    """Projected round seconds on ``actors`` actors: the serial part, plus the parallel part split evenly
    but never below the longest single unit (a vehicle, or a batched group, cannot be split)."""
    if actors < 1:
        raise ValueError(f"actors={actors}; allowed: >= 1")
    return float(serial_s + max(parallel_s / actors, longest_unit_s))


__all__ = ["FAULT_FILE_ENV", "MAX_RESTARTS", "RayPool", "VehicleTrainer", "amdahl", "balance", "import_ray"]
