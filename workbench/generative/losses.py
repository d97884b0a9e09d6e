"""EDM preconditioning and the two training losses (diffusion.md §2.2-2.3 and §2.10).

PFGM++ / EDM (continuous σ):
    σ = exp(P_std·ξ + P_mean), ξ ~ N(0, 1)                    P_mean = −1.2, P_std = 1.2
    n ~ p_r(· | 0), r = σ√D   (Gaussian σ·z when D = ∞)       (pfgmpp.sample_kernel)
    L = λ(σ)·||D_θ(y + n; σ) − y||²,  λ(σ) = (σ² + σ_d²)/(σ·σ_d)²,  σ_d = 0.5
    D_θ(x; σ) = c_skip·x + c_out·F_θ(c_in·x; c_noise),
    c_skip = σ_d²/(σ² + σ_d²), c_out = σσ_d/sqrt(σ² + σ_d²), c_in = 1/sqrt(σ² + σ_d²), c_noise = ln(σ)/4.
The network is conditioned on σ, not r (pitfall 4), which is what lets EDM's settings carry over.

Discrete diffusion (Lin et al.): t ~ U{0..T−1}, x_t = sqrt(ᾱ_t)x₀ + sqrt(1 − ᾱ_t)ε, MSE to the target of
the prediction type (ε, x₀ or v); the network is conditioned on t.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workbench.generative import pfgmpp
from workbench.generative.prediction import check_prediction, velocity

__all__ = ["EDMPrecond", "diffusion_loss", "pfgmpp_loss", "timestep_condition"]

P_MEAN, P_STD, SIGMA_DATA = -1.2, 1.2, 0.5


class EDMPrecond(nn.Module):
    """Wraps any F_θ(x, c_noise, labels) into the denoiser D_θ(x; σ) of EDM (§2.3)."""

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


def pfgmpp_loss(precond: EDMPrecond, y: torch.Tensor, D: float, rng: np.random.Generator,
                labels: torch.Tensor | None = None, *, p_mean: float = P_MEAN, p_std: float = P_STD,
                clip: float = 0.0) -> torch.Tensor:
    """Mean over the batch of λ(σ)·||D_θ(y + n; σ) − y||² (per-sample sums over dims), n from the
    PFGM++ kernel with r = σ√D; D = inf is EDM's loss exactly. Draws come from `rng` (pitfall 2)."""
    batch = y.shape[0]
    sigma = np.exp(p_std * rng.standard_normal(batch) + p_mean)
    noise = pfgmpp.sample_kernel(sigma, int(np.prod(y.shape[1:])), D, rng, clip=clip)
    noise = torch.from_numpy(noise).to(y.device, y.dtype).reshape(y.shape)
    sigma_t = torch.from_numpy(sigma).to(y.device, torch.float32)
    sd = precond.sigma_data
    weight = (sigma_t**2 + sd**2) / (sigma_t * sd) ** 2
    denoised = precond(y + noise, sigma_t, labels)
    return (weight * ((denoised - y) ** 2).reshape(batch, -1).sum(1)).mean()


def timestep_condition(t: torch.Tensor, train_steps: int) -> torch.Tensor:
    """The scalar a discrete-time network is conditioned on: t / T in [0, 1)."""
    return t.float() / train_steps


def diffusion_loss(net: nn.Module, x0: torch.Tensor, alpha_bar: np.ndarray, prediction_type: str,
                   generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of net(x_t, t) against the target of `prediction_type` (§2.10)."""
    check_prediction(prediction_type, float(alpha_bar[-1]))
    batch = x0.shape[0]
    t = torch.randint(0, len(alpha_bar), (batch,), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0)
    ab = torch.from_numpy(np.asarray(alpha_bar)).to(x0)[t]
    shape = (-1, *[1] * (x0.dim() - 1))
    x_t = ab.sqrt().reshape(shape) * x0 + (1 - ab).sqrt().reshape(shape) * eps
    target = {"epsilon": eps, "sample": x0}.get(prediction_type)
    if target is None:
        target = velocity(x0, eps, ab)
    out = net(x_t, timestep_condition(t, len(alpha_bar)), labels)
    return ((out - target) ** 2).mean()
