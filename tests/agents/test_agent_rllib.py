"""agents/rllib.py: RLlib's masked observation layout (no Ray needed), then, where Ray is installed,
shared-policy multi-agent PPO: masks respected, checkpoints round-trip, training resumes.

Ray lives in its own venv (``make test-ray``): ``ray[rllib]`` pins gymnasium 1.2.2.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agents.checkpoints import load_agent
from agents.rllib import MaskedObservations, RLlibPolicy, RLlibTrainer, env_creator, masked_parallel_env
from agents.runner import run_decentralized

try:
    import ray
    import torch
except ImportError:
    ray = torch = None

# every test below the first needs Ray; `-m ray` selects them in the Ray venv
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed here; run `make test-ray` (its own venv)")

SCARCE = {"preset": "tiny", "fidelity": "fast", "vehicle_energy_j": 60.0}
SMALL = {"train_batch_size": 60, "minibatch_size": 60, "num_epochs": 1}


def test_masked_observations_use_rllib_keys_and_the_env_masks() -> None:
    """'observation' becomes 'observations'; the float mask equals info['action_mask'] every round."""
    env = masked_parallel_env(SCARCE)
    space = env.observation_space("vehicle_0")
    assert set(space.spaces) == {"observations", "action_mask"} and space["action_mask"].dtype == np.float32
    obs, infos = env.reset(seed=0)
    for _ in range(10):
        for a in env.agents:
            assert space.contains(obs[a])
            np.testing.assert_array_equal(obs[a]["action_mask"], infos[a]["action_mask"].astype(np.float32))
        obs, _, _, _, infos = env.step({a: 6 for a in env.agents})
    assert not all(o["action_mask"].all() for o in obs.values())
    env.close()
    with pytest.raises(ValueError, match="obs_type='dict'"):
        import iov_env

        MaskedObservations(iov_env.parallel_env(preset="tiny"))


@pytest.fixture(scope="module")
def trainer(local_ray: object) -> Iterator[RLlibTrainer]:
    """One trainer for the module, on the session's local Ray."""
    torch.set_num_threads(1)
    tr = RLlibTrainer(SCARCE, seed=0, **SMALL).learn(60 * 6 * 2)
    yield tr
    tr.close()


@pytest.mark.ray
@needs_ray
def test_env_creator_is_a_multi_agent_env_with_masks() -> None:
    """The RLlib view: every vehicle's observation has 'observations' and 'action_mask'; episodes end with __all__."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    env = env_creator({"preset": "tiny", "fidelity": "fast", "rounds": 2})
    assert isinstance(env, MultiAgentEnv)
    obs, _ = env.reset(seed=1)
    assert set(obs) == {f"vehicle_{i}" for i in range(6)}
    assert all(set(o) == {"observations", "action_mask"} for o in obs.values())
    _, _, _, truncs, _ = env.step(dict.fromkeys(obs, 0))
    assert truncs["__all__"] is False
    _, _, _, truncs, _ = env.step(dict.fromkeys(obs, 0))
    assert truncs["__all__"] is True


@pytest.mark.ray
@needs_ray
def test_training_counts_steps_and_the_policy_never_needs_a_correction(trainer: RLlibTrainer) -> None:
    """Two iterations of 60 rounds x 6 vehicles; the masked policy's ranks are all feasible."""
    assert trainer.env_steps >= 120 and trainer.num_timesteps == trainer.env_steps * 6
    out = run_decentralized(lambda: trainer.policy(), SCARCE, seed=4)
    assert out["rounds"] == 20 and out["action_corrections"] == 0


@pytest.mark.ray
@needs_ray
def test_masked_module_never_samples_a_forbidden_rank(trainer: RLlibTrainer) -> None:
    """Exploration samples from the masked logits: with one rank allowed, every sample is that rank."""
    from ray.rllib.core.columns import Columns

    module = trainer.module()
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.random((256, module.observation_space["observations"].shape[0]), dtype=np.float32))
    allowed = rng.integers(0, 7, size=256)
    mask = torch.zeros((256, 7))
    mask[torch.arange(256), torch.as_tensor(allowed)] = 1.0
    with torch.no_grad():
        logits = module.forward_exploration({Columns.OBS: {"observations": obs, "action_mask": mask}})[
            Columns.ACTION_DIST_INPUTS]
    samples = torch.distributions.Categorical(logits=logits).sample().numpy()
    np.testing.assert_array_equal(samples, allowed)


@pytest.mark.ray
@needs_ray
def test_checkpoint_round_trip_gives_identical_actions(trainer: RLlibTrainer, tmp_path: Path) -> None:
    """save -> load_agent (by manifest kind, trusted: RLlib pickles) -> the same ranks in every round."""
    from agents.checkpoints import UnsafeCheckpointError

    policy = trainer.policy()
    policy.save(tmp_path / "policy", scenario="tiny-v1")
    with pytest.raises(UnsafeCheckpointError, match="is an RLlib checkpoint: refused, because it is stored with pickle"):
        load_agent(tmp_path / "policy")  # a real RLlib checkpoint too: pickled, so refused unless trusted
    loaded = load_agent(tmp_path / "policy", trust_pickle=True)
    assert isinstance(loaded, RLlibPolicy) and loaded.name == "rllib_ppo"
    a, b = (run_decentralized(lambda p=p: p, SCARCE, seed=9) for p in (policy, loaded))
    assert a["rank_trace"] == b["rank_trace"] and a["cumulative_reward"] == b["cumulative_reward"]


@pytest.mark.ray
@needs_ray
def test_trainer_resumes_with_its_counters(trainer: RLlibTrainer, tmp_path: Path) -> None:
    """save/load keeps the module weights and the step counters; learning continues from there."""
    trainer.save(tmp_path / "t")
    again = RLlibTrainer.load(tmp_path / "t")
    try:
        assert (again.env_steps, again.num_timesteps) == (trainer.env_steps, trainer.num_timesteps)
        before = {k: v.clone() for k, v in again.module().state_dict().items()}
        ref = trainer.module().state_dict()
        assert all(torch.equal(before[k], torch.as_tensor(ref[k])) for k in before)
        again.learn(60 * 6)
        assert again.env_steps >= trainer.env_steps + 60
    finally:
        again.close()


@pytest.mark.ray
@needs_ray
def test_leaderboard_loads_an_rllib_checkpoint_only_with_trust_pickle(trainer: RLlibTrainer, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--checkpoints with a real RLlib checkpoint: refused (exit 1, saying why) unless --trust-pickle."""
    import json

    from iov_env.cli import main as iov

    run = tmp_path / "rl" / "tiny-v1" / "rllib_ppo" / "seed1000"
    trainer.policy().save(run / "policy", scenario="tiny-v1")
    (run / "done.json").write_text(json.dumps({"env_steps": trainer.env_steps}))
    argv = ["--scenarios", "tiny-v1", "--agents", "rllib_ppo", "--seeds", "2", "--reps", "20", "--no-plots",
            "--checkpoints", str(tmp_path / "rl"), "--out", str(tmp_path / "lb")]
    assert iov(["leaderboard", *argv]) == 1
    assert "is an RLlib checkpoint: refused" in capsys.readouterr().err
    assert iov(["leaderboard", *argv, "--trust-pickle"]) == 0
    assert (tmp_path / "lb" / "runs.csv").read_text().count("rllib_ppo") == 2
