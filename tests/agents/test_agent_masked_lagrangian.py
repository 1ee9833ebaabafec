"""Action masks on both SB3 paths, MaskablePPO, PPO-Lagrangian and checkpoints (a few hundred steps each)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sb3_contrib")
torch = pytest.importorskip("torch")

from _sb3_resume import check_resumes  # noqa: E402

from agents.checkpoints import load_agent, read_manifest  # noqa: E402
from agents.lagrangian import PIDLagrangian  # noqa: E402
from agents.runner import run_centralized, run_decentralized  # noqa: E402
from agents.sb3 import SB3Policy, SB3Trainer, default_label  # noqa: E402

# a small battery: after a few rounds most ranks are infeasible, so the masks bind
SCARCE = {"preset": "tiny", "vehicle_energy_j": 60.0}
SMALL_PPO = {"n_steps": 40, "batch_size": 40, "n_epochs": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count_corrections(trainer: SB3Trainer, timesteps: int) -> tuple[int, int]:
    """(corrected, executed) actions over ``timesteps`` of training, read from the step infos."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Count(BaseCallback):
        corrected = executed = 0

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                for sub in (info.get("agents") or {info.get("rank", 0): info}).values():
                    if sub.get("active", False):
                        Count.executed += 1
                        Count.corrected += int(bool(sub.get("action_corrected", False)))
            return True

    trainer.model.learn(timesteps, reset_num_timesteps=False, callback=Count())
    return Count.corrected, Count.executed


def test_centralized_action_masks_follow_the_info_through_gym_make() -> None:
    """sb3-contrib finds action_masks() behind gym.make's wrappers; it is info["action_mask"] flattened."""
    import gymnasium as gym
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    env = gym.make("iov_env/IoVRank-tiny-fast-v1", vehicle_energy_j=60.0)
    try:
        assert is_masking_supported(env)
        _, info = env.reset(seed=0)
        for _ in range(8):
            masks = get_action_masks(env)
            assert masks.dtype == bool and masks.shape == (6 * 7,)
            assert (masks.reshape(6, 7) == info["action_mask"].astype(bool)).all()
            _, _, _, _, info = env.step(np.full(6, 6, dtype=np.int64))
        assert not get_action_masks(env).all()  # the scarce battery makes the masks bind
    finally:
        env.close()


def test_shared_vector_env_answers_action_masks_per_vehicle_slot() -> None:
    """SuperSuit slot i gets vehicle_i's mask, also right after the automatic reset of a new episode."""
    trainer = SB3Trainer("MaskablePPO", {**SCARCE, "rounds": 3}, seed=0, **SMALL_PPO)
    vec = trainer.vec
    try:
        vec.reset()
        infos = vec.venv.reset_infos
        for step in range(7):  # crosses two episode boundaries
            rows = np.stack(vec.env_method("action_masks"))
            assert rows.shape == (6, 7) and rows.dtype == bool
            assert (rows == np.stack([i["action_mask"] for i in infos]).astype(bool)).all(), step
            _, _, _, infos = vec.step(np.full(6, 6, dtype=np.int64))
        assert not rows.all()
        assert vec.has_attr("action_masks")
    finally:
        trainer.close()


@pytest.mark.parametrize("centralized", [False, True])
def test_maskable_ppo_never_executes_an_infeasible_rank_while_plain_ppo_does(centralized: bool) -> None:
    """Same env, same steps: MaskablePPO's actions need no correction; unmasked PPO's often do."""
    masked = SB3Trainer("MaskablePPO", SCARCE, centralized=centralized, seed=0, **SMALL_PPO)
    plain = SB3Trainer("PPO", SCARCE, centralized=centralized, seed=0, **SMALL_PPO)
    steps = 120 if centralized else 480
    try:
        corrected, executed = _count_corrections(masked, steps)
        assert executed > 0 and corrected == 0
        corrected_plain, _ = _count_corrections(plain, steps)
        assert corrected_plain > 0
    finally:
        masked.close()
        plain.close()
    out = run_decentralized(lambda: masked.policy(), SCARCE, seed=3) if not centralized else None
    if out is not None:
        assert out["action_corrections"] == 0 and math.isfinite(out["cumulative_reward"])


