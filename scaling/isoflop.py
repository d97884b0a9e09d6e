"""Approach 2 (IsoFLOP minima) with Porian et al.'s estimator, and Approach 1 (the envelope).

Porian et al. 2024 (arXiv:2406.19146, §2 and App. B; repo `analysis.py`), per compute budget C:
  1. keep the lowest loss per model size, sort by N;
  2. Akima spline of log loss against log N, evaluated on a geometric grid of (k-1)·25 points
     (k = sizes at that budget); N* = grid argmin. A budget whose argmin is an end point of the
     grid is refused (the minimum was not bracketed), as is one with fewer than 3 sizes;
  3. seed-noise bootstrap: add N(0, sigma²) to every loss and redo step 2, 1000 times. Edge
     replicates are discarded; a budget with fewer than half valid replicates is refused;
  4. the observation is the median of the valid bootstrap N*; its weight is 1/std(log N*)², with
     std floored at 0.33 · 25 grid steps (≈ a third of the gap between sizes) and inflated by
     (replicates / valid replicates);
  5. a = slope of the weighted least-squares fit of log N* on log C; D* likewise (its own spline);
  6. 95 % CI: refit with the i-th valid replicate of every budget, i = 1..min(valid); take the
     2.5 / 97.5 % quantiles.
A `parabola` method (Hoffmann's Approach 2: a quadratic in log N through the 5 sizes around the
minimum) is offered for comparison; it is biased by grid width and off-centre sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.interpolate import Akima1DInterpolator

from scaling.laws import CHINCHILLA_BUDGET, PowerLaw
from scaling.table import canonical_order, group_budgets
from workbench.errors import InputError

METHODS = ("akima", "parabola")
DEFAULT_NOISE = 0.002  # Porian's seed-noise sigma for RefinedWeb (OpenWebText2: 0.01)
INTERP_MULTIPLIER = 25
MIN_STD_FACTOR = 0.33
# Replicates whose interpolated curves are evaluated at once: (grid points × this) numbers stay
# near 100 MB at most even for 50 sizes per budget, whatever the number of replicates.
REPLICATE_BLOCK = 8192


@dataclass(frozen=True)
class BudgetOptimum:
    """The loss-minimising size at one compute budget, or the reason it was refused."""

    C: float
    n_sizes: int
    status: str  # "ok", or the refusal: "too-few-sizes", "edge-minimum", "unstable-bootstrap", "no-curvature"
    N_star: float = np.nan
    D_star: float = np.nan
    loss_star: float = np.nan
    log_N_std: float = np.nan
    log_D_std: float = np.nan
    N_draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    D_draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    sizes: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)  # N per size, sorted
    losses: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    curve_N: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)  # interpolant, for plots
    curve_loss: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def reason(self) -> str:
        return {
            "ok": "used",
            "too-few-sizes": f"only {self.n_sizes} model sizes (need at least 3)",
            "edge-minimum": "the loss minimum lies at the smallest or largest size (not bracketed)",
            "unstable-bootstrap": "fewer than half of the noise-bootstrap minima are interior",
            "no-curvature": "the parabola through the sizes around the minimum opens downward",
        }[self.status]


@dataclass(frozen=True)
class ComputeOptimalLaws:
    """N*(C) = coef·C^a and D*(C) = coef·C^b, as fitted by Approaches 1 and 2."""

    N_law: PowerLaw
    D_law: PowerLaw

    @property
    def a(self) -> float:
        return self.N_law.exponent

    @property
    def b(self) -> float:
        return self.D_law.exponent


@dataclass(frozen=True)
class IsoflopFit(ComputeOptimalLaws):
    """Compute-optimal exponents a (N* ∝ C^a) and b (D* ∝ C^b) with bootstrap CIs."""

    a_draws: np.ndarray = field(repr=False)
    b_draws: np.ndarray = field(repr=False)
    coef_draws: np.ndarray = field(repr=False)  # N-law coefficients, paired with a_draws
    budgets: tuple[BudgetOptimum, ...] = field(repr=False)
    method: str = "akima"
    noise: float = DEFAULT_NOISE
    weighted: bool = True

    @property
    def used(self) -> tuple[BudgetOptimum, ...]:
        return tuple(o for o in self.budgets if o.ok)

    @staticmethod
    def _ci(draws: np.ndarray, level: float = 0.95) -> list[float]:
        if draws.size == 0:
            return [float("nan"), float("nan")]
        return [float(np.quantile(draws, 0.5 - level / 2)), float(np.quantile(draws, 0.5 + level / 2))]

    @property
    def a_ci(self) -> list[float]:
        return self._ci(self.a_draws)

    @property
    def b_ci(self) -> list[float]:
        return self._ci(self.b_draws)

    def N_star_at(self, C: float = CHINCHILLA_BUDGET) -> tuple[float, list[float]]:
        """Extrapolated compute-optimal size at C, with the bootstrap 95 % interval."""
        draws = self.coef_draws * C**self.a_draws
        return float(self.N_law(C)), self._ci(draws)

    def rho_range(self) -> list[float]:
        """Range of the 95 % band of tokens per parameter rho*(C) = C / (6 N*²) over the fitted budgets
        (NaN without bootstrap draws: the parabola, or no replicates)."""
        if self.coef_draws.size == 0:
            return [float("nan"), float("nan")]
        Cs = np.geomspace(min(o.C for o in self.used), max(o.C for o in self.used), 50)
        rho = Cs[None, :] / (6.0 * (self.coef_draws[:, None] * Cs[None, :] ** self.a_draws[:, None]) ** 2)
        return [float(np.quantile(rho, 0.025, axis=0).min()), float(np.quantile(rho, 0.975, axis=0).max())]

    def summary(self) -> dict:
        N_star, N_ci = self.N_star_at()
        return {
            "a": self.a,
            "a_ci": self.a_ci,
            "b": self.b,
            "b_ci": self.b_ci,
            "r2": self.N_law.r2,
            "N_star_at_5.88e23": N_star,
            "N_star_ci": N_ci,
            "rho_range": self.rho_range(),
            "n_budgets_used": len(self.used),
            "n_bootstrap": int(self.a_draws.size),
            "method": self.method,
            "noise": self.noise,
            "refused": [{"C": o.C, "reason": o.reason} for o in self.budgets if not o.ok],
        }


def weighted_power_law(C, y, weights=None) -> PowerLaw:
    """Least squares of log y on log C (weights 1/std(log y)² when given), as Porian's fits."""
    x, ly = np.log(np.asarray(C, float)), np.log(np.asarray(y, float))
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    xm, ym = np.average(x, weights=w), np.average(ly, weights=w)
    slope = np.sum(w * (x - xm) * (ly - ym)) / np.sum(w * (x - xm) ** 2)
    intercept = ym - slope * xm
    resid = ly - (intercept + slope * x)
    r2 = 1.0 - np.sum(w * resid**2) / np.sum(w * (ly - ym) ** 2)
    return PowerLaw(coef=float(np.exp(intercept)), exponent=float(slope), r2=float(r2))


