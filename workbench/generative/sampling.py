"""Sampling from trained generative runs, and post-training weight quantisation.

`load_trained(run_dir)` rebuilds a finished `pfgmpp` or `diffusion` run's EMA network from its
config.json and model.pt; `sample_pfgmpp` / `sample_diffusion` draw from it with the samplers of
workbench.generative.samplers.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.config import from_dict
from workbench.errors import InputError
from workbench.generative import pfgmpp
from workbench.generative.config import DiffusionConfig, PFGMPPConfig
from workbench.generative.data import training_data
from workbench.generative.losses import EDMPrecond, timestep_condition
from workbench.generative.networks import FULL_PRECISION, make_network
from workbench.generative.prediction import classifier_free_guidance
from workbench.generative.samplers import ddim_sample, ddpm_sample, edm_sigmas, heun_sample

__all__ = ["Trained", "load_trained", "quantize", "sample_diffusion", "sample_pfgmpp"]


@dataclass
class Trained:
    config: Any  # PFGMPPConfig or DiffusionConfig
    model: nn.Module  # the EMA weights: EDMPrecond (pfgmpp) or the bare net (diffusion)
    data: np.ndarray  # the training set, for metrics
    labels: np.ndarray | None


def load_trained(run_dir: str | Path) -> Trained:
    """A completed run's config, EMA model and training data."""
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / "model.pt"
    if not config_path.is_file() or not weights_path.is_file():
        raise InputError(f"{run_dir}: not a finished pfgmpp/diffusion run (config.json and model.pt are needed)")
    raw = json.loads(config_path.read_text())
    model_raw = raw.get("model", raw)
    kind = raw.get("kind", "pfgmpp" if "D" in model_raw else "diffusion")
    config = from_dict(PFGMPPConfig if kind == "pfgmpp" else DiffusionConfig, model_raw, source=str(config_path))
    data, labels = training_data(config)
    net = make_network(config, tuple(data.shape[1:]))
    model = EDMPrecond(net, config.resolved_sigma_data(data)) if isinstance(config, PFGMPPConfig) else net
    state = torch.load(weights_path, weights_only=True, map_location="cpu")
    ema = {k[len("ema.module.") :]: v for k, v in state.items() if k.startswith("ema.module.")}
    model.load_state_dict(ema)
    return Trained(config, model.eval().requires_grad_(False), data, labels)


def quantize(model: nn.Module, bits: int) -> nn.Module:
    """A copy whose Linear/Conv/Embedding weights are quantised to `bits` per tensor and dequantised,
    as generate_quant.py of github.com/Newbeeer/pfgmpp does: scale = (max − min)/(2^b − 1), an integer
    zero point zp = ⌊clamp(−min/scale, 0, 2^b − 1)⌋, q = round(clamp(zp + w/scale, 0, 2^b − 1)),
    ŵ = scale·(q − zp), so 0 is exactly representable. Like the reference, which skips its noise and
    label mapping layers (`map_*`) and each block's embedding projection (`affine`), the noise/label
    conditioning (`networks.FULL_PRECISION`), norms and biases stay at full precision."""
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
        raise InputError(f"quantisation bits must be an integer in 2..16, got {bits!r}")
    out = copy.deepcopy(model)
    levels = 2**bits - 1
    with torch.no_grad():
        for name, module in out.named_modules():
            if not isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
                continue
            if FULL_PRECISION.intersection(name.split(".")):
                continue
            w = module.weight
            lo, hi = w.min(), w.max()
            scale = (hi - lo) / levels if hi > lo else torch.ones_like(hi)
            zero = torch.floor(torch.clamp(-lo / scale, 0, levels))
            q = torch.round(torch.clamp(zero + w / scale, 0, levels))
            w.copy_(scale * (q - zero))
    return out


def sample_pfgmpp(
    model: nn.Module,
    config: PFGMPPConfig,
    count: int,
    shape: tuple[int, ...],
    *,
    steps: int = 18,
    heun: bool = True,
    noise_alpha: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Prior at r_max = σ_max√D (`pfgmpp.prior`), then Heun (or Euler) over EDM's σ grid."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(pfgmpp.prior(count, int(np.prod(shape)), config.D, config.sigma_max, rng)).reshape(
        count, *shape
    )
    generator = torch.Generator().manual_seed(seed)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.float(), sigma.float()).double()

    sigmas = edm_sigmas(steps, config.sigma_min, config.sigma_max)
    return heun_sample(denoise, x, sigmas, heun=heun, noise_alpha=noise_alpha, generator=generator).numpy()


def sample_diffusion(
    net: nn.Module,
    config: DiffusionConfig,
    count: int,
    shape: tuple[int, ...],
    *,
    steps: int = 50,
    spacing: str = "trailing",
    sampler: str = "ddim",
    seed: int = 0,
    labels: np.ndarray | None = None,
    guidance: float = 1.0,
    guidance_rescale: float = 0.0,
    steps_offset: int | None = None,
) -> np.ndarray:
    """DDIM (deterministic) or DDPM (ancestral) from x_T ~ N(0, I) at the spacing's timesteps; with
    `labels` and guidance ≠ 1, classifier-free guidance with rescale φ (Lin et al. 2024, §3.4) on
    the output."""
    from workbench.generative import schedules

    alpha_bar = config.alpha_bar()
    offset = (1 if spacing == "leading" else 0) if steps_offset is None else steps_offset
    timesteps = schedules.timesteps(spacing, config.train_timesteps, steps, offset)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((count, *shape), generator=generator, dtype=torch.float64)
    label_t = None if labels is None else torch.as_tensor(labels, dtype=torch.long)

    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = timestep_condition(t, config.train_timesteps)
        with torch.no_grad():
            if label_t is None:
                return net(x_t.float(), c).double()
            positive = net(x_t.float(), c, label_t).double()
            if guidance == 1.0:
                return positive
            negative = net(x_t.float(), c, torch.full_like(label_t, 10)).double()
            return classifier_free_guidance(negative, positive, guidance, guidance_rescale)

    if sampler == "ddim":
        return ddim_sample(model, x, alpha_bar, timesteps, config.prediction_type).numpy()
    if sampler == "ddpm":
        return ddpm_sample(model, x, alpha_bar, timesteps, config.prediction_type, generator=generator).numpy()
    raise InputError(f"unknown sampler {sampler!r}; choose ddim or ddpm")
