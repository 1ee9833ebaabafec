"""The main demo: one episode of the ``tiny`` world per policy, a summary table and the final map.

    iov demo --out results/demo                 # fast surrogate, seconds
    iov demo --fidelity real --rounds 3         # every episode with real LoRA training
    iov demo --real-rounds 2                    # fast episodes, then 2 real rounds (make demo)
    iov demo --mobility-model sumo --out results/demo-sumo   # SUMO traffic (the sumo extra)
    iov demo --video results/demo/episode.gif   # also the random policy's episode, one frame a round
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import iov_env
from iov_env.envs.parallel import IoVParallelEnv
from iov_env.render import VIDEO_SUFFIXES, write_video
from iov_env.results import save_png_atomic

Policy = Callable[[IoVParallelEnv, dict[str, dict[str, Any]], np.random.Generator], dict[str, int]]
POLICY_KEYS = {"fixed": "fixed rank 8", "random": "random"}  # --video-policy choice -> the demo's policy name


def fixed_rank_policy(rank: int) -> Policy:
    """Always ask for ``rank`` (the env corrects it down where infeasible)."""

    def act(env: IoVParallelEnv, infos: dict[str, dict[str, Any]], rng: np.random.Generator) -> dict[str, int]:
        ranks = env.config.learning.rank_set
        if rank not in ranks:
            raise ValueError(f"rank={rank} is not in rank_set={ranks}")
        return dict.fromkeys(env.agents, ranks.index(rank))

    return act


def random_policy(env: IoVParallelEnv, infos: dict[str, dict[str, Any]], rng: np.random.Generator) -> dict[str, int]:
    """A uniformly random feasible rank per vehicle (respects the action mask)."""
    return {a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in env.agents}


def run_episode(env: IoVParallelEnv, policy: Policy, seed: int, frames: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Play one episode and return per-task accuracy, latency, energy and budget use.

    With ``frames`` (a list; the env must have ``render_mode="rgb_array"``), the frame rendered after
    each round is appended to it: one frame per round, as a video of the episode needs.
    """
    if frames is not None and env.render_mode != "rgb_array":
        raise ValueError(f"frames need render_mode='rgb_array'; the env has render_mode={env.render_mode!r}")
    rng = np.random.default_rng(seed)
    _, infos = env.reset(seed=seed)
    latency_s = energy_j = budget_j = reward = 0.0
    violations = rounds = 0
    last = None
    while env.agents:
        _, rewards, _, _, infos = env.step(policy(env, infos, rng))
        last = env.last_round
        if frames is not None:
            frames.append(env.render())
        latency_s += float(last.task_latency_s.max(initial=0.0))
        energy_j += float(last.task_energy_j.sum())
        budget_j += float(last.task_budget_j.sum())
        violations += int(np.sum(last.task_energy_j > last.task_budget_j))
        reward += float(sum(rewards.values()))
        rounds += 1
    assert last is not None
    return {
        "task_accuracy": dict(zip(env.config.tasks.tasks, last.task_accuracy.tolist(), strict=True)),
        "latency_s": latency_s,
        "energy_j": energy_j,
        "budget_j": budget_j,
        "violation_rate": violations / (rounds * env.config.num_tasks),
        "reward": reward,
    }


def real_rounds(preset: str, rounds: int, seed: int) -> None:
    """A few rounds of real peft LoRA training inside ``step()``: per-task dev metric and wall time per round."""
    import time

    t0 = time.perf_counter()
    env = iov_env.parallel_env(preset=preset, fidelity="real", rounds=rounds)
    _, infos = env.reset(seed=seed)
    backend = env.simulator.backend.describe()
    print(f"\nreal fidelity: {backend['model']} ({backend['model_hidden_dim']} hidden, {backend['model_num_layers']} layers), "
          f"data {backend['tasks']}, set-up {time.perf_counter() - t0:.1f} s")
    policy = fixed_rank_policy(8)
    rng = np.random.default_rng(seed)
    while env.agents:
        t = time.perf_counter()
        env.step(policy(env, infos, rng))
        m = env.last_round
        metrics = "  ".join(
            f"{task}={m.task_accuracy[k]:.3f}" for k, task in enumerate(env.config.tasks.tasks)
        )
        print(f"round {m.round_index}: {metrics}  energy {m.energy_j.sum():.1f} J  wall {time.perf_counter() - t:.1f} s")
    env.close()


def main(argv: list[str] | None = None) -> int:
    """Run the demo and print a summary table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--fidelity", default="fast", choices=("fast", "real"))
    parser.add_argument("--rounds", type=int, default=None, help="override the preset's rounds")
    parser.add_argument("--mobility-model", default=None, choices=("grid", "tdrive", "sumo"),
                        help="override the preset's mobility model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/demo"))
    parser.add_argument("--real-rounds", type=int, default=0, help="then run this many rounds of real LoRA training")
    parser.add_argument("--video", type=Path, default=None,
                        help="write one policy's episode as a video, one frame per round: a .gif or .mp4 path")
    parser.add_argument("--video-policy", default="random", choices=tuple(POLICY_KEYS),
                        help="whose episode the video shows (default: random, whose ranks change every round)")
    parser.add_argument("--fps", type=float, default=2.0, help="video frames per second (default 2)")
    args = parser.parse_args(argv)
    if args.video is not None and args.video.suffix.lower() not in VIDEO_SUFFIXES:
        parser.error(f"--video {args.video}: the suffix must be one of {', '.join(VIDEO_SUFFIXES)}")
    if not args.fps > 0:
        parser.error(f"--fps {args.fps}: must be positive")
    overrides: dict[str, Any] = {"preset": args.preset, "fidelity": args.fidelity}
    if args.rounds is not None:
        overrides["rounds"] = args.rounds
    if args.mobility_model is not None:
        overrides["mobility_model"] = args.mobility_model
    env = iov_env.parallel_env(render_mode="rgb_array", **overrides)
    policies: dict[str, Policy] = {POLICY_KEYS["fixed"]: fixed_rank_policy(8), POLICY_KEYS["random"]: random_policy}
    print(f"iov-env {iov_env.__version__} demo: preset={args.preset} fidelity={args.fidelity} "
          f"mobility={env.config.mobility.mobility_model} "
          f"vehicles={env.config.num_vehicles} rounds={env.config.episode.rounds} seed={args.seed}")
    print(f"learning backend: {env.simulator.backend.describe()}")
    tasks = env.config.tasks.tasks
    header = "| policy | " + " | ".join(f"{t} acc" for t in tasks) + " | latency s | energy J | budget use | violations | reward |"
    print("\n" + header + "\n|" + "---|" * (len(tasks) + 6))
    frames: list[np.ndarray] = []
    for name, policy in policies.items():
        recorded = args.video is not None and name == POLICY_KEYS[args.video_policy]
        s = run_episode(env, policy, args.seed, frames if recorded else None)
        accs = " | ".join(f"{s['task_accuracy'][t]:.3f}" for t in tasks)
        print(f"| {name} | {accs} | {s['latency_s']:.1f} | {s['energy_j']:.1f} | "
              f"{s['energy_j'] / s['budget_j']:.0%} | {s['violation_rate']:.0%} | {s['reward']:.0f} |")
    png = args.out / "final_map.png"
    save_png_atomic(png, env.render())
    print(f"\nfinal map: {png}")
    if args.video is not None:
        write_video(frames, args.video, fps=args.fps)
        print(f"video: {args.video} ({len(frames)} frames, one per round, {args.video_policy} policy)")
    env.close()
    if args.real_rounds > 0:
        real_rounds(args.preset, args.real_rounds, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
