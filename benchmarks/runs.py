"""Run orchestration for the benchmarks: a per-run result store (resume), fan-out and progress bars.

* ``ResultStore``: one small JSON file per finished run under ``<out>/runs/``, written atomically the
  moment the run ends and keyed by what defines it (scenario, agent, seed and the run's settings).
  A rerun after a kill loads what is there and runs only the rest, so nothing is run twice and no row
  is duplicated; a stored run whose settings differ is run again, not reused.
* ``execute``: runs picklable jobs in this process, in a process pool (``workers > 1``), or as Ray
  tasks (``ray_address``: ``"local"`` starts Ray here, anything else is ``ray.init(address=...)``), with
  a tqdm progress bar; results come back in job order whatever order they finished in, so the rows
  are the same either way. Every worker gets its share of the cores (``iov_env.threads.worker_threads``):
  W workers with all cores' torch/BLAS threads each would oversubscribe the CPU.
* ``clear_outputs``: a folder an earlier run wrote keeps no stale tables or plots beside new ones.
* ``lock_folder``: one writer per results folder. An exclusive OS lock (``fcntl.flock``) on
  ``<out>/.iov-run.lock``, taken before anything in the folder is read or written and held until the
  command ends; a second command into the same folder fails at once, naming the holder (pid, host,
  command, start time, written into the lock file). The kernel drops the lock when its holder dies,
  SIGKILL included, so a stale lock is simply taken over (and said so); there is no PID file to clean up.

The leaderboard and the RL training CLI both use it; neither knows how runs are scheduled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from iov_env.results import write_text_atomic

OUTPUT_SUFFIXES = (".csv", ".md", ".png", ".json")
LOCK_NAME = ".iov-run.lock"


class FolderLockedError(RuntimeError):
    """Another live process holds the results folder's lock; the message names it."""


@contextlib.contextmanager
def lock_folder(out: str | os.PathLike[str], command: str, notice: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold an exclusive OS lock on the results folder ``out`` for the ``with`` block; yields the lock file.

    Fails at once with ``FolderLockedError`` naming the holder when another process holds it. A lock file
    left by a killed run holds no lock (the kernel released it): it is taken over, and ``notice`` (stderr
    by default) says whose it was.
    """
    import fcntl
    import socket
    from datetime import datetime, timezone

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    # O_RDWR without O_TRUNC: a process that fails to get the lock must not erase the holder's record
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLockedError(
                f"results folder {folder} is in use by another run ({_holder(fd)}); two runs into one folder would "
                "mix their outputs. Wait for it to finish, or pass another --out"
            ) from None
        previous = _read_holder(fd)
        if previous:
            (notice or _stderr)(f"taking over {path}: its holder ({_describe(previous)}) is no longer running")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # a finished run leaves an empty (unheld) lock file: nothing to take over
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read_holder(fd: int) -> dict[str, Any]:
    raw = os.pread(fd, 64 * 1024, 0)
    try:
        holder = json.loads(raw.decode("utf-8", "replace")) if raw.strip() else {}
    except ValueError:
        return {"record": raw[:200].decode("utf-8", "replace")}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: Mapping[str, Any]) -> str:
    if "pid" not in holder:
        return "no record of who" if not holder else f"unreadable record {holder.get('record')!r}"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command')}")


def _holder(fd: int) -> str:
    # the holder writes its record right after locking: a reader that comes in between sees none yet
    return _describe(_read_holder(fd))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run_key(parts: Mapping[str, Any]) -> str:
    """A file-name-safe, stable key of a run: readable parts plus a hash of the exact values."""
    readable = "__".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", str(v)) for v in parts.values())
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{readable}__{digest}"


class ResultStore:
    """Finished runs, one JSON file each: ``get`` what is done, ``put`` as each run ends, ``prune`` the rest."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _path(self, job: Mapping[str, Any]) -> Path:
        return self.folder / f"{run_key(job)}.json"

    def get(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored result of ``job`` (same key and settings), or None; an unreadable file counts as absent."""
        path = self._path(job)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return stored.get("result") if stored.get("job") == json.loads(json.dumps(dict(job), default=str)) else None

    def put(self, job: Mapping[str, Any], result: Mapping[str, Any]) -> Path:
        """Store ``job``'s result atomically (a kill leaves either the whole file or none)."""
        return write_text_atomic(self._path(job), json.dumps({"job": dict(job), "result": dict(result)}, default=str))

    def prune(self, jobs: Iterable[Mapping[str, Any]]) -> int:
        """Delete stored runs that are not among ``jobs`` (an earlier, different grid); returns how many."""
        keep = {self._path(j).name for j in jobs}
        removed = 0
        if self.folder.is_dir():
            for path in self.folder.glob("*.json"):
                if path.name not in keep:
                    path.unlink()
                    removed += 1
        return removed


def clear_outputs(out: str | os.PathLike[str], markers: Sequence[str]) -> list[Path]:
    """Delete the tables and plots an earlier run left in ``out`` (files directly in it, not the run store).

    Only a folder that an earlier run demonstrably wrote (it holds one of ``markers``, such as
    ``LEADERBOARD.md`` or the ``runs`` store) is cleared, so pointing ``--out`` at an unrelated folder
    deletes nothing.
    """
    folder = Path(out)
    if not folder.is_dir() or not any((folder / m).exists() for m in markers):
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in OUTPUT_SUFFIXES:
            path.unlink()
            removed.append(path)
    return removed


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="run", disable=not enabled, dynamic_ncols=True)


def execute(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    desc: str = "runs",
    on_result: Callable[[int, Any], None] | None = None,
    progress: bool = True,
) -> list[Any]:
    """``[fn(job) for job in jobs]``, serially, in ``workers`` processes, or on Ray; results in job order.

    ``fn`` must be a module-level function (it is pickled to the workers). ``on_result(i, result)`` runs
    in this process as each job finishes, in finishing order: store results there so a kill loses only
    the runs in flight.
    """
    if workers < 1:
        raise ValueError(f"workers={workers!r}; allowed: an integer >= 1")
    results: list[Any] = [None] * len(jobs)
    bar = _progress(len(jobs), desc, progress and len(jobs) > 0)

    def done(i: int, result: Any) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)
        bar.update(1)

    try:
        if not jobs:
            return results
        if ray_address is not None:
            _execute_ray(fn, jobs, ray_address, done)
        elif workers == 1:
            for i, job in enumerate(jobs):
                done(i, fn(job))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            from iov_env.threads import worker_threads

            n = min(workers, len(jobs))
            # spawn: a fresh interpreter per worker (no forked torch/BLAS thread state, same as Ray's workers),
            # limited to its share of the cores before it imports torch
            with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"), initializer=worker_threads,
                                     initargs=(n,)) as pool:
                futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
    finally:
        bar.close()
    return results


