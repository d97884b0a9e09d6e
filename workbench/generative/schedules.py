"""Discrete diffusion noise schedules and sampling timesteps (Lin et al. 2024;
diffusers' `scheduling_ddim.py`).

Forward process x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε, SNR(t) = ᾱ_t / (1 − ᾱ_t), t = 0..T−1 (0-indexed
like diffusers; the paper counts 1..T). Everything here is float64 numpy: schedules are tiny and
their exactness (ᾱ_T = 0, ᾱ_1 unchanged) is what the tests check.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import InputError

__all__ = [
    "BETA_SCHEDULES",
    "MAX_TRAIN_TIMESTEPS",
    "SPACINGS",
    "alphas_cumprod",
    "betas_from_alphas_cumprod",
    "make_betas",
    "rescale_zero_terminal_snr",
    "snr",
    "timesteps",
]

BETA_SCHEDULES = ("linear", "scaled_linear")
SPACINGS = ("leading", "linspace", "trailing")
# Discrete schedules use T = 1000 (Ho et al. 2020) to 4000 (Nichol & Dhariwal 2021); 10^6 leaves
# room for any of them while a schedule's float64 arrays stay a few MB (10^8 took 75 s and 5.5 GB).
MAX_TRAIN_TIMESTEPS = 1_000_000


def make_betas(
    kind: str = "scaled_linear", steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> np.ndarray:
    """β_1..β_T. ``linear``: evenly spaced β (DDPM uses 1e-4 → 0.02); ``scaled_linear``: evenly
    spaced sqrt(β), squared (Stable Diffusion, 0.00085 → 0.012; terminal SNR 0.0047)."""
    if kind not in BETA_SCHEDULES:
        raise InputError(f"unknown beta schedule {kind!r}; choose one of {', '.join(BETA_SCHEDULES)}")
    if not isinstance(steps, (int, np.integer)) or not 2 <= steps <= MAX_TRAIN_TIMESTEPS:
        raise InputError(
            f"the number of training timesteps must be an integer in 2..{MAX_TRAIN_TIMESTEPS:,}, got {steps!r}"
        )
    if not 0 < beta_start <= beta_end < 1:
        raise InputError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    if kind == "linear":
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    return np.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=np.float64) ** 2


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """ᾱ_t = ∏_{i<=t} (1 − β_i)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def betas_from_alphas_cumprod(alpha_bar: np.ndarray) -> np.ndarray:
    """Invert `alphas_cumprod`: α_t = ᾱ_t / ᾱ_{t−1} (α_1 = ᾱ_1), β_t = 1 − α_t (so β_T = 1 at ᾱ_T = 0).

    Where ᾱ_{t−1} is already 0 (underflowed), ᾱ_t is 0 too and any α_t fits; β_t = 1 is returned
    instead of 0/0 = NaN.
    """
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    previous = alpha_bar[:-1]
    ratio = np.divide(alpha_bar[1:], previous, out=np.zeros_like(previous), where=previous > 0)
    return 1.0 - np.concatenate([alpha_bar[:1], ratio])


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Algorithm 1 (diffusers `rescale_zero_terminal_snr`): shift and scale
    s_t = sqrt(ᾱ_t) so that s_T = 0 and s_1 is kept.

    Returns the new betas; the last one is exactly 1 (ᾱ_T = 0, SNR(T) = 0).

    Computed in log space: with large betas or many steps ᾱ_t underflows float64 to 0 long before
    t = T (β = 0.5 … 0.9 reaches 0 within about 500 steps), and step 4's ratio s'_t/s'_{t−1}
    becomes 0/0. With r_t = s_T/s_t, steps 2-3 give s'_t = s_t·(1 − r_t)/(1 − r_1), so step 4 is
    α'_t = (s'_t/s'_{t−1})² = (1 − β_t)·((1 − r_t)/(1 − r_{t−1}))², α'_1 = 1 − β_1: only ratios
    of s, each exp of a difference of log s.
    """
    betas = np.asarray(betas, dtype=np.float64)
    log_s = 0.5 * np.cumsum(np.log1p(-betas))  # log sqrt(ᾱ_t)
    one_minus_r = -np.expm1(log_s[-1] - log_s)  # 1 − s_T/s_t: > 0 for t < T (every β > 0), 0 at T
    alphas = np.empty_like(betas)
    alphas[0] = 1.0 - betas[0]  # s'_1 = s_1
    alphas[1:] = (1.0 - betas[1:]) * (one_minus_r[1:] / one_minus_r[:-1]) ** 2
    rescaled = 1.0 - alphas
    rescaled[-1] = 1.0  # exactly: ᾱ_T = 0
    return rescaled


def snr(alpha_bar: np.ndarray) -> np.ndarray:
    """SNR(t) = ᾱ_t / (1 − ᾱ_t); 0 where ᾱ_t = 0."""
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    return alpha_bar / (1.0 - alpha_bar)


def timesteps(spacing: str, train_steps: int, sample_steps: int, steps_offset: int = 0) -> np.ndarray:
    """The S sampling timesteps, first (noisiest) first, per diffusers' DDIM `set_timesteps`
    (the spacings of Lin et al. 2024, Table 2).

    - ``linspace``: round(linspace(0, T−1, S)) reversed → T=1000, S=10: 999, 888, ..., 111, 0;
    - ``leading``: arange(S)·(T//S) + steps_offset reversed → 900, ..., 0 (offset 1: 901, ..., 1);
      never starts at T−1, which is one of Lin et al.'s flaws;
    - ``trailing``: the first S of round(arange(T, 0, −T/S)) − 1 → 999, 899, ..., 99 (always starts at T−1).
    """
    if spacing not in SPACINGS:
        raise InputError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    if not isinstance(train_steps, (int, np.integer)) or not 1 <= train_steps <= MAX_TRAIN_TIMESTEPS:
        raise InputError(
            f"the training timesteps T must be an integer in 1..{MAX_TRAIN_TIMESTEPS:,}, got {train_steps!r}"
        )
    if not isinstance(sample_steps, (int, np.integer)) or not 1 <= sample_steps <= train_steps:
        raise InputError(
            f"the sampling steps must be an integer in 1..{train_steps} (at most the training timesteps), "
            f"got {sample_steps!r}"
        )
    if spacing == "linspace":
        steps = np.round(np.linspace(0, train_steps - 1, sample_steps))[::-1]
    elif spacing == "leading":
        steps = (np.arange(sample_steps) * (train_steps // sample_steps))[::-1] + steps_offset
    else:
        # diffusers' own float arithmetic, so that every value matches its DDIM `set_timesteps`. Its
        # float arange can overshoot by one element (T/(T/S) rounds above S; 62 of S = 1..1000 at
        # T = 1000), a last value near 0 that becomes −1; the first S values are T/S apart from T.
        steps = np.round(np.arange(train_steps, 0, -train_steps / sample_steps))[:sample_steps] - 1
    steps = steps.astype(np.int64)
    if steps.min() < 0 or steps.max() > train_steps - 1:
        raise InputError(f"steps_offset = {steps_offset} puts timesteps outside 0..{train_steps - 1}")
    return steps
