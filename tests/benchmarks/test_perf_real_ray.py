"""``iov perf real --round --ray-actors``: the driver's share and the Amdahl projection from a measured round."""

from __future__ import annotations

import pytest

from benchmarks.studies.perf_real import ray_projection, round_report


def _measured() -> dict:
    # a round as round_here records it: 100 s in one process; on 1 actor 104 s, of which the actor was busy 96 s
    ray_row = {"wall_s": 104.0, "broadcast": 0.5, "remote": 97.0, "aggregate": 0.5, "evaluate": 6.0,
               "actor_busy_sum": 96.0, "actor_busy_max": 96.0, "longest_unit": 1.5, "validate": 9.0,
               "dispatch_s": 1.0, "driver_s": 7.0, "driver_share": 7.0 / 104.0, "speedup_over_sequential": 100 / 104,
               "max_task_accuracy_diff": 0.0}
    two = dict(ray_row, wall_s=57.0, remote=50.0, actor_busy_sum=96.0, actor_busy_max=48.5, dispatch_s=1.5,
               driver_share=7.0 / 57.0, speedup_over_sequential=100 / 57)
    return {"model": "m", "preset": "paper", "num_vehicles": 90, "local_steps": 10, "device": "cpu",
            "precision": "fp32", "torch_threads": 1, "cores": 2, "load_1min": 0.3,
            "sequential": {"wall_s": 100.0, "train": 85.0, "validate": 8.0, "aggregate": 0.5, "evaluate": 6.5},
            "ray-1": ray_row, "ray-2": two}


def test_projection_keeps_the_serial_part_and_splits_the_actors_work() -> None:
    p = ray_projection(_measured(), 1)
    assert p["serial_s"] == pytest.approx(8.0) and p["parallel_s"] == 96.0  # 104 - 96: driver 7 s + dispatch 1 s
    assert p["actors"]["1"]["round_s"] == pytest.approx(104.0)  # N=1 reproduces the measured round
    assert p["actors"]["8"]["round_s"] == pytest.approx(8.0 + 12.0)
    assert p["actors"]["128"]["round_s"] == pytest.approx(8.0 + 1.5)  # bounded by the longest vehicle, not 96/128
    assert p["actors"]["8"]["speedup_over_sequential"] == pytest.approx(100.0 / 20.0)
    assert p["actors"]["2"]["measured_s"] == 57.0 and p["actors"]["8"]["measured_s"] is None
    assert p["limit_speedup_over_sequential"] == pytest.approx(100.0 / 8.0)


def test_report_names_the_driver_share_and_every_projected_count() -> None:
    r = _measured()
    r["ray_projection"] = ray_projection(r, 1)
    text = round_report(r)
    assert "| engine=ray, 2 actors x 1 thread | 57.0 |" in text and "1.75x" in text
    assert "12.3%" in text  # the driver's 7 s of the 2-actor round's 57 s
    for n, secs in (("8", "20.0"), ("32", "11.0"), ("128", "9.5")):
        assert f"| {n} | {secs} |" in text


def test_a_sampled_round_trains_that_many_vehicles_spread_over_the_fleet() -> None:
    from benchmarks.studies.perf_real import _round_plan
    from iov_env.config.presets import preset

    cfg = preset("paper", num_vehicles=90)
    plan = _round_plan(cfg, 1, sample=18)
    chosen = plan.training.nonzero()[0]
    assert len(chosen) == 18 and (plan.uploads == plan.training).all()
    assert chosen[0] == 0 and chosen[-1] == 89  # the whole fleet, not its first 18
    assert len(set(plan.rank[chosen].tolist())) == len(cfg.learning.rank_set)  # every rank still played
    full = _round_plan(cfg, 1)
    assert full.training.all() and (_round_plan(cfg, 1, sample=90).training == full.training).all()
    with pytest.raises(ValueError, match="sample=0; allowed: 1 to the fleet's 90"):
        _round_plan(cfg, 1, sample=0)


def test_the_report_names_a_sample() -> None:
    r = dict(_measured(), sample=18)
    r["ray_projection"] = ray_projection(r, 1)
    assert round_report(r).startswith("Round of 18 of 90 vehicles x 10 steps (paper preset)")
