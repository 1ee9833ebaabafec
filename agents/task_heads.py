"""A MaskablePPO policy whose actor reads only the vehicle's task: one learned rank distribution per task.

Why (measured, see ``benchmarks/data/rl/v2/RL_DIAGNOSIS_v2.md``): in the MiniLM-fitted worlds a fixed rank
per task, chosen in hindsight, is within a few percent of the oracle, while the effect of one vehicle's
rank on its reward (0.04 to 1.3 reward units in ``paper-v2``) is small against the reward's noise given
everything the vehicle observes (10 to 15 units). An actor that sees only the task pools every sample of
a task into the same 7 logits. What made the learners find the per-task rank was the discount (0 instead
of 0.99, ``benchmarks.train_rl``); with it, task heads and a full-observation actor both learn (0.68 and
0.81 on 2 runs each), and with 5 runs the task heads ended higher on validation, within overlapping CIs.

``TaskHeadMaskablePolicy`` is sb3-contrib's ``MaskableActorCriticPolicy`` with separate feature
extractors, where the actor's keeps the first ``task_dims`` entries of the observation (the task one-hot,
``iov_env.envs.parallel.observation_layout``) and zeroes the rest. With ``net_arch={"pi": [], ...}`` the
action logits are ``W[:, task] + b``: a table of per-task logits. The critic keeps the whole observation,
since a value baseline that knows the round, the channel and last round's accuracy removes part of the
reward's spread from the advantage. Masks still apply: a forbidden rank is never sampled.

The module imports torch, so it is loaded only where a policy is built (``agents.sb3``, ``agents.checkpoints``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch as th
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor


class TaskOnlyExtractor(FlattenExtractor):
    """The flattened observation with everything but its first ``task_dims`` entries set to 0.

    The output keeps the observation's width, so the actor's layers have the shape a plain policy's
    would; the weights on the zeroed entries get no gradient and stay at their initial values.
    """

    def __init__(self, observation_space: gym.Space, task_dims: int) -> None:
        super().__init__(observation_space)
        if not 1 <= task_dims <= self.features_dim:
            raise ValueError(f"task_dims={task_dims!r}; allowed: 1 .. {self.features_dim} (the observation's width)")
        mask = th.zeros(self.features_dim)
        mask[:task_dims] = 1.0
        # not persistent: the state_dict stays that of a plain policy, and the mask is rebuilt from task_dims
        self.register_buffer("keep", mask, persistent=False)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        """Flatten, then keep only the task entries."""
        return super().forward(observations) * self.keep


class TaskHeadMaskablePolicy(MaskableActorCriticPolicy):
    """MaskableActorCriticPolicy whose actor sees only the task one-hot (see the module doc)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, lr_schedule: Any, *args: Any,
                 task_dims: int = 1, **kwargs: Any) -> None:
        if kwargs.get("share_features_extractor", False):
            raise ValueError("TaskHeadMaskablePolicy: share_features_extractor=True; allowed: False (the actor and "
                             "the critic see different features)")
        kwargs["share_features_extractor"] = False
        self.task_dims = int(task_dims)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        # the actor's extractor is swapped before the optimiser is made (it has no parameters either way)
        self.pi_features_extractor = TaskOnlyExtractor(self.observation_space, self.task_dims)
        super()._build(lr_schedule)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["task_dims"] = self.task_dims
        return data