def _batched_power_law_slopes(C, Y, weights):
    """Slopes and intercepts of many weighted log-log fits at once; Y is (replicates, budgets)."""
    x = np.log(C)[None, :]
    ly = np.log(Y)
    w = weights[None, :]
    xm = (w * x).sum(1, keepdims=True) / w.sum()
    ym = (w * ly).sum(1, keepdims=True) / w.sum()
    slope = (w * (x - xm) * (ly - ym)).sum(1) / (w * (x - xm) ** 2).sum(1)
    return slope, np.exp(ym[:, 0] - slope * xm[:, 0])


def _akima_argmin(x_sorted: np.ndarray, log_losses: np.ndarray, grid: np.ndarray):
    """Akima interpolant of log loss vs log x for every column of `log_losses` (k, R).

    Returns the grid index of each column's minimum and the interpolated curve's value there (R,).
    Columns are interpolated REPLICATE_BLOCK at a time, so memory does not grow with R.
    """
    log_x, log_grid = np.log(x_sorted), np.log(grid)
    idx = np.empty(log_losses.shape[1], dtype=int)
    low = np.empty(log_losses.shape[1])
    for start in range(0, log_losses.shape[1], REPLICATE_BLOCK):
        block = slice(start, start + REPLICATE_BLOCK)
        curves = Akima1DInterpolator(log_x, log_losses[:, block], axis=0)(log_grid)
        idx[block] = np.argmin(curves, axis=0)
        low[block] = curves[idx[block], np.arange(curves.shape[1])]
    return idx, low


def _akima_optimum(x_sorted, losses, noise, replicates, rng):
    """Steps 2-4 for one axis (N or D) of one budget; returns None for an edge minimum."""
    k = x_sorted.size
    grid = np.geomspace(x_sorted[0], x_sorted[-1], (k - 1) * INTERP_MULTIPLIER)
    curve = Akima1DInterpolator(np.log(x_sorted), np.log(losses))(np.log(grid))
    idx = np.argmin(curve)
    edge = lambda i: (i == 0) | (i == grid.size - 1)
    if edge(idx):
        return None
    noisy = losses[:, None] + noise * rng.standard_normal((k, replicates))
    with np.errstate(invalid="ignore"):
        draws_idx, draw_low = _akima_argmin(x_sorted, np.log(noisy), grid)
    valid = ~edge(draws_idx) & np.all(noisy > 0, axis=0)
    draws = grid[draws_idx[valid]]
    # Porian's std floor assumes the interpolation grid is roughly uniform in log x.
    floor = MIN_STD_FACTOR * INTERP_MULTIPLIER * np.log(grid[1] / grid[0])
    log_std = max(np.std(np.log(draws)), floor) * replicates / max(draws.size, 1) if draws.size else np.nan
    loss_star = np.exp(draw_low[valid]) if draws.size else np.empty(0)
    return {
        "draws": draws,
        "log_std": log_std,
        "stable": draws.size >= replicates // 2,
        "grid": grid,
        "curve": _plot_curve(curve),
        "loss_star": loss_star,
        "point": grid[idx],
        "loss": float(np.exp(curve[idx])),
    }


