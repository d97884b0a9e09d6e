"""The `pfgmpp` and `diffusion` trainables: generative models trained through workbench.train.

    kind: pfgmpp      # EDM-preconditioned denoiser on PFGM++ noise with augmentation dimension D (inf = EDM)
    kind: diffusion   # discrete-time DDPM-style model with a beta schedule, prediction type, optional CFG

Batches and noise for step k come from generators seeded by (TrainConfig.seed, k), so a resumed run
sees what an uninterrupted one would. The EMA copy of the weights (`ema.module.*` in model.pt) is
what sampling uses; `load_sampler` rebuilds it from a finished run.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from workbench.config import bounds
from workbench.errors import ConfigError
from workbench.train import register_trainable

__all__ = ["DiffusionConfig", "PFGMPPConfig", "load_data", "make_network"]


@dataclass(frozen=True)
class _DataAndNet:
    # data (workbench.generative.data)
    data: Literal["mixture2d", "digits", "brightness", "images"] = "mixture2d"
    data_path: str = ""  # for data: images (a folder of PNG/JPEG or a .npy array)
    n_data: int = field(default=2000, metadata=bounds(ge=2))  # mixture2d / brightness set size
    image_size: int = field(default=8, metadata=bounds(ge=4))  # digits (multiple of 8) / brightness
    data_seed: int = 0
    # network (workbench.generative.networks)
    net: Literal["mlp", "unet"] = "mlp"
    width: int = field(default=128, metadata=bounds(ge=8))  # mlp width / unet base channels
    depth: int = field(default=3, metadata=bounds(ge=1))  # mlp residual blocks
    class_conditional: bool = False  # digits labels; label_dropout of them train the unconditional branch
    label_dropout: float = field(default=0.1, metadata=bounds(ge=0, le=1))
    # optimisation
    batch_size: int = field(default=128, metadata=bounds(ge=1))
    lr: float = field(default=2e-3, metadata=bounds(gt=0))
    warmup_steps: int = field(default=50, metadata=bounds(ge=0))
    ema_half_life: float = field(default=100.0, metadata=bounds(gt=0))  # in optimizer steps
    grad_clip: float = field(default=1.0, metadata=bounds(ge=0))

    def _check_data(self) -> None:
        if self.data == "images" and not self.data_path:
            raise ConfigError("data = 'images' needs data_path (a folder of images or a .npy array)")
        if self.class_conditional and self.data != "digits":
            raise ConfigError("class_conditional needs data: digits (the only labelled set)")
        if self.data == "digits" and self.image_size % 8:
            raise ConfigError(f"image_size = {self.image_size}: digits are upsampled by whole factors of 8")
        if self.net == "unet" and self.data == "mixture2d":
            raise ConfigError("net = 'unet' needs image data; use net: mlp for mixture2d")
        if self.net == "unet" and self.image_size % 4:
            raise ConfigError(f"image_size = {self.image_size} must be divisible by 4 for the UNet")


@dataclass(frozen=True)
class PFGMPPConfig(_DataAndNet):
    """PFGM++ with augmentation dimension D (diffusion.md §2.2); D = inf (YAML `.inf`) is EDM."""

    D: float = field(default=128.0, metadata=bounds(gt=0))
    kernel_clip: float = field(default=0.0, metadata=bounds(ge=0, lt=0.5))  # the image code's 1e-3; off (pitfall 1)
    sigma_max: float = field(default=80.0, metadata=bounds(gt=0))
    sigma_min: float = field(default=0.002, metadata=bounds(gt=0))

    def __post_init__(self):
        self._check_data()
        if not self.D > 0:
            raise ConfigError(f"D = {self.D} must be > 0 (D = .inf is EDM)")


@dataclass(frozen=True)
class DiffusionConfig(_DataAndNet):
    """Discrete-time diffusion with Lin et al.'s options (diffusion.md §2.9-2.12)."""

    betas: Literal["linear", "scaled_linear"] = "scaled_linear"
    beta_start: float = field(default=0.00085, metadata=bounds(gt=0, lt=1))
    beta_end: float = field(default=0.012, metadata=bounds(gt=0, lt=1))
    train_timesteps: int = field(default=1000, metadata=bounds(ge=2))
    zero_terminal_snr: bool = False
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon"

    def __post_init__(self):
        self._check_data()
        if self.zero_terminal_snr and self.prediction_type == "epsilon":
            raise ConfigError("prediction_type 'epsilon' cannot be used with zero_terminal_snr: true (at t = T the "
                              "noise is the input and x0 is undefined); use v_prediction or sample")

    def alpha_bar(self) -> np.ndarray:
        from workbench.generative import schedules

        betas = schedules.make_betas(self.betas, self.train_timesteps, self.beta_start, self.beta_end)
        if self.zero_terminal_snr:
            betas = schedules.rescale_zero_terminal_snr(betas)
        return schedules.alphas_cumprod(betas)


