"""The brightness experiment, and what it shares with the robustness study
(`workbench.generative.robustness`): one job-array member per (setting, seed) plus an assembly step.

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
from workbench.figures import finish_figure, new_figure
from workbench.generative.brightness import brightness_metrics
from workbench.generative.config import BrightnessConfig, RobustnessConfig, get_arm
from workbench.generative.data import training_data
from workbench.generative.features import image_features
from workbench.generative.metrics import mmd2, sliced_wasserstein
from workbench.generative.sampling import load_trained, sample_diffusion
from workbench.provenance import with_provenance
from workbench.store import atomic_write_netcdf, create_run_dir
from workbench.train import TrainConfig, train

__all__ = [
    "BrightnessConfig",
    "assemble_brightness",
    "brightness_groups",
    "brightness_member",
    "finish_brightness",
    "output_dir",
    "plot_brightness",
    "save_grid",
    "score_samples",
    "t_interval",
    "train_member",
]


def score_samples(samples: np.ndarray, data: np.ndarray, images: bool) -> tuple[float, float]:
    """(sliced W1, MMD²) of samples against data; images are compared on classifier features."""
    if images:
        samples, data = image_features(np.clip(samples, -1, 1)), image_features(data)
    return sliced_wasserstein(samples, data), mmd2(samples, data)


@dataclass(frozen=True)
class _RunConfig:
    """What a member's run directory records in config.json (the same keys as a job config's)."""

    kind: str
    model: Any
    train: TrainConfig


def train_member(model_config, train_config: TrainConfig, root: str, experiment: str, run_id: str, kind: str):
    """The member's run directory, trained unless its model.pt exists (a rerun resumes)."""
    run = create_run_dir(root, experiment, run_id, _RunConfig(kind, model_config, train_config))
    if not (run.path / "model.pt").is_file():
        train(model_config, train_config, run, kind=kind)
    return run


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
    run = train_member(model_config, train_config, config.root, config.experiment, run_id, "diffusion")
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


def finish_brightness(config: BrightnessConfig, members: list[dict[str, Any]], executor: str) -> tuple[str, dict]:
    """results.nc, brightness.png and sample grids; the table of W1 and spread ratio per arm."""
    out = output_dir(config)
    data, _ = training_data(config.model)
    ds = assemble_brightness(config, members, data)
    atomic_write_netcdf(with_provenance(ds, config), out / "results.nc")
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


def plot_brightness(ds, path: str | Path | None = None):
    """Left: per-image brightness of the data and of each arm's samples; right: W1 per arm with
    95 % t-intervals over seeds. Returns the figure; writes it to `path` when given."""
    fig, (axes,) = new_figure((11, 3.8), ncols=2)
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
    return finish_figure(fig, path)


def save_grid(images: np.ndarray, path: str | Path, columns: int = 8) -> None:
    """A PNG grid of single-channel images in [−1, 1] (a file only: a bare Figure, never shown)."""
    images = np.clip(np.asarray(images)[:, 0], -1, 1)
    rows = math.ceil(len(images) / columns)
    fig = Figure(figsize=(columns, rows))
    axes = fig.subplots(rows, columns)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, image in zip(np.atleast_1d(axes).ravel(), images):
        ax.imshow(image, cmap="gray", vmin=-1, vmax=1)
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
