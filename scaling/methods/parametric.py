"""Approach 3: the parametric law L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, §3.3),
fitted by `scaling.fit`; with --data-constrained, Muennighoff et al. 2023's L(N, D, U) (Eq. 5),
fitted by `scaling.data_constrained`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scaling import report
from scaling.methods.base import add_seed_flag, add_target_compute_flag, bootstrap_count, progress_bar
from workbench.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from scaling.data_constrained import DataConstrainedFit
    from scaling.fit import ParametricFit

N_STARTS = 4500  # the start grid of scaling.fit.hoffmann_grid, for the progress bar

NAME = "parametric"
HELP = "Approach 3, parametric L(N, D) (Hoffmann et al. 2022, §3.3)"


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap",
        type=bootstrap_count,
        default=0,
        metavar="N",
        help="parametric: refit N resamples of the runs for 95%% CIs (0 to 100000)",
    )
    add_seed_flag(p)
    p.add_argument("--tie", action="store_true", help="parametric: tie alpha = beta (Muennighoff et al.)")
    p.add_argument(
        "--data-constrained",
        action="store_true",
        help="parametric: Muennighoff et al.'s L(N, D, U) with repeated data (needs a U column of "
        "unique tokens): base law on single-epoch runs (alpha = beta), then R*_D and R*_N",
    )
    add_target_compute_flag(p)


def plots(args: argparse.Namespace) -> bool:
    """The data-constrained law has no figure."""
    return not args.data_constrained


def fit(runs: pd.DataFrame, args: argparse.Namespace) -> ParametricFit | DataConstrainedFit:
    if args.data_constrained:
        return _fit_data_constrained(runs)
    from scaling.fit import bootstrap_parametric, check_bootstrap_size, fit_parametric

    N, D, loss = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    if args.bootstrap:
        check_bootstrap_size(args.bootstrap, N.size)  # before the fit, not after it
    with progress_bar(N_STARTS, "starts") as bar, progress_bar(None, "refining") as refine:
        result = fit_parametric(N, D, loss, tie=args.tie, progress=bar, refine_progress=refine)
    if args.bootstrap:
        with progress_bar(args.bootstrap, "bootstrap") as bar:
            result = bootstrap_parametric(N, D, loss, result, n_boot=args.bootstrap, seed=args.seed, progress=bar)
    return result


def _fit_data_constrained(runs: pd.DataFrame) -> DataConstrainedFit:
    from scaling.data_constrained import fit_data_constrained

    if "U" not in runs.columns:
        raise InputError(
            f"{runs.attrs['source']}: --data-constrained needs a column of unique tokens U (map it with --col-U NAME)"
        )
    return fit_data_constrained(*(runs[c].to_numpy(float) for c in ("N", "D", "U", "loss")))


def payload(result, args: argparse.Namespace) -> dict:
    if args.data_constrained:
        return result.summary() | {"convention": args.convention}
    summary = result.summary()
    allocation = result.law.allocation_table(args.target_compute)
    if not all(np.isfinite(v) and v > 0 for k, v in allocation.items() if k in ("N_star", "D_star", "L_star")):
        summary["identified"] = False
        summary["problems"] = [*summary["problems"], f"the allocation at C = {args.target_compute:.3g} is not finite"]
    return summary | {"convention": args.convention, "allocation": allocation}


def text(result, args: argparse.Namespace) -> str:
    if args.data_constrained:
        base = result.base
        return "\n".join(
            [
                f"Data-constrained L(N, D, U) (Muennighoff et al. 2023, Eq. 5); {result.n_points} runs, "
                f"{result.n_single_epoch} single-epoch; convention {args.convention}",
                f"base: E = {base.E:.4g}, A = {base.A:.4g}, B = {base.B:.4g}, alpha = beta = {base.alpha:.4f}",
                f"R*_D = {result.r_d_star:.4g} (repeated tokens' worth decays over this many epochs), "
                f"R*_N = {result.r_n_star:.4g}",
            ]
        )
    summary = payload(result, args)
    ci = summary.get("ci", {})
    rows = [
        {"parameter": k, "value": float(summary[k]), "95% CI": ci.get(k, "")}
        for k in ("E", "A", "B", "alpha", "beta", "a", "b")
    ]
    alloc = summary["allocation"]
    if result.screen_rows < result.n_points:  # a long table: starts screened on a subsample
        reached = (
            f"{result.n_at_optimum} of the {result.n_refined} best starts reached it (all {result.n_starts} "
            f"screened on {result.screen_rows} of the runs, the best refined on all)"
        )
    else:
        reached = f"{result.n_at_optimum} of {result.n_starts} starts reached it"
    lines = [
        f"Approach 3, L(N,D) = E + A/N^alpha + B/D^beta   ({result.n_points} runs, convention {args.convention}, "
        f"{'alpha = beta, ' if result.tie else ''}Huber delta 1e-3 on log loss, summed)",
        report.format_table(rows, [("parameter", "parameter"), ("value", "value"), ("95% CI", "95% CI")]),
        f"objective {result.objective:.10g}; {reached}; {'converged' if result.converged else 'NOT converged'}",
    ]
    if not summary["identified"]:
        lines += [f"NOT identified: {problem}" for problem in summary["problems"]]
        lines.append("the constants above are one point of a set that fits equally well; no allocation is reported")
    else:
        lines.append(
            f"at C = {alloc['C']:.3g}: N* = {alloc['N_star']:.4g}, D* = {alloc['D_star']:.4g}, "
            f"D*/N* = {alloc['tokens_per_param']:.3g}, L* = {alloc['L_star']:.4g}"
        )
    return "\n".join(lines)


def dataset(result, args: argparse.Namespace) -> xr.Dataset:
    """Fitted constants as scalars; bootstrap draws (if any) along dimension `draw`."""
    import xarray as xr

    if args.data_constrained:
        return xr.Dataset(
            {k: ((), float(v)) for k, v in result.base.as_dict().items()}
            | {"r_d_star": ((), result.r_d_star), "r_n_star": ((), result.r_n_star)}
        )
    data = {k: ((), float(v)) for k, v in result.law.as_dict().items()}
    data["objective"] = ((), result.objective)
    if result.bootstrap is not None:
        for k, v in result.bootstrap_table().items():
            data[f"{k}_draws"] = (("draw",), v)
    return xr.Dataset(
        data,
        attrs={
            "n_points": result.n_points,
            "n_starts": result.n_starts,
            "n_at_optimum": result.n_at_optimum,
            "converged": int(result.converged),
            "identified": int(result.identified),
            "tie": int(result.tie),
        },
    )


def plot(result, args: argparse.Namespace, runs: pd.DataFrame, path: Path | None = None):
    """Left: runs vs N coloured by compute, with the fitted law along IsoFLOP slices. Right: N*(C)."""
    fig, (left, right) = report.figure(2)
    N, D, loss = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    C = 6 * N * D
    sc = left.scatter(N, loss, c=np.log10(C), s=10, cmap="viridis")
    fig.colorbar(sc, ax=left, label="log10 C")
    for c in np.geomspace(C.min(), C.max(), 6):  # the fitted law along IsoFLOP slices, same colours
        n = np.geomspace(N.min(), N.max(), 100)
        left.plot(n, result.law.loss(n, c / (6 * n)), color=sc.cmap(sc.norm(np.log10(c))), lw=1)
    left.set(
        xscale="log",
        xlabel="parameters N",
        ylabel="loss",
        title=runs.attrs["source"] or "L(N, D) fit",
        ylim=(loss.min() * 0.95, np.quantile(loss, 0.98) * 1.05),
    )
    grid = np.geomspace(C.min(), 1e25, 100)
    N_opt, _ = result.law.optimal_allocation(grid)
    right.plot(grid, N_opt, color="C3", label=f"N* ∝ C^{result.law.a:.3f}")
    if result.bootstrap is not None:
        E, A, B, al, be = result.bootstrap.T
        G = (al * A / (be * B)) ** (1 / (al + be))
        band = G[:, None] * (grid[None, :] / 6) ** (be / (al + be))[:, None]
        report.fill_band(right, grid, band, "95% bootstrap band")
    right.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="N*", title="compute-optimal size")
    right.legend(fontsize=8)
    return report.save_figure(fig, path)