def _execute_ray(fn: Callable[[Any], Any], jobs: Sequence[Any], address: str, done: Callable[[int, Any], None]) -> None:
    """The jobs as Ray tasks (one CPU each) on a local or remote cluster."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "--ray needs Ray: pip install 'iov-env[ray]' (in its own venv: ray[rllib] pins gymnasium 1.2.2)"
        ) from exc
    started = not ray.is_initialized()
    if started:
        # local workers inherit this process's environment; on a cluster every node needs iov-env installed
        # (pip install 'iov-env[ray]'), as Ray ships only the function, not the package
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(num_cpus=1)(_one_cpu_task)
        pending = {remote.remote(fn, job): i for i, job in enumerate(jobs)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                done(pending.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def _one_cpu_task(fn: Callable[[Any], Any], job: Any) -> Any:
    """A Ray task's body: its one CPU's worth of threads (whatever the node's defaults), then ``fn(job)``."""
    from iov_env.threads import worker_threads

    worker_threads(1, cores=1)
    return fn(job)


# -- the run record ---------------------------------------------------------------------------------------
# One schema for every benchmark (compare, leaderboard, the RL report): the world ("scenario": a scenario id or,
# in compare, a preset), the agent, the seed, the episode's outcome, then the command's own columns, then the
# oracle's certificate fields and which oracle bounds the run.
RECORD_FIELDS = ("scenario", "agent", "seed", "cumulative_reward", "accuracy_pts", "latency_s", "energy_j", "budget_j",
                 "energy_ratio", "violation_rate")


def run_record(world: str, agent: str, seed: int, episode: Mapping[str, Any], *, bounded_by: str = "",
               **extra: Any) -> dict[str, Any]:
    """The record of one episode (``agents.runner`` summary ``episode``): ``RECORD_FIELDS``, ``extra``, the oracle's
    fields (``scoring.oracle_fields``) and ``bounded_by``."""
    from benchmarks.scoring import oracle_fields

    return {
        "scenario": world, "agent": agent, "seed": seed,
        "cumulative_reward": episode["cumulative_reward"],
        "accuracy_pts": 100.0 * episode["final_accuracy"],
        "latency_s": episode["end_to_end_latency_s"],
        "energy_j": episode["total_energy_j"],
        "budget_j": episode["total_budget_j"],
        "energy_ratio": episode["energy_ratio"],
        "violation_rate": episode["budget_violation_rate"],
        **extra,
        **oracle_fields(episode.get("agent_state_vehicle_0", {})),
        "bounded_by": bounded_by,
    }
