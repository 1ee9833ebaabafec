"""Stable-Baselines3 adapters: train PPO / A2C / DQN / MaskablePPO / PPO-Lagrangian and use the result as an ``Agent``.

Two ways to learn:

* **centralized** (``train_centralized``): one policy on the Gymnasium view, MultiDiscrete([|R|] * N)
  actions, flat joint observation, summed utility. Not DQN: it needs a Discrete action space.
* **decentralized, shared parameters** (``train_decentralized``): SuperSuit turns the PettingZoo env into
  a vector env with one slot per vehicle, so one policy learns from every vehicle's experience and each
  vehicle acts on its own observation. Every algorithm.

``MaskablePPO`` (sb3-contrib) samples only feasible ranks, in training and at decision time: the
centralised env exposes ``action_masks()`` (sb3-contrib's convention, found through ``gym.make``'s
wrappers), and the shared-parameter vector env answers ``env_method("action_masks")`` with one row per
vehicle slot from ``IoVParallelEnv.action_masks()``. ``PPOLag`` is MaskablePPO on
``reward - lambda * cost`` with lambda learned from episode energy against the budget
(``agents.lagrangian``). The unmasked algorithms learn without masks (the env corrects an infeasible
rank and flags it in ``info["action_corrected"]``); as agents they apply the mask before acting, like
every other agent here, so no infeasible rank is ever executed silently.

Rewards are O(100) (gamma * accuracy in percent); ``normalize_reward=True`` (default) wraps the training
env in ``VecNormalize(norm_obs=False)`` so value targets stay O(1). Observations are already bounded.

``SB3Trainer`` trains in resumable chunks (``learn`` continues where it stopped; ``save``/``load`` keep the
model, the reward normaliser and lambda: its own resume state, pickled by SB3); ``SB3Policy.save``/``load`` is
the agent's checkpoint, safe to share: safetensors weights plus a JSON manifest, loaded without unpickling
(see ``agents.checkpoints``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent, largest_feasible_at_most
from agents.lagrangian import PIDLagrangian, make_cost_penalty_vec_env, make_lagrange_callback

ALGOS = ("PPO", "A2C", "DQN", "MaskablePPO", "PPOLag")
MASKED_ALGOS = ("MaskablePPO", "PPOLag")
# leaderboard / training names of the shared-parameter agents
SHARED_AGENTS = {
    "ppo_shared": "PPO",
    "a2c_shared": "A2C",
    "dqn_shared": "DQN",
    "maskable_ppo_shared": "MaskablePPO",
    "ppo_lag_shared": "PPOLag",
}


def canonical_algo(algo: str) -> str:
    """The spelling in ``ALGOS`` of a case-insensitive algorithm name; a clear error otherwise."""
    for name in ALGOS:
        if algo.replace("-", "").replace("_", "").lower() == name.lower():
            return name
    raise ValueError(f"algo={algo!r}; allowed: {ALGOS}")


def default_label(algo: str, centralized: bool = False) -> str:
    """``maskable_ppo_shared``, ``ppo_lag_central``, ...: the agent's name in tables and checkpoints."""
    shared = next(k for k, v in SHARED_AGENTS.items() if v == canonical_algo(algo))
    return shared.replace("_shared", "_central") if centralized else shared


def _algo_class(algo: str) -> Any:
    """The SB3 class for a name (imported lazily: torch is heavy); PPOLag trains a MaskablePPO."""
    name = canonical_algo(algo)
    if name in MASKED_ALGOS:
        try:
            from sb3_contrib import MaskablePPO
        except ImportError as exc:  # pragma: no cover - sb3-contrib is a dependency
            raise ImportError(f"{name} needs sb3-contrib: pip install 'sb3-contrib>=2.3'") from exc
        return MaskablePPO
    import stable_baselines3 as sb3

    return getattr(sb3, name)


