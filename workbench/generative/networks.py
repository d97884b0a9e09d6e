"""Denoiser networks F_θ(x, c_noise[, label]) for vectors (MLP) and small images (UNet), plus weight EMA.

Both take a scalar noise condition per sample — EDM's c_noise = ln(σ)/4 (Karras et al. 2022, Table 1) or a
discrete timestep t — embedded with sinusoidal features, and an optional class label whose extra
index `num_classes` means "no label" (classifier-free guidance trains with labels dropped to it).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["EMA", "FULL_PRECISION", "MLPDenoiser", "UNetDenoiser", "make_network", "noise_embedding"]


# Module names of the noise/label conditioning (the MLP `cond` and each UNet block's `emb`
# projection), which post-training quantisation leaves at full precision, as the official PFGM++
# generate_quant.py leaves its `map_*` and `affine` layers.
FULL_PRECISION = frozenset({"cond", "emb"})


def noise_embedding(c_noise: torch.Tensor, channels: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of a scalar per sample (transformer positional encoding on a real number)."""
    half = channels // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c_noise.device, dtype=torch.float32) / half)
    angles = c_noise.float().reshape(-1, 1) * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class _Conditioning(nn.Module):
    """Noise (and label) embedding → a vector of `width` features."""

    def __init__(self, width: int, num_classes: int, scale: float):
        super().__init__()
        self.width, self.scale = width, scale
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.labels = nn.Embedding(num_classes + 1, width) if num_classes else None

    def forward(self, c_noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.mlp(noise_embedding(c_noise * self.scale, self.width))
        if self.labels is not None:
            if labels is None:  # unconditional call on a conditional net: the "no label" index
                labels = torch.full((emb.shape[0],), self.labels.num_embeddings - 1, device=emb.device)
            emb = emb + self.labels(labels)
        return emb


class MLPDenoiser(nn.Module):
    """Residual MLP: x (B, ...) with N = prod(...) features → same shape (images are flattened)."""

    def __init__(self, dim: int, width: int = 128, depth: int = 3, num_classes: int = 0, noise_scale: float = 250.0):
        super().__init__()
        self.cond = _Conditioning(width, num_classes, noise_scale)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)) for _ in range(depth)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.cond(c_noise, labels)
        h = self.inp(x.reshape(x.shape[0], -1)) + emb
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h).reshape(x.shape)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class UNetDenoiser(nn.Module):
    """A small two-level UNet for (B, C, H, W) images with H, W divisible by 4 (≈ 0.3 M parameters at
    base 32)."""

    def __init__(self, channels: int = 1, base: int = 32, num_classes: int = 0, noise_scale: float = 250.0):
        super().__init__()
        emb = 4 * base
        self.cond = _Conditioning(emb, num_classes, noise_scale)
        self.inp = nn.Conv2d(channels, base, 3, padding=1)
        self.down1, self.down2 = _ResBlock(base, base, emb), _ResBlock(base, 2 * base, emb)
        self.mid = _ResBlock(2 * base, 2 * base, emb)
        self.up2, self.up1 = _ResBlock(4 * base, base, emb), _ResBlock(2 * base, base, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, base), nn.SiLU(), nn.Conv2d(base, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.cond(c_noise, labels)
        h0 = self.down1(self.inp(x), emb)  # H
        h1 = self.down2(F.avg_pool2d(h0, 2), emb)  # H/2
        h = self.mid(F.avg_pool2d(h1, 2), emb)  # H/4
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), h1], 1), emb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), h0], 1), emb)
        return self.out(h)


class EMA(nn.Module):
    """Exponential moving average of a module's weights: θ_ema ← β·θ_ema + (1 − β)·θ, with β from a
    half-life in optimizer steps (EDM specifies it in images: half-life / batch size steps)."""

    def __init__(self, module: nn.Module, half_life_steps: float = 500.0):
        super().__init__()
        # Not put in eval mode: the nets have no dropout or batch norm, and Lightning warns about eval modules.
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.beta = 0.5 ** (1.0 / max(half_life_steps, 1e-8))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for ema, live in zip(self.module.parameters(), module.parameters()):
            ema.lerp_(live.detach(), 1.0 - self.beta)
        for ema, live in zip(self.module.buffers(), module.buffers()):
            ema.copy_(live)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def make_network(config, sample_shape: tuple[int, ...]) -> nn.Module:
    """The denoiser a `pfgmpp` / `diffusion` config names, for samples of `sample_shape`."""
    classes = 10 if config.class_conditional else 0
    if config.net == "mlp":
        return MLPDenoiser(math.prod(sample_shape), config.width, config.depth, classes)
    return UNetDenoiser(sample_shape[0], config.width, classes)
