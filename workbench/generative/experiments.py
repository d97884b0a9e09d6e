"""The two generative experiments, as one job-array member per (setting, seed) plus an assembly step.

robustness (PFGM++, after the official generate_alpha.py / generate_steps.py / generate_quant.py
  protocols of github.com/Newbeeer/pfgmpp): for each D and seed, train a PFGM++ model, then sample
  under (a) noise injected before each Heun step, x ← x + α·σ_i·ε; (b) fewer Heun steps; (c) min-max
  weight quantisation; score each against the data (sliced Wasserstein and MMD², on classifier
  features for images). Claim tested: smaller D degrades less.
brightness (a CPU-scale toy of Lin et al. 2024's brightness failure): for each arm
  (`brightness.ARMS`) and seed, train a diffusion model on images whose mean brightness spans
  [−0.8, 0.8], sample with DDIM, and compare the per-image brightness distribution of samples and
  data (W1, spread ratio).

`*_member` functions are what a job runs (module-level, cheap to import); `assemble_*` turns their
returned dicts into one xarray Dataset; `plot_*` draws means with 95 % t-intervals over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats

from workbench.atomic import atomic_savefig
from workbench.generative.brightness import brightness_metrics
from workbench.generative.config import BrightnessConfig, RobustnessConfig, get_arm
from workbench.generative.data import training_data
from workbench.generative.features import image_features
from workbench.generative.metrics import mmd2, sliced_wasserstein
from workbench.generative.sampling import load_trained, quantize, sample_diffusion, sample_pfgmpp
from workbench.store import atomic_write_netcdf, create_run_dir
from workbench.train import TrainConfig, train

__all__ = [
    "BrightnessConfig",
    "RobustnessConfig",
    "assemble_brightness",
    "assemble_robustness",
    "brightness_groups",
    "brightness_member",
    "finish_brightness",
    "finish_robustness",
    "plot_brightness",
    "plot_robustness",
    "robustness_items",
    "robustness_member",
    "save_grid",
    "t_interval",
]


def _score(samples: np.ndarray, data: np.ndarray, images: bool) -> tuple[float, float]:
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
    run = create_run_dir(root, experiment, run_id, _RunConfig(kind, model_config, train_config))
    if not (run.path / "model.pt").is_file():
        train(model_config, train_config, run, kind=kind)
    return run


def robustness_items(config: RobustnessConfig) -> list[tuple[RobustnessConfig, float, int]]:
    """Job-array items: one member per (D, seed)."""
    return [(config, D, seed) for D in config.D for seed in range(config.seeds)]


def robustness_member(config: RobustnessConfig, D: float, seed: int) -> dict[str, Any]:
    """Train PFGM++ at D (seed), then score it under each perturbation (one job-array member)."""
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
    Ds, seeds = list(config.D), list(range(config.seeds))
    coords = {
        "D": np.asarray(Ds, dtype=float),
        "seed": seeds,
        "alpha": list(config.alphas),
        "steps": list(config.steps),
        "bits": list(config.bits),
    }
    ds = xr.Dataset(coords=coords)
    for probe in ("alpha", "steps", "bits"):
        values = np.full((len(Ds), len(seeds), len(coords[probe]), 2), np.nan)
        for m in members:
            values[Ds.index(m["D"]), seeds.index(m["seed"])] = np.asarray(m[probe])
        ds[f"swd_{probe}"] = (("D", "seed", probe), values[..., 0])
        ds[f"mmd_{probe}"] = (("D", "seed", probe), values[..., 1])
    ds.attrs.update(
        experiment=config.experiment,
        data=config.model.data,
        train_steps=config.train.max_steps,
        samples=config.samples,
        heun_steps=config.heun_steps,
        description="sliced W1 / MMD² of PFGM++ samples vs data under perturbations",
    )
    return ds


def brightness_groups(config: BrightnessConfig) -> list[tuple[BrightnessConfig, tuple[str, ...], int]]:
    """Job-array items: arms that share a schedule and prediction type share one trained model (only
    their spacing differs), so they form one member per seed and never race for a run directory."""
    groups: dict[tuple[bool, str], list[str]] = {}
    for arm in config.arms:
        spec = get_arm(arm)
        groups.setdefault((spec.zero_terminal_snr, spec.prediction_type), []).append(arm)
    return [(config, tuple(arms), seed) for seed in range(config.seeds) for arms in groups.values()]


def brightness_member(config: BrightnessConfig, arms: tuple[str, ...], seed: int) -> list[dict[str, Any]]:
    """Train one diffusion model for arms that share its schedule and prediction type, then sample each
    arm with its own spacing (DDIM) and score the per-image brightness."""
    spec = get_arm(arms[0])
    model_config = replace(config.model, zero_terminal_snr=spec.zero_terminal_snr, prediction_type=spec.prediction_type)
    train_config = replace(config.train, seed=int(seed))
    run_id = f"{'zsnr' if spec.zero_terminal_snr else 'sd'}-{spec.prediction_type}-seed{seed}"
    run = _train(model_config, train_config, config.root, config.experiment, run_id, "diffusion")
    trained = load_trained(run.path)
    results = []
    for arm in arms:
        samples = sample_diffusion(
            trained.model,
            model_config,
            config.samples,
            tuple(trained.data.shape[1:]),
            steps=config.sample_steps,
            spacing=get_arm(arm).spacing,
            seed=1000 + seed,
        )
        samples = np.clip(samples, -1.0, 1.0)  # scored as the images a pipeline outputs (pixel range [−1, 1])
        results.append(
            {
                "arm": arm,
                "seed": int(seed),
                "run": str(run.path),
                **brightness_metrics(samples, trained.data),
                "brightness": np.asarray(samples).reshape(len(samples), -1).mean(1).tolist(),
                "grid": np.asarray(samples[:16], dtype=np.float32).tolist(),
            }
        )
    return results


def assemble_brightness(config: BrightnessConfig, members: list[dict[str, Any]], data: np.ndarray):
    arms, seeds = list(config.arms), list(range(config.seeds))
    names = ("spread_ratio", "w1", "ks", "tail_generated")
    ds = xr.Dataset(
        coords={"arm": arms, "seed": seeds, "sample": np.arange(config.samples), "image": np.arange(len(data))}
    )
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
    ds.attrs.update(
        experiment=config.experiment,
        image_size=config.model.image_size,
        train_steps=config.train.max_steps,
        sample_steps=config.sample_steps,
        description="per-image mean brightness of DDIM samples vs data, per arm (Lin et al.)",
    )
    return ds


def output_dir(config: RobustnessConfig | BrightnessConfig) -> Path:
    return Path(config.root) / config.experiment


def finish_robustness(config: RobustnessConfig, members: list[dict[str, Any]], executor: str) -> tuple[str, dict]:
    """results.nc, robustness.png and a sample grid per D; the table of means with 95 % intervals."""
    out = output_dir(config)
    ds = assemble_robustness(config, members)
    atomic_write_netcdf(ds, out / "results.nc")
    plot_robustness(ds, out / "robustness.png")
    for m in members:
        if m["seed"] == 0 and m.get("grid") is not None:
            name = "inf" if math.isinf(m["D"]) else f"{m['D']:g}"
            save_grid(np.asarray(m["grid"]), out / f"samples_D{name}.png")
    rows, lines = (
        [],
        [
            f"PFGM++ robustness ({config.model.data}, {config.seeds} seeds, executor {executor}); "
            "sliced W1 to data, mean ± 95 % t-interval"
        ],
    )
    for D in config.D:
        row = {"D": D}
        for probe in ("alpha", "steps", "bits"):
            values = ds[f"swd_{probe}"].sel(D=D).values  # (seed, level)
            mean, half = t_interval(values, axis=0)
            row[probe] = {"levels": list(ds[probe].values.tolist()), "mean": mean.tolist(), "ci95": half.tolist()}
        rows.append(row)
        name = "inf (EDM)" if math.isinf(D) else f"{D:g}"
        parts = [
            f"{p} "
            + ", ".join(
                f"{lv:g}: {m:.3f}±{h:.3f}" for lv, m, h in zip(row[p]["levels"], row[p]["mean"], row[p]["ci95"])
            )
            for p in ("alpha", "steps", "bits")
        ]
        lines.append(f"  D = {name}: " + "; ".join(parts))
    lines.append(f"wrote {out / 'results.nc'} and {out / 'robustness.png'}")
    return "\n".join(lines), {
        "executor": executor,
        "results": str(out / "results.nc"),
        "figure": str(out / "robustness.png"),
        "rows": rows,
    }


def finish_brightness(config: BrightnessConfig, members: list[dict[str, Any]], executor: str) -> tuple[str, dict]:
    """results.nc, brightness.png and sample grids; the table of W1 and spread ratio per arm."""
    out = output_dir(config)
    data, _ = training_data(config.model)
    ds = assemble_brightness(config, members, data)
    atomic_write_netcdf(ds, out / "results.nc")
    plot_brightness(ds, out / "brightness.png")
    for m in members:
        if m["seed"] == 0:
            save_grid(np.asarray(m["grid"]), out / f"samples_{m['arm']}.png")
    save_grid(data[:16], out / "samples_data.png")
    rows, lines = (
        [],
        [
            f"Brightness ({config.model.image_size}x{config.model.image_size}, {config.seeds} seeds, "
            f"DDIM {config.sample_steps} steps, executor {executor}); mean ± 95 % t-interval"
        ],
    )
    for arm in config.arms:
        row = {"arm": arm}
        for name in ("w1", "spread_ratio"):
            mean, half = t_interval(ds[name].sel(arm=arm).values, axis=0)
            row[name], row[f"{name}_ci95"] = float(mean), float(half)
        row["w1_per_seed"] = ds["w1"].sel(arm=arm).values.tolist()
        rows.append(row)
        lines.append(
            f"  {arm:<22} W1 {row['w1']:.4f} ± {row['w1_ci95']:.4f}   spread ratio "
            f"{row['spread_ratio']:.3f} ± {row['spread_ratio_ci95']:.3f}"
        )
    lines.append(f"wrote {out / 'results.nc'}, {out / 'brightness.png'} and sample grids")
    return "\n".join(lines), {"executor": executor, "results": str(out / "results.nc"), "rows": rows}


def t_interval(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the 95 % Student-t interval along `axis` (0 half-width for one seed)."""
    n = values.shape[axis]
    mean = np.nanmean(values, axis=axis)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = stats.t.ppf(0.975, n - 1) * np.nanstd(values, axis=axis, ddof=1) / math.sqrt(n)
    return mean, half


