"""The configs of the `pfgmpp` and `diffusion` model kinds; light to import (no torch).

    kind: pfgmpp      # EDM-preconditioned denoiser on PFGM++ noise with augmentation dimension D (inf = EDM)
    kind: diffusion   # discrete-time DDPM-style model with a beta schedule, prediction type, optional CFG

Both train `workbench.generative.module.Generative`; the EMA copy of the weights (`ema.module.*`
in model.pt) is what sampling uses (`workbench.generative.sampling.load_trained`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from workbench.config import bounds
from workbench.errors import ConfigError
from workbench.generative import schedules
from workbench.registry import Trainable

__all__ = ["DIFFUSION", "PFGMPP", "DataAndNet", "DiffusionConfig", "PFGMPPConfig", "preflight_generative"]


@dataclass(frozen=True)
class DataAndNet:
    """What both kinds share: the training data, the denoiser network and the optimiser."""

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
class PFGMPPConfig(DataAndNet):
    """PFGM++ (Xu et al. 2023) with augmentation dimension D; D = inf (YAML `.inf`) is EDM."""

    D: float = field(default=128.0, metadata=bounds(gt=0))
    kernel_clip: float = field(
        default=0.0, metadata=bounds(ge=0, lt=0.5)
    )  # the official image code clips the Beta draw at 1e-3; off: it distorts the kernel on low-dimensional data
    sigma_max: float = field(default=80.0, metadata=bounds(gt=0))
    sigma_min: float = field(default=0.002, metadata=bounds(gt=0))

    def __post_init__(self):
        self._check_data()
        if not self.D > 0:
            raise ConfigError(f"D = {self.D} must be > 0 (D = .inf is EDM)")


@dataclass(frozen=True)
class DiffusionConfig(DataAndNet):
    """Discrete-time diffusion with the options of Lin et al. 2024 (zero terminal SNR, v-prediction)."""

    betas: Literal["linear", "scaled_linear"] = "scaled_linear"
    beta_start: float = field(default=0.00085, metadata=bounds(gt=0, lt=1))
    beta_end: float = field(default=0.012, metadata=bounds(gt=0, lt=1))
    train_timesteps: int = field(default=1000, metadata=bounds(ge=2))
    zero_terminal_snr: bool = False
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon"

    def __post_init__(self):
        self._check_data()
        if self.zero_terminal_snr and self.prediction_type == "epsilon":
            raise ConfigError(
                "prediction_type 'epsilon' cannot be used with zero_terminal_snr: true (at t = T the "
                "noise is the input and x0 is undefined); use v_prediction or sample"
            )

    def alpha_bar(self) -> np.ndarray:
        """ᾱ_t of the training schedule (rescaled to zero terminal SNR when asked)."""
        betas = schedules.make_betas(self.betas, self.train_timesteps, self.beta_start, self.beta_end)
        if self.zero_terminal_snr:
            betas = schedules.rescale_zero_terminal_snr(betas)
        return schedules.alphas_cumprod(betas)


def preflight_generative(config: DataAndNet) -> None:
    """A user image folder/array that is missing or inconsistent fails before submission."""
    if config.data == "images":
        from workbench.generative.data import training_data  # reads the user's images

        training_data(config)


PFGMPP = Trainable(
    "pfgmpp",
    PFGMPPConfig,
    "workbench.generative.module:Generative",
    "PFGM++ (EDM-preconditioned MLP/UNet) at augmentation dimension D; D = inf is EDM",
    preflight=preflight_generative,
)
DIFFUSION = Trainable(
    "diffusion",
    DiffusionConfig,
    "workbench.generative.module:Generative",
    "discrete-time diffusion with beta schedule, zero terminal SNR and ε/x0/v prediction",
    preflight=preflight_generative,
)
