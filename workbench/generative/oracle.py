"""Exact denoisers for a finite weighted point set (Bayes' rule on the kernel): samplers can be tested
with no training, and the brightness experiment has a Bayes-optimal reference.

PFGM++:   E[y | x, r] = Σ_k w_k y_k,  w_k ∝ π_k·(||x − y_k||² + r²)^{−(N+D)/2},  r = σ√D
D = ∞:    w_k ∝ π_k·exp(−||x − y_k||² / (2σ²))                                 (EDM)
DDPM:     x_t = a·y + b·ε ⇒ w_k ∝ π_k·exp(−||x_t − a·y_k||² / (2b²))

Weights are normalised in log space (the exponents run to the thousands and overflow otherwise), and squared
distances use ||x||² − 2x·y + ||y||² so a batch against the whole set is one matmul.
"""

from __future__ import annotations

import math

import torch

from workbench.errors import InputError
from workbench.generative.pfgmpp import check_D

__all__ = ["ddpm_posterior_mean", "pfgmpp_denoiser"]


def _squared_distances(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    d2 = (x * x).sum(1, keepdim=True) - 2.0 * x @ points.T + (points * points).sum(1)[None, :]
    return d2.clamp_min(0.0)


def _log_weights(weights: torch.Tensor | None, points: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)
    weights = torch.as_tensor(weights, dtype=points.dtype, device=points.device)
    if weights.shape != points.shape[:1] or torch.any(weights < 0) or weights.sum() <= 0:
        raise InputError("oracle weights must be non-negative, one per point, and not all zero")
    return torch.log(weights / weights.sum())


def _flat(points: torch.Tensor) -> torch.Tensor:
    points = torch.as_tensor(points, dtype=torch.float64)
    return points.reshape(points.shape[0], -1)


def pfgmpp_denoiser(points, D: float, weights=None, chunk: int = 1024):
    """D_oracle(x, σ) = E[y | x, r = σ√D] for the empirical law Σ_k π_k δ(y_k); x (B, ...), σ (B,)."""
    D = check_D(D)
    data = _flat(points)
    log_pi = _log_weights(weights, data)
    N = data.shape[1]

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1).to(data)
        sigma = torch.as_tensor(sigma, dtype=data.dtype, device=data.device).reshape(-1, 1)
        out = torch.empty_like(flat)
        for start in range(0, flat.shape[0], chunk):
            part = slice(start, start + chunk)
            d2 = _squared_distances(flat[part], data)
            s = sigma[part] if sigma.shape[0] > 1 else sigma
            if math.isinf(D):
                logits = -d2 / (2.0 * s**2)
            else:
                logits = -0.5 * (N + D) * torch.log(d2 + D * s**2)
            out[part] = torch.softmax(logits + log_pi, dim=1) @ data
        return out.reshape(shape).to(x.dtype)

    return denoise


def ddpm_posterior_mean(points, weights=None, chunk: int = 1024):
    """x̂₀(x_t, ᾱ_t) = E[x₀ | x_t] for x_t = sqrt(ᾱ)·x₀ + sqrt(1 − ᾱ)·ε and x₀ from the point set."""
    data = _flat(points)
    log_pi = _log_weights(weights, data)

    def posterior_mean(x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        shape = x_t.shape
        flat = x_t.reshape(shape[0], -1).to(data)
        alpha_bar = torch.as_tensor(alpha_bar, dtype=data.dtype, device=data.device).reshape(-1, 1)
        alpha_bar = alpha_bar.expand(flat.shape[0], 1)
        out = torch.empty_like(flat)
        for start in range(0, flat.shape[0], chunk):
            part = slice(start, start + chunk)
            a, var = alpha_bar[part].sqrt(), 1.0 - alpha_bar[part]
            if torch.all(var == 0):
                out[part] = flat[part] / a
                continue
            # ||x_t − a·y_k||²; at ᾱ = 0 (x_T pure noise) every weight is π_k: the prior mean.
            d2 = (
                (flat[part] * flat[part]).sum(1, keepdim=True)
                - 2.0 * a * (flat[part] @ data.T)
                + alpha_bar[part] * (data * data).sum(1)[None, :]
            )
            logits = -d2.clamp_min(0.0) / (2.0 * var)
            out[part] = torch.softmax(logits + log_pi, dim=1) @ data
        return out.reshape(shape).to(x_t.dtype)

    return posterior_mean
