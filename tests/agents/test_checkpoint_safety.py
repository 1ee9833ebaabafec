"""Issue 22: a checkpoint cannot run code. Safe checkpoints load without unpickling; pickled ones only when trusted.

The malicious checkpoints below carry a pickle payload that creates a file when unpickled. Each public
load path (``load_agent``, ``SB3Policy.load``, ``RLlibPolicy.load``, the leaderboard's ``--checkpoints``)
is fed each of them, and the file must never appear. A positive control shows the payload is real: with
``trust_pickle=True`` the legacy zip does create the file.
"""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("safetensors")

from agents.checkpoints import (  # noqa: E402
    CheckpointError,
    UnsafeCheckpointError,
    load_agent,
    read_manifest,
)
from agents.rllib import RLlibPolicy  # noqa: E402
from agents.sb3 import SB3Policy  # noqa: E402
from iov_env.cli import main as iov  # noqa: E402


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff the pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def legacy_sb3_checkpoint(folder: Path, stem: str, marker: Path) -> Path:
    """A legacy SB3 checkpoint (manifest + zip) whose zip's ``data`` holds a cloudpickled payload, as SB3 writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>",
                             ":serialized:": base64.b64encode(_payload(marker)).decode()}}
    with zipfile.ZipFile(folder / f"{stem}.zip", "w") as zf:
        zf.writestr("data", json.dumps(data))
        zf.writestr("_stable_baselines3_version", "2.9.2")
    manifest = {"kind": "sb3", "algo": "MaskablePPO", "class": "MaskablePPO", "label": "maskable_ppo_shared",
                "centralized": False, "deterministic": True, "model": f"{stem}.zip", "meta": {}}
    (folder / f"{stem}.json").write_text(json.dumps(manifest))
    return folder / f"{stem}.json"


def rllib_checkpoint(folder: Path, marker: Path) -> Path:
    """An RLlib-style checkpoint folder whose module files are pickles carrying the payload."""
    (folder / "module").mkdir(parents=True, exist_ok=True)
    for name in ("class_and_ctor_args.pkl", "state.pkl"):
        (folder / "module" / name).write_bytes(_payload(marker))
    (folder / "manifest.json").write_text(json.dumps({"kind": "rllib", "algo": "PPO", "label": "rllib_ppo",
                                                      "module": "module", "meta": {}}))
    return folder


def disguised_safe_checkpoint(folder: Path, marker: Path, weights: str = "policy.safetensors") -> Path:
    """A manifest claiming the safe format, with a pickle (or a path out of the folder) where the weights belong."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.safetensors").write_bytes(_payload(marker))
    manifest = {"kind": "sb3", "format": "safetensors", "algo": "MaskablePPO", "class": "MaskablePPO",
                "policy_class": "MaskableActorCriticPolicy", "architecture": {"net_arch": [8]},
                "observation_space": {"type": "Box", "shape": [3], "dtype": "float32", "low": [0, 0, 0],
                                      "high": [1, 1, 1]},
                "action_space": {"type": "Discrete", "n": 7}, "label": "x", "centralized": False,
                "deterministic": True, "weights": weights, "meta": {}}
    (folder / "policy.json").write_text(json.dumps(manifest))
    return folder / "policy.json"