class SB3Policy(Agent):
    """A trained SB3 model as an Agent: shared per-vehicle policy, or one centralized joint policy."""

    name = "sb3"

    def __init__(self, model: Any, centralized: bool = False, deterministic: bool = True, label: str = "",
                 algo: str | None = None, meta: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.centralized = centralized
        self.deterministic = deterministic
        self.model_class = getattr(model, "model_class", type(model).__name__)  # MaskablePPO, PPO, ...
        self.algo = canonical_algo(algo) if algo else self.model_class
        self.masked = self.model_class == "MaskablePPO"
        self.meta = dict(meta or {})
        self.name = label or f"{self.model_class.lower()}_{'central' if centralized else 'shared'}"

    def __deepcopy__(self, memo: dict[int, Any]) -> SB3Policy:
        # per-vehicle copies share the trained network (parameter sharing); only the context differs
        clone = SB3Policy(self.model, self.centralized, self.deterministic, self.name, None, self.meta)
        clone.algo = self.algo
        clone.aggregation, clone.env_overrides = self.aggregation, dict(self.env_overrides)
        return clone

    def act(self, observation: Any, action_mask: np.ndarray, info: Mapping[str, Any] | None = None) -> Any:
        """The policy's rank (or ranks): sampled among feasible ones (masked models), else moved down to one."""
        obs = np.asarray(observation["observation"] if isinstance(observation, Mapping) else observation, dtype=np.float32)
        masks = np.asarray(action_mask)
        if self.masked:
            action, _ = self.model.predict(obs, deterministic=self.deterministic, action_masks=masks.astype(bool).reshape(-1))
        else:
            action, _ = self.model.predict(obs, deterministic=self.deterministic)
        # the masked model never proposes a forbidden rank; the correction is then the identity
        if not self.centralized:
            k = int(masks.shape[-1])
            return largest_feasible_at_most(int(np.asarray(action).reshape(-1)[0]), masks, k)
        k = masks.shape[1]
        return np.array([largest_feasible_at_most(int(a), masks[i], k) for i, a in enumerate(np.asarray(action))])

    def state(self) -> dict[str, Any]:
        """Which model, how it decides."""
        return {"name": self.name, "algo": self.algo, "centralized": self.centralized, "masked": self.masked,
                "num_timesteps": int(getattr(self.model, "num_timesteps", 0)), **self.meta}

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, path: str | Path, scenario: str | None = None) -> Path:
        """Write ``<path>.safetensors`` (the policy network) and ``<path>.json`` (the manifest); returns the manifest.

        The safe format of ``agents.checkpoints``: loading it never unpickles. ``scenario`` (else
        ``meta["scenario"]``) records which scenario the policy was trained on.
        """
        import hashlib

        import iov_env
        from agents import checkpoints
        from iov_env.results import write_bytes_atomic, write_text_atomic

        base = Path(path).with_suffix("")
        policy = self.model.policy
        weights = checkpoints.weights_to_bytes(policy)
        write_bytes_atomic(f"{base}.safetensors", weights)
        manifest = {"kind": "sb3", "format": checkpoints.SAFE_FORMAT, "algo": self.algo, "class": self.model_class,
                    "policy_class": type(policy).__name__, "architecture": checkpoints.policy_architecture(policy),
                    "observation_space": checkpoints.space_to_json(policy.observation_space),
                    "action_space": checkpoints.space_to_json(policy.action_space),
                    "package_version": iov_env.__version__, "scenario": scenario or self.meta.get("scenario"),
                    "label": self.name, "centralized": self.centralized, "deterministic": self.deterministic,
                    "aggregation": self.aggregation, "env_overrides": dict(self.env_overrides),
                    "num_timesteps": int(getattr(self.model, "num_timesteps", 0)),
                    "weights": f"{base.name}.safetensors", "weights_sha256": hashlib.sha256(weights).hexdigest(),
                    "meta": self.meta}
        # the manifest last: a kill before it leaves no manifest, so no half-written checkpoint is ever loaded
        return write_text_atomic(base.with_suffix(".json"), json.dumps(manifest, indent=1, default=str))

    @classmethod
    def load(cls, path: str | Path, trust_pickle: bool = False) -> SB3Policy:
        """The policy saved by ``save`` (``path``: the manifest, the weights, or their common stem), never unpickled.

        A legacy checkpoint (an SB3 zip) unpickles and loads only with ``trust_pickle=True``.
        """
        from agents import checkpoints

        manifest_file = checkpoints.manifest_path(path)
        manifest = checkpoints.check_trusted(path, trust_pickle)
        if manifest["kind"] != "sb3":
            raise checkpoints.CheckpointError(f"{manifest_file}: field 'kind' is {manifest['kind']!r}; allowed: 'sb3'")
        where = str(manifest_file)
        try:
            algo = canonical_algo(str(manifest["algo"]))
            if checkpoints.is_pickled(manifest):  # trusted legacy zip
                model = _algo_class(algo).load(str(checkpoints.part_path(manifest_file, manifest["model"], "model")),
                                               device="cpu")
            else:
                if (manifest.get("class") == "MaskablePPO") != (manifest["policy_class"] in checkpoints.MASKABLE_POLICIES):
                    raise checkpoints.CheckpointError(
                        f"{where}: field 'class' is {manifest.get('class')!r} but 'policy_class' is "
                        f"{manifest['policy_class']!r}; allowed: MaskablePPO with {checkpoints.MASKABLE_POLICIES}, "
                        "other algorithms with their own policy")
                policy = checkpoints.build_policy(
                    manifest["policy_class"], manifest["architecture"],
                    checkpoints.space_from_json(manifest["observation_space"], f"{where}: field 'observation_space'"),
                    checkpoints.space_from_json(manifest["action_space"], f"{where}: field 'action_space'"), where)
                checkpoints.load_weights(policy, checkpoints.part_path(manifest_file, manifest["weights"], "weights"),
                                         manifest.get("weights_sha256"))
                model = LoadedModel(policy, manifest.get("class") or algo, int(manifest.get("num_timesteps", 0)))
            pol = cls(model, bool(manifest["centralized"]), bool(manifest["deterministic"]), str(manifest["label"]),
                      algo, manifest.get("meta"))
        except KeyError as exc:
            raise checkpoints.CheckpointError(f"{where}: field {exc.args[0]!r} is missing; allowed: a manifest "
                                              "written by SB3Policy.save") from None
        except ValueError as exc:
            if isinstance(exc, checkpoints.CheckpointError):
                raise
            raise checkpoints.CheckpointError(f"{where}: {exc}") from None
        pol.aggregation = manifest.get("aggregation")
        pol.env_overrides = dict(manifest.get("env_overrides") or {})
        return pol


