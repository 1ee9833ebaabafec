"""RLlib: an env creator with action masks, and shared-policy multi-agent PPO, locally or on a Ray cluster.

Install the ``ray`` extra in its own virtual environment: ``ray[rllib]`` pins gymnasium 1.2.2, below
what the main install resolves to. This module imports Ray only inside its functions, so the rest of
the package never needs it.

* ``MaskedObservations`` (a PettingZoo wrapper, no Ray) renames the dict observation to RLlib's
  convention: ``obs_type="dict"`` gives PettingZoo's ``{"observation", "action_mask"}``, while RLlib's
  action-masking RLModule reads ``{"observations", "action_mask"}`` (a float mask, so that its
  ``log(mask)`` is defined).
* ``env_creator(env_config)`` -> ``ParallelPettingZooEnv`` (a ``MultiAgentEnv``) of the masked env; it
  is registered with Tune as ``ENV_NAME``.
* ``ppo_config(env_kwargs, ...)`` -> a ``PPOConfig`` with one policy, ``"shared"``, that every vehicle
  maps to (parameter sharing, like the SB3 shared-parameter agents), and RLlib's
  ``ActionMaskingTorchRLModule``, which adds ``log(mask)`` to the logits: a masked rank is never sampled.
  ``num_env_runners=0`` samples in this process; on a cluster raise it (``ray.init(address=...)``
  first, or ``RLlibTrainer(address=...)``).
* ``RLlibTrainer`` trains it in resumable chunks; ``RLlibPolicy`` is the trained module as an ``Agent``
  (saved and loaded through ``agents.checkpoints``: a folder with ``manifest.json`` and the RLModule, which is
  pickled, so loading it needs ``trust_pickle=True``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo.utils.wrappers import BaseParallelWrapper

from agents.base import Agent, largest_feasible_at_most

ENV_NAME = "iov_env_masked_multi_agent"
POLICY_ID = "shared"
MODULE_PATH = "ray.rllib.examples.rl_modules.classes.action_masking_rlm"


def _require_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "agents.rllib needs Ray: pip install 'iov-env[ray]' in its own venv (ray[rllib] pins gymnasium 1.2.2)"
        ) from exc
    return ray


class MaskedObservations(BaseParallelWrapper):
    """The parallel env with RLlib's masked observation: ``{"observations": vector, "action_mask": float mask}``."""

    def __init__(self, env: Any) -> None:
        if getattr(env.unwrapped, "obs_type", "vector") != "dict":
            raise ValueError("MaskedObservations needs the env built with obs_type='dict' (env_creator does that)")
        super().__init__(env)
        inner = env.observation_space(env.possible_agents[0])
        box = inner["observation"]
        k = inner["action_mask"].shape[0]
        self._space = spaces.Dict({"observations": box, "action_mask": spaces.Box(0.0, 1.0, (k,), dtype=np.float32)})

    def observation_space(self, agent: str) -> spaces.Space:
        """The same space object for every vehicle (PettingZoo requires it per agent)."""
        return self._space

    @staticmethod
    def _convert(obs: Mapping[str, Any]) -> dict[str, Any]:
        return {a: {"observations": o["observation"], "action_mask": o["action_mask"].astype(np.float32)}
                for a, o in obs.items()}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Reset the env; observations in RLlib's masked layout."""
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._convert(obs), infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One round; observations in RLlib's masked layout."""
        obs, rewards, terms, truncs, infos = self.env.step({a: int(v) for a, v in actions.items()})
        return self._convert(obs), rewards, terms, truncs, infos


def masked_parallel_env(env_config: Mapping[str, Any] | None = None) -> MaskedObservations:
    """The PettingZoo env of ``env_config`` (parallel_env keywords) with RLlib's masked observations."""
    import iov_env

    kwargs = {**dict(env_config or {}), "obs_type": "dict"}
    return MaskedObservations(iov_env.parallel_env(**kwargs))


def env_creator(env_config: Mapping[str, Any] | None = None) -> Any:
    """RLlib env creator: a ``MultiAgentEnv`` (``ParallelPettingZooEnv``) with action masks in the observation."""
    _require_ray()
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    # RLlib hands an EnvContext (a dict subclass with worker info); only the keys are env keywords
    return ParallelPettingZooEnv(masked_parallel_env(dict(env_config or {})))


def register() -> str:
    """Register ``env_creator`` with Tune under ``ENV_NAME`` (idempotent); returns the name."""
    _require_ray()
    from ray.tune.registry import register_env

    register_env(ENV_NAME, env_creator)
    return ENV_NAME


def _masking_module_class() -> type:
    import importlib

    return importlib.import_module(MODULE_PATH).ActionMaskingTorchRLModule


