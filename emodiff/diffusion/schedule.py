"""Noise schedules and respacing: everything here is float64 numpy, computed once.

A schedule is a vector ``betas`` [T] of per-step noise variances; ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``.
Respacing keeps S of the T steps and derives the betas of a shorter process with the same ``alpha_bar`` at the
kept steps (Nichol & Dhariwal 2021, section 4), so a model trained on T steps samples in S.
"""

from __future__ import annotations

import math

import numpy as np


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17); float64 [T].

    alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2), and
    beta_t = min(1 - alpha_bar(t+1) / alpha_bar(t), max_beta). The clip stops the last step from being a
    singular beta = 1 (f(T) = 0).
    """
    _check_steps(T)
    t = np.arange(T + 1, dtype=np.float64)
    f = np.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def linear_betas(T: int) -> np.ndarray:
    """DDPM's linear schedule from 1e-4 to 0.02, scaled by 1000/T so that any T diffuses as far; float64 [T]."""
    _check_steps(T)
    scale = 1000.0 / T
    return np.linspace(scale * 1e-4, scale * 0.02, T, dtype=np.float64)


def space_timesteps(T: int, S: int) -> list[int]:
    """S kept steps of a T-step process, evenly strided over [0, T-1], increasing.

    Includes 0 and T-1 when S >= 2; for S = 1 the one kept step is T-1, so that the single sampling step still
    starts from (almost) pure noise. Rounding is exact integer round-half-up, so the result does not depend on
    floating point and the S steps are distinct whenever S <= T.
    """
    _check_steps(T)
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)):
        raise ValueError(f"respaced steps must be an integer, got {S!r}")
    if not 1 <= S <= T:
        raise ValueError(f"respaced steps must be in 1..{T} (the process has T={T} steps), got {S}")
    if S == 1:
        return [T - 1]
    # k_i = round(i (T-1) / (S-1)) in integers: floor((2 i (T-1) + (S-1)) / (2 (S-1))).
    return [(2 * i * (T - 1) + (S - 1)) // (2 * (S - 1)) for i in range(S)]


def respaced_betas(betas: np.ndarray, kept: list[int]) -> np.ndarray:
    """Betas of the process that visits only ``kept`` steps; float64 [len(kept)].

    beta'_i = 1 - alpha_bar[k_i] / alpha_bar[k_{i-1}], with alpha_bar[k_{-1}] = 1, so that
    prod_{j<=i} (1 - beta'_j) = alpha_bar[k_i]: the respaced process has the same marginals q(x_t | x_0).
    """
    betas = np.asarray(betas, dtype=np.float64)
    kept_arr = np.asarray(kept)
    if kept_arr.ndim != 1 or kept_arr.size == 0:
        raise ValueError(f"kept steps must be a non-empty list of step indices, got {kept!r}")
    if kept_arr.min() < 0 or kept_arr.max() >= len(betas) or np.any(np.diff(kept_arr) <= 0):
        raise ValueError(f"kept steps must increase strictly within 0..{len(betas) - 1}, got {list(kept)}")
    alpha_bar = np.cumprod(1.0 - betas)[kept_arr]
    previous = np.append(1.0, alpha_bar[:-1])
    return 1.0 - alpha_bar / previous


def _check_steps(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"the number of diffusion steps T must be a positive integer, got {T!r}")
