"""Checkpoints of trained agents: safe ones (safetensors weights + a JSON manifest), and the pickled kinds behind a flag.

A checkpoint that a leaderboard loads may come from anyone, so loading one must not run code. Pickle
(and cloudpickle, which Stable-Baselines3 zips and RLlib checkpoints are made of) runs whatever the
file says while it is read; safetensors holds only named tensors and JSON holds only data.

**Safe format** (``SB3Policy.save``, every SB3 / sb3-contrib algorithm here: MaskablePPO, PPO-Lagrangian,
PPO, A2C, DQN): ``<stem>.json``, the manifest, and ``<stem>.safetensors``, the policy network's
``state_dict``. The manifest records the algorithm, the policy class and its architecture (``net_arch``,
activation, ...), the observation and action spaces, the package version, the scenario id, the weights'
SHA-256 and how the agent decides. ``load_agent`` rebuilds the network from the manifest (classes only
from the allow-lists below) and fills it from the safetensors file: nothing is unpickled.

**Pickled kinds**, loaded only with ``trust_pickle=True`` (``--trust-pickle`` on the CLIs): the legacy
SB3 checkpoint (``<stem>.json`` naming a ``<stem>.zip``) and RLlib's (a folder with ``manifest.json``
and the RLModule). Without it they are refused with ``UnsafeCheckpointError``, which says why;
``convert_legacy`` turns a trusted legacy SB3 checkpoint into the safe format once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.base import Agent
from iov_env.files import DataFormatError, parse_json, read_text

KINDS = ("sb3", "rllib")
SAFE_FORMAT = "safetensors"
# what a manifest may name: classes are looked up here, never imported by a name from the file
POLICY_CLASSES = {
    "ActorCriticPolicy": ("stable_baselines3.common.policies", "ActorCriticPolicy"),
    "MaskableActorCriticPolicy": ("sb3_contrib.common.maskable.policies", "MaskableActorCriticPolicy"),
    "DQNPolicy": ("stable_baselines3.dqn.policies", "DQNPolicy"),
    "TaskHeadMaskablePolicy": ("agents.task_heads", "TaskHeadMaskablePolicy"),
}
MASKABLE_POLICIES = ("MaskableActorCriticPolicy", "TaskHeadMaskablePolicy")
ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid")
FEATURE_EXTRACTORS = ("FlattenExtractor",)
# constructor arguments that describe the network (the rest, optimiser and schedule, only matter for training)
ARCHITECTURE_KEYS = ("net_arch", "activation_fn", "ortho_init", "use_sde", "log_std_init", "full_std", "use_expln",
                     "squash_output", "features_extractor_class", "features_extractor_kwargs",
                     "share_features_extractor", "normalize_images", "task_dims")
PICKLE_WHY = ("it is stored with pickle, and unpickling runs whatever code the file contains: a checkpoint "
              "from someone else can do anything your account can")


class CheckpointError(DataFormatError):
    """A checkpoint is missing a part, malformed or inconsistent; the message names the file and the field."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle-based checkpoint was given without ``trust_pickle=True``; the message says why and what to do."""


def manifest_path(path: str | Path) -> Path:
    """The manifest of a checkpoint given as its manifest, its stem, its model file or its folder."""
    p = Path(path)
    if p.is_dir():
        return p / "manifest.json"
    return p.with_suffix(".json")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The checkpoint's manifest; a clear error naming ``path`` when there is none, or it is malformed."""
    mp = manifest_path(path)
    if not mp.exists():
        given = Path(path)
        raise FileNotFoundError(
            f"no checkpoint at {given}: {'its folder has no manifest.json' if given.is_dir() else f'neither a folder nor a manifest {mp.name}'}"
            "; allowed: a checkpoint written by an agent's save() (its .json manifest, its stem, or its folder)"
        )
    manifest = parse_json(read_text(mp, CheckpointError, "checkpoint manifest"), str(mp), CheckpointError)
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{mp}: holds a JSON {type(manifest).__name__}; allowed: a JSON object (the manifest)")
    if manifest.get("kind") not in KINDS:
        raise CheckpointError(f"{mp}: field 'kind' is {manifest.get('kind')!r}; allowed: {KINDS}")
    return manifest