def test_pid_lagrangian_moves_lambda_with_the_violation() -> None:
    """Overspending raises lambda by ki * relative violation; underspending lowers it, never below 0."""
    lag = PIDLagrangian(ki=0.1)
    assert lag.update(episode_cost=300.0, episode_budget=200.0) == pytest.approx(0.05)
    assert lag.update(300.0, 200.0) == pytest.approx(0.10)
    assert lag.update(150.0, 200.0) == pytest.approx(0.075)
    for _ in range(10):
        lag.update(0.0, 200.0)
    assert lag.value == 0.0 and lag.integral == 0.0
    pid = PIDLagrangian(ki=0.1, kp=1.0, kd=2.0)
    pid.update(200.0, 200.0)
    assert pid.update(300.0, 200.0) == pytest.approx(1.0 * 0.5 + 0.1 * 0.5 + 2.0 * 0.5)
    assert PIDLagrangian.from_state_dict(pid.state_dict()) == pid
    with pytest.raises(ValueError, match="ki"):
        PIDLagrangian(ki=-1.0)
    with pytest.raises(ValueError, match="budget"):
        lag.update(1.0, 0.0)


def test_ppo_lagrangian_raises_lambda_over_budget_and_keeps_it_at_zero_under() -> None:
    """A budget far below what ranks cost: lambda climbs; a budget far above: lambda stays 0."""
    tight = {"preset": "tiny", "rounds": 5, "energy_budget_j_per_vehicle_round": 0.05}
    loose = {"preset": "tiny", "rounds": 5, "energy_budget_j_per_vehicle_round": 500.0}
    over = SB3Trainer("PPOLag", tight, seed=0, lagrangian={"ki": 0.05}, **SMALL_PPO).learn(720)
    under = SB3Trainer("PPOLag", loose, seed=0, lagrangian={"ki": 0.05}, **SMALL_PPO).learn(480)
    try:
        hist = over.callback.history
        assert len(hist) >= 3 and all(h["episode_cost"] > h["episode_budget"] for h in hist)
        lambdas = [h["lambda"] for h in hist]
        assert lambdas[0] > 0 and all(b > a for a, b in zip(lambdas, lambdas[1:], strict=False))
        assert all(h["lambda"] == 0.0 for h in under.callback.history) and under.callback.history
        assert over.policy().state()["lagrange_multiplier"] == lambdas[-1]
    finally:
        over.close()
        under.close()
    with pytest.raises(ValueError, match="PPOLag"):
        SB3Trainer("PPO", tight, lagrangian={"ki": 0.1})


