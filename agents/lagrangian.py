"""PPO-Lagrangian's two parts: a Lagrange multiplier learned from episode costs, and the penalised reward.

The constrained problem is the one the env states (Safety-Gymnasium convention): maximise the reward
while each vehicle's episode energy ``sum_t info["cost"]`` stays within its episode budget
``sum_t info["budget"]``. PPO-Lagrangian trains PPO on ``reward - lambda * cost`` and moves lambda by
dual ascent on the measured violation: up while episodes overspend, down (never below 0) while they
underspend.

``PIDLagrangian`` is the multiplier. With its defaults (``kp = kd = 0``) it is the standard gradient
ascent ``lambda <- max(0, lambda + ki * e)`` of OmniSafe's ``Lagrange`` (there with Adam on
``-lambda * (Jc - d)``); ``kp``/``kd`` give Stooke et al.'s PID Lagrangian (OmniSafe ``PIDLagrangian``),
which damps the oscillation of the pure integral. One deliberate difference from both: the error is
the *relative* violation ``e = Jc / d - 1``, because the budget here is per vehicle and per round (it
moves with the scenario and the cloud's re-allocation), so the same gains work in every scenario.

``CostPenaltyVecEnv`` (an SB3 ``VecEnvWrapper``) subtracts ``lambda * info["cost"]`` from each slot's
reward and records finished episodes' cost and budget; ``LagrangeCallback`` updates lambda from them
after every rollout, before the next one is collected, so each rollout is gathered under one lambda.
Lambda is in reward units per joule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class PIDLagrangian:
    """A Lagrange multiplier driven by the relative violation ``e = Jc / d - 1`` (PI-D, clipped at 0)."""

    ki: float = 0.05  # integral gain: the dual ascent step (reward/J per unit of relative violation)
    kp: float = 0.0  # proportional gain (PID-Lagrangian); 0 = plain gradient ascent
    kd: float = 0.0  # derivative gain on a rising cost (PID-Lagrangian)
    lambda_init: float = 0.0
    lambda_max: float = math.inf
    integral: float = 0.0
    previous_error: float | None = None
    value: float = 0.0
    updates: int = 0

    def __post_init__(self) -> None:
        for name in ("ki", "kp", "kd", "lambda_init"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"PIDLagrangian.{name}={v!r}; allowed: a finite number >= 0")
        if not self.lambda_max > 0:
            raise ValueError(f"PIDLagrangian.lambda_max={self.lambda_max!r}; allowed: > 0")
        if self.updates == 0:
            self.value = min(self.lambda_init, self.lambda_max)
            # the integral is the accumulated error, so that ki * integral starts at lambda_init
            self.integral = self.lambda_init / self.ki if self.ki > 0 else 0.0

    def update(self, episode_cost: float, episode_budget: float) -> float:
        """One dual step from the mean episode cost ``Jc`` against the mean episode budget ``d``; returns lambda."""
        if not (math.isfinite(episode_cost) and math.isfinite(episode_budget)) or episode_budget <= 0:
            raise ValueError(
                f"episode_cost={episode_cost!r}, episode_budget={episode_budget!r}; allowed: finite, budget > 0"
            )
        error = episode_cost / episode_budget - 1.0
        self.integral = max(0.0, self.integral + error)
        rising = 0.0 if self.previous_error is None else max(0.0, error - self.previous_error)
        self.previous_error = error
        self.value = float(min(self.lambda_max, max(0.0, self.kp * error + self.ki * self.integral + self.kd * rising)))
        self.updates += 1
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (plain data, JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PIDLagrangian:
        """The multiplier as it was saved."""
        return cls(**state)


def _vec_env_wrapper_base() -> type:
    from stable_baselines3.common.vec_env import VecEnvWrapper

    return VecEnvWrapper


def make_cost_penalty_vec_env(venv: Any, multiplier: PIDLagrangian) -> Any:
    """Wrap an SB3 VecEnv so that rewards become ``reward - lambda * info["cost"]`` (see module doc)."""
    base = _vec_env_wrapper_base()

    class CostPenaltyVecEnv(base):  # type: ignore[misc, valid-type]
        """Penalised rewards under the current lambda; finished episodes' (cost, budget) for the dual step."""

        def __init__(self, venv: Any, multiplier: PIDLagrangian) -> None:
            super().__init__(venv)
            self.multiplier = multiplier
            self._cost = np.zeros(self.num_envs)
            self._budget = np.zeros(self.num_envs)
            self.finished: list[tuple[float, float]] = []

        def reset(self) -> Any:
            self._cost[:] = 0.0
            self._budget[:] = 0.0
            return self.venv.reset()

        def step_wait(self) -> Any:
            obs, rewards, dones, infos = self.venv.step_wait()
            cost = np.array([float(i.get("cost", 0.0)) for i in infos])
            budget = np.array([float(i.get("budget", 0.0)) for i in infos])
            self._cost += cost
            self._budget += budget
            for i in np.flatnonzero(dones):
                self.finished.append((float(self._cost[i]), float(self._budget[i])))
                self._cost[i] = self._budget[i] = 0.0
            for info, c in zip(infos, cost, strict=True):
                info["lagrangian_cost"] = c  # the unpenalised cost, for loggers
            return obs, (rewards - self.multiplier.value * cost).astype(np.float32), dones, infos

        def pop_finished(self) -> list[tuple[float, float]]:
            """Episodes finished since the last call, as (cost, budget) pairs."""
            out, self.finished = self.finished, []
            return out

    return CostPenaltyVecEnv(venv, multiplier)


def make_lagrange_callback(penalty_env: Any) -> Any:
    """An SB3 callback that takes the dual step after each rollout and logs lambda, Jc and d."""
    from stable_baselines3.common.callbacks import BaseCallback

    class LagrangeCallback(BaseCallback):
        """Updates the multiplier from the episodes the last rollout finished (none finished: no step)."""

        def __init__(self) -> None:
            super().__init__(verbose=0)
            self.penalty_env = penalty_env
            self.history: list[dict[str, float]] = []

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            episodes = self.penalty_env.pop_finished()
            if not episodes:
                return
            cost, budget = (float(np.mean(x)) for x in zip(*episodes, strict=True))
            if budget <= 0:
                return
            lam = self.penalty_env.multiplier.update(cost, budget)
            self.history.append({"timesteps": float(self.num_timesteps), "lambda": lam,
                                 "episode_cost": cost, "episode_budget": budget})
            self.logger.record("lagrangian/lambda", lam)
            self.logger.record("lagrangian/episode_cost", cost)
            self.logger.record("lagrangian/episode_budget", budget)

    return LagrangeCallback()
