"""Latency and energy of one LoRA round at rank r, from first principles (host-independent).

Training FLOPs of a frozen transformer with LoRA adapters: the frozen base runs forward and
back-propagates activations (no weight gradients), about 2x its forward cost; each adapted
``d x d`` matrix adds ``2 r (d + d)`` forward FLOPs per token and about twice that backward.
"""

from __future__ import annotations

import numpy as np

from iov_env.config import ALL_LINEAR

BYTES_PER_MB = 1024.0 * 1024.0
# the linear layers of one BERT-family encoder block, by module path inside the block
BLOCK_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense")


def block_linear_dims(hidden_dim: int, intermediate_dim: int) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each linear layer of a BERT-family block."""
    d, f = hidden_dim, intermediate_dim
    dims = ((d, d), (d, d), (d, d), (d, d), (d, f), (f, d))
    return dict(zip(BLOCK_LINEARS, dims, strict=True))


def targets_module(module_path: str, target: str) -> bool:
    """peft's matching rule for a target name: the module path itself or a dotted suffix of it."""
    return module_path == target or module_path.endswith("." + target)


def adapted_matrix_equivalents(target_modules: tuple[str, ...], hidden_dim: int, intermediate_dim: int) -> float:
    """LoRA-adapted linears of one block counted in ``d x d`` equivalents, ``(d_in + d_out) / 2d`` each.

    A rank-r adapter on a ``d_in x d_out`` layer has ``r (d_in + d_out)`` parameters, so this count makes
    ``lora_param_count`` exact for the FFN layers too. A target matching no BERT-family layer (another
    architecture's naming) counts as one ``d x d`` matrix.
    """
    dims = block_linear_dims(hidden_dim, intermediate_dim)
    if tuple(target_modules) == (ALL_LINEAR,):
        chosen = set(dims)
        unmatched = 0
    else:
        chosen = {m for m in dims for t in target_modules if targets_module(m, t)}
        unmatched = sum(1 for t in target_modules if not any(targets_module(m, t) for m in dims))
    return unmatched + sum((dims[m][0] + dims[m][1]) / (2.0 * hidden_dim) for m in chosen)


def lora_param_count(rank: np.ndarray, hidden_dim: int, num_adapted_matrices: float) -> np.ndarray:
    """Parameters of rank-``r`` adapters ``A (r x d)`` and ``B (d x r)`` on ``num_adapted_matrices`` d x d layers."""
    return np.asarray(rank, dtype=float) * (2.0 * hidden_dim) * num_adapted_matrices


def payload_bits(rank: np.ndarray, hidden_dim: int, num_adapted_matrices: float, bits_per_param: int) -> np.ndarray:
    """Bits to transmit the LoRA matrices of one vehicle at rank ``r``."""
    return lora_param_count(rank, hidden_dim, num_adapted_matrices) * bits_per_param


def base_forward_flops_per_token(hidden_dim: int, num_layers: int, intermediate_dim: int) -> float:
    """Forward FLOPs per token of an encoder: 4 attention projections and a 2-matrix FFN per layer."""
    return 2.0 * num_layers * (4.0 * hidden_dim**2 + 2.0 * hidden_dim * intermediate_dim)


def training_flops(
    tokens: np.ndarray,
    rank: np.ndarray,
    hidden_dim: int,
    num_layers: int,
    intermediate_dim: int,
    num_adapted_matrices: float,
) -> np.ndarray:
    """FLOPs of LoRA fine-tuning over ``tokens`` tokens: frozen forward+activation backward, plus LoRA terms."""
    base = 2.0 * base_forward_flops_per_token(hidden_dim, num_layers, intermediate_dim)
    lora = 3.0 * 2.0 * np.asarray(rank, dtype=float) * (2.0 * hidden_dim) * num_adapted_matrices
    return np.asarray(tokens, dtype=float) * (base + lora)


def compute_latency_s(cycles: np.ndarray, cpu_freq_hz: np.ndarray) -> np.ndarray:
    """Time to execute ``cycles`` at clock ``f``."""
    return np.asarray(cycles, dtype=float) / cpu_freq_hz


def compute_energy_j(cycles: np.ndarray, cpu_freq_hz: np.ndarray, kappa: float) -> np.ndarray:
    """Dynamic CPU energy ``kappa f^2 cycles`` (equals the authors' ``kappa f^3 tau``)."""
    return dynamic_energy_j(np.asarray(cycles, dtype=float), np.asarray(cpu_freq_hz, dtype=float), kappa)


def dynamic_energy_j(cycles: float | np.ndarray, cpu_freq_hz: float | np.ndarray, kappa: float) -> float | np.ndarray:
    """``kappa f^2 cycles`` on floats or float arrays as given (the compiled round calls it once per vehicle)."""
    return kappa * cpu_freq_hz**2 * cycles


def transfer_latency_s(bits: np.ndarray, rate_bps: np.ndarray) -> np.ndarray:
    """Time to move ``bits`` at ``rate_bps`` (infinite where the rate is zero)."""
    rate = np.asarray(rate_bps, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):  # a vanishing rate: an infinite time
        return np.where(rate > 0, np.asarray(bits, dtype=float) / np.maximum(rate, 1e-300), np.inf)


def training_memory_mb(
    rank: np.ndarray,
    hidden_dim: int,
    num_layers: int,
    intermediate_dim: int,
    num_adapted_matrices: float,
    batch_size: int,
    seq_len: int,
    bytes_per_param: float = 4.0,
) -> np.ndarray:
    """Peak training memory: frozen base weights, activations, adapters with grads and two Adam moments."""
    base_params = num_layers * (4.0 * hidden_dim**2 + 2.0 * hidden_dim * intermediate_dim)
    # per layer and token: hidden states around attention/FFN kept for backward (~ 10 d + 2 d_ff values)
    activations = batch_size * seq_len * num_layers * (10.0 * hidden_dim + 2.0 * intermediate_dim)
    adapters = 4.0 * lora_param_count(rank, hidden_dim, num_adapted_matrices)
    return (base_params + activations + adapters) * bytes_per_param / BYTES_PER_MB