def ppo_config(
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    num_env_runners: int = 0,
    train_batch_size: int = 2048,
    minibatch_size: int = 256,
    num_epochs: int = 5,
    lr: float = 3e-4,
    gamma: float = 0.99,
    hidden: tuple[int, ...] = (64, 64),
) -> Any:
    """Shared-policy multi-agent PPO with action masking (RLlib's new API stack); ``.build_algo()`` it."""
    _require_ray()
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    register()
    spec = RLModuleSpec(module_class=_masking_module_class(),
                        model_config={"fcnet_hiddens": list(hidden), "vf_share_layers": False})
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config=dict(env_kwargs or {"preset": "tiny", "fidelity": "fast"}))
        .multi_agent(policies={POLICY_ID}, policy_mapping_fn=_to_shared)
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={POLICY_ID: spec}))
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=train_batch_size, minibatch_size=minibatch_size,
                  num_epochs=num_epochs, lr=lr, gamma=gamma)
        .debugging(seed=seed)
    )


def _to_shared(agent_id: Any, *args: Any, **kwargs: Any) -> str:
    """Every vehicle maps to the one shared policy."""
    return POLICY_ID


class RLlibPolicy(Agent):
    """A trained RLlib RLModule (the shared policy) as an Agent: greedy over the feasible ranks."""

    name = "rllib_ppo"

    def __init__(self, module: Any, label: str = "rllib_ppo", meta: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.module = module
        self.name = label
        self.meta = dict(meta or {})

    def __deepcopy__(self, memo: dict[int, Any]) -> RLlibPolicy:
        # per-vehicle copies share the network (parameter sharing)
        clone = RLlibPolicy(self.module, self.name, self.meta)
        clone.aggregation, clone.env_overrides = self.aggregation, dict(self.env_overrides)
        return clone

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> int:
        """The highest-scoring feasible rank (masked logits, as in training)."""
        import torch
        from ray.rllib.core.columns import Columns

        vec = observation["observation"] if isinstance(observation, Mapping) else observation
        mask = np.asarray(action_mask, dtype=np.float32)
        # a copy: the env's observation rows are read-only, and torch refuses to share those (it warns)
        batch = {Columns.OBS: {"observations": torch.as_tensor(np.array(vec, dtype=np.float32))[None],
                               "action_mask": torch.as_tensor(mask)[None]}}
        with torch.no_grad():
            logits = self.module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS][0].numpy()
        # the masked logits already exclude forbidden ranks; the correction guards against a degenerate mask
        return largest_feasible_at_most(int(np.argmax(logits)), mask, mask.shape[-1])

    def state(self) -> dict[str, Any]:
        """Which module, how it decides."""
        return {"name": self.name, "algo": "RLlib PPO (shared policy, masked)", **self.meta}

    def save(self, path: str | Path, scenario: str | None = None) -> Path:
        """A folder with ``manifest.json`` and the RLModule (``RLModule.save_to_path``); returns the manifest.

        RLlib writes the module with pickle: loading it back needs ``trust_pickle=True``.
        """
        import iov_env
        from iov_env.results import write_text_atomic

        folder = Path(path).with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        self.module.save_to_path(str((folder / "module").resolve()))
        manifest = {"kind": "rllib", "format": "rllib-pickle", "algo": "PPO", "label": self.name, "module": "module",
                    "package_version": iov_env.__version__, "scenario": scenario or self.meta.get("scenario"),
                    "aggregation": self.aggregation, "env_overrides": dict(self.env_overrides), "meta": self.meta}
        return write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=1, default=str))

    @classmethod
    def load(cls, path: str | Path, trust_pickle: bool = False) -> RLlibPolicy:
        """The policy saved by ``save`` (``path``: the folder or its manifest).

        RLlib's checkpoint is pickled (the module's class and constructor arguments, its state), and
        unpickling runs code: it loads only with ``trust_pickle=True``, else ``UnsafeCheckpointError``.
        """
        from agents.checkpoints import CheckpointError, check_trusted

        folder = Path(path)
        folder = folder.parent if folder.name == "manifest.json" else folder
        manifest = check_trusted(folder, trust_pickle)  # before Ray is imported: the refusal needs no Ray
        if manifest.get("kind") != "rllib":
            raise CheckpointError(f"{folder / 'manifest.json'}: field 'kind' is {manifest.get('kind')!r}; allowed: 'rllib'")
        _require_ray()
        from ray.rllib.core.rl_module.rl_module import RLModule

        module = RLModule.from_checkpoint(str((folder / manifest["module"]).resolve()))
        pol = cls(module, manifest["label"], manifest.get("meta"))
        pol.aggregation = manifest.get("aggregation")
        pol.env_overrides = dict(manifest.get("env_overrides") or {})
        return pol


