"""Lin et al.'s brightness experiment: does a sampler reproduce the spread of per-image mean brightness?

A schedule with non-zero terminal SNR leaks each training image's mean brightness b into x_T
(Lin et al. 2024: with P pixels the mean of x_T carries b at SNR(T)·P·b²), but sampling starts
from pure noise, so samples regress towards medium brightness. Four arms, one fix at a time:

    eps_leading          SD scaled-linear schedule, ε-prediction, leading spacing   (the flawed baseline)
    eps_trailing         same, trailing spacing (starts at t = T−1)
    v_zero_snr_trailing  zero terminal SNR, v-prediction, trailing                 (all fixes)
    v_zero_snr_leading   zero terminal SNR, v-prediction, leading

`oracle_brightness` runs an arm with the exact posterior mean of the training set as the
"network" (no training): whatever is left is the schedule's and the spacing's doing, not the model's.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from workbench.generative.config import ARMS, Arm, get_arm
from workbench.generative.oracle import ddpm_posterior_mean
from workbench.generative.prediction import check_prediction, velocity
from workbench.generative.samplers import ddim_sample

__all__ = ["ARMS", "Arm", "brightness_metrics", "oracle_brightness"]


def brightness_metrics(samples: np.ndarray, data: np.ndarray) -> dict[str, float]:
    """Per-image mean brightness of samples vs data: spread ratio std(b_gen)/std(b_data) (1 = perfect),
    1-D Wasserstein-1 distance, KS statistic, and the tail mass P(|b| > 0.6) of each."""
    b_gen = np.asarray(samples).reshape(len(samples), -1).mean(1)
    b_data = np.asarray(data).reshape(len(data), -1).mean(1)
    return {
        "spread_ratio": float(b_gen.std() / b_data.std()),
        "w1": float(stats.wasserstein_distance(b_gen, b_data)),
        "ks": float(stats.ks_2samp(b_gen, b_data).statistic),
        "tail_generated": float(np.mean(np.abs(b_gen) > 0.6)),
        "tail_data": float(np.mean(np.abs(b_data) > 0.6)),
    }


def oracle_brightness(
    images: np.ndarray, arm: str | Arm, *, samples: int = 1000, sample_steps: int = 50, seed: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Deterministic DDIM from x_T ~ N(0, I) with the exact denoiser of `images` (no training); returns the
    samples and `brightness_metrics` against the images."""
    arm = get_arm(arm) if isinstance(arm, str) else arm
    alpha_bar = arm.alpha_bar()
    check_prediction(arm.prediction_type, float(alpha_bar[-1]))
    posterior_mean = ddpm_posterior_mean(torch.from_numpy(np.asarray(images, dtype=np.float64)))

    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # The Bayes-optimal network output of the arm's type, from the exact x̂₀ (see `prediction`).
        ab = torch.from_numpy(alpha_bar).to(x_t)[t]
        x0 = posterior_mean(x_t, ab)
        a, b = ab.sqrt().reshape(-1, *[1] * (x_t.dim() - 1)), (1 - ab).sqrt().reshape(-1, *[1] * (x_t.dim() - 1))
        eps = (x_t - a * x0) / b
        if arm.prediction_type == "epsilon":
            return eps
        if arm.prediction_type == "v_prediction":
            return velocity(x0, eps, ab)
        return x0

    generator = torch.Generator().manual_seed(seed)
    x_T = torch.randn((samples, *images.shape[1:]), generator=generator, dtype=torch.float64)
    out = ddim_sample(model, x_T, alpha_bar, arm.timesteps(sample_steps), arm.prediction_type).numpy()
    return out, brightness_metrics(out, images)
