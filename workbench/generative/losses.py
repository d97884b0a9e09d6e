"""EDM preconditioning and the two training losses (Karras et al. 2022, Table 1; PFGM++'s
`training/loss.py` in github.com/Newbeeer/pfgmpp; v-prediction as in diffusers).

PFGM++ / EDM (continuous σ):
    σ = exp(P_std·ξ + P_mean), ξ ~ N(0, 1)                    P_mean = −1.2, P_std = 1.2
    n ~ p_r(· | 0), r = σ√D   (Gaussian σ·z when D = ∞)       (pfgmpp.sample_kernel)
    L = λ(σ)·||D_θ(y + n; σ) − y||²,  λ(σ) = (σ² + σ_d²)/(σ·σ_d)²,  σ_d the data's std
    D_θ(x; σ) = c_skip·x + c_out·F_θ(c_in·x; c_noise),
    c_skip = σ_d²/(σ² + σ_d²), c_out = σσ_d/sqrt(σ² + σ_d²), c_in = 1/sqrt(σ² + σ_d²), c_noise = ln(σ)/4.
The network is conditioned on σ = r/√D, not r (as in the PFGM++ code), which is what lets EDM's settings carry over.

Discrete diffusion (Lin et al.): t ~ U{0..T−1}, x_t = sqrt(ᾱ_t)x₀ + sqrt(1 − ᾱ_t)ε, MSE to the target of
the prediction type (ε, x₀ or v); the network is conditioned on t.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench.generative import pfgmpp
from workbench.generative.prediction import check_prediction, velocity

__all__ = ["EDMPrecond", "diffusion_loss", "diffusion_noise", "pfgmpp_loss", "pfgmpp_noise", "timestep_condition"]

P_MEAN, P_STD, SIGMA_DATA = -1.2, 1.2, 0.5


class EDMPrecond(nn.Module):
    """Wraps any F_θ(x, c_noise, labels) into the denoiser D_θ(x; σ) of EDM (Karras et al. 2022, Table 1)."""

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net, self.sigma_data = net, sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        sd = self.sigma_data
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        s = sigma.reshape(-1, *[1] * (x.dim() - 1))
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1.0 / (s**2 + sd**2).sqrt()
        out = self.net((c_in * x).float(), sigma.log() / 4, labels)
        return (c_skip * x + c_out * out.to(x.dtype)).to(x.dtype)


def pfgmpp_noise(
    rng: np.random.Generator,
    batch: int,
    N: int,
    D: float,
    *,
    clip: float = 0.0,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
) -> tuple[np.ndarray, np.ndarray]:
    """(σ (B,), n (B, N)) for one training batch: σ = exp(P_std·ξ + P_mean), n ~ p_r(· | 0) with
    r = σ√D (D = inf: σ·z, EDM). Drawn in float64 from `rng`, σ first, for the whole global batch,
    so that ranks of a data-parallel run can each take their rows."""
    sigma = np.exp(p_std * rng.standard_normal(batch) + p_mean)
    return sigma, pfgmpp.sample_kernel(sigma, N, D, rng, clip=clip)


def pfgmpp_loss(
    precond: EDMPrecond, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the batch of λ(σ)·||D_θ(y + n; σ) − y||² (per-sample sums over dims), with σ and n
    from `pfgmpp_noise`; D = inf is EDM's loss exactly (Karras et al. 2022, Eq. 8)."""
    sigma = sigma.to(y.device, torch.float32)
    noise = noise.to(y.device, y.dtype).reshape(y.shape)
    sd = precond.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    denoised = precond(y + noise, sigma, labels)
    return (weight * ((denoised - y) ** 2).reshape(y.shape[0], -1).sum(1)).mean()


def timestep_condition(t: torch.Tensor, train_steps: int) -> torch.Tensor:
    """The scalar a discrete-time network is conditioned on: t / T in [0, 1)."""
    return t.float() / train_steps


def diffusion_noise(
    generator: torch.Generator, shape: tuple[int, ...], train_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t ~ U{0..T−1} per sample, ε ~ N(0, I) of `shape`) for one training batch (batch first)."""
    t = torch.randint(0, train_steps, (shape[0],), generator=generator)
    return t, torch.randn(shape, generator=generator)


def diffusion_loss(
    net: nn.Module,
    x0: torch.Tensor,
    alpha_bar: np.ndarray,
    prediction_type: str,
    t: torch.Tensor,
    eps: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error of net(x_t, t) against the target of `prediction_type`, with
    x_t = sqrt(ᾱ_t)·x₀ + sqrt(1 − ᾱ_t)·ε (Ho et al. 2020, Eq. 4; v: Salimans & Ho 2022, §4)."""
    check_prediction(prediction_type, float(alpha_bar[-1]))
    t, eps = t.to(x0.device), eps.to(x0)
    ab = torch.from_numpy(np.asarray(alpha_bar)).to(x0)[t]
    shape = (-1, *[1] * (x0.dim() - 1))
    x_t = ab.sqrt().reshape(shape) * x0 + (1 - ab).sqrt().reshape(shape) * eps
    target = {"epsilon": eps, "sample": x0}.get(prediction_type)
    if target is None:
        target = velocity(x0, eps, ab)
    out = net(x_t, timestep_condition(t, len(alpha_bar)), labels)
    return ((out - target) ** 2).mean()
