"""PFGM++'s robustness study (Xu et al. 2023, §5.2 and Figs. 4–5): is a smaller D more robust?

For each augmentation dimension D and seed (one job-array member), train PFGM++ and score its
samples, with and without three sampling-time errors that follow the official probes of
github.com/Newbeeer/pfgmpp:
- noise injected before every Heun step, x ← x + α·σ_i·ε (generate_alpha.py);
- fewer Heun steps on EDM's σ grid, NFE = 2·steps − 1 (generate_steps.py);
- post-training k-bit weight quantisation (generate_quant.py, `sampling.quantize`).
The quality is the sliced Wasserstein-1 distance to held data on a digits classifier's features
(MMD² is recorded too). Robustness is the degradation: perturbed minus clean quality, paired per
seed, with a percentile-bootstrap interval over seeds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from workbench.figures import finish_figure, new_figure
from workbench.generative.config import RobustnessConfig
from workbench.generative.experiments import output_dir, save_grid, score_samples, train_member
from workbench.generative.sampling import load_trained, quantize, sample_pfgmpp
from workbench.provenance import with_provenance
from workbench.store import atomic_write_netcdf

__all__ = [
    "PROBES",
    "assemble_robustness",
    "bootstrap_interval",
    "degradation",
    "finish_robustness",
    "plot_robustness",
    "robustness_items",
    "robustness_member",
    "summary_table",
]

# probe name → axis label; the clean score is the zero-strength point of every probe
PROBES = {"alpha": "noise α before each Heun step", "nfe": "NFE (Heun)", "bits": "weight bits"}


def robustness_items(config: RobustnessConfig) -> list[tuple[RobustnessConfig, float, int]]:
    """Job-array items: one member per (D, seed)."""
    return [(config, D, seed) for D in config.D for seed in range(config.seeds)]


def robustness_member(config: RobustnessConfig, D: float, seed: int) -> dict[str, Any]:
    """Train PFGM++ at D (seed), then score it clean and under each perturbation."""
    model_config = replace(config.model, D=float(D))
    train_config = replace(config.train, seed=int(seed))
    run_id = f"D{'inf' if math.isinf(D) else f'{D:g}'}-seed{seed}"
    run = train_member(model_config, train_config, config.root, config.experiment, run_id, "pfgmpp")
    trained = load_trained(run.path)
    shape = tuple(trained.data.shape[1:])
    images = len(shape) == 3
    reference = trained.data[np.random.default_rng(seed).permutation(len(trained.data))[: config.samples]]
    cache: dict[tuple, tuple[float, float]] = {}
    grid: list = []

    def score(model, bits: int = 0, steps: int = config.heun_steps, noise_alpha: float = 0.0) -> tuple[float, float]:
        key = (bits, steps, noise_alpha)
        if key not in cache:  # α = 0 at the full step count is the clean setting: sampled once
            samples = sample_pfgmpp(
                model, model_config, config.samples, shape, seed=1000 + seed, steps=steps, noise_alpha=noise_alpha
            )
            if not grid and images:
                grid.append(np.asarray(samples[:16], dtype=np.float32).tolist())
            cache[key] = score_samples(samples, reference, images)
        return cache[key]

    out: dict[str, Any] = {"D": float(D), "seed": int(seed), "run": str(run.path)}
    out["clean"] = score(trained.model)
    out["alpha"] = [score(trained.model, noise_alpha=a) for a in config.alphas]
    out["steps"] = [score(trained.model, steps=s) for s in config.steps]
    out["bits"] = [score(quantize(trained.model, b), bits=b) for b in config.bits]
    out["grid"] = grid[0] if grid else None
    return out


def assemble_robustness(config: RobustnessConfig, members: list[dict[str, Any]]) -> xr.Dataset:
    """Members → Dataset with dims (D, seed[, alpha | steps | bits]): swd_* and mmd_* for each probe
    and for the clean setting; `nfe` = 2·steps − 1 is a coordinate on `steps`."""
    Ds, seeds = list(config.D), list(range(config.seeds))
    steps = np.asarray(config.steps, dtype=int)
    coords = {
        "D": np.asarray(Ds, dtype=float),
        "seed": seeds,
        "alpha": list(config.alphas),
        "steps": steps,
        "nfe": ("steps", 2 * steps - 1),
        "bits": list(config.bits),
    }
    ds = xr.Dataset(coords=coords)
    clean = np.full((len(Ds), len(seeds), 2), np.nan)
    for m in members:
        clean[Ds.index(m["D"]), seeds.index(m["seed"])] = np.asarray(m["clean"])
    ds["swd_clean"] = (("D", "seed"), clean[..., 0])
    ds["mmd_clean"] = (("D", "seed"), clean[..., 1])
    for probe in ("alpha", "steps", "bits"):
        values = np.full((len(Ds), len(seeds), ds.sizes[probe], 2), np.nan)
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
        clean_nfe=2 * config.heun_steps - 1,
        description="sliced W1 / MMD² of PFGM++ samples vs data, clean and under sampling-time perturbations",
    )
    return ds


def bootstrap_interval(
    values: np.ndarray, axis: int = 0, *, level: float = 0.95, draws: int = 10_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lower, upper): the mean over `axis` (the seeds) and its percentile-bootstrap interval,
    resampling the seeds with replacement `draws` times. One seed gives a zero-width interval."""
    values = np.moveaxis(np.asarray(values, dtype=float), axis, 0)
    mean = values.mean(axis=0)
    n = values.shape[0]
    if n < 2:
        return mean, mean.copy(), mean.copy()
    picks = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    means = values[picks].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return mean, np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def degradation(ds: xr.Dataset, probe: str, metric: str = "swd") -> xr.DataArray:
    """Perturbed minus clean quality, per (D, seed, level): the loss of quality the perturbation causes."""
    name = "steps" if probe == "nfe" else probe
    return ds[f"{metric}_{name}"] - ds[f"{metric}_clean"]


