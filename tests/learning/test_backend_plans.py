"""The public constructors studies use for "every vehicle trains at these ranks"."""

from __future__ import annotations

import numpy as np
import pytest

from iov_env.config import preset
from iov_env.learning.backend import FleetLayout, RoundPlan, linear_shards


def test_uniform_plan_trains_every_vehicle_on_every_layer() -> None:
    plan = RoundPlan.uniform(3, np.array([1, 8, 64]), num_layers=6, vehicle_rsu=np.array([0, 1, 0]),
                             train_fraction=0.5)
    assert plan.round_index == 3 and plan.rank.tolist() == [1, 8, 64]
    assert plan.training.all() and plan.uploads.all() and plan.training.dtype == bool
    assert plan.train_fraction.tolist() == [0.5, 0.5, 0.5]
    assert plan.vehicle_rsu.tolist() == [0, 1, 0]
    assert plan.layer_mask.shape == (3, 6) and plan.layer_mask.all()
    assert RoundPlan.uniform(0, np.full(2, 4), num_layers=2).vehicle_rsu.tolist() == [0, 0]


def test_fleet_layouts() -> None:
    one = FleetLayout.one_per_task(3, 450)
    assert one.vehicle_task.tolist() == [0, 1, 2] and one.vehicle_shard_size.tolist() == [450] * 3
    cfg = preset("paper")  # 9 vehicles, 3 tasks, shards 150..450
    fleet = FleetLayout.round_robin(cfg)
    assert fleet.vehicle_task.tolist() == [0, 1, 2] * 3
    assert fleet.vehicle_shard_size.tolist() == [150, 188, 225, 262, 300, 338, 375, 412, 450]
    per_task = FleetLayout.round_robin(cfg, shards="task")
    assert per_task.vehicle_shard_size.tolist() == [150, 150, 150, 300, 300, 300, 450, 450, 450]
    assert per_task.vehicle_shard_size.tolist() == linear_shards(per_task.vehicle_task, 3, 150, 450).tolist()
    with pytest.raises(ValueError, match="allowed: 'fleet' or 'task'"):
        FleetLayout.round_robin(cfg, shards="rsu")