def _plot_curve(log_curve: np.ndarray) -> np.ndarray:
    """The interpolant as losses, for figures. Between two sizes a hair apart (digitised data) the
    spline's slopes explode and its log loss can pass exp's range: those points are left out (NaN,
    a gap in the plot) instead of overflowing; the minimum is taken on the log curve, never here."""
    with np.errstate(over="ignore"):
        curve = np.exp(log_curve)
    return np.where(np.isfinite(curve), curve, np.nan)


def _parabola_optimum(x_sorted, losses):
    """Vertex of a quadratic in log x through the (up to) 5 sizes around the observed minimum."""
    i = int(np.argmin(losses))
    lo = max(0, min(i - 2, x_sorted.size - 5))
    sel = slice(lo, lo + 5)
    lx, ll = np.log(x_sorted[sel]), np.log(losses[sel])
    c2, c1, c0 = np.polyfit(lx, ll, 2)
    if c2 <= 0:
        return None
    vertex = -c1 / (2 * c2)
    if not (np.log(x_sorted[0]) < vertex < np.log(x_sorted[-1])):
        return "edge"
    grid = np.geomspace(x_sorted[0], x_sorted[-1], 200)
    return {
        "point": float(np.exp(vertex)),
        "loss": float(np.exp(c0 + c1 * vertex + c2 * vertex**2)),
        "grid": grid,
        "curve": np.exp(np.polyval([c2, c1, c0], np.log(grid))),
    }


def estimate_noise(runs: pd.DataFrame) -> tuple[float, str]:
    """Seed-noise sigma for the bootstrap, and where it came from: the pooled std of the loss across
    seeds at the same (C, N) when the runs have seed replicates, else Porian's RefinedWeb value."""
    if "seed" in runs.columns and runs["seed"].nunique() > 1:
        var = canonical_order(runs).groupby(["C", "N"])["loss"].var(ddof=1).dropna()
        if len(var):
            return float(var.mean() ** 0.5), "estimated from seed replicates"
    return DEFAULT_NOISE, "default (Porian's RefinedWeb seed noise)"


