"""Which parameter count does loss scale with? A doping sweep (Chatelain et al. 2021, "Is the
number of trainable parameters all that actually matters?", arXiv:2109.11928) read against three
candidate laws.

The paper dopes models with frozen random parameters or fast structured transforms and finds
that "the scaling relationship between test loss and compute depends only on the actual number
of trainable parameters". A doping sweep trains the same models at several widths and several
doping settings (a `frozen_ratio` or `mlp_kind` sweep dim; seeds optional). One joint law
L = a·X^b + c (scaling.mup_predict.fit_power_law) is fitted over *all* settings at once with

- X = N_trainable (`params`, non-embedding trainable),
- X = N_total = params + params_frozen (trainable plus frozen doping weights),
- X = C = flops_per_token · tokens seen (tokens = tokens_per_step · steps_done; a frozen weight
  still costs its forward and input-gradient FLOPs, so C ≈ (6·N_trainable + 4·N_frozen) per token),

and the count whose joint fit leaves the smallest residual RMS is the one that *collapses* the
doping settings onto one curve. The paper's claim is that it is the trainable count; this
module reports what the data show. Per-setting mean residuals show how a count fails (a
setting systematically above or below the joint curve). With several seeds, the residual RMS
is compared with the seed noise of a seed-mean (pooled seed std / sqrt(seeds)).

Reads a collected sweep only (an xarray Dataset or a sweep .nc; collecting a sweep directory with
`jobs.sweep.collect` is the caller's job); never imports a model.
CLI: `workbench lm doping-report SWEEP [--json]`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import xarray as xr

from scaling.mup_predict import fit_power_law, open_sweep
from workbench.errors import InputError

__all__ = ["DOPING_DIMS", "doping_report", "sweep_points"]

DOPING_DIMS = ("frozen_ratio", "mlp_kind")
COUNTS = ("trainable", "total", "compute")
SAME_FIT = 0.1  # without seeds: rmse within 10 % of each other counts as no separation
REQUIRED = ("params", "params_frozen", "flops_per_token", "tokens_per_step", "steps_done")


def _setting_label(value: Any) -> str:
    """'0', '1.5', 'monarch': a doping setting as a JSON-friendly key."""
    value = value.item() if isinstance(value, np.generic) else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_points(ds, loss_var: str = "final_val_loss") -> dict[str, Any]:
    """One point per (width, doping setting, other singleton dims) with results, seeds averaged.

    Returns ``{"doping_dim", "points": [...], "seed_noise", "n_seeds"}``; each point holds
    the setting, width (if a dim), seed-mean loss, params, params_frozen, flops_per_token,
    tokens and compute. `seed_noise` is the pooled standard deviation over seeds of one run's
    loss (None with one seed).
    """
    doping = [d for d in DOPING_DIMS if d in ds.dims]
    if not doping:
        raise InputError(
            f"the sweep has no doping dimension (one of: {', '.join(DOPING_DIMS)}; dims: "
            f"{', '.join(map(str, ds.dims)) or 'none'}); sweep with --grid model.frozen_ratio=..."
        )
    if len(doping) > 1:
        raise InputError(
            f"the sweep has several doping dimensions ({', '.join(doping)}); select one setting "
            "of all but one before the report"
        )
    dim = doping[0]
    missing = [name for name in (loss_var, *REQUIRED) if name not in ds.data_vars]
    if missing:
        raise InputError(
            f"the sweep has no variable {missing[0]!r} (needed: {', '.join((loss_var, *REQUIRED))}; "
            f"runs recorded before doping support lack the counts: rerun them)"
        )
    loss = ds[loss_var]
    for other in loss.dims:
        if other not in (dim, "width", "seed") and ds.sizes[other] > 1:
            raise InputError(
                f"sweep dim {other!r} has {ds.sizes[other]} values; select one before the report "
                f"(the report compares widths x {dim}, seeds averaged)"
            )
    singles = [d for d in loss.dims if d not in (dim, "width", "seed")]
    if singles:
        ds = ds.isel(dict.fromkeys(singles, 0))
        loss = ds[loss_var]
    has_seed = "seed" in loss.dims
    n_seeds = int(ds.sizes["seed"]) if has_seed else 1

    def per_cell(name: str, how: str):
        var = ds[name]
        if has_seed and "seed" in var.dims:
            var = getattr(var, how)("seed", skipna=True)
        return var

    mean_loss = per_cell(loss_var, "mean")
    counts = {name: per_cell(name, "max") for name in REQUIRED}
    widths = ds["width"].values if "width" in ds.dims else [None]
    points = []
    for setting in ds[dim].values:
        for width in widths:
            at = {dim: setting} if width is None else {dim: setting, "width": width}
            value = float(mean_loss.sel(at))
            row = {name: float(counts[name].sel(at)) for name in REQUIRED}
            if not (math.isfinite(value) and all(math.isfinite(v) for v in row.values())):
                continue  # a member without results
            tokens = row["tokens_per_step"] * row["steps_done"]
            points.append(
                {
                    "setting": _setting_label(setting),
                    "width": None if width is None else int(width),
                    "loss": value,
                    "params": int(row["params"]),
                    "params_frozen": int(row["params_frozen"]),
                    "flops_per_token": int(row["flops_per_token"]),
                    "tokens": int(tokens),
                    "compute": float(row["flops_per_token"] * tokens),
                }
            )
    seed_noise = None
    if has_seed and n_seeds > 1:
        spread = ds[loss_var].var("seed", ddof=1, skipna=True).values
        spread = spread[np.isfinite(spread)]
        seed_noise = float(math.sqrt(spread.mean())) if spread.size else None
    return {"doping_dim": dim, "points": points, "seed_noise": seed_noise, "n_seeds": n_seeds}


def doping_report(sweep: xr.Dataset | str | os.PathLike, loss_var: str = "final_val_loss") -> dict[str, Any]:
    """Joint fits of L against trainable N, total N and compute over every doping setting.

    Returns ``{"doping_dim", "settings", "points", "fits": {"trainable" | "total" | "compute":
    {"a", "b", "c", "rmse", "mean_residual": {setting: value}}}, "collapses": "trainable" |
    "total", "separated", "seed_noise", "seed_noise_of_mean", "verdict"}``. `collapses` is the
    count with the smaller joint rmse; `separated` says whether the two rmse differ by more than
    the seed noise of a seed-mean (without seeds: by more than 10 %) with the loss falling in both.
    """
    ds = open_sweep(sweep)
    table = sweep_points(ds, loss_var)
    points = table["points"]
    settings = list(dict.fromkeys(p["setting"] for p in points))
    if len(settings) < 2:
        raise InputError(
            f"the sweep has results at {len(settings)} {table['doping_dim']} setting(s); "
            "comparing counts needs at least 2"
        )
    if len(points) < 4:
        raise InputError(
            f"the sweep has {len(points)} (width, {table['doping_dim']}) points with results; "
            "a joint fit of a·N^b + c needs at least 4"
        )
    loss = np.array([p["loss"] for p in points])
    xs = {
        "trainable": np.array([p["params"] for p in points], dtype=float),
        "total": np.array([p["params"] + p["params_frozen"] for p in points], dtype=float),
        "compute": np.array([p["compute"] for p in points], dtype=float),
    }
    labels = np.array([p["setting"] for p in points])
    fits = {}
    for name in COUNTS:
        fit = fit_power_law(xs[name], loss)
        residual = loss - fit(xs[name])
        fits[name] = {
            **fit.as_dict(),
            "rmse": fit.rmse,
            "mean_residual": {s: float(residual[labels == s].mean()) for s in settings},
        }
        for p, r in zip(points, residual):
            p[f"residual_{name}"] = float(r)
    collapses = "trainable" if fits["trainable"]["rmse"] <= fits["total"]["rmse"] else "total"
    noise = table["seed_noise"]
    noise_of_mean = None if noise is None else noise / math.sqrt(table["n_seeds"])
    gap = abs(fits["trainable"]["rmse"] - fits["total"]["rmse"])
    margin = (
        noise_of_mean if noise_of_mean is not None else SAME_FIT * max(fits["trainable"]["rmse"], fits["total"]["rmse"])
    )
    separated = bool(
        gap > margin
        and fits["trainable"]["a"] > 0
        and fits["total"]["a"] > 0
        and not np.array_equal(xs["trainable"], xs["total"])
    )
    return {
        "doping_dim": table["doping_dim"],
        "loss": loss_var,
        "settings": settings,
        "points": points,
        "fits": fits,
        "collapses": collapses,
        "separated": separated,
        "n_seeds": table["n_seeds"],
        "seed_noise": noise,
        "seed_noise_of_mean": noise_of_mean,
        "verdict": _verdict(fits, collapses, xs, noise_of_mean),
    }


def _verdict(fits, collapses: str, xs, noise_of_mean: float | None) -> str:
    """One plain sentence on what the fits show (not what the paper claims)."""
    if np.array_equal(xs["trainable"], xs["total"]):
        return "no run has frozen parameters, so N_trainable = N_total and the data cannot tell the two counts apart"
    best, other = fits[collapses], fits["total" if collapses == "trainable" else "trainable"]
    text = (
        f"N = {collapses} collapses the doping settings best: joint fit rmse {best['rmse']:.3g} vs "
        f"{other['rmse']:.3g} for N = {'total' if collapses == 'trainable' else 'trainable'}"
    )
    flat = [name for name in ("trainable", "total") if fits[name]["a"] == 0]
    if flat:
        text += (
            f"; but the loss does not fall with N = {' or '.join(flat)} (fitted a = 0), so the sweep shows "
            "no size dependence to collapse"
        )
    if noise_of_mean is None:
        if other["rmse"] - best["rmse"] <= SAME_FIT * other["rmse"]:
            text += f"; the two rmse differ by under {SAME_FIT:.0%}, so these data do not separate the counts"
        return text + "; one seed per point, so seed noise is unknown"
    if best["rmse"] <= 1.5 * noise_of_mean:
        text += f"; its residuals are within seed noise (seed-mean std {noise_of_mean:.3g})"
    else:
        text += f"; its residuals exceed seed noise (seed-mean std {noise_of_mean:.3g})"
    if other["rmse"] - best["rmse"] <= noise_of_mean:
        text += "; the two fits differ by less than seed noise, so the data do not separate them"
    return text