def plot_robustness(ds, path: str | Path) -> None:
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    for ax, probe, label in zip(
        axes, ("alpha", "steps", "bits"), ("noise α before each Heun step", "Heun steps", "weight bits")
    ):
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
    atomic_savefig(fig, path, dpi=120)


def plot_brightness(ds, path: str | Path) -> None:
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, 2)
    bins = np.linspace(-1, 1, 41)
    axes[0].hist(ds["data_brightness"].values, bins=bins, density=True, histtype="stepfilled", alpha=0.3, label="data")
    for arm in ds["arm"].values:
        axes[0].hist(
            ds["brightness"].sel(arm=arm).values.ravel(), bins=bins, density=True, histtype="step", label=str(arm)
        )
    axes[0].set_xlabel("per-image mean brightness")
    axes[0].legend(fontsize=8)
    mean, half = t_interval(ds["w1"].values, axis=1)
    axes[1].bar(np.arange(ds.sizes["arm"]), mean, yerr=half, capsize=4)
    axes[1].set_xticks(np.arange(ds.sizes["arm"]), [str(a) for a in ds["arm"].values], rotation=15, fontsize=8)
    axes[1].set_ylabel("brightness W1 to data (95 % t-interval)")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)


def save_grid(images: np.ndarray, path: str | Path, columns: int = 8) -> None:
    """A PNG grid of single-channel images in [−1, 1]."""
    images = np.clip(np.asarray(images)[:, 0], -1, 1)
    rows = math.ceil(len(images) / columns)
    fig = Figure(figsize=(columns, rows))
    axes = fig.subplots(rows, columns)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, image in zip(np.atleast_1d(axes).ravel(), images):
        ax.imshow(image, cmap="gray", vmin=-1, vmax=1)
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