def test_penalised_reward_is_reward_minus_lambda_cost() -> None:
    """With lambda fixed at 2 (no dual steps), each slot's reward drops by exactly 2 * info['cost']."""
    import iov_env
    from agents.lagrangian import make_cost_penalty_vec_env
    from agents.sb3 import _seedable_supersuit_vec

    raw = _seedable_supersuit_vec(iov_env.parallel_env(preset="tiny"))
    ref = _seedable_supersuit_vec(iov_env.parallel_env(preset="tiny"))
    pen = make_cost_penalty_vec_env(raw, PIDLagrangian(lambda_init=2.0, ki=0.0))
    pen.seed(5)
    ref.seed(5)
    pen.reset()
    ref.reset()
    for _ in range(3):
        a = np.full(6, 3)
        _, r_pen, _, infos = pen.step(a)
        _, r_ref, _, _ = ref.step(a)
        cost = np.array([i["cost"] for i in infos])
        assert cost.max() > 0
        np.testing.assert_allclose(r_pen, r_ref - 2.0 * cost, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(("algo", "centralized"), [("MaskablePPO", False), ("PPOLag", False), ("PPO", True),
                                                   ("DQN", False)])
def test_checkpoint_round_trip_gives_identical_actions(algo: str, centralized: bool, tmp_path: Path) -> None:
    """save -> load_agent (safetensors, no unpickling) -> the same ranks in every round of an episode, same name."""
    import gymnasium as gym

    hp = {"learning_starts": 50, "buffer_size": 1000} if algo == "DQN" else SMALL_PPO
    trainer = SB3Trainer(algo, {"preset": "tiny"}, centralized=centralized, seed=0, **hp).learn(240)
    trainer.close()
    policy = trainer.policy()
    manifest = policy.save(tmp_path / "ckpt")
    assert read_manifest(manifest)["format"] == "safetensors" and (tmp_path / "ckpt.safetensors").exists()
    assert not (tmp_path / "ckpt.zip").exists()
    loaded = load_agent(tmp_path / "ckpt.safetensors")
    assert isinstance(loaded, SB3Policy) and loaded.name == policy.name == default_label(algo, centralized)
    assert loaded.state()["train_seed"] == 0
    if centralized:
        runs = []
        for agent in (policy, loaded):
            env = gym.make("iov_env/IoVRank-tiny-fast-v1")
            runs.append(run_centralized(agent, env, seed=11))
            env.close()
    else:
        runs = [run_decentralized(lambda a=agent: a, {"preset": "tiny"}, seed=11) for agent in (policy, loaded)]
    assert runs[0]["rank_trace"] == runs[1]["rank_trace"]
    assert runs[0]["cumulative_reward"] == runs[1]["cumulative_reward"]


def test_trainer_resumes_from_its_saved_state(tmp_path: Path) -> None:
    """save/load keeps the model, timesteps and lambda; training goes on from there."""
    trainer = SB3Trainer("PPOLag", {"preset": "tiny", "energy_budget_j_per_vehicle_round": 0.05}, seed=1,
                         **SMALL_PPO).learn(240)

    def keeps_steps_and_price(again: SB3Trainer) -> None:
        assert again.num_timesteps == trainer.num_timesteps and again.multiplier == trainer.multiplier

    check_resumes(trainer, tmp_path / "t", 240, also=keeps_steps_and_price)


def test_checkpoint_errors_name_the_problem(tmp_path: Path) -> None:
    """No manifest, wrong kind, agents without parameters: clear errors."""
    from agents.baselines import make_agent

    with pytest.raises(FileNotFoundError, match="manifest"):
        load_agent(tmp_path / "nothing")
    (tmp_path / "x.json").write_text('{"kind": "pickle"}')
    with pytest.raises(ValueError, match="allowed"):
        load_agent(tmp_path / "x.json")
    with pytest.raises(NotImplementedError, match="no trained parameters"):
        make_agent("ucb_dual").save(tmp_path / "u")
    with pytest.raises(ValueError, match="obs_type"):
        SB3Trainer("PPO", {"preset": "tiny", "obs_type": "dict"})


def test_ppo_lagrangian_equals_maskable_ppo_while_lambda_stays_zero() -> None:
    """Why the v2 RL table had identical rows: with the budget never binding, lambda stays 0, the penalised reward
    is the plain one, and PPOLag's network equals MaskablePPO's from the same seed to the last bit; once the
    budget binds, lambda moves and the networks part."""
    loose = {"preset": "tiny", "rounds": 5, "energy_budget_j_per_vehicle_round": 500.0}
    tight = {**loose, "energy_budget_j_per_vehicle_round": 0.05}

    def weights(algo: str, env: dict) -> tuple[dict, float]:
        # three rollouts of 240 slot-steps: the first is gathered at lambda 0 whatever the budget
        trainer = SB3Trainer(algo, env, seed=3, **SMALL_PPO).learn(720)
        trainer.close()
        lam = trainer.multiplier.value if trainer.multiplier else 0.0
        return {k: v.clone() for k, v in trainer.model.policy.state_dict().items()}, lam

    plain, _ = weights("MaskablePPO", loose)
    lag, lam = weights("PPOLag", loose)
    assert lam == 0.0 and all(torch.equal(plain[k], lag[k]) for k in plain)
    plain, _ = weights("MaskablePPO", tight)
    lag, lam = weights("PPOLag", tight)
    assert lam > 0 and any(not torch.equal(plain[k], lag[k]) for k in plain)