def summary_table(ds: xr.Dataset) -> str:
    """A Markdown table: per D, the clean sliced W1 and the degradation at each probe's strongest
    level (the last listed), mean [95 % bootstrap interval over seeds]."""
    heads = [
        f"α = {ds['alpha'].values[-1]:g}",
        f"NFE {int(ds['nfe'].values[-1])}",
        f"{int(ds['bits'].values[-1])} bits",
    ]
    lines = ["| D | clean sliced W1 | " + " | ".join(f"Δ at {h}" for h in heads) + " |", "|---" * 5 + "|"]
    for D in ds["D"].values:
        cells = [bootstrap_interval(ds["swd_clean"].sel(D=D).values)]
        cells += [bootstrap_interval(degradation(ds, probe).sel(D=D).values[:, -1]) for probe in PROBES]
        text = [f"{float(m):.3f} [{float(a):.3f}, {float(b):.3f}]" for m, a, b in cells[:1]]
        text += [f"{float(m):+.3f} [{float(a):+.3f}, {float(b):+.3f}]" for m, a, b in cells[1:]]
        lines.append(f"| {_label(D)} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def _label(D: float) -> str:
    return "∞ (EDM)" if math.isinf(D) else f"{D:g}"


def _levels(ds: xr.Dataset, probe: str) -> np.ndarray:
    return ds["nfe"].values if probe == "nfe" else ds[probe].values


def finish_robustness(config: RobustnessConfig, members: list[dict[str, Any]], executor: str) -> tuple[str, dict]:
    """results.nc, robustness.png and a sample grid per D; the table of clean quality and of the
    degradation under each perturbation, with 95 % bootstrap intervals over seeds."""
    out = output_dir(config)
    ds = assemble_robustness(config, members)
    atomic_write_netcdf(with_provenance(ds, config), out / "results.nc")
    plot_robustness(ds, out / "robustness.png")
    for m in members:
        if m["seed"] == 0 and m.get("grid") is not None:
            name = "inf" if math.isinf(m["D"]) else f"{m['D']:g}"
            save_grid(np.asarray(m["grid"]), out / f"samples_D{name}.png")
    lines = [
        f"PFGM++ robustness ({config.model.data}, {config.train.max_steps} steps, {config.seeds} seeds, executor "
        f"{executor}); sliced W1 to data: clean, then perturbed − clean; mean [95 % bootstrap over seeds]"
    ]
    rows = []
    for D in config.D:
        mean, lo, hi = bootstrap_interval(ds["swd_clean"].sel(D=D).values)
        row: dict[str, Any] = {"D": D, "clean": {"mean": float(mean), "ci95": [float(lo), float(hi)]}}
        parts = [f"clean {float(mean):.3f} [{float(lo):.3f}, {float(hi):.3f}]"]
        for probe in PROBES:
            mean, lo, hi = bootstrap_interval(degradation(ds, probe).sel(D=D).values)
            levels = _levels(ds, probe).tolist()
            row[probe] = {"levels": levels, "mean": mean.tolist(), "ci95": np.stack([lo, hi], 1).tolist()}
            cells = (f"{lv:g}: {m:+.3f} [{a:+.3f}, {b:+.3f}]" for lv, m, a, b in zip(levels, mean, lo, hi))
            parts.append(f"{probe} " + ", ".join(cells))
        rows.append(row)
        lines.append(f"  D = {_label(D)}: " + "; ".join(parts))
    lines.append(f"wrote {out / 'results.nc'} and {out / 'robustness.png'}")
    payload = {"executor": executor, "results": str(out / "results.nc"), "figure": str(out / "robustness.png")}
    return "\n".join(lines), {**payload, "rows": rows}


def plot_robustness(ds: xr.Dataset, path: str | Path | None = None):
    """Top: sliced W1 against perturbation strength (the clean score at strength 0); bottom: the
    degradation, perturbed − clean. One line per D, 95 % bootstrap bands over seeds. Returns the
    figure; writes it to `path` when given."""
    fig, axes = new_figure((13, 7), nrows=2, ncols=3)
    clean_nfe = int(ds.attrs.get("clean_nfe", 2 * int(ds.attrs.get("heun_steps", 18)) - 1))
    anchor = {"alpha": 0.0, "nfe": clean_nfe, "bits": 32}
    for col, (probe, label) in enumerate(PROBES.items()):
        levels = _levels(ds, probe)
        for D in ds["D"].values:
            clean = ds["swd_clean"].sel(D=D).values
            perturbed = ds[f"swd_{'steps' if probe == 'nfe' else probe}"].sel(D=D).values
            keep = levels != anchor[probe]  # a level equal to the clean setting is drawn once
            x = np.concatenate([[anchor[probe]], levels[keep]])
            for row, values in enumerate((perturbed, perturbed - clean[:, None])):
                base = clean[:, None] if row == 0 else np.zeros_like(clean)[:, None]
                series = np.concatenate([base, values[:, keep]], axis=1)
                mean, lo, hi = bootstrap_interval(series)
                order = np.argsort(x)
                (line,) = axes[row, col].plot(x[order], mean[order], marker="o", ms=3, label=f"D = {_label(D)}")
                axes[row, col].fill_between(x[order], lo[order], hi[order], color=line.get_color(), alpha=0.2)
        for row in range(2):
            axes[row, col].set_xlabel(label + (" (32 = full precision)" if probe == "bits" else ""))
            if probe in ("nfe", "bits"):  # stronger perturbation to the right
                axes[row, col].invert_xaxis()
        axes[0, col].set_ylabel("sliced W1 to data")
        axes[1, col].set_ylabel("degradation (perturbed − clean)")
        axes[1, col].axhline(0.0, color="0.5", lw=0.8)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"PFGM++ robustness ({ds.attrs.get('data')}, {ds.attrs.get('train_steps')} steps, "
        f"{ds.sizes['seed']} seeds, 95 % bootstrap bands over seeds)"
    )
    return finish_figure(fig, path)
