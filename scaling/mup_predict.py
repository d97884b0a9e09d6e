"""Mu-scaling loss prediction: fit L(N) = a·N^b + c (b < 0) on the smaller widths of a muP sweep
and predict the held-out larger widths before (or instead of) training them.

Mu-scaling (Yao & Wang 2023, arXiv:2304.06875; cofe-ai/Mu-scaling `fit_scale_loss_prediction.py`)
trains muP models that differ only in width with one hyperparameter set and fits this law with
`scipy.optimize.curve_fit`. Here, for a fixed exponent b the law is linear in (a, c), so the fit
profiles them out by least squares and searches b alone: a grid of starts over b ∈ [-4, -0.001]
and a bounded Brent refinement around the best one. Noise-free data are recovered to rounding.

The uncertainty band is a parametric bootstrap: the fitted values plus Gaussian noise with the
residual standard deviation (n - 3 degrees of freedom) are refitted `n_boot` times and the
predictions' central `level` interval is reported, widened by t_{n-3} / z (the residual
standard deviation is itself estimated from few points). With exactly 3 widths there are no residual
degrees of freedom and the band is NaN.

`predict_sweep` reads a collected sweep: an xarray Dataset, or a `.nc` file holding one, with a
`width` dim and the `gpt_lm` trainable's `params` / `final_val_loss` variables. Collecting a sweep
directory (`jobs.sweep.collect`) is the caller's job; CLI: `workbench lm predict`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats
from scipy.optimize import minimize_scalar

from scaling.laws import PowerLaw
from workbench.errors import InputError
from workbench.store import open_dataset

__all__ = ["bootstrap_band", "fit_power_law", "open_sweep", "predict_sweep"]

B_RANGE = (-4.0, -1e-3)
N_STARTS = 64


def _check(params, loss) -> tuple[np.ndarray, np.ndarray]:
    N = np.asarray(params, dtype=float).ravel()
    L = np.asarray(loss, dtype=float).ravel()
    if N.shape != L.shape:
        raise InputError(f"params ({N.size} values) and loss ({L.size} values) differ in length")
    if not (np.isfinite(N).all() and np.isfinite(L).all()):
        raise InputError("params and loss must be finite (a run without a result? drop it first)")
    if (N <= 0).any():
        raise InputError(f"parameter counts must be positive, got {N[N <= 0][0]:g}")
    if (L <= 0).any():
        raise InputError(f"losses must be positive, got {L[L <= 0][0]:g}")
    if np.unique(N).size < 3:
        raise InputError(f"fitting a·N^b + c needs at least 3 distinct sizes, got {np.unique(N).size}")
    return N, L


def _profile(b: float, x: np.ndarray, L: np.ndarray) -> tuple[float, float, float]:
    """(sse, a', c) for exponent b, with x = N / N0 and a' ≥ 0 the coefficient at that scale."""
    u = x**b
    A = np.stack([u, np.ones_like(u)], axis=1)
    (a, c), *_ = np.linalg.lstsq(A, L, rcond=None)
    if a <= 0:  # loss not decreasing in N along this b: the best a ≥ 0 is a = 0
        a, c = 0.0, float(L.mean())
    r = a * u + c - L
    return float(r @ r), float(a), float(c)


def fit_power_law(params, loss) -> PowerLaw:
    """Least-squares fit of L = a·N^b + c with b in [-4, -0.001] and a ≥ 0; records the rmse."""
    N, L = _check(params, loss)
    N0 = float(np.exp(np.log(N).mean()))  # conditioning: fit in units of the geometric mean
    x = N / N0
    grid = -np.geomspace(-B_RANGE[0], -B_RANGE[1], N_STARTS)  # increasing, -4 ... -0.001
    sse = np.array([_profile(b, x, L)[0] for b in grid])
    i = int(np.argmin(sse))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    best_b, best_sse = grid[i], sse[i]
    if hi > lo:
        res = minimize_scalar(
            lambda b: _profile(b, x, L)[0], bounds=(lo, hi), method="bounded", options={"xatol": 1e-12, "maxiter": 500}
        )
        if res.fun <= best_sse:
            best_b, best_sse = float(res.x), float(res.fun)
    _, a_scaled, c = _profile(best_b, x, L)
    return PowerLaw(
        coef=a_scaled * N0 ** (-best_b), exponent=float(best_b), offset=c, rmse=math.sqrt(best_sse / N.size)
    )


def bootstrap_band(
    params, loss, fit: PowerLaw, new_params, *, n_boot: int = 200, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Central `level` interval of the predictions at `new_params` over parametric-bootstrap refits."""
    N, L = _check(params, loss)
    new = np.asarray(new_params, dtype=float)
    dof = N.size - 3
    if dof < 1:
        nan = np.full(new.shape, np.nan)
        return nan, nan.copy()
    sigma = math.sqrt(fit.rmse**2 * N.size / dof)
    if sigma == 0:
        value = fit(new)
        return value, value.copy()
    rng = np.random.default_rng(seed)
    fitted = fit(N)
    preds = np.stack([fit_power_law(N, fitted + rng.normal(0, sigma, N.size))(new) for _ in range(n_boot)])
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(preds, tail, axis=0), np.percentile(preds, 100 - tail, axis=0)
    # sigma is itself estimated from n - 3 residuals: widen by Student's t over the normal quantile.
    k = float(stats.t.ppf(1 - (1 - level) / 2, dof) / stats.norm.ppf(1 - (1 - level) / 2))
    centre = fit(new)
    return centre - k * (centre - lo), centre + k * (hi - centre)


def open_sweep(sweep: xr.Dataset | str | os.PathLike) -> xr.Dataset:
    """A collected sweep: the Dataset itself, or the one in a `.nc` file.

    A sweep directory is refused: collecting its runs (`jobs.sweep.collect`) belongs to the
    caller, so that fitting a law needs no job machinery.
    """
    if isinstance(sweep, xr.Dataset):
        return sweep
    path = Path(sweep)
    if path.is_dir():
        raise InputError(
            f"{path} is a sweep directory; collect it first (`workbench jobs collect {path} --out "
            "sweep.nc`) and pass the .nc file"
        )
    if not path.is_file():
        raise InputError(f"sweep not found: {path}")
    return open_dataset(path)


def predict_sweep(
    sweep: xr.Dataset | str | os.PathLike,
    *,
    holdout: int = 1,
    count: str = "params",
    loss_var: str = "final_val_loss",
    n_boot: int = 200,
    level: float = 0.95,
) -> dict[str, Any]:
    """Fit the smaller widths of a collected sweep (Dataset or .nc path), predict the `holdout` largest.

    Returns ``{"fit": {"a", "b", "c"}, "predictions": [{"width", "params", "predicted", "actual",
    "low", "high"}], ...}``. Seeds (a `seed` dim) are averaged; other sweep dims must have one value.
    """
    ds = open_sweep(sweep)
    if "width" not in ds.dims:
        raise InputError(
            f"the sweep has no 'width' dimension (dims: {', '.join(map(str, ds.dims)) or 'none'}); "
            "sweep with --grid model.width=..."
        )
    for name in (count, loss_var):
        if name not in ds.data_vars:
            raise InputError(f"the sweep has no variable {name!r} (variables: {', '.join(map(str, ds.data_vars))})")
    extra = [d for d in ds[loss_var].dims if d != "width"]
    for dim in extra:
        if dim != "seed" and ds.sizes[dim] > 1:
            raise InputError(
                f"sweep dim {dim!r} has {ds.sizes[dim]} values; select one before predicting "
                f"(predict fits width at one setting)"
            )
    loss = ds[loss_var].mean(list(extra), skipna=True) if extra else ds[loss_var]
    n_extra = [d for d in ds[count].dims if d != "width"]
    params = ds[count].max(n_extra, skipna=True) if n_extra else ds[count]
    widths = np.asarray(ds["width"].values)
    L, N = np.asarray(loss.values, dtype=float), np.asarray(params.values, dtype=float)
    keep = np.isfinite(L) & np.isfinite(N)
    widths, L, N = widths[keep], L[keep], N[keep]
    order = np.argsort(N)
    widths, L, N = widths[order], L[order], N[order]
    if holdout < 1:
        raise InputError(f"--holdout = {holdout} must be >= 1")
    if N.size - holdout < 3:
        raise InputError(f"{N.size} widths with results, {holdout} held out: fitting needs at least 3 smaller widths")
    fit_n, fit_l = N[:-holdout], L[:-holdout]
    fit = fit_power_law(fit_n, fit_l)
    low, high = bootstrap_band(fit_n, fit_l, fit, N[-holdout:], n_boot=n_boot, level=level)
    predictions = []
    for i, j in enumerate(range(N.size - holdout, N.size)):
        predicted = float(fit(N[j]))
        predictions.append(
            {
                "width": int(widths[j]),
                "params": int(N[j]),
                "predicted": predicted,
                "actual": float(L[j]),
                "rel_error": predicted / float(L[j]) - 1,
                "low": float(low[i]),
                "high": float(high[i]),
            }
        )
    return {
        "fit": fit.as_dict(),
        "count": count,
        "loss": loss_var,
        "level": level,
        "rmse": fit.rmse,
        "fitted": [
            {"width": int(w), "params": int(n), "actual": float(v)} for w, n, v in zip(widths[:-holdout], fit_n, fit_l)
        ],
        "predictions": predictions,
    }