def load_data(config: _DataAndNet) -> tuple[np.ndarray, np.ndarray | None]:
    """(data float32 (n, ...), labels or None) for a config."""
    from workbench.generative import data

    rng = np.random.default_rng(config.data_seed)
    if config.data == "mixture2d":
        points, _ = data.mixture_2d(config.n_data, rng)
        return points.astype(np.float32), None
    if config.data == "digits":
        images, labels = data.digits(config.image_size)
        return images, labels
    if config.data == "brightness":
        return data.brightness_images(config.n_data, config.image_size, rng), None
    return data.load_images(config.data_path), None


def make_network(config: _DataAndNet, sample_shape: tuple[int, ...]):
    from workbench.generative.networks import MLPDenoiser, UNetDenoiser

    classes = 10 if config.class_conditional else 0
    if config.net == "mlp":
        return MLPDenoiser(int(np.prod(sample_shape)), config.width, config.depth, classes)
    return UNetDenoiser(sample_shape[0], config.width, classes)


def preflight_generative(config: _DataAndNet) -> None:
    """A user image folder/array that is missing or inconsistent fails before submission."""
    if config.data == "images":
        load_data(config)


def build_pfgmpp(config: PFGMPPConfig, seed: int):
    return _module_class()(config, seed)


def build_diffusion(config: DiffusionConfig, seed: int):
    return _module_class()(config, seed)


@functools.lru_cache(maxsize=None)
def _module_class():
    import lightning.pytorch as pl
    import torch

    from workbench.generative.losses import EDMPrecond, diffusion_loss, pfgmpp_loss
    from workbench.generative.networks import EMA

    class StepBatches(torch.utils.data.IterableDataset):
        def __init__(self, size: int, batch: int, seed: int, start: int):
            super().__init__()
            self.size, self.batch, self.seed, self.start = size, batch, seed, start

        def __iter__(self):
            step = self.start
            while True:
                rng = np.random.default_rng([self.seed, step])
                yield torch.from_numpy(rng.integers(0, self.size, self.batch)), torch.tensor(step)
                step += 1

    class Generative(pl.LightningModule):
        def __init__(self, config, seed: int) -> None:
            super().__init__()
            self.config, self.seed = config, seed
            data, labels = load_data(config)
            self.register_buffer("data", torch.from_numpy(data), persistent=False)
            self.register_buffer("labels", None if labels is None else torch.from_numpy(labels), persistent=False)
            self.sample_shape = tuple(data.shape[1:])
            net = make_network(config, self.sample_shape)
            self.model = EDMPrecond(net) if isinstance(config, PFGMPPConfig) else net
            self.ema = EMA(self.model, config.ema_half_life)

        def train_dataloader(self):
            batches = StepBatches(len(self.data), self.config.batch_size, self.seed, int(self.trainer.global_step))
            return torch.utils.data.DataLoader(batches, batch_size=None)

        def _labels(self, rows, rng: np.random.Generator):
            if not self.config.class_conditional:
                return None
            labels = self.labels[rows].clone()
            drop = torch.from_numpy(rng.random(len(rows)) < self.config.label_dropout).to(labels.device)
            return torch.where(drop, torch.full_like(labels, 10), labels)  # 10 = "no label" (CFG)

        def training_step(self, batch, batch_idx):
            rows, step = batch
            rng = np.random.default_rng([self.seed, int(step), 1])
            x = self.data[rows]
            labels = self._labels(rows, rng)
            if isinstance(self.config, PFGMPPConfig):
                return pfgmpp_loss(self.model, x, self.config.D, rng, labels, clip=self.config.kernel_clip)
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            return diffusion_loss(self.model, x, self.config.alpha_bar(), self.config.prediction_type,
                                  generator, labels)

        def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
            self.ema.update(self.model)

        def on_before_optimizer_step(self, optimizer) -> None:
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)

        def configure_optimizers(self):
            optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
            warmup = max(self.config.warmup_steps, 1)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

        def extra_metrics(self, ds):
            ds["params"] = ((), np.int64(sum(p.numel() for p in self.model.parameters())))
            ds["D"] = ((), float(getattr(self.config, "D", math.nan)))
            return ds

    return Generative


register_trainable("pfgmpp", PFGMPPConfig, build_pfgmpp,
                   "PFGM++ (EDM-preconditioned MLP/UNet) at augmentation dimension D; D = inf is EDM",
                   preflight=preflight_generative)
register_trainable("diffusion", DiffusionConfig, build_diffusion,
                   "discrete-time diffusion with beta schedule, zero terminal SNR and ε/x0/v prediction",
                   preflight=preflight_generative)
