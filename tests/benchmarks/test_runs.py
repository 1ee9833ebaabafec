"""benchmarks/runs.py and the leaderboard's operations: resume after a kill, stale outputs, workers, Ray."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import leaderboard, runs
from iov_env.cli import main as iov

# random and oracle are named: the leaderboard always runs them (the score's 0 and 1)
GRID = ["--scenarios", "tiny-v1", "--agents", "homolora", "random", "oracle", "--seeds", "2", "--reps", "50"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "runs.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(fh)]


def _square(x: int) -> int:
    return x * x


def test_result_store_keys_on_the_settings_and_prunes_other_grids(tmp_path: Path) -> None:
    """Same job -> stored result; other settings -> None (rerun, not reused); prune keeps only the given jobs."""
    store = runs.ResultStore(tmp_path)
    a = {"scenario": "s", "agent": "x", "seed": 0, "sb3_timesteps": 10}
    b = {**a, "seed": 1}
    store.put(a, {"r": 1.5})
    store.put(b, {"r": 2.5})
    assert store.get(a) == {"r": 1.5} and store.get({**a, "sb3_timesteps": 20}) is None
    (tmp_path / runs.run_key(a)).with_suffix(".json").write_text("{half a fi")  # a torn file counts as absent
    assert store.get(a) is None
    assert store.prune([b]) == 1 and store.get(b) == {"r": 2.5}


def test_execute_returns_results_in_job_order_in_every_layout() -> None:
    """Serial and pooled runs give the same list; callbacks see every job once; bad workers are refused."""
    seen: list[int] = []
    serial = runs.execute(_square, list(range(6)), progress=False)
    pooled = runs.execute(_square, list(range(6)), workers=2, progress=False, on_result=lambda i, r: seen.append(i))
    assert serial == pooled == [0, 1, 4, 9, 16, 25] and sorted(seen) == list(range(6))
    with pytest.raises(ValueError, match="workers"):
        runs.execute(_square, [1], workers=0)


def test_pool_workers_get_their_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pooled workers each get cores // 2 threads (at least 1), whatever the parent's own setting."""
    from iov_env.threads import available_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "64")  # what a spawned worker would inherit without its share

    share = str(max(1, available_cores() // 2))
    assert runs.execute(os.getenv, ["OMP_NUM_THREADS"] * 3, workers=2, progress=False) == [share] * 3


@pytest.mark.ray
def test_ray_tasks_get_one_cpus_threads(local_ray: object) -> None:
    """A Ray task asks for one CPU, so it runs with one thread."""
    assert runs.execute(os.getenv, ["OMP_NUM_THREADS"] * 2, ray_address="local", progress=False) == ["1"] * 2


def test_leaderboard_resumes_after_a_kill_without_rerunning_or_duplicating(tmp_path: Path, monkeypatch) -> None:
    """Killed at the 4th run: the rerun runs only the 3 left, and the rows equal an uninterrupted run's."""
    out = tmp_path / "lb"
    real = leaderboard.run_one
    calls: list[tuple[str, int]] = []

    def dies_on_fourth(job: dict) -> dict:
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        calls.append((job["agent"], job["seed"]))
        return real(job)

    monkeypatch.setattr(leaderboard, "run_one", dies_on_fourth)
    assert iov(["leaderboard", *GRID, "--out", str(out), "--no-plots"]) == 130  # click turns the interrupt into 130
    assert len(list((out / "runs").glob("*.json"))) == 3 and not (out / "runs.csv").exists()

    def counting(job: dict) -> dict:
        calls.append((job["agent"], job["seed"]))
        return real(job)

    monkeypatch.setattr(leaderboard, "run_one", counting)
    assert iov(["leaderboard", *GRID, "--out", str(out), "--no-plots"]) == 0
    assert len(calls) == 6 and len(set(calls)) == 6  # 3 before the kill + the 3 left, none twice
    monkeypatch.setattr(leaderboard, "run_one", real)
    assert iov(["leaderboard", *GRID, "--out", str(tmp_path / "clean"), "--no-plots"]) == 0
    assert _rows(out) == _rows(tmp_path / "clean") and len(_rows(out)) == 6


def test_a_new_run_removes_the_earlier_runs_outputs(tmp_path: Path) -> None:
    """No PNG of a scenario that is not in the new run, and no stored runs of the old grid."""
    out = tmp_path / "lb"
    assert iov(["leaderboard", "--scenarios", "tiny-v1", "--agents", "homolora", "--seeds", "2", "--reps", "20",
                             "--out", str(out)]) == 0
    assert (out / "tiny-v1.png").exists()
    (out / "notes.txt").write_text("mine")
    assert iov(["leaderboard", "--scenarios", "scale-10-v1", "--agents", "random", "--seeds", "2", "--reps", "20",
                             "--out", str(out), "--no-plots"]) == 0
    assert not (out / "tiny-v1.png").exists() and not list(out.glob("*.png"))
    assert {r["scenario"] for r in _rows(out)} == {"scale-10-v1"} and len(list((out / "runs").glob("*.json"))) == 4  # random, oracle
    assert (out / "notes.txt").read_text() == "mine"  # only the leaderboard's own kinds of files go
    unrelated = tmp_path / "mine"
    unrelated.mkdir()
    (unrelated / "data.csv").write_text("x")
    assert runs.clear_outputs(unrelated, markers=("LEADERBOARD.md", "runs")) == []


def test_workers_give_the_same_rows_as_one_process(tmp_path: Path) -> None:
    """--workers 2 (a process pool) and --workers 1 write identical runs.csv rows, in the same order."""
    assert iov(["leaderboard", *GRID, "--out", str(tmp_path / "w1"), "--no-plots"]) == 0
    assert iov(["leaderboard", *GRID, "--out", str(tmp_path / "w2"), "--no-plots", "--workers", "2"]) == 0
    assert _rows(tmp_path / "w1") == _rows(tmp_path / "w2")


@pytest.mark.ray
def test_ray_gives_the_same_rows_as_one_process(tmp_path: Path, local_ray: object) -> None:
    """--ray (on the session's local Ray) writes the rows --workers 1 writes."""
    assert iov(["leaderboard", *GRID, "--out", str(tmp_path / "w1"), "--no-plots"]) == 0
    assert iov(["leaderboard", *GRID, "--out", str(tmp_path / "ray"), "--no-plots", "--ray"]) == 0
    assert _rows(tmp_path / "w1") == _rows(tmp_path / "ray")


def test_ray_flag_without_ray_says_how_to_install(tmp_path: Path) -> None:
    """Where Ray is missing, --ray fails with the install hint (and writes no rows)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"iov-env\[ray\]"):
            iov(["leaderboard", *GRID, "--out", str(tmp_path / "r"), "--no-plots", "--ray"])
        assert not (tmp_path / "r" / "runs.csv").exists()
    else:
        pytest.skip("Ray is installed here")


# -- issue 22: one writer per results folder ----------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]
# a leaderboard run that stops after storing its first run, until its stdin closes (or it is killed)
PAUSING_RUN = """
import sys
from benchmarks import runs
from iov_env.cli import main
real_put = runs.ResultStore.put
def put(self, job, result):
    path = real_put(self, job, result)
    print("STORED", flush=True)
    sys.stdin.readline()
    return path
runs.ResultStore.put = put
sys.exit(main(["leaderboard", *sys.argv[1:]]))
"""


def _start_paused_run(out: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", PAUSING_RUN, *GRID, "--out", str(out), "--no-plots"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env,
                             cwd=REPO)
    assert child.stdout is not None
    line = child.stdout.readline()  # blocks until the child holds the lock and has stored one run
    assert line.strip() == "STORED", f"child did not start: {line!r}; {log.read_text()[-2000:]}"
    return child


def test_a_second_run_into_a_folder_in_use_fails_at_once_naming_the_holder(tmp_path: Path, capsys) -> None:
    """Two leaderboard runs into one --out: the second exits 1 naming the first (pid, host, command) and writes
    nothing; the first then finishes with the rows of an uninterrupted run (they used to mix their outputs)."""
    out = tmp_path / "lb"
    child = _start_paused_run(out, tmp_path / "child.log")
    try:
        assert iov(["leaderboard", *GRID, "--out", str(out), "--no-plots"]) == 1
        err = capsys.readouterr().err
        assert f"results folder {out} is in use by another run (pid {child.pid} on host {socket.gethostname()}" in err
        assert "iov leaderboard --scenarios tiny-v1" in err and "pass another --out" in err
        assert len(list((out / "runs").glob("*.json"))) == 1 and not (out / "runs.csv").exists()
    finally:
        child.communicate("", timeout=600)  # closing stdin lets it finish
    assert child.returncode == 0
    assert iov(["leaderboard", *GRID, "--out", str(tmp_path / "clean"), "--no-plots"]) == 0
    assert _rows(out) == _rows(tmp_path / "clean")
    assert (out / runs.LOCK_NAME).read_text() == ""  # released and cleared: nothing to take over


def test_a_sigkilled_run_leaves_a_lock_that_the_rerun_takes_over_and_resumes(tmp_path: Path, capsys) -> None:
    """SIGKILL mid-run: the kernel drops the OS lock; the rerun says whose lock it takes over, resumes the stored
    run and writes the rows of an uninterrupted run."""
    out = tmp_path / "lb"
    child = _start_paused_run(out, tmp_path / "child.log")
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert json.loads((out / runs.LOCK_NAME).read_text())["pid"] == child.pid  # its record survives the kill
    assert iov(["leaderboard", *GRID, "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr()
    assert f"its holder (pid {child.pid} on host {socket.gethostname()}" in printed.err
    assert "is no longer running" in printed.err
    assert "resuming: 1 of 6 runs already done" in printed.out
    assert iov(["leaderboard", *GRID, "--out", str(tmp_path / "clean"), "--no-plots"]) == 0
    assert _rows(out) == _rows(tmp_path / "clean") and len(_rows(out)) == 6


def test_lock_folder_refuses_a_second_holder_in_the_same_process_too(tmp_path: Path) -> None:
    """flock locks belong to the open file: a second ``lock_folder`` fails even from the holder's own process."""
    with runs.lock_folder(tmp_path, "first"):
        with pytest.raises(runs.FolderLockedError, match=rf"pid {os.getpid()} on host .*: first"):
            with runs.lock_folder(tmp_path, "second"):
                pass
    with runs.lock_folder(tmp_path, "third") as lock:
        assert json.loads(lock.read_text())["command"] == "third"


def test_train_rl_takes_the_lock_too(tmp_path: Path, capsys) -> None:

    with runs.lock_folder(tmp_path / "rl", "iov train --out rl"):
        assert iov(["train", "--scenarios", "tiny-v1", "--agents", "ppo_shared", "--seeds", "1", "--env-steps", "8",
                    "--report-only", "--out", str(tmp_path / "rl")]) == 1
    assert "is in use by another run" in capsys.readouterr().err
