"""The compute-optimal model size N*, tokens D* and loss L* at a budget C, with 95 % intervals,
from a fitted law: Approach 2 (IsoFLOP minima) or Approach 3 (parametric L(N, D)).

- Approach 2 (Hoffmann et al. 2022, §3.2): N*(C) = G·C^a through the budgets' minima; the
  interval from the noise-bootstrap refits (a, G) of `scaling.isoflop`; D* = C / (6·N*), which holds
  for every convention here (attention and chinchilla count an effective N with C = 6·N·D). The
  approach has no loss model, so L*(C) is the power law through the budgets' minimum losses
  (log L* linear in log C, least squares), with the regression's t-interval; it is meant for
  steps of a few times the largest fitted budget, where the floor E bends it little.
- Approach 3 (Hoffmann et al. 2022, §3.3, Eq. 4): N*, D* and L* = L(N*, D*) of the fitted law;
  intervals over the bootstrap refits when the fit has them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scaling.laws import ChinchillaLaw
from workbench.errors import InputError

if TYPE_CHECKING:
    import xarray as xr

    from scaling.fit import ParametricFit
    from scaling.isoflop import IsoflopFit

__all__ = [
    "Prediction",
    "loss_power_law",
    "fit_both",
    "predict_from_dataset",
    "predict_from_runs",
    "predict_isoflop",
    "predict_parametric",
]

NAN_CI = [math.nan, math.nan]


@dataclass(frozen=True)
class Prediction:
    approach: str
    C: float
    N_star: float
    N_ci: list[float]
    D_star: float
    D_ci: list[float]
    L_star: float
    L_ci: list[float]

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("approach", "C", "N_star", "N_ci", "D_star", "D_ci", "L_star", "L_ci")}


def _ci(draws: np.ndarray) -> list[float]:
    draws = draws[np.isfinite(draws)]
    return [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))] if draws.size > 1 else NAN_CI


def _check_budget(C: float) -> float:
    if not (math.isfinite(C) and C > 0):
        raise InputError(f"--budget {C}: must be a positive number of FLOPs")
    return float(C)


def loss_power_law(budgets: np.ndarray, losses: np.ndarray, C: float) -> tuple[float, list[float]]:
    """log L* = c0 + c1·log C through the budgets' minimum losses, at C, with its 95 % t-interval
    (no interval from two budgets: nothing is left to estimate the scatter)."""
    from scipy import stats

    x, y = np.log(budgets), np.log(losses)
    n = x.size
    if n < 2:
        raise InputError("L*(C) needs the minimum loss of at least two budgets")
    slope, intercept = np.polyfit(x, y, 1)
    at = float(np.exp(intercept + slope * math.log(C)))
    if n < 3:
        return at, NAN_CI
    residual = y - (intercept + slope * x)
    s = math.sqrt(float(residual @ residual) / (n - 2))
    half = (
        stats.t.ppf(0.975, n - 2) * s * math.sqrt(1 / n + (math.log(C) - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    )
    centre = intercept + slope * math.log(C)
    return at, [float(np.exp(centre - half)), float(np.exp(centre + half))]


def predict_isoflop(fit: IsoflopFit, C: float) -> Prediction:
    C = _check_budget(C)
    used = fit.used
    if len(used) < 2:
        raise InputError(f"Approach 2 needs at least two budgets with an interior minimum; {len(used)} have one")
    N_star, N_ci = fit.N_star_at(C)
    L_star, L_ci = loss_power_law(np.array([o.C for o in used]), np.array([o.loss_star for o in used]), C)
    D_ci = [C / (6 * N_ci[1]), C / (6 * N_ci[0])]
    return Prediction("isoflop", C, N_star, N_ci, C / (6 * N_star), D_ci, L_star, L_ci)


def predict_parametric(result: ParametricFit, C: float) -> Prediction:
    C = _check_budget(C)
    if not result.identified:
        raise InputError(f"Approach 3: the fitted law is not identified ({'; '.join(result.problems)}); no prediction")
    return _from_law(result.law, result.bootstrap, C)


def _from_law(law: ChinchillaLaw, draws: np.ndarray | None, C: float) -> Prediction:
    row = law.allocation_table(C)
    if not all(math.isfinite(row[k]) and row[k] > 0 for k in ("N_star", "D_star", "L_star")):
        raise InputError(f"--budget {C:.3g}: the fitted law gives no finite optimum there")
    cis = {"N": NAN_CI, "D": NAN_CI, "L": NAN_CI}
    if draws is not None and len(draws):
        laws = ChinchillaLaw(*(np.asarray(d, float) for d in np.asarray(draws).T))
        with np.errstate(all="ignore"):
            N, D = laws.optimal_allocation(C)
            cis = {"N": _ci(N), "D": _ci(D), "L": _ci(laws.loss(N, D))}
    return Prediction("parametric", C, row["N_star"], cis["N"], row["D_star"], cis["D"], row["L_star"], cis["L"])


def predict_from_dataset(ds: xr.Dataset, C: float, *, name: str) -> Prediction:
    """From a fit written by `workbench scaling fit --out` (method isoflop or parametric)."""
    C = _check_budget(C)
    method = ds.attrs.get("method")
    if method == "parametric" or {"E", "A", "B", "alpha", "beta"} <= set(ds.data_vars):
        law = ChinchillaLaw(*(float(ds[k]) for k in ("E", "A", "B", "alpha", "beta")))
        names = [f"{k}_draws" for k in ("E", "A", "B", "alpha", "beta")]
        draws = np.stack([ds[k].values for k in names], axis=1) if all(k in ds for k in names) else None
        return _from_law(law, draws, C)
    if "N_coef" in ds and "a" in ds and "loss_star" in ds:
        ok = ds["status"].values.astype(str) == "ok"
        if ok.sum() < 2:
            raise InputError(f"{name}: fewer than two budgets with an interior minimum; no prediction")
        N_star = float(ds["N_coef"]) * C ** float(ds["a"])
        N_ci = NAN_CI
        if "N_coef_draws" in ds:
            N_ci = _ci(ds["N_coef_draws"].values * C ** ds["a_draws"].values)
        L_star, L_ci = loss_power_law(ds["C"].values[ok], ds["loss_star"].values[ok], C)
        D_ci = [C / (6 * N_ci[1]), C / (6 * N_ci[0])]
        return Prediction("isoflop", C, N_star, N_ci, C / (6 * N_star), D_ci, L_star, L_ci)
    raise InputError(f"{name}: not a fit of method isoflop or parametric (`workbench scaling fit --out`)")


def fit_both(runs, *, replicates: int = 1000, bootstrap: int = 200, seed: int = 0):
    """(per-budget optima, Approach 2's fit, Approach 3's fit) of `runs`; Approach 2's bootstrap
    uses the seed noise estimated from replicates where the runs have them."""
    from scaling.fit import bootstrap_parametric, fit_parametric
    from scaling.isoflop import estimate_noise, fit_isoflop, isoflop_optima

    noise, _ = estimate_noise(runs)
    optima = isoflop_optima(runs, noise=noise, replicates=replicates, seed=seed)
    N, D, loss = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    law = fit_parametric(N, D, loss)
    if bootstrap:
        law = bootstrap_parametric(N, D, loss, law, n_boot=bootstrap, seed=seed)
    return optima, fit_isoflop(optima, noise=noise), law


def predict_from_runs(runs, budget: float, *, replicates: int = 1000, bootstrap: int = 200, seed: int = 0):
    """Approach 2 and Approach 3 fitted to `runs`, each predicting at `budget` (a list of Predictions)."""
    _, isoflop, parametric = fit_both(runs, replicates=replicates, bootstrap=bootstrap, seed=seed)
    return [predict_isoflop(isoflop, budget), predict_parametric(parametric, budget)]
