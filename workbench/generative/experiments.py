"""The two generative experiments of issue 6, as one job-array member per (setting, seed) plus an assembly step.

robustness (PFGM++, diffusion.md §3.2 and §7.8): for each D and seed, train a PFGM++ model, then sample
  under (a) noise injected before each Heun step, x ← x + α·σ_i·ε; (b) fewer Heun steps; (c) min-max
  weight quantisation; score each against the data (sliced Wasserstein and MMD², on classifier
  features for images). Claim tested: smaller D degrades less.
brightness (Lin et al., §6.4 and §7.14): for each arm (`brightness.ARMS`) and seed, train a diffusion
  model on images whose mean brightness spans [−0.8, 0.8], sample with DDIM, and compare the per-image
  brightness distribution of samples and data (W1, spread ratio).

`*_member` functions are what a job runs (module-level, cheap to import); `assemble_*` turns their
returned dicts into one xarray Dataset; `plot_*` draws means with 95 % t-intervals over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from workbench.config import bounds
from workbench.errors import ConfigError
from workbench.generative.trainable import DiffusionConfig, PFGMPPConfig
from workbench.train import TrainConfig

__all__ = ["BrightnessConfig", "RobustnessConfig", "assemble_brightness", "assemble_robustness",
           "brightness_groups", "brightness_member", "plot_brightness", "plot_robustness", "robustness_member", "save_grid",
           "t_interval"]


@dataclass(frozen=True)
class RobustnessConfig:
    experiment: str = "pfgmpp_robustness"
    root: str = "runs"
    model: PFGMPPConfig = PFGMPPConfig()
    train: TrainConfig = TrainConfig(max_steps=1500, checkpoint_every=500)
    D: tuple[float, ...] = (1.0, 8.0, 64.0, 2048.0, math.inf)
    seeds: int = field(default=3, metadata=bounds(ge=1))
    alphas: tuple[float, ...] = (0.0, 0.1, 0.2)
    steps: tuple[int, ...] = (4, 6, 8, 12, 18)
    bits: tuple[int, ...] = (4, 5, 6, 8)
    samples: int = field(default=1000, metadata=bounds(ge=10))
    heun_steps: int = field(default=18, metadata=bounds(ge=2))
    job: dict = field(default_factory=dict)  # a jobs.submit.JobSpec mapping (model code does not import jobs/)

    def __post_init__(self):
        if not self.D or any(not d > 0 for d in self.D):
            raise ConfigError(f"D = {list(self.D)}: every D must be > 0 (use .inf for EDM)")
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
    model: DiffusionConfig = DiffusionConfig(data="brightness", image_size=16, n_data=2000, net="unet", width=32,
                                             lr=1e-3)
    train: TrainConfig = TrainConfig(max_steps=3000, checkpoint_every=500)
    arms: tuple[str, ...] = ("eps_leading", "eps_trailing", "v_zero_snr_trailing", "v_zero_snr_leading")
    seeds: int = field(default=3, metadata=bounds(ge=1))
    samples: int = field(default=1000, metadata=bounds(ge=10))
    sample_steps: int = field(default=50, metadata=bounds(ge=1))
    job: dict = field(default_factory=dict)  # a jobs.submit.JobSpec mapping (model code does not import jobs/)

    def __post_init__(self):
        from workbench.generative.brightness import get_arm

        for arm in self.arms:
            get_arm(arm)


def _score(samples: np.ndarray, data: np.ndarray, images: bool) -> tuple[float, float]:
    from workbench.generative.features import image_features
    from workbench.generative.metrics import mmd2, sliced_wasserstein

    if images:
        samples, data = image_features(np.clip(samples, -1, 1)), image_features(data)
    return sliced_wasserstein(samples, data), mmd2(samples, data)


@dataclass(frozen=True)
class _RunConfig:
    """What a member's run directory records in config.json (the same keys as a job config's)."""

    kind: str
    model: Any
    train: TrainConfig


def _train(model_config, train_config: TrainConfig, root: str, experiment: str, run_id: str, kind: str):
    from workbench.store import create_run_dir
    from workbench.train import train

    run = create_run_dir(root, experiment, run_id, _RunConfig(kind, model_config, train_config))
    if not (run.path / "model.pt").is_file():
        train(model_config, train_config, run, kind=kind)
    return run


def robustness_member(config: RobustnessConfig, D: float, seed: int) -> dict[str, Any]:
    """Train PFGM++ at D (seed), then score it under each perturbation (one job-array member)."""
    from workbench.generative.sampling import load_trained, quantize, sample_pfgmpp

    model_config = replace(config.model, D=float(D))
    train_config = replace(config.train, seed=int(seed))
    run_id = f"D{'inf' if math.isinf(D) else f'{D:g}'}-seed{seed}"
    run = _train(model_config, train_config, config.root, config.experiment, run_id, "pfgmpp")
    trained = load_trained(run.path)
    shape = tuple(trained.data.shape[1:])
    images = len(shape) == 3
    reference = trained.data[np.random.default_rng(seed).permutation(len(trained.data))[: config.samples]]

    grid: list = []

    def score(model, **kwargs) -> tuple[float, float]:
        samples = sample_pfgmpp(model, model_config, config.samples, shape, seed=1000 + seed, **kwargs)
        if not grid and images:  # the first (unperturbed) setting's samples, for the PNG grid
            grid.append(np.asarray(samples[:16], dtype=np.float32).tolist())
        return _score(samples, reference, images)

    out: dict[str, Any] = {"D": float(D), "seed": int(seed), "run": str(run.path)}
    out["alpha"] = [score(trained.model, steps=config.heun_steps, noise_alpha=a) for a in config.alphas]
    out["steps"] = [score(trained.model, steps=s) for s in config.steps]
    out["bits"] = [score(quantize(trained.model, b), steps=config.heun_steps) for b in config.bits]
    out["grid"] = grid[0] if grid else None
    return out


def assemble_robustness(config: RobustnessConfig, members: list[dict[str, Any]]):
    """Members → Dataset with dims (D, seed, alpha | steps | bits), variables swd_* and mmd_*."""
    import xarray as xr

    Ds, seeds = list(config.D), list(range(config.seeds))
    coords = {"D": np.asarray(Ds, dtype=float), "seed": seeds, "alpha": list(config.alphas),
              "steps": list(config.steps), "bits": list(config.bits)}
    ds = xr.Dataset(coords=coords)
    for probe in ("alpha", "steps", "bits"):
        values = np.full((len(Ds), len(seeds), len(coords[probe]), 2), np.nan)
        for m in members:
            values[Ds.index(m["D"]), seeds.index(m["seed"])] = np.asarray(m[probe])
        ds[f"swd_{probe}"] = (("D", "seed", probe), values[..., 0])
        ds[f"mmd_{probe}"] = (("D", "seed", probe), values[..., 1])
    ds.attrs.update(experiment=config.experiment, data=config.model.data, train_steps=config.train.max_steps,
                    samples=config.samples, heun_steps=config.heun_steps,
                    description="sliced W1 / MMD² of PFGM++ samples vs data under perturbations (issue 6)")
    return ds


def brightness_groups(config: BrightnessConfig) -> list[tuple[tuple[str, ...], int]]:
    """Job-array items: arms that share a schedule and prediction type share one trained model (only
    their spacing differs), so they form one member per seed and never race for a run directory."""
    from workbench.generative.brightness import get_arm

    groups: dict[tuple[bool, str], list[str]] = {}
    for arm in config.arms:
        spec = get_arm(arm)
        groups.setdefault((spec.zero_terminal_snr, spec.prediction_type), []).append(arm)
    return [(tuple(arms), seed) for seed in range(config.seeds) for arms in groups.values()]


def brightness_member(config: BrightnessConfig, arms: tuple[str, ...], seed: int) -> list[dict[str, Any]]:
    """Train one diffusion model for arms that share its schedule and prediction type, then sample each
    arm with its own spacing (DDIM) and score the per-image brightness."""
    from workbench.generative.brightness import brightness_metrics, get_arm
    from workbench.generative.sampling import load_trained, sample_diffusion

    spec = get_arm(arms[0])
    model_config = replace(config.model, zero_terminal_snr=spec.zero_terminal_snr,
                           prediction_type=spec.prediction_type)
    train_config = replace(config.train, seed=int(seed))
    run_id = f"{'zsnr' if spec.zero_terminal_snr else 'sd'}-{spec.prediction_type}-seed{seed}"
    run = _train(model_config, train_config, config.root, config.experiment, run_id, "diffusion")
    trained = load_trained(run.path)
    results = []
    for arm in arms:
        samples = sample_diffusion(trained.model, model_config, config.samples, tuple(trained.data.shape[1:]),
                                   steps=config.sample_steps, spacing=get_arm(arm).spacing, seed=1000 + seed)
        samples = np.clip(samples, -1.0, 1.0)  # scored as the images a pipeline outputs (pixel range [−1, 1])
        results.append({"arm": arm, "seed": int(seed), "run": str(run.path), **brightness_metrics(samples, trained.data),
                        "brightness": np.asarray(samples).reshape(len(samples), -1).mean(1).tolist(),
                        "grid": np.asarray(samples[:16], dtype=np.float32).tolist()})
    return results


def assemble_brightness(config: BrightnessConfig, members: list[dict[str, Any]], data: np.ndarray):
    import xarray as xr

    arms, seeds = list(config.arms), list(range(config.seeds))
    names = ("spread_ratio", "w1", "ks", "tail_generated")
    ds = xr.Dataset(coords={"arm": arms, "seed": seeds, "sample": np.arange(config.samples),
                            "image": np.arange(len(data))})
    table = {n: np.full((len(arms), len(seeds)), np.nan) for n in names}
    brightness = np.full((len(arms), len(seeds), config.samples), np.nan)
    for m in members:
        i, j = arms.index(m["arm"]), seeds.index(m["seed"])
        for n in names:
            table[n][i, j] = m[n]
        brightness[i, j] = m["brightness"]
    for n in names:
        ds[n] = (("arm", "seed"), table[n])
    ds["brightness"] = (("arm", "seed", "sample"), brightness)
    ds["data_brightness"] = (("image",), np.asarray(data).reshape(len(data), -1).mean(1))
    ds.attrs.update(experiment=config.experiment, image_size=config.model.image_size,
                    train_steps=config.train.max_steps, sample_steps=config.sample_steps,
                    description="per-image mean brightness of DDIM samples vs data, per arm (Lin et al.)")
    return ds


def t_interval(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the 95 % Student-t interval along `axis` (0 half-width for one seed)."""
    from scipy import stats

    n = values.shape[axis]
    mean = np.nanmean(values, axis=axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = stats.t.ppf(0.975, n - 1) * np.nanstd(values, axis=axis, ddof=1) / math.sqrt(n)
    return mean, half


def plot_robustness(ds, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, probe, label in zip(axes, ("alpha", "steps", "bits"),
                                ("noise α before each Heun step", "Heun steps", "weight bits")):
        for D in ds["D"].values:
            mean, half = t_interval(ds[f"swd_{probe}"].sel(D=D).values, axis=0)
            x = ds[probe].values
            name = "∞ (EDM)" if math.isinf(D) else f"{D:g}"
            ax.errorbar(x, mean, yerr=half, marker="o", capsize=3, label=f"D = {name}")
        ax.set_xlabel(label)
        ax.set_ylabel("sliced W1 to data")
        if probe == "bits":
            ax.invert_xaxis()
    axes[0].legend(fontsize=8)
    fig.suptitle(f"PFGM++ robustness ({ds.attrs.get('data')}, {ds.sizes['seed']} seeds, 95 % t-intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_brightness(ds, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    bins = np.linspace(-1, 1, 41)
    axes[0].hist(ds["data_brightness"].values, bins=bins, density=True, histtype="stepfilled", alpha=0.3,
                 label="data")
    for arm in ds["arm"].values:
        axes[0].hist(ds["brightness"].sel(arm=arm).values.ravel(), bins=bins, density=True, histtype="step",
                     label=str(arm))
    axes[0].set_xlabel("per-image mean brightness")
    axes[0].legend(fontsize=8)
    mean, half = t_interval(ds["w1"].values, axis=1)
    axes[1].bar(np.arange(ds.sizes["arm"]), mean, yerr=half, capsize=4)
    axes[1].set_xticks(np.arange(ds.sizes["arm"]), [str(a) for a in ds["arm"].values], rotation=15, fontsize=8)
    axes[1].set_ylabel("brightness W1 to data (95 % t-interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_grid(images: np.ndarray, path: str | Path, columns: int = 8) -> None:
    """A PNG grid of single-channel images in [−1, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.clip(np.asarray(images)[:, 0], -1, 1)
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, image in zip(np.atleast_1d(axes).ravel(), images):
        ax.imshow(image, cmap="gray", vmin=-1, vmax=1)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