def isoflop_optima(
    runs: pd.DataFrame, *, method: str = "akima", noise: float = DEFAULT_NOISE, replicates: int = 1000, seed: int = 0
) -> list[BudgetOptimum]:
    """Per-budget optima (steps 1-4). `runs` has columns N, D, C, loss (see `scaling.table`)."""
    if method not in METHODS:
        raise InputError(f"unknown IsoFLOP method '{method}'; valid: {', '.join(METHODS)}")
    if noise < 0 or not np.isfinite(noise):
        raise InputError(f"--noise must be a finite number >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    runs = canonical_order(runs)  # the same optima however the table is ordered
    budget_ids = group_budgets(runs)
    optima = []
    for bid in np.unique(budget_ids):
        at = runs[budget_ids == bid]
        C = float(np.exp(np.mean(np.log(at["C"]))))
        # Step 1: the lowest loss per size (several seeds or learning rates per size collapse here).
        best = at.loc[at.groupby("N")["loss"].idxmin()].sort_values("N")
        N, D, loss = (best[c].to_numpy(float) for c in ("N", "D", "loss"))
        common = dict(C=C, n_sizes=N.size, sizes=N, losses=loss)
        if N.size < 3:
            optima.append(BudgetOptimum(status="too-few-sizes", **common))
            continue
        if method == "parabola":
            opt_N = _parabola_optimum(N, loss)
            order = np.argsort(D)
            opt_D = _parabola_optimum(D[order], loss[order])
            if opt_N is None or opt_D is None:
                optima.append(BudgetOptimum(status="no-curvature", **common))
            elif opt_N == "edge" or opt_D == "edge":
                optima.append(BudgetOptimum(status="edge-minimum", **common))
            else:
                optima.append(
                    BudgetOptimum(
                        status="ok",
                        N_star=opt_N["point"],
                        D_star=opt_D["point"],
                        loss_star=opt_N["loss"],
                        curve_N=opt_N["grid"],
                        curve_loss=opt_N["curve"],
                        **common,
                    )
                )
            continue
        opt_N = _akima_optimum(N, loss, noise, replicates, rng)
        order = np.argsort(D)
        opt_D = _akima_optimum(D[order], loss[order], noise, replicates, rng)
        if opt_N is None or opt_D is None:
            optima.append(BudgetOptimum(status="edge-minimum", **common))
            continue
        if replicates and not (opt_N["stable"] and opt_D["stable"]):
            optima.append(BudgetOptimum(status="unstable-bootstrap", **common))
            continue
        if replicates:
            N_star, D_star = np.median(opt_N["draws"]), np.median(opt_D["draws"])
            loss_star = float(np.median(opt_N["loss_star"]))
        else:
            N_star, D_star = opt_N["point"], opt_D["point"]
            loss_star = opt_N["loss"]
        optima.append(
            BudgetOptimum(
                status="ok",
                N_star=float(N_star),
                D_star=float(D_star),
                loss_star=loss_star,
                log_N_std=float(opt_N["log_std"]),
                log_D_std=float(opt_D["log_std"]),
                N_draws=opt_N["draws"],
                D_draws=opt_D["draws"],
                curve_N=opt_N["grid"],
                curve_loss=opt_N["curve"],
                **common,
            )
        )
    return optima


def fit_isoflop(
    optima: list[BudgetOptimum],
    *,
    weighted: bool = True,
    method: str = "akima",
    noise: float = DEFAULT_NOISE,
    min_budgets: int = 3,
) -> IsoflopFit:
    """Steps 5-6: power laws N*(C), D*(C) through the usable budgets, with bootstrap CIs."""
    used = [o for o in optima if o.ok]
    if len(optima) < 2:
        raise InputError(f"IsoFLOP fitting needs several compute budgets; the data has {len(optima)}")
    if len(used) < min_budgets:
        reasons = "; ".join(f"C={o.C:.3g}: {o.reason}" for o in optima if not o.ok)
        raise InputError(
            f"only {len(used)} of {len(optima)} budgets have a usable minimum (need {min_budgets}); refused: {reasons}"
        )
    C = np.array([o.C for o in used])
    N_star = np.array([o.N_star for o in used])
    D_star = np.array([o.D_star for o in used])
    have_std = weighted and all(np.isfinite(o.log_N_std) for o in used)
    wN = 1.0 / np.array([o.log_N_std for o in used]) ** 2 if have_std else np.ones_like(C)
    wD = 1.0 / np.array([o.log_D_std for o in used]) ** 2 if have_std else np.ones_like(C)
    N_law = weighted_power_law(C, N_star, wN)
    D_law = weighted_power_law(C, D_star, wD)
    n_rep = min((o.N_draws.size for o in used), default=0)
    n_rep_D = min((o.D_draws.size for o in used), default=0)
    if n_rep > 0 and n_rep_D > 0:
        a_draws, coef_draws = _batched_power_law_slopes(C, np.stack([o.N_draws[:n_rep] for o in used], 1), wN)
        b_draws, _ = _batched_power_law_slopes(C, np.stack([o.D_draws[:n_rep_D] for o in used], 1), wD)
    else:
        a_draws = b_draws = coef_draws = np.empty(0)
    return IsoflopFit(
        N_law=N_law,
        D_law=D_law,
        a_draws=a_draws,
        b_draws=b_draws,
        coef_draws=coef_draws,
        budgets=tuple(optima),
        method=method,
        noise=noise,
        weighted=have_std,
    )


@dataclass(frozen=True)
class EnvelopeFit(ComputeOptimalLaws):
    """Approach 1: the runs on the loss-compute frontier, and N*(C) ∝ C^a through them."""

    points: pd.DataFrame = field(repr=False)  # C, N, D, loss of each frontier run

    def summary(self) -> dict:
        return {"a": self.a, "b": self.b, "r2": self.N_law.r2, "n_budgets": int(len(self.points))}


def fit_envelope(runs: pd.DataFrame) -> EnvelopeFit:
    """Approach 1 (Hoffmann §3.1): the envelope of minimum loss against compute.

    Hoffmann read the envelope off training curves. With one loss per run it is the Pareto
    frontier: the runs that reach a lower loss than every run with less compute. N*(C) ∝ C^a is
    fitted through those runs.
    """
    ordered = canonical_order(runs).sort_values(["C", "loss"], kind="stable")
    best_before = ordered["loss"].cummin().shift(fill_value=np.inf)
    frontier = ordered[ordered["loss"].to_numpy() < best_before.to_numpy()]
    frontier = frontier.drop_duplicates("C")
    if len(frontier) < 3:
        raise InputError(f"the envelope has only {len(frontier)} runs (need 3 at different compute budgets)")
    return EnvelopeFit(
        N_law=weighted_power_law(frontier["C"], frontier["N"]),
        D_law=weighted_power_law(frontier["C"], frontier["D"]),
        points=frontier[["C", "N", "D", "loss"]].reset_index(drop=True),
    )