def test_the_payload_is_real_when_pickle_is_trusted(tmp_path: Path) -> None:
    """Positive control: trusting the legacy zip runs its payload (so the refusals below are what protect)."""
    marker = tmp_path / "pwned"
    path = legacy_sb3_checkpoint(tmp_path / "ckpt", "policy", marker)
    with pytest.raises(Exception):  # noqa: B017 - the fake zip holds no model; only the payload matters
        load_agent(path, trust_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("given", ["manifest", "stem", "zip"])
def test_load_agent_refuses_a_legacy_sb3_zip_and_never_unpickles_it(tmp_path: Path, given: str) -> None:
    marker = tmp_path / "pwned"
    manifest = legacy_sb3_checkpoint(tmp_path / "ckpt", "policy", marker)
    path = {"manifest": manifest, "stem": manifest.with_suffix(""), "zip": manifest.with_suffix(".zip")}[given]
    with pytest.raises(UnsafeCheckpointError,
                       match=r"policy.json is a legacy Stable-Baselines3 zip \(policy.zip\): refused, because it is "
                             r"stored with pickle, and unpickling runs whatever code the file contains.*"
                             r"trust_pickle=True.*--trust-pickle.*convert_legacy"):
        load_agent(path)
    with pytest.raises(UnsafeCheckpointError):
        SB3Policy.load(path)
    assert not marker.exists()


def test_rllib_checkpoints_are_refused_without_trust_and_never_unpickled(tmp_path: Path) -> None:
    """Refused before Ray is even imported: the refusal works in the main venv too."""
    marker = tmp_path / "pwned"
    folder = rllib_checkpoint(tmp_path / "rl", marker)
    for path in (folder, folder / "manifest.json"):
        with pytest.raises(UnsafeCheckpointError, match=r"is an RLlib checkpoint: refused, because it is stored with "
                                                        r"pickle.*trust_pickle=True"):
            load_agent(path)
        with pytest.raises(UnsafeCheckpointError):
            RLlibPolicy.load(path)
    assert not marker.exists()


def test_a_pickle_disguised_as_safetensors_weights_is_rejected_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = disguised_safe_checkpoint(tmp_path / "c", marker)
    with pytest.raises(CheckpointError, match=r"policy.safetensors: not a safetensors file"):
        load_agent(path)
    assert not marker.exists()


@pytest.mark.parametrize("weights", ["../policy.safetensors", "/etc/passwd", "sub/x.safetensors", ""])
def test_a_safe_manifest_cannot_point_outside_its_folder(tmp_path: Path, weights: str) -> None:
    path = disguised_safe_checkpoint(tmp_path / "c", tmp_path / "pwned", weights=weights)
    with pytest.raises(CheckpointError, match=r"field 'weights' is .*; allowed: a file name beside the manifest"):
        load_agent(path)


def _train_rl_folder(out: Path, make: object, marker: Path) -> None:
    """A benchmarks.train_rl output folder whose one finished run holds the malicious checkpoint."""
    run = out / "tiny-v1" / "maskable_ppo_shared" / "seed1000"
    make(run, marker)  # type: ignore[operator]
    (run / "done.json").write_text(json.dumps({"env_steps": 1}))


@pytest.mark.parametrize("kind", ["legacy_zip", "disguised_weights"])
def test_leaderboard_checkpoints_path_refuses_before_any_run_and_never_unpickles(tmp_path: Path, kind: str,
                                                                                 capsys) -> None:
    marker = tmp_path / "pwned"
    make = {"legacy_zip": lambda run, m: legacy_sb3_checkpoint(run, "policy", m),
            "disguised_weights": lambda run, m: disguised_safe_checkpoint(run, m)}[kind]
    _train_rl_folder(tmp_path / "rl", make, marker)
    lb = tmp_path / "lb"
    argv = ["--scenarios", "tiny-v1", "--agents", "maskable_ppo_shared", "--seeds", "2", "--reps", "20",
            "--no-plots", "--checkpoints", str(tmp_path / "rl"), "--out", str(lb)]
    assert iov(["leaderboard", *argv]) == 1
    needle = {"legacy_zip": "refused, because it is stored with pickle",
              "disguised_weights": "policy.safetensors: not a safetensors file"}[kind]
    assert needle in capsys.readouterr().err
    assert not list((lb / "runs").glob("*.json")) and not (lb / "runs.csv").exists()
    assert not marker.exists()


def test_leaderboard_refuses_an_rllib_checkpoint_without_trust_pickle(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    run = tmp_path / "rl" / "tiny-v1" / "rllib_ppo" / "seed1000"
    rllib_checkpoint(run / "policy", marker)
    (run / "done.json").write_text("{}")
    assert iov(["leaderboard", "--scenarios", "tiny-v1", "--agents", "rllib_ppo", "--seeds", "2", "--reps", "20",
                "--no-plots", "--checkpoints", str(tmp_path / "rl"), "--out", str(tmp_path / "lb")]) == 1
    assert "is an RLlib checkpoint: refused" in capsys.readouterr().err
    assert not marker.exists()


# -- the safe format itself -----------------------------------------------------------------------------------
def test_safe_checkpoint_manifest_records_what_rebuilds_the_policy(tmp_path: Path) -> None:
    from agents.sb3 import SB3Trainer

    trainer = SB3Trainer("MaskablePPO", {"preset": "tiny"}, seed=0, n_steps=16, batch_size=32, n_epochs=1).learn(96)
    trainer.close()
    policy = trainer.policy()
    path = policy.save(tmp_path / "p", scenario="tiny-v1")
    m = read_manifest(path)
    import iov_env

    assert (m["kind"], m["format"], m["algo"], m["class"]) == ("sb3", "safetensors", "MaskablePPO", "MaskablePPO")
    assert m["policy_class"] == "MaskableActorCriticPolicy" and m["architecture"]["activation_fn"] == "Tanh"
    assert m["architecture"]["net_arch"] == {"pi": [64, 64], "vf": [64, 64]}
    assert m["observation_space"]["type"] == "Box" and m["action_space"] == {"type": "Discrete", "n": 7, "start": 0}
    assert (m["package_version"], m["scenario"]) == (iov_env.__version__, "tiny-v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.safetensors"]  # no pickle written
    assert not zipfile.is_zipfile(tmp_path / "p.safetensors")  # not torch.save's or SB3's (pickle-bearing) zip
    loaded = load_agent(tmp_path / "p")
    obs = np.random.default_rng(0).random((5, policy.model.policy.observation_space.shape[0]), dtype=np.float32)
    masks = np.ones((5, 7), dtype=bool)
    masks[:, 4:] = False
    for o, mk in zip(obs, masks, strict=True):
        assert loaded.act(o, mk) == policy.act(o, mk)


def test_corrupt_or_incomplete_manifests_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "sb3",\n "format": "safetensors",\n')
    with pytest.raises(CheckpointError, match=rf"{bad}:3: not valid JSON"):
        load_agent(bad)
    bad.write_text(json.dumps({"kind": "sb3", "format": "safetensors", "algo": "MaskablePPO"}))
    with pytest.raises(CheckpointError, match=rf"{bad}: field 'class' is None but 'policy_class'|{bad}: field "
                                              r"'policy_class' is missing"):
        load_agent(bad)
    path = disguised_safe_checkpoint(tmp_path / "c", tmp_path / "m")
    m = json.loads(path.read_text())
    m["architecture"]["activation_fn"] = "os.system"
    path.write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match=r"architecture.activation_fn is 'os.system'; allowed"):
        load_agent(path)
    m["architecture"] = {"net_arch": [8]}
    m["class"], m["policy_class"] = "PPO", "builtins.eval"
    path.write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match=r"field 'policy_class' is 'builtins.eval'; allowed"):
        load_agent(path)