class LoadedModel:
    """A policy network rebuilt from a safe checkpoint, with the ``predict`` the SB3 algorithm would offer.

    ``MaskablePPO.predict`` and ``PPO.predict`` hand over to ``policy.predict`` unchanged, so the
    decisions equal those of the model that was saved. (DQN's epsilon-greedy exploration at
    ``deterministic=False`` is a training device, not part of the saved policy.)
    """

    def __init__(self, policy: Any, model_class: str, num_timesteps: int = 0) -> None:
        self.policy = policy
        self.model_class = model_class
        self.num_timesteps = num_timesteps

    def predict(self, observation: np.ndarray, deterministic: bool = True,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        """The policy's action for ``observation`` (masked models take ``action_masks``)."""
        if action_masks is not None:
            return self.policy.predict(observation, deterministic=deterministic, action_masks=action_masks)
        return self.policy.predict(observation, deterministic=deterministic)


def _seedable_supersuit_vec(parallel_env: Any) -> Any:
    """SuperSuit's SB3 vector env with a working ``seed()`` and sb3-contrib's ``action_masks`` per vehicle slot."""
    import supersuit as ss
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    class SeededSB3VecEnv(SB3VecEnvWrapper):
        """Stores the seed SB3 hands over and applies it on the next reset; answers ``action_masks``."""

        _pending_seed: int | None = None

        def __init__(self, venv: Any, par_env: Any) -> None:
            super().__init__(venv)
            self.par_env = par_env

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._pending_seed = seed
            return [seed] * self.num_envs

        def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray:
            s = seed if seed is not None else self._pending_seed
            self._pending_seed = None
            observations, self.reset_infos = self.venv.reset(seed=s)
            return observations

        def has_attr(self, attr_name: str) -> bool:
            return attr_name == "action_masks" or super().has_attr(attr_name)

        def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
            if method_name != "action_masks":
                return super().env_method(method_name, *args, indices=indices, **kwargs)
            # slot i is possible_agents[i] (SuperSuit's order); after an auto-reset these are the new episode's
            rows = list(self.par_env.action_masks().astype(bool))
            return rows if indices is None else [rows[i] for i in self._get_indices(indices)]

    from iov_env.envs.infos import WritableInfos

    # SuperSuit writes terminal_observation into the last step's infos, which the env hands out read-only
    markov = ss.pettingzoo_env_to_vec_env_v1(WritableInfos(parallel_env))
    concat = ss.concat_vec_envs_v1(markov, 1, num_cpus=0, base_class="gymnasium")
    # SuperSuit builds its own copy of the env (cloudpickle): ask that copy, the one being stepped
    return SeededSB3VecEnv(concat, concat.vec_envs[0].par_env)


class SB3Trainer:
    """One SB3 model and its training env, trained in resumable chunks; ``policy()`` gives the Agent."""

    def __init__(self, algo: str, env_kwargs: Mapping[str, Any] | None = None, *, centralized: bool = False,
                 seed: int = 0, normalize_reward: bool = True, lagrangian: PIDLagrangian | Mapping[str, Any] | None = None,
                 label: str | None = None, task_heads: bool = False, _model_path: str | None = None,
                 _vecnorm_path: str | None = None, **algo_kwargs: Any) -> None:
        self.algo = canonical_algo(algo)
        if centralized and self.algo == "DQN":
            raise ValueError(
                "DQN needs a Discrete action space; the centralized view is MultiDiscrete([|R|] * N). "
                "Use train_decentralized('DQN', ...) (shared parameters, Discrete(|R|) per vehicle)."
            )
        kwargs = dict(env_kwargs or {"preset": "tiny"})
        if kwargs.get("obs_type", "vector") != "vector":
            raise ValueError(f"obs_type={kwargs['obs_type']!r}; the SB3 adapters train on 'vector' observations "
                             "(masks reach MaskablePPO through action_masks(), not the observation)")
        self.env_kwargs, self.centralized, self.seed = kwargs, centralized, int(seed)
        self.normalize_reward = normalize_reward
        self.algo_kwargs = dict(algo_kwargs)
        if task_heads and (self.algo not in MASKED_ALGOS or centralized):
            raise ValueError(f"task_heads=True with algo={self.algo!r}, centralized={centralized}; allowed: "
                             f"{MASKED_ALGOS} on the shared-parameter (decentralized) view")
        if task_heads and "policy_kwargs" in self.algo_kwargs:
            raise ValueError("task_heads=True sets policy_kwargs itself (task_dims, net_arch); allowed: one or the other")
        self.task_heads = bool(task_heads)
        self.label = label or default_label(self.algo, centralized)
        if self.algo == "PPOLag":
            if isinstance(lagrangian, Mapping):
                lagrangian = PIDLagrangian(**lagrangian)
            self.multiplier: PIDLagrangian | None = lagrangian or PIDLagrangian()
        elif lagrangian is not None:
            raise ValueError(f"lagrangian= is for algo 'PPOLag', not {self.algo!r}")
        else:
            self.multiplier = None
        self.vec, self.penalty_env, self.slots = self._make_vec(_vecnorm_path)
        cls = _algo_class(self.algo)
        if _model_path is None:
            policy: Any = "MlpPolicy"
            extra: dict[str, Any] = {}
            if self.task_heads:
                from agents.task_heads import TaskHeadMaskablePolicy

                # the actor: a per-task logit table (no hidden layer); the critic: the default MLP on everything
                policy = TaskHeadMaskablePolicy
                extra["policy_kwargs"] = {"task_dims": self.task_dims, "net_arch": {"pi": [], "vf": [64, 64]}}
            self.model = cls(policy, self.vec, seed=self.seed, verbose=0, **extra, **self.algo_kwargs)
        else:
            self.model = cls.load(_model_path, env=self.vec, device="cpu")
        self.callback = make_lagrange_callback(self.penalty_env) if self.penalty_env is not None else None

    def _make_vec(self, vecnorm_path: str | None) -> tuple[Any, Any, int]:
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        if self.centralized:
            from iov_env.envs.single import IoVRankEnv

            kwargs = self.env_kwargs
            vec = DummyVecEnv([lambda: IoVRankEnv(**kwargs)])
            slots = 1
            self.task_dims = 0
        else:
            import iov_env
            from iov_env.envs.parallel import observation_layout

            par = iov_env.parallel_env(**self.env_kwargs)
            task = observation_layout(par.config)["task_onehot"]
            if task.start != 0:  # TaskOnlyExtractor keeps the leading entries
                raise ValueError(f"the observation's task one-hot starts at {task.start}; task_heads needs it first")
            self.task_dims = task.stop
            vec = _seedable_supersuit_vec(par)
            slots = vec.num_envs
        penalty = None
        if self.multiplier is not None:
            penalty = vec = make_cost_penalty_vec_env(vec, self.multiplier)
        if self.normalize_reward:
            if vecnorm_path is not None:
                vec = VecNormalize.load(vecnorm_path, vec)
            else:
                # the running return it scales by must use the learner's discount: with gamma=0.99 against a
                # myopic learner the scale follows 40-round sums, not the one-round rewards the critic predicts
                vec = VecNormalize(vec, norm_obs=False, norm_reward=True, gamma=float(self.algo_kwargs.get("gamma", 0.99)))
        return vec, penalty, slots

    @property
    def num_timesteps(self) -> int:
        """SB3's count: vector-env slot steps (rounds x vehicles on the shared path, rounds centralised)."""
        return int(self.model.num_timesteps)

    @property
    def env_steps(self) -> int:
        """Federated rounds played so far (``env.step()`` calls)."""
        return self.num_timesteps // self.slots

    def learn(self, timesteps: int) -> SB3Trainer:
        """Continue training for ``timesteps`` more SB3 timesteps (whole rollouts, so it may run a little over)."""
        if timesteps <= 0:
            raise ValueError(f"timesteps={timesteps!r}; allowed: > 0")
        self.model.learn(total_timesteps=int(timesteps), reset_num_timesteps=False, callback=self.callback)
        return self

    def policy(self, deterministic: bool = True) -> SB3Policy:
        """The current model as an Agent (shares the network: later training changes it too)."""
        meta = {"train_seed": self.seed, "env_steps": self.env_steps}
        if self.multiplier is not None:
            meta["lagrange_multiplier"] = self.multiplier.value
        return SB3Policy(self.model, self.centralized, deterministic, self.label, self.algo, meta)

    def save(self, folder: str | Path) -> Path:
        """Everything needed to resume: model, reward normaliser, multiplier, arguments (``folder/trainer.json``)."""
        from iov_env.results import write_text_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(str(folder / ".model.tmp.zip"))
        (folder / ".model.tmp.zip").replace(folder / "model.zip")
        if self.normalize_reward:
            self.vec.save(str(folder / ".vecnormalize.tmp"))
            (folder / ".vecnormalize.tmp").replace(folder / "vecnormalize.pkl")
        state = {"algo": self.algo, "env_kwargs": self.env_kwargs, "centralized": self.centralized, "seed": self.seed,
                 "normalize_reward": self.normalize_reward, "label": self.label, "algo_kwargs": self.algo_kwargs,
                 "task_heads": self.task_heads,
                 "lagrangian": self.multiplier.state_dict() if self.multiplier else None,
                 "num_timesteps": self.num_timesteps}
        return write_text_atomic(folder / "trainer.json", json.dumps(state, indent=1, default=float))

    @classmethod
    def load(cls, folder: str | Path) -> SB3Trainer:
        """A trainer saved by ``save``, ready to ``learn`` further."""
        folder = Path(folder)
        state = json.loads((folder / "trainer.json").read_text())
        lag = PIDLagrangian.from_state_dict(state["lagrangian"]) if state["lagrangian"] else None
        vecnorm = str(folder / "vecnormalize.pkl") if state["normalize_reward"] else None
        return cls(state["algo"], state["env_kwargs"], centralized=state["centralized"], seed=state["seed"],
                   normalize_reward=state["normalize_reward"], lagrangian=lag, label=state["label"],
                   task_heads=bool(state.get("task_heads", False)), _model_path=str(folder / "model.zip"), _vecnorm_path=vecnorm, **state["algo_kwargs"])

    def close(self) -> None:
        """Release the training env."""
        self.vec.close()


def train_policy(
    algo: str = "PPO",
    env_kwargs: Mapping[str, Any] | None = None,
    total_timesteps: int = 10_000,
    seed: int = 0,
    normalize_reward: bool = True,
    centralized: bool = False,
    **algo_kwargs: Any,
) -> SB3Policy:
    """Train one policy and return it as an Agent: shared over all vehicles of the PettingZoo env (SuperSuit),
    or, with ``centralized=True``, one joint policy on the Gymnasium centralized view (not DQN)."""
    trainer = SB3Trainer(algo, env_kwargs, centralized=centralized, seed=seed, normalize_reward=normalize_reward,
                         **algo_kwargs)
    trainer.learn(total_timesteps)
    trainer.close()
    return trainer.policy()


def train_decentralized(algo: str = "PPO", env_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> SB3Policy:
    """Train one shared policy over all vehicles of the PettingZoo env (SuperSuit); returns the Agent.

    ``kwargs``: ``total_timesteps``, ``seed``, ``normalize_reward`` and the algorithm's own (``train_policy``).
    """
    return train_policy(algo, env_kwargs, **kwargs)


def train_centralized(algo: str = "PPO", env_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> SB3Policy:
    """Train one joint policy on the Gymnasium centralized view (not DQN); returns the Agent (see ``train_policy``)."""
    return train_policy(algo, env_kwargs, centralized=True, **kwargs)
