"""What a diffusion network predicts (ε, x₀ or v) and the conversions between them (diffusers'
`DDPMScheduler.get_velocity` and `DDIMScheduler.step`), plus classifier-free guidance with Lin et
al. 2024's rescale (§3.4; diffusers `rescale_noise_cfg`).

With a = sqrt(ᾱ_t), b = sqrt(1 − ᾱ_t) and x_t = a·x₀ + b·ε:

    v  = a·ε − b·x₀                     (diffusers `get_velocity`)
    x₀ = a·x_t − b·v,   ε = a·v + b·x_t  (inverse: a² + b² = 1)
    x₀ = (x_t − b·ε) / a,  ε = (x_t − a·x₀) / b

At zero terminal SNR (ᾱ_T = 0, a = 0) ε-prediction is degenerate: x_T = ε is a trivial target and
x₀ = (x_t − b·ε)/a divides by zero. diffusers returns inf there (huggingface/diffusers#3851); we refuse the
combination up front (`check_prediction`).
"""

from __future__ import annotations

import torch

from workbench.errors import InputError

__all__ = [
    "PREDICTION_TYPES",
    "check_prediction",
    "classifier_free_guidance",
    "to_epsilon",
    "to_sample",
    "to_velocity",
    "velocity",
]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def check_prediction(prediction_type: str, terminal_alpha_bar: float) -> None:
    """Refuse an unknown prediction type and ε-prediction on a zero-terminal-SNR schedule."""
    if prediction_type not in PREDICTION_TYPES:
        raise InputError(f"unknown prediction type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")
    if prediction_type == "epsilon" and terminal_alpha_bar == 0.0:
        raise InputError(
            "epsilon prediction cannot be used with a zero-terminal-SNR schedule: at t = T "
            "x_T is pure noise, so x0 = (x_T - sqrt(1 - abar) eps) / sqrt(abar) divides by zero; "
            "use prediction_type v_prediction (or sample), or zero_terminal_snr: false"
        )


def _ab(alpha_bar: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a = sqrt(ᾱ), b = sqrt(1 − ᾱ), shaped (batch, 1, ...) to broadcast over a sample's dims."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=like.dtype, device=like.device)
    alpha_bar = alpha_bar.reshape(alpha_bar.shape + (1,) * (like.dim() - alpha_bar.dim()))
    return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()


def velocity(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The v target: v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x₀."""
    a, b = _ab(alpha_bar, x0)
    return a * eps - b * x0


def to_sample(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """x̂₀ from the network's output."""
    a, b = _ab(alpha_bar, x_t)
    if prediction_type == "sample":
        return output
    if prediction_type == "v_prediction":
        return a * x_t - b * output
    if prediction_type == "epsilon":
        return (x_t - b * output) / a
    raise InputError(f"unknown prediction type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")


def to_epsilon(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """ε̂ from the network's output."""
    a, b = _ab(alpha_bar, x_t)
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return a * output + b * x_t
    if prediction_type == "sample":
        return (x_t - a * output) / b
    raise InputError(f"unknown prediction type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")


def to_velocity(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """v̂ from the network's output (through x̂₀ and ε̂ unless it already is v)."""
    if prediction_type == "v_prediction":
        return output
    return velocity(
        to_sample(output, x_t, alpha_bar, prediction_type),
        to_epsilon(output, x_t, alpha_bar, prediction_type),
        alpha_bar,
    )


def classifier_free_guidance(
    negative: torch.Tensor, positive: torch.Tensor, scale: float, rescale: float = 0.0
) -> torch.Tensor:
    """x_cfg = x_neg + w(x_pos − x_neg), then Lin et al. 2024 §3.4's rescale (diffusers
    `rescale_noise_cfg`):

        x_resc = x_cfg · std(x_pos) / std(x_cfg)   (per sample, over its non-batch dims)
        out    = φ·x_resc + (1 − φ)·x_cfg
    """
    if not 0.0 <= rescale <= 1.0:
        raise InputError(f"guidance rescale phi must be in [0, 1], got {rescale}")
    guided = negative + scale * (positive - negative)
    if rescale == 0.0:
        return guided
    dims = tuple(range(1, positive.dim()))
    std_pos = positive.std(dim=dims, keepdim=True)
    std_cfg = guided.std(dim=dims, keepdim=True)
    return rescale * guided * (std_pos / std_cfg) + (1.0 - rescale) * guided
