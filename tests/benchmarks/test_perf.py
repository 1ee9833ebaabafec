"""benchmarks/studies/perf.py: its measurements are well-formed (speed itself is never asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.studies import perf
from iov_env.cli import main as iov


def test_throughput_row_is_consistent() -> None:
    """agent-steps/s and ms per round describe the same measurement."""
    row = perf.env_throughput(20, min_seconds=0.05, repeats=1)
    assert row["num_vehicles"] == 20 and row["agent_steps_per_s"] > 0
    assert abs(row["ms_per_round"] - 1e3 * 20 / row["agent_steps_per_s"]) < 1e-9


def test_import_time_reports_no_torch() -> None:
    """``import iov_env`` in a fresh interpreter never loads torch."""
    out = perf.import_time_s(repeats=1)
    assert out["torch_imported"] is False and out["import_s"] > 0


def test_cli_writes_json_with_ratios(tmp_path: Path) -> None:
    """The JSON holds one row per size and the ratio to N=100 is 1 for N=100."""
    target = tmp_path / "perf.json"
    assert iov(["perf", "fast", "--sizes", "10", "100", "--seconds", "0.05", "--out", str(target)]) == 0
    data = json.loads(target.read_text())
    rows = {r["num_vehicles"]: r for r in data["throughput"]}
    assert set(rows) == {10, 100} and rows[100]["ratio_to_n100"] == 1.0


def test_sumo_backends_are_compared_side_by_side() -> None:
    """libsumo and traci run the same network and trips, give the same trace, and the ratio is lib / traci."""
    from iov_env.sim import sumo

    reason = sumo.missing_reason() or (None if sumo.importable("libsumo") else "libsumo is not installed")
    if reason:
        pytest.skip(reason)
    out = perf.sumo_backends(preset="tiny", repeats=1, live_steps=10)
    assert out["same_trace"] is True
    for mode in ("trace", "live"):
        r = out[mode]
        assert r["libsumo_steps_per_s"] > 0 and r["traci_steps_per_s"] > 0
        assert r["ratio_libsumo_to_traci"] == r["libsumo_steps_per_s"] / r["traci_steps_per_s"]


def test_env_on_sumo_against_the_grid_is_a_ratio() -> None:
    from iov_env.sim import sumo

    if sumo.missing_reason():
        pytest.skip(sumo.missing_reason())
    out = perf.env_on_sumo_vs_grid(preset="tiny", episodes=1)
    assert out["sumo_agent_steps_per_s"] > 0 and out["grid_agent_steps_per_s"] > 0
    assert out["ratio_sumo_to_grid"] == out["sumo_agent_steps_per_s"] / out["grid_agent_steps_per_s"]


def _in_git_checkout() -> bool:
    import subprocess

    root = Path(perf.__file__).resolve().parents[1]
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True).returncode == 0


@pytest.mark.skipif(not _in_git_checkout(), reason="--baseline materialises a git ref: needs a git checkout")
def test_baseline_comparison_runs_both_codes_and_reports_ratios(tmp_path: Path) -> None:
    """Against HEAD: one row per size, both sides measured, ratios are this code over the ref's, on wall and CPU."""
    target = tmp_path / "base.json"
    assert iov(["perf", "fast", "--baseline", "HEAD", "--sizes", "10", "--seconds", "0.05", "--repeats", "3",
                      "--out", str(target)]) == 0
    (row,) = json.loads(target.read_text())["baseline"]
    assert row["num_vehicles"] == 10 and row["ref"] == "HEAD" and row["pairs"] == 3 and row["window_s"] == 0.05
    for key, label in (("agent_steps_per_s", "wall"), ("agent_steps_per_cpu_s", "cpu")):
        assert row[f"base_{key}"] > 0 and row[f"new_{key}"] > 0
        # the median of the paired ratios lies inside their quartiles and range
        assert row[f"ratio_{label}_min"] <= row[f"ratio_{label}_q1"] <= row[f"ratio_{label}"]
        assert row[f"ratio_{label}"] <= row[f"ratio_{label}_q3"] <= row[f"ratio_{label}_max"]


def test_baseline_refuses_an_unknown_ref() -> None:
    with pytest.raises(ValueError, match="not a git commit"):
        perf.compare_with_ref("no-such-ref-xyz", [10], 0.05, repeats=1)


def test_phase_times_nest_inside_the_env_step_and_restore_the_code() -> None:
    from iov_env.envs import parallel
    from iov_env.sim import simulator

    before = (parallel.validate_actions, simulator.IoVSimulator.step, parallel.IoVParallelEnv._infos)
    stepper = perf._Stepper(10)
    phases = perf.phase_times(stepper, rounds=20)
    stepper.env.close()
    assert set(phases) == {label for label, *_ in perf.PHASES}
    assert phases["env step"]["share"] == pytest.approx(1.0)
    for label in ("simulator step", "per-agent infos", "action validation", "grid mobility"):
        assert 0 < phases[label]["us_per_round"] < phases["env step"]["us_per_round"], label
    for label in ("fault decision", "surrogate round", "grid mobility", "next-round preparation"):
        assert phases[label]["us_per_round"] < phases["simulator step"]["us_per_round"], label
    # the wrappers are gone afterwards
    assert (parallel.validate_actions, simulator.IoVSimulator.step, parallel.IoVParallelEnv._infos) == before


def test_read_infos_makes_the_stepper_fill_every_info(tmp_path: Path) -> None:
    """--read-infos: after each step the caller has read every agent's info (the lazy infos got built)."""
    from iov_env.envs.infos import ReadOnlyDict

    stepper = perf._Stepper(12, read_infos=True)
    seen = []
    step = stepper.env.step

    def keep(actions: dict) -> tuple:
        out = step(actions)
        seen.append(out[4])
        return out

    stepper.env.step = keep
    stepper._step()
    stepper.env.close()
    (infos,) = seen
    assert len(dict.values(infos)) == 12 and all(type(i) is ReadOnlyDict for i in dict.values(infos))
    target = tmp_path / "perf.json"
    assert iov(["perf", "fast", "--sizes", "10", "--seconds", "0.05", "--read-infos", "--out", str(target)]) == 0
    (row,) = json.loads(target.read_text())["throughput"]
    assert row["read_infos"] is True and row["agent_steps_per_s"] > 0