def test_a_missing_checkpoint_names_the_path_given(tmp_path: Path) -> None:
    """It used to name '<folder>.json', a file the user never mentioned."""
    with pytest.raises(FileNotFoundError, match=rf"no checkpoint at {tmp_path / 'gone'}: neither a folder nor a "
                                                r"manifest gone.json; allowed"):
        load_agent(tmp_path / "gone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: its folder has no manifest.json"):
        load_agent(tmp_path / "empty")


def test_weights_changed_after_saving_are_detected(tmp_path: Path) -> None:
    from agents.sb3 import SB3Trainer

    trainer = SB3Trainer("PPO", {"preset": "tiny"}, seed=0, n_steps=16, batch_size=32, n_epochs=1).learn(96)
    trainer.close()
    trainer.policy().save(tmp_path / "p")
    raw = bytearray((tmp_path / "p.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "p.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"p.safetensors: SHA-256 differs from the manifest's 'weights_sha256'"):
        load_agent(tmp_path / "p.json")


def test_a_trusted_legacy_checkpoint_converts_to_the_safe_format_with_the_same_decisions(tmp_path: Path) -> None:
    """A checkpoint in the format main wrote (manifest + SB3 zip): refused as is, converted once, then safe."""
    from agents.checkpoints import convert_legacy
    from agents.sb3 import SB3Trainer

    trainer = SB3Trainer("MaskablePPO", {"preset": "tiny"}, seed=0, n_steps=16, batch_size=32, n_epochs=1).learn(96)
    trainer.close()
    policy = trainer.policy()
    policy.model.save(str(tmp_path / "old.zip"))  # what SB3Policy.save wrote before issue 22
    (tmp_path / "old.json").write_text(json.dumps({
        "kind": "sb3", "algo": "MaskablePPO", "class": "MaskablePPO", "label": policy.name, "centralized": False,
        "deterministic": True, "aggregation": None, "env_overrides": {}, "model": "old.zip", "meta": policy.meta}))
    with pytest.raises(UnsafeCheckpointError):
        load_agent(tmp_path / "old.json")
    manifest = convert_legacy(tmp_path / "old.json", tmp_path / "new")
    assert read_manifest(manifest)["format"] == "safetensors"
    safe = load_agent(tmp_path / "new")
    obs = np.random.default_rng(1).random((6, policy.model.policy.observation_space.shape[0]), dtype=np.float32)
    mask = np.array([1, 1, 1, 0, 1, 0, 0], dtype=bool)
    assert [safe.act(o, mask) for o in obs] == [policy.act(o, mask) for o in obs]