def is_pickled(manifest: Mapping[str, Any]) -> bool:
    """Whether loading this checkpoint unpickles: RLlib's, and SB3's legacy zip (every kind but the safe one)."""
    return manifest.get("format") != SAFE_FORMAT


def check_trusted(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The manifest, if the checkpoint may be loaded: a safe one always, a pickled one only with ``trust_pickle``."""
    manifest = read_manifest(path)
    if is_pickled(manifest) and not trust_pickle:
        what = ("an RLlib checkpoint" if manifest["kind"] == "rllib"
                else f"a legacy Stable-Baselines3 zip ({manifest.get('model', '?')})")
        hint = ("" if manifest["kind"] == "rllib" else
                "; or convert it once, from a source you trust: agents.checkpoints.convert_legacy(path)")
        raise UnsafeCheckpointError(
            f"{manifest_path(path)} is {what}: refused, because {PICKLE_WHY}. Load it only if you trust who made it: "
            f"load_agent(path, trust_pickle=True), or --trust-pickle on the command line{hint}"
        )
    return manifest


def load_agent(path: str | Path, trust_pickle: bool = False) -> Agent:
    """The trained agent saved at ``path``, ready for ``run_decentralized``/``run_centralized``.

    Safe checkpoints load without unpickling. Pickled kinds (legacy SB3 zip, RLlib) raise
    ``UnsafeCheckpointError`` unless ``trust_pickle=True``.
    """
    kind = check_trusted(path, trust_pickle)["kind"]
    if kind == "sb3":
        from agents.sb3 import SB3Policy

        return SB3Policy.load(path, trust_pickle=trust_pickle)
    from agents.rllib import RLlibPolicy

    return RLlibPolicy.load(path, trust_pickle=trust_pickle)


def convert_legacy(path: str | Path, out: str | Path | None = None) -> Path:
    """Rewrite a trusted legacy SB3 checkpoint in the safe format (at ``out``, else in place); returns the manifest.

    This unpickles the legacy file once: call it only on checkpoints from a source you trust.
    """
    from agents.sb3 import SB3Policy

    policy = SB3Policy.load(path, trust_pickle=True)
    return policy.save(out if out is not None else Path(path).with_suffix(""))


# -- the safe format: SB3 policy network <-> (architecture, spaces) + safetensors -------------------------
def space_to_json(space: Any) -> dict[str, Any]:
    """A Box / Discrete / MultiDiscrete space as plain data (bounds as lists; infinities as JSON's Infinity)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": space.low.ravel().tolist(), "high": space.high.ravel().tolist()}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.ravel().tolist()}
    raise CheckpointError(f"space {space!r} cannot be saved; allowed: Box, Discrete or MultiDiscrete")


def space_from_json(data: Any, where: str) -> Any:
    """The space ``space_to_json`` wrote; errors name ``where`` and the field."""
    import numpy as np
    from gymnasium import spaces

    try:
        kind = data["type"]
        if kind == "Box":
            shape = tuple(int(v) for v in data["shape"])
            if data["dtype"] not in ("float32", "float64"):
                raise ValueError(f"dtype {data['dtype']!r}; allowed: float32, float64")
            low = np.asarray(data["low"], dtype=data["dtype"]).reshape(shape)
            high = np.asarray(data["high"], dtype=data["dtype"]).reshape(shape)
            return spaces.Box(low, high, shape, dtype=data["dtype"])
        if kind == "Discrete":
            return spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(np.asarray(data["nvec"], dtype=np.int64))
        raise ValueError(f"type {kind!r}; allowed: Box, Discrete, MultiDiscrete")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: not a valid space ({type(exc).__name__}: {exc})") from None


def policy_architecture(policy: Any) -> dict[str, Any]:
    """The constructor arguments that rebuild ``policy``'s network, as plain data; an error for anything custom."""
    import torch

    params = policy._get_constructor_parameters()
    arch: dict[str, Any] = {}
    for key in ARCHITECTURE_KEYS:
        if key not in params:
            continue
        value = params[key]
        if key == "activation_fn":
            value = value.__name__
            if value not in ACTIVATIONS or getattr(torch.nn, value) is not params[key]:
                raise CheckpointError(f"activation_fn={params[key]!r} cannot be saved safely; allowed: {ACTIVATIONS}")
        elif key == "features_extractor_class":
            value = value.__name__
            if value not in FEATURE_EXTRACTORS:
                raise CheckpointError(f"features_extractor_class={params[key]!r} cannot be saved safely; "
                                      f"allowed: {FEATURE_EXTRACTORS}")
        else:
            try:
                value = json.loads(json.dumps(value, allow_nan=False))  # tuples become lists, as JSON has them
            except (TypeError, ValueError):
                raise CheckpointError(f"policy argument {key}={value!r} is not plain data; allowed: finite numbers, "
                                      "strings, lists and mappings of them") from None
        arch[key] = value
    return arch


def build_policy(policy_class: str, architecture: Mapping[str, Any], observation_space: Any, action_space: Any,
                 where: str) -> Any:
    """A fresh policy network of ``policy_class`` (from ``POLICY_CLASSES``) with ``architecture``, on the CPU."""
    import importlib

    import torch

    if policy_class not in POLICY_CLASSES:
        raise CheckpointError(f"{where}: field 'policy_class' is {policy_class!r}; allowed: {sorted(POLICY_CLASSES)}")
    unknown = sorted(set(architecture) - set(ARCHITECTURE_KEYS))
    if unknown:
        raise CheckpointError(f"{where}: field 'architecture' has unknown keys {unknown}; allowed: {ARCHITECTURE_KEYS}")
    kwargs = dict(architecture)
    if "activation_fn" in kwargs:
        if kwargs["activation_fn"] not in ACTIVATIONS:
            raise CheckpointError(f"{where}: architecture.activation_fn is {kwargs['activation_fn']!r}; "
                                  f"allowed: {ACTIVATIONS}")
        kwargs["activation_fn"] = getattr(torch.nn, kwargs["activation_fn"])
    if "features_extractor_class" in kwargs:
        if kwargs["features_extractor_class"] not in FEATURE_EXTRACTORS:
            raise CheckpointError(f"{where}: architecture.features_extractor_class is "
                                  f"{kwargs['features_extractor_class']!r}; allowed: {FEATURE_EXTRACTORS}")
        from stable_baselines3.common import torch_layers

        kwargs["features_extractor_class"] = getattr(torch_layers, kwargs["features_extractor_class"])
    module, name = POLICY_CLASSES[policy_class]
    cls = getattr(importlib.import_module(module), name)
    try:
        policy = cls(observation_space, action_space, lambda _progress: 0.0, **kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{where}: field 'architecture' does not build a {policy_class}: {exc}") from None
    policy.set_training_mode(False)
    return policy.to("cpu")


def weights_to_bytes(policy: Any) -> bytes:
    """The policy's ``state_dict`` as safetensors bytes (tensors cloned: safetensors refuses shared storage)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous().clone() for k, v in policy.state_dict().items()})


def load_weights(policy: Any, path: Path, sha256: str | None) -> None:
    """Fill ``policy`` from the safetensors file at ``path`` (never unpickles); checks its hash and every tensor."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    raw = read_bytes(path)
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise CheckpointError(f"{path}: SHA-256 differs from the manifest's 'weights_sha256'; allowed: the weights file "
                              "written with that manifest (re-save the checkpoint)")
    try:
        state = load(raw)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc}); allowed: weights written by SB3Policy.save") from None
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the manifest's architecture: {str(exc)[:400]}") from None


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing file or folder is a ``CheckpointError`` naming it."""
    from iov_env.files import check_regular_file

    p = check_regular_file(path, CheckpointError, "checkpoint file")
    return p.read_bytes()


def part_path(manifest_file: Path, name: Any, field: str) -> Path:
    """A file the manifest names, beside it: a bare file name only, so a manifest cannot point elsewhere."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise CheckpointError(f"{manifest_file}: field {field!r} is {name!r}; allowed: a file name beside the manifest")
    return manifest_file.parent / name
