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


def make_betas(
    kind: str = "scaled_linear", steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> np.ndarray:
    """β_1..β_T. ``linear``: evenly spaced β (DDPM uses 1e-4 → 0.02); ``scaled_linear``: evenly
    spaced sqrt(β), squared (Stable Diffusion, 0.00085 → 0.012; terminal SNR 0.0047)."""
    if kind not in BETA_SCHEDULES:
        raise InputError(f"unknown beta schedule {kind!r}; choose one of {', '.join(BETA_SCHEDULES)}")
    if not isinstance(steps, (int, np.integer)) or steps < 2:
        raise InputError(f"the number of training timesteps must be an integer >= 2, got {steps!r}")
    if not 0 < beta_start <= beta_end < 1:
        raise InputError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    if kind == "linear":
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    return np.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=np.float64) ** 2


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """ᾱ_t = ∏_{i<=t} (1 − β_i)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def betas_from_alphas_cumprod(alpha_bar: np.ndarray) -> np.ndarray:
    """Invert `alphas_cumprod`: α_t = ᾱ_t / ᾱ_{t−1} (α_1 = ᾱ_1), β_t = 1 − α_t (so β_T = 1 at ᾱ_T = 0)."""
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Algorithm 1 (diffusers `rescale_zero_terminal_snr`): shift and scale
    s_t = sqrt(ᾱ_t) so that s_T = 0 and s_1 is kept.

    Returns the new betas; the last one is exactly 1 (ᾱ_T = 0, SNR(T) = 0).
    """
    s = np.sqrt(alphas_cumprod(betas))
    first, last = s[0], s[-1]
    s = (s - last) * (first / (first - last))  # steps 2-3
    s[-1] = 0.0  # exactly, whatever the rounding of the line above
    return betas_from_alphas_cumprod(s**2)  # step 4


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
    - ``trailing``: round(arange(T, 0, −T/S)) − 1 → 999, 899, ..., 99 (always starts at T−1).
    """
    if spacing not in SPACINGS:
        raise InputError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    if not isinstance(sample_steps, (int, np.integer)) or not 1 <= sample_steps <= train_steps:
        raise InputError(f"sample steps must be an integer in 1..{train_steps}, got {sample_steps!r}")
    if spacing == "linspace":
        steps = np.round(np.linspace(0, train_steps - 1, sample_steps))[::-1]
    elif spacing == "leading":
        steps = (np.arange(sample_steps) * (train_steps // sample_steps))[::-1] + steps_offset
    else:
        steps = np.round(np.arange(train_steps, 0, -train_steps / sample_steps)) - 1
    steps = steps.astype(np.int64)
    if steps.min() < 0 or steps.max() > train_steps - 1:
        raise InputError(f"steps_offset = {steps_offset} puts timesteps outside 0..{train_steps - 1}")
    return steps
