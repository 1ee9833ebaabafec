"""The task-conditioned actor (``agents.task_heads``): it reads only the task, trains, saves safely, resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sb3_contrib")
torch = pytest.importorskip("torch")

from _sb3_resume import check_resumes  # noqa: E402

from agents.checkpoints import load_agent, read_manifest  # noqa: E402
from agents.runner import run_decentralized  # noqa: E402
from agents.sb3 import SB3Policy, SB3Trainer  # noqa: E402

SMALL_PPO = {"n_steps": 40, "batch_size": 40, "n_epochs": 1}
TINY = {"preset": "tiny"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _probs(trainer: SB3Trainer, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return trainer.model.policy.get_distribution(torch.as_tensor(obs)).distribution.probs.numpy()


def test_the_actor_reads_the_task_and_nothing_else() -> None:
    """Same task, any other features: the same rank distribution; another task: another one; the critic sees all."""
    trainer = SB3Trainer("MaskablePPO", TINY, seed=0, task_heads=True, **SMALL_PPO)
    try:
        k, width = trainer.task_dims, trainer.vec.observation_space.shape[0]
        assert k == 3 and width > k
        # make the per-task logits differ (training this briefly would barely move them)
        with torch.no_grad():
            trainer.model.policy.action_net.weight.normal_()
        rng = np.random.default_rng(0)
        obs = rng.random((6, width), dtype=np.float32)
        obs[:, :k] = 0.0
        obs[:3, 0] = 1.0  # rows 0-2: task 0 with different rest; rows 3-5: task 1
        obs[3:, 1] = 1.0
        p = _probs(trainer, obs)
        np.testing.assert_allclose(p[:3], np.repeat(p[:1], 3, axis=0), atol=1e-6)
        np.testing.assert_allclose(p[3:], np.repeat(p[3:4], 3, axis=0), atol=1e-6)
        assert np.abs(p[0] - p[3]).max() > 1e-3
        with torch.no_grad():
            values = trainer.model.policy.predict_values(torch.as_tensor(obs[:3])).numpy().ravel()
        assert np.ptp(values) > 0  # the value baseline does read the rest of the observation
    finally:
        trainer.close()


def test_task_heads_are_refused_where_they_do_not_apply() -> None:
    """Unmasked algorithms, the centralized view and explicit policy_kwargs: errors that say what is allowed."""
    with pytest.raises(ValueError, match="task_heads=True with algo='PPO'"):
        SB3Trainer("PPO", TINY, task_heads=True)
    with pytest.raises(ValueError, match="centralized=True"):
        SB3Trainer("MaskablePPO", TINY, centralized=True, task_heads=True)
    with pytest.raises(ValueError, match="policy_kwargs"):
        SB3Trainer("MaskablePPO", TINY, task_heads=True, policy_kwargs={"net_arch": [8]})
    from agents.task_heads import TaskOnlyExtractor

    with pytest.raises(ValueError, match="task_dims=0"):
        TaskOnlyExtractor(_box(5), 0)


def _box(n: int):  # noqa: ANN202 - a gymnasium Box of width n
    from gymnasium import spaces

    return spaces.Box(0.0, 1.0, (n,), dtype=np.float32)


@pytest.mark.parametrize("algo", ["MaskablePPO", "PPOLag"])
def test_task_head_checkpoint_is_safe_and_decides_the_same(algo: str, tmp_path: Path) -> None:
    """save -> load_agent without unpickling -> the same policy class, the same ranks in every round."""
    trainer = SB3Trainer(algo, TINY, seed=0, task_heads=True, gamma=0.0, **SMALL_PPO).learn(240)
    trainer.close()
    policy = trainer.policy()
    manifest = read_manifest(policy.save(tmp_path / "ckpt"))
    assert manifest["format"] == "safetensors" and manifest["policy_class"] == "TaskHeadMaskablePolicy"
    assert manifest["architecture"]["task_dims"] == 3
    assert manifest["architecture"]["net_arch"] == {"pi": [], "vf": [64, 64]}
    loaded = load_agent(tmp_path / "ckpt.json")
    assert isinstance(loaded, SB3Policy) and type(loaded.model.policy).__name__ == "TaskHeadMaskablePolicy"
    runs = [run_decentralized(lambda a=agent: a, TINY, seed=11) for agent in (policy, loaded)]
    assert runs[0]["rank_trace"] == runs[1]["rank_trace"]
    assert runs[0]["cumulative_reward"] == runs[1]["cumulative_reward"]


def test_task_head_trainer_resumes_with_its_policy_and_reward_scale(tmp_path: Path) -> None:
    """save/load keeps the task-head policy, its decisions and the reward normaliser's discount."""
    trainer = SB3Trainer("MaskablePPO", TINY, seed=2, task_heads=True, gamma=0.0, **SMALL_PPO).learn(120)
    assert trainer.vec.gamma == 0.0  # VecNormalize scales by the learner's own discounted return

    def keeps_heads_and_discount(again: SB3Trainer) -> None:
        assert again.task_heads and type(again.model.policy).__name__ == "TaskHeadMaskablePolicy"
        assert again.vec.gamma == 0.0

    check_resumes(trainer, tmp_path / "t", 120, also=keeps_heads_and_discount)
