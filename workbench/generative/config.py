"""The configs of the `pfgmpp` and `diffusion` model kinds; light to import (no torch).

    kind: pfgmpp      # EDM-preconditioned denoiser on PFGM++ noise with augmentation dimension D (inf = EDM)
    kind: diffusion   # discrete-time DDPM-style model with a beta schedule, prediction type, optional CFG

Both train `workbench.generative.module.Generative`; the EMA copy of the weights (`ema.module.*`
in model.pt) is what sampling uses (`workbench.generative.sampling.load_trained`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from workbench.config import bounds
from workbench.errors import ConfigError, InputError
from workbench.generative import schedules
from workbench.jobspec import JobSpec
from workbench.registry import Trainable
from workbench.train import TrainConfig

__all__ = [
    "ARMS",
    "DIFFUSION",
    "PFGMPP",
    "Arm",
    "BrightnessConfig",
    "DataAndNet",
    "DiffusionConfig",
    "PFGMPPConfig",
    "RobustnessConfig",
    "get_arm",
    "preflight_generative",
]


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

    D: float = 128.0  # >= 2 (the official code's aug_dim range); .inf is EDM
    kernel_clip: float = field(
        default=0.0, metadata=bounds(ge=0, lt=0.5)
    )  # the official image code clips the Beta draw at 1e-3; off: it distorts the kernel on low-dimensional data
    sigma_max: float = field(default=80.0, metadata=bounds(gt=0))
    sigma_min: float = field(default=0.002, metadata=bounds(gt=0))
    # EDM's σ_data (Karras et al. 2022, Table 1); 0: the standard deviation of the training data
    sigma_data: float = field(default=0.0, metadata=bounds(ge=0))

    def __post_init__(self):
        self._check_data()
        _check_D(self.D)

    def resolved_sigma_data(self, data: np.ndarray) -> float:
        """σ_data for preconditioning and the loss weight: the configured value, or the standard
        deviation of `data` over all its values when the config says 0."""
        if self.sigma_data > 0:
            return float(self.sigma_data)
        std = float(np.std(np.asarray(data, dtype=np.float64)))
        if not (math.isfinite(std) and std > 0):
            raise ConfigError(f"the training data have standard deviation {std}; set sigma_data > 0 in the config")
        return std


def _check_D(D: float) -> None:
    # The σ ↔ r alignment r = σ√D rests on E||n||² = Nσ²D/(D − 2), infinite for D <= 2; the official
    # code (github.com/Newbeeer/pfgmpp, train.py --aug_dim) accepts D >= 2 only. PFGM (D = 1) is a
    # different method with its own prior and sampler.
    if not D >= 2:
        raise ConfigError(
            f"D = {D:g}: PFGM++ needs an augmentation dimension D >= 2 (D = .inf is EDM); "
            "D = 1 is PFGM, a different method with its own prior and sampler"
        )


@dataclass(frozen=True)
class DiffusionConfig(DataAndNet):
    """Discrete-time diffusion with the options of Lin et al. 2024 (zero terminal SNR, v-prediction)."""

    betas: Literal["linear", "scaled_linear"] = "scaled_linear"
    beta_start: float = field(default=0.00085, metadata=bounds(gt=0, lt=1))
    beta_end: float = field(default=0.012, metadata=bounds(gt=0, lt=1))
    train_timesteps: int = field(default=1000, metadata=bounds(ge=2, le=schedules.MAX_TRAIN_TIMESTEPS))
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


# --------------------------------------------------------------------------------------------
# The brightness arms and the two experiments (workbench/generative/experiments.py runs them)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    zero_terminal_snr: bool
    prediction_type: str
    spacing: str

    def alpha_bar(self, train_steps: int = 1000) -> np.ndarray:
        betas = schedules.make_betas("scaled_linear", train_steps, 0.00085, 0.012)
        if self.zero_terminal_snr:
            betas = schedules.rescale_zero_terminal_snr(betas)
        return schedules.alphas_cumprod(betas)

    def timesteps(self, sample_steps: int, train_steps: int = 1000) -> np.ndarray:
        # steps_offset 1 for leading, as in the Stable Diffusion scheduler configs
        return schedules.timesteps(
            self.spacing, train_steps, sample_steps, steps_offset=1 if self.spacing == "leading" else 0
        )


ARMS = {
    "eps_leading": Arm(False, "epsilon", "leading"),
    "eps_trailing": Arm(False, "epsilon", "trailing"),
    "v_zero_snr_trailing": Arm(True, "v_prediction", "trailing"),
    "v_zero_snr_leading": Arm(True, "v_prediction", "leading"),
}


def get_arm(name: str) -> Arm:
    try:
        return ARMS[name]
    except KeyError:
        raise InputError(f"unknown brightness arm {name!r}; choose one of {', '.join(ARMS)}") from None


@dataclass(frozen=True)
class RobustnessConfig:
    experiment: str = "pfgmpp_robustness"
    root: str = "runs"
    model: PFGMPPConfig = PFGMPPConfig()
    train: TrainConfig = TrainConfig(max_steps=10_000, checkpoint_every=2_000)
    # The official probes' settings (github.com/Newbeeer/pfgmpp: generate_alpha.py, generate_steps.py,
    # generate_quant.py): D values, noise α, Heun steps (NFE = 2·steps − 1: 35 down to 9), weight bits.
    D: tuple[float, ...] = (64.0, 128.0, 2048.0, math.inf)
    seeds: int = field(default=5, metadata=bounds(ge=1))
    alphas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    steps: tuple[int, ...] = (18, 12, 8, 6, 5)
    bits: tuple[int, ...] = (8, 6, 4)
    samples: int = field(default=1000, metadata=bounds(ge=10))
    heun_steps: int = field(default=18, metadata=bounds(ge=2))
    job: JobSpec = field(default_factory=lambda: JobSpec(name="pfgmpp_robustness"))

    def __post_init__(self):
        if not self.D:
            raise ConfigError("D = []: list at least one augmentation dimension (use .inf for EDM)")
        for D in self.D:
            _check_D(D)
        if any(a < 0 for a in self.alphas):
            raise ConfigError(f"alphas = {list(self.alphas)} must be >= 0")
        if any(s < 2 for s in self.steps):
            raise ConfigError(f"steps = {list(self.steps)}: Heun needs at least 2 steps")
        if any(not 2 <= b <= 16 for b in self.bits):
            raise ConfigError(f"bits = {list(self.bits)} must be in 2..16")


@dataclass(frozen=True)
class BrightnessConfig:
    experiment: str = "brightness"
    root: str = "runs"
    model: DiffusionConfig = DiffusionConfig(
        data="brightness", image_size=16, n_data=2000, net="unet", width=32, lr=1e-3
    )
    train: TrainConfig = TrainConfig(max_steps=3000, checkpoint_every=500)
    arms: tuple[str, ...] = ("eps_leading", "eps_trailing", "v_zero_snr_trailing", "v_zero_snr_leading")
    seeds: int = field(default=3, metadata=bounds(ge=1))
    samples: int = field(default=1000, metadata=bounds(ge=10))
    sample_steps: int = field(default=50, metadata=bounds(ge=1))
    job: JobSpec = field(default_factory=lambda: JobSpec(name="brightness"))

    def __post_init__(self):
        for arm in self.arms:
            get_arm(arm)
