"""Samplers, each next to the equation it integrates (EDM: Karras et al. 2022, Eq. 5 and
Algorithm 2, NVlabs/edm `generate.py`; DDPM/DDIM: diffusers' `DDPMScheduler`/`DDIMScheduler`).

σ-space (EDM, and PFGM++ through r = σ√D, whose ODE in σ is EDM's):
    dx/dσ = (x − D(x; σ)) / σ,   σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, σ_n = 0.
Discrete-time (DDPM/DDIM) on a schedule ᾱ_t with the timesteps of `schedules.timesteps`.

Every sampler keeps its state in float64 (EDM's `edm_sampler` does too) and takes an explicit
torch.Generator for whatever it draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from workbench.errors import InputError
from workbench.generative.prediction import check_prediction, to_epsilon, to_sample

__all__ = ["ddim_sample", "ddpm_sample", "edm_sigmas", "heun_sample"]


def edm_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> np.ndarray:
    """EDM's grid (Karras et al. 2022, Eq. 5): `steps` values from σ_max down to σ_min, then σ_n = 0 appended."""
    if not isinstance(steps, (int, np.integer)) or steps < 2:
        raise InputError(f"sampler steps must be an integer >= 2, got {steps!r}")
    if not 0 < sigma_min < sigma_max:
        raise InputError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    i = np.arange(steps, dtype=np.float64)
    grid = (sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(grid, 0.0)


def heun_sample(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: np.ndarray,
    *,
    heun: bool = True,
    noise_alpha: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Integrate dx/dσ = (x − D(x; σ))/σ along `sigmas` (EDM Algorithm 2 without churn).

    Euler: d_i = (x_i − D(x_i; σ_i))/σ_i, x_{i+1} = x_i + (σ_{i+1} − σ_i)·d_i; Heun adds the
    trapezoidal correction when σ_{i+1} > 0 (NFE = 2n − 1). ``noise_alpha`` > 0 is PFGM++'s robustness
    probe (its repo's generate_alpha.py): x ← x + α·σ_i·ε before each step.
    """
    x = x.to(torch.float64)
    batch = x.shape[0]
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        if noise_alpha > 0:
            x = x + noise_alpha * sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        s = torch.full((batch,), float(sigma), dtype=x.dtype, device=x.device)
        d = (x - denoise(x, s).to(x.dtype)) / sigma
        x_next = x + (sigma_next - sigma) * d
        if heun and sigma_next > 0:
            s_next = torch.full((batch,), float(sigma_next), dtype=x.dtype, device=x.device)
            d_next = (x_next - denoise(x_next, s_next).to(x.dtype)) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        x = x_next
    return x


def _alpha_bars(alpha_bar: np.ndarray, steps: np.ndarray, final_alpha_bar: float) -> list[tuple[int, float, float]]:
    """(t, ᾱ_t, ᾱ_prev) per step; the previous timestep is the next one on the grid, not t − T//S
    (which is off a trailing grid when S does not divide T: 966 → 933 for S = 30), and after the
    last step ᾱ_prev = `final_alpha_bar` (1: land on clean x)."""
    steps = [int(t) for t in steps]
    prev = [alpha_bar[t] for t in steps[1:]] + [final_alpha_bar]
    return [(t, float(alpha_bar[t]), float(p)) for t, p in zip(steps, prev)]


def ddim_sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    alpha_bar: np.ndarray,
    steps: np.ndarray,
    prediction_type: str,
    *,
    final_alpha_bar: float = 1.0,
) -> torch.Tensor:
    """Deterministic DDIM (η = 0): x_prev = sqrt(ᾱ_prev)·x̂₀ + sqrt(1 − ᾱ_prev)·ε̂.

    `model(x_t, t)` returns the network output of type `prediction_type` for integer timesteps t (B,).
    """
    check_prediction(prediction_type, float(alpha_bar[int(steps[0])]))
    x = x.to(torch.float64)
    for t, ab, ab_prev in _alpha_bars(np.asarray(alpha_bar, dtype=np.float64), steps, final_alpha_bar):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = model(x, tt).to(x.dtype)
        x0 = to_sample(out, x, ab, prediction_type)
        eps = to_epsilon(out, x, ab, prediction_type)
        x = ab_prev**0.5 * x0 + (1.0 - ab_prev) ** 0.5 * eps
    return x


def ddpm_sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    alpha_bar: np.ndarray,
    steps: np.ndarray,
    prediction_type: str,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Ancestral sampling from q(x_s | x_t, x̂₀) for each step t → s (s the next grid timestep):
    with α_{t|s} = ᾱ_t/ᾱ_s and β_{t|s} = 1 − α_{t|s},
        mean = sqrt(ᾱ_s)·β_{t|s}/(1 − ᾱ_t)·x̂₀ + sqrt(α_{t|s})·(1 − ᾱ_s)/(1 − ᾱ_t)·x_t,
        var  = (1 − ᾱ_s)/(1 − ᾱ_t)·β_{t|s};
    the last step returns x̂₀ (ᾱ_s = 1, var = 0)."""
    check_prediction(prediction_type, float(alpha_bar[int(steps[0])]))
    x = x.to(torch.float64)
    for t, ab, ab_prev in _alpha_bars(np.asarray(alpha_bar, dtype=np.float64), steps, 1.0):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = to_sample(model(x, tt).to(x.dtype), x, ab, prediction_type)
        alpha_ts = ab / ab_prev
        beta_ts = 1.0 - alpha_ts
        mean = ab_prev**0.5 * beta_ts / (1.0 - ab) * x0 + alpha_ts**0.5 * (1.0 - ab_prev) / (1.0 - ab) * x
        var = (1.0 - ab_prev) / (1.0 - ab) * beta_ts
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) if var > 0 else 0.0
        x = mean + var**0.5 * noise
    return x