class RLlibTrainer:
    """RLlib PPO on the masked multi-agent env, trained in resumable chunks (same interface as ``SB3Trainer``)."""

    def __init__(self, env_kwargs: Mapping[str, Any] | None = None, *, seed: int = 0, address: str | None = None,
                 num_env_runners: int = 0, label: str = "rllib_ppo", _algo_path: str | None = None,
                 _counters: Mapping[str, int] | None = None, **ppo_kwargs: Any) -> None:
        ray = _require_ray()
        self.env_kwargs = dict(env_kwargs or {"preset": "tiny", "fidelity": "fast"})
        self.seed, self.label, self.address = int(seed), label, address
        self.num_env_runners, self.ppo_kwargs = num_env_runners, dict(ppo_kwargs)
        if not ray.is_initialized():
            # a cluster at ``address``; else a small local Ray (one CPU per env runner plus the driver)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     **({} if address else {"num_cpus": max(1, num_env_runners + 1)}))
        register()
        if _algo_path is None:
            self.algo = ppo_config(self.env_kwargs, seed=self.seed, num_env_runners=num_env_runners,
                                   **self.ppo_kwargs).build_algo()
        else:
            from ray.rllib.algorithms.algorithm import Algorithm

            self.algo = Algorithm.from_checkpoint(_algo_path)
        counters = dict(_counters or {})
        self._env_steps = int(counters.get("env_steps", 0))
        self._agent_steps = int(counters.get("agent_steps", 0))
        import iov_env

        probe = iov_env.parallel_env(**self.env_kwargs)
        self.slots = len(probe.possible_agents)  # agent steps per env step
        probe.close()
        self.last_result: dict[str, Any] = {}

    @property
    def env_steps(self) -> int:
        """Federated rounds sampled so far."""
        return self._env_steps

    @property
    def num_timesteps(self) -> int:
        """Agent steps (vehicle decisions) sampled so far: the SB3 counterpart of ``num_timesteps``."""
        return self._agent_steps

    def learn(self, timesteps: int) -> RLlibTrainer:
        """Train until ``timesteps`` more agent steps are sampled (whole training iterations)."""
        from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED, NUM_ENV_STEPS_SAMPLED

        if timesteps <= 0:
            raise ValueError(f"timesteps={timesteps!r}; allowed: > 0")
        target = self._agent_steps + int(timesteps)
        while self._agent_steps < target:
            self.last_result = self.algo.train()
            runners = self.last_result.get(ENV_RUNNER_RESULTS, {})
            env_steps = int(runners.get(NUM_ENV_STEPS_SAMPLED, 0))
            agent = runners.get(NUM_AGENT_STEPS_SAMPLED, 0)
            agent_steps = int(sum(agent.values()) if isinstance(agent, Mapping) else agent)
            if env_steps <= 0 and agent_steps <= 0:
                raise RuntimeError(f"RLlib sampled nothing in a training iteration: {sorted(runners)}")
            self._env_steps += env_steps or agent_steps // self.slots
            self._agent_steps += agent_steps or env_steps * self.slots
        return self

    def module(self) -> Any:
        """The shared RLModule (the one the learner trains)."""
        return self.algo.get_module(POLICY_ID)

    def policy(self) -> RLlibPolicy:
        """The current shared module as an Agent."""
        return RLlibPolicy(self.module(), self.label, {"train_seed": self.seed, "env_steps": self.env_steps})

    def save(self, folder: str | Path) -> Path:
        """Algorithm checkpoint plus counters and arguments (``folder/trainer.json``)."""
        from iov_env.results import write_text_atomic

        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        self.algo.save_to_path(str(folder / "algo"))
        state = {"env_kwargs": self.env_kwargs, "seed": self.seed, "label": self.label,
                 "num_env_runners": self.num_env_runners, "ppo_kwargs": self.ppo_kwargs,
                 "counters": {"env_steps": self._env_steps, "agent_steps": self._agent_steps}}
        return write_text_atomic(folder / "trainer.json", json.dumps(state, indent=1, default=str))

    @classmethod
    def load(cls, folder: str | Path) -> RLlibTrainer:
        """A trainer saved by ``save``, ready to ``learn`` further."""
        folder = Path(folder).resolve()
        state = json.loads((folder / "trainer.json").read_text())
        return cls(state["env_kwargs"], seed=state["seed"], num_env_runners=state["num_env_runners"],
                   label=state["label"], _algo_path=str(folder / "algo"), _counters=state["counters"],
                   **state["ppo_kwargs"])

    def close(self) -> None:
        """Stop the algorithm's env runners and learners."""
        self.algo.stop()
