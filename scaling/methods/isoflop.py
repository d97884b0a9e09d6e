"""Approach 2: IsoFLOP minima per compute budget and power laws N*(C), D*(C) through them
(Porian et al. 2024's estimator, or Hoffmann et al. 2022's parabola), fitted by `scaling.isoflop`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scaling import report
from scaling.methods.base import add_seed_flag, add_target_compute_flag, replicate_count

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from scaling.isoflop import IsoflopFit


@dataclass(frozen=True)
class IsoflopResult:
    fit: IsoflopFit
    noise_source: str  # where the seed-noise sigma of the bootstrap came from


NAME = "isoflop"
HELP = "Approach 2, IsoFLOP minima per budget (Porian et al. 2024 estimator)"


def add_flags(p: argparse.ArgumentParser) -> None:
    add_seed_flag(p)
    add_target_compute_flag(p)
    p.add_argument(
        "--interp",
        choices=("akima", "parabola"),
        default="akima",
        help="isoflop: minimum per budget by Akima spline (Porian) or parabola (Hoffmann; biased)",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=None,
        metavar="SIGMA",
        help="isoflop: seed-noise std of the loss for the bootstrap (default: estimated from seed "
        "replicates, else 0.002 as Porian's RefinedWeb runs)",
    )
    p.add_argument(
        "--replicates", type=replicate_count, default=1000, help="isoflop: noise-bootstrap replicates (1 to 100000)"
    )
    p.add_argument("--unweighted", action="store_true", help="isoflop: ordinary instead of weighted least squares")


def fit(runs: pd.DataFrame, args: argparse.Namespace) -> IsoflopResult:
    from scaling.isoflop import estimate_noise, fit_isoflop, isoflop_optima

    noise, noise_source = (args.noise, "given") if args.noise is not None else estimate_noise(runs)
    optima = isoflop_optima(runs, method=args.interp, noise=noise, replicates=args.replicates, seed=args.seed)
    return IsoflopResult(
        fit_isoflop(optima, weighted=not args.unweighted, method=args.interp, noise=noise), noise_source
    )


def payload(result: IsoflopResult, args: argparse.Namespace) -> dict:
    fit = result.fit
    N_at, N_ci = fit.N_star_at(args.target_compute)
    return fit.summary() | {
        "convention": args.convention,
        "noise_source": result.noise_source,
        "target_compute": args.target_compute,
        "N_star_at_target": N_at,
        "N_star_at_target_ci": N_ci,
        "budgets": [
            {
                "C": o.C,
                "n_sizes": o.n_sizes,
                "status": o.status,
                "N_star": o.N_star,
                "D_star": o.D_star,
                "loss_star": o.loss_star,
            }
            for o in fit.budgets
        ],
    }


def text(result: IsoflopResult, args: argparse.Namespace) -> str:
    fit = result.fit
    N_at, N_ci = fit.N_star_at(args.target_compute)
    rows = [
        {
            "C": o.C,
            "sizes": o.n_sizes,
            "N*": o.N_star,
            "D*": o.D_star,
            "loss*": o.loss_star,
            "status": o.status if o.ok else f"refused: {o.reason}",
        }
        for o in fit.budgets
    ]
    bias = "  (parabola: biased by grid width and off-centre sampling)" if args.interp == "parabola" else ""
    draws = f"{args.replicates} replicates" if args.interp == "akima" else "no bootstrap"
    return "\n".join(
        [
            f"Approach 2, IsoFLOP minima by {args.interp}{bias}; convention {args.convention}; "
            f"noise sigma {fit.noise:.3g} ({result.noise_source}), {draws}",
            report.format_table(rows, [(k, k) for k in ("C", "sizes", "N*", "D*", "loss*", "status")]),
            f"a = {fit.a:.4f}  95% CI {_interval(fit.a_ci, '.4f')}   (N* ∝ C^a, R² {fit.N_law.r2:.4f}, "
            f"{'weighted' if fit.weighted else 'unweighted'})",
            f"b = {fit.b:.4f}  95% CI {_interval(fit.b_ci, '.4f')}   (D* ∝ C^b)",
            f"N*({args.target_compute:.3g}) = {N_at:.4g}  95% CI {_interval(N_ci, '.4g')}",
        ]
    )


def _interval(bounds, spec: str) -> str:
    """[lo, hi], or why there is none: NaN bounds mean no bootstrap draws, not an interval."""
    if not all(np.isfinite(bounds)):
        return "n/a (no bootstrap draws)"
    return f"[{bounds[0]:{spec}}, {bounds[1]:{spec}}]"


def dataset(result: IsoflopResult, args: argparse.Namespace) -> xr.Dataset:
    """Per-budget optima along dimension `C` (status says why a budget was refused), exponents as scalars,
    and the bootstrap exponents: a along `draw`, b along `draw_D` (independent draws of different lengths)."""
    import xarray as xr

    fit = result.fit
    budgets = fit.budgets
    per_budget = {
        "N_star": [o.N_star for o in budgets],
        "D_star": [o.D_star for o in budgets],
        "loss_star": [o.loss_star for o in budgets],
        "log_N_star_std": [o.log_N_std for o in budgets],
        "log_D_star_std": [o.log_D_std for o in budgets],
        "n_sizes": [o.n_sizes for o in budgets],
        "status": [o.status for o in budgets],
    }
    data = {k: (("C",), np.asarray(v)) for k, v in per_budget.items()}
    N_star, _ = fit.N_star_at()
    data |= {
        "a": ((), fit.a),
        "b": ((), fit.b),
        "a_ci": (("bound",), fit.a_ci),
        "b_ci": (("bound",), fit.b_ci),
        "N_coef": ((), fit.N_law.coef),
        "D_coef": ((), fit.D_law.coef),
        "r2": ((), fit.N_law.r2),
        "N_star_at_5.88e23": ((), N_star),
        # Steps 5-6 of Porian et al. 2024 (App. B): a is refitted on the N-bootstrap and b on the
        # D-bootstrap, two separate noise draws, each keeping as many replicates as its fewest-valid
        # budget. The two sets are not paired and their lengths differ, so each has its own dimension.
        "a_draws": (("draw",), fit.a_draws, {"long_name": "a refitted on the i-th valid N* replicate per budget"}),
        "b_draws": (("draw_D",), fit.b_draws, {"long_name": "b refitted on the i-th valid D* replicate per budget"}),
        "N_coef_draws": (("draw",), fit.coef_draws, {"long_name": "G of N* = G·C^a, paired with a_draws"}),
    }
    return xr.Dataset(
        data,
        coords={"C": np.array([o.C for o in budgets]), "bound": ["lo", "hi"]},
        attrs={
            "noise_source": result.noise_source,
            "method": fit.method,
            "noise": fit.noise,
            "weighted": int(fit.weighted),
        },
    )


def plot(result: IsoflopResult, args: argparse.Namespace, runs: pd.DataFrame, path: Path | None = None):
    """Left: IsoFLOP curves with their minima. Right: N*(C) with the fitted frontier and its 95 % band."""
    fit = result.fit
    fig, (left, right) = report.figure(2)
    cmap = report.colormap("viridis")
    Cs = np.array([o.C for o in fit.budgets])
    shade = (np.log(Cs) - np.log(Cs.min())) / max(np.ptp(np.log(Cs)), 1e-12)
    for o, c in zip(fit.budgets, shade):
        color = cmap(c)
        left.scatter(o.sizes, o.losses, s=12, color=color, alpha=0.8 if o.ok else 0.3)
        if o.curve_N.size:
            left.plot(o.curve_N, o.curve_loss, color=color, lw=1)
        if o.ok:
            left.scatter([o.N_star], [o.loss_star], marker="*", s=90, color=color, edgecolor="k", zorder=3)
    left.set(xscale="log", xlabel="parameters N", ylabel="loss", title=runs.attrs["source"] or "IsoFLOP curves")
    used = fit.used
    C = np.array([o.C for o in used])
    right.errorbar(C, [o.N_star for o in used], yerr=None, fmt="o", color="k", label="N* per budget")
    grid = np.geomspace(C.min() / 2, C.max() * 2, 100)
    right.plot(grid, fit.N_law(grid), color="C3", label=f"N* ∝ C^{fit.a:.3f}")
    if fit.a_draws.size:
        band = fit.coef_draws[:, None] * grid[None, :] ** fit.a_draws[:, None]
        report.fill_band(right, grid, band, f"95% CI a ∈ [{fit.a_ci[0]:.3f}, {fit.a_ci[1]:.3f}]")
    right.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="N*", title="compute-optimal size")
    right.legend(fontsize=8)
    return report.save_figure(fig, path)
