"""Vehicle-RSU wireless link: path loss, fading, noise, Shannon rate, bandwidth sharing."""

from __future__ import annotations

import numpy as np

from iov_env.config import ChannelConfig
from iov_env.lazy import lazy_import

kernels = lazy_import("iov_env.sim.kernels")  # compiled loops: numba loads on first use, not with iov_env

# The authors' code: B = 2e5 Hz per link, N0 = 1e-9 W, h(d) = 1 / (d^2 + 1e-6), no sharing.
AUTHORS_BANDWIDTH_HZ = 2.0e5
AUTHORS_NOISE_W = 1.0e-9


def pathloss_db(distance_m: np.ndarray, intercept_db: float = 128.1, slope_db_per_decade: float = 37.6) -> np.ndarray:
    """3GPP-style macro path loss ``intercept + slope * log10(d_km)`` in dB."""
    return intercept_db + slope_db_per_decade * np.log10(np.asarray(distance_m, dtype=float) / 1000.0)


def noise_power_w(bandwidth_hz: np.ndarray, psd_dbm_per_hz: float = -174.0, noise_figure_db: float = 9.0) -> np.ndarray:
    """Thermal noise over ``bandwidth_hz`` plus the receiver noise figure, in watts."""
    noise_dbm = psd_dbm_per_hz + 10.0 * np.log10(bandwidth_hz) + noise_figure_db
    return 10.0 ** ((noise_dbm - 30.0) / 10.0)


def shannon_rate_bps(bandwidth_hz: np.ndarray, tx_power_w: float, gain: np.ndarray, noise_w: np.ndarray) -> np.ndarray:
    """Shannon capacity ``B log2(1 + P h / N)`` in bit/s."""
    return bandwidth_hz * np.log2(1.0 + tx_power_w * gain / noise_w)


def fading_power(shape: tuple[int, ...], kind: str, rng: np.random.Generator) -> np.ndarray:
    """Small-scale fading power gain: exponential(1) for Rayleigh, ones for none."""
    if kind == "rayleigh":
        return rng.exponential(1.0, size=shape)
    return np.ones(shape)


def shared_bandwidth_hz(vehicle_rsu: np.ndarray, num_rsus: int, rsu_bandwidth_hz: float) -> np.ndarray:
    """Equal share of each RSU's bandwidth among the vehicles attached to it (0 where unattached)."""
    return kernels.shared_bandwidth_hz(np.asarray(vehicle_rsu, dtype=np.intp), int(num_rsus), float(rsu_bandwidth_hz))


def link_rates_bps(
    distance_m: np.ndarray,
    bandwidth_hz: np.ndarray,
    fading: np.ndarray,
    cfg: ChannelConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Uplink (vehicle power) and downlink (RSU power) rates for each link, in bit/s."""
    d = np.maximum(np.asarray(distance_m, dtype=float), cfg.min_distance_m)
    if cfg.channel_model == "authors":
        gain = 1.0 / (d**2 + 1e-6)
        bw = np.full(d.shape, AUTHORS_BANDWIDTH_HZ)
        noise = AUTHORS_NOISE_W
    else:
        gain = 10.0 ** (-pathloss_db(d, cfg.pathloss_intercept_db, cfg.pathloss_slope_db_per_decade) / 10.0) * fading
        bw = np.asarray(bandwidth_hz, dtype=float)
        noise = noise_power_w(np.maximum(bw, 1e-9), cfg.noise_psd_dbm_per_hz, cfg.noise_figure_db)
    up = shannon_rate_bps(bw, cfg.vehicle_tx_power_w, gain, noise)
    down = shannon_rate_bps(bw, cfg.rsu_tx_power_w, gain, noise)
    return up, down
