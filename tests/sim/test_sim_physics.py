"""Channel and cost formulas against values computed by hand (see the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from iov_env.config import ChannelConfig
from iov_env.sim import channel, costs


# -- channel ------------------------------------------------------------------------------------
def test_shannon_rate_by_hand() -> None:
    # SNR = P g / N = 1 * 1e-9 / 1e-12 = 1000; R = 1e6 * log2(1001) = 1e6 * 9.967226... bit/s
    rate = channel.shannon_rate_bps(np.array(1e6), 1.0, np.array(1e-9), np.array(1e-12))
    assert float(rate) == pytest.approx(9.967226258835993e6, rel=1e-12)
    # zero bandwidth -> zero rate; zero gain -> zero rate
    assert float(channel.shannon_rate_bps(np.array(0.0), 1.0, np.array(1e-9), np.array(1e-12))) == 0.0
    assert float(channel.shannon_rate_bps(np.array(1e6), 1.0, np.array(0.0), np.array(1e-12))) == 0.0


def test_pathloss_3gpp() -> None:
    # 128.1 + 37.6 log10(d_km): 1 km -> 128.1 dB, 100 m -> 128.1 - 37.6 = 90.5 dB, 10 km -> 165.7 dB
    pl = channel.pathloss_db(np.array([1000.0, 100.0, 10_000.0]))
    np.testing.assert_allclose(pl, [128.1, 90.5, 165.7], atol=1e-9)
    assert float(channel.pathloss_db(np.array(1000.0), intercept_db=100.0, slope_db_per_decade=20.0)) == pytest.approx(100.0)


def test_noise_power() -> None:
    # -174 dBm/Hz + 10 log10(1e6) + 9 dB = -105 dBm = 10^(-10.5) mW = 10^(-13.5) W = 3.1623e-14 W
    n = float(channel.noise_power_w(np.array(1e6), -174.0, 9.0))
    assert n == pytest.approx(10 ** -13.5, rel=1e-9)
    assert n == pytest.approx(3.1623e-14, rel=1e-4)
    # doubling the bandwidth doubles the noise power
    assert float(channel.noise_power_w(np.array(2e6))) == pytest.approx(2 * n, rel=1e-9)


def test_link_rates_pathloss_no_fading() -> None:
    # d = 1 km: g = 10^-12.81 = 1.5488e-13; N = 3.1623e-14 W (1 MHz, 9 dB NF)
    # uplink  P = 1 W: SNR = 4.8978 -> 1e6 log2(5.8978) = 2.5602e6 bit/s
    # downlink P = 2 W: SNR = 9.7956 -> 1e6 log2(10.7956) = 3.4324e6 bit/s
    cfg = ChannelConfig(fading="none")
    up, down = channel.link_rates_bps(np.array([1000.0]), np.array([1e6]), np.ones(1), cfg)
    assert float(up[0]) == pytest.approx(2.5602e6, rel=1e-4)
    assert float(down[0]) == pytest.approx(3.4324e6, rel=1e-4)
    # closer is faster, and distances below min_distance_m are clamped to it
    up2, _ = channel.link_rates_bps(np.array([0.0, 10.0, 100.0, 1000.0]), np.full(4, 1e6), np.ones(4), cfg)
    assert up2[0] == up2[1]
    assert np.all(np.diff(up2[1:]) < 0)


def test_link_rates_authors_model() -> None:
    # authors: B = 2e5, N0 = 1e-9, h = 1/(d^2 + 1e-6); d = 100: SNR = 1e-4 / 1e-9 = 1e5
    # R = 2e5 log2(100001) = 2e5 * 16.60965 = 3.32193e6 bit/s; the shared bandwidth is ignored
    cfg = ChannelConfig(channel_model="authors")
    up, down = channel.link_rates_bps(np.array([100.0]), np.array([123.0]), np.array([0.01]), cfg)
    assert float(up[0]) == pytest.approx(2e5 * math.log2(1 + 1e5), rel=1e-9)
    assert float(up[0]) == pytest.approx(3.32193e6, rel=1e-5)
    assert float(down[0]) == pytest.approx(2e5 * math.log2(1 + 2e5), rel=1e-9)


def test_fading_power() -> None:
    rng = np.random.default_rng(0)
    ray = channel.fading_power((20_000,), "rayleigh", rng)
    assert np.all(ray >= 0)
    assert ray.mean() == pytest.approx(1.0, abs=0.03)  # exponential(1): mean 1, sd 1/sqrt(2e4)
    np.testing.assert_array_equal(channel.fading_power((5,), "none", rng), np.ones(5))


def test_bandwidth_sharing() -> None:
    rsu = np.array([0, 0, 1, -1, 0, 2])
    share = channel.shared_bandwidth_hz(rsu, num_rsus=4, rsu_bandwidth_hz=1.2e6)
    np.testing.assert_allclose(share, [4e5, 4e5, 1.2e6, 0.0, 4e5, 1.2e6])
    # each RSU's bandwidth is handed out exactly once
    for r in range(3):
        assert share[rsu == r].sum() == pytest.approx(1.2e6)
    np.testing.assert_array_equal(channel.shared_bandwidth_hz(np.array([-1, -1]), 2, 1e6), [0.0, 0.0])


# -- costs --------------------------------------------------------------------------------------
def test_payload_bits_by_hand() -> None:
    # rank 8, hidden 384, 12 adapted matrices (6 layers x query, value), 32 bit:
    # params = 8 * (2 * 384) * 12 = 73,728; bits = 73,728 * 32 = 2,359,296
    assert float(costs.lora_param_count(np.array(8), 384, 12)) == 73_728
    assert float(costs.payload_bits(np.array(8), 384, 12, 32)) == 2_359_296
    # linear in rank and in bits per parameter
    bits = costs.payload_bits(np.array([1, 2, 4, 64]), 384, 12, 16)
    np.testing.assert_allclose(bits, np.array([1, 2, 4, 64]) * 384 * 2 * 12 * 16)


def test_adapted_matrix_equivalents_by_hand() -> None:
    # a rank-r adapter on a d_in x d_out layer has r (d_in + d_out) parameters = r 2d x (d_in + d_out) / 2d
    # query + value: 2 x (384 + 384) / 768 = 2
    assert costs.adapted_matrix_equivalents(("query", "value"), 384, 1536) == 2.0
    # all-linear: q, k, v, attention.output.dense (4 x 1) + intermediate.dense and output.dense
    # (2 x (384 + 1536) / 768 = 5) = 9
    assert costs.adapted_matrix_equivalents(("all-linear",), 384, 1536) == 9.0
    # peft's suffix rule: "output.dense" matches attention.output.dense (1) and output.dense (2.5)
    assert costs.adapted_matrix_equivalents(("output.dense",), 384, 1536) == 3.5
    assert costs.adapted_matrix_equivalents(("dense",), 384, 1536) == 6.0
    # another architecture's names count as one d x d matrix each
    assert costs.adapted_matrix_equivalents(("q_proj", "v_proj"), 384, 1536) == 2.0


def test_training_flops_by_hand() -> None:
    # base forward per token = 2 L (4 d^2 + 2 d d_ff) = 2*6*(4*384^2 + 2*384*1536)
    #                        = 12 * (589,824 + 1,179,648) = 21,233,664
    # frozen forward + activation backward = 2x = 42,467,328 per token
    # LoRA at r = 8 on 12 matrices: 3 * 2 * 8 * (2*384) * 12 = 442,368 per token
    # 1000 tokens: 1000 * (42,467,328 + 442,368) = 42,909,696,000
    assert costs.base_forward_flops_per_token(384, 6, 1536) == 21_233_664
    f = costs.training_flops(np.array(1000.0), np.array(8), 384, 6, 1536, 12)
    assert float(f) == 42_909_696_000
    # rank only adds the LoRA term
    f0, f64 = costs.training_flops(np.array(1000.0), np.array([0, 64]), 384, 6, 1536, 12)
    assert f64 - f0 == pytest.approx(1000 * 3 * 2 * 64 * 768 * 12)


def test_compute_energy_and_latency_by_hand() -> None:
    # kappa f^2 C = 1e-28 * (1e9)^2 * 1e9 = 0.1 J; tau = C / f = 1 s
    assert float(costs.compute_energy_j(np.array(1e9), np.array(1e9), 1e-28)) == pytest.approx(0.1)
    assert float(costs.compute_latency_s(np.array(1e9), np.array(1e9))) == pytest.approx(1.0)
    # equals the authors' kappa f^3 tau form at f = 2 GHz, C = 3e9: 1e-28 * 8e27 * 1.5 = 1.2 J
    f, c = 2e9, 3e9
    assert float(costs.compute_energy_j(np.array(c), np.array(f), 1e-28)) == pytest.approx(1e-28 * f**3 * (c / f))


def test_transfer_latency() -> None:
    t = costs.transfer_latency_s(np.array([2_359_296.0, 1.0]), np.array([2_359_296.0, 0.0]))
    assert t[0] == pytest.approx(1.0)
    assert t[1] == math.inf


def test_training_memory_grows_with_rank_and_is_positive() -> None:
    mem = costs.training_memory_mb(np.array([1, 8, 64]), 384, 6, 1536, 12, 16, 64)
    assert np.all(mem > 0)
    assert np.all(np.diff(mem) > 0)
    # adapters with grads and two Adam moments: 4 copies of 4-byte params
    assert mem[1] - mem[0] == pytest.approx(4 * 4 * (8 - 1) * 768 * 12 / 1024**2)
